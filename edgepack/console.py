"""All user-facing output goes through here: progress steps, warnings and summary tables."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator, Sequence

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

import sys

from edgepack.stopping import checkpoint

# rich falls back to 80 columns when not on a terminal, which wraps the summary table in CI logs
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
log = logging.getLogger("edgepack")


def setup_logging(verbose: int = 0) -> None:
    """Warnings by default; -v shows every external command, -vv its output too."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    root = logging.getLogger("edgepack")
    root.handlers.clear()
    root.addHandler(RichHandler(console=console, show_time=False, show_path=False, markup=False))
    root.setLevel(level)
    root.propagate = False


class _Run:
    """Progress of one long command: how many steps it has, how many are done, when it began."""

    total = 0
    done = 0
    started = time.perf_counter()
    child_prefix = ""  # set in a worker process: its lines are tagged, and no spinner fights the parent's


def become_child(prefix: str) -> None:
    """In a worker process (edgepack.workers): tag each line with the format, no counter, no spinner."""
    _Run.total, _Run.done, _Run.child_prefix = 0, 0, prefix


def begin_run(total_steps: int) -> None:
    """Start counting `[k/N]` steps and the elapsed time of a long command."""
    _Run.total, _Run.done, _Run.started = total_steps, 0, time.perf_counter()


def add_steps(count: int) -> None:
    """A step the plan did not know about when the run began (e.g. preparing calibration images)."""
    if _Run.total:
        _Run.total += count


def _counter() -> str:
    if not _Run.total:
        return ""
    k = min(_Run.done + 1, _Run.total)
    return f"[{k:>{len(str(_Run.total))}}/{_Run.total}] "


def _elapsed() -> str:
    seconds = int(time.perf_counter() - _Run.started)
    return f"{seconds // 60}:{seconds % 60:02d}"


@contextlib.contextmanager
def step(action: str, subject: str) -> Iterator[dict]:
    """Print a spinner while work runs, then one line `✓ [k/N] action subject  1.2 s  (m:ss)  note`.

    The caller may put a short note (size, metric) into the yielded dict under "note".
    """
    checkpoint()
    info: dict = {}
    start = time.perf_counter()
    counter = f"  [{_Run.child_prefix}] " if _Run.child_prefix else _counter()
    try:
        if _Run.child_prefix:
            yield info
        else:
            with console.status(f"{counter}{action} [bold]{subject}[/bold] ... (started at {_elapsed()})"):
                yield info
        checkpoint()  # a Ctrl-C or SIGTERM that native code swallowed during the step
    except BaseException:
        _Run.done += 1
        console.print(Text.assemble(("✗ ", "red"), f"{counter}{f'{action} {subject}':<34} failed after {time.perf_counter() - start:.1f} s"))
        raise
    _Run.done += 1
    note = info.get("note", "")
    total = f"  ({_elapsed()})" if _Run.total else ""
    console.print(Text.assemble(("✓ ", "green"), f"{counter}{f'{action} {subject}':<34} {time.perf_counter() - start:5.1f} s{total}  {note}"))


def warn(message: str) -> None:
    console.print(Text.assemble(("warning: ", "yellow"), message))


def info(message: str) -> None:
    console.print(message, markup=False, soft_wrap=True)  # a path or a command must stay on one line


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, justify="left" if column in {"artifact", "format", "precision", "status", "file"} else "right")
    for row in rows:
        out.add_row(*row)
    stdout.print(out)
