"""Task agreement of a quantized artifact with the ONNX reference, on calibration images:
the signal behind automatic mixed precision (int8 that keeps the stem and head in float)."""

from __future__ import annotations

import numpy as np

from edgepack.formats.base import ConversionJob, HostRunner


def agreement_with_reference(job: ConversionJob, runner: HostRunner, inputs: np.ndarray) -> float:
    from edgepack.validate.reference import OnnxRuntimeRunner, run_all
    from edgepack.validate.validator import TaskSpec, task_agreement, task_outputs

    task = TaskSpec.for_job(job)
    reference = task_outputs(task, run_all(OnnxRuntimeRunner(job.model.onnx_path), inputs))
    result = task_agreement(task, reference, task_outputs(task, run_all(runner, inputs)))
    return result[1] if result else 1.0


def artifact_entry(job: ConversionJob, precision: str, layout: str = "NCHW") -> dict:
    """The minimal manifest record a host runner needs before the artifact is in the manifest."""
    return {
        "precision": precision,
        "inputs": [{"name": job.model.input_name, "layout": layout}],
        "outputs": [{"name": n, "shape": list(s)} for n, s in zip(job.model.output_names, job.model.output_shapes)],
    }
