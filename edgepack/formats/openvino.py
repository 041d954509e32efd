"""OpenVINO IR (.xml + .bin) for Intel CPUs, GPUs and NPUs; validated with OpenVINO's CPU runtime.

- fp32 / fp16: `ov.convert_model` from the canonical ONNX, `ov.save_model(compress_to_fp16=...)`
  (fp16 stores the weights as fp16; the CPU plugin decompresses them and computes in its own
  inference precision).
- int8: NNCF post-training quantization (`nncf.quantize`) on the calibration images, the float
  tail after the last weight layer in NNCF's ignored scope (edgepack/quantize/onnx_graph.py;
  measured in the README, "Other edge runtimes").

Every precision is validated with INFERENCE_PRECISION_HINT f32: the CPU plugin would otherwise run
bf16 on CPUs with AMX/AVX512-BF16 (for an fp32 IR as much as an fp16 one), and the same artifact
would pass on one machine and not on another (NudeNet's fp16 scores: cosine 0.99879 in the
plugin's bf16 default on an AVX512-BF16 EPYC, below the fp16 floor of 0.999; ok in f32). The
compute precision is the deployment's choice; what is validated is the IR: its graph and its
stored weights.

Telemetry: OpenVINO's model converter (ovc) and NNCF send usage statistics through the
`openvino_telemetry` package unless the user opted out. edgepack never lets them load it: both fall
back to their built-in no-op stubs (`without_telemetry`; tests/formats/test_openvino.py proves it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, HostRunner, TargetFormat, require_modules, fit_shape
from edgepack.native import captured_native_output

TELEMETRY_MODULE = "openvino_telemetry"


def without_telemetry() -> None:
    """Make `import openvino_telemetry` fail in this process before openvino/nncf are imported, so
    ovc and NNCF use their stubs. If the caller imported them already, swap in the stubs."""
    if TELEMETRY_MODULE not in sys.modules:
        sys.modules[TELEMETRY_MODULE] = None  # type: ignore[assignment]  # import now raises ImportError
        return
    if sys.modules[TELEMETRY_MODULE] is None:
        return
    from unittest.mock import MagicMock

    stub = None
    for name in ("openvino.tools.ovc.convert_impl", "openvino.tools.ovc.telemetry_utils", "openvino.tools.ovc.utils", "openvino.tools.ovc.main"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "tm"):
            if stub is None:
                import openvino.tools.ovc.telemetry_stub as stub  # noqa: PLW0127
            module.tm = stub
    for name in ("nncf.telemetry", "nncf.telemetry.wrapper", "nncf.telemetry.decorator"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "telemetry"):
            module.telemetry = MagicMock()


def _openvino() -> Any:
    without_telemetry()
    import openvino as ov

    return ov


def rt_info(job: ConversionJob) -> dict[str, str]:
    """edgepack's facts, stored in the IR's rt_info under `edgepack` (read back by `inspect`)."""
    import json

    from edgepack import __version__

    m = job.spec.model
    return {
        "edgepack_version": __version__,
        "source_sha256": job.model.source_sha256,
        "task": m.task,
        "head": m.head if m.task == "detect" else "",
        "labels": json.dumps(list(job.labels or []), ensure_ascii=False),
        "resize": m.resize,
        "color_order": m.color_order,
        "mean": json.dumps(list(m.mean)),
        "std": json.dumps(list(m.std)),
        "precision": job.precision,
    }


def ir_model(job: ConversionJob) -> Any:
    """The fp32 ov.Model converted once per build (shared by the precisions)."""
    if "openvino_model" not in job.model.cache:
        ov = _openvino()
        try:
            with captured_native_output("openvino convert_model", (1, 2)):
                job.model.cache["openvino_model"] = ov.convert_model(str(job.model.onnx_path))
        except Exception as e:  # the frontends raise OpConversionFailure and friends
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ConversionError(f"openvino: convert_model failed: {first}", "drop openvino from --formats") from e
    return job.model.cache["openvino_model"].clone()


def onnx_node_names(job: ConversionJob, model: Any, nodes: list[Any]) -> list[str]:
    """OpenVINO node names of ONNX nodes (the ONNX frontend names each op after its ONNX node)."""
    wanted = {n.name for n in nodes} | set(job.spec.calibration.int8_skip)
    return sorted(op.get_friendly_name() for op in model.get_ops() if op.get_friendly_name() in wanted)


def _nncf_quantize(job: ConversionJob, model: Any, ignored: list[str]) -> Any:
    without_telemetry()
    import nncf

    calibration = job.calibration()
    logging.getLogger("nncf").setLevel(logging.ERROR)
    dataset = nncf.Dataset([np.ascontiguousarray(x, np.float32) for x in calibration])
    try:
        with captured_native_output("nncf", (1, 2)), contextlib.redirect_stdout(io.StringIO()):
            # MIXED: symmetric int8 weights, asymmetric activations (SiLU outputs are not symmetric;
            # measured on the built-in detector: box F1 0.858 with PERFORMANCE, 0.968 with MIXED)
            return nncf.quantize(
                model.clone(), dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration),
                ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
            )
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ConversionError(f"openvino: nncf.quantize failed: {first}", "drop int8 from --precisions for openvino") from e


def quantize(job: ConversionJob, model: Any) -> tuple[Any, dict[str, Any]]:
    """NNCF int8 with the float tail ignored; when the task agreement on calibration images misses
    the int8 floor, the stem and head convolutions are ignored too (automatic mixed precision)."""
    import onnx

    from edgepack.quantize.agreement import agreement_with_reference, artifact_entry
    from edgepack.quantize.onnx_graph import float_tail_nodes, stem_and_head_nodes
    from edgepack.validate.validator import TASK_FLOOR

    graph = onnx.load(str(job.model.onnx_path)).graph
    ignored = onnx_node_names(job, model, float_tail_nodes(graph))
    quantized = _nncf_quantize(job, model, ignored)
    check = job.calibration()[:16]
    entry = artifact_entry(job, "int8")
    agreement = agreement_with_reference(job, OpenVinoRunner(quantized, entry, 2), check)
    details: dict[str, Any] = {
        "quantizer": f"nncf {_version('nncf')} post-training quantization (preset mixed: symmetric int8 weights, asymmetric int8 activations)",
        "calibration": {"images": int(len(job.calibration())), "subset_size": int(len(job.calibration()))},
    }
    if job.spec.calibration.auto_mixed and agreement < TASK_FLOOR["int8"]:
        before = agreement
        ignored = sorted(set(ignored) | set(onnx_node_names(job, model, stem_and_head_nodes(graph))))
        quantized = _nncf_quantize(job, model, ignored)
        agreement = agreement_with_reference(job, OpenVinoRunner(quantized, entry, 2), check)
        details["mixed_precision"] = {"reason": f"task agreement {before:.3f} < {TASK_FLOOR['int8']}", "before": round(before, 4)}
    details["calibration"]["task_agreement_on_calibration"] = round(agreement, 4)
    details["ignored_scope"] = ignored
    details["fake_quantize_ops"] = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    return quantized, details


def _version(package: str) -> str | None:
    from edgepack.tools import package_version

    return package_version(package)


class OpenVinoRunner:
    def __init__(self, model: Path | Any, entry: dict[str, Any], threads: int) -> None:
        """`model`: an IR .xml path, or an ov.Model in memory."""
        ov = _openvino()
        # f32 compute for every precision (module docstring): the numbers must not depend on the host's ISA
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = ov.Core().compile_model(str(model) if isinstance(model, Path) else model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output_shapes = [o["shape"] for o in entry["outputs"]]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        results = self.request.infer([np.ascontiguousarray(x, np.float32)])
        return [fit_shape(np.array(results[out], dtype=np.float32), shape) for out, shape in zip(self.compiled.outputs, self.output_shapes)]


@FORMATS.register("openvino")
class OpenVinoFormat(TargetFormat):
    info = FormatInfo(
        name="openvino",
        title="OpenVINO IR",
        precisions=("fp32", "fp16", "int8"),
        default_precisions=("fp32", "fp16"),
        calibrated=("int8",),
        runtime="OpenVINO CPU plugin",
        platforms=(),  # Intel edge PCs / NPUs: no generated app project
        default_enabled=False,
    )

    def check_environment(self) -> None:
        require_modules("openvino", {"openvino": "openvino", "nncf": "nncf"})

    def convert(self, job: ConversionJob) -> ConvertedModel:
        ov = _openvino()
        model = ir_model(job)
        details: dict[str, Any] = {"converter": f"openvino {_version('openvino')} convert_model (ONNX frontend)"}
        if job.precision == "int8":
            model, quant = quantize(job, model)
            details.update(quant)
        for key, value in rt_info(job).items():
            model.set_rt_info(value, ["edgepack", key])
        xml = job.workdir / "model.xml"
        with captured_native_output("openvino save_model", (1, 2)):
            ov.save_model(model, str(xml), compress_to_fp16=job.precision == "fp16")
        details["weights"] = {"fp32": "float32", "fp16": "float16 (compressed, decompressed by the plugin)", "int8": "int8 (FakeQuantize folded into int8 constants)"}[job.precision]
        return ConvertedModel(
            files={"model": xml, "weights": xml.with_suffix(".bin")},
            input_name=model.inputs[0].get_any_name(),
            output_names=[o.get_any_name() for o in model.outputs],
            details=details,
        )

    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        return OpenVinoRunner(files["model"], entry, threads)

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        return describe_ir(files["model"])


def describe_ir(xml: Path) -> dict[str, Any]:
    ov = _openvino()
    model = ov.Core().read_model(str(xml))
    ops: dict[str, int] = {}
    constants: dict[str, int] = {}
    for op in model.get_ops():
        ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
        if op.get_type_name() == "Constant":
            kind = op.get_output_element_type(0).get_type_name()
            constants[kind] = constants.get(kind, 0) + 1
    info = {}
    if model.has_rt_info(["edgepack"]):
        info = {k: v.astype(str) for k, v in model.get_rt_info(["edgepack"]).astype(dict).items()}
    return {
        "inputs": {i.get_any_name(): [str(i.get_partial_shape()), i.get_element_type().get_type_name()] for i in model.inputs},
        "outputs": {o.get_any_name(): [str(o.get_partial_shape()), o.get_element_type().get_type_name()] for o in model.outputs},
        "ops": dict(sorted(ops.items())),
        "constant_types": constants,
        "rt_info": info,
    }
