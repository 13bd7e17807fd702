"""Peak memory of sampling 10,000 DMMD particles, with and without chunking (``sampler.chunk``).

A ``dmmd`` critic for ``digits`` (built in, 1x8x8; the ``cpu-quick`` preset with a conv backbone of width 32,
untrained: memory does not depend on the weights) moves ``--n`` particles as **one** interacting batch
(``sampler.particles = n``) through a short grid (2 levels x 1 step: memory does not depend on the number of
steps). Each configuration runs in a fresh process; the peak is the largest resident set size (``/proc/self/statm``,
polled every 2 ms) during ``method.sample`` minus the size just before it, or on CUDA
``torch.cuda.max_memory_allocated`` minus the memory allocated before.

Configurations: kernel ``rbf`` (the digits recipe; the exact step evaluates the kernel between every chunk and all N
particles) and ``linear`` (mean embeddings), variant ``exact`` (interacting: the particle term is computed over all
chunks first, then every chunk moves) and ``approx`` (a-DMMD, no interaction), chunk 0 (all N at once) and smaller
chunks. With chunking the peak should fall with the chunk size (activations of one chunk only).

    python benchmarks/bench_sample_memory.py [--n 10000] [--chunks 0,2000,500] [--kernels rbf,linear]
        [--variants exact,approx] [--device auto] [--threads 1]

Prints ``name: value`` lines ``<kernel>_<variant>_chunk<C>_peak_mb`` (MiB above the start) and ``..._s`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Polls the resident set size in a thread; ``peak`` is the largest value seen (bytes)."""

    def __init__(self, every: float = 0.002) -> None:
        self.every, self.peak, self._stop = every, _rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def child(cfg: dict) -> dict:
    """Build the method, sample once, return ``{"peak_mb", "seconds", "shape"}``."""
    import torch

    torch.set_num_threads(cfg["threads"])
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve, resolve_device

    reg = get_registry()
    device = resolve_device(cfg["device"])
    sets = ["backbone.width=32", f"kernel=\"{cfg['kernel']}\"", f"sampler.variant=\"{cfg['variant']}\"",
            f"sampler.particles={cfg['n']}", f"sampler.chunk={cfg['chunk']}", "sampler.levels=2",
            "sampler.steps_per_level=1", "sampler.step_schedule=\"sigma\"", "sampler.step_size=0.1",
            "stats_samples=500", "sampler.n_ref=500"]
    spec = resolve(reg, "dmmd", "digits", preset="cpu-quick", sets=sets, overrides={"device": device})
    m = build_method(reg, spec, device)
    m.finalize(torch.Generator().manual_seed(1))  # the sampler's statistics, computed before measuring
    gen = torch.Generator().manual_seed(0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        x = m.sample(cfg["n"], gen)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_bytes()
        with PeakRSS() as mon:
            t0 = time.perf_counter()
            x = m.sample(cfg["n"], gen)
            seconds = time.perf_counter() - t0
        peak = mon.peak - base
    return {"peak_mb": peak / 2**20, "seconds": seconds, "shape": list(x.shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--chunks", default="0,2000,500")
    ap.add_argument("--kernels", default="rbf,linear")
    ap.add_argument("--variants", default="exact,approx")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    print(f"n: {args.n}")
    print(f"threads: {args.threads}")
    for kernel in args.kernels.split(","):
        for variant in args.variants.split(","):
            for chunk in (int(c) for c in args.chunks.split(",")):
                cfg = {"n": args.n, "chunk": chunk, "kernel": kernel, "variant": variant, "device": args.device,
                       "threads": args.threads}
                out = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True,
                                     text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                assert res["shape"][0] == args.n
                tag = f"{kernel}_{variant}_chunk{chunk}"
                print(f"{tag}_peak_mb: {res['peak_mb']:.1f}", flush=True)
                print(f"{tag}_s: {res['seconds']:.2f}", flush=True)


if __name__ == "__main__":
    main()
