"""Compare an artifact with the reference: per output and per output part, the task, and latency.

Status rules (documented in the README, "Status rules"):
- failed: the artifact does not run, an output has the wrong shape, or produces NaN/inf;
- degraded: the cosine of an output, or of a part of it (box coordinates, objectness, class
  scores, mask coefficients, keypoints), is below the precision's floor; a part the reference
  varies in collapsed to a constant ("score channels collapsed to 0"); or the task agreement is
  below the precision's floor; or an int8 artifact has no measurable task agreement (task
  `tensor`, head `raw`, or too few reference objects): int8 is never `ok` on cosine alone;
- ok: none of these. A task agreement that is not measurable (the reference found fewer than
  5 objects on 3 images) is recorded as null with a note, never as a vacuous 1.0; the status
  of a float artifact then rests on the per-part numbers.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from edgepack.validate import metrics, tasks
from edgepack.validate.reference import run_all
from edgepack.validate.tasks import Agreement, TaskSpec

COSINE_FLOOR = {"fp32": 0.9999, "fp16": 0.999, "int8-weight": 0.99, "int8-dynamic": 0.98, "int8": 0.98}
TASK_FLOOR = {"fp32": 0.99, "fp16": 0.95, "int8-weight": 0.9, "int8-dynamic": 0.9, "int8": 0.9}
# per output part (box coordinates, scores, ...): the same floors (built-in detector, ncnn int8:
# whole output 0.999997, boxes 0.999997, scores 0.975 -> degraded although its box F1 is 0.92)
PART_COSINE_FLOOR = dict(COSINE_FLOOR)

__all__ = ["COSINE_FLOOR", "PART_COSINE_FLOOR", "TASK_FLOOR", "TaskSpec", "compare", "measure_agreement", "quantization_score", "static_validation",
           "task_agreement", "task_outputs", "tensor_metrics"]


def task_outputs(task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
    """What the task metric compares, per input image (detections, top-1 class, masks, ...);
    `outputs` are stacked over images, in the reference's output order."""
    return tasks.results(task, outputs)


def measure_agreement(task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
    """The task agreement with its metric name; value None when not measurable or not applicable."""
    return tasks.agreement(task, reference, candidate)


def task_agreement(task: TaskSpec, reference: list[Any], candidate: list[Any]) -> tuple[str, float] | None:
    """(metric, value), or None when the agreement is not measurable or the task has no decoder."""
    result = measure_agreement(task, reference, candidate)
    return (result.metric, result.value) if result.measurable else None


def quantization_score(task: TaskSpec, reference_outputs: list[np.ndarray], candidate_outputs: list[np.ndarray]) -> float:
    """One number for automatic mixed precision to compare with TASK_FLOOR["int8"]: the task
    agreement when it is measurable, else the worst cosine over outputs and output parts (0 for
    a collapsed part), so a quantized model whose scores collapsed on images without objects
    still asks for float layers instead of passing as 1.0."""
    result = measure_agreement(task, task_outputs(task, reference_outputs), task_outputs(task, candidate_outputs))
    if result.measurable:
        return float(result.value)
    numbers = numeric_record(task, candidate_outputs, reference_outputs, list(task.output_names) or
                             [f"output{i}" for i in range(len(reference_outputs))], "int8")
    if numbers["failed"] or any("collapsed" in reason for reason in numbers["degraded"]):
        return 0.0
    cosines = [o["cosine"] for o in numbers["outputs"]] + [p["cosine"] for o in numbers["outputs"] for p in o.get("parts", [])]
    return float(min(cosines))


def tensor_metrics(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    return {"cosine": metrics.cosine(got, want), "max_abs": metrics.max_abs(got, want), "psnr": metrics.psnr(got, want)}


def collapse(got: np.ndarray, want: np.ndarray) -> str | None:
    """Why `got` is a collapsed copy of `want` (constant where the reference varies), or None."""
    if got.size and want.size and np.ptp(want) > 0 and np.ptp(got) == 0:
        return f"collapsed to the constant {float(got.flat[0]):.4g} (reference spans {float(want.min()):.4g}..{float(want.max()):.4g})"
    return None


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


def numeric_record(task: TaskSpec, outputs: list[np.ndarray], reference: list[np.ndarray], output_names: list[str],
                   precision: str) -> dict[str, Any]:
    """Per-output and per-part metrics with the reasons they give: `failed` reasons (shape,
    NaN/inf) and `degraded` reasons (floors, collapsed parts)."""
    floor = COSINE_FLOOR[precision]
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    degraded: list[str] = []
    for index, (name, got, want) in enumerate(zip(output_names, outputs, reference)):
        row: dict[str, Any] = {"name": name, "shape": list(want.shape[1:])}
        rows.append(row)
        if got.shape != want.shape:
            failed.append(f"output {name}: shape {list(got.shape[1:])} != reference {list(want.shape[1:])}")
            continue
        if not np.all(np.isfinite(got)):
            failed.append(f"output {name}: contains NaN or inf")
            continue
        row.update(tensor_metrics(got, want))
        if row["cosine"] < floor:
            degraded.append(f"output {name}: cosine {row['cosine']:.6f} < {floor}")
        collapsed = collapse(got, want)
        if collapsed:
            degraded.append(f"output {name} {collapsed}")
        part_rows = []
        for part in tasks.parts(task, index):
            a, b = part.take(got), part.take(want)
            part_row = {"part": part.name, "channels": [part.index[0], part.index[-1] + 1], **tensor_metrics(a, b)}
            if len(part.index) > 1 and part.index[1] - part.index[0] != 1:
                part_row["step"] = part.index[1] - part.index[0]
            part_rows.append(part_row)
            collapsed = collapse(a, b)
            if collapsed:
                channels = "score channels" if part.name == "scores" else f"part {part.name!r}"
                degraded.append(f"output {name}: {channels} {collapsed}")
            elif part_row["cosine"] < PART_COSINE_FLOOR[precision]:
                degraded.append(f"output {name} part {part.name!r}: cosine {part_row['cosine']:.6f} < {PART_COSINE_FLOOR[precision]}")
        if part_rows:
            row["parts"] = part_rows
    return {"outputs": rows, "failed": failed, "degraded": degraded}


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
    """The validation record of one artifact (goes into the manifest as is). The runner may
    return a list in the reference's order or a dict name -> array (matched by name)."""
    record: dict[str, Any] = {"images": int(len(inputs)), "outputs": [], "reasons": []}
    try:
        outputs = run_all(runner, inputs, output_names)
    except Exception as e:  # the runtime itself failed: that is the finding
        record.update(status="failed", reasons=[f"runtime error: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"])
        return record
    numbers = numeric_record(task, outputs, reference, output_names, precision)
    record["outputs"] = numbers["outputs"]
    if numbers["failed"]:
        record.update(status="failed", reasons=numbers["failed"])
        return record
    agreement = measure_agreement(task, reference_task, task_outputs(task, outputs))
    record["task_metric"] = agreement.metric
    record["task_agreement"] = round(agreement.value, 6) if agreement.measurable else None
    if agreement.note:
        record["task_note"] = agreement.note
    if agreement.details:
        record["task_details"] = agreement.details
    measured = [(o, None) for o in record["outputs"]] + [(o, p) for o in record["outputs"] for p in o.get("parts", [])]
    worst_row, worst_part = min(measured, key=lambda m: (m[1] or m[0])["cosine"])
    record["cosine"] = (worst_part or worst_row)["cosine"]  # the worst output or output part
    record["worst"] = worst_row["name"] + (f"/{worst_part['part']}" if worst_part else "")
    record["max_abs"] = max(o["max_abs"] for o in record["outputs"])
    record["psnr"] = min((p or o)["psnr"] for o, p in measured)
    record["thresholds"] = {"cosine": COSINE_FLOOR[precision], "task_agreement": TASK_FLOOR[precision]}
    record["reasons"] = list(numbers["degraded"])
    if agreement.measurable and agreement.value < TASK_FLOOR[precision]:
        record["reasons"].append(f"{agreement.metric} {agreement.value:.3f} < {TASK_FLOOR[precision]}")
    if precision == "int8" and not agreement.measurable:
        why = agreement.note or "no task metric"
        record["reasons"].append(f"int8 without a measurable task agreement ({why}): cosine alone cannot vouch for it")
    record["status"] = "degraded" if record["reasons"] else "ok"
    if latency_runs > 0 and getattr(runner, "records_latency", True):  # False: a stand-in runtime (Core ML's evaluator)
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
