"""classify, segment (instance masks, dense maps), pose, sequence (CTC), tensor: binding to the
right output, what the reference says, agreement with known answers, and where each is refused.
Real outputs: rapidocr's PP-OCRv4 text-detection map, CTC recognizer and direction classifier,
captcha-whisperer's time-major CRNN (recorded in data/real_outputs.npz, see real_models.py)."""

import math

import numpy as np
import pytest
from real_models import DATA
from validate_helpers import bound, validate

from edgepack.errors import SpecError
from edgepack.validate.tasks import HeadMismatch, TaskSpec, agreement, app_support, bind, dataset_support, results, to_json
from edgepack.validate.tasks.classify import classifier_output
from edgepack.validate.tasks.pose import COCO_SIGMAS


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in np.load(DATA).items()}


# --- classify -----------------------------------------------------------------------------

def test_classifier_probabilities_or_logits(real):
    probs = real["cls"]
    task = bound("classify", None, [probs])
    assert task.fact("classifier_output") == "probabilities" and task.manifest_fields()["classifier_output"] == "probabilities"
    assert bound("classify", None, [np.log(probs)]).fact("classifier_output") == "logits"
    assert classifier_output(probs * 1.01) == "logits"  # rows sum to 1.01: not probabilities
    assert classifier_output(np.array([[[0.2, 0.3, 0.5]], [[0.1, 0.1, 0.8]]])) == "probabilities"
    assert classifier_output(np.array([[[0.5, 0.5]], [[1.2, -0.2]]])) == "logits"


def test_classify_reads_its_own_output_not_output_0(real):
    probs = real["cls"]
    mask = np.random.default_rng(0).random((len(probs), 1, 1, 8, 8)).astype(np.float32)
    task = bind(TaskSpec("classify", None), ["mask", "prob"], [mask.shape[1:], probs.shape[1:]])
    assert task.output == "prob" and task.main_index == 1
    assert results(task, [mask, probs]) == [int(np.argmax(p)) for p in probs]
    flipped = probs[:, :, ::-1].copy()
    record = validate(task, [mask, probs], [mask, flipped])
    assert record["task_metric"] == "top1_agreement" and record["task_agreement"] == 0.0 and record["status"] == "degraded"


def test_classify_on_a_probability_map_is_refused_with_a_suggestion(real):
    """The "265000 classes" symptom: a text-detection map read as class scores."""
    with pytest.raises(HeadMismatch) as e:
        bound("classify", None, [real["text_map"]], names=["sigmoid_0.tmp_0"])
    message = str(e.value)
    assert "task 'classify' needs an output [1, C] of class scores; outputs: sigmoid_0.tmp_0 [1,1,160,256]" in message
    assert "pick --task segment --head map / --task tensor" in message


def test_named_output_must_exist_and_ambiguous_outputs_are_refused():
    shapes = [(1, 7600, 10), (1, 1900, 10), (1, 7600, 32)]
    with pytest.raises(HeadMismatch, match=r"fits several outputs \(s8 \[1,7600,10\], s16 \[1,1900,10\], d8 \[1,7600,32\]\): name the one"):
        bind(TaskSpec("detect", "yolov5"), ["s8", "s16", "d8"], shapes)
    assert bind(TaskSpec("detect", "yolov5", output="s16"), ["s8", "s16", "d8"], shapes).output == "s16"
    with pytest.raises(HeadMismatch, match="task_output 'nope' is not an output of the model"):
        bind(TaskSpec("detect", "yolov5", output="nope"), ["s8", "s16", "d8"], shapes)


# --- segment: dense maps ------------------------------------------------------------------

def test_map_agreement_known_answer():
    ref = np.zeros((4, 1, 1, 40, 40), np.float32)
    ref[:, :, :, 10:20, 10:20] = 0.9
    shifted = np.roll(ref, 5, axis=-1)  # overlap 10 x 5 of two 10 x 10 squares: IoU 50 / 150
    task = bound("segment", "map", [ref], input_shape=(1, 3, 160, 160))
    result = agreement(task, results(task, [ref]), results(task, [shifted]))
    assert result.metric == "mask_iou" and result.value == pytest.approx(1 / 3)
    assert result.details["pixel_agreement"] == pytest.approx(1 - 100 / 1600)
    # the threshold is the spec's: at 0.95 the reference has no foreground at all
    strict = bound("segment", "map", [ref], input_shape=(1, 3, 160, 160), map_threshold=0.95)
    none = agreement(strict, results(strict, [ref]), results(strict, [ref]))
    assert none.value is None and none.note.startswith("not measurable: the reference map has foreground on 0 of 4 images")


def test_map_agreement_on_a_real_text_detection_map(real):
    text = real["text_map"]
    task = bound("segment", "map", [text], names=["sigmoid_0.tmp_0"], input_shape=(1, 3, 160, 256))
    assert task.fact("map_values") == "probabilities" and task.fact("map_channels") == 1
    fp16 = text.astype(np.float16).astype(np.float32)
    record = validate(task, [text], [fp16], "fp16")
    assert record["status"] == "ok" and record["task_metric"] == "mask_iou" and record["task_agreement"] > 0.99
    shifted = np.roll(text, 3, axis=-2)  # text lines 3 pixels lower: the maps overlap only in part
    record = validate(task, [text], [shifted], "fp32")
    assert 0.2 < record["task_agreement"] < 0.9 and record["status"] == "degraded"
    faint = text * 0.25  # every probability under the 0.3 threshold
    assert validate(task, [text], [faint], "fp32")["task_agreement"] == 0.0
    assert to_json(task, results(task, [text]))[0]["foreground_fraction"] > 0.05


def test_map_of_logits_is_thresholded_at_the_same_probability(real):
    p = np.clip(real["text_map"], 1e-6, 1 - 1e-6)
    logits = np.log(p / (1 - p))
    task = bound("segment", "map", [logits], input_shape=(1, 3, 160, 256))
    assert task.fact("map_values") == "logits"
    assert all(np.array_equal(a, b) for a, b in zip(results(task, [logits]), results(bound("segment", "map", [p]), [p])))


def test_multiclass_map_uses_argmax_and_mean_iou():
    ref = np.zeros((3, 1, 3, 20, 20), np.float32)
    ref[:, :, 0] = 1.0
    ref[:, :, 1, :10, :10] = 2.0  # class 1 in the top-left quarter
    cand = ref.copy()
    cand[:, :, 1, :10, 5:10] = 0.0  # half of class 1 becomes background
    task = bound("segment", "map", [ref], input_shape=(1, 3, 80, 80))
    result = agreement(task, results(task, [ref]), results(task, [cand]))
    background = (400 - 100) / (400 - 50)
    assert result.metric == "mean_iou" and result.value == pytest.approx((background + 0.5) / 2)


# --- segment: YOLOv8-seg instance masks ---------------------------------------------------

def seg_outputs(shift: float = 0.0, images: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """[1, 4 + 1 + 2, 8] with two objects and prototypes [1, 2, 16, 16] for a 64x64 input:
    prototype 0 is the left half, prototype 1 the right half."""
    out = np.zeros((images, 1, 7, 8), np.float32)
    out[:, 0, :4, :] = np.array([32, 32, 8, 8], np.float32)[:, None] + np.arange(8)[None, :]  # filler rows
    out[:, 0, :4, 0] = [20, 32, 32, 48]  # object A: x 4..36, y 8..56
    out[:, 0, :4, 1] = [44, 32, 24, 48]  # object B: x 32..56
    out[:, 0, 4, :2] = 0.9
    out[:, 0, 5:7, 0] = [8.0, -8.0]  # A uses the left prototype
    out[:, 0, 5:7, 1] = [-8.0 + shift, 8.0 - shift]  # B the right one (or, shifted, the left)
    protos = np.full((images, 1, 2, 16, 16), -1.0, np.float32)
    protos[:, 0, 0, :, :8] = 1.0
    protos[:, 0, 1, :, 8:] = 1.0
    return out, protos


def test_instance_masks_and_mask_agreement_known_answer():
    out, protos = seg_outputs()
    task = bound("segment", "yolov8", [out, protos], names=["output0", "output1"], input_shape=(1, 3, 64, 64))
    assert task.output == "output0" and task.fact("protos_output") == "output1" and task.fact("mask_coefficients") == 2
    ref = results(task, [out, protos])
    assert len(ref[0]) == 2
    a = ref[0].masks[int(np.argmin(ref[0].boxes[:, 0]))]
    # object A: box x 4..36 -> prototype columns 1..8, restricted to the left half (columns 0..7)
    assert a[2:14, 1:8].all() and not a[:, 8:].any() and a.sum() == 12 * 7
    same = agreement(task, ref, results(task, [out, protos]))
    assert same.metric == "mask_f1_iou50" and same.value == 1.0 and same.details["mean_mask_iou"] == 1.0
    # B's mask moves to the other prototype: its box still matches but its mask does not -> 1 of 2 per image
    moved, _ = seg_outputs(shift=16.0)
    result = agreement(task, ref, results(task, [moved, protos]))
    assert result.value == pytest.approx(0.5)
    record = validate(task, [out, protos], [moved, protos])
    parts = [p["part"] for p in record["outputs"][0]["parts"]]
    assert parts == ["boxes", "scores", "mask_coefficients"] and "parts" not in record["outputs"][1]


def test_segment_needs_a_prototype_output():
    out, _ = seg_outputs()
    with pytest.raises(HeadMismatch, match="needs one prototype output"):
        bind(TaskSpec("segment", "yolov8"), ["output0"], [out.shape[1:]])


# --- pose ---------------------------------------------------------------------------------

def pose_outputs(images: int = 3, dx: float = 0.0) -> np.ndarray:
    """[1, 4 + 1 + 17 * 3, 6]: two people per image on a 320x320 input, keypoints moved by dx."""
    rng = np.random.default_rng(1)
    out = np.zeros((images, 1, 56, 6), np.float32)
    out[:, 0, :4, :] = np.array([160, 160, 10, 10], np.float32)[:, None] + np.arange(6)[None, :]
    out[:, 0, :4, 0] = [80, 120, 60, 160]
    out[:, 0, :4, 1] = [220, 150, 80, 200]
    out[:, 0, 4, :2] = [0.95, 0.8]
    for j, (x, y) in enumerate([(80, 120), (220, 150)]):
        kpts = np.stack([x + rng.uniform(-25, 25, 17) + dx, y + rng.uniform(-70, 70, 17), np.full(17, 0.9)], 1)
        out[:, 0, 5:, j] = kpts.reshape(-1)
    return out


def test_pose_agreement_with_keypoint_similarity_known_answer():
    ref_out = pose_outputs()
    task = bound("pose", "yolov8", [ref_out])
    assert task.fact("num_keypoints") == 17 and task.fact("keypoint_dims") == 3
    ref = results(task, [ref_out])
    assert ref[0].keypoints.shape == (2, 17, 3)
    dx = 6.0
    moved = results(task, [pose_outputs(dx=dx)])
    result = agreement(task, ref, moved)
    areas = [60 * 160, 80 * 200]
    expected = [np.mean(np.exp(-(dx**2) / (2 * a * (2 * COCO_SIGMAS) ** 2))) for a in areas]
    assert result.details["mean_oks"] == pytest.approx(np.mean(expected), rel=1e-5)
    passing = sum(e >= 0.75 for e in expected)
    assert result.value == pytest.approx(passing / 2)
    assert agreement(task, ref, ref).value == 1.0
    record = validate(task, [ref_out], [ref_out])
    assert [p["part"] for p in record["outputs"][0]["parts"]] == ["boxes", "scores", "keypoints_x", "keypoints_y", "keypoints_visibility"]
    kx = record["outputs"][0]["parts"][2]
    assert kx["channels"] == [5, 54] and kx["step"] == 3


# --- sequence (CTC) -----------------------------------------------------------------------

def test_ctc_sequences_on_a_real_recognizer(real):
    ctc = real["ctc"]
    task = bound("sequence", "ctc", [ctc], input_shape=(1, 3, 48, 320))
    ref = results(task, [ctc])
    assert all(len(r) >= 5 for r in ref)
    changed = ctc.copy()
    steps = changed[1, 0].argmax(-1)
    t = int(np.flatnonzero(steps != 0)[len(np.flatnonzero(steps != 0)) // 2])  # a step that emits a character
    new = next(v for v in range(1, ctc.shape[-1]) if v not in (steps[t - 1], steps[t], steps[t + 1]))
    changed[1, 0, t, new] = 2.0
    result = agreement(task, ref, results(task, [changed]))
    assert result.metric == "sequence_agreement" and result.value == pytest.approx(0.75)


def test_time_major_ctc_from_a_real_crnn(real):
    crnn = real["crnn"]
    task = bound("sequence", "ctc", [crnn], input_shape=(1, 3, 60, 160))
    assert task.fact("time_major") is True
    assert results(task, [crnn]) == [[int(v) for v in _greedy(crnn[i, :, 0])] for i in range(len(crnn))]


def _greedy(steps: np.ndarray) -> list[int]:
    best = steps.argmax(-1)
    return [b for i, b in enumerate(best) if b != 0 and (i == 0 or best[i - 1] != b)]


# --- tensor, int8 and apps ----------------------------------------------------------------

def test_tensor_task_is_numeric_only_and_int8_is_never_ok(real):
    out = real["yolox_raw"]
    task = bound("tensor", None, [out])
    record = validate(task, [out], [out.copy()], "fp32")
    assert record["status"] == "ok" and record["task_agreement"] is None and record["task_note"].startswith("not applicable")
    int8 = validate(task, [out], [out.copy()], "int8")
    assert int8["status"] == "degraded" and "cosine alone cannot vouch" in int8["reasons"][0]


def test_app_support():
    assert app_support("detect", "yolov8")[0] and app_support("detect", "yolov5")[0] and app_support("classify", "yolov8")[0]
    ok, reason = app_support("detect", "yolox")
    assert not ok and "--head yolov5" in reason
    for task, head in (("segment", "map"), ("segment", "yolov8"), ("pose", "yolov8"), ("sequence", None), ("tensor", None), ("detect", "raw")):
        ok, reason = app_support(task, head)
        assert not ok and reason and "\n" not in reason
    assert not app_support("nonsense", None)[0]


def test_dataset_metric_says_not_measurable_for_other_tasks(tmp_path):
    assert dataset_support(TaskSpec("detect", "yolox")) is None and dataset_support(TaskSpec("classify", None)) is None
    assert dataset_support(TaskSpec("segment", "map")) == ("validate --dataset: not measurable for task 'segment' head 'map' "
                                                           "(dataset metrics: mAP for detect yolov8/yolov5/yolox, top-1 for classify)")
    from edgepack.validate.dataset import load_dataset

    manifest = {"model": {"task": "pose", "labels": ["person"]},
                "preprocessing": {"color_order": "rgb", "mean": [0, 0, 0], "std": [255, 255, 255], "resize": "letterbox", "input_shape": [1, 3, 64, 64]}}
    with pytest.raises(SpecError, match="not measurable for task 'pose'"):
        load_dataset(tmp_path, manifest)


def test_task_spec_from_a_manifest():
    manifest = {"model": {"task": "detect", "head": "yolov8", "num_classes": 5, "labels": []},
                "postprocessing": {"score_threshold": 0.25, "iou_threshold": 0.45},
                "preprocessing": {"input_shape": [1, 3, 320, 320]},
                "artifacts": [{"outputs": [{"name": "aux", "shape": [1, 16]}, {"name": "output0", "shape": [1, 9, 2100]}]}]}
    task = TaskSpec.for_manifest(manifest)  # written before task_output existed: bound by shape
    assert task.output == "output0" and task.input_shape == (1, 3, 320, 320)
    manifest["model"]["task_output"] = "evil"
    with pytest.raises(SpecError, match="task_output 'evil' is not one of the outputs"):
        TaskSpec.for_manifest(manifest)
    manifest["model"].update(task="classify", head=None, task_output="aux", classifier_output="logits")
    task = TaskSpec.for_manifest(manifest)
    assert task.head is None and task.output == "aux" and task.fact("classifier_output") == "logits"


def test_spec_task_heads():
    from edgepack.spec import BuildSpec, ModelSpec, check_spec, task_head

    assert task_head("detect", "yolov8") == "yolov8" and task_head("sequence", "yolov8") == "ctc"
    assert task_head("segment", "map") == "map" and task_head("classify", "yolov5") is None
    with pytest.raises(SpecError, match="model.head 'ctc' is not valid for task 'detect' \\(choose from: yolov8, yolov5, raw, yolox\\)"):
        task_head("detect", "ctc")
    with pytest.raises(SpecError, match="map_threshold"):
        check_spec(BuildSpec(model=ModelSpec(task="segment", head="map", map_threshold=1.5)))
    check_spec(BuildSpec(model=ModelSpec(task="pose")))
    assert math.isclose(ModelSpec().map_threshold, 0.3) and ModelSpec().task_output is None
