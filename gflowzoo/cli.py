"""The ``gflowzoo`` command line (typer + rich).

Nothing heavy is imported at module level: ``gflowzoo --help`` and ``gflowzoo list`` never import torch. Commands
import what they need inside their bodies.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .cli_common import (
    NoProgressOpt,
    SetOpt,
    console,
    err_console,
    handle_errors,
    multi_process,
    reporter,
)
from .errors import GflowzooError, UserError, unknown_name
from .paths import check_writable
from .registry import KINDS

app = typer.Typer(
    name="gflowzoo",
    help="A zoo of kernel-discrepancy generative models: MMD gradient flows (DMMD) and MMD GANs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, help="CPU threads for torch (also $GFLOWZOO_THREADS); default: the cores other processes leave free, re-checked as the run goes."),
    ] = None,
) -> None:
    """A zoo of kernel-discrepancy generative models: MMD gradient flows (DMMD) and MMD GANs."""
    if threads is not None:
        import os

        os.environ["GFLOWZOO_THREADS"] = str(threads)


def _state():
    from .plugins import get_state

    return get_state()


_RST_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`(~?)([^`]+)`")
_RST_LITERAL = re.compile(r"``(.+?)``", re.S)


def plain_rst(text: str) -> str:
    """A docstring as terminal text: reST inline literals (code in double backticks) and roles (:class:`~a.b.C`,
    :func:`a.f`) become code in single backticks (`C`, `a.f`)."""

    def role(m: re.Match[str]) -> str:
        target = m.group(2)
        return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"

    return _RST_LITERAL.sub(r"`\1`", _RST_ROLE.sub(role, text))


def plain_help(typer_app: typer.Typer) -> None:
    """Render the reST markup of the help texts that come from docstrings (commands' and groups') as
    :func:`plain_rst` does, recursively through sub-applications."""
    from typer.main import solve_typer_info_help

    for info in typer_app.registered_commands:
        text = info.help if info.help is not None else inspect.getdoc(info.callback) if info.callback else None
        if text and plain_rst(text) != text:
            info.help = plain_rst(text)
    for group in typer_app.registered_groups:
        text = solve_typer_info_help(group)
        if text and plain_rst(text) != text:
            group.help = plain_rst(text)
        if group.typer_instance is not None:
            plain_help(group.typer_instance)


def _kind(kind: str) -> str:
    k = kind.strip().lower()
    if k in KINDS:
        return k
    for name, plural in KINDS.items():
        if k in (name + "s", plural, plural.replace(" ", "-"), plural.split()[-1]) and len(k) > 2:
            return name
    raise unknown_name("kind", kind, KINDS)


# ---------------------------------------------------------------------------------------------------------------
# list / plugins
# ---------------------------------------------------------------------------------------------------------------


@app.command("list")
@handle_errors
def list_cmd(
    kind: Annotated[Optional[str], typer.Argument(help="Only this kind (method, backbone, kernel, ...).")] = None,
    name: Annotated[Optional[str], typer.Argument(help="Show one component's options in detail.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List registered components: methods, backbones, kernels, divergences, schedules, integrators, data sets,
    metrics and feature extractors, with the plugin (and version) each came from."""
    state = _state()
    reg = state.registry
    kinds = [_kind(kind)] if kind else list(KINDS)
    if name is not None:
        _show_component(reg, kinds[0], name, as_json)
        return
    entries = [e for k in kinds for e in reg.entries(k)]
    refused = [r for r in reg.refused if r.kind in kinds]
    errors = state.errors()
    if as_json:
        out = {
            "components": [
                {"kind": e.kind, "name": e.name, "summary": e.summary, "plugin": e.plugin, "version": e.version}
                for e in entries
            ],
            "refused": [{"kind": r.kind, "name": r.name, "plugin": r.plugin, "owner": r.owner} for r in refused],
            "errors": [{"plugin": p, "error": m} for p, m in errors],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    for k in kinds:
        rows = [e for e in entries if e.kind == k]
        table = Table(title=KINDS[k].capitalize(), title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("summary")
        table.add_column("plugin", style="dim", no_wrap=True)
        for e in rows:
            table.add_row(e.name, e.summary, f"{e.plugin} {e.version or ''}".strip())
        if not rows:
            table.add_row("(none)", "", "")
        console.print(table)
        for r in refused:
            if r.kind == k:
                console.print(f"[yellow]{k} {escape(r.name)} from plugin {escape(repr(r.plugin))} refused:[/] name "
                              f"taken by {escape(r.owner)}", highlight=False, soft_wrap=True)
        console.print()
    for plugin, msg in errors:
        console.print(f"[yellow]plugin {escape(repr(plugin))} failed:[/] {escape(msg)}", highlight=False, soft_wrap=True)


def _show_component(reg: Any, kind: str, name: str, as_json: bool) -> None:
    entry = reg.get(kind, name)
    obj = entry.load()
    if kind == "method":
        from .config import defaults

        opts = defaults(obj.Config)
    else:
        opts = {k: (p.default if p.default is not inspect.Parameter.empty else None) for k, p in entry.options().items()}
    doc = plain_rst(inspect.getdoc(obj) or entry.summary)
    if as_json:
        typer.echo(json.dumps({"kind": kind, "name": name, "plugin": entry.plugin, "doc": doc, "options": opts},
                              indent=2, default=str))
        return
    console.print(f"[bold]{kind} {name}[/]  [dim]({entry.plugin} {entry.version or ''})[/]")
    console.print(doc, highlight=False, markup=False)
    for r in reg.refused:
        if (r.kind, r.name) == (kind, name):
            console.print(f"[yellow]plugin {escape(repr(r.plugin))} also registered this name; it was refused.[/]",
                          highlight=False, soft_wrap=True)
    if opts:
        from .config import dumps_toml

        console.print("\n[bold]options[/] (defaults, TOML):")
        console.print(dumps_toml(opts), highlight=False, markup=False)


@app.command("plugins")
@handle_errors
def plugins_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Installed plugins with their versions, hooks and load errors."""
    state = _state()
    infos = list(state.infos.values())
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("plugin", "version", "distribution", "hooks", "status"):
        table.add_column(col)
    for i in infos:
        colour = "red" if i.error else "yellow" if i.refused else None
        status = f"[{colour}]{escape(i.status)}[/]" if colour else i.status
        table.add_row(i.name, i.version or "", i.distribution or "", ", ".join(i.hooks), status)
    console.print(table)


# ---------------------------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------------------------

@app.command("train")
@handle_errors
@multi_process
def train_cmd(
    method: Annotated[str, typer.Argument(help="Method name (see `gflowzoo list method`).")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Data set name (default: digits).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="A TOML config file.")] = None,
    sets: SetOpt = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Total training steps of the run.")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", help="Stop after this many minutes.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default: runs/<method>-<data>-<time>).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint.")] = False,
    preset: Annotated[Optional[str], typer.Option("--preset", help="auto (by device), paper or cpu-quick.")] = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Folder holding data sets (else $GFLOWZOO_DATA).")] = None,
    no_progress: NoProgressOpt = False,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Evaluate (cheaply) every K steps; logged to metrics.jsonl.")] = None,
) -> None:
    """Train a method and write a run directory (config.toml, checkpoints/, samples/, metrics.jsonl).

    Several processes: torchrun --nproc-per-node N -m gflowzoo train ... (data-parallel; the batch options are per
    process; see docs/distributed.md)."""
    from . import distributed as dist
    from .runner import prepare_run, resume_payload, train_run

    state = _state()
    # rank 0 resolves the configuration and checks the run directory; its outcome (or error) goes to all ranks
    spec, run = dist.on_main(lambda: prepare_run(
        state.registry, method, dataset=dataset, config=config, sets=sets, steps=steps, minutes=minutes, out=out,
        device=device, seed=seed, resume=resume, preset=preset, data_root=data_root, eval_every=eval_every))
    # several processes: rank 0 reads the checkpoint and hands it to the others (no shared file system needed)
    payload = dist.on_main(lambda: resume_payload(run, spec, reporter)) if resume else None
    outcome = train_run(state.registry, run, spec, payload=payload, reporter=reporter, progress=not no_progress)
    result = outcome.result
    if result.interrupted:
        console.print(f"interrupted at step {result.step}; checkpoint saved: {result.checkpoint}")
        console.print(f"continue with: gflowzoo train {spec.method} --out {run.path} --resume")
        raise typer.Exit(130)
    if not dist.is_main():  # rank 0 reports
        return
    info = getattr(outcome.method, "sampling_info", lambda: {})()
    console.print(f"done: {result.step} steps in {result.elapsed:.1f}s; checkpoint {result.checkpoint}")
    if info:
        console.print("sampler: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    console.print(f"samples: {result.grid}")


# ---------------------------------------------------------------------------------------------------------------
# sample
# ---------------------------------------------------------------------------------------------------------------


def load_run(run_dir: Path, sets: list[str] | None = None, device: str | None = None, checkpoint: Path | None = None):
    """:func:`gflowzoo.runner.load_run` with the CLI's :data:`reporter` (a skipped damaged checkpoint is a one-line
    warning on stderr): ``(spec, method, payload)``. For commands; other code calls the run service directly."""
    from .runner import load_run as load

    return load(run_dir, sets, device, checkpoint, registry=_state().registry, reporter=reporter)


#: Picture formats ``gflowzoo sample --out`` writes (through Pillow).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf")


def _default_sample_png(run_dir: Path, seed: int) -> Path:
    """Where ``gflowzoo sample`` writes its picture without ``--out`` (the run directory must exist)."""
    from .runs import RunDir

    return RunDir(run_dir).require().samples_dir / f"sample-seed{seed}.png"


@app.command("sample")
@handle_errors
@multi_process
def sample_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `gflowzoo train`.")],
    n: Annotated[int, typer.Option("--n", "-n", help="Number of samples.")] = 64,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="PNG file (default: RUN/samples/sample-<seed>.png).")] = None,
    raw: Annotated[Optional[Path], typer.Option("--raw", help="Also save raw samples: a .pt or .npy path.")] = None,
    sets: SetOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="A specific checkpoint file.")] = None,
    batch: Annotated[
        int, typer.Option("--batch", help="Samples drawn per call of the method: memory holds one batch's "
                                          "activations (rounded to whole particle batches).")
    ] = 5000,
    no_progress: NoProgressOpt = False,
) -> None:
    """Draw samples from a trained run and write a PNG grid (the first 1,024 images, or all 2-D points) and, on
    request, raw samples (.npy: written batch by batch; .pt: assembled in memory). Under torchrun every process
    draws its share (docs/distributed.md) and rank 0 writes."""
    import torch

    from . import distributed as dist
    from .progress import SampleProgress, track_pieces
    from .runs import RunDir
    from .sampling import SampleWriter, check_raw_path, piece_size, sample_pieces
    from .viz import samples_picture, save_samples

    if n < 1:
        raise UserError("--n must be at least 1.")
    if batch < 1:
        raise UserError("--batch must be at least 1.")
    check_raw_path(raw)  # before any work
    if out is not None and out.suffix.lower() not in IMAGE_SUFFIXES:
        hint = f" For raw samples use --raw {out}." if out.suffix in (".pt", ".npy") else ""
        raise UserError(f"--out is the picture: it must end in {', '.join(IMAGE_SUFFIXES)}; got {out.name!r}.{hint}")
    check_writable(out if out is not None else _default_sample_png(run_dir, seed), "--out")  # before any work
    spec, method, payload = dist.agree(lambda: load_run(run_dir, sets, device, checkpoint))
    console.print(f"checkpoint: {payload['checkpoint_path']} (step {payload.get('step', '?')})", highlight=False,
                  soft_wrap=True)
    if dist.world() > 1:
        x = dist.sample_shards(method, n, seed)
        if x is None:  # a rank other than 0: its share went to rank 0
            return
        pieces: Any = [x]
    else:  # one process: batch by batch; n <= batch is exactly method.sample(n, Generator().manual_seed(seed))
        pieces = sample_pieces(method, n, torch.Generator().manual_seed(seed), batch)
    writer = SampleWriter(n, tuple(method.data.shape), method.data.kind, raw)
    # a bar over the samples drawn (on stderr; a plain line at intervals when it is not a terminal)
    with SampleProgress(f"sample {spec.method}", console=err_console, transient=True, enabled=not no_progress) as bar:
        bar.start(n)
        if dist.world() == 1:
            pieces = track_pieces(pieces, n, piece_size(method, batch), bar.update)
        for x in pieces:
            writer.add(x)
    writer.close()
    title = f"{spec.method} samples"
    if out is None:  # a file of the run: written through its RunDir
        path = RunDir(run_dir).save_grid(_default_sample_png(run_dir, seed).name,
                                         samples_picture(writer.kept(), method.data, title=title))
    else:
        path = save_samples(writer.kept(), method.data, out, title=title)
    info = getattr(method, "sampling_info", lambda: {})()
    if info:
        console.print("sampler: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    if raw is not None:
        console.print(f"raw samples: {raw}")
    console.print(f"samples: {path}")


# ---------------------------------------------------------------------------------------------------------------


from . import cli_eval  # noqa: E402

# the commands evaluate, compare and extractor, in this order after sample
app.registered_commands += cli_eval.commands.registered_commands
app.registered_groups += cli_eval.commands.registered_groups

from . import cli_autoencoder  # noqa: E402

# the command group autoencoder (latent spaces), after extractor
app.registered_groups += cli_autoencoder.commands.registered_groups


def build_app() -> typer.Typer:
    """The root app with every plugin's commands added (plugins are loaded here, not at import)."""
    state = _state()
    if not getattr(app, "_gflowzoo_plugin_commands", False):
        for impl in state.pm.hook.gflowzoo_register_commands.get_hookimpls():
            try:
                impl.function(app=app)
            except Exception as exc:  # noqa: BLE001 - a plugin must not break the CLI
                info = state.infos.get(impl.plugin_name)
                if info is not None:
                    info.error = f"commands failed: {type(exc).__name__}: {exc}"
        plain_help(app)
        app._gflowzoo_plugin_commands = True  # type: ignore[attr-defined]
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        build_app()(args=argv, prog_name="gflowzoo")
    except GflowzooError as exc:  # raised outside a command (e.g. while loading plugins)
        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
