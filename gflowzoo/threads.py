"""How many CPU threads torch uses: fixed by the user, or chosen from the cores other processes leave free.

Why: torch's default (one thread per core) collapses on a shared machine. Measured on a 2-core CPU with one competing
CPU-bound process (README's main job, ``gflowzoo train dmmd`` on digits): 2 threads ran at 0.25-4 it/s against
13.5 it/s for 1 thread; on the idle machine 2 threads ran at 16.5 it/s against 12.8 for 1. No fixed count is right
for both, so the default follows the machine (``benchmarks/bench_threads.py`` measures it).

The rule, in order:

1. ``gflowzoo --threads N`` or ``GFLOWZOO_THREADS=N``: N threads, never changed.
2. ``OMP_NUM_THREADS`` set (torchrun sets it to 1 for each process): torch's own reading of it, never changed.
3. Otherwise (``auto``): ``threads = max(1, floor(usable - others + 0.25))``, where ``usable`` is the number of cores
   this process may run on and ``others`` the cores' worth of CPU time that other processes used over the last
   measurement window (``/proc/stat`` minus this process's own time). So one competing process on 2 cores gives 1
   thread, an idle machine 2. The count is re-measured every :data:`RECHECK_SECONDS` during training and sampling
   (:func:`tick`), so a run that starts beside a busy job speeds up when the job ends, and the reverse. Without
   ``/proc`` (macOS, Windows) ``auto`` keeps torch's default.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["RECHECK_SECONDS", "Governor", "choose", "configure", "current", "tick"]

#: Seconds between two measurements of the machine's load during training and sampling.
RECHECK_SECONDS = 3.0
#: Length of the first measurement (before the first step).
FIRST_WINDOW = 0.2
#: ``floor(free + SLACK)``: a core counts as taken once other processes use more than a quarter of it.
SLACK = 0.25


def _usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _read_times() -> tuple[float, float, float] | None:
    """(wall seconds, CPU seconds all processes spent busy, CPU seconds this process spent), or None without
    ``/proc``."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        with open("/proc/self/stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    vals = [int(v) for v in fields[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    busy = sum(vals[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    own_ticks = int(own[11]) + int(own[12])  # utime, stime (fields 14 and 15 of the full line)
    return time.monotonic(), busy / hz, own_ticks / hz


def choose(usable: int, others: float) -> int:
    """The thread count for ``usable`` cores when other processes use ``others`` cores' worth of CPU time."""
    return max(1, min(usable, int(usable - max(others, 0.0) + SLACK)))


@dataclass
class Governor:
    """Keeps torch's thread count at :func:`choose` of the latest measurement (the ``auto`` policy)."""

    usable: int
    last: tuple[float, float, float] | None = None
    threads: int = 0
    others: float = 0.0

    def measure(self) -> None:
        now = _read_times()
        if now is None:
            return
        if self.last is not None and now[0] - self.last[0] > 0.05:
            wall = now[0] - self.last[0]
            self.others = max(0.0, ((now[1] - self.last[1]) - (now[2] - self.last[2])) / wall)
            self._apply(choose(self.usable, self.others))
        self.last = now

    def _apply(self, n: int) -> None:
        if n != self.threads:
            import torch

            torch.set_num_threads(n)
            self.threads = n


_governor: Governor | None = None
_fixed: int | None = None


def configure() -> None:
    """Set torch's thread count by the rule of this module (called once per command, before the work)."""
    global _governor, _fixed
    from .errors import UserError

    raw = os.environ.get("GFLOWZOO_THREADS", "").strip()
    if raw and raw.lower() != "auto":
        try:
            n = int(raw)
        except ValueError:
            raise UserError(f"GFLOWZOO_THREADS must be a positive integer or auto; got {raw!r}.") from None
        if n < 1:
            raise UserError(f"GFLOWZOO_THREADS must be a positive integer or auto; got {raw!r}.")
        import torch

        torch.set_num_threads(n)
        _fixed, _governor = n, None
        return
    if os.environ.get("OMP_NUM_THREADS", "").strip() and not raw:
        _fixed, _governor = None, None  # torch already follows it
        return
    if _governor is None:
        _governor = Governor(_usable_cores())
        _governor.measure()
        if _governor.last is None:  # no /proc: torch's default
            _governor = None
            return
        time.sleep(FIRST_WINDOW)
    _governor.measure()


def tick() -> None:
    """Re-measure the load when :data:`RECHECK_SECONDS` have passed (cheap otherwise); call it once per step."""
    g = _governor
    if g is not None and g.last is not None and time.monotonic() - g.last[0] >= RECHECK_SECONDS:
        g.measure()


def current() -> dict[str, object]:
    """The policy in force, for logs: ``{"threads": n, "policy": "fixed" | "omp" | "auto" | "default"}``."""
    import torch

    if _fixed is not None:
        policy = "fixed"
    elif _governor is not None:
        policy = "auto"
    elif os.environ.get("OMP_NUM_THREADS", "").strip():
        policy = "omp"
    else:
        policy = "default"
    return {"threads": torch.get_num_threads(), "policy": policy}
