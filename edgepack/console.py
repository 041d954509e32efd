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


@contextlib.contextmanager
def step(action: str, subject: str) -> Iterator[dict]:
    """Print a spinner while work runs, then one line `✓ subject action  1.2 s  note`.

    The caller may put a short note (size, metric) into the yielded dict under "note".
    """
    info: dict = {}
    start = time.perf_counter()
    try:
        with console.status(f"{action} [bold]{subject}[/bold] ..."):
            yield info
    except BaseException:
        console.print(Text.assemble(("✗ ", "red"), f"{f'{action} {subject}':<34} failed after {time.perf_counter() - start:.1f} s"))
        raise
    note = info.get("note", "")
    console.print(Text.assemble(("✓ ", "green"), f"{f'{action} {subject}':<34} {time.perf_counter() - start:5.1f} s  {note}"))


def warn(message: str) -> None:
    console.print(Text.assemble(("warning: ", "yellow"), message))


def info(message: str) -> None:
    console.print(message, markup=False)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, justify="left" if column in {"artifact", "format", "precision", "status", "file"} else "right")
    for row in rows:
        out.add_row(*row)
    stdout.print(out)
