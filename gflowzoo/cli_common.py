"""What every ``gflowzoo`` command module shares: the consoles, the run service's reporter on them, the error and
multi-process wrappers of commands, and common options. Only typer and rich are imported at module level.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .errors import GflowzooError
from .runner import Reporter, reporting

console = Console()
err_console = Console(stderr=True)


class ConsoleReporter(Reporter):
    """The run service's messages (:class:`gflowzoo.runner.Reporter`) on the CLI's consoles: :meth:`say` on stdout,
    :meth:`warn` on stderr with its label (the text up to the first ``": "``) in yellow, :meth:`note` on stderr as
    ``note: <text>``. Progress bars draw on :data:`console`."""

    @property
    def console(self) -> Console:  # type: ignore[override]
        return console

    def say(self, text: str) -> None:
        console.print(escape(text), highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        label, sep, rest = text.partition(": ")
        shown = f"[yellow]{escape(label)}:[/] {escape(rest)}" if sep else escape(text)
        err_console.print(shown, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        err_console.print(f"[yellow]note:[/] {escape(text)}", highlight=False, soft_wrap=True)


#: The reporter that commands hand to the run service.
reporter = ConsoleReporter()


def handle_errors(fn):
    """Turn gflowzoo's own errors into a one-block message and an exit code (2 for user mistakes); inside the
    command, the run service (:mod:`gflowzoo.runner`) reports on the CLI's consoles by default."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with reporting(reporter):  # the run service's messages of the command go to the consoles
                return fn(*args, **kwargs)
        except GflowzooError as exc:
            if not getattr(exc, "quiet", False):  # quiet: rank 0 of a multi-process run reports it
                err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def multi_process(fn):
    """Run a command inside :func:`gflowzoo.distributed.session` (joins the process group under torchrun; nothing
    happens in one process), with stdout quiet on ranks other than 0."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from . import distributed as dist

        with dist.session(), _other_ranks_quiet():
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _other_ranks_quiet():
    """Ranks other than 0 of a multi-process run print nothing on stdout for the block."""
    from . import distributed as dist

    old = console.quiet
    console.quiet = old or not dist.is_main()
    try:
        yield
    finally:
        console.quiet = old


SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config key: --set lr=1e-4 --set backbone.width=64 (repeatable)."),
]

#: ``--no-progress`` of every command that draws a progress bar (train, sample, evaluate, compare)
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="Do not draw progress bars.")]
