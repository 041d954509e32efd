"""Compare an artifact with the reference: per-output tensors, the task, and latency.

Status rules (documented in the README):
- failed: the artifact does not run, an output has the wrong shape, or produces NaN/inf;
- degraded: cosine below the precision's floor, or task agreement (box F1 at IoU 0.5 after
  NMS for detectors, top-1 agreement for classifiers) below the precision's floor;
- ok: neither. Int8 artifacts are never judged on cosine alone: the task metric always counts.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack.validate import detection, metrics
from edgepack.validate.reference import run_all

COSINE_FLOOR = {"fp32": 0.9999, "fp16": 0.999, "int8-weight": 0.99, "int8-dynamic": 0.98, "int8": 0.98}
TASK_FLOOR = {"fp32": 0.99, "fp16": 0.95, "int8-weight": 0.9, "int8-dynamic": 0.9, "int8": 0.9}


@dataclass(frozen=True)
class TaskSpec:
    task: str  # detect | classify
    head: str  # yolov8 | yolov5 | raw
    score_threshold: float
    iou_threshold: float
    num_classes: int | None = None

    @classmethod
    def for_job(cls, job: Any) -> "TaskSpec":
        """The task of a conversion job (its spec's thresholds, its labels' class count)."""
        v, m = job.spec.validation, job.spec.model
        return cls(m.task, m.head, v.score_threshold, v.iou_threshold, len(job.labels or []) or None)

    @classmethod
    def for_manifest(cls, manifest: dict[str, Any]) -> "TaskSpec":
        """The task recorded in an output folder's manifest (revalidation, device tests)."""
        model, post = manifest["model"], manifest["postprocessing"]
        return cls(model["task"], model["head"] or "raw", post["score_threshold"], post["iou_threshold"], model["num_classes"] or None)


def task_outputs(task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
    """What the task metric compares, per input image: detections or the top-1 class."""
    first = outputs[0]
    if task.task == "classify":
        return [int(np.argmax(row)) for row in first.reshape(first.shape[0], -1)]
    if task.head == "raw":
        return []
    return [
        detection.decode(o, task.head, task.score_threshold, task.iou_threshold, num_classes=task.num_classes) for o in first
    ]


def task_agreement(task: TaskSpec, reference: list[Any], candidate: list[Any]) -> tuple[str, float] | None:
    if not reference:
        return None
    if task.task == "classify":
        return "top1_agreement", float(np.mean([a == b for a, b in zip(reference, candidate)]))
    return "box_f1_iou50", detection.f1_agreement(reference, candidate)


def measure_latency(runner, x: np.ndarray, runs: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        runner.run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.run(x)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[min(len(times) - 1, int(0.9 * len(times)))], 3),
        "min_ms": round(times[0], 3),
        "runs": runs,
    }


def compare(
    runner,
    inputs: np.ndarray,
    reference: list[np.ndarray],
    output_names: list[str],
    precision: str,
    task: TaskSpec,
    reference_task: list[Any],
    latency_runs: int,
    threads: int,
) -> dict[str, Any]:
    """The validation record of one artifact (goes into the manifest as is)."""
    record: dict[str, Any] = {"images": int(len(inputs)), "outputs": [], "reasons": []}
    try:
        outputs = run_all(runner, inputs)
    except Exception as e:  # the runtime itself failed: that is the finding
        record.update(status="failed", reasons=[f"runtime error: {str(e).splitlines()[0][:200]}"])
        return record
    for name, got, want in zip(output_names, outputs, reference):
        row: dict[str, Any] = {"name": name, "shape": list(want.shape[1:])}
        if got.shape != want.shape:
            record["reasons"].append(f"output {name}: shape {list(got.shape[1:])} != reference {list(want.shape[1:])}")
            record["outputs"].append(row)
            continue
        if not np.all(np.isfinite(got)):
            record["reasons"].append(f"output {name}: contains NaN or inf")
        row.update(cosine=metrics.cosine(got, want), max_abs=metrics.max_abs(got, want), psnr=metrics.psnr(got, want))
        record["outputs"].append(row)
    if record["reasons"]:
        record["status"] = "failed"
        return record
    agreement = task_agreement(task, reference_task, task_outputs(task, outputs))
    if agreement:
        record["task_metric"], record["task_agreement"] = agreement[0], round(agreement[1], 6)
    worst_cosine = min(o["cosine"] for o in record["outputs"])
    record["cosine"] = worst_cosine
    record["max_abs"] = max(o["max_abs"] for o in record["outputs"])
    record["psnr"] = min(o["psnr"] for o in record["outputs"])
    record["thresholds"] = {"cosine": COSINE_FLOOR[precision], "task_agreement": TASK_FLOOR[precision]}
    if worst_cosine < COSINE_FLOOR[precision]:
        record["reasons"].append(f"cosine {worst_cosine:.6f} < {COSINE_FLOOR[precision]}")
    if agreement and agreement[1] < TASK_FLOOR[precision]:
        record["reasons"].append(f"{agreement[0]} {agreement[1]:.3f} < {TASK_FLOOR[precision]}")
    if precision == "int8" and not agreement:
        record["reasons"].append("int8 without a task metric (head 'raw'): cosine alone cannot vouch for it")
    record["status"] = "degraded" if record["reasons"] else "ok"
    if getattr(runner, "records_latency", True):  # False: a stand-in runtime (Core ML's evaluator), not the device's
        record["latency"] = measure_latency(runner, inputs[0], latency_runs)
        record["latency"]["threads"] = threads
    return record


UNVERIFIED = "unverified-on-this-host"


def static_validation(fmt: Any, files: dict[str, Any], entry: dict[str, Any], labels: list[str], why: str | None = None) -> dict[str, Any]:
    """The validation record of an artifact no host runtime can execute (`fmt` is its
    TargetFormat; `why` says why not, e.g. an op the Core ML evaluator lacks): structural checks
    only, so the best status is `unverified-on-this-host`, never `ok`."""
    checks = fmt.static_checks(files, entry, labels)
    failed = [f"{c['check']}: {c['detail']}" for c in checks if not c["ok"]]
    return {
        "status": "failed" if failed else UNVERIFIED,
        "reasons": failed or [why or f"{fmt.info.runtime}: structure checked, numbers not"],
        "static_checks": checks,
    }


def with_static_checks(record: dict[str, Any], fmt: Any, files: dict[str, Any], entry: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """A numeric validation record plus the format's structural checks (Core ML has some): a
    failed check fails the artifact whatever its numbers."""
    checks = fmt.static_checks(files, entry, labels)
    if checks:
        record["static_checks"] = checks
        failed = [f"{c['check']}: {c['detail']}" for c in checks if not c["ok"]]
        if failed:
            record["status"], record["reasons"] = "failed", failed + record["reasons"]
    return record
