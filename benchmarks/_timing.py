"""Timing shared by the benchmark scripts (imported as ``_timing``: the scripts run from ``benchmarks/``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def interleaved_median(fns: dict[str, Callable[[], object]], reps: int, device: torch.device,
                       warmup: int = 1) -> dict[str, float]:
    """Median wall-clock seconds of each function over ``reps`` rounds, after ``warmup`` rounds. The functions run in
    alternation within each round, so a changing load on a shared machine affects all of them alike; on CUDA the
    device is synchronised around every call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for key, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def setup(args) -> torch.device:
    """Apply ``--threads`` and resolve ``--device`` (``auto``: CUDA when available) of a benchmark's arguments, and
    print the ``device:``/``threads:``/``torch:`` header lines every benchmark starts with."""
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    print(f"device: {device}")
    print(f"threads: {torch.get_num_threads()}")
    print(f"torch: {torch.__version__}")
    return device
