"""The one interface every target format implements.

A format module declares its facts in `FormatInfo`, converts a `CanonicalModel` into files, and
opens a runner on its real host runtime for validation. Adding a format means adding a module
that registers a `TargetFormat` subclass with `@FORMATS.register(name)`.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import numpy as np

from edgepack.errors import MissingDependencyError
from edgepack.registry import Registry
from edgepack.sources.base import CanonicalModel
from edgepack.spec import BuildSpec

FORMATS: Registry[type["TargetFormat"]] = Registry("format")

PRECISION_NOTES = {
    "fp32": "float32 weights and compute",
    "fp16": "float16 weights (compute fp16 where the device supports it)",
    "int8-weight": "int8 weights, float compute",
    "int8-dynamic": "int8 weights, activations quantized at run time",
    "int8": "int8 weights and activations, calibrated",
}


@dataclass(frozen=True)
class FormatInfo:
    name: str
    title: str
    precisions: tuple[str, ...]
    default_precisions: tuple[str, ...]
    runtime: str  # the host runtime used for validation
    platforms: tuple[str, ...]  # app platforms that can bundle it
    calibrated: tuple[str, ...] = ()  # precisions that need calibration data
    default_enabled: bool = True
    numeric_validation: bool = True  # False when no host runtime can execute the format
    not_offered: tuple[tuple[str, str], ...] = ()  # (precision, why this format does not build it)


@dataclass
class ConversionJob:
    model: CanonicalModel
    precision: str
    workdir: Path  # this conversion's own scratch folder
    spec: BuildSpec
    labels: list[str] | None
    model_name: str
    calibration: Callable[[], np.ndarray] | None = None  # N x C x H x W float32, loaded on demand
    # the build's scratch folder (one model, one calibration set): work every artifact needs, done once
    shared_dir: Path | None = None


@dataclass
class ConvertedModel:
    files: dict[str, Path]  # role -> file in the job's workdir ("model", or "param" + "bin", ...)
    input_name: str
    output_names: list[str]
    layout: str = "NCHW"  # layout of the artifact's image input
    details: dict[str, Any] = field(default_factory=dict)  # format-specific facts for the manifest
    warnings: list[str] = field(default_factory=list)


class HostRunner(Protocol):
    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """x: 1 x C x H x W float32; returns the outputs in the canonical order and shapes."""


class RuntimeUnavailable(Exception):
    """This host cannot execute the artifact (for example Core ML on Linux)."""


def require_modules(format_name: str, modules: dict[str, str], hint: str = "run `make setup`") -> None:
    """MissingDependencyError naming the first module (module -> its package) that is not installed.
    Found without importing it: the converters' imports take seconds and happen in the worker."""
    for module, package in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package is missing or broken
            found = False
        if not found:
            raise MissingDependencyError(f"{format_name} needs {package} ({module} is missing)", hint)


class TargetFormat(ABC):
    info: ClassVar[FormatInfo]

    def check_environment(self) -> None:
        """Raise MissingDependencyError when a tool the format needs is not installed."""

    @abstractmethod
    def convert(self, job: ConversionJob) -> ConvertedModel: ...

    @abstractmethod
    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        """A runner over the artifact's files; `entry` is its manifest record."""

    def static_checks(self, files: dict[str, Path], entry: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
        """For formats no host runtime executes: checks of the artifact's structure (check, ok, detail)."""
        return []

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        """Facts read back from the artifact itself, for `edgepack inspect`."""
        return {}

    def sidecars(self, entry: dict[str, Any]) -> dict[str, str]:
        """Extra small files (suffix -> text) written next to the artifact, from its manifest record."""
        return {}


def fit_shape(array: np.ndarray, shape: tuple[int, ...] | list[int]) -> np.ndarray:
    """Runtimes drop or pack batch dimensions differently: give the canonical shape back
    when only the dimension bookkeeping differs (same element count)."""
    shape = tuple(shape)
    if array.shape == shape:
        return array
    if array.size == int(np.prod(shape)):
        return array.reshape(shape)
    return array
