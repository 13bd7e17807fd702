"""The ``gflowzoo`` command line (typer + rich).

Nothing heavy is imported at module level: ``gflowzoo --help`` and ``gflowzoo list`` never import torch. Commands
import what they need inside their bodies.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import CheckpointError, ConfigError, GflowzooError, UserError, unknown_name
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
console = Console()
err_console = Console(stderr=True)


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


def handle_errors(fn):
    """Turn gflowzoo's own errors into a one-block message and an exit code (2 for user mistakes)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GflowzooError as exc:
            if not getattr(exc, "quiet", False):  # quiet: rank 0 of a multi-process run reports it
                err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def multi_process(fn):
    """Run a command inside :func:`gflowzoo.distributed.session` (joins the process group under torchrun; nothing
    happens in one process), with stdout quiet on ranks other than 0."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from . import distributed as dist

        with dist.session(), _other_ranks_quiet():
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _other_ranks_quiet():
    """Ranks other than 0 of a multi-process run print nothing on stdout for the block."""
    from . import distributed as dist

    old = console.quiet
    console.quiet = old or not dist.is_main()
    try:
        yield
    finally:
        console.quiet = old


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

SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config key: --set lr=1e-4 --set backbone.width=64 (repeatable)."),
]


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
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Do not draw a progress bar.")] = False,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Evaluate (cheaply) every K steps; logged to metrics.jsonl.")] = None,
) -> None:
    """Train a method and write a run directory (config.toml, checkpoints/, samples/, metrics.jsonl).

    Several processes: torchrun --nproc-per-node N -m gflowzoo train ... (data-parallel; the batch options are per
    process; see docs/distributed.md)."""
    from . import distributed as dist

    state = _state()
    # rank 0 resolves the configuration and checks the run directory; its outcome (or error) goes to all ranks
    spec, run = dist.on_main(lambda: _prepare_training(
        state.registry, method, dataset, config, sets, steps, minutes, out, device, seed, resume, preset, data_root,
        eval_every))
    _run_training(state, run, spec, resume, not no_progress)


def _prepare_training(reg: Any, method: str, dataset: Optional[str], config: Optional[Path], sets: Optional[list[str]],
                      steps: Optional[int], minutes: Optional[float], out: Optional[Path], device: Optional[str],
                      seed: Optional[int], resume: bool, preset: Optional[str], data_root: Optional[Path],
                      eval_every: Optional[int]) -> tuple[Any, Any]:
    """The resolved :class:`~gflowzoo.session.RunSpec` and the :class:`~gflowzoo.runs.RunDir` of ``train``."""
    from .runs import RunDir, default_run_dir
    from .session import resolve

    reg.get("method", method)
    overrides: dict[str, Any] = {}
    run_over: dict[str, Any] = {}
    if steps is not None and minutes is not None:
        run_over.update(steps=steps, minutes=minutes)
    elif steps is not None:
        run_over.update(steps=steps, minutes=0.0)
    elif minutes is not None:
        run_over.update(minutes=minutes, steps=10**9)
    if eval_every is not None:
        run_over["eval_every"] = eval_every
    if run_over:
        overrides["run"] = run_over
    if device is not None:
        overrides["device"] = device
    if seed is not None:
        overrides["seed"] = seed
    if data_root is not None:
        overrides["data_root"] = str(data_root)

    if resume:
        if out is None:
            raise UserError("--resume needs --out RUN_DIR (the run to continue).")
        run = RunDir(out)
        if not run.path.exists():
            raise UserError(f"Run directory not found: {out}. To start a new run there, leave out --resume.")
        if run.is_blank():  # empty, or what a run killed before it wrote its configuration leaves
            raise UserError(f"{out} holds no run to continue (no config.toml: none was started there, or it was "
                            "stopped before it wrote its configuration); start it without --resume.")
        run.require()
        saved = run.read_config()
        if saved.get("method") != method:
            raise UserError(f"{out} is a run of method {saved.get('method')!r}, not {method!r}.")
        if dataset is not None and dataset != saved.get("dataset"):
            raise UserError(f"{out} was trained on {saved.get('dataset')!r}; --dataset {dataset} cannot change that.")
        bad = [s for s in (sets or []) if not s.split("=", 1)[0].strip().startswith(("run.", "device", "data_root"))]
        if bad or config is not None:
            raise UserError(
                "On --resume only run.* keys, --steps/--minutes, --device and --data-root may change; "
                f"the method's configuration is fixed by {run.config_path}."
            )
        spec = _resolve_saved(reg, run, saved, sets, overrides)
    else:
        run = RunDir(out) if out is not None else None
        spec = resolve(reg, method, dataset, config_file=config, sets=sets, overrides=overrides, preset=preset)
        if run is None:
            run = RunDir(default_run_dir(method, spec.dataset))
        check_writable(run.path, "the run directory", folder=True)
        if run.exists():
            raise UserError(f"{run.path} already exists and is not empty. Use --resume to continue it, or another --out.")
        if not run.is_blank():  # empty folders and an empty log (a run killed at its start) are no loss
            raise UserError(f"{run.path} already exists, is not empty and holds no gflowzoo run (no config.toml). "
                            "Use another --out.")
    return spec, run


def _no_checkpoint_error(run: Any, method: str, exc: Any) -> CheckpointError:
    """The error for a run without a checkpoint that loads (a :class:`~gflowzoo.runs.NoCheckpoint`), with the
    command that continues it."""
    resume = f"`gflowzoo train {method} --out {shlex.quote(str(run.path))} --resume`"
    if not exc.damaged:
        return CheckpointError(f"{run.path} has no checkpoint yet (it was stopped before its first one); "
                               f"continue it with {resume}.")
    return CheckpointError(f"Every checkpoint of {run.path} is damaged ({'; '.join(exc.damaged)}); move them out of "
                           f"{run.checkpoint_dir}, then start the run again from step 0 with {resume}.")


def _load_resume_payload(run: Any, spec: Any) -> dict[str, Any] | None:
    """The checkpoint to resume from, or ``None`` (start from step 0) when the run has none yet."""
    from .runs import NoCheckpoint
    from .trainer import check_resume_target

    run.remove_temp_files()  # what a kill in the middle of a write left
    if not run.checkpoints():
        console.print(f"{run.path} has no checkpoint yet (killed before its first one?): starting it from step 0 "
                      "with its saved configuration.", highlight=False, soft_wrap=True)
        return None
    try:
        path, payload = run.latest_checkpoint(spec.method)
    except NoCheckpoint as exc:
        raise _no_checkpoint_error(run, spec.method, exc) from None
    for skipped in payload.get("skipped", []):
        err_console.print(f"[yellow]skipped a damaged checkpoint:[/] {skipped}", highlight=False)
    check_resume_target(spec, payload)
    console.print(f"resuming {run.path} from step {payload['step']} ({path.name})")
    return payload


def _run_training(state: Any, run: Any, spec: Any, resume: bool, progress: bool) -> None:
    from . import distributed as dist
    from .session import build_method, resolve_device
    from .trainer import train

    main = dist.is_main()
    # several processes: rank 0 reads the checkpoint and hands it to the others (no shared file system needed)
    payload = dist.on_main(lambda: _load_resume_payload(run, spec)) if resume else None

    def build() -> tuple[str, Any, Any]:
        # build the method and touch the data before writing anything, so a failed start leaves no run directory
        device = resolve_device(spec.device)
        if dist.world() > 1 and device.startswith("cuda"):  # one GPU per process
            import torch

            if dist.local_rank() >= torch.cuda.device_count():
                raise UserError(f"Process {dist.local_rank()} of this machine has no GPU of its own "
                                f"({torch.cuda.device_count()} visible): start at most that many processes per "
                                "machine, or train on the CPU (--device cpu).")
            device = f"cuda:{dist.local_rank()}"
        method = build_method(state.registry, spec, device)
        _ = method.data.shape  # fail early, with a clear message, when the data is missing
        dist.check_support(method, spec.method)
        on_eval = None
        if spec.run.eval_every and main:  # in-training evaluation (rank 0); a missing extractor fails here
            from .evaluate import training_hook

            on_eval = training_hook(spec, method, state.registry, say=lambda s: console.print(s, highlight=False))
        return device, method, on_eval

    device, method, on_eval = dist.agree(build)  # any rank's failure stops every rank
    if main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(spec.to_data())
    where = f"{dist.world()} processes ({device})" if dist.world() > 1 else device
    console.print(
        f"training [bold]{spec.method}[/] on [bold]{spec.dataset}[/] ({spec.preset}) on {where}; run: {run.path}",
        highlight=False,
    )
    result = train(run, spec, method, resume_payload=payload, console=console, progress=progress, on_eval=on_eval)
    if result.interrupted:
        console.print(f"interrupted at step {result.step}; checkpoint saved: {result.checkpoint}")
        console.print(f"continue with: gflowzoo train {spec.method} --out {run.path} --resume")
        raise typer.Exit(130)
    if not main:  # rank 0 reports
        return
    info = getattr(method, "sampling_info", lambda: {})()
    console.print(f"done: {result.step} steps in {result.elapsed:.1f}s; checkpoint {result.checkpoint}")
    if info:
        console.print("sampler: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    console.print(f"samples: {result.grid}")


# ---------------------------------------------------------------------------------------------------------------
# sample
# ---------------------------------------------------------------------------------------------------------------


def _resolve_saved(reg: Any, run: Any, saved: dict[str, Any], sets: list[str] | None,
                   overrides: dict[str, Any]) -> Any:
    """The spec of a saved run (``config.toml`` plus ``--set`` items and ``overrides``). An invalid value is a
    :class:`ConfigError` naming the file when the file is at fault; a bad ``--set`` item is reported as itself."""
    from .session import resolve

    def resolve_with(extra: list[str] | None) -> Any:
        return resolve(reg, saved.get("method"), saved.get("dataset"), base=saved, sets=extra, overrides=overrides)

    try:
        return resolve_with(sets)
    except ConfigError as exc:
        blame = exc
        if sets:  # the --set items or the saved file: the file alone decides
            try:
                resolve_with(None)
            except ConfigError as file_exc:
                blame = file_exc
            else:
                raise
        raise ConfigError(f"{run.config_path}: {blame}") from None


def load_run(run_dir: Path, sets: list[str] | None = None, device: str | None = None, checkpoint: Path | None = None):
    """Rebuild a trained method from a run directory: ``(spec, method, payload)``. ``sets`` may change sampling
    options (any key of the method's config) without retraining.

    ``payload["checkpoint_path"]`` is the checkpoint file used. Without ``checkpoint``, that is the newest one that
    loads: each newer, damaged one is skipped with a one-line warning on stderr (``payload["skipped"]`` holds why).
    An invalid value in the run's ``config.toml`` is a :class:`ConfigError` naming the file."""
    from . import distributed as dist
    from .data import DataHandle
    from .runs import NoCheckpoint, RunDir, load_checkpoint
    from .session import build_method, resolve_device

    state = _state()
    run = RunDir(run_dir).require()
    saved = run.read_config()
    method = saved.get("method")
    if not isinstance(method, str):
        raise UserError(f"{run.config_path} names no method.")
    overrides = {"device": device} if device else {}
    spec = _resolve_saved(state.registry, run, saved, sets, overrides)
    if checkpoint is not None:
        path, payload = Path(checkpoint), load_checkpoint(checkpoint, method)
    else:
        try:
            path, payload = run.latest_checkpoint(method)
        except NoCheckpoint as exc:
            raise _no_checkpoint_error(run, method, exc) from None
        if dist.is_main():
            for skipped in payload.get("skipped", []):
                err_console.print(f"[yellow]warning:[/] skipped a damaged checkpoint: {escape(skipped)}",
                                  highlight=False, soft_wrap=True)
    payload["checkpoint_path"] = str(path)
    dev = resolve_device(spec.device)
    data = DataHandle(spec.dataset, spec.data_root, tuple(payload["data"]["shape"]), payload["data"]["kind"], state.registry)
    m = build_method(state.registry, spec, dev, data)
    m.load_state_dict(payload["state"])
    return spec, m, payload


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
) -> None:
    """Draw samples from a trained run and write a PNG grid (the first 1,024 images, or all 2-D points) and, on
    request, raw samples (.npy: written batch by batch; .pt: assembled in memory). Under torchrun every process
    draws its share (docs/distributed.md) and rank 0 writes."""
    import torch

    from . import distributed as dist
    from .progress import SampleProgress, track_pieces
    from .sampling import SampleWriter, check_raw_path, piece_size, sample_pieces
    from .viz import save_samples

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
    with SampleProgress(f"sample {spec.method}", console=err_console, transient=True) as bar:
        bar.start(n)
        if dist.world() == 1:
            pieces = track_pieces(pieces, n, piece_size(method, batch), bar.update)
        for x in pieces:
            writer.add(x)
    writer.close()
    out = out or _default_sample_png(run_dir, seed)
    path = save_samples(writer.kept(), method.data, out, title=f"{spec.method} samples")
    info = getattr(method, "sampling_info", lambda: {})()
    if info:
        console.print("sampler: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    if raw is not None:
        console.print(f"raw samples: {raw}")
    console.print(f"samples: {path}")


# ---------------------------------------------------------------------------------------------------------------


from . import cli_eval  # noqa: E402,F401  (registers evaluate, compare and extractor on app)


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
