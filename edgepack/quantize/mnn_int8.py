"""MNN full int8 (weights and activations): EMA through MNN's Python Express API, KL through the
wheel's native quantization tool with a generated config. For KL the calibration images are written
already letterboxed or resized exactly as edgepack preprocesses, so MNN's own resize is the identity
and its mean/normal match the spec; EMA reads the calibration tensors themselves.

How edgepack drives MNN's quantizer (measured with MNN 3.6.1, tools/quantization/calibration.cpp):
- default: feature method EMA, weights MAX_ABS, `winogradOpt` false (EMA turns it on by
  default, and its Winograd-aware scales are lossy), no skip list (EMA ignores skip lists).
  EMA runs the steps of the tool's `_quantizeModelEMA` through MNN's own Python Express API
  (`nn.compress.train_quant` with per-tensor moving-average scales, training-mode forwards,
  `expr.save`, which converts to full int8 as the tool does), fed the calibration tensors
  themselves. The tool also takes an SGD step on a constant zero loss per image (it changes no
  scale) and decodes a PNG per image: 1.08 s per 640 image against 0.6 s here, on one thread
  both; the models come out with the same computing ops and int8 tensors, scales within 0.08 %
  on a YOLOv8n-sized model (0.6 % on a few head tensors of an unsimplified export, cause not
  pinned down; tests/formats/test_mnn_int8.py compares the two);
- KL (asked for with `method: kl`, or needed because layers must stay float) collects statistics
  in a debug session whose callbacks see MNN's RUN-TIME op names (`<op>_raster_<i>` for
  reshape/slice/concat, generated names for decomposed ops), while the weight step matches the
  model's op names: the skip list carries both. The ops that write a graph output are always
  skipped, so no output tensor carries an int8 scale (one scale over a concatenated YOLO output
  rounds every class score to exactly 0);
- every result is checked: no graph output may carry int8 quantization (read from the
  converter's JSON dump of the .mnn), and the int8 check of quantize/agreement.py runs it in a
  fresh process (MNN's Python runtime keeps state between int8 models in one process).
ADMM is not offered: it crashes MNN 3.6.1.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.tools import run_python

QUANT_SNIPPET = "import sys, _tools\n_tools.mnnquant(sys.argv[1:])\n"
JSON_SNIPPET = "import sys, _tools\n_tools.mnnconvert(sys.argv[1:])\n"
# The op names an MNN session executes, in order, written to argv[2] as JSON (MNN prints on fd 1).
RUNTIME_NAMES_SNIPPET = """
import json, sys
import MNN
interpreter = MNN.Interpreter(sys.argv[1])
session = interpreter.createSession({"backend": "CPU", "numThread": 1})
names = []
def begin(tensors, info):
    names.append([info.getType(), info.getName()])
    return True
interpreter.runSessionWithCallBackInfo(session, begin, lambda tensors, info: True)
open(sys.argv[2], "w").write(json.dumps(names))
"""
# MNN's EMA calibration (calibration.cpp `_quantizeModelEMA`) through its Python Express API;
# argv[1]: a JSON file with the paths, the input and output names and the thread count.
EMA_SNIPPET = """
import json, sys, time
import numpy as np
import MNN.expr as F
import MNN.nn as nn
job = json.loads(open(sys.argv[1]).read())
tensors = open(job["tensors"], "rb")  # read one image at a time: a mapping keeps every page read resident
version = np.lib.format.read_magic(tensors)
read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
stored_shape, fortran_order, stored_dtype = read_header(tensors)
assert not fortran_order, "calibration tensors must be stored in C order"
variables = F.load_as_dict(job["source"])
image = variables[job["input"]]
shape, layout = list(image.shape), image.data_format
module = nn.load_module([image], [variables[name] for name in job["outputs"]], True)
nn.compress.train_quant(module, quant_bits=8, feature_scale_method=nn.compress.PER_TENSOR,
                        scale_update_method=nn.compress.MOVING_AVERAGE)
F.set_thread_number(job["threads"])
module.train(True)
started = time.perf_counter()
count = stored_shape[0]
for i in range(count):
    x = np.fromfile(tensors, stored_dtype, int(np.prod(stored_shape[1:]))).astype(np.float32).reshape(shape)
    for y in module.forward([F.convert(F.const(x, shape, F.NCHW), layout)]):
        y.read()
seconds = time.perf_counter() - started
module.train(False)
placeholder = F.placeholder(shape, layout, image.dtype)
placeholder.name = job["input"]
predictions = module.forward([placeholder])
for y, name in zip(predictions, job["outputs"]):
    y.name = name
F.save(predictions, job["dest"])
open(job["result"], "w").write(json.dumps({"seconds": seconds, "images": count}))
"""
# One thread: in a multi-format build the other cores run the other formats' children, and
# MNN's worker threads slow down badly beside them (alone, two threads took 0.50 s per 640 image).
EMA_THREADS = 1
RASTER = re.compile(r"^(.*)_raster_\d+$")
BASE_CONFIG = {"weight_quantize_method": "MAX_ABS"}
EMA_CONFIG = {"feature_quantize_method": "EMA", "winogradOpt": False}  # the tool's equivalent of EMA_SNIPPET (tests compare them)
KL_CONFIG = {"feature_quantize_method": "KL"}


def write_calibration_images(tensors: np.ndarray, mean, std, folder: Path) -> None:
    """Undo the normalization (exact for 8-bit sources) and save PNGs in tensor channel order."""
    from PIL import Image

    folder.mkdir(parents=True)
    mean_a = np.asarray(mean, np.float32)[:, None, None]
    std_a = np.asarray(std, np.float32)[:, None, None]
    for i, x in enumerate(tensors):
        chw = x[0]
        pixels = chw * std_a[: chw.shape[0]] + mean_a[: chw.shape[0]]
        image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(folder / f"{i:05d}.png")


def onnx_regions(onnx_path: Path) -> dict[str, list[str]]:
    """By ONNX output tensor name (which MNN's converter uses as op name): `stem` (the conv
    reading the image), `heads` (convs with no conv downstream) and `tail` (every op after a
    head: in-graph box decoding, sigmoid, the concat of boxes and scores)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def downstream(node) -> list:
        frontier, seen, found = list(node.output), set(), []
        while frontier:
            for consumer in consumers.get(frontier.pop(), []):
                if id(consumer) not in seen:
                    seen.add(id(consumer))
                    found.append(consumer)
                    frontier.extend(consumer.output)
        return found

    image = graph.input[0].name
    regions: dict[str, dict[str, None]] = {"stem": {}, "heads": {}, "tail": {}}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        after = downstream(node)
        if image in node.input:
            regions["stem"][node.output[0]] = None
        if not any(n.op_type == "Conv" for n in after):
            regions["heads"][node.output[0]] = None
            regions["tail"].update((n.output[0], None) for n in after)
    return {k: list(v) for k, v in regions.items()}


def model_json(model_path: Path, workdir: Path) -> dict[str, Any]:
    """The .mnn as MNN's converter dumps it to JSON (`-f MNN --JsonFile`)."""
    out = workdir / f"{model_path.stem}.dump.json"
    run_python("mnn json dump", JSON_SNIPPET, ["mnnconvert", "-f", "MNN", "--modelFile", str(model_path), "--JsonFile", str(out)],
               cwd=workdir, log_file=workdir / f"{model_path.stem}.dump.log")
    if not out.is_file():
        raise ConversionError(f"mnn: could not dump {model_path.name} to JSON (log: {workdir / f'{model_path.stem}.dump.log'})")
    text = out.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:  # rare, and the rewrite takes 2 s on a 35 MB dump
        doc = json.loads(NON_FINITE.sub(_json_word, text))
    out.unlink()  # large (weights as text); only the structure was needed
    return doc


# MNN's dump prints non-finite floats bare (`nan`, `-nan`, `inf`: KL gave an all-zero channel of
# PaddleOCR's recogniser a nan weight scale), which JSON has no word for; names are quoted.
NON_FINITE = re.compile(r'("(?:[^"\\]|\\.)*")|(?<![\w.])(-?)(nan|inf)(?![\w.])')


def _json_word(match: re.Match) -> str:
    if match.group(1):  # a string: kept as it is
        return match.group(1)
    return "NaN" if match.group(3) == "nan" else f"{match.group(2)}Infinity"


def graph_outputs(doc: dict[str, Any]) -> dict[int, str]:
    """Tensor index -> name of the graph outputs: `outputName` when the dump has it (the
    converter writes it, the EMA quantizer does not), else the tensors no op consumes."""
    names = doc.get("tensorName", [])
    if doc.get("outputName"):
        return {names.index(n): n for n in doc["outputName"] if n in names}
    consumed = {i for op in doc.get("oplists", []) for i in op.get("inputIndexes") or []}
    produced = [i for op in doc.get("oplists", []) for i in op.get("outputIndexes") or []]
    return {i: names[i] for i in produced if i not in consumed}


def int8_outputs(doc: dict[str, Any]) -> list[str]:
    """Graph outputs that carry int8 quantization: an int8 quantInfo in the tensor describes, or
    written by an op that produces int8 (FloatToInt8)."""
    outputs = graph_outputs(doc)
    found: dict[str, None] = {}
    for describe in doc.get("extraTensorDescribe", []) or []:
        info = describe.get("quantInfo") or {}
        # scale 0 is the quantizer's placeholder for "no statistics": the tensor stays float
        if describe.get("index") in outputs and info.get("type", "DT_INT8") in ("DT_INT8", 6) and info.get("scale", 0):
            found[outputs[describe["index"]]] = None
    for op in doc.get("oplists", []):
        if op.get("type") == "FloatToInt8" and any(i in outputs for i in op.get("outputIndexes") or []):
            found.update((outputs[i], None) for i in op["outputIndexes"] if i in outputs)
    return list(found)


def output_ops(doc: dict[str, Any]) -> list[str]:
    """Names of the ops that write graph outputs, and of the ops between them and the last
    op with a real computation (ConvertTensor / Reshape / Concat chains at the end)."""
    producers = {i: op for op in doc.get("oplists", []) for i in op.get("outputIndexes") or []}
    passthrough = {"ConvertTensor", "Reshape", "Concat", "Squeeze", "Unsqueeze", "Permute", "Transpose", "Flatten", "Cast"}
    found: dict[str, None] = {}
    frontier = list(graph_outputs(doc))
    while frontier:
        op = producers.get(frontier.pop())
        if op is None or op["name"] in found:
            continue
        found[op["name"]] = None
        if op.get("type") in passthrough:
            frontier.extend(op.get("inputIndexes") or [])
    return list(found)


def runtime_names(model_path: Path, workdir: Path) -> list[tuple[str, str]]:
    """(type, name) of every op an MNN session executes, in order (run in a child process)."""
    out = workdir / f"{model_path.stem}.runtime-ops.json"
    run_python("mnn op names", RUNTIME_NAMES_SNIPPET, [str(model_path), str(out)], cwd=workdir,
               log_file=workdir / f"{model_path.stem}.runtime-ops.log")
    if not out.is_file():
        raise ConversionError(f"mnn: could not list the run-time ops of {model_path.name}")
    return [tuple(x) for x in json.loads(out.read_text())]  # type: ignore[misc]


def runtime_skip_names(op_names: list[str], runtime: list[tuple[str, str]]) -> list[str]:
    """Everything MNN's KL quantizer must see to keep `op_names` (model op names) in float: the
    names themselves (matched by the weight step), their run-time rasters `<op>_raster_<i>`, and
    the generated names of ops decomposed from them (at run time they come right before the op
    they belong to)."""
    wanted = set(op_names)
    result: dict[str, None] = {n: None for n in op_names}
    pending: list[str] = []
    for _, name in runtime:
        raster = RASTER.match(name)
        base = raster.group(1) if raster else name
        if base in wanted:
            result[name] = None
            result.update((p, None) for p in pending)
            pending = []
        elif not _is_model_name(base):  # generated: belongs to the next named op
            pending.append(name)
        else:
            pending = []
    return list(result)


def _is_model_name(name: str) -> bool:
    """Run-time names MNN generates for decomposed ops look like `BinaryOp155`, `UnaryOp153`."""
    return not re.fullmatch(r"[A-Za-z]+\d+", name)


def quantize(job, fp32_model: Path) -> tuple[Path, dict[str, Any]]:
    """Full int8 with the working configuration (EMA); when the int8 check fails, again with KL
    and the stem, heads and decode tail kept in float (by model and run-time op names)."""
    from edgepack import console

    calib = job.spec.calibration
    # the JSON dump of the fp32 model (3 s at 640) and its run-time op names serve KL's skip list
    # and the check of --int8-skip names: EMA alone needs neither
    needs_names = calib.method == "kl" or bool(calib.int8_skip)
    doc = model_json(fp32_model, job.workdir) if needs_names else {}
    runtime = runtime_names(fp32_model, job.workdir) if needs_names else []
    known = {op["name"] for op in doc.get("oplists", [])} | {name for _, name in runtime}
    skip = [n for n in calib.int8_skip if n in known]
    unknown = [n for n in calib.int8_skip if n not in known]
    if unknown:
        console.warn(f"mnn int8: --int8-skip names no MNN op: {', '.join(unknown)} (MNN op names are the ONNX output tensor names)")
    regions = onnx_regions(job.model.onnx_path)
    # KL keeps the heads and everything after them float (an int8 head output feeding the float
    # decode tail loses the class scores in MNN 3.6.1, even with the output itself float)
    kl_floor = [n for n in regions["heads"] + regions["tail"] if n in known]
    use_kl = calib.method == "kl" or bool(skip)
    out, details = _quantize(job, fp32_model, "int8", skip + kl_floor if use_kl else [], runtime, doc, use_kl)
    if use_kl and calib.method != "kl":
        details["calibration"]["note"] = "KL because layers are kept float (MNN's EMA ignores skip lists)"
    result = _check(job, out)
    float_ops = skip + kl_floor if use_kl else []
    if calib.auto_mixed and not result.passed:
        from edgepack.quantize.agreement import at_least_as_good

        before, first = result, (out, details, float_ops)
        doc = doc or model_json(fp32_model, job.workdir)
        runtime = runtime or runtime_names(fp32_model, job.workdir)
        known |= {op["name"] for op in doc.get("oplists", [])} | {name for _, name in runtime}
        kl_floor = [n for n in regions["heads"] + regions["tail"] if n in known]
        float_ops = list(dict.fromkeys(skip + [n for n in regions["stem"] + kl_floor]))
        out, details = _quantize(job, fp32_model, "int8-mixed", float_ops, runtime, doc, True)
        result = _check(job, out)
        mixed = {"reason": "; ".join(before.reasons), "before": before.record()}
        if not result.passed and at_least_as_good(before, result):  # the fallback did no better: keep the first
            mixed.update(kept="the plain int8 model (float stem/heads did no better)", fallback=result.record())
            (out, details, float_ops), result = first, before
        details["mixed_precision"] = mixed
    details["float_layers"] = float_ops
    details["calibration"]["int8_check"] = result.record()
    details["calibration"]["task_agreement_on_calibration"] = round(result.value, 4)
    return out, details


def _check(job, model_path: Path):
    """The int8 check of quantize/agreement.py, the model run in a fresh process."""
    from edgepack.formats.mnn import MnnChildRunner
    from edgepack.quantize.agreement import artifact_entry, check_runner

    runner = MnnChildRunner(model_path, artifact_entry(job, "int8"), 2)
    try:
        return check_runner(job, runner)
    finally:
        runner.close()


def quantize_ema(fp32_model: Path, out: Path, tensors_file: Path, input_name: str, output_names: list[str],
                 workdir: Path, log_file: Path, threads: int = EMA_THREADS) -> dict[str, Any]:
    """MNN's EMA full int8 of `fp32_model` into `out`, calibrated on the N x 1 x C x H x W float32
    tensors in `tensors_file` (run in a fresh interpreter: MNN prints on fd 1 and may crash)."""
    job_file, result_file = workdir / f"{out.parent.name}.ema.json", workdir / f"{out.parent.name}.ema-result.json"
    job_file.write_text(json.dumps({"source": str(fp32_model), "dest": str(out), "tensors": str(tensors_file),
                                    "input": input_name, "outputs": output_names, "threads": threads,
                                    "result": str(result_file)}))
    run_python("mnn int8", EMA_SNIPPET, [str(job_file)], cwd=workdir, log_file=log_file)
    if not out.is_file() or not result_file.is_file():
        raise ConversionError(f"mnn int8: EMA quantization wrote no model (log: {log_file})")
    return json.loads(result_file.read_text())


def _tensors_file(tensors: np.ndarray, workdir: Path) -> Path:
    """The file the calibration tensors are mapped from (written once when they are in memory)."""
    mapped = getattr(tensors, "filename", None)
    if mapped and Path(mapped).is_file():
        return Path(mapped)
    path = workdir / "calibration.npy"
    if not path.exists():
        np.save(path, np.ascontiguousarray(tensors, dtype=np.float32))
    return path


def _quantize(job, fp32_model: Path, folder: str, skip: list[str], runtime: list[tuple[str, str]],
              doc: dict[str, Any], use_kl: bool) -> tuple[Path, dict[str, Any]]:
    if not use_kl:
        return _quantize_ema(job, fp32_model, folder)
    spec = job.spec
    tensors = job.calibration()
    count = len(tensors)
    _, channels, height, width = job.model.input_shape
    images = job.workdir / "calibration"
    if not images.exists():
        write_calibration_images(tensors, spec.model.mean, spec.model.std, images)
    del tensors  # its mapped pages leave this process while MNN's quantizer runs in its own
    config: dict[str, Any] = {
        "format": "GRAY" if channels == 1 else "RGB",  # PNGs are stored in the tensor's channel order
        "mean": list(spec.model.mean[:channels]),
        "normal": [1.0 / s for s in spec.model.std[:channels]],
        "width": width,
        "height": height,
        "path": str(images) + "/",
        "used_image_num": count,
        **BASE_CONFIG,
        **KL_CONFIG,
    }
    # model op names (the weight step) and run-time names (the statistics step); the ops
    # writing graph outputs always stay float: no output tensor gets an int8 scale
    config["skip_quant_op_names"] = runtime_skip_names(list(dict.fromkeys(skip + output_ops(doc))), runtime)
    config_path = job.workdir / f"{folder}.json"
    config_path.write_text(json.dumps(config, indent=2))
    out = job.workdir / folder / "model.mnn"
    out.parent.mkdir()
    started = time.perf_counter()
    output = run_python(
        "mnn int8", QUANT_SNIPPET, ["mnnquant", str(fp32_model), str(out), str(config_path)],
        cwd=job.workdir, log_file=job.workdir / f"{folder}.mnnquant.log",
    )
    tool_seconds = round(time.perf_counter() - started, 2)
    if "Quantize model done" not in output or not out.is_file():
        tail = " | ".join(output.strip().splitlines()[-2:])
        raise ConversionError(f"mnn int8: quantization failed: {tail} (log: {job.workdir / f'{folder}.mnnquant.log'})")
    _refuse_int8_outputs(out, job.workdir)
    # seconds: MNN's tool calibrates and writes the model in one run (the model rewrite is ~1 s of it)
    record: dict[str, Any] = {"method": config["feature_quantize_method"], "weights": config["weight_quantize_method"],
                              "images": count, "seconds": tool_seconds, "skip_quant_op_names": len(config["skip_quant_op_names"])}
    return out, {"calibration": record}


def _quantize_ema(job, fp32_model: Path, folder: str) -> tuple[Path, dict[str, Any]]:
    tensors = job.calibration()
    count, tensors_file = len(tensors), _tensors_file(tensors, job.workdir)
    del tensors  # its mapped pages leave this process while MNN runs in its own
    out = job.workdir / folder / "model.mnn"
    out.parent.mkdir()
    # MNN's converter names the model's inputs and outputs as the ONNX graph does
    result = quantize_ema(fp32_model, out, tensors_file, job.model.input_name, list(job.model.output_names), job.workdir,
                          job.workdir / f"{folder}.ema.log")
    named = set(graph_outputs(_refuse_int8_outputs(out, job.workdir)).values())
    if not set(job.model.output_names) <= named:  # the inference rewrite replaced a named output
        raise ConversionError(f"mnn int8: the quantized model lost output name(s) {', '.join(sorted(set(job.model.output_names) - named))}",
                              "keep MNN at int8-weight for this model, or report it")
    # seconds: the calibration forwards (training mode with fake-quant ops: ~4x the plain fp32 forward)
    record = {"method": "EMA", "weights": "MAX_ABS", "images": count, "seconds": round(result["seconds"], 2),
              "threads": EMA_THREADS, "winograd_opt": False}
    return out, {"calibration": record}


def _refuse_int8_outputs(out: Path, workdir: Path) -> dict[str, Any]:
    """The int8 model's JSON dump, after checking that no graph output carries int8 quantization."""
    doc = model_json(out, workdir)
    int8 = int8_outputs(doc)
    if int8:
        raise ConversionError(
            f"mnn int8: output {', '.join(int8)} carries int8 quantization (one scale over boxes and scores loses the scores)",
            "keep MNN at int8-weight for this model, or report it",
        )
    return doc
