"""TFLite (LiteRT) .tflite with TFLite Metadata; validated with the LiteRT interpreter.

Converter, chosen by measurement (README "Dependencies"): litert-torch, Google's PyTorch ->
LiteRT path, from the user's PyTorch module or, for ONNX and Keras sources, from the canonical
ONNX graph through onnx2torch. The input is NHWC (as Android code supplies pixels); outputs keep
the canonical layout. Precisions other than fp32 come from ai-edge-quantizer on the fp32 model.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.formats import tflite_metadata
from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, HostRunner, TargetFormat, require_modules, fit_shape
from edgepack.native import captured_native_output, quiet_tensorflow
from edgepack.quantize import tflite_quant
from edgepack.sources.base import CanonicalModel, pytorch_module, through_onnx2torch

_GPU_WARNING = re.compile(r"GPU COMPATIBILITY WARNING: (.+)")
# Ops the TFLite GPU delegate does not run (the analyzer of TF 2.21 passes some of them, e.g.
# GATHER_ND); a model using them falls back to the CPU op by op on phones.
GPU_UNSUPPORTED_OPS = ("GATHER_ND", "SCATTER_ND", "TOPK_V2", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
                       "WHERE", "UNIQUE", "CUSTOM")


@contextlib.contextmanager
def constants_kept_alive() -> Any:
    """litert-torch 0.10 caches each lowered constant under its storage address
    (`backend/inline_consts.py`, `_ConstantFingerprint`). A non-contiguous constant is first copied
    with `contiguous()`, and the copy is freed after lowering; the copy of another constant of the
    same shape can then get the same address, hit the cache and take the first one's values.
    Measured on PP-OCRv4 rec: its two 120x240 fully connected weights became one in about half the
    runs (10.81 MB instead of 10.93 MB) and the answers changed (CTC agreement 0.14). Keeping every
    fingerprinted tensor alive until the conversion ends makes the addresses unique."""
    from litert_torch.backend import inline_consts

    fingerprint = inline_consts._ConstantFingerprint
    original = fingerprint.__dict__["from_tensor"]
    alive: list[Any] = []

    def from_tensor(cls: Any, tensor: Any) -> Any:
        alive.append(tensor)
        return original.__func__(cls, tensor)

    fingerprint.from_tensor = classmethod(from_tensor)
    try:
        yield
    finally:
        fingerprint.from_tensor = original
        alive.clear()


def fp32_flatbuffer(model: CanonicalModel, workdir: Path) -> Path:
    """The fp32 NHWC model, converted once per build and shared by all TFLite precisions."""
    if "tflite_fp32" in model.cache:
        return model.cache["tflite_fp32"]
    quiet_tensorflow()
    import torch

    module = pytorch_module(model)
    n, c, h, w = model.input_shape
    sample = torch.zeros(n, h, w, c)
    out = workdir.parent / "tflite-fp32" / "model.tflite"
    out.parent.mkdir(exist_ok=True)
    try:
        with captured_native_output("litert-torch", (1, 2)):
            import litert_torch

            nhwc = litert_torch.to_channel_last_io(module, args=[0]).eval()
            with constants_kept_alive():
                litert_torch.convert(nhwc, (sample,)).export(str(out))
    except ConversionError:
        raise
    except Exception as e:  # litert-torch raises torch.export / lowering errors of many types
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ConversionError(f"tflite: litert-torch could not convert the model: {first}",
                              "replace the operation it names, or drop tflite from --formats") from e
    model.cache["tflite_fp32"] = out
    return out


def short_tensor_name(name: str) -> str:
    """litert-torch names a tensor by every source location fused into it, each the full module path
    (`litert_torch._convert...ChannelLastIOWrapper/pkg.Model_wrapped/torch.nn.modules.conv.Conv2d_0;...`):
    about 300 bytes per tensor, 11% of the built-in detector's int8 file. The first location's module
    path, class names only, says the same (`Sequential_0/Conv2d_0`)."""
    first = name.split(";")[0]
    parts = [p for p in first.split("/") if p and not p.startswith("litert_torch.") and not p.endswith("_wrapped")]
    return "/".join(p.rsplit(".", 1)[-1] for p in parts) or first


def compact_tensor_names(path: Path) -> None:
    """Intermediate tensors renamed with `short_tensor_name` (unique, in place); the model's input
    and output tensors keep their names, which signatures, apps and the manifest use."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for buffer in model.buffers:
        # weights litert-torch stores after the flatbuffer (by offset) come back as bytes, which the
        # generated Pack writes one byte per Python call (15 s for a YOLOv8n); as numpy, one copy
        if buffer.data is not None and not isinstance(buffer.data, np.ndarray):
            buffer.data = np.frombuffer(buffer.data, np.uint8)
    for graph in model.subgraphs:
        keep = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
        used: dict[str, int] = {}
        for index, tensor in enumerate(graph.tensors):
            if index in keep or tensor.name is None:
                continue
            name = short_tensor_name(tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name)
            used[name] = used.get(name, 0) + 1
            tensor.name = name if used[name] == 1 else f"{name}:{used[name] - 1}"
    flatbuffer_utils.write_model(model, str(path))


def classifier_output(job: ConversionJob) -> str | None:
    """"logits" or "probabilities" for a classifier: the manifest's model.classifier_output when the
    build states it, else measured on the ONNX reference (seeded random images), once per build."""
    if job.spec.model.task != "classify":
        return None
    stated = getattr(job.spec.model, "classifier_output", None) or job.model.cache.get("classifier_output")
    if stated in tflite_metadata.CLASSIFIER_OUTPUTS:
        return stated
    from edgepack.validate.reference import OnnxRuntimeRunner, run_all

    n, c, h, w = job.model.input_shape
    pixels = np.random.default_rng(0).uniform(0, 255, (4, n, c, h, w))
    mean, std = (np.asarray(v, np.float64)[:c].reshape(1, 1, c, 1, 1) for v in (job.spec.model.mean, job.spec.model.std))
    scores = run_all(OnnxRuntimeRunner(job.model.onnx_path, 1), ((pixels - mean) / std).astype(np.float32))[0]
    job.model.cache["classifier_output"] = tflite_metadata.classifier_output_kind(scores)
    return job.model.cache["classifier_output"]


def _write_metadata(job: ConversionJob, plain: Path, out: Path) -> str:
    m = job.spec.model
    written = tflite_metadata.write_metadata(plain, out, {
        "name": job.model_name, "description": m.description or f"{m.task} model converted by edgepack",
        "version": m.version, "author": m.author, "license": m.license, "task": m.task, "head": m.head,
        "mean": m.mean, "std": m.std, "color_order": m.color_order, "resize": m.resize,
        "classifier_output": classifier_output(job),
        "outputs": [{"name": n, "shape": list(s)} for n, s in zip(job.model.output_names, job.model.output_shapes)],
    }, list(job.labels or []))
    names = [t["name"] for t in written["subgraph_metadata"][0]["output_tensor_metadata"]]
    return f"TFLite Metadata ({m.task}; outputs {', '.join(names)})"


def gpu_delegate_warnings(model_path: Path) -> list[str]:
    """LiteRT's model analyzer with its GPU-delegate compatibility check, plus int64 tensors and
    dynamic shapes, which the GPU delegate does not take either. The analyzer is the native one
    `tf.lite.experimental.Analyzer` wraps, as the LiteRT runtime wheel ships it: the same report
    without importing TensorFlow (5-7 s, on the critical path of every TFLite build)."""
    from ai_edge_litert import _pywrap_analyzer_wrapper
    from ai_edge_litert.interpreter import Interpreter

    warnings: list[str] = []
    with captured_native_output("tflite analyzer", (1, 2)):
        report = _pywrap_analyzer_wrapper.ModelAnalyzer(str(model_path), True, True)
    for line in report.splitlines():
        match = _GPU_WARNING.search(line)
        if match and match.group(1).strip() not in warnings:
            warnings.append(match.group(1).strip())
    for op in sorted(_builtin_ops(model_path)):
        if op in GPU_UNSUPPORTED_OPS or op.startswith("STABLEHLO_"):
            warnings.append(f"op {op} is not supported by the GPU delegate (runs on the CPU)")
    interpreter = Interpreter(model_path=str(model_path))
    int64 = [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.int64]
    if int64:
        warnings.append(f"int64 tensors ({len(int64)}, e.g. {int64[0]!r}) are not supported by the GPU delegate")
    dynamic = [d["name"] for d in interpreter.get_input_details() if -1 in list(d.get("shape_signature", []))]
    if dynamic:
        warnings.append(f"dynamic input shape ({', '.join(dynamic)}): the GPU delegate needs static shapes")
    return warnings


def _builtin_ops(model_path: Path) -> set[str]:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_path.read_bytes()))
    used = set()
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            used.add(names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM"))
    return used


class TfliteRunner:
    def __init__(self, path: Path, entry: dict[str, Any], threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with captured_native_output("tflite interpreter", (2,)):  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.output_shapes = [o["shape"] for o in entry["outputs"]]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1), np.float32)
        dtype = self.input["dtype"]
        if dtype != np.float32:  # int8 I/O: quantize with the tensor's own scale and zero point
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            nhwc = np.clip(np.rint(nhwc / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], nhwc)
        self.interpreter.invoke()
        results = []
        for detail, shape in zip(self.outputs, self.output_shapes):
            value = self.interpreter.get_tensor(detail["index"])
            if detail["dtype"] != np.float32:
                scale, zero = detail["quantization"]
                value = (value.astype(np.float32) - zero) * scale
            results.append(fit_shape(np.asarray(value, np.float32), shape))
        return results


@FORMATS.register("tflite")
class TfliteFormat(TargetFormat):
    info = FormatInfo(
        name="tflite",
        title="TFLite (LiteRT)",
        precisions=("fp32", "fp16", "int8-dynamic", "int8"),
        default_precisions=("fp32", "fp16", "int8-dynamic"),
        calibrated=("int8",),
        runtime="LiteRT interpreter",
        platforms=("android",),
    )

    def check_environment(self) -> None:
        require_modules("tflite", {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert",
                                   "ai_edge_quantizer": "ai-edge-quantizer", "flatbuffers": "flatbuffers"})

    def convert(self, job: ConversionJob) -> ConvertedModel:
        fp32 = fp32_flatbuffer(job.model, job.workdir)
        plain = job.workdir / "plain.tflite"
        details: dict[str, Any] = {"converter": "litert-torch" + (" (via onnx2torch)" if through_onnx2torch(job.model) else "")}
        if job.precision == "fp32":
            plain.write_bytes(fp32.read_bytes())
        elif job.precision == "fp16":
            tflite_quant.fp16(fp32, plain)
        elif job.precision == "int8-dynamic":
            tflite_quant.dynamic_int8(fp32, plain)
        else:
            details.update(self._full_int8(job, fp32, plain))
        compact_tensor_names(plain)
        io_record = tflite_quant.io_quantization(plain)
        details["io"] = io_record
        out = job.workdir / "model.tflite"
        details["metadata"] = _write_metadata(job, plain, out)
        warnings = [f"GPU delegate: {w}" for w in gpu_delegate_warnings(out)]
        details["gpu_delegate_warnings"] = [w.removeprefix("GPU delegate: ") for w in warnings]
        return ConvertedModel(
            files={"model": out},
            input_name=io_record["inputs"][0]["name"],
            output_names=[o["name"] for o in io_record["outputs"]],
            layout="NHWC",
            details=details,
            warnings=warnings,
        )

    def _full_int8(self, job: ConversionJob, fp32: Path, out: Path) -> dict[str, Any]:
        from edgepack.quantize.agreement import artifact_entry

        return tflite_quant.quantize_job(job, fp32, out, lambda path: TfliteRunner(path, artifact_entry(job, "int8", "NHWC"), 2))

    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        return TfliteRunner(files["model"], entry, threads)

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(files["model"]))
        shapes = lambda details: {d["name"]: [[int(v) for v in d["shape"]], np.dtype(d["dtype"]).name] for d in details}  # noqa: E731
        return {
            "inputs": shapes(interpreter.get_input_details()),
            "outputs": shapes(interpreter.get_output_details()),
            "metadata": tflite_metadata.summary(files["model"]),
        }
