"""Commands ``gflowzoo evaluate``, ``gflowzoo compare`` and ``gflowzoo extractor ...``.

The commands are collected on :data:`commands`, which :mod:`gflowzoo.cli` adds to its root ``app``; like it, this
module imports only typer and rich at the top (torch, torch-fidelity and matplotlib load inside the commands).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .cli_common import NoProgressOpt, SetOpt, console, err_console, handle_errors, multi_process, reporter
from .compare import DEFAULT_EVAL_POINTS, DEFAULT_SEEDS  # stdlib-only module: cheap at start-up
from .errors import UserError
from .paths import check_writable

MetricsOpt = Annotated[
    Optional[str],
    typer.Option("--metrics", "-m", help="Comma-separated metric names (see `gflowzoo list metric`); default by data."),
]
ExtractorOpt = Annotated[
    Optional[str],
    typer.Option("--extractor", help="Feature extractor for image metrics (see `gflowzoo list feature-extractor`)."),
]
WeightsOpt = Annotated[
    Optional[Path],
    typer.Option("--extractor-weights", "--inception-weights",
                 help="Weights file of the feature extractor (e.g. weights-inception-2015-12-05-6726825d.pth)."),
]
FitOpt = Annotated[
    bool, typer.Option("--fit-extractor", help="Train a missing gflowzoo extractor now (minutes for MNIST on a CPU)."),
]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]

#: The commands of this module (``evaluate``, ``compare`` and the ``extractor`` group), added to the root app by
#: :mod:`gflowzoo.cli`.
commands = typer.Typer()


def _metric_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError("--metrics is empty.")
    return names


def _values_table(values: dict[str, float]) -> Table:
    from .report import fmt

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("metric", style="bold cyan")
    table.add_column("value", justify="right")
    for k, v in values.items():
        if k.endswith("_std"):
            continue
        table.add_row(k, fmt(v, values.get(f"{k}_std"), 5))
    return table


# ---------------------------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------------------------


@commands.command("evaluate")
@handle_errors
@multi_process
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `gflowzoo train`.")],
    metrics: MetricsOpt = None,
    n: Annotated[
        Optional[int], typer.Option("--n", "-n", help="Number of generated samples (default by data).")
    ] = None,
    extractor: ExtractorOpt = None,
    extractor_weights: WeightsOpt = None,
    fit_extractor: FitOpt = False,
    ref_split: Annotated[Optional[str], typer.Option("--ref-split", help="Reference split (train or test).")] = None,
    sets: SetOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling and metric seed.")] = 0,
    device: DeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Sample from a trained run, compute metrics, print them and write RUN_DIR/eval-<protocol-key>.json (numbers
    plus the whole protocol: sample count, extractor and its weights hash, reference, seed, sampler settings)."""
    from .progress import SampleProgress
    from .runner import evaluate_run
    from .runs import RunDir

    if n is not None and n < 2:
        raise UserError("--n must be at least 2.")
    run = RunDir(run_dir).require()
    check_writable(run.path, "the run directory", folder=True)  # eval-<key>.json goes there; before any work
    # a bar over the samples drawn (then the metric being computed), on stderr; plain lines when not a terminal
    with SampleProgress("evaluate", console=err_console, transient=True, enabled=not (as_json or no_progress)) as bar:
        res, path = evaluate_run(
            run_dir, metrics=_metric_list(metrics), n=n, seed=seed, extractor=extractor,
            extractor_weights=str(extractor_weights) if extractor_weights else None, ref_split=ref_split, sets=sets,
            device=device, fit_extractor=fit_extractor, say=reporter.note, on_stage=bar.stage,
            evaluator_ready=lambda ev: bar.start(ev.n), on_progress=bar.update, reporter=reporter,
        )
    if res is None:  # a rank other than 0 of a multi-process evaluation: rank 0 reports
        return
    if as_json:
        typer.echo(json.dumps({**res.to_json(), "file": str(path)}, indent=2, default=str))
        return
    p = res.protocol
    ext = p.get("extractor")
    console.print(f"checkpoint: {p['run']['checkpoint']} (step {p['run']['step']})", highlight=False, soft_wrap=True)
    console.print(
        f"[bold]{p['run']['method']}[/] step {p['run']['step']} on {p['dataset']}: n={p['n']}, seed={p['seed']}, "
        f"reference {p['reference']['split']} ({p['reference']['n']} items)"
        + (f", extractor {ext['name']} (sha256 {ext['sha256'][:12]})" if ext else ""),
        highlight=False,
    )
    console.print(_values_table(res.values))
    sampler = ", ".join(f"{k}={v}" for k, v in p.get("sampler", {}).items() if k != "sets")
    console.print(f"sampling: {res.timing['sampling_s']:.2f}s ({res.timing['samples_per_s']:.1f} samples/s)"
                  + (f"; {sampler}" if sampler else "") + f"; metrics: {res.timing['metrics_s']:.2f}s", highlight=False)
    console.print(f"written: {path}")


# ---------------------------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------------------------


@commands.command("compare")
@handle_errors
def compare_cmd(
    methods: Annotated[Optional[list[str]], typer.Argument(help="Methods to train and compare.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Data set (default: digits).")] = None,
    budget: Annotated[
        Optional[str], typer.Option("--budget", help="Wall-clock budget per run, in-training evaluations included "
                                                     "(the final evaluation comes on top): 90s, 10m, 1h (default 1m).")
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option("--steps", help="Train each run for this many steps instead of a time budget.")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per method (0..K-1).")] = DEFAULT_SEEDS,
    runs: Annotated[
        Optional[list[Path]], typer.Option("--runs", help="Existing run directories to include (repeatable).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output folder (default runs/compare-<data>-<time>).")
    ] = None,
    sets: SetOpt = None,
    metrics: MetricsOpt = None,
    n: Annotated[
        Optional[int], typer.Option("--n", "-n", help="Samples per final evaluation (default by data).")
    ] = None,
    extractor: ExtractorOpt = None,
    extractor_weights: WeightsOpt = None,
    fit_extractor: FitOpt = False,
    eval_points: Annotated[int, typer.Option("--eval-points", help="In-training evaluations per run (0: none).")] = DEFAULT_EVAL_POINTS,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Folder holding data sets.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="auto (by device), paper or cpu-quick.")] = None,
    no_progress: NoProgressOpt = False,
) -> None:
    """Train METHODs on the same data with the same budget and seeds, evaluate all with one protocol, print a table
    and write a report folder (report.md, self-contained report.html, results.json). Ctrl-C keeps finished runs
    and writes a partial report; running the same command again completes it."""
    from .compare import Comparison, parse_budget
    from .report import table_rows

    cmp = Comparison(
        methods or [], dataset=dataset, budget_minutes=parse_budget(budget) if budget else None, steps=steps,
        seeds=seeds, runs=runs or [], out=out, sets=sets or [], metrics=_metric_list(metrics), n=n,
        extractor=extractor, extractor_weights=str(extractor_weights) if extractor_weights else None,
        fit_extractor=fit_extractor, eval_points=eval_points, device=device,
        data_root=str(data_root) if data_root else None, preset=preset, reporter=reporter, progress=not no_progress,
    )
    # before any training: the report folder, and the given runs (their evaluations are written into them)
    check_writable(cmp.out, "--out" if out is not None else "the report folder", folder=True)
    for given in cmp.given:
        check_writable(given.path, "the run directory (--runs)", folder=True)
    result = cmp.run()
    header, rows = table_rows(result.summary())
    table = Table(title=f"{result.options['dataset']}: mean ± std over seeds", title_justify="left")
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right", style="bold cyan" if i == 0 else None)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"report: {result.report['html']}  ({result.report['markdown']}, {result.report['json']})")
    if result.interrupted:
        console.print("interrupted: the report is partial; run the same command again to finish the comparison.")
        raise typer.Exit(130)


# ---------------------------------------------------------------------------------------------------------------
# extractor
# ---------------------------------------------------------------------------------------------------------------

extractor_app = typer.Typer(help="Feature extractors that gflowzoo trains itself (for FID/KID on small data).",
                            no_args_is_help=True, rich_markup_mode=None)
commands.add_typer(extractor_app, name="extractor")


@extractor_app.command("fit")
@handle_errors
def extractor_fit_cmd(
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", "-d", help="digits, mnist, fashion-mnist or cifar10.")
    ] = None,
    name: Annotated[
        Optional[str], typer.Option("--name", help="Extractor name instead of --dataset (e.g. lenet-mnist).")
    ] = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Folder holding data sets.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default per extractor).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Training seed (default 0).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Train again even if the file exists.")] = False,
) -> None:
    """Train a classifier on a data set's training split, report its test accuracy, and cache it
    ($GFLOWZOO_CACHE/extractors or ~/.cache/gflowzoo/extractors) for FID/KID features."""
    from .metrics.classifier import SPECS
    from .metrics.extractors import extractor_dir, extractor_for_dataset, file_sha256, fit_extractor
    from .plugins import get_registry
    from .session import resolve_device

    if name is None and dataset is None:
        raise UserError("Give --dataset (digits, mnist, fashion-mnist, cifar10) or --name.")
    if name is None:
        name = extractor_for_dataset(dataset)
    elif name not in SPECS:
        from .errors import unknown_name

        raise unknown_name("trainable feature extractor", name, SPECS)
    elif dataset is not None and SPECS[name].dataset != dataset:
        raise UserError(f"{name} is trained on {SPECS[name].dataset}, not {dataset}.")
    if epochs is not None and epochs < 1:
        raise UserError("--epochs must be at least 1.")
    spec = SPECS[name].with_recipe(epochs=epochs, seed=seed)
    path = extractor_dir() / f"{name}-{spec.recipe_hash()}.pt"
    if path.is_file() and not force:
        console.print(f"{name} is already trained: {path} (use --force to train again)")
        return
    check_writable(path, "the extractor file")  # before any training
    dev = resolve_device(device)
    console.print(f"training {name} on {spec.dataset} ({spec.recipe['epochs']} epochs) on {dev}", highlight=False)
    res = fit_extractor(name, data_root=str(data_root) if data_root else None, epochs=epochs, seed=seed, device=dev,
                        registry=get_registry(), say=lambda s: console.print(s, highlight=False))
    console.print(f"test accuracy: [bold]{100 * res.test_accuracy:.2f}%[/]  ({res.seconds:.1f}s)")
    console.print(f"saved: {res.path} (sha256 {file_sha256(res.path)[:16]})")


@extractor_app.command("list")
@handle_errors
def extractor_list_cmd() -> None:
    """The trained extractor files in the cache, with their test accuracy and hash."""
    from .metrics.classifier import load_classifier
    from .metrics.extractors import extractor_dir, file_sha256

    folder = extractor_dir()
    files = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    table = Table(show_edge=False, pad_edge=False)
    for col in ("file", "extractor", "data set", "test accuracy", "sha256"):
        table.add_column(col)
    for f in files:
        try:
            _, p = load_classifier(f)
            table.add_row(f.name, p.get("name", "?"), p.get("dataset", "?"), f"{100 * p.get('test_accuracy', 0):.2f}%",
                          file_sha256(f)[:16])
        except UserError as exc:
            table.add_row(f.name, "[red]unreadable[/]", "", "", str(exc)[:40])
    console.print(f"extractor cache: {folder}")
    console.print(table)
