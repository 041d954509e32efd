"""MNN full int8 (weights and activations) through the wheel's native quantization tool,
with a generated preprocess config. The calibration images are written already letterboxed or
resized exactly as edgepack preprocesses, so MNN's own resize is the identity and its
mean/normal match the spec. Feature methods: KL (our `kl`) or EMA (`minmax`/`percentile`);
ADMM is not offered: it crashes MNN 3.6.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.tools import run_python

QUANT_SNIPPET = "import sys, _tools\n_tools.mnnquant(sys.argv[1:])\n"
FEATURE_METHOD = {"kl": "KL", "minmax": "EMA", "percentile": "EMA"}


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


def stem_and_head_ops(onnx_path: Path) -> list[str]:
    """The conv reading the image, the convs with no conv downstream (detection heads) and every
    op after them (in-graph box decoding: grid offsets, concat, sigmoid), by MNN op name (the
    output tensor's name). MNN's full int8 also quantizes those tail ops, which destroys decoded
    boxes; keeping them in float is the fix."""
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
    keep: dict[str, None] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        after = downstream(node)
        if image in node.input:
            keep[node.output[0]] = None
        if not any(n.op_type == "Conv" for n in after):
            keep[node.output[0]] = None
            keep.update((n.output[0], None) for n in after)
    return list(keep)


def _agreement(job, model_path: Path, inputs: np.ndarray) -> float:
    from edgepack.formats.mnn import MnnRunner
    from edgepack.quantize.agreement import agreement_with_reference, artifact_entry

    return agreement_with_reference(job, MnnRunner(model_path, artifact_entry(job, "int8"), 2), inputs)


def quantize(job, fp32_model: Path) -> tuple[Path, dict[str, Any]]:
    """Full int8; when the task agreement on calibration images falls below the int8 floor,
    again with the stem and head convs kept in float."""
    from edgepack.validate.validator import TASK_FLOOR

    skip = list(job.spec.calibration.int8_skip)
    out, details = _quantize(job, fp32_model, skip, "int8")
    check = job.calibration()[:16]
    agreement = _agreement(job, out, check)
    if job.spec.calibration.auto_mixed and agreement < TASK_FLOOR["int8"]:
        extra = [n for n in stem_and_head_ops(job.model.onnx_path) if n not in skip]
        out, details = _quantize(job, fp32_model, skip + extra, "int8-mixed")
        details["mixed_precision"] = {"reason": f"task agreement {agreement:.3f} < {TASK_FLOOR['int8']}", "before": agreement}
        skip += extra
        agreement = _agreement(job, out, check)
    details["float_layers"] = skip
    details["calibration"]["task_agreement_on_calibration"] = round(agreement, 4)
    return out, details


def _quantize(job, fp32_model: Path, skip: list[str], folder: str) -> tuple[Path, dict[str, Any]]:
    spec = job.spec
    tensors = job.calibration()
    _, channels, height, width = job.model.input_shape
    images = job.workdir / "calibration"
    if not images.exists():
        write_calibration_images(tensors, spec.model.mean, spec.model.std, images)
    config = {
        "format": "GRAY" if channels == 1 else "RGB",  # PNGs are stored in the tensor's channel order
        "mean": list(spec.model.mean[:channels]),
        "normal": [1.0 / s for s in spec.model.std[:channels]],
        "width": width,
        "height": height,
        "path": str(images) + "/",
        "used_image_num": int(len(tensors)),
        "feature_quantize_method": FEATURE_METHOD[spec.calibration.method],
        "weight_quantize_method": "MAX_ABS",
    }
    if skip:
        config["skip_quant_op_names"] = list(skip)
    config_path = job.workdir / f"{folder}.json"
    config_path.write_text(json.dumps(config, indent=2))
    out = job.workdir / folder / "model.mnn"
    out.parent.mkdir()
    output = run_python(
        "mnn int8", QUANT_SNIPPET, ["mnnquant", str(fp32_model), str(out), str(config_path)],
        cwd=job.workdir, log_file=job.workdir / "mnnquant.log",
    )
    if "Quantize model done" not in output or not out.is_file():
        tail = " | ".join(output.strip().splitlines()[-2:])
        raise ConversionError(f"mnn int8: quantization failed: {tail} (log: {job.workdir / 'mnnquant.log'})")
    return out, {"calibration": {"method": config["feature_quantize_method"], "images": int(len(tensors))}}
