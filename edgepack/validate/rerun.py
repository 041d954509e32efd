"""`edgepack validate OUT`: run every artifact of an output folder again, from its manifest alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepack import console
from edgepack.formats import FORMATS
from edgepack.formats.base import RuntimeUnavailable
from edgepack.manifest import MANIFEST_NAME, artifact_files, load_manifest, verify_artifact_files, write_json_atomic
from edgepack.errors import SpecError
from edgepack.validate.tasks import dataset_support
from edgepack.validate.validator import TaskSpec, compare, static_validation, task_outputs, with_static_checks


def load_validation_set(out: Path, manifest: dict[str, Any]) -> tuple[np.ndarray, list[np.ndarray]]:
    v = manifest["validation"]
    inputs = np.load(out / v["inputs"])["inputs"]
    with np.load(out / v["reference_outputs"]) as ref:
        names = [o["name"] for o in manifest["artifacts"][0]["outputs"]] if manifest["artifacts"] else list(ref.keys())
        reference = [ref[n] for n in names]
    return inputs, reference


def revalidate(out_dir: str | Path, threads: int = 2, latency_runs: int = 10, dataset: str | Path | None = None) -> dict[str, Any]:
    out = Path(out_dir)
    manifest = load_manifest(out)
    task = TaskSpec.for_manifest(manifest)
    samples = None
    if dataset is not None:
        not_measurable = dataset_support(task)
        if not_measurable:
            raise SpecError(not_measurable, "run `edgepack validate OUT` without --dataset")
        from edgepack.validate.dataset import evaluate, load_dataset
        from edgepack.validate.reference import OnnxRuntimeRunner

        with console.step("Loading", f"dataset {dataset}") as s:
            samples = load_dataset(dataset, manifest)
            s["note"] = f"{len(samples)} images"
        with console.step("Evaluating", "reference (onnxruntime)") as s:
            reference_metric = evaluate(OnnxRuntimeRunner(out / manifest["reference"]["onnx"], threads), samples, manifest)
            s["note"] = ", ".join(f"{k} {v:.4f}" for k, v in reference_metric.items())
        manifest["dataset"] = {"path": str(dataset), "images": len(samples), "reference": reference_metric}
    inputs, reference = load_validation_set(out, manifest)
    reference_task = task_outputs(task, reference)
    for entry in manifest["artifacts"]:
        if entry.get("conversion_failed"):
            continue  # nothing was built: the record of why stays as it is
        fmt = FORMATS.get(entry["format"])()
        files = artifact_files(out, entry)
        changed = verify_artifact_files(out, entry)
        missing = [c for c in changed if c.endswith(" is missing")]
        if missing:  # nothing to run: the artifact is gone
            entry["validation"] = {"status": "failed", "reasons": missing}
            entry["status"] = "failed"
            console.warn(f"{entry['id']}: {'; '.join(missing)}")
            continue
        if changed:  # measured all the same, so the report says what the edited bytes now answer
            console.warn(f"{entry['id']}: {'; '.join(changed)}")
        with console.step("Validating", entry["id"]) as s:
            runner, why = None, None
            if fmt.info.numeric_validation:
                try:
                    runner = fmt.open_runner(files, entry, threads)
                except RuntimeUnavailable as e:  # e.g. a Core ML op the evaluator lacks
                    why = str(e)
            if runner is None:
                entry["validation"] = static_validation(fmt, files, entry, manifest["model"]["labels"], why)
                _fail_if_changed(entry["validation"], changed)
                entry["status"] = s["note"] = entry["validation"]["status"]
                if samples is not None:
                    entry["dataset_metric"] = {"not_measured": why or f"{fmt.info.title} cannot run on this host ({fmt.info.runtime})"}
                continue
            names = [o["name"] for o in entry["outputs"]]
            record = compare(runner, inputs, reference, names, entry["precision"], task, reference_task, latency_runs, threads)
            entry["validation"] = with_static_checks(record, fmt, files, entry, manifest["model"]["labels"])
            _fail_if_changed(entry["validation"], changed)
            entry["status"] = entry["validation"]["status"]
            s["note"] = entry["status"]
            if samples is not None:
                metric = evaluate(runner, samples, manifest)
                entry["dataset_metric"] = {**metric, **{f"{k}_delta": round(v - manifest["dataset"]["reference"][k], 4) for k, v in metric.items()}}
                s["note"] += ", " + ", ".join(f"{k} {v:.4f}" for k, v in metric.items())
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest


def _fail_if_changed(record: dict[str, Any], changed: list[str]) -> None:
    """Bytes that differ from the build are not the artifact that was built and shipped: the
    artifact fails whatever it now answers; what the numbers alone said stays in `measured_status`."""
    if changed:
        record["measured_status"] = record["status"]
        record["status"] = "failed"
        record["reasons"] = changed + list(record.get("reasons", []))
