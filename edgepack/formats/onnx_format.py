"""ONNX as a deliverable (fp32, fp16, int8 QDQ) plus ONNX Runtime Mobile's `.ort` format;
validated with ONNX Runtime. Registered as "onnx" (the module is not named onnx.py so that it
never shadows the `onnx` package).

- fp32: the canonical graph itself, with edgepack's metadata in `metadata_props`.
- fp16: onnxruntime's float16 converter (`onnxruntime.transformers.float16`), input/output kept
  float32 so apps feed the same tensors as for fp32.
- int8: static QDQ by `onnxruntime.quantization.quantize_static` over the calibration images
  (per-channel int8 weights, int8 activations: the symmetric form ARM kernels prefer), the float
  tail after the last weight layer excluded (one int8 scale cannot hold a detector's boxes and
  scores; see edgepack/quantize/onnx_graph.py).
- fp32 and int8 also ship as `.ort` (`onnxruntime.tools.convert_onnx_models_to_ort`, optimized
  for ARM, no NCHWc layouts) with its `required_operators.config` next to it, the input of ONNX
  Runtime's reduced-size mobile build. fp16 gets none: the tool optimizes with this host's CPU
  kernels, and x86 has no fp16 Conv, so the .ort would compute (and weigh) fp32.
- int8 falls back to keeping the stem and head convolutions float when the task agreement on
  calibration images misses the int8 floor (automatic mixed precision, as for TFLite).

Validation runs the `.onnx` in ONNX Runtime and checks that the `.ort` loads and gives the same
answers on every validation input (a difference beyond fp32 rounding fails the artifact).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, HostRunner, TargetFormat, require_modules, fit_shape

ORT_TARGET_PLATFORM = "arm"  # phones: keeps QDQ int8 nodes for ARM kernels, no x86-only NCHWc layout
# .ort vs .onnx on the same input: fp32 graphs differ only by optimizations; the int8 .ort is
# optimized for ARM (QDQ fused into int8 kernels, session.qdqisint8allowed) and runs x86's int8
# kernels here, which the .onnx does not use: the int8 floor bounds that difference (measured
# down to cosine 0.9875 on the built-in classifier)
ORT_MATCH_COSINE = {"fp32": 0.99999, "int8": 0.98}
ORT_NOISE = 1e-5  # max-abs difference (relative to max(1, |output|)) below which .ort and .onnx are equal


def model_metadata(job: ConversionJob) -> dict[str, str]:
    """edgepack's facts stored in the model's metadata_props (ONNX Runtime exposes them as
    custom_metadata_map), so an app can read labels and preprocessing from the file itself."""
    from edgepack import __version__

    m = job.spec.model
    return {
        "edgepack_version": __version__,
        "source_sha256": job.model.source_sha256,
        "task": m.task,
        "head": m.head if m.task == "detect" else "",
        "labels": json.dumps(list(job.labels or []), ensure_ascii=False),
        "preprocessing": json.dumps({"resize": m.resize, "color_order": m.color_order, "mean": list(m.mean), "std": list(m.std)}),
        "precision": job.precision,
        **({"author": m.author} if m.author else {}),
        **({"license": m.license} if m.license else {}),
    }


def _set_metadata(model: Any, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "edgepack", metadata["edgepack_version"]
    model.doc_string = f"{metadata['task']} model converted by edgepack ({metadata['precision']})"


def to_fp16(model: Any) -> Any:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgepack.quantize.onnx_graph import sort_nodes

    converted = convert_float_to_float16(model, keep_io_types=True)
    # the converter appends the input casts after their readers, and writes one identical Cast per
    # reader of a constant that must stay float (e.g. the scales shared by two Resize nodes)
    unique, seen = [], set()
    for node in converted.graph.node:
        key = node.SerializeToString()
        if key not in seen:
            seen.add(key)
            unique.append(node)
    if len(unique) < len(converted.graph.node):
        kept = [type(n)() for n in unique]
        for copy, node in zip(kept, unique):
            copy.CopyFrom(node)
        del converted.graph.node[:]
        converted.graph.node.extend(kept)
    sort_nodes(converted.graph)
    return converted


class OnnxCalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over edgepack's preprocessed images."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.input_name = input_name
        self.images = images  # N x 1 x C x H x W
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.images):
            return None
        self.index += 1
        return {self.input_name: np.ascontiguousarray(self.images[self.index - 1], np.float32)}

    def rewind(self) -> None:
        self.index = 0


CALIBRATION_METHODS = {"kl": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}


def quantize_int8(job: ConversionJob, source: Path, out: Path) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgepack.quantize.onnx_graph import float_tail_nodes

    from edgepack.quantize.agreement import agreement_with_reference, artifact_entry
    from edgepack.quantize.onnx_graph import stem_and_head_nodes
    from edgepack.validate.validator import TASK_FLOOR

    calibration = job.calibration()
    prepared = out.parent / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared)).graph
    excluded = [n.name for n in float_tail_nodes(graph)] + list(job.spec.calibration.int8_skip)
    method = CALIBRATION_METHODS[job.spec.calibration.method]

    def run_quantizer() -> float:
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
            quantize_static(
                str(prepared), str(out), OnnxCalibrationReader(job.model.input_name, calibration),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded, calibrate_method=getattr(CalibrationMethod, method),
                extra_options={"ActivationSymmetric": True},
            )
        return agreement_with_reference(job, OnnxArtifactRunner({"model": out}, artifact_entry(job, "int8"), 2), calibration[:16])

    details: dict[str, Any] = {
        "quantizer": "onnxruntime.quantization.quantize_static (QDQ)",
        "weights": "int8 per channel, symmetric",
        "activations": "int8 per tensor, symmetric",
        "calibration": {"method": method, "images": int(len(calibration))},
    }
    agreement = run_quantizer()
    if job.spec.calibration.auto_mixed and agreement < TASK_FLOOR["int8"]:
        before = agreement
        excluded += [n.name for n in stem_and_head_nodes(graph) if n.name not in excluded]
        agreement = run_quantizer()
        details["mixed_precision"] = {"reason": f"task agreement {before:.3f} < {TASK_FLOOR['int8']}", "before": round(before, 4)}
    prepared.unlink()
    details["calibration"]["task_agreement_on_calibration"] = round(agreement, 4)
    details["float_nodes"] = excluded
    return details


def convert_to_ort(onnx_path: Path) -> tuple[Path, Path]:
    """`.ort` and its required-operators config next to the model (ONNX Runtime's own tool)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # it logs every file at INFO
    with contextlib.redirect_stdout(io.StringIO()):  # the tool prints every step
        convert_onnx_models_to_ort(onnx_path, optimization_styles=[OptimizationStyle.Fixed], target_platform=ORT_TARGET_PLATFORM)
    ort_path = onnx_path.with_suffix(".ort")
    config = onnx_path.with_suffix(".required_operators.config")
    if not ort_path.is_file() or not config.is_file():
        raise ConversionError(f"onnx: convert_onnx_models_to_ort wrote no {ort_path.name} / {config.name}")
    return ort_path, config


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxArtifactRunner:
    """Runs the `.onnx`; every distinct input also goes through the `.ort`, which must agree."""

    def __init__(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> None:
        self.session = _session(files["model"], threads)
        self.ort_session = _session(files["ort"], threads) if "ort" in files else None
        self.input_name = self.session.get_inputs()[0].name
        self.output_shapes = [o["shape"] for o in entry["outputs"]]
        self.checked: set[bytes] = set()
        self.worst_ort_cosine = 1.0
        self.ort_floor = ORT_MATCH_COSINE.get(entry.get("precision", "fp32"), 0.99999)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        feed = {self.input_name: np.ascontiguousarray(x, np.float32)}
        outputs = [np.asarray(o, np.float32) for o in self.session.run(None, feed)]
        key = hashlib.sha1(np.ascontiguousarray(x).tobytes()).digest()
        if self.ort_session is not None and key not in self.checked:
            from edgepack.validate.metrics import cosine, max_abs

            for got, want in zip(self.ort_session.run(None, feed), outputs):
                got = np.asarray(got, np.float32)
                # an output that is all but zero on this image (PP-OCR's text map on a scene without
                # text: max 2e-5) has a cosine made of rounding noise; float noise is not a difference
                if max_abs(got, want) > ORT_NOISE * max(1.0, float(np.abs(want).max())):
                    self.worst_ort_cosine = min(self.worst_ort_cosine, cosine(got, want))
            if self.worst_ort_cosine < self.ort_floor:
                raise RuntimeError(f".ort output differs from the .onnx (cosine {self.worst_ort_cosine:.6f} < {self.ort_floor})")
            self.checked.add(key)
        return [fit_shape(o, shape) for o, shape in zip(outputs, self.output_shapes)]


@FORMATS.register("onnx")
class OnnxFormat(TargetFormat):
    info = FormatInfo(
        name="onnx",
        title="ONNX / ONNX Runtime Mobile (.ort)",
        precisions=("fp32", "fp16", "int8"),
        default_precisions=("fp32", "fp16"),
        calibrated=("int8",),
        runtime="ONNX Runtime (.onnx and .ort)",
        platforms=(),  # no generated app bundles ONNX Runtime yet
        default_enabled=False,
    )

    def check_environment(self) -> None:
        require_modules("onnx", {"onnxruntime.quantization": "onnxruntime", "onnxruntime.tools.convert_onnx_models_to_ort": "onnxruntime",
                                 "onnxruntime.transformers.float16": "onnxruntime"})

    def convert(self, job: ConversionJob) -> ConvertedModel:
        import onnx

        out = job.workdir / "model.onnx"
        details: dict[str, Any] = {"opset": job.model.opset, "ort_target_platform": ORT_TARGET_PLATFORM}
        if job.precision == "fp32":
            shutil.copy(job.model.onnx_path, out)
        elif job.precision == "fp16":
            onnx.save(to_fp16(onnx.load(str(job.model.onnx_path))), str(out))
            details["converter"] = "onnxruntime.transformers.float16 (input/output kept float32)"
        else:
            details.update(quantize_int8(job, job.model.onnx_path, out))
        model = onnx.load(str(out))
        _set_metadata(model, model_metadata(job))
        onnx.checker.check_model(model)
        onnx.save(model, str(out))
        files = {"model": out}
        if job.precision == "fp16":
            # ONNX Runtime's CPU provider on x86 has no fp16 Conv kernel: converting here would bake
            # casts to fp32 into the .ort (measured: 2.81 MB vs 1.35 MB for the fp16 .onnx)
            details["ort"] = "not written for fp16: convert_onnx_models_to_ort on an ARM64 machine, or ship the fp16 .onnx"
        else:
            files["ort"], files["ort_config"] = convert_to_ort(out)
            details["ort_required_operators"] = _config_ops(files["ort_config"])
        return ConvertedModel(
            files=files,
            input_name=job.model.input_name,
            output_names=list(job.model.output_names),
            details=details,
        )

    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        return OnnxArtifactRunner(files, entry, threads)

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        return describe_onnx(files["model"], files.get("ort"))


def _config_ops(config: Path) -> dict[str, list[str]]:
    """The required-operators config: `domain;opset;op,op,...` per line."""
    ops: dict[str, list[str]] = {}
    for line in config.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            domain, opset, names = line.split(";", 2)
            ops[f"{domain or 'ai.onnx'}:{opset}"] = sorted(names.split(","))
    return ops


def describe_onnx(path: Path, ort_path: Path | None = None) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path))
    dims = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]  # noqa: E731
    kind = lambda v: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()  # noqa: E731
    initializers = {i.name for i in model.graph.initializer}
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    weight_types: dict[str, int] = {}
    for tensor in model.graph.initializer:
        name = onnx.TensorProto.DataType.Name(tensor.data_type).lower()
        weight_types[name] = weight_types.get(name, 0) + 1
    facts: dict[str, Any] = {
        "inputs": {i.name: [dims(i), kind(i)] for i in model.graph.input if i.name not in initializers},
        "outputs": {o.name: [dims(o), kind(o)] for o in model.graph.output},
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "ir_version": model.ir_version,
        "ops": dict(sorted(ops.items())),
        "initializer_types": weight_types,
        "metadata": {p.key: p.value for p in model.metadata_props},
    }
    if ort_path is not None and ort_path.is_file():
        session = _session(ort_path, 1)
        facts["ort"] = {"file": ort_path.name, "size_bytes": ort_path.stat().st_size,
                        "inputs": [i.name for i in session.get_inputs()], "outputs": [o.name for o in session.get_outputs()]}
    return facts
