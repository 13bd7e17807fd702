"""Progress of sampling and evaluation: a bar over the samples drawn, with an estimate of the time left.

``gflowzoo evaluate`` and the final evaluations of ``gflowzoo compare`` draw it (:class:`SampleProgress`). On a
terminal it is a rich progress bar; elsewhere (CI, ``nohup``, a log file) it prints a plain line now and then, the
same lines as the training bar's fallback (:class:`PlainProgress`), e.g.
``final evaluation dmmd-seed0 1,250/2,500 samples (50%) 41.7 samples/s elapsed 0:00:30 eta 0:00:30``.

The bar advances per piece of :func:`gflowzoo.sampling.sample_pieces` (:func:`track_pieces`), and, where one call of
``method.sample`` is long (a flow method moving a whole particle batch through hundreds of steps), within a call:
the method calls :func:`report` as it goes (the DMMD family after every noise level). A method that never calls it
still works; its bar moves per piece.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["PLAIN_PROGRESS_SECONDS", "PlainProgress", "SampleProgress", "report", "track_pieces"]

#: Seconds of wall clock between two progress lines when the console is not a terminal (see :class:`PlainProgress`).
PLAIN_PROGRESS_SECONDS = 30.0


def _clock(seconds: float) -> str:
    """``h:mm:ss``, as rich's time columns write it."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class PlainProgress:
    """The progress bar where it cannot be drawn (the console is not a terminal: CI, ``nohup``, a notebook): one plain
    line every :data:`PLAIN_PROGRESS_SECONDS` and one at the end, such as
    ``dmmd step 300/1500 (20%) 12.3 it/s elapsed 0:00:24 eta 0:01:36 loss=0.123``.

    It takes the calls ``train`` makes to a rich ``Progress`` (``add_task``, ``update``) with the same fields:
    ``completed`` out of ``total`` (for training, :func:`gflowzoo.trainer._progress_fraction` of the run, so the time estimate follows a minutes
    budget as the bar's does), ``step`` (the step text), ``steps`` (the step number, for the rate) and ``logs``.
    One task; the elapsed time, rate and estimate are of this session (a resumed run counts from where it resumed).
    """

    def __init__(self, console: Any, unit: str = "it/s") -> None:
        self.console, self.unit = console, unit
        self.fields: dict[str, Any] = {}
        self._t0 = self._last = time.monotonic()
        self._start: tuple[float, int] = (0.0, 0)  # (fraction, step) when the task was added
        self._pending = False  # an update not printed yet

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pending:
            self._print()

    def add_task(self, description: str, *, total: float, completed: float = 0.0, **fields: Any) -> int:
        self.fields = {"description": description, "total": total, "completed": completed, **fields}
        self._t0 = self._last = time.monotonic()
        self._start = (completed / total, int(fields.get("steps", 0)))
        return 0

    def update(self, task: int, **fields: Any) -> None:
        self.fields.update(fields)
        self._pending = True
        if time.monotonic() - self._last >= PLAIN_PROGRESS_SECONDS:
            self._print()

    def _print(self) -> None:
        now = time.monotonic()
        seconds = now - self._t0
        f = self.fields
        frac = f["completed"] / f["total"]
        rate = (int(f.get("steps", 0)) - self._start[1]) / max(seconds, 1e-9)
        done = frac - self._start[0]
        eta = _clock(seconds * (1.0 - frac) / done) if done > 0 else "?"
        speed = f"{rate:.3g}" if rate < 1000 else f"{rate:.0f}"  # 12.3, 0.0412, 2345: no exponent
        line = (f"{f['description']} {f.get('step', '')} ({100 * frac:.0f}%) {speed} {self.unit} "
                f"elapsed {_clock(seconds)} eta {eta} {f.get('logs', '')}")
        self.console.print(line.rstrip(), highlight=False, markup=False, soft_wrap=True)
        self._last, self._pending = now, False



#: Receives the fraction (0 to 1) of the current ``method.sample`` call that is done; set by :func:`track_pieces`.
_WITHIN_CALL: ContextVar[Callable[[float], None] | None] = ContextVar("gflowzoo_within_call", default=None)


def report(fraction: float) -> None:
    """For methods: ``fraction`` (0 to 1) of the current ``sample`` call is done. Does nothing unless a progress
    display listens (it costs one context-variable look-up)."""
    listener = _WITHIN_CALL.get()
    if listener is not None:
        listener(min(max(float(fraction), 0.0), 1.0))


def track_pieces(pieces: Iterator[Any], n: int, size: int, on_progress: Callable[[float], None]) -> Iterator[Any]:
    """The pieces of :func:`gflowzoo.sampling.sample_pieces` (``n`` samples, ``size`` per call), passed on unchanged
    while ``on_progress`` receives the number of samples drawn so far: after every piece and, when the method
    :func:`report`\\ s, within one (a fraction of the piece being drawn counts as that fraction of its samples)."""
    done = 0
    while True:
        k = min(size, n - done)
        token = _WITHIN_CALL.set(lambda f: on_progress(done + f * k))
        try:
            x = next(pieces, None)
        finally:
            _WITHIN_CALL.reset(token)
        if x is None:
            return
        done += int(x.shape[0])
        on_progress(done)
        yield x


class SampleProgress:
    """A progress bar over ``n`` samples drawn (a context manager).

    Args:
        description: what is drawn (``"evaluate dmmd"``, ``"final evaluation dmmd-seed0"``).
        console: a rich console (``None``: rich's default console).
        enabled: ``False`` draws nothing (``--no-progress``, ``--json``).
        transient: remove the bar from a terminal when done.

    :meth:`start` sets the total (when it is known only later), :meth:`update` the samples drawn (a float: see
    :func:`track_pieces`), :meth:`stage` the step after sampling (``"features"``, a metric name: shown after the
    description). Calls before :meth:`start` are ignored.
    """

    def __init__(self, description: str, *, console: Any = None, enabled: bool = True,
                 transient: bool = False) -> None:
        self.description, self.console, self.enabled, self.transient = description, console, enabled, transient
        self._bar: Any = None
        self._task: Any = None
        self.n = 0

    def __enter__(self) -> SampleProgress:
        if not self.enabled:
            return self
        from rich import get_console

        console = self.console if self.console is not None else get_console()
        if console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[step]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 transient=self.transient)
        else:
            self._bar = PlainProgress(console, unit="samples/s")
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def start(self, n: int) -> None:
        """Show the bar for ``n`` samples (once)."""
        if self._bar is None or self._task is not None:
            return
        self.n = int(n)
        self._task = self._bar.add_task(self.description, total=max(self.n, 1), completed=0, step=self._text(0),
                                        steps=0, logs="")

    def update(self, done: float) -> None:
        """``done`` samples are drawn."""
        if self._task is not None:
            self._bar.update(self._task, completed=done, step=self._text(done), steps=int(done))

    def stage(self, name: str) -> None:
        """The evaluation moved on to ``name`` (``sampling``, ``features`` or a metric)."""
        if self._task is not None:
            what = self.description if name == "sampling" else f"{self.description}: {name}"
            self._bar.update(self._task, description=what)

    def _text(self, done: float) -> str:
        return f"{int(done):,}/{self.n:,} samples"
