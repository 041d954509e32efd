"""A numpy evaluator for saved Core ML packages (ML Program, optionally in a pipeline with a
NonMaximumSuppression model), so Core ML artifacts are checked by numbers on Linux.

It checks what edgepack controls -- the converted graph, its weights as stored in the package,
compression, fp16 rounding per op, the NMS stage's configuration -- not Apple's kernels, which
run only on Apple's systems. Programs that use an op the table (`ops.OPS`) does not cover raise
`UnsupportedOps` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.coreml_eval.nms import NMSModel
from edgepack.coreml_eval.ops import OPS
from edgepack.coreml_eval.program import EvaluationError, MLProgram, UnsupportedOps
from edgepack.coreml_eval.threads import blas_threads

__all__ = ["OPS", "CoreMLPackage", "EvaluationError", "MLProgram", "NMSModel", "UnsupportedOps", "blas_threads", "load_package"]


@dataclass
class CoreMLPackage:
    path: Path
    spec: Any  # the package's Model protobuf
    network: MLProgram  # the ML Program (the pipeline's first model, or the model itself)
    network_spec: Any
    nms: NMSModel | None  # the pipeline's NonMaximumSuppression stage, if any

    def run_pipeline(self, inputs: dict[str, Any], iou_threshold: float | None = None,
                     confidence_threshold: float | None = None) -> dict[str, Any]:
        """The package's final outputs: the program's outputs, then the NMS stage when present."""
        outputs = self.network.run(inputs)
        if self.nms is None:
            return outputs
        confidence, coordinates = self.nms(outputs[self.nms.confidence_input], outputs[self.nms.coordinates_input],
                                           iou_threshold, confidence_threshold)
        return {self.nms.confidence_output: confidence, self.nms.coordinates_output: coordinates}


def load_package(path: str | Path) -> CoreMLPackage:
    """Read an .mlpackage with coremltools' readers (Manifest.json, model protobuf, weight blobs)."""
    from edgepack.coreml_eval.importing import coremltools_readers

    ct = coremltools_readers()
    from coremltools.models.utils import _try_get_weights_dir_path

    path = Path(path)
    spec = ct.utils.load_spec(str(path))
    kind = spec.WhichOneof("Type")
    nms = None
    if kind == "pipeline":
        models = list(spec.pipeline.models)
        kinds = [m.WhichOneof("Type") for m in models]
        if kinds[0] != "mlProgram" or any(k != "nonMaximumSuppression" for k in kinds[1:]) or len(models) > 2:
            raise UnsupportedOps([f"pipeline of {'+'.join(kinds)}"])
        network_spec = models[0]
        nms = NMSModel.from_spec(models[1]) if len(models) == 2 else None
    elif kind == "mlProgram":
        network_spec = spec
    else:
        raise UnsupportedOps([f"model type {kind}"])
    weights = _try_get_weights_dir_path(str(path))
    weights_dir = Path(weights) if weights else path / "Data" / "com.apple.CoreML" / "weights"
    return CoreMLPackage(path, spec, MLProgram.from_spec(network_spec, weights_dir), network_spec, nms)
