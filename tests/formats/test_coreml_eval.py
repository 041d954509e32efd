"""The numpy evaluator of saved Core ML packages (`edgepack.coreml_eval`), checked against the real
things: PyTorch for the ops (small models converted by coremltools here), coremltools' own
decompression for compressed weights, the reference decoder for the NMS stage, and packages with
altered weights or ops the evaluator lacks."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import load_manifest
from edgepack.validate import detection, metrics

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


class VisionZoo(nn.Module):
    """Convolutions (strided, grouped, depthwise, dilated, same/custom/asymmetric padding,
    transposed), pooling, activations, normalizations, resizing, softmax, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.group = nn.Conv2d(8, 16, 3, padding="same", groups=2)
        self.asym = nn.Conv2d(16, 8, (3, 1), stride=(2, 1), padding=(1, 0))
        self.bn = nn.BatchNorm2d(16)
        self.prelu = nn.PReLU(16)
        self.up = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.gnorm = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 6)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        outs = []
        x = F.relu6(self.stem(x) * 3)
        x = x + F.hardswish(self.dw(x))
        x = F.leaky_relu(self.group(x), 0.1)
        x = self.prelu(self.bn(torch.sigmoid(x) * x + 0.25))  # batch_norm not folded into a conv
        outs.append(F.max_pool2d(x, 3, 2, 1))
        outs.append(F.avg_pool2d(x, 2, 2))
        outs.append(F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
        outs.append(F.avg_pool2d(x, 3, 2, 1, ceil_mode=True))
        outs.append(F.max_pool2d(x, 2, 2, ceil_mode=True))
        outs.append(F.adaptive_avg_pool2d(x, 1))
        outs.append(F.gelu(self.asym(x)))
        y = F.silu(self.up(x))
        outs.append(self.up2(y))
        y = self.inorm(y) + self.gnorm(y)
        # (gelu(approximate="tanh") is left out: coremltools 9 converts it to the exact gelu, a
        # 5e-4 difference the evaluator reports faithfully)
        outs.append(torch.tanh(y) + F.softplus(y) - F.elu(y) + F.hardsigmoid(y))
        outs.append(F.interpolate(y, scale_factor=2, mode="nearest"))
        outs.append(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False))
        outs.append(F.interpolate(y, size=(20, 24), mode="bilinear", align_corners=True))
        outs.append(F.interpolate(y, size=(20, 24), mode="bilinear", align_corners=False))
        outs.append(F.interpolate(y, size=(12, 40), mode="nearest"))
        outs.append(torch.softmax(self.fc(self.ln(y.mean(dim=(2, 3)))), dim=1))
        outs.append(F.pixel_shuffle(y, 2))
        return torch.cat([o.reshape(1, -1) for o in outs], dim=1)


class TensorZoo(nn.Module):
    """Elementwise, reductions, slicing, gather, reshape/transpose/squeeze/expand, tile, pad
    (constant/reflect/replicate), matmul, concat/split/stack, select, reverse, rounding."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(12, 12)
        self.conv = nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        outs = []
        a, b = torch.split(x, [1, 3], dim=1)
        c1, c2 = torch.chunk(x, 2, dim=3)
        outs.append(torch.maximum(a, b[:, :1]))
        outs.append(torch.minimum(c1, c2) - c2)
        outs.append(torch.pow(torch.abs(x) + 1, 1.5) / (x * x + 1) + torch.sqrt(torch.abs(x)) + torch.exp(-x * x))
        outs.append(torch.clamp(x, -0.5, 0.7) * 2)
        outs.append(x[:, :, 1:-1:2, ::3])
        outs.append(x[:, 2])
        outs.append(torch.index_select(x, 3, torch.tensor([5, 0, 7, 7])))
        outs.append(x.permute(0, 2, 3, 1).reshape(1, 144, 4))
        outs.append(x.sum(dim=1, keepdim=True) + x.amax(dim=2, keepdim=True) + x.amin(dim=3, keepdim=True))
        outs.append(x.mean(dim=(1, 2)).unsqueeze(0).squeeze(1))
        outs.append(x.repeat(1, 2, 1, 3))
        outs.append(F.pad(x, (1, 2, 3, 0)))
        outs.append(F.pad(x, (2, 2, 1, 1), mode="reflect"))
        outs.append(F.pad(x, (1, 0, 0, 2), mode="replicate"))
        outs.append(self.conv(x))
        m = x.reshape(1, 4, 144)
        outs.append(torch.matmul(m, m.transpose(1, 2)) / 144)
        outs.append(torch.bmm(self.proj(x[0]), x[0].transpose(1, 2)))
        outs.append(torch.softmax(x, dim=-1) + torch.log_softmax(x, dim=1))
        outs.append(torch.cat([x, -x], dim=2))
        outs.append(torch.stack([x[:, 0], x[:, 1]], dim=1))
        outs.append(torch.where(x > 0.1, x, 0.1 * x))
        outs.append(torch.flip(x, dims=[3]))
        outs.append((x * 4).floor() + (x * 3).ceil() + torch.round(x * 5))
        return torch.cat([o.reshape(1, -1) for o in outs], dim=1)


class SmallNet(nn.Module):
    """Weights big enough for every compression mode (group sizes, blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 8)

    def forward(self, x):
        return self.fc(F.relu(self.b(F.relu(self.a(x)))).mean(dim=(2, 3)))


def _convert(model: nn.Module, x: torch.Tensor, precision: str, path, target: str = "iOS16"):
    import coremltools as ct

    with torch.no_grad():
        exported = torch.export.export(model, (x,)).run_decompositions({})
    mlmodel = ct.convert(
        exported, inputs=[ct.TensorType(name="x", shape=tuple(x.shape))], convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        minimum_deployment_target=getattr(ct.target, target),
    )
    mlmodel.save(str(path))
    return mlmodel


def _evaluate(path, x: torch.Tensor):
    from edgepack.coreml_eval import load_package

    package = load_package(path)
    (out,) = package.network.run({"x": x.numpy()}).values()
    return package, np.asarray(out, np.float32)


VISION_OPS = {"conv", "conv_transpose", "max_pool", "avg_pool", "batch_norm", "instance_norm", "layer_norm", "relu6",
              "leaky_relu", "silu", "gelu", "elu", "softplus", "tanh", "sigmoid_hard", "thresholded_relu", "linear",
              "softmax", "reduce_mean", "upsample_bilinear", "upsample_nearest_neighbor", "pixel_shuffle", "crop", "concat"}
TENSOR_OPS = {"split", "slice_by_index", "gather", "transpose", "reshape", "squeeze", "expand_dims", "tile", "pad", "matmul",
              "maximum", "minimum", "pow", "real_div", "sqrt", "exp", "clip", "reduce_sum", "reduce_max", "reduce_min",
              "stack", "select", "reverse", "floor", "ceil", "round", "log", "greater"}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_vision_ops_agree_with_torch(tmp_path, precision):
    torch.manual_seed(0)
    model, x = VisionZoo().eval(), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = model(x).numpy()
    _convert(model, x, precision, tmp_path / "zoo.mlpackage")
    package, got = _evaluate(tmp_path / "zoo.mlpackage", x)
    assert VISION_OPS <= set(package.network.op_types), sorted(VISION_OPS - set(package.network.op_types))
    if precision == "fp32":
        assert metrics.max_abs(got, want) < 1e-4 * np.abs(want).max()
    else:
        assert all(np.dtype(np.float16) in s.out_dtypes for s in package.network.steps if s.type == "conv")
        assert metrics.cosine(got, want) > 0.9999
        assert metrics.max_abs(got, want) > 1e-4  # really computed in fp16


def test_tensor_ops_agree_with_torch(tmp_path):
    torch.manual_seed(0)
    model, x = TensorZoo().eval(), torch.randn(1, 4, 12, 12)
    with torch.no_grad():
        want = model(x).numpy()
    _convert(model, x, "fp32", tmp_path / "zoo.mlpackage")
    package, got = _evaluate(tmp_path / "zoo.mlpackage", x)
    assert TENSOR_OPS <= set(package.network.op_types), sorted(TENSOR_OPS - set(package.network.op_types))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_compressed_weights_decompress_as_coremltools_does(tmp_path):
    """Every constexpr op of iOS16 and iOS18 compression, against coremltools' own materialization
    of the same op, and the whole compressed program against the uncompressed one."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    torch.manual_seed(0)
    model, x = SmallNet().eval(), torch.randn(1, 8, 10, 10)
    bases = {t: _convert(model, x, "fp16", tmp_path / f"base-{t}.mlpackage", t) for t in ("iOS16", "iOS18")}
    _, plain = _evaluate(tmp_path / "base-iOS16.mlpackage", x)

    def cfg(op_config):
        return cto.OptimizationConfig(global_config=op_config)

    pruner = cfg(cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=64))
    pruned = cto.prune_weights(bases["iOS18"], pruner)
    variants = {
        "int8 per channel (iOS16)": cto.linear_quantize_weights(bases["iOS16"], cfg(cto.OpLinearQuantizerConfig(dtype="int8", weight_threshold=64))),
        "uint8 affine (iOS16)": cto.linear_quantize_weights(bases["iOS16"], cfg(cto.OpLinearQuantizerConfig(mode="linear", dtype="uint8", weight_threshold=64))),
        "lut 4 bit (iOS16)": cto.palettize_weights(bases["iOS16"], cfg(cto.OpPalettizerConfig(mode="uniform", nbits=4, weight_threshold=64))),
        "sparse (iOS16)": cto.prune_weights(bases["iOS16"], pruner),
        "int4 per block (iOS18)": cto.linear_quantize_weights(bases["iOS18"], cfg(cto.OpLinearQuantizerConfig(dtype="int4", granularity="per_block", block_size=4, weight_threshold=64))),
        "lut 3 bit per channel group (iOS18)": cto.palettize_weights(bases["iOS18"], cfg(cto.OpPalettizerConfig(mode="uniform", nbits=3, granularity="per_grouped_channel", group_size=4, weight_threshold=64))),
        "sparse + lut (iOS18)": cto.palettize_weights(pruned, cfg(cto.OpPalettizerConfig(mode="uniform", nbits=4, weight_threshold=64)), joint_compression=True),
        "sparse + int8 (iOS18)": cto.linear_quantize_weights(pruned, cfg(cto.OpLinearQuantizerConfig(dtype="int8", weight_threshold=64)), joint_compression=True),
    }
    seen = set()
    for name, mlmodel in variants.items():
        path = tmp_path / f"{len(seen)}.mlpackage"
        mlmodel.save(str(path))
        package, got = _evaluate(path, x)
        spec = ct.utils.load_spec(str(path))
        reference = load_program(spec, spec.specificationVersion, str(path / "Data" / "com.apple.CoreML" / "weights"))
        constexpr = [op for op in reference.functions["main"].operations if op.op_type.startswith("constexpr_")]
        assert constexpr, name
        for op in constexpr:
            seen.add(op.op_type)
            theirs = op.materialized_val_inference()  # coremltools' own decompression
            for var, value in zip(op.outputs, theirs if isinstance(theirs, tuple) else (theirs,)):
                mine = np.asarray(package.network.constants[var.name], np.float32)
                np.testing.assert_array_equal(mine, np.asarray(value, np.float32), err_msg=f"{name}: {op.op_type}")
        floor = 0.9 if "sparse" in name else 0.98  # half of the weights pruned away changes the answer
        assert metrics.cosine(got, plain) > floor, name
    assert seen == {"constexpr_affine_dequantize", "constexpr_lut_to_dense", "constexpr_sparse_to_dense", "constexpr_blockwise_shift_scale",
                    "constexpr_lut_to_sparse", "constexpr_sparse_blockwise_shift_scale"}


def _arts(out):
    return {e["id"]: e for e in load_manifest(out)["artifacts"]}


def _runner(out, artifact_id, threads=1):
    from edgepack.formats import FORMATS
    from edgepack.manifest import artifact_files

    entry = _arts(out)[artifact_id]
    return FORMATS.get("coreml")().open_runner(artifact_files(out, entry), entry, threads)


def test_detector_nms_stage_keeps_the_reference_decoders_boxes(coreml_detector_out):
    """The pipeline's NonMaximumSuppression model, evaluated per Core ML's spec, keeps the boxes
    the reference decoder keeps from the same raw network output, and agrees with ONNX Runtime's."""
    manifest = load_manifest(coreml_detector_out)
    post, labels = manifest["postprocessing"], manifest["model"]["labels"]
    runner = _runner(coreml_detector_out, "coreml-fp16")
    assert runner.package.nms.per_class and runner.package.nms.iou_threshold == post["iou_threshold"]
    inputs = np.load(coreml_detector_out / "validation" / "inputs.npz")["inputs"]
    reference = np.load(coreml_detector_out / "validation" / "reference.npz")["output0"]
    _, _, h, w = manifest["preprocessing"]["input_shape"]
    found, from_reference = [], []
    for x, ref in zip(inputs, reference):
        raw = runner.run(x)[0]
        # the NMS model's output size is unbounded (shape range 0..-1): no max_det cap here either
        expected = detection.decode(raw, "yolov8", post["score_threshold"], post["iou_threshold"], max_det=10**6, num_classes=len(labels))
        final = runner.final_outputs(x)
        confidence, coordinates = final["confidence"], final["coordinates"]
        cxcywh = coordinates * [w, h, w, h]
        boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        got = detection.Detections(boxes, confidence.max(axis=1), confidence.argmax(axis=1))
        assert len(got) == len(expected)
        np.testing.assert_array_equal(got.classes, expected.classes)
        np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-6)
        found.append(got)
        from_reference.append(detection.decode(ref, "yolov8", post["score_threshold"], post["iou_threshold"], max_det=10**6, num_classes=len(labels)))
    assert sum(len(d) for d in found) >= 8
    assert detection.f1_agreement(from_reference, found) >= 0.95
    # a runtime threshold input changes the result as the spec says
    strict = runner.final_outputs(inputs[0], confidence_threshold=0.99)
    assert len(strict["confidence"]) <= len(found[0])


def test_classifier_label_is_the_reference_top1(coreml_classifier_out):
    runner = _runner(coreml_classifier_out, "coreml-fp16")
    labels = load_manifest(coreml_classifier_out)["model"]["labels"]
    inputs = np.load(coreml_classifier_out / "validation" / "inputs.npz")["inputs"]
    reference = next(iter(np.load(coreml_classifier_out / "validation" / "reference.npz").values()))
    for x, ref in zip(inputs, reference):
        final = runner.final_outputs(x)
        assert final["classLabel"] == labels[int(np.argmax(ref))]
        assert metrics.cosine(runner.run(x)[0], ref) > 0.999


def _coreml_only_copy(out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"] = [e for e in manifest["artifacts"] if e["format"] == "coreml"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _largest_fp16_blob(package) -> tuple[int, int]:
    """(data offset, byte count) of the package's largest fp16 weight, from the program's blob
    references and the blob file's per-blob metadata (sentinel, dtype, size, data offset)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(package))
    network = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
    best = (0, 0)
    blob = (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").read_bytes()
    for function in network.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                for value in op.attributes.values():
                    if value.WhichOneof("value") == "blobFileValue" and value.type.tensorType.dataType == ct.proto.MIL_pb2.FLOAT16:
                        sentinel, _, size, offset = struct.unpack_from("<IIQQ", blob, value.blobFileValue.offset)
                        assert sentinel == 0xDEADBEEF
                        best = max(best, (size, offset))
    return best[1], best[0]


@pytest.mark.parametrize("damage", ["negate", "flip bytes"])
def test_an_altered_weight_in_the_package_is_caught(coreml_detector_out, tmp_path, damage):
    from edgepack.validate.rerun import revalidate

    copy = _coreml_only_copy(coreml_detector_out, tmp_path)
    package = copy / _arts(copy)["coreml-fp16"]["files"]["model"]
    weights = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    offset, size = _largest_fp16_blob(package)
    data = bytearray(weights.read_bytes())
    region = np.frombuffer(data, np.uint8, count=size, offset=offset).copy()
    if damage == "negate":  # the sign bit of every fp16 value of one tensor
        region[1::2] ^= 0x80
    else:
        region[size // 2 : size // 2 + 16] ^= 0x5A
    data[offset : offset + size] = region.tobytes()
    weights.write_bytes(bytes(data))
    arts = {e["id"]: e for e in revalidate(copy, threads=1, latency_runs=1)["artifacts"]}
    damaged, intact = arts["coreml-fp16"]["validation"], arts["coreml-int8-weight"]["validation"]
    assert intact["status"] == "ok", intact["reasons"]
    assert damaged["status"] in ("degraded", "failed"), damaged
    assert all(c["ok"] for c in damaged["static_checks"])  # structurally the package is fine: only numbers catch it
    assert damaged.get("cosine", 0.0) < intact["cosine"]


def test_an_op_the_evaluator_lacks_leaves_the_artifact_unverified_naming_it(coreml_detector_out, tmp_path, monkeypatch):
    from edgepack.coreml_eval import OPS
    from edgepack.formats.base import RuntimeUnavailable
    from edgepack.validate.rerun import revalidate

    monkeypatch.delitem(OPS, "silu")
    with pytest.raises(RuntimeUnavailable, match="silu"):
        _runner(coreml_detector_out, "coreml-fp16")
    arts = {e["id"]: e for e in revalidate(_coreml_only_copy(coreml_detector_out, tmp_path), threads=1, latency_runs=1)["artifacts"]}
    for entry in arts.values():
        v = entry["validation"]
        assert entry["status"] == "unverified-on-this-host" and "cosine" not in v
        assert "silu" in v["reasons"][0] and all(c["ok"] for c in v["static_checks"])


def test_an_op_parameter_the_evaluator_lacks_is_named_too(coreml_detector_out, monkeypatch):
    from edgepack.coreml_eval import OPS
    from edgepack.formats.base import RuntimeUnavailable

    def unsupported(args):
        raise ValueError("scale factor 2.0 not covered")

    monkeypatch.setitem(OPS, "upsample_nearest_neighbor", unsupported)
    with pytest.raises(RuntimeUnavailable, match="upsample_nearest_neighbor .*scale factor 2.0 not covered"):
        _runner(coreml_detector_out, "coreml-fp16")


def test_coreml_refuses_int8_by_name():
    from edgepack.errors import SpecError
    from edgepack.spec import load_spec

    with pytest.raises(SpecError, match=r"coreml does not build precision 'int8'.*macOS.*iOS 17.*fp16, fp32, int8-weight"):
        load_spec(None, {"formats": "coreml,tflite", "precisions": "int8"})
    spec = load_spec(None, {"formats": "coreml,tflite", "precisions": "fp16,int8"})
    assert spec.targets == {"coreml": ["fp16"], "tflite": ["fp16", "int8"]}


def test_one_export_and_one_conversion_per_compute_precision(tmp_path, monkeypatch):
    """int8-weight quantizes the fp16 program of the same build; fp32 and fp16 share one torch.export."""
    import coremltools as ct

    import edgepack
    from models import tiny_classifier

    calls = {"export": 0, "convert": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(torch.export, "export", counted("export", torch.export.export))
    monkeypatch.setattr(ct, "convert", counted("convert", ct.convert))
    manifest = edgepack.convert(tiny_classifier(), torch.rand(1, 3, 64, 64), task="classify", output=str(tmp_path / "out"),
                                formats="coreml", precisions="int8-weight,fp16,fp32")
    assert calls == {"export": 1, "convert": 2}
    arts = {e["id"]: e for e in manifest["artifacts"]}
    assert {a: arts[a]["status"] for a in arts} == {"coreml-int8-weight": "ok", "coreml-fp16": "ok", "coreml-fp32": "ok"}
    assert arts["coreml-fp32"]["validation"]["cosine"] >= 0.9999 and "latency" not in arts["coreml-fp32"]["validation"]


class TinyYoloV5(nn.Module):
    """A yolov5-layout head: [1, N, 5 + C] (cx, cy, w, h in pixels, objectness, class scores)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.SiLU())
        self.head = nn.Conv2d(16, 5 + classes, 1)

    def forward(self, x):
        features = self.head(self.body(x))  # 1 x (5 + C) x 16 x 16: one row per grid cell, stride 4
        y = features.flatten(2).transpose(1, 2).sigmoid()
        gy, gx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        grid = torch.stack([gx.flatten(), gy.flatten()], dim=1).unsqueeze(0)
        # decoded like YOLOv5: centres spread over the image (grid cell + offset), sizes in pixels
        return torch.cat([(grid + y[..., :2]) * 4, y[..., 2:4] * 24, y[..., 4:]], dim=2)


def test_yolov5_head_is_compared_before_the_view(tmp_path):
    """For a yolov5 head the runner reads the program's variable holding [1, N, 5 + C] (objectness
    and class scores apart), and the NMS stage keeps the boxes the yolov5 decoder keeps."""
    import edgepack

    config = tmp_path / "edgepack.yaml"
    config.write_text("model:\n  task: detect\n  head: yolov5\n")
    torch.manual_seed(3)
    manifest = edgepack.convert(TinyYoloV5().eval(), torch.rand(1, 3, 64, 64), config=str(config), output=str(tmp_path / "out"),
                                formats="coreml", precisions="fp32")
    entry = manifest["artifacts"][0]
    v = entry["validation"]
    assert entry["status"] == "ok" and v["cosine"] > 0.99999 and v["task_metric"] == "box_f1_iou50", v["reasons"]
    runner = _runner(tmp_path / "out", "coreml-fp32")
    x = np.load(tmp_path / "out" / "validation" / "inputs.npz")["inputs"][0]
    raw = runner.run(x)[0]
    assert raw.shape == (1, 256, 8) and runner.keep  # read from inside the program, not rebuilt from the outputs
    post = manifest["postprocessing"]
    expected = detection.decode(raw, "yolov5", post["score_threshold"], post["iou_threshold"], max_det=10**6, num_classes=3)
    final = runner.final_outputs(x)
    assert len(expected) > 0 and len(final["confidence"]) == len(expected)
    np.testing.assert_allclose(final["confidence"].max(axis=1), expected.scores, atol=1e-5)


def test_reading_skips_the_frameworks_and_converting_afterwards_still_works(coreml_detector_out, onnx_detector, detector_labels, tmp_path):
    """`validate` reads packages without importing TensorFlow/PyTorch (coremltools' import of them
    is most of a Core ML validation's time); a conversion later in the same process still gets
    coremltools' PyTorch frontend."""
    import subprocess
    import sys

    copy = _coreml_only_copy(coreml_detector_out, tmp_path)
    code = (
        "import sys, edgepack\n"
        f"m = edgepack.revalidate({str(copy)!r})\n"
        "assert all(e['status'] == 'ok' for e in m['artifacts']), [(e['id'], e['status']) for e in m['artifacts']]\n"
        "assert not {'torch', 'tensorflow', 'executorch'} & set(sys.modules), sorted({'torch', 'tensorflow', 'executorch'} & set(sys.modules))\n"
        f"m = edgepack.convert({str(onnx_detector)!r}, formats=['coreml'], precisions=['fp16'], labels={str(detector_labels)!r},"
        f" output={str(tmp_path / 'again')!r})\n"
        "assert [(e['id'], e['status']) for e in m['artifacts']] == [('coreml-fp16', 'ok')], m['artifacts']\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


def test_channel_prelu_is_rewritten_for_coremltools_without_touching_the_users_module():
    """coremltools 9 refuses a per-channel PReLU on rank-2 inputs (MTCNN's ONet after its Linear
    layer); the Core ML path converts a copy where it is relu(x) - a * relu(-x)."""
    from edgepack.formats.coreml import _without_channel_prelu

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.PReLU(8), nn.Linear(8, 2))
    with torch.no_grad():
        net[1].weight.uniform_(-0.5, 0.5)
        net[4].weight.uniform_(-0.5, 0.5)
    rewritten = _without_channel_prelu(net)
    assert isinstance(net[1], nn.PReLU) and isinstance(net[4], nn.PReLU)  # the user's module is unchanged
    assert not any(isinstance(m, nn.PReLU) for m in rewritten.modules())
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(rewritten(x), net(x), atol=1e-6)
    single = nn.Sequential(nn.Linear(4, 4), nn.PReLU())
    assert _without_channel_prelu(single) is single  # one shared alpha converts as it is


def test_fast_half_casts_give_numpys_bits():
    """`as_dtype` takes torch's vectorised float16 casts when torch is loaded: every float32 bit
    pattern class (ties, subnormals, overflow to inf, NaN, signed zeros) must round exactly as numpy's
    cast does, and back."""
    from edgepack.coreml_eval.ops import as_dtype

    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 65504.0, 65519.99, 65520.0, 1e9, 6.1e-5, 6e-8, 3e-8, 2.98e-8,
                         1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, -(1.0 + 2.0**-11)], np.float32)
    single = np.concatenate([bits.view(np.float32), specials])
    single = single[~np.isnan(single)]  # NaN payloads may differ; NaN-ness must not (below)
    half = as_dtype(single, np.float16)
    assert half.dtype == np.float16 and np.array_equal(half.view(np.uint16), single.astype(np.float16).view(np.uint16))
    assert np.isnan(as_dtype(np.full(8192, np.nan, np.float32), np.float16)).all()
    every_half = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    widened = as_dtype(every_half, np.float32)
    expected = every_half.astype(np.float32)
    assert widened.dtype == np.float32 and np.array_equal(widened, expected, equal_nan=True)
    assert np.array_equal(np.signbit(widened), np.signbit(expected))


def test_evaluator_thread_limit_covers_openblas_and_torch():
    """The evaluator's casts run through torch: its intra-op pool is limited with OpenBLAS's inside
    `blas_threads` and restored after (two spinning torch threads halved its speed on a shared core)."""
    import torch

    from edgepack.coreml_eval.threads import _openblas, blas_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with blas_threads(1):
            assert torch.get_num_threads() == 1
            calls = _openblas()
            assert calls is None or int(calls[1]()) == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
