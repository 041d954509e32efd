"""The edgepack error hierarchy.

Library code raises these and never exits; `edgepack.cli.main` is the only place that turns
them into one printed line and an exit code. Each message is one line: subject first, then the
fact; `hint` says how to fix it.
"""

from __future__ import annotations


class EdgepackError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # always one line
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def __reduce__(self):  # raised in a worker process, re-raised in the parent with its hint
        return (type(self), (self.message, self.hint))


class SpecError(EdgepackError):
    """The configuration or the command line asks for something invalid."""

    exit_code = 2


class SourceError(EdgepackError):
    """The source model cannot be read, traced or exported."""

    exit_code = 3


class MissingDependencyError(EdgepackError):
    exit_code = 4


class ConversionError(EdgepackError):
    exit_code = 5


class ValidationError(EdgepackError):
    """An artifact does not reproduce the reference (or, with --strict, is degraded)."""

    exit_code = 6


class TemplateError(EdgepackError):
    exit_code = 7


class DeviceError(EdgepackError):
    exit_code = 8


class OutputError(EdgepackError):
    """The output folder cannot be written."""

    exit_code = 9
