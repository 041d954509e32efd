"""Is an int8 model still doing the task? The signal behind automatic mixed precision, decided
so that it cannot be vacuous:

- detectors are judged on images where the reference finds objects (box F1 there), and on the
  output split into its parts: box coordinates and class-score channels apart. One int8 scale
  over a concatenated YOLO output (boxes up to the input size, scores 0..1) rounds every score
  to exactly 0 while the cosine of the whole tensor stays 0.9999: "all score channels exactly
  zero" fails at once, and the score channels need their own cosine;
- classifiers on top-1 agreement and the cosine of their output.

`output_part_reasons` is the same check for the validator (one line in `compare`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepack.formats.base import ConversionJob, HostRunner
from edgepack.tools import exclusive_lock

# Floors of the int8 check; the box-F1 floor is the validator's int8 task floor.
SCORE_COSINE_FLOOR = 0.98
BOX_COSINE_FLOOR = 0.98
MIN_OBJECT_IMAGES = 4  # fewer images with objects than this: box F1 is not used, scores still are
CHECK_IMAGES = 16
SCAN_IMAGES = 64  # calibration images the reference runs on to find ones with objects
SCAN_BLOCK = 8


def output_parts(head: str, output: np.ndarray, num_classes: int | None = None) -> dict[str, np.ndarray]:
    """A detector output (N x [1 x] rows/channels) split into box coordinates and class scores
    (and objectness for yolov5), each as N x anchors x channels."""
    out = np.asarray(output, np.float32)
    out = out.reshape(out.shape[0], *out.shape[-2:])
    if head == "yolov8":
        channels_first = out.shape[1] == 4 + num_classes if num_classes else out.shape[1] < out.shape[2]
        rows = out.transpose(0, 2, 1) if channels_first else out
        return {"boxes": rows[..., :4], "scores": rows[..., 4:]}
    if head == "yolov5":
        return {"boxes": out[..., :4], "objectness": out[..., 4:5], "scores": out[..., 5:]}
    raise ValueError(f"no output parts for head {head!r}")


def part_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    from edgepack.validate.metrics import cosine, max_abs

    zero = bool(not np.any(candidate)) and bool(np.any(reference))
    constant = bool(np.ptp(candidate) == 0) and bool(np.ptp(reference) > 0)
    return {"cosine": cosine(candidate, reference), "max_abs": max_abs(candidate, reference),
            "all_zero": zero, "constant": constant, "channels": int(reference.shape[-1])}


def output_part_reasons(task: Any, reference: list[np.ndarray], candidate: list[np.ndarray]) -> list[str]:
    """Why a detector's output parts disqualify it (empty when they do not): score channels all
    exactly zero or constant, or a part's cosine under its floor. `task` is a validator TaskSpec;
    reference/candidate are the stacked outputs (N x ...). For the validator's `compare`:
    `record["reasons"] += output_part_reasons(task, reference, outputs)` for int8 precisions."""
    if task.task != "detect" or task.head not in ("yolov8", "yolov5") or not reference:
        return []
    reasons = []
    ref_parts = output_parts(task.head, reference[0], task.num_classes)
    cand_parts = output_parts(task.head, candidate[0], task.num_classes)
    floors = {"boxes": BOX_COSINE_FLOOR, "scores": SCORE_COSINE_FLOOR, "objectness": SCORE_COSINE_FLOOR}
    for name, ref in ref_parts.items():
        m = part_metrics(ref, cand_parts[name])
        label = {"boxes": "box coordinates", "scores": "class scores", "objectness": "objectness"}[name]
        if m["all_zero"]:
            reasons.append(f"{label}: all {m['channels']} channels are exactly 0 (collapsed by quantization)")
        elif m["constant"]:
            reasons.append(f"{label}: all {m['channels']} channels hold one constant value (collapsed by quantization)")
        elif m["cosine"] < floors[name]:
            reasons.append(f"{label}: cosine {m['cosine']:.4f} < {floors[name]}")
    return reasons


@dataclass
class Int8Check:
    """Outcome of the int8 check on a set of images."""

    passed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def value(self) -> float:
        """One number for logs and the manifest: box F1 / top-1 agreement, else the score cosine."""
        for key in ("box_f1_iou50", "top1_agreement", "score_cosine", "cosine"):
            if self.metrics.get(key) is not None:
                return float(self.metrics[key])
        return 0.0

    def record(self) -> dict[str, Any]:
        rounded = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.metrics.items()}
        return {"passed": self.passed, **rounded, **({"reasons": self.reasons} if self.reasons else {})}


def at_least_as_good(a: Int8Check, b: Int8Check) -> bool:
    """Whether check `a` is no worse than `b` (passing first, then the headline value): the
    mixed-precision fallback is kept only when it did better than the plain int8 model."""
    return (a.passed, a.value) >= (b.passed, b.value)


def check_outputs(task: Any, reference: list[np.ndarray], candidate: list[np.ndarray], floor: float | None = None) -> Int8Check:
    """Judge candidate outputs against reference outputs (lists of N x ... arrays, one per output)."""
    from edgepack.validate import detection
    from edgepack.validate.metrics import cosine
    from edgepack.validate.validator import TASK_FLOOR, task_outputs

    floor = TASK_FLOOR["int8"] if floor is None else floor
    if not all(np.all(np.isfinite(c)) for c in candidate):
        return Int8Check(False, {}, ["output contains NaN or inf"])
    metrics: dict[str, Any] = {"images": int(len(reference[0])), "cosine": min(cosine(c, r) for c, r in zip(candidate, reference))}
    reasons: list[str] = []
    if task.task == "classify":
        ref_top, cand_top = task_outputs(task, reference), task_outputs(task, candidate)
        metrics["top1_agreement"] = float(np.mean([a == b for a, b in zip(ref_top, cand_top)]))
        if metrics["top1_agreement"] < floor:  # the task decides; softmax cosine moves with calibration noise
            reasons.append(f"top-1 agreement {metrics['top1_agreement']:.3f} < {floor}")
        return Int8Check(not reasons, metrics, reasons)
    if task.head not in ("yolov8", "yolov5"):  # raw head: nothing but the tensors to go by
        if metrics["cosine"] < BOX_COSINE_FLOOR:
            reasons.append(f"cosine {metrics['cosine']:.4f} < {BOX_COSINE_FLOOR}")
        return Int8Check(not reasons, metrics, reasons)
    reasons += output_part_reasons(task, reference, candidate)
    ref_parts = output_parts(task.head, reference[0], task.num_classes)
    cand_parts = output_parts(task.head, candidate[0], task.num_classes)
    for name, prefix in (("boxes", "box"), ("scores", "score"), ("objectness", "objectness")):
        if name in ref_parts:
            m = part_metrics(ref_parts[name], cand_parts[name])
            metrics[f"{prefix}_cosine"], metrics[f"{prefix}_max_abs"] = m["cosine"], m["max_abs"]
    ref_dets, cand_dets = task_outputs(task, reference), task_outputs(task, candidate)
    with_objects = [i for i, d in enumerate(ref_dets) if len(d)]
    metrics["images_with_objects"] = len(with_objects)
    if len(with_objects) >= MIN_OBJECT_IMAGES:
        f1 = detection.f1_agreement([ref_dets[i] for i in with_objects], [cand_dets[i] for i in with_objects])
        metrics["box_f1_iou50"] = f1
        if f1 < floor:
            reasons.append(f"box F1 {f1:.3f} < {floor} on {len(with_objects)} images with objects")
    else:
        metrics["box_f1_iou50"] = None
    return Int8Check(not reasons, metrics, reasons)


def check_images(job: ConversionJob) -> tuple[np.ndarray, list[np.ndarray]]:
    """Calibration images for the int8 check and the ONNX reference's outputs on them: for a
    detector, the first CHECK_IMAGES of the first SCAN_IMAGES images where the reference finds
    objects (the first images when too few have any, so the score channels are still compared).
    Scanned a block at a time, keeping only what the check uses (at 640, 64 images and their
    outputs held at once were 500 MB). Computed once per build: the formats' child processes
    share it through a file in the build's scratch folder, the first to need it computing it
    while the others wait (at 640 the scan of a model that finds nothing took 7.6 s per format)."""
    key = ("int8_check", id(job.calibration))
    if key in job.model.cache:
        return job.model.cache[key]
    if job.shared_dir is None:
        result = _scan_check_images(job)
    else:
        shared = job.shared_dir / "int8_check.npz"
        with exclusive_lock(job.shared_dir / "int8_check.lock"):
            if shared.exists():
                with np.load(shared) as saved:
                    result = (saved["inputs"], [saved[f"output_{k}"] for k in range(len(saved.files) - 1)])
            else:
                result = _scan_check_images(job)
                partial = shared.with_name(f".{shared.name}.{os.getpid()}.partial")
                with open(partial, "wb") as f:
                    np.savez(f, inputs=result[0], **{f"output_{k}": o for k, o in enumerate(result[1])})
                os.replace(partial, shared)  # a process killed mid-write leaves no half file to load
    job.model.cache[key] = result
    return result


def _scan_check_images(job: ConversionJob) -> tuple[np.ndarray, list[np.ndarray]]:
    from edgepack.validate.reference import OnnxRuntimeRunner, run_all
    from edgepack.validate.validator import TaskSpec, task_outputs

    task = TaskSpec.for_job(job)
    reference_runner = OnnxRuntimeRunner(job.model.onnx_path)
    if task.task != "detect" or task.head not in ("yolov8", "yolov5"):
        picked = np.array(job.calibration()[:CHECK_IMAGES])
        result = (picked, run_all(reference_runner, picked))
    else:
        first: list[tuple[np.ndarray, list[np.ndarray]]] = []  # (image, its outputs) in scan order
        with_objects: list[tuple[np.ndarray, list[np.ndarray]]] = []
        scan = min(len(job.calibration()), SCAN_IMAGES)
        for start in range(0, scan, SCAN_BLOCK):
            block = np.array(job.calibration()[start:min(start + SCAN_BLOCK, scan)])  # a copy: the mapping goes at once
            outputs = run_all(reference_runner, block)
            for i, dets in enumerate(task_outputs(task, outputs)):
                pair = (block[i].copy(), [o[i].copy() for o in outputs])  # copies: a view would keep its whole block alive
                if len(first) < CHECK_IMAGES:
                    first.append(pair)
                if len(dets) and len(with_objects) < CHECK_IMAGES:
                    with_objects.append(pair)
            if len(with_objects) == CHECK_IMAGES:
                break
        chosen = with_objects if len(with_objects) >= MIN_OBJECT_IMAGES else first
        result = (np.stack([x for x, _ in chosen]), [np.stack([outs[k] for _, outs in chosen]) for k in range(len(chosen[0][1]))])
    return result


def check_runner(job: ConversionJob, runner: HostRunner) -> Int8Check:
    """The int8 check of a runner against the ONNX reference on `check_images`."""
    from edgepack.validate.reference import run_all
    from edgepack.validate.validator import TaskSpec

    inputs, reference = check_images(job)
    return check_outputs(TaskSpec.for_job(job), reference, run_all(runner, inputs))


def agreement_with_reference(job: ConversionJob, runner: HostRunner, inputs: np.ndarray) -> float:
    """The int8 check on given images as one number for the formats that compare it with the
    int8 floor (OpenVINO, ONNX, ExecuTorch, TensorRT): the check's value, and below the floor
    whenever the check fails (collapsed score channels, lost boxes), so it is never vacuous."""
    from edgepack.validate.reference import OnnxRuntimeRunner, run_all
    from edgepack.validate.validator import TASK_FLOOR, TaskSpec

    check = check_outputs(TaskSpec.for_job(job), run_all(OnnxRuntimeRunner(job.model.onnx_path), inputs), run_all(runner, inputs))
    return check.value if check.passed else min(check.value, TASK_FLOOR["int8"] - 1e-6)


def artifact_entry(job: ConversionJob, precision: str, layout: str = "NCHW") -> dict:
    """The minimal manifest record a host runner needs before the artifact is in the manifest."""
    return {
        "precision": precision,
        "inputs": [{"name": job.model.input_name, "layout": layout}],
        "outputs": [{"name": n, "shape": list(s)} for n, s in zip(job.model.output_names, job.model.output_shapes)],
    }
