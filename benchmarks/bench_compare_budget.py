"""Wall clock of ``gflowzoo compare`` against its budget (goal: total <= 1.5 x (sum of budgets + final evaluations)).

Runs ``gflowzoo compare METHODS --dataset DATA --budget B --seeds K`` in a subprocess (``--no-progress``, a fresh
output folder), measures its total wall clock and compares it with what the budget promises: every run's training
loop, in-training evaluations included, within ``B``, plus the final evaluations (whose measured times the
comparison reports). ``--busy`` runs one competing CPU-bound process (a Python busy loop) meanwhile, as on a shared
machine.

    python benchmarks/bench_compare_budget.py [--methods dmmd,mmdgan] [--dataset toy-8gaussians] [--budget 1m]
        [--seeds 2] [--busy] [--threads auto] [--out DIR]

Prints ``name: value`` lines: ``total_s`` (the command's wall clock), ``budget_sum_s`` (runs x budget),
``final_eval_sum_s`` (the reported final-evaluation times), ``run_wall_sum_s`` (the runs' training loops),
``overhead_s`` (the rest: start-up, building methods, ``finalize()``, the report), ``ratio`` = total / (budgets +
final evaluations), and
per run its loop's wall clock (training and in-training evaluations: ``run_wall_s``, at most the budget), the
in-training evaluations made and skipped, and the final evaluation's estimate beside its measured time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="dmmd,mmdgan", help="comma-separated methods (default dmmd,mmdgan)")
    ap.add_argument("--dataset", default="toy-8gaussians")
    ap.add_argument("--budget", default="1m", help="per-run budget, as compare's --budget (default 1m)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--busy", action="store_true", help="run one competing CPU-bound process meanwhile")
    ap.add_argument("--threads", default="auto",
                    help="torch threads of the comparison ($GFLOWZOO_THREADS; auto: gflowzoo's default policy)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one, removed)")
    args = ap.parse_args()

    from gflowzoo.compare import parse_budget

    if args.out is not None and args.out.exists():
        sys.exit(f"--out {args.out} exists: the comparison would reuse its finished runs. Give a new folder.")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    budget_s = parse_budget(args.budget) * 60.0
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        out = args.out or Path(tmp) / "cmp"
        cmd = [sys.executable, "-m", "gflowzoo", "compare", *methods, "--dataset", args.dataset, "--budget",
               args.budget, "--seeds", str(args.seeds), "--out", str(out), "--no-progress"]
        env = {**os.environ, "GFLOWZOO_THREADS": str(args.threads)}
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
        try:
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            total = time.perf_counter() - t0
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        if proc.returncode != 0:
            sys.exit(f"compare failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        results = json.loads((out / "results.json").read_text())

    runs = results["runs"]
    final = [float(r["timing"].get("total_s", 0.0)) for r in runs]
    print(f"command: gflowzoo compare {' '.join(methods)} --dataset {args.dataset} --budget {args.budget} "
          f"--seeds {args.seeds}")
    print(f"busy: {int(args.busy)}")
    print(f"threads: {args.threads}")
    print(f"runs: {len(runs)}")
    print(f"total_s: {total:.1f}")
    print(f"budget_sum_s: {budget_s * len(runs):.1f}")
    print(f"final_eval_sum_s: {sum(final):.1f}")
    loops = sum(float(r["train_seconds"]) + float(r["eval_seconds_in_training"]) for r in runs)
    print(f"run_wall_sum_s: {loops:.1f}")
    print(f"overhead_s: {total - loops - sum(final):.1f}")  # start-up, building the methods, finalize(), the report
    ratio = total / (budget_s * len(runs) + sum(final))
    print(f"ratio: {ratio:.3f}")
    print(f"goal: <= {GOAL} ({'met' if ratio <= GOAL else 'missed'})")
    for r, f in zip(runs, final):
        name = Path(r["path"]).name
        wall = float(r["train_seconds"]) + float(r["eval_seconds_in_training"])
        t = r.get("training_eval") or {}
        est = r.get("final_eval_estimate_s")
        print(f"{name}.run_wall_s: {wall:.1f}")
        print(f"{name}.over_budget_s: {wall - budget_s:.2f}")
        print(f"{name}.in_training_evals: {t.get('evaluations', 0)} made, {t.get('skipped', 0)} skipped"
              + (f" (last {t['seconds']:.1f} s, n {t.get('n')}, NFE {t.get('nfe')})" if t.get("seconds") else ""))
        print(f"{name}.final_eval_s: {f:.1f} (estimated {'-' if est is None else f'{est:.1f}'})")


if __name__ == "__main__":
    main()
