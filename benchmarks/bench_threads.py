"""The thread policy on a busy and an idle machine: the README's main job beside a competing process and alone.

Usage::

    python benchmarks/bench_threads.py                  # training rate, 3 rounds, ~6 minutes on 2 cores
    python benchmarks/bench_threads.py --full           # also the whole README job (1,500 steps + samples), idle and busy

Each round runs ``gflowzoo train dmmd`` (the README's main job: digits, its CPU preset) for ``--steps`` steps under
every thread setting (the default ``auto`` policy, ``--threads 1``, ``--threads N`` for N = the core count), once on
the idle machine and once beside a competing CPU-bound process (a Python busy loop, one core), interleaved so that
slow drifts of the machine hit every setting alike. The rate is the median of the logged ``it_per_s`` after the
first log line. Printed: every rate, and the ratios the policy is judged by (goal: busy auto >= 0.5 x idle auto;
idle auto >= 0.9 x the best fixed count on the idle machine). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GFLOWZOO = [sys.executable, "-m", "gflowzoo"]


def _competitor() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _job(threads: str, steps: int, out: Path, full: bool, timeout: float) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GFLOWZOO_THREADS", "OMP_NUM_THREADS")}
    pre = [] if threads == "auto" else ["--threads", threads]
    cmd = GFLOWZOO + pre + ["train", "dmmd", "--out", str(out), "--no-progress"]
    if not full:
        cmd += ["--steps", str(steps), "--set", "run.grid_size=0", "--set", "run.log_every=25"]
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=True)
        wall = time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        wall = float("inf")
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] \
        if (out / "metrics.jsonl").exists() else []
    rates = [r["it_per_s"] for r in recs[1:] if "it_per_s" in r] or [r["it_per_s"] for r in recs if "it_per_s" in r]
    used = sorted({r.get("threads") for r in recs if r.get("threads") is not None})
    return {"rate": statistics.median(rates) if rates else 0.0, "wall": wall, "threads": used}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="Training steps per measurement.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="Also time the whole README job (idle and busy, auto).")
    ap.add_argument("--timeout", type=float, default=240.0, help="Seconds allowed per job (a collapsed one stops).")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    settings = ["auto", "1"] + ([str(cores)] if cores > 1 else [])
    work = Path(tempfile.mkdtemp(prefix="gflowzoo-threads-"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cores} cores, load average before: {load:.2f}; {args.steps} steps of `gflowzoo train dmmd` (digits)")
    rates: dict[tuple[str, str], list[float]] = {}
    for rnd in range(args.rounds):
        for cond in ("idle", "busy"):
            comp = _competitor() if cond == "busy" else None
            try:
                if comp is not None:
                    time.sleep(1.0)
                for s in settings:
                    res = _job(s, args.steps, work / "run", False, args.timeout)
                    rates.setdefault((cond, s), []).append(res["rate"])
                    print(f"round {rnd + 1} {cond:4s} threads {s:>4s}: {res['rate']:7.2f} it/s "
                          f"(threads used {res['threads']})", flush=True)
            finally:
                if comp is not None:
                    comp.kill()
                    comp.wait()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("\nmedian it/s    " + "  ".join(f"{s:>8s}" for s in settings))
    for cond in ("idle", "busy"):
        print(f"{cond:14s} " + "  ".join(f"{med[(cond, s)]:8.2f}" for s in settings))
    best_idle = max(med[("idle", s)] for s in settings if s != "auto")
    print(f"\nbusy auto / idle auto          = {med[('busy', 'auto')] / med[('idle', 'auto')]:.2f}  (goal >= 0.5)")
    print(f"idle auto / best fixed (idle)  = {med[('idle', 'auto')] / best_idle:.2f}  (goal >= 0.9)")
    if cores > 1:
        print(f"busy {cores} threads / idle auto    = {med[('busy', str(cores))] / med[('idle', 'auto')]:.2f}  "
              "(torch's default count, for reference)")
    if args.full:
        print("\nthe whole README job (`gflowzoo train dmmd`), auto policy:")
        for cond in ("idle", "busy"):
            comp = _competitor() if cond == "busy" else None
            try:
                res = _job("auto", 0, work / "full", True, 3600.0)
            finally:
                if comp is not None:
                    comp.kill()
                    comp.wait()
            print(f"  {cond}: {res['wall']:.0f} s wall ({res['rate']:.2f} it/s, threads used {res['threads']})",
                  flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
