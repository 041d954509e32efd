"""ExecuTorch `.pte` (PyTorch's on-device runtime) with the XNNPACK delegate; validated with
ExecuTorch's own runtime on the host (`executorch.runtime`, the prebuilt portable library with
the XNNPACK backend).

Source: the PyTorch module (the user's own, or the canonical ONNX graph through onnx2torch for
ONNX/Keras sources), `torch.export`ed, lowered by `to_edge_transform_and_lower` with the
XnnpackPartitioner, serialized by `to_executorch`.

- fp32: XNNPACK fp32 kernels.
- int8: PT2E static quantization for XNNPACK (`XNNPACKQuantizer`, symmetric, per-channel weights;
  `prepare_pt2e` / calibration images / `convert_pt2e` from torchao), then the same lowering. The
  float tail after the last conv/linear (a detector's decode) is left unannotated, as in the other
  int8 paths (edgepack/quantize/onnx_graph.py).

ExecuTorch shares the pinned stack: executorch 1.4.1 declares torch>=2.13.0a0 and resolves with
every existing pin (the README, "Other edge runtimes"), so it runs in edgepack's own interpreter.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgepack.errors import ConversionError, MissingDependencyError
from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, HostRunner, TargetFormat, require_modules, fit_shape
from edgepack.native import captured_native_output
from edgepack.sources.base import pytorch_module, through_onnx2torch

WEIGHT_TARGETS = ("conv", "linear", "addmm", "matmul", "mm.default", "bmm")


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """torch 2.13's pytree deprecation notices and torchao's CUDA-kernel load messages are not
    actionable here; XNNPACK's cpuinfo prints to fd 2."""
    with warnings.catch_warnings(), captured_native_output("executorch", (1, 2)):
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _is_weight_op(node: Any) -> bool:
    return node.op == "call_function" and any(t in str(node.target) for t in WEIGHT_TARGETS)


def float_tail(graph: Any) -> set[Any]:
    """FX nodes after the last weight op on every path (no conv/linear reachable downstream)."""
    reaches: dict[Any, bool] = {}
    after_weights: set[Any] = set()
    for node in graph.nodes:  # FX graphs are in topological order
        if _is_weight_op(node) or any(a in after_weights or _is_weight_op(a) for a in node.all_input_nodes):
            after_weights.add(node)
    for node in reversed(list(graph.nodes)):
        reaches[node] = any(_is_weight_op(u) or reaches.get(u, False) for u in node.users)
    return {n for n in graph.nodes if n in after_weights and not reaches[n] and not _is_weight_op(n) and n.op == "call_function"}


def stem_and_heads(graph: Any, tail: set[Any]) -> set[Any]:
    """The first weight op (it reads the image) and the weight ops feeding the tail or the output."""
    weights = [n for n in graph.nodes if _is_weight_op(n)]
    heads = {n for n in weights if any(u in tail or u.op == "output" for u in n.users)}
    return ({weights[0]} | heads) if weights else set()


class _TorchRunner:
    """A (fake-quantized) torch module as a HostRunner: the agreement check before lowering."""

    def __init__(self, module: Any, entry: dict[str, Any]) -> None:
        self.module, self.output_shapes = module, [o["shape"] for o in entry["outputs"]]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        out = out if isinstance(out, (list, tuple)) else [out]
        return [fit_shape(o.numpy(), shape) for o, shape in zip(out, self.output_shapes)]


def _export(module: Any, example: Any) -> Any:
    import torch

    with quiet_export():
        return torch.export.export(module, (example,), strict=False)


def _lower(exported: Any) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    # the default edge IR checks stay on: skipping them (EdgeCompileConfig(_check_ir_validity=False))
    # is much faster but is not verified yet on a quantized program that loads (the README, "Other edge runtimes")
    with quiet_export():
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    return program.buffer


def minmax_activations(config: Any) -> Any:
    """XNNPACK's config with activation ranges from min/max instead of its HistogramObserver. The
    histogram's L2-optimal range clips backbone activations the way KL does in ncnn (issue 14:
    KL -5.3 mAP points, minmax -0.5)."""
    import dataclasses

    from torchao.quantization.pt2e import MinMaxObserver

    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _pt2e(module: Any, example: Any, calibration: np.ndarray, kept: set[str]) -> Any:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    class KeptFloatQuantizer(XNNPACKQuantizer):
        """XNNPACK's annotators for cat (and the shape ops propagation reaches) ignore the filter
        function: measured, every cat stayed quantized with all nodes filtered out, so the decode
        tail's final Concat put boxes (0..320) and scores (0..1) under one int8 scale (scores
        cosine 0.65 on the built-in detector). Annotations of kept nodes are removed here."""

        def annotate(self, model: Any) -> Any:
            model = super().annotate(model)
            for node in model.graph.nodes:
                if node.name in kept:
                    node.meta.pop("quantization_annotation", None)
            return model

    quantizer = KeptFloatQuantizer()
    quantizer.set_global(minmax_activations(get_symmetric_quantization_config(is_per_channel=True)))
    quantizer.set_filter_function(lambda node: node.name not in kept)
    with quiet_export(), torch.no_grad():
        prepared = prepare_pt2e(_export(module, example).module(), quantizer)
        for x in calibration:
            prepared(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return convert_pt2e(prepared)


def quantized_export(job: ConversionJob, module: Any, example: Any) -> tuple[Any, dict[str, Any]]:
    """PT2E int8 with the float tail unannotated; when the task agreement of the quantized module
    on calibration images misses the int8 floor, the stem and head convolutions stay float too."""
    from edgepack.quantize.agreement import agreement_with_reference, artifact_entry
    from edgepack.validate.validator import TASK_FLOOR

    calibration = job.calibration()
    graph = _export(module, example).module().graph
    tail = float_tail(graph)
    kept = {n.name for n in tail} | set(job.spec.calibration.int8_skip)
    converted = _pt2e(module, example, calibration, kept)
    check, entry = calibration[:16], artifact_entry(job, "int8")
    agreement = agreement_with_reference(job, _TorchRunner(converted, entry), check)
    details: dict[str, Any] = {"quantizer": "XNNPACKQuantizer (PT2E static, symmetric, per-channel weights)",
                               "calibration": {"images": int(len(calibration))}}
    if job.spec.calibration.auto_mixed and agreement < TASK_FLOOR["int8"]:
        before = agreement
        kept |= {n.name for n in stem_and_heads(graph, tail)}
        converted = _pt2e(module, example, calibration, kept)
        agreement = agreement_with_reference(job, _TorchRunner(converted, entry), check)
        details["mixed_precision"] = {"reason": f"task agreement {before:.3f} < {TASK_FLOOR['int8']}", "before": round(before, 4)}
    details["calibration"]["task_agreement_on_calibration"] = round(agreement, 4)
    details["float_nodes"] = sorted(kept)
    return _export(converted, example), details


def load_method(path: Path) -> Any:
    from executorch.runtime import Runtime

    with captured_native_output("executorch runtime", (1, 2)):
        program = Runtime.get().load_program(Path(path))
        return program, program.load_method("forward")


class ExecuTorchRunner:
    def __init__(self, path: Path, entry: dict[str, Any], threads: int) -> None:
        from executorch.extension.pybindings import portable_lib

        with captured_native_output("executorch runtime", (1, 2)):
            portable_lib._unsafe_reset_threadpool(threads)  # XNNPACK's threadpool is process-wide
            try:  # the quantized kernels, for q/dq ops left outside the XNNPACK partitions
                import executorch.kernels.quantized  # noqa: F401
            except ImportError:
                pass
        self.output_shapes = [o["shape"] for o in entry["outputs"]]
        self.load_error: Exception | None = None
        try:
            self.program, self.method = load_method(path)
        except RuntimeError as e:  # reported by the validator as a failed artifact, not a crash
            self.load_error = e

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        if self.load_error is not None:
            raise self.load_error

        outputs = self.method.execute([torch.from_numpy(np.ascontiguousarray(x, np.float32))])
        return [fit_shape(np.asarray(o.detach().numpy() if hasattr(o, "detach") else o, np.float32), shape)
                for o, shape in zip(outputs, self.output_shapes)]


@FORMATS.register("executorch")
class ExecuTorchFormat(TargetFormat):
    info = FormatInfo(
        name="executorch",
        title="ExecuTorch (XNNPACK)",
        precisions=("fp32", "int8"),
        default_precisions=("fp32",),
        calibrated=("int8",),
        runtime="ExecuTorch runtime (portable lib + XNNPACK)",
        platforms=(),  # no generated app bundles ExecuTorch yet
        default_enabled=False,
    )

    def check_environment(self) -> None:
        require_modules("executorch", {"executorch.exir": "executorch", "executorch.runtime": "executorch"})

    def convert(self, job: ConversionJob) -> ConvertedModel:
        import torch

        with quiet_export():  # the first import prints torchao's CUDA-kernel load failures
            import executorch.exir  # noqa: F401
            import torchao.quantization.pt2e  # noqa: F401
        module = pytorch_module(job.model)
        example = torch.zeros(*job.model.input_shape)
        details: dict[str, Any] = {
            "delegate": "XnnpackBackend",
            "converter": "torch.export + executorch.exir.to_edge_transform_and_lower" + (" (via onnx2torch)" if through_onnx2torch(job.model) else ""),
        }
        try:
            if job.precision == "int8":
                exported, quant = quantized_export(job, module, example)
                details.update(quant)
            else:
                exported = _export(module, example)
            buffer = _lower(exported)
        except (ConversionError, MissingDependencyError):
            raise
        except Exception as e:  # torch.export / lowering raise many types
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ConversionError(f"executorch: could not export the model: {first}", "replace the operation it names, or drop executorch from --formats") from e
        out = job.workdir / "model.pte"
        out.write_bytes(buffer)
        details.update(_program_facts(out))
        return ConvertedModel(files={"model": out}, input_name=job.model.input_name, output_names=list(job.model.output_names), details=details)

    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        return ExecuTorchRunner(files["model"], entry, threads)

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        return _program_facts(files["model"])


def _program_facts(path: Path) -> dict[str, Any]:
    """What the program says about itself: methods, inputs/outputs, delegates."""
    from executorch.runtime import Runtime

    with captured_native_output("executorch runtime", (1, 2)):
        program = Runtime.get().load_program(Path(path))
        meta = program.metadata("forward")
        inputs = [_tensor_info(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())]
        outputs = [_tensor_info(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())]
    delegates = _delegates(path)
    return {"methods": sorted(program.method_names), "inputs": inputs, "outputs": outputs, "delegates": delegates}


SCALAR_TYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool"}  # c10::ScalarType


def _tensor_info(meta: Any) -> dict[str, Any]:
    return {"shape": list(meta.sizes()), "dtype": SCALAR_TYPES.get(int(meta.dtype()), str(meta.dtype()))}


def _delegates(path: Path) -> dict[str, int]:
    """Backend ids of the delegate calls in the program (read from the flatbuffer)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes())
    program = getattr(program, "program", program)
    counts: dict[str, int] = {}
    for plan in program.execution_plan:
        for delegate in plan.delegates:
            counts[delegate.id] = counts.get(delegate.id, 0) + 1
    return counts
