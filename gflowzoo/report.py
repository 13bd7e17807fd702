"""The report of ``gflowzoo compare``: ``report.md``, a self-contained ``report.html`` (pictures embedded as base64),
``results.json`` and the pictures (``report-files/``): sample grids side by side, metric-versus-wall-clock curves from
the in-training evaluations and loss curves. Plots are drawn with matplotlib's Agg backend. Every file is written
atomically (:func:`gflowzoo.runs.atomic_write_bytes`); the layout of the folder is in docs/runs.md.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from .runs import RECORD_FACTS, RunDir, atomic_write_bytes


def fmt(value: Any, std: Any = None, digits: int = 4) -> str:
    """``mean ± std`` with ``digits`` significant digits (``-`` for a missing value)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if not isinstance(value, (int, float)):
        return str(value)
    s = f"{value:.{digits}g}"
    if std is not None and isinstance(std, (int, float)) and math.isfinite(std):
        s += f" ± {std:.2g}"
    return s


def fmt_duration(seconds: float | None) -> str:
    """``0.042 s``, ``4.2 s``, ``42 s``, ``3.1 min``, ``25 min``, ``1.5 h`` (``-`` for ``None``)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        minutes = seconds / 60
        return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
    return f"{seconds / 3600:.1f} h"


def table_rows(summary: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (shared by the terminal, Markdown and HTML)."""
    keys: list[str] = []
    for row in summary:
        keys += [k for k in row["metrics"] if k not in keys]
    header = ["method", "runs", "train s", "steps", "NFE", "samples/s", "final eval s", *keys]
    rows = []
    for row in summary:
        rows.append([
            row["label"], str(row["runs"]), fmt(row["train_seconds"], row["train_seconds_std"], 3),
            fmt(row["steps"], None, 6), fmt(row["nfe"]), fmt(row["samples_per_s"], row["samples_per_s_std"], 3),
            fmt(row.get("eval_seconds"), row.get("eval_seconds_std"), 3),
            *[fmt(row["metrics"].get(k, {}).get("mean"), row["metrics"].get(k, {}).get("std")) for k in keys],
        ])
    return header, rows


def training_sampler_line(records: list[Any]) -> str | None:
    """What the in-training curves used, per label (``dmmd NFE 100 (20 levels, 500 particles) with n = 500``), and
    that the final evaluation uses the full sampler; ``None`` without in-training evaluations."""
    parts = []
    for label in dict.fromkeys(r.label for r in records):
        t = next((r.training_eval for r in records if r.label == label and r.training_eval.get("n")), None)
        if t is None:
            continue
        cheap = ", ".join(f"{t[k]} {k}" for k in ("levels", "particles") if k in t)
        nfe = f" NFE {t['nfe']}" if t.get("nfe") is not None else ""
        parts.append(f"{label}{nfe}{f' ({cheap})' if cheap else ''} with n = {t['n']:,} samples")
    if not parts:
        return None
    return ("In-training curves use " + "; ".join(parts) + "; the final evaluation uses the full sampler "
            "(NFE in the table) with the protocol's n.")


def run_line(rec: Any) -> str:
    """One run of the report's run list: where it is, its in-training evaluations and its final evaluation's time."""
    line = f"{rec.label} seed {rec.seed}: {rec.path} (evaluation: {rec.eval_file})"
    t = rec.training_eval
    if t:
        line += f"; {t.get('evaluations', 0)} in-training evaluations"
        if t.get("skipped"):
            line += f" ({t['skipped']} skipped: not enough budget left)"
    if rec.final_eval_seconds is not None:
        line += f"; final evaluation {fmt_duration(rec.final_eval_seconds)}"
        if rec.final_eval_estimate_s is not None:
            line += f" (estimated {fmt_duration(rec.final_eval_estimate_s)})"
    return line


# ---------------------------------------------------------------------------------------------------------------
# curves
# ---------------------------------------------------------------------------------------------------------------


def _series(records: list[Any]) -> dict[str, list[tuple[Any, list[float], list[float]]]]:
    """``{key: [(record, x_train_seconds, y), ...]}`` for every in-training evaluation key and loss key."""
    out: dict[str, list[tuple[Any, list[float], list[float]]]] = {}
    for rec in records:
        log = RunDir(rec.path).read_metrics()
        spent, xs = 0.0, {}
        ys: dict[str, list[float]] = {}
        for r in log:
            t = float(r.get("time", 0.0)) - spent
            is_eval = any(k.startswith("eval/") for k in r)
            for k, v in r.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool) or k in ("step", "time", "it_per_s"):
                    continue
                if is_eval and (not k.startswith("eval/") or k.endswith("_std") or k[5:] in RECORD_FACTS
                                or k == "eval/modes_total" or r.get("eval/skipped")):
                    continue
                if not is_eval and not k.startswith("loss"):
                    continue
                xs.setdefault(k, []).append(t)
                ys.setdefault(k, []).append(float(v))
            if is_eval:
                spent += float(r.get("eval/seconds", 0.0))
        for k in xs:
            out.setdefault(k, []).append((rec, xs[k], ys[k]))
    return out


def _save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as a PNG, atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(records: list[Any], folder: Path) -> dict[str, list[Path]]:
    """One PNG per in-training metric (``curve-<key>.png``) and one with every loss (``losses.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(records)
    labels = list(dict.fromkeys(r.label for r in records))
    colours = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    out: dict[str, list[Path]] = {"curves": [], "losses": []}
    folder.mkdir(parents=True, exist_ok=True)

    def draw(ax: Any, key: str) -> None:
        seen = set()
        for rec, x, y in series[key]:
            ax.plot(x, y, marker="o" if key.startswith("eval/") else None, ms=3, lw=1.2, color=colours[rec.label],
                    label=rec.label if rec.label not in seen else None, alpha=0.9)
            seen.add(rec.label)
        ax.set_xlabel("training wall-clock time (s, evaluations excluded)")
        ax.set_ylabel(key.removeprefix("eval/"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    for key in [k for k in series if k.startswith("eval/")]:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        draw(ax, key)
        ax.set_title(f"{key.removeprefix('eval/')} during training (in-training protocol)")
        ys = [v for _, _, y in series[key] for v in y]
        if key in ("eval/kid", "eval/fid", "eval/mmd") and min(ys) > 0 and max(ys) > 10 * min(ys):
            ax.set_yscale("log")
        path = folder / f"curve-{key.removeprefix('eval/')}.png"
        _save_figure(fig, path)
        plt.close(fig)
        out["curves"].append(path)
    loss_keys = [k for k in series if not k.startswith("eval/")]
    if loss_keys:
        fig, axes = plt.subplots(1, len(loss_keys), figsize=(6 * len(loss_keys), 4), dpi=100, squeeze=False)
        for ax, key in zip(axes[0], loss_keys, strict=True):
            draw(ax, key)
            ax.set_title(key)
        path = folder / "losses.png"
        _save_figure(fig, path)
        plt.close(fig)
        out["losses"].append(path)
    return out


# ---------------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _img64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def write_report(result: Any, evaluator: Any = None) -> dict[str, str]:
    """Write ``report.md``, ``report.html`` and ``results.json`` into ``result.out``; returns their paths."""
    out = Path(result.out)
    files = out / "report-files"
    done = [r for r in result.records if r.status == "done"]
    pics = plot_curves(done, files) if done else {"curves": [], "losses": []}
    summary = result.summary()
    header, rows = table_rows(summary)
    grids = []  # one picture per label (its first seed)
    for label in dict.fromkeys(r.label for r in done):
        rec = next(r for r in done if r.label == label)
        if rec.samples_image and Path(rec.samples_image).is_file():
            grids.append((label, Path(rec.samples_image)))
    proto = result.protocol or {}
    unfinished = [r for r in result.records if r.status != "done"]
    title = f"gflowzoo compare: {', '.join(dict.fromkeys(r.label for r in result.records)) or 'no runs'}"
    title += f" on {result.options.get('dataset')}"
    budget = (f"{result.options['steps']} steps" if result.options.get("steps")
              else f"{result.options.get('budget_minutes'):.3g} min of wall clock (training and in-training "
                   "evaluations; the final evaluation comes on top)")
    facts = [
        f"Budget per run: {budget}; seeds: {result.options.get('seeds')}; device: {proto.get('device')}.",
        f"Evaluation protocol: metrics {', '.join(m['name'] for m in proto.get('metrics', []))}; "
        f"n = {proto.get('n')} samples, seed {proto.get('seed')}; reference: "
        f"{(proto.get('reference') or {}).get('split')} split, {(proto.get('reference') or {}).get('n')} items"
        + (f"; extractor {proto['extractor']['name']} (sha256 {proto['extractor']['sha256'][:12]}…)"
           if proto.get("extractor") else "") + ".",
        "Values are mean ± standard deviation over seeds; the training time excludes in-training evaluations; "
        "'final eval s' is the final evaluation's time (sampling and metrics).",
    ]
    sampler_line = training_sampler_line(done)
    if sampler_line:
        facts.append(sampler_line)
    if result.interrupted:
        facts.insert(0, "**Partial report: the comparison was interrupted.** Unfinished runs are listed below.")

    md = [f"# {title}", "", *[f"- {f}" for f in facts], "", _md_table(header, rows), ""]
    if grids:
        md += ["## Samples", "", "| " + " | ".join(lab for lab, _ in grids) + " |", "|" + "---|" * len(grids),
               "| " + " | ".join(f"![{lab}]({p.relative_to(out)})" for lab, p in grids) + " |", ""]
    if pics["curves"]:
        md += ["## Metrics during training", "", *[f"![{p.stem}]({p.relative_to(out)})" for p in pics["curves"]], ""]
    if pics["losses"]:
        md += ["## Losses", "", *[f"![losses]({p.relative_to(out)})" for p in pics["losses"]], ""]
    if unfinished:
        md += ["## Unfinished runs", ""]
        md += [f"- {r.label} seed {r.seed}: {r.status} ({r.path})" + (f": {r.error}" if r.error else "")
               for r in unfinished]
        md += [""]
    md += ["## Runs", "", *[f"- {run_line(r)}" for r in done], ""]
    md += ["Full protocol and per-run numbers: `results.json`.", ""]
    atomic_write_bytes(out / "report.md", "\n".join(md).encode())

    esc = html.escape
    h = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
         "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
         "td:first-child,th:first-child{text-align:left}.row{display:flex;flex-wrap:wrap;gap:1em}"
         ".row figure{margin:0}img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow:auto}</style>",
         "</head><body>", f"<h1>{esc(title)}</h1>", "<ul>"]
    h += [f"<li>{esc(f).replace('**', '')}</li>" for f in facts]
    h += ["</ul>", "<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in header) + "</tr>"]
    h += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
    h += ["</table>"]
    if grids:
        h += ["<h2>Samples</h2><div class='row'>"]
        h += [f"<figure><img src='{_img64(p)}'><figcaption>{esc(lab)}</figcaption></figure>" for lab, p in grids]
        h += ["</div>"]
    if pics["curves"]:
        h += ["<h2>Metrics during training</h2><div class='row'>"]
        h += [f"<img src='{_img64(p)}' style='max-width:580px'>" for p in pics["curves"]] + ["</div>"]
    if pics["losses"]:
        h += ["<h2>Losses</h2>", *[f"<img src='{_img64(p)}'>" for p in pics["losses"]]]
    if unfinished:
        h += ["<h2>Unfinished runs</h2><ul>"]
        h += [f"<li>{esc(r.label)} seed {r.seed}: {esc(r.status)} ({esc(r.path)}) {esc(r.error or '')}</li>"
              for r in unfinished]
        h += ["</ul>"]
    if done:
        h += ["<h2>Runs</h2><ul>", *[f"<li>{esc(run_line(r))}</li>" for r in done], "</ul>"]
    h += ["<h2>Protocol</h2>", f"<pre>{esc(json.dumps(proto, indent=2, default=str))}</pre>", "</body></html>"]
    atomic_write_bytes(out / "report.html", "\n".join(h).encode())

    atomic_write_bytes(out / "results.json", (json.dumps(result.to_json(), indent=2, default=str) + "\n").encode())
    return {"markdown": str(out / "report.md"), "html": str(out / "report.html"), "json": str(out / "results.json")}

