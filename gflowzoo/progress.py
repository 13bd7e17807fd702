"""Progress of sampling and evaluation: a bar over the samples drawn, with an estimate of the time left.

``gflowzoo evaluate`` and the final evaluations of ``gflowzoo compare`` draw it (:class:`SampleProgress`). On a
terminal it is a rich progress bar; elsewhere (CI, ``nohup``, a log file) it prints a plain line now and then, the
same lines as the training bar's fallback (:class:`gflowzoo.trainer._PlainProgress`), e.g.
``final evaluation dmmd-seed0 1,250/2,500 samples (50%) 41.7 it/s elapsed 0:00:30 eta 0:00:30``.

The bar advances per piece of :func:`gflowzoo.sampling.sample_pieces` (:func:`track_pieces`), and, where one call of
``method.sample`` is long (a flow method moving a whole particle batch through hundreds of steps), within a call:
the method calls :func:`report` as it goes (the DMMD family after every noise level). A method that never calls it
still works; its bar moves per piece.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["SampleProgress", "report", "track_pieces"]

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
            from .trainer import _PlainProgress

            self._bar = _PlainProgress(console, unit="samples/s")
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
