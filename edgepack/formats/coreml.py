"""Core ML .mlpackage (ML Program) through coremltools, from a PyTorch module (the user's own, or
the canonical ONNX graph through onnx2torch: coremltools 9 has no ONNX frontend).

- Image input whose scale/bias reproduce the spec's normalization (per-channel std, which
  ImageType cannot express, is folded into the graph).
- Classifiers carry a classifier config (Vision returns VNClassificationObservation).
- Detectors become a pipeline: the network emits raw_confidence [N, C] and raw_coordinates
  [N, 4] (normalized cx, cy, w, h) and a NonMaximumSuppression model produces `confidence` and
  `coordinates`, with iouThreshold / confidenceThreshold as optional inputs (Vision returns
  VNRecognizedObjectObservation; Xcode's preview works).

Core ML executes only on Apple's systems. On Linux the package is checked statically
(`static_checks`) and by numbers: `edgepack.coreml_eval` evaluates the saved ML Program in numpy
(the graph and the weights as stored in the package, fp16 rounding per op, compressed weights) and
the runner returns the raw network output in the canonical layout, compared with ONNX Runtime like
every other artifact. A program with an op the evaluator has no function for stays
`unverified-on-this-host`, the op named in the reason.

Precisions: fp32, fp16, and int8-weight (fp16 program, int8 linear weights: the
constexpr_affine_dequantize op, iOS 16). Full int8 (weights and activations) is not offered:
coremltools calibrates activations by running the model with Core ML itself (macOS only) and its
activation quantization needs iOS 17, above edgepack's iOS 16 target.

Speed: one `torch.export` per build and one conversion per compute precision; int8-weight
quantizes the fp16 program of the same build (the model's per-build cache holds both).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, HostRunner, RuntimeUnavailable, TargetFormat, require_modules
from edgepack.coreml_eval.importing import coremltools_full, coremltools_readers
from edgepack.native import captured_native_output
from edgepack.sources.base import pytorch_module

DEPLOYMENT_TARGET = "iOS16"
NOT_OFFERED = {
    "int8": "weights + activations: coremltools calibrates activations only through Core ML itself (macOS) "
            "and needs iOS 17; coreml offers int8-weight",
}
COMPRESSION_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense")
QUANTIZE_MIN_VALUES = 2048  # coremltools' default weight_threshold: larger tensors get compressed


def _image_scale_bias(job: ConversionJob) -> tuple[float, list[float], bool]:
    """The image input's scale and per-channel bias; False when the std differs per channel
    (ImageType has one scale: the graph then normalizes itself)."""
    m = job.spec.model
    std = np.asarray(m.std, np.float64)
    mean = np.asarray(m.mean, np.float64)
    uniform = bool(np.allclose(std, std[0]))
    scale = float(1.0 / std[0]) if uniform else 1.0
    bias = [float(-mu / std[0]) for mu in mean] if uniform else [0.0, 0.0, 0.0]
    return scale, bias, uniform


def core_kind(task: str | None, head: str | None) -> str:
    """How the package is shaped: a classifier (Vision classifications), an NMS pipeline (Vision
    object observations) or a plain program whose outputs are the model's own (any other task)."""
    if task == "classify":
        return "classifier"
    if task == "detect" and head in ("yolov8", "yolov5"):
        return "detector"
    return "plain"


def output_feature_names(names: list[str]) -> list[str]:
    """Core ML feature names for the canonical outputs (identifiers; order kept, clashes numbered)."""
    result: list[str] = []
    for i, name in enumerate(names):
        clean = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).strip("_") or f"output{i}"
        if clean[0].isdigit():
            clean = f"output_{clean}"
        while clean in result or clean == "image":
            clean = f"{clean}_{i}"
        result.append(clean)
    return result


def _wrapped(module: Any, job: ConversionJob) -> Any:
    """The network as Core ML sees it: pixels in (scale/bias applied by the image input, per-channel
    std folded here), detector outputs split and normalized for the NMS model."""
    import torch

    m = job.spec.model
    std = np.asarray(m.std, np.float64)
    mean = np.asarray(m.mean, np.float64)
    uniform = _image_scale_bias(job)[2]
    _, c, h, w = job.model.input_shape
    task, head = m.task, m.head
    kind = core_kind(task, head)
    per_channel = None if uniform else (torch.tensor(mean[:c], dtype=torch.float32).view(1, c, 1, 1),
                                        torch.tensor(std[:c], dtype=torch.float32).view(1, c, 1, 1))

    class CoreMLView(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        def forward(self, x: Any) -> Any:
            if per_channel is not None:
                x = (x - per_channel[0]) / per_channel[1]
            y = self.net(x)
            if kind == "plain":  # every output, in the canonical order
                return tuple(y) if isinstance(y, (list, tuple)) else (y,)
            y = y[0] if isinstance(y, (list, tuple)) else y
            if task == "classify":
                return y.reshape(1, -1)
            if head == "yolov5":  # [1, N, 5 + C]: cx, cy, w, h, objectness, classes
                boxes, scores = y[0, :, :4], y[0, :, 5:] * y[0, :, 4:5]
            else:  # yolov8: [1, 4 + C, N]
                boxes, scores = y[0, :4, :].transpose(0, 1), y[0, 4:, :].transpose(0, 1)
            scale = boxes.new_tensor([1.0 / w, 1.0 / h, 1.0 / w, 1.0 / h])
            return scores, boxes * scale

    return CoreMLView().eval()


def _without_channel_prelu(module: Any) -> Any:
    """coremltools 9 converts a per-channel PReLU only on rank-4 inputs ("rank 3 or rank 5 input
    is only supported when all the values of alpha are same"); after a Linear layer (MTCNN's ONet)
    its input is rank 2. A copy of the module with those PReLUs written as relu(x) - a * relu(-x),
    the same function, which converts at any rank. The user's module is left as it is."""
    import copy

    import torch

    if not any(isinstance(m, torch.nn.PReLU) and m.num_parameters > 1 for m in module.modules()):
        return module

    class ChannelPReLU(torch.nn.Module):
        def __init__(self, weight: Any) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(weight.detach().clone(), requires_grad=False)

        def forward(self, x: Any) -> Any:
            alpha = self.weight.reshape([-1] + [1] * (x.dim() - 2)) if x.dim() > 1 else self.weight
            return torch.relu(x) - alpha * torch.relu(-x)

    copied = copy.deepcopy(module)
    for name, child in list(copied.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, torch.nn.PReLU) and sub.num_parameters > 1:
                setattr(child, attr, ChannelPReLU(sub.weight))
    return copied


def _exported(job: ConversionJob) -> tuple[Any, Any]:
    """torch.export of the Core ML view and its output on a zero image, once per build."""
    shared = job.model.cache.setdefault("coreml", {})
    if "export" not in shared:
        import torch

        view = _wrapped(_without_channel_prelu(pytorch_module(job.model)), job)
        _, c, h, w = job.model.input_shape
        example = torch.zeros(1, c, h, w)
        with torch.no_grad():
            sample_out = view(example)
            # torch.export: shape arithmetic becomes static (TorchScript tracing leaves aten::Int casts
            # that coremltools 9 cannot convert)
            with warnings.catch_warnings():  # torch 2.13's pytree deprecation notice, not actionable here
                warnings.simplefilter("ignore", FutureWarning)
                traced = torch.export.export(view, (example,)).run_decompositions({})
        shared["export"] = (traced, sample_out)
    return shared["export"]


def _network(job: ConversionJob, labels: list[str], compute: str) -> Any:
    """The converted ML Program (before the NMS pipeline and metadata) for compute precision
    fp32 or fp16: converted once per build and saved in the converting job's folder; later jobs
    of the same build (int8-weight after fp16) load that package instead of converting again."""
    ct = coremltools_full()

    shared = job.model.cache.setdefault("coreml", {})
    saved = shared.setdefault("networks", {})
    if compute in saved and Path(saved[compute]).is_dir():
        with captured_native_output("coremltools", (1, 2)):
            return ct.models.MLModel(saved[compute], skip_model_load=True)
    traced, sample_out = _exported(job)
    _, c, h, w = job.model.input_shape
    scale, bias, _ = _image_scale_bias(job)
    color = {"rgb": ct.colorlayout.RGB, "bgr": ct.colorlayout.BGR}[job.spec.model.color_order] if c == 3 else ct.colorlayout.GRAYSCALE
    image = ct.ImageType(name="image", shape=(1, c, h, w), scale=scale, bias=bias if c == 3 else bias[:1], color_layout=color)
    kind = core_kind(job.spec.model.task, job.spec.model.head)
    is_classifier = kind == "classifier"
    if kind == "detector" and sample_out[0].shape[-1] != len(labels):
        raise ConversionError(f"coreml: the detector has {sample_out[0].shape[-1]} classes but {len(labels)} labels", "pass the matching --labels file")
    if kind == "plain":
        outputs = [ct.TensorType(name=n) for n in output_feature_names(job.model.output_names)]
    else:
        outputs = None if is_classifier else [ct.TensorType(name="raw_confidence"), ct.TensorType(name="raw_coordinates")]
    with captured_native_output("coremltools", (1, 2)):
        network = ct.convert(
            traced,
            inputs=[image],
            outputs=outputs,
            classifier_config=ct.ClassifierConfig(labels) if is_classifier else None,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32 if compute == "fp32" else ct.precision.FLOAT16,
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
        )
        path = job.workdir / f"network-{compute}.mlpackage"
        network.save(str(path))
    saved[compute] = str(path)
    return network


def _nms_model(network_spec: Any, labels: list[str], num_boxes: int, iou: float, confidence: float) -> Any:
    ct = coremltools_full()

    nms_spec = ct.proto.Model_pb2.Model()
    nms_spec.specificationVersion = 7
    sizes = [len(labels), 4]
    for i, final_name in enumerate(("confidence", "coordinates")):
        raw = network_spec.description.output[i]
        nms_spec.description.input.add().CopyFrom(raw)
        out = nms_spec.description.output.add()
        out.CopyFrom(raw)
        out.name = final_name
        for feature in (nms_spec.description.input[i], out):
            array = feature.type.multiArrayType
            del array.shape[:]
            array.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.DOUBLE
            lower = array.shapeRange.sizeRanges.add()
            lower.lowerBound, lower.upperBound = (num_boxes, num_boxes) if feature is nms_spec.description.input[i] else (0, -1)
            upper = array.shapeRange.sizeRanges.add()
            upper.lowerBound = upper.upperBound = sizes[i]
    nms = nms_spec.nonMaximumSuppression
    nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName = (o.name for o in network_spec.description.output[:2])
    nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName = "confidence", "coordinates"
    nms.iouThresholdInputFeatureName, nms.confidenceThresholdInputFeatureName = "iouThreshold", "confidenceThreshold"
    nms.iouThreshold, nms.confidenceThreshold = iou, confidence
    nms.pickTop.perClass = True
    nms.stringClassLabels.vector.extend(labels)
    return nms_spec


def _detector_pipeline(network: Any, labels: list[str], num_boxes: int, job: ConversionJob) -> Any:
    ct = coremltools_full()

    spec = network.get_spec()
    for i, columns in enumerate((len(labels), 4)):
        array = spec.description.output[i].type.multiArrayType
        del array.shape[:]
        array.shape.extend([num_boxes, columns])
    nms_spec = _nms_model(spec, labels, num_boxes, job.spec.validation.iou_threshold, job.spec.validation.score_threshold)
    pipeline = ct.models.pipeline.Pipeline(
        input_features=[
            ("image", ct.models.datatypes.Array(1)),
            ("iouThreshold", ct.models.datatypes.Double()),
            ("confidenceThreshold", ct.models.datatypes.Double()),
        ],
        output_features=["confidence", "coordinates"],
    )
    pipeline.add_model(spec)
    pipeline.add_model(nms_spec)
    description = pipeline.spec.description
    description.input[0].CopyFrom(spec.description.input[0])
    description.input[1].type.isOptional = True
    description.input[2].type.isOptional = True
    description.input[1].shortDescription = f"IoU threshold for NMS (default {job.spec.validation.iou_threshold})"
    description.input[2].shortDescription = f"Confidence threshold (default {job.spec.validation.score_threshold})"
    for i in range(2):
        description.output[i].CopyFrom(nms_spec.description.output[i])
    description.output[0].shortDescription = "Boxes x class confidence"
    description.output[1].shortDescription = "Boxes as normalized x, y (centre), width, height"
    pipeline.spec.specificationVersion = max(spec.specificationVersion, 7)
    with captured_native_output("coremltools", (1, 2)):
        return ct.models.MLModel(pipeline.spec, weights_dir=network.weights_dir)


def _set_metadata(mlmodel: Any, job: ConversionJob, labels: list[str]) -> None:
    from edgepack import __version__

    m = job.spec.model
    mlmodel.author = m.author or "unknown"
    mlmodel.license = m.license or "unspecified"
    mlmodel.short_description = m.description or f"{m.task} model converted by edgepack"
    mlmodel.version = m.version
    mlmodel.user_defined_metadata.update({
        "edgepack_version": __version__,
        "source_sha256": job.model.source_sha256,
        "task": m.task,
        "head": m.head if m.task == "detect" else "",
        "labels": json.dumps(labels, ensure_ascii=False),
        **({"com.apple.coreml.model.preview.type": "objectDetector" if m.task == "detect" else "imageClassifier"}
           if core_kind(m.task, m.head) != "plain" else {}),
    })


@FORMATS.register("coreml")
class CoreMLFormat(TargetFormat):
    info = FormatInfo(
        name="coreml",
        title="Core ML",
        precisions=("fp16", "fp32", "int8-weight"),
        default_precisions=("fp16", "int8-weight"),
        runtime="edgepack's numpy evaluator of the ML Program (coremltools' reader; not Apple's kernels)",
        platforms=("ios",),
        not_offered=tuple(NOT_OFFERED.items()),
    )

    def check_environment(self) -> None:
        require_modules("coreml", {"coremltools": "coremltools", "torch": "torch"})

    def convert(self, job: ConversionJob) -> ConvertedModel:
        ct = coremltools_full()

        labels = list(job.labels or [])
        kind = core_kind(job.spec.model.task, job.spec.model.head)
        if not labels and kind != "plain":
            raise ConversionError("coreml: the model has no labels", "pass --labels FILE (one class name per line)")
        scale, bias, _ = _image_scale_bias(job)
        c = job.model.input_shape[1]
        try:
            network = _network(job, labels, "fp32" if job.precision == "fp32" else "fp16")
            if job.precision == "int8-weight":
                config = ct.optimize.coreml.OptimizationConfig(
                    global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
                )
                with captured_native_output("coremltools", (1, 2)):
                    network = ct.optimize.coreml.linear_quantize_weights(network, config)
        except ConversionError:
            raise
        except Exception as e:
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ConversionError(f"coreml: coremltools could not convert the model: {first}", "drop coreml from --formats") from e
        num_boxes = 0 if kind != "detector" else int(_exported(job)[1][0].shape[0])
        mlmodel = _detector_pipeline(network, labels, num_boxes, job) if kind == "detector" else network
        _set_metadata(mlmodel, job, labels)
        out = job.workdir / "model.mlpackage"
        with captured_native_output("coremltools", (1, 2)):
            mlmodel.save(str(out))
        return ConvertedModel(
            files={"model": out},
            input_name="image",
            output_names={"classifier": ["classLabel"], "detector": ["confidence", "coordinates"]}.get(
                kind, output_feature_names(job.model.output_names)),
            details={
                "deployment_target": DEPLOYMENT_TARGET,
                "model_type": {"classifier": "classifier (ML Program)", "detector": "pipeline (ML Program + NonMaximumSuppression)"}.get(
                    kind, "ML Program (the model's own outputs)"),
                "image_input": {"scale": scale, "bias": bias, "color_layout": job.spec.model.color_order if c == 3 else "gray"},
                "weight_compression": "int8 linear symmetric (per channel)" if job.precision == "int8-weight" else None,
            },
        )

    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        return CoreMLRunner(files["model"], entry, threads)

    def static_checks(self, files: dict[str, Path], entry: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
        return static_checks(files["model"], entry, labels)

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        return describe_package(files["model"])


class CoreMLRunner:
    """A Core ML package run by edgepack's numpy evaluator (`edgepack.coreml_eval`); `run` returns the
    raw network output in the canonical layout of the ONNX reference, before any NMS:
    classifiers: the classify op's probabilities input; yolov8-style detectors: [1, 4 + C, N]
    rebuilt from raw_coordinates (normalized cx, cy, w, h, scaled back to input pixels) and
    raw_confidence; yolov5 detectors: the program's variable that holds the network output before
    the view splits it (objectness cannot be recovered from raw_confidence = obj * cls).
    The evaluator's speed says nothing about a device, so no latency is recorded, and its matrix
    products run on one BLAS thread whatever `threads` says: OpenBLAS's thread pool made it 3-5x
    slower on a busy 2-core machine (measured: 170 ms vs 770 ms per image of the built-in detector)."""

    records_latency = False
    blas_threads = 1

    def __init__(self, path: Path, entry: dict[str, Any], threads: int) -> None:
        from edgepack.coreml_eval import EvaluationError, UnsupportedOps, load_package

        pre = entry["preprocessing"]
        _, c, self.height, self.width = entry["inputs"][0]["shape"]
        self.mean = np.asarray(pre["mean"][:c], np.float32).reshape(1, c, 1, 1)
        self.std = np.asarray(pre["std"][:c], np.float32).reshape(1, c, 1, 1)
        self.shape = tuple(entry["outputs"][0]["shape"])
        self.task, self.head = entry["task"], entry.get("head")
        self.kind = core_kind(self.task, self.head)
        self.shapes = [tuple(o["shape"]) for o in entry["outputs"]]
        self.features = output_feature_names([o["name"] for o in entry["outputs"]])
        self.keep: tuple[str, ...] = ()
        self.broken: Exception | None = None
        try:
            self.package = load_package(path)
        except UnsupportedOps as e:
            raise RuntimeUnavailable(
                f"the ML Program uses {', '.join(e.ops)}, which edgepack's Core ML evaluator cannot run: structure checked, numbers not"
            ) from None
        except Exception as e:  # an unreadable package (damaged weight file, ...): every run fails with it
            self.broken = e
            return
        program = self.package.network
        self.input_name = next(iter(program.inputs))
        if self.kind == "plain":
            pass  # the program's outputs are the canonical outputs, by name
        elif self.task == "classify":
            step = next((s for s in program.steps if s.type == "classify"), None)
            if step is None:
                raise RuntimeUnavailable("the classifier program has no classify op: structure checked, numbers not")
            self.keep = (str(step.inputs["probabilities"]),)
        elif self.head == "yolov5":
            raw = _raw_output_variable(program, int(np.prod(self.shape)))
            if raw is None:
                raise RuntimeUnavailable("the network output before the Core ML view is not found in the program: numbers not checked")
            self.keep = (raw,)
        try:  # one trial run: an op parameter the evaluator does not cover is named here
            self.run(np.zeros((1, c, self.height, self.width), np.float32))
        except EvaluationError as e:
            raise RuntimeUnavailable(f"edgepack's Core ML evaluator cannot run {e}: structure checked, numbers not") from None
        except Exception:  # broken weights and the like: the validation run reports them
            pass

    def pixels(self, x: np.ndarray) -> np.ndarray:
        """The image Core ML receives for the canonical input x = (pixel - mean) / std, in 0..255.
        Not rounded to 8 bits: every other runtime is validated on the same float input, and a
        grayscale input averaged from RGB sits between 8-bit levels (rounding it moved a
        mini-Xception's probabilities by 0.025, which is the camera's doing, not the converter's)."""
        return np.clip(np.asarray(x, np.float32) * self.std + self.mean, 0, 255)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        from edgepack.coreml_eval import blas_threads

        if self.broken is not None:
            raise RuntimeError(f"coremltools cannot read the package: {self.broken}")
        with blas_threads(self.blas_threads):
            out = self.package.network.run({self.input_name: self.pixels(x)}, keep=self.keep)
        if self.kind == "plain":
            return [np.asarray(out[f], np.float32).reshape(shape) for f, shape in zip(self.features, self.shapes)]
        if self.keep:
            return [np.asarray(out[self.keep[0]], np.float32).reshape(self.shape)]
        confidence = np.asarray(out["raw_confidence"], np.float32)
        boxes = np.asarray(out["raw_coordinates"], np.float32) * np.float32([self.width, self.height, self.width, self.height])
        rows = np.concatenate([boxes, confidence], axis=1)  # N x (4 + C)
        return [(rows if self.shape[-1] == rows.shape[1] else rows.T).reshape(self.shape)]

    def final_outputs(self, x: np.ndarray, iou_threshold: float | None = None, confidence_threshold: float | None = None) -> dict[str, Any]:
        """What the whole package returns (for a detector: after its NonMaximumSuppression model)."""
        from edgepack.coreml_eval import blas_threads

        with blas_threads(self.blas_threads):
            return self.package.run_pipeline({self.input_name: self.pixels(x)}, iou_threshold, confidence_threshold)


def _raw_output_variable(program: Any, size: int) -> str | None:
    """The last variable of `size` elements that both program outputs derive from: the network
    output before the Core ML view splits it into confidences and coordinates."""
    producers = {name: (i, step) for i, step in enumerate(program.steps) for name in step.outputs}

    def ancestors(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current in seen or current not in producers:
                continue
            seen.add(current)
            for names in producers[current][1].inputs.values():
                todo.extend(names if isinstance(names, tuple) else [names])
        return seen

    first, second = (ancestors(o) for o in program.outputs[:2])
    shared = [n for n in first & second if n not in program.outputs]
    shapes = {n: producers[n][1].out_shapes[producers[n][1].outputs.index(n)] for n in shared}
    matching = [n for n in shared if shapes[n] is not None and int(np.prod(shapes[n])) == size]
    return max(matching, key=lambda n: producers[n][0]) if matching else None


def _program_ops(spec: Any) -> list[Any]:
    ops = []
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            ops.extend(block.operations)
    return ops


def _network_spec(spec: Any) -> Any:
    return spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec


def _classify_labels(network: Any) -> list[str]:
    """The class labels of an ML Program classifier: the `classes` input of its classify op,
    stored inline as a list of string scalars."""
    for op in _program_ops(network):
        if op.type == "classify":
            value = op.inputs["classes"].arguments[0].value.immediateValue
            return [item.immediateValue.tensor.strings.values[0] for item in value.list.values]
    return []


def describe_package(path: Path) -> dict[str, Any]:
    ct = coremltools_readers()

    spec = ct.utils.load_spec(str(path))
    d = spec.description
    network = _network_spec(spec)

    def feature(f: Any) -> dict[str, Any]:
        kind = f.type.WhichOneof("Type")
        record: dict[str, Any] = {"name": f.name, "type": kind, "optional": f.type.isOptional}
        if kind == "imageType":
            record.update(width=f.type.imageType.width, height=f.type.imageType.height,
                          color_space=ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(f.type.imageType.colorSpace))
        elif kind == "multiArrayType":
            record["shape"] = list(f.type.multiArrayType.shape)
        return record

    labels = list(spec.pipeline.models[1].nonMaximumSuppression.stringClassLabels.vector) if spec.WhichOneof("Type") == "pipeline" else _classify_labels(network)
    weights = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    ops = _program_ops(network)
    return {
        "type": spec.WhichOneof("Type"),
        "specification_version": spec.specificationVersion,
        "models": [m.WhichOneof("Type") for m in spec.pipeline.models] if spec.WhichOneof("Type") == "pipeline" else [spec.WhichOneof("Type")],
        "inputs": [feature(f) for f in d.input],
        "outputs": [feature(f) for f in d.output],
        "predicted_feature": d.predictedFeatureName or None,
        "labels": labels,
        "metadata": {
            "author": d.metadata.author, "license": d.metadata.license,
            "version": d.metadata.versionString, "description": d.metadata.shortDescription,
            "user_defined": dict(d.metadata.userDefined),
        },
        "weight_bytes": weights.stat().st_size if weights.is_file() else 0,
        "weight_storage": _weight_storage(ops),
        "compressed_weight_ops": sum(1 for op in ops if op.type in COMPRESSION_OPS),
        "nms": _nms_facts(spec),
    }


def _weight_storage(ops: list[Any]) -> dict[str, dict[str, int]]:
    """Tensors stored in the package's weight file, by data type: what compression really wrote."""
    ct = coremltools_readers()

    storage: dict[str, dict[str, int]] = {}
    for op in ops:
        for value in op.attributes.values():
            if value.WhichOneof("value") != "blobFileValue":
                continue
            tensor = value.type.tensorType
            dtype = ct.proto.MIL_pb2.DataType.Name(tensor.dataType)
            elements = int(np.prod([d.constant.size for d in tensor.dimensions])) if tensor.dimensions else 1
            record = storage.setdefault(dtype, {"tensors": 0, "elements": 0, "largest": 0})
            record["tensors"] += 1
            record["elements"] += elements
            record["largest"] = max(record["largest"], elements)
    return storage


def _nms_facts(spec: Any) -> dict[str, Any] | None:
    if spec.WhichOneof("Type") != "pipeline":
        return None
    nms = spec.pipeline.models[1].nonMaximumSuppression
    return {
        "confidence_input": nms.confidenceInputFeatureName, "coordinates_input": nms.coordinatesInputFeatureName,
        "iou_threshold": nms.iouThreshold, "confidence_threshold": nms.confidenceThreshold,
        "network_outputs": [o.name for o in spec.pipeline.models[0].description.output],
    }


def static_checks(path: Path, entry: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
    """What can be verified without Apple's runtime; each check: name, ok, detail."""
    facts = describe_package(path)
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": bool(ok), "detail": detail})

    image = facts["inputs"][0]
    _, _, h, w = entry["inputs"][0]["shape"]  # NCHW
    check("image input", image["type"] == "imageType" and (image["width"], image["height"]) == (w, h),
          f"{image['name']}: {image['type']} {image.get('width')}x{image.get('height')} {image.get('color_space', '')}")
    kind = core_kind(entry["task"], entry.get("head"))
    if kind != "plain":
        check("labels", facts["labels"] == labels, f"{len(facts['labels'])} labels in the model, {len(labels)} in labels.txt")
    meta = facts["metadata"]
    required = ("edgepack_version", "source_sha256", "task")
    check("metadata", all(meta["user_defined"].get(k) for k in required) and meta["author"] and meta["version"],
          f"author {meta['author']!r}, version {meta['version']!r}, user keys {sorted(meta['user_defined'])}")
    if kind == "plain":
        outputs = [o["name"] for o in facts["outputs"]]
        expected = output_feature_names([o["name"] for o in entry["outputs"]])
        check("outputs", outputs == expected, f"outputs {outputs}, expected {expected}")
    elif kind == "classifier":
        check("classifier", facts["predicted_feature"] == "classLabel", f"predicted feature {facts['predicted_feature']!r}")
    else:
        nms = facts["nms"] or {}
        outputs = [o["name"] for o in facts["outputs"]]
        optional = {i["name"] for i in facts["inputs"] if i["optional"]}
        wired = nms.get("network_outputs", [])[:2] == [nms.get("confidence_input"), nms.get("coordinates_input")]
        check("nms pipeline", facts["models"] == ["mlProgram", "nonMaximumSuppression"] and wired and outputs == ["confidence", "coordinates"]
              and {"iouThreshold", "confidenceThreshold"} <= optional,
              f"models {facts['models']}, outputs {outputs}, optional inputs {sorted(optional)}")
    storage = facts["weight_storage"]
    floats = {k: v for k, v in storage.items() if k.startswith("FLOAT")}
    shown = ", ".join(f"{k} {v['tensors']} tensors / {v['elements']} values" for k, v in storage.items()) or "no weight file"
    if entry["precision"] == "int8-weight":
        # coremltools leaves tensors of up to 2048 values uncompressed by design
        large_float = [k for k, v in floats.items() if v["largest"] > QUANTIZE_MIN_VALUES]
        ok = not large_float and (facts["compressed_weight_ops"] > 0 or all(v["largest"] <= QUANTIZE_MIN_VALUES for v in floats.values()))
    else:
        ok = set(floats) <= {"FLOAT16" if entry["precision"] == "fp16" else "FLOAT32"} and facts["compressed_weight_ops"] == 0
    check("weight storage", ok, f"{shown}; {facts['compressed_weight_ops']} compressed-weight ops")
    return checks
