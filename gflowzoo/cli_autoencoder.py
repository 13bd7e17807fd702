"""Commands ``gflowzoo autoencoder fit`` and ``gflowzoo autoencoder list``: the autoencoders whose codes latent
spaces train methods on (docs/latent.md).

Like :mod:`gflowzoo.cli_eval`, this module imports only typer and rich at the top; torch loads inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .cli_common import NoProgressOpt, SetOpt, console, handle_errors
from .errors import UserError
from .paths import check_writable

#: The ``autoencoder`` group, added to the root app by :mod:`gflowzoo.cli`.
commands = typer.Typer()

autoencoder_app = typer.Typer(help="Autoencoders for latent spaces: train one once, then run any method on its codes "
                                   "(--set latent_space=NAME).", no_args_is_help=True, rich_markup_mode=None)
commands.add_typer(autoencoder_app, name="autoencoder")


@autoencoder_app.command("fit")
@handle_errors
def autoencoder_fit_cmd(
    name: Annotated[
        Optional[str], typer.Argument(help="Autoencoder (see `gflowzoo list autoencoder`); default conv for images "
                                           "of 28 px and more, else mlp.")
    ] = None,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Data set to train on.")] = "digits",
    sets: SetOpt = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Folder holding data sets.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Train again even if it is cached.")] = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Train an autoencoder on a data set's training split (options and training recipe with --set: latent_dim,
    kl, ..., steps, batch_size, lr, seed), report its reconstruction error on the test split, write a grid of test
    images and their reconstructions, and cache it ($GFLOWZOO_CACHE/autoencoders) under a hash of data set, shape
    and options."""
    from .autoencoders import fit_autoencoder, resolve_spec
    from .config import parse_sets
    from .data import DataHandle
    from .plugins import get_registry
    from .session import resolve_device

    registry = get_registry()
    root = str(data_root) if data_root else None
    data = DataHandle(dataset, root, registry=registry)
    shape = tuple(data.shape)
    if data.kind != "image":
        raise UserError(f"Autoencoders for latent spaces are trained on image data sets; {dataset} holds {data.kind}.")
    if name is None:
        name = "conv" if len(shape) == 3 and min(shape[1:]) >= 28 else "mlp"
    table: dict = {"name": name}
    for path, value in parse_sets(sets):
        if len(path) != 1:
            raise UserError(f"--set {'.'.join(path)}: autoencoder options are single keys (latent_dim=16, steps=3000).")
        table[path[0]] = value
    spec = resolve_spec(registry, table, dataset, shape)
    from .autoencoders import build_network

    build_network(registry, spec)  # the architecture's one-sentence error for a shape it cannot take, before training
    if spec.path.is_file() and not force:
        console.print(f"{spec.label} is already trained: {spec.path} (use --force to train again)", highlight=False)
        return
    check_writable(spec.path, "the autoencoder file")
    dev = resolve_device(device)
    console.print(f"training autoencoder {spec.label} on {dataset} {list(shape)} ({spec.recipe['steps']} steps) on "
                  f"{dev}", highlight=False)
    from .progress import PlainProgress

    if no_progress:
        bar = None
    elif console.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[step]}"),
                       TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[logs]}"),
                       console=console, transient=True)
    else:
        bar = PlainProgress(console)
    steps = spec.recipe["steps"]

    def on_step(step: int, total: int, logs: dict) -> None:
        if bar is not None:
            bar.update(task, completed=step, step=f"step {step}/{total}", steps=step,
                       logs=" ".join(f"{k}={v:.4g}" for k, v in logs.items()))

    if bar is not None:
        bar.__enter__()
        task = bar.add_task(f"autoencoder {spec.name}", total=steps, completed=0, step=f"step 0/{steps}", steps=0,
                            logs="")
    try:
        res = fit_autoencoder(registry, spec, data_root=root, device=dev, on_step=on_step)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    console.print(f"test reconstruction error (MSE, model units): [bold]{res.test_mse:.4f}[/]  ({res.seconds:.1f}s)")
    console.print(f"saved: {res.path}", highlight=False, soft_wrap=True)
    if res.grid is not None:
        console.print(f"reconstructions: {res.grid}", highlight=False, soft_wrap=True)
    console.print(f"use it: gflowzoo train METHOD --dataset {dataset} --set latent_space={_spec_text(spec)}",
                  highlight=False, soft_wrap=True)


def _spec_text(spec) -> str:
    """The ``--set latent_space=...`` value of a spec: its name, or an inline table when options differ."""
    from .config import _toml_scalar

    changed = spec.changed()
    return spec.name if not changed else "'" + _toml_scalar({"name": spec.name, **changed}) + "'"


@autoencoder_app.command("list")
@handle_errors
def autoencoder_list_cmd() -> None:
    """The trained autoencoders in the cache: data set, shape, code shape, test reconstruction error, steps."""
    import torch

    from .autoencoders import FORMAT, autoencoder_dir

    folder = autoencoder_dir()
    files = sorted(p for p in folder.glob("*.pt") if not p.stem.endswith("-codes")) if folder.is_dir() else []
    table = Table(show_edge=False, pad_edge=False)
    for col in ("file", "data set", "shape", "code", "test MSE", "steps", "weights sha256"):
        table.add_column(col)
    for f in files:
        try:
            p = torch.load(f, map_location="cpu", weights_only=True)
            if not isinstance(p, dict) or p.get("format") != FORMAT:
                raise ValueError("not an autoencoder file")
            table.add_row(f.name, str(p["dataset"]), "x".join(map(str, p["shape"])),
                          "x".join(map(str, p["latent_shape"])), f"{p['test_mse']:.4f}", str(p["recipe"]["steps"]),
                          str(p["weights_sha256"])[:12])
        except Exception as exc:  # noqa: BLE001 - a damaged file is listed as such
            table.add_row(f.name, "[red]unreadable[/]", "", "", "", "", f"{type(exc).__name__}"[:40])
    console.print(f"autoencoder cache: {folder}", highlight=False)
    console.print(table)
