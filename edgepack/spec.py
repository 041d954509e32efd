"""What the user asks for: the build spec, loaded from edgepack.yaml and overridden by flags.

Everything is checked here, before any heavy import, so a typo fails in milliseconds with the
list of valid choices.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from edgepack.errors import SpecError

TASKS = ("detect", "classify", "segment", "pose", "sequence", "tensor")
# the output layouts a task can decode; a task without heads (classify, tensor) ignores `head`
TASK_HEADS: dict[str, tuple[str, ...]] = {
    "detect": ("yolov8", "yolov5", "raw", "yolox"),
    "classify": (),
    "segment": ("yolov8", "map"),
    "pose": ("yolov8",),
    "sequence": ("ctc",),
    "tensor": (),
}
HEADS = tuple(dict.fromkeys(h for heads in TASK_HEADS.values() for h in heads))
DEFAULT_HEAD = "yolov8"
COLOR_ORDERS = ("rgb", "bgr")
RESIZE_MODES = ("letterbox", "stretch")
BUILTIN_PREFIX = "builtin:"


@dataclass
class ModelSpec:
    source: str | None = None  # file path, "package.module:factory", "builtin:NAME"; None = built-in example
    task: str | None = None  # None: what the model's metadata says, else detect
    input_shape: tuple[int, ...] | None = None  # 1,3,H,W as the source model takes it
    color_order: str = "rgb"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in 0..255 pixel units
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    resize: str = "letterbox"
    labels: str | None = None
    head: str = DEFAULT_HEAD  # see TASK_HEADS; the default means "the task's first head"
    task_output: str | None = None  # name of the output the task decodes; None: the one whose shape fits
    map_threshold: float = 0.3  # segment/map: foreground where the probability map exceeds this
    name: str | None = None
    description: str = ""
    version: str = "1.0"
    author: str = ""
    license: str = ""


@dataclass
class CalibrationSpec:
    images: str | None = None
    count: int = 200
    method: str = "minmax"  # ncnn: minmax | percentile | kl; MNN: EMA unless kl
    seed: int = 0
    int8_skip: list[str] = field(default_factory=list)  # layers kept in float (ncnn layer names)
    auto_mixed: bool = True  # keep stem and head in float when int8 task agreement is too low
    explain: bool = False  # per-layer int8 sensitivity table
    int8_io: str = "int8"  # TFLite full int8: int8 (full-integer) or float input/output tensors


@dataclass
class ValidationSpec:
    images: str | None = None
    count: int = 8
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    strict: bool = False
    latency_runs: int = 10
    threads: int = 2


@dataclass
class AppSpec:
    name: str = "Edgepack Demo"
    package: str = "dev.edgepack.demo"


@dataclass
class BuildSpec:
    model: ModelSpec = field(default_factory=ModelSpec)
    targets: dict[str, list[str]] = field(default_factory=dict)  # format -> precisions; empty = defaults
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    app: AppSpec = field(default_factory=AppSpec)
    output: str = "edgepack-out"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelSpec, "calibration": CalibrationSpec, "validation": ValidationSpec, "app": AppSpec}


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _coerce_value(where: str, value: Any, kind: Any) -> Any:
    """One config value checked against its field's type; the error names the key."""
    import types
    import typing

    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    origin = typing.get_origin(kind) or kind
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(f"config: {where} must be true or false (got {_describe(value)})")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SpecError(f"config: {where} must be a whole number (got {_describe(value)})")
    if kind is float:
        if is_number:
            return float(value)
        raise SpecError(f"config: {where} must be a number (got {_describe(value)})")
    if kind is str:
        if isinstance(value, str):
            return value
        if is_number and where.endswith(".version"):
            return str(value)  # YAML reads 1.0 as a number
        raise SpecError(f"config: {where} must be text (got {_describe(value)})")
    if origin is tuple and where.endswith(".input_shape"):
        return parse_shape(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        try:
            numbers = tuple(float(v) for v in value) if not isinstance(value, (str, bytes, dict)) else None
        except (TypeError, ValueError):
            numbers = None
        if numbers is None or (args and args[-1] is not Ellipsis and len(numbers) != len(args)):
            raise SpecError(f"config: {where} must be {len(args)} numbers, e.g. [0, 0, 0] (got {_describe(value)})")
        return numbers
    if origin is list:
        if isinstance(value, str):
            return parse_list(value) or []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise SpecError(f"config: {where} must be a list of names (got {_describe(value)})")
    return value


def _coerce_section(name: str, cls: type, values: Any, base: Any) -> Any:
    import typing

    if not isinstance(values, Mapping):
        raise SpecError(f"config: section {name!r} must be a mapping of keys to values (got {_describe(values)})")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known), key=str)
    if unknown:
        raise SpecError(f"{name}: unknown key {unknown[0]!r} (valid keys: {', '.join(known)})")
    hints = typing.get_type_hints(cls)
    return dataclasses.replace(base, **{k: _coerce_value(f"{name}.{k}", v, hints[k]) for k, v in values.items()})


def parse_shape(text: str | list | tuple | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise SpecError(f"input shape {text!r} is not a list of integers", "use e.g. --input-shape 1,3,320,320") from None
    if len(shape) != 4 or shape[0] != 1 or shape[1] not in (1, 3) or min(shape) <= 0:
        raise SpecError(f"input shape {shape} is not 1,C,H,W with C=1 or 3", "use e.g. --input-shape 1,3,320,320")
    return shape


def parse_list(text: str | list | None) -> list[str] | None:
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    return [str(i).strip() for i in items if str(i).strip()]


def load_spec(config: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> BuildSpec:
    """Defaults, then the YAML file (paths relative to it), then command-line overrides."""
    spec = BuildSpec()
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise SpecError(f"config file {path} does not exist", "run `edgepack init` to write one")
        try:
            data = yaml.safe_load(read_text_file(path, "config file")) or {}
        except yaml.YAMLError as e:
            raise SpecError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise SpecError(f"config file {path} must be a mapping of sections")
        spec = _apply_mapping(spec, data, base_dir=path.parent)
    if overrides:
        spec = _apply_overrides(spec, overrides)
    check_spec(spec)
    return spec


def _resolve(path: str | None, base_dir: Path) -> str | None:
    if path is None or ":" in path and not Path(path).exists() and not os.path.isabs(path):
        return path  # module:factory or builtin: names are not paths
    return str((base_dir / path).resolve()) if not os.path.isabs(path) else path


def _apply_mapping(spec: BuildSpec, data: Mapping[str, Any], base_dir: Path) -> BuildSpec:
    valid = set(_SECTIONS) | {"targets", "output"}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise SpecError(f"config: unknown section {unknown[0]!r} (valid sections: {', '.join(sorted(valid))})")
    changes: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if data.get(name):
            changes[name] = _coerce_section(name, cls, data[name], getattr(spec, name))
    spec = dataclasses.replace(spec, **changes)
    m = spec.model
    spec.model = dataclasses.replace(m, source=_resolve(m.source, base_dir), labels=_resolve(m.labels, base_dir))
    spec.calibration.images = _resolve(spec.calibration.images, base_dir)
    spec.validation.images = _resolve(spec.validation.images, base_dir)
    if "targets" in data:
        targets = data["targets"] or {}
        if not isinstance(targets, dict):
            raise SpecError("config: targets must map a format to a list of precisions, e.g. ncnn: [fp32, fp16]")
        spec.targets = {str(k): parse_list(v) or [] for k, v in targets.items()}
    if "output" in data:
        spec.output = str(_resolve(str(data["output"]), base_dir))
    return spec


def _apply_overrides(spec: BuildSpec, o: Mapping[str, Any]) -> BuildSpec:
    m = spec.model
    if o.get("model") is not None:
        m.source = str(o["model"])
    if o.get("task"):
        m.task = o["task"]
    if o.get("head"):
        m.head = o["head"]
    if o.get("task_output"):
        m.task_output = str(o["task_output"])
    if o.get("map_threshold") is not None:
        m.map_threshold = o["map_threshold"]
    if o.get("input_shape"):
        m.input_shape = parse_shape(o["input_shape"])
    if o.get("labels"):
        m.labels = str(o["labels"])
    for key in ("color_order", "resize", "head", "name", "description", "author", "license"):
        if o.get(key) is not None:
            setattr(m, key, str(o[key]))
    if o.get("model_version") is not None:
        m.version = str(o["model_version"])
    for key in ("mean", "std"):
        if o.get(key) is not None:
            setattr(m, key, _coerce_value(f"--{key}", o[key], tuple[float, float, float]))
    if o.get("val_images"):
        spec.validation.images = str(o["val_images"])
    if o.get("val_count"):
        spec.validation.count = int(o["val_count"])
    if o.get("score_threshold") is not None:
        spec.validation.score_threshold = float(o["score_threshold"])
    if o.get("iou_threshold") is not None:
        spec.validation.iou_threshold = float(o["iou_threshold"])
    if o.get("no_latency"):
        spec.validation.latency_runs = 0
    if o.get("calib_method"):
        spec.calibration.method = str(o["calib_method"])
    if o.get("calib"):
        spec.calibration.images = str(o["calib"])
    if o.get("calib_count"):
        spec.calibration.count = int(o["calib_count"])
    if o.get("explain"):
        spec.calibration.explain = True
    if o.get("int8_io"):
        spec.calibration.int8_io = o["int8_io"]
    if o.get("int8_skip"):
        spec.calibration.int8_skip = parse_list(o["int8_skip"]) or []
    if o.get("output"):
        spec.output = str(o["output"])
    if o.get("strict"):
        spec.validation.strict = True
    formats = parse_list(o.get("formats"))
    precisions = parse_list(o.get("precisions"))
    if formats is not None:
        spec.targets = {f: list(spec.targets.get(f, [])) for f in formats}
    if precisions is not None:
        spec.targets = _filter_precisions(list(spec.targets) or _default_format_names(), precisions, explicit=bool(spec.targets))
    return spec


def _filter_precisions(format_names: list[str], precisions: list[str], explicit: bool = False) -> dict[str, list[str]]:
    """`--precisions` applies to every chosen format that supports it; a precision no chosen format
    supports is an error, and so is a format named in --formats that would build nothing because
    it refuses what was asked (Core ML and int8)."""
    from edgepack.formats import FORMATS

    targets: dict[str, list[str]] = {}
    for name in format_names:
        info = FORMATS.get(name).info
        chosen = [p for p in precisions if p in info.precisions]
        refused = [(p, why) for p, why in info.not_offered if p in precisions]
        if explicit and refused and not chosen:
            raise SpecError(f"{name} does not build precision {refused[0][0]!r}: {refused[0][1]}",
                            f"choose from: {', '.join(info.precisions)}, or drop {name} from --formats")
        if chosen:
            targets[name] = chosen
    for p in precisions:
        if not any(p in chosen for chosen in targets.values()):
            valid = sorted({q for n in format_names for q in FORMATS.get(n).info.precisions})
            raise SpecError(f"precision {p!r} is not supported by {', '.join(format_names)} (choose from: {', '.join(valid)})")
    return targets


def _default_format_names() -> list[str]:
    from edgepack.formats import FORMATS

    return [name for name in FORMATS if FORMATS.get(name).info.default_enabled]


def check_spec(spec: BuildSpec) -> None:
    m = spec.model
    for value, allowed, what in (
        (m.color_order, COLOR_ORDERS, "color_order"),
        (m.resize, RESIZE_MODES, "resize"),
    ):
        if value not in allowed:
            raise SpecError(f"model.{what} {value!r} is not valid (choose from: {', '.join(allowed)})")
    if m.task is not None:
        task_head(m.task, m.head)
    elif m.head not in (*HEADS, DEFAULT_HEAD):  # the task comes from the model's metadata once it is loaded
        raise SpecError(f"model.head {m.head!r} is not valid (choose from: {', '.join(HEADS)})")
    try:
        m.map_threshold = float(m.map_threshold)
    except (TypeError, ValueError):
        m.map_threshold = -1.0 if not isinstance(m.map_threshold, (int, float)) else m.map_threshold
    if not 0.0 < m.map_threshold < 1.0:
        raise SpecError("model.map_threshold is not valid (a probability between 0 and 1, e.g. 0.3)")
    if m.task_output is not None and not isinstance(m.task_output, str):
        raise SpecError(f"model.task_output {m.task_output!r} is not valid (the name of one of the model's outputs)")
    if m.name is not None:
        import re

        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", m.name) or ".." in m.name:
            raise SpecError(f"model.name {m.name!r} is not a plain file name", "use letters, digits, '.', '-' and '_' only")
    v = spec.validation
    if not (0 <= v.score_threshold <= 1 and 0 <= v.iou_threshold <= 1):
        raise SpecError("validation.score_threshold and validation.iou_threshold must lie in 0..1")
    if len(m.mean) != 3 or len(m.std) != 3 or min(m.std) <= 0:
        raise SpecError("model.mean and model.std need three values each, std > 0 (pixel units, 0..255)")
    if m.labels is not None and not Path(m.labels).is_file():
        raise SpecError(f"labels file {m.labels} does not exist", "give a text file with one class name per line")
    if spec.calibration.count <= 0 or spec.validation.count <= 0:
        raise SpecError("calibration.count and validation.count must be positive")
    if spec.calibration.method not in ("kl", "minmax", "percentile"):
        raise SpecError(f"calibration.method {spec.calibration.method!r} is not valid (choose from: kl, minmax, percentile)")
    if spec.calibration.int8_io not in ("int8", "float"):
        raise SpecError(f"calibration.int8_io {spec.calibration.int8_io!r} is not valid (choose from: int8, float)")
    for name in ("images",):
        for section in (spec.calibration, spec.validation):
            folder = getattr(section, name)
            if folder is not None and not Path(folder).is_dir():
                raise SpecError(f"image folder {folder} does not exist", "pass a folder of .jpg/.png images")
    from edgepack.formats import FORMATS

    for fmt, precisions in spec.targets.items():
        info = FORMATS.get(fmt).info  # raises with the list of formats
        for p in precisions:
            if p not in info.precisions:
                raise SpecError(f"{fmt}: precision {p!r} is not supported (choose from: {', '.join(info.precisions)})")


def read_text_file(path: str | Path, what: str) -> str:
    """A UTF-8 text file (a byte-order mark is dropped); any other encoding is refused by name."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", "save it as UTF-8"
        ) from None


def task_head(task: str, head: str | None) -> str | None:
    """The head a task decodes with: None for tasks without heads; the default head stands for
    the task's first head (so `--task sequence` alone means CTC)."""
    heads = TASK_HEADS.get(task)
    if heads is None:
        raise SpecError(f"model.task {task!r} is not valid (choose from: {', '.join(TASKS)})")
    if not heads:
        return None
    if head in heads:
        return head
    if head in (None, DEFAULT_HEAD):
        return heads[0]
    raise SpecError(f"model.head {head!r} is not valid for task {task!r} (choose from: {', '.join(heads)})")


def read_labels(path: str | Path) -> list[str]:
    labels = [line.strip() for line in read_text_file(path, "labels file").splitlines()]
    return [label for label in labels if label]
