"""A prepared check of gflowzoo on one CUDA device: every method trains, resumes, samples and evaluates there.

Usage (on a machine with a GPU, from the project's root, gflowzoo and its plugins installed)::

    python benchmarks/gpu_check.py                 # stops at the first failure, exit 1
    python benchmarks/gpu_check.py --keep-going    # runs every check, exit 1 if any failed
    python benchmarks/gpu_check.py --device cpu    # the same sequence on the CPU (to try the script itself)

Each check prints one line: ``ok``/``FAIL``, its name and its wall-clock seconds; a failure prints the command and
the last lines of its output. The whole sequence is meant to finish within 8 minutes on one GPU: every
method of the registry trains a few dozen steps with its ``cpu-quick`` preset on ``digits`` (bf16 autocast where the
device supports it), resumes to a few more steps, samples 64 images and is evaluated with the offline ``net-digits``
extractor (trained on the spot, once); then DMMD trains under ``torchrun --nproc-per-node 1`` (NCCL for CUDA
tensors). It is not part of the CPU test suite. Results go to ``--work`` (default: a temporary folder).

The checks run in this process (through ``gflowzoo.cli.main``) except the device probe and ``torchrun``: a new
process costs 10-20 s of imports and CUDA start-up on a GPU machine. Measured on an H200 (2026-12-04), one process
per check took 13-24 s per check, 42 checks would have needed 12 minutes; the in-process form (24 s for two methods
on the 2-core CPU) has not run on a GPU yet. ``--timeout`` bounds each check (SIGALRM in this process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Methods with nothing to train still go through train (it writes the run directory and sampler statistics).
STEPS, RESUME_STEPS = 30, 40


class CheckFailed(Exception):
    pass


class Checker:
    def __init__(self, keep_going: bool, env: dict[str, str], per_check_timeout: float) -> None:
        self.keep_going = keep_going
        self.env = env
        self.timeout = per_check_timeout
        self.failures: list[str] = []
        self.t_start = time.perf_counter()

    def run(self, name: str, cmd: list[str], *, expect: str | None = None) -> str:
        """Run ``cmd`` in a subprocess (``torchrun``; the device probe)."""
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=self.timeout)
            out = proc.stdout + proc.stderr
            ok = proc.returncode == 0 and (expect is None or expect in out)
            why = f"exit {proc.returncode}" if proc.returncode else f"output lacks {expect!r}"
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            ok, why = False, f"timed out after {self.timeout:.0f} s"
        return self._report(name, " ".join(cmd), ok, why, out, time.perf_counter() - t0)

    def cli(self, name: str, argv: list[str]) -> str:
        """Run ``gflowzoo ARGV`` in this process (a new process costs 10-20 s of imports and CUDA start-up on a
        GPU machine, more than most checks); SIGALRM bounds its time."""
        import contextlib
        import io
        import signal

        from gflowzoo.cli import main as gflowzoo_main

        def alarm(signum, frame):
            raise TimeoutError(f"timed out after {self.timeout:.0f} s")

        buf = io.StringIO()
        t0 = time.perf_counter()
        old = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(max(1, int(self.timeout)))
        code: object = 0
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                gflowzoo_main(argv)
        except SystemExit as exc:
            code = exc.code or 0
        except BaseException as exc:  # noqa: BLE001 - report any failure as this check's
            if isinstance(exc, KeyboardInterrupt):
                raise
            import traceback

            buf.write(traceback.format_exc())
            code = f"{type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        ok = code == 0
        return self._report(name, "gflowzoo " + " ".join(argv), ok, f"exit {code}", buf.getvalue(),
                            time.perf_counter() - t0)

    def _report(self, name: str, cmd: str, ok: bool, why: str, out: str, dt: float) -> str:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<44s} {dt:7.1f} s", flush=True)
        if not ok:
            tail = "\n".join(out.strip().splitlines()[-25:])
            print(f"     command: {cmd}\n     {why}; last lines:\n{tail}\n", flush=True)
            self.failures.append(name)
            if not self.keep_going:
                raise CheckFailed(name)
        return out

    def python(self, name: str, code: str, **kw) -> str:
        return self.run(name, [sys.executable, "-c", code], **kw)


def _methods() -> list[str]:
    from gflowzoo.plugins import get_registry

    return [e.name for e in get_registry().entries("method")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (to try this script).")
    ap.add_argument("--keep-going", action="store_true", help="Run every check; report all failures at the end.")
    ap.add_argument("--work", type=Path, default=None, help="Folder for the runs (default: a temporary one).")
    ap.add_argument("--methods", default="", help="Comma list of methods (default: every registered one).")
    ap.add_argument("--timeout", type=float, default=240.0, help="Seconds allowed per check.")
    ap.add_argument("--no-torchrun", action="store_true", help="Skip the torchrun check.")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="gflowzoo-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GFLOWZOO_CACHE", str(work / "cache"))  # in-process checks read it too
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ck = Checker(args.keep_going, env, args.timeout)
    dev = args.device
    try:
        info = ck.python(
            "torch sees the device",
            "import torch, sys; d = sys.argv[1] if len(sys.argv) > 1 else None\n"
            f"dev = torch.device({dev!r})\n"
            "x = torch.randn(256, 256, device=dev); y = (x @ x).sum().item()\n"
            "bf = dev.type == 'cpu' or torch.cuda.is_bf16_supported()\n"
            "name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'\n"
            "print(f'torch {torch.__version__} device {name} bf16 {bf}')",
        )
        line = [ln for ln in info.splitlines() if ln.startswith("torch ")]
        print(f"     {line[-1] if line else info.strip()[:200]}", flush=True)
        bf16 = "bf16 True" in info
        methods = [m for m in args.methods.split(",") if m] or _methods()
        print(f"     methods: {', '.join(methods)}; amp {'bf16' if bf16 else 'none'}", flush=True)
        amp = ["--set", "run.amp=bf16"] if bf16 else []
        common = ["--dataset", "digits", "--preset", "cpu-quick", "--device", dev, "--no-progress"]
        ck.cli("extractor fit net-digits", ["extractor", "fit", "--dataset", "digits", "--device", dev])
        for m in methods:
            run = work / m
            shutil.rmtree(run, ignore_errors=True)
            quick = ["--set", "run.grid_size=16", "--set", "run.checkpoint_every=10"]
            ck.cli(f"{m}: train {STEPS} steps", ["train", m, *common, *amp, *quick, "--steps", str(STEPS),
                                                      "--out", str(run)])
            ck.cli(f"{m}: resume to {RESUME_STEPS}", ["train", m, *common, *amp, *quick, "--steps",
                                                          str(RESUME_STEPS), "--out", str(run), "--resume"])
            ck.cli(f"{m}: sample 64", ["sample", str(run), "--n", "64", "--device", dev, "--raw",
                                            str(work / f"{m}.npy")])
            ck.cli(f"{m}: evaluate (net-digits)", ["evaluate", str(run), "--n", "200", "--device", dev,
                                                        "--extractor", "net-digits", "--json"])
        if not args.no_torchrun and dev.startswith("cuda"):
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", "gflowzoo"]
            run = work / "torchrun-dmmd"
            shutil.rmtree(run, ignore_errors=True)
            ck.run("torchrun 1 process, NCCL: dmmd train", torchrun + [
                "train", "dmmd", *common, "--steps", "20", "--out", str(run)])
            ck.run("torchrun 1 process, NCCL: dmmd sample", torchrun + [
                "sample", str(run), "--n", "64", "--device", dev])
    except CheckFailed:
        pass
    total = time.perf_counter() - ck.t_start
    if ck.failures:
        print(f"FAILED {len(ck.failures)} check(s) in {total:.0f} s: {', '.join(ck.failures)}", flush=True)
        return 1
    print(f"all checks passed in {total:.0f} s (work folder {work})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
