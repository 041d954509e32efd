"""TFLite precisions through ai-edge-quantizer (Google's quantizer for LiteRT models), applied
to the fp32 flatbuffer: fp16 weights (float casting), dynamic-range int8 and full-integer int8
calibrated on the user's images. Full int8 keeps int8 or float I/O as asked; the I/O scale and
zero point go into the manifest because apps must (de)quantize with them."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepack.errors import ConversionError
from edgepack.native import captured_native_output

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE")


def _quantizer(fp32_model: Path):
    from ai_edge_quantizer import quantizer

    return quantizer.Quantizer(str(fp32_model))


def _export(q, calibration: Any, out: Path) -> Path:
    with captured_native_output("ai-edge-quantizer", (1, 2)):
        q.quantize(calibration, enable_progress_report=False).export_model(str(out), overwrite=True)
    return out


def fp16(fp32_model: Path, out: Path) -> Path:
    from ai_edge_quantizer import qtyping as Q
    from ai_edge_quantizer.quantizer import AlgorithmName

    q = _quantizer(fp32_model)
    config = Q.OpQuantizationConfig(
        weight_tensor_config=Q.TensorQuantizationConfig(num_bits=16, dtype=Q.TensorDataType.FLOAT),
        compute_precision=Q.ComputePrecision.FLOAT,
        explicit_dequantize=True,
    )
    for op in WEIGHT_OPS:
        q.update_quantization_recipe(regex=".*", operation_name=getattr(Q.TFLOperationName, op),
                                     algorithm_key=AlgorithmName.FLOAT_CASTING, op_config=config)
    return _export(q, None, out)


def dynamic_int8(fp32_model: Path, out: Path) -> Path:
    from ai_edge_quantizer import recipe

    q = _quantizer(fp32_model)
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    return _export(q, None, out)


def graph_regions(model_path: Path) -> dict[str, list[str]]:
    """Output tensor names of three groups of ops: `stem` (the conv reading the image), `heads`
    (convs with no conv downstream: the detection/classification heads) and `tail` (every op
    after a head: in-graph box decoding, sigmoid, the concat of boxes and scores)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(str(model_path))
    graph = model.subgraphs[0]
    codes = [c.builtinCode if c.builtinCode else c.deprecatedBuiltinCode for c in model.operatorCodes]
    conv_codes = {fb.TFL_OP_NAME_TO_CODE[n] for n in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") if n in fb.TFL_OP_NAME_TO_CODE}
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(graph.operators):
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(i)

    def downstream(i: int) -> list[int]:
        frontier, seen = [int(t) for t in graph.operators[i].outputs], []
        while frontier:
            for j in consumers.get(frontier.pop(), []):
                if j not in seen:
                    seen.append(j)
                    frontier.extend(int(t) for t in graph.operators[j].outputs)
        return seen

    def name(op_index: int) -> str:
        return fb.get_tensor_name(graph.tensors[int(graph.operators[op_index].outputs[0])])

    regions: dict[str, dict[str, None]] = {"stem": {}, "heads": {}, "tail": {}}
    image = int(graph.inputs[0])
    for i, op in enumerate(graph.operators):
        if codes[op.opcodeIndex] not in conv_codes:
            continue
        after = downstream(i)
        if image in [int(t) for t in op.inputs]:
            regions["stem"][name(i)] = None
        if not any(codes[graph.operators[j].opcodeIndex] in conv_codes for j in after):
            regions["heads"][name(i)] = None
            regions["tail"].update((name(j), None) for j in after)
    return {k: list(v) for k, v in regions.items()}


def tail_and_stem_tensors(model_path: Path) -> list[str]:
    """The ops the mixed-precision fallback keeps float: stem, heads and everything after them."""
    regions = graph_regions(model_path)
    return list(dict.fromkeys(regions["stem"] + regions["heads"] + regions["tail"]))


def quantize_job(job, fp32_model: Path, out: Path, open_runner) -> dict[str, Any]:
    """Full int8 of a conversion job, with edgepack's rules:
    - a detector never gets one int8 scale across its concatenated boxes and scores: the head
      convs, the ops after them (decode, sigmoid, concat) and the output tensor stay float;
    - int8 I/O where it is safe (the image input; a classifier's output), float output otherwise;
    - when the int8 check (quantize/agreement.py: box F1 on images with objects, class-score
      channels apart) fails, the stem and head convs are kept float too and it is rebuilt.
    `open_runner(path)` gives a TFLite runner for the check."""
    from edgepack.quantize.agreement import check_runner

    spec = job.spec

    def nhwc() -> np.ndarray:  # N x 1 x C x H x W -> N x 1 x H x W x C, mapped again for each calibration
        return job.calibration().transpose(0, 1, 3, 4, 2)

    input_type = spec.calibration.int8_io
    float_tensors = list(spec.calibration.int8_skip)
    details: dict[str, Any] = {"calibration": {"method": "minmax (ai-edge-quantizer)", "images": int(len(nhwc()))}}
    output_type, why = input_type, "as asked (--int8-io)"
    if spec.model.task == "detect":
        regions = graph_regions(fp32_model)
        # the head convs too: their logits feed sigmoid/softplus, where int8 steps cost 2.4 mAP points
        # on the built-in detector (300 scenes); they are tiny 1x1 convs, so size barely moves
        float_tensors += [n for n in regions["heads"] + regions["tail"] if n not in float_tensors]
        output_type = "float"
        why = "detector: box coordinates and class scores must not share one int8 scale, so the head convs, the decode tail and the output stay float"
    full_int8(fp32_model, out, nhwc, input_type, output_type, float_tensors, timing=details["calibration"])
    check = check_runner(job, open_runner(out))
    if spec.calibration.auto_mixed and not check.passed:
        from edgepack.quantize.agreement import at_least_as_good

        before, first = check, (list(float_tensors), output_type, why)
        float_tensors += [n for n in tail_and_stem_tensors(fp32_model) if n not in float_tensors]
        mixed_path = out.with_name(out.stem + "-mixed.tflite")
        full_int8(fp32_model, mixed_path, nhwc, input_type, "float", float_tensors)
        check = check_runner(job, open_runner(mixed_path))
        details["mixed_precision"] = {"reason": "; ".join(before.reasons), "before": before.record()}
        if not check.passed and at_least_as_good(before, check):  # the fallback did no better: keep the first
            details["mixed_precision"].update(kept="the plain int8 model (float stem/heads did no better)", fallback=check.record())
            (float_tensors, output_type, why), check = first, before
        else:
            mixed_path.replace(out)
            output_type = "float"
            why = "mixed precision: the int8 check failed, stem/heads/tail and the output stay float"
    details["io_type"] = input_type if output_type == input_type else f"{input_type} input, {output_type} output"
    details["io_reason"] = why
    details["float_layers"] = len(float_tensors)
    details["calibration"]["int8_check"] = check.record()
    details["calibration"]["task_agreement_on_calibration"] = round(check.value, 4)
    return details


def full_int8(fp32_model: Path, out: Path, calibration_nhwc: Callable[[], np.ndarray], input_type: str, output_type: str,
              float_tensors: list[str], timing: dict[str, Any] | None = None) -> Path:
    """Static int8 weights and activations; `float_tensors` (op output names) stay float;
    input/output tensors are int8 or float as asked. `calibration_nhwc()` gives the images (N x 1
    x H x W x C), held only while the calibration runs. `timing`, when given, gets the
    calibration's wall time as "seconds"."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping as Q
    from ai_edge_quantizer import recipe
    from ai_edge_quantizer.calibrator import CalibrationMode
    from ai_edge_quantizer.quantizer import AlgorithmName

    q = _quantizer(fp32_model)
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    for op, kind in ((Q.TFLOperationName.INPUT, input_type), (Q.TFLOperationName.OUTPUT, output_type)):
        if kind == "float":
            q.update_quantization_recipe(regex=".*", operation_name=op, algorithm_key=AlgorithmName.NO_QUANTIZE,
                                         op_config=Q.OpQuantizationConfig())
    if float_tensors:
        # ai-edge-quantizer matches an op by its scope: output tensor names joined by ";" plus a trailing ";"
        pattern = "^(" + "|".join(re.escape(n) for n in float_tensors) + ");$"
        q.update_quantization_recipe(regex=pattern, operation_name=Q.TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key=AlgorithmName.NO_QUANTIZE, op_config=Q.OpQuantizationConfig())
    signatures = Interpreter(model_path=str(fp32_model)).get_signature_list()
    key = next(iter(signatures))
    input_name = signatures[key]["inputs"][0]
    # views, not copies (the interpreter's SetTensor makes each contiguous as it is fed): at 640,
    # 100 contiguous copies are 490 MB more, and the quantizer even lists the dataset to count it
    samples = [{input_name: x.astype(np.float32, copy=False)} for x in calibration_nhwc()]
    started = time.perf_counter()
    try:
        with captured_native_output("ai-edge-quantizer calibration", (1, 2)):
            # the min/max tracked inside the interpreter (its C++ profiler mode), not every tensor
            # copied out to Python after each image: 3x faster; on the built-in detector (300
            # scenes) the same mAP50-95 within 0.02 points
            result = q.calibrate({key: samples}, num_threads=2, mode=CalibrationMode.CALIBRATION_PROFILER_BASED)
    except ValueError as e:
        raise ConversionError(f"tflite int8: calibration failed: {str(e).splitlines()[0]}") from e
    del samples  # the calibration images leave the process before the export and the int8 check
    if timing is not None:
        timing["seconds"] = round(time.perf_counter() - started, 2)
    return _export(q, result, out)


def io_quantization(model_path: Path) -> dict[str, Any]:
    """dtype, scale and zero point of every input and output, as apps need them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))

    def record(detail: dict) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}

    return {
        "inputs": [record(d) for d in interpreter.get_input_details()],
        "outputs": [record(d) for d in interpreter.get_output_details()],
    }
