"""The int8 check behind automatic mixed precision: it must not be vacuous. Outputs are the
built-in detector's real reference outputs; the "quantized" ones are derived from them the way
int8 failures look (one int8 scale over boxes and scores, noise, lost boxes)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.quantize.agreement import check_outputs, output_part_reasons, output_parts
from edgepack.validate.validator import TaskSpec

TASK = TaskSpec("detect", "yolov8", 0.25, 0.45, 5)


@pytest.fixture(scope="module")
def detector_outputs():
    """Reference outputs of the built-in detector on 12 generated scenes ([N, 1, 9, 2100])."""
    import torch

    from edgepack import builtin
    from edgepack.preprocess import generated_images, preprocess
    from edgepack.spec import ModelSpec

    model = builtin.EXAMPLES["shapes-detector"].load()
    x = np.stack([preprocess(image, ModelSpec(), (1, 3, 320, 320))[0] for image in generated_images(12, 99, (320, 320))])
    with torch.no_grad():
        return np.stack([model(torch.from_numpy(xi)).numpy() for xi in x])


def one_int8_scale(output: np.ndarray) -> np.ndarray:
    """What a per-tensor int8 output does to a concatenated YOLO output: one symmetric scale from
    the largest box coordinate; every score (0..1) is far below half a step."""
    scale = np.abs(output).max() / 127
    return np.clip(np.round(output / scale), -127, 127) * scale


def test_collapsed_scores_fail_although_cosine_is_high(detector_outputs):
    collapsed = one_int8_scale(detector_outputs)
    assert np.all(output_parts("yolov8", collapsed, 5)["scores"] == 0)  # the real failure: scores exactly 0
    check = check_outputs(TASK, [detector_outputs], [collapsed])
    assert check.metrics["cosine"] > 0.999  # the whole-tensor cosine does not see it
    assert not check.passed
    assert any("class scores: all 5 channels are exactly 0" in r for r in check.reasons)
    assert output_part_reasons(TASK, [detector_outputs], [collapsed])


def test_collapsed_scores_fail_even_without_objects(detector_outputs):
    """Images where the reference finds nothing: box F1 would be 1.0 (both empty), the check
    must still fail on the score channels."""
    quiet = detector_outputs.copy()
    quiet[:, :, 4:, :] = np.minimum(quiet[:, :, 4:, :], 0.1)  # no score above the 0.25 threshold
    collapsed = one_int8_scale(quiet)
    check = check_outputs(TASK, [quiet], [collapsed])
    assert check.metrics["images_with_objects"] == 0 and check.metrics["box_f1_iou50"] is None
    assert not check.passed


def test_faithful_int8_passes_and_lost_boxes_fail(detector_outputs):
    rng = np.random.default_rng(0)
    noisy = detector_outputs.copy()
    noisy[:, :, :4, :] += rng.normal(0, 0.3, noisy[:, :, :4, :].shape)  # box coordinates, in pixels
    noisy[:, :, 4:, :] = np.clip(noisy[:, :, 4:, :] + rng.normal(0, 0.004, noisy[:, :, 4:, :].shape), 0, 1)
    check = check_outputs(TASK, [detector_outputs], [noisy])
    assert check.passed, check.reasons
    assert check.metrics["images_with_objects"] >= 4 and check.metrics["box_f1_iou50"] > 0.95
    assert check.metrics["score_cosine"] > 0.99 and check.value == check.metrics["box_f1_iou50"]
    halved = detector_outputs.copy()
    halved[:, :, 4:, :] *= 0.5  # scores lose half their value: most boxes fall under the threshold
    check = check_outputs(TASK, [detector_outputs], [halved])
    assert not check.passed and any("box F1" in r for r in check.reasons)


def test_classifier_check_uses_top1():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(5), size=(20, 1))
    task = TaskSpec("classify", "yolov8", 0.25, 0.45, 5)
    assert check_outputs(task, [probabilities], [probabilities + 1e-4]).passed
    shuffled = probabilities[:, :, ::-1]
    check = check_outputs(task, [probabilities], [shuffled])
    assert not check.passed and check.metrics["top1_agreement"] < 0.9


def test_nan_outputs_fail(detector_outputs):
    broken = detector_outputs.copy()
    broken[0, 0, 0, 0] = np.nan
    assert not check_outputs(TASK, [detector_outputs], [broken]).passed


def test_fallback_is_kept_only_when_it_does_better():
    from edgepack.quantize.agreement import Int8Check, at_least_as_good

    plain = Int8Check(False, {"top1_agreement": 0.94}, ["x"])
    worse = Int8Check(False, {"top1_agreement": 0.0}, ["y"])
    passing = Int8Check(True, {"top1_agreement": 0.91})
    assert at_least_as_good(plain, worse) and not at_least_as_good(worse, plain)
    assert at_least_as_good(passing, plain) and not at_least_as_good(plain, passing)


@pytest.mark.parametrize("with_objects", [True, False])
def test_check_images_are_the_first_images_with_objects(tmp_path, with_objects, monkeypatch):
    """The block-wise scan picks exactly what scanning all SCAN_IMAGES at once picks: the first
    CHECK_IMAGES images where the reference finds objects, else the first images (empty scenes)."""
    from edgepack.formats.base import ConversionJob
    from edgepack.preprocess import generated_images, preprocess
    from edgepack.quantize import agreement
    from edgepack.sources.base import load_source
    from edgepack.spec import load_spec
    from edgepack.validate.reference import OnnxRuntimeRunner, run_all
    from edgepack.validate.validator import task_outputs

    spec = load_spec(overrides={"task": "detect"})
    model = load_source(spec.model, tmp_path)
    shape = tuple(model.input_shape)
    images = generated_images(40, 5, model.image_size) if with_objects else [np.full((*model.image_size, 3), 114, np.uint8)] * 20
    x = np.stack([preprocess(image, spec.model, shape)[0] for image in images]).astype(np.float32)
    np.save(tmp_path / "calibration.npy", x)
    monkeypatch.setattr(agreement, "SCAN_IMAGES", 30)  # a scan that ends inside a block
    job = ConversionJob(model, "int8", tmp_path, spec, None, "m", lambda: np.load(tmp_path / "calibration.npy", mmap_mode="c"))
    picked, reference = agreement.check_images(job)

    task = TaskSpec.for_job(job)
    full = run_all(OnnxRuntimeRunner(model.onnx_path), x[:30])
    found = [i for i, d in enumerate(task_outputs(task, full)) if len(d)][: agreement.CHECK_IMAGES]
    expected = found if len(found) >= agreement.MIN_OBJECT_IMAGES else list(range(agreement.CHECK_IMAGES))
    assert (len(found) >= agreement.MIN_OBJECT_IMAGES) == with_objects
    assert np.array_equal(picked, x[expected])
    assert all(np.array_equal(r, f[expected]) for r, f in zip(reference, full))


def test_check_images_are_scanned_once_per_build(tmp_path, monkeypatch):
    """Every int8 format's child process needs the same check images: the first to ask scans,
    the others load its file from the build's scratch folder (same arrays, no second scan)."""
    import dataclasses

    from edgepack.formats.base import ConversionJob
    from edgepack.preprocess import generated_images, preprocess
    from edgepack.quantize import agreement
    from edgepack.sources.base import load_source
    from edgepack.spec import load_spec

    spec = load_spec(overrides={"task": "detect"})
    model = load_source(spec.model, tmp_path)
    x = np.stack([preprocess(image, spec.model, tuple(model.input_shape))[0] for image in generated_images(20, 5, model.image_size)])
    np.save(tmp_path / "calibration.npy", x.astype(np.float32))
    shared = tmp_path / "build"
    shared.mkdir()

    def job_in_a_new_process():  # a fresh model cache, as in another child process
        fresh = dataclasses.replace(model, cache={})
        return ConversionJob(fresh, "int8", tmp_path, spec, None, "m", lambda: np.load(tmp_path / "calibration.npy", mmap_mode="c"),
                             shared_dir=shared)

    scans = []
    real_scan = agreement._scan_check_images
    monkeypatch.setattr(agreement, "_scan_check_images", lambda job: scans.append(1) or real_scan(job))
    first_inputs, first_reference = agreement.check_images(job_in_a_new_process())
    second_inputs, second_reference = agreement.check_images(job_in_a_new_process())
    assert len(scans) == 1
    assert np.array_equal(first_inputs, second_inputs) and len(first_reference) == len(second_reference) == len(model.output_names)
    assert all(np.array_equal(a, b) for a, b in zip(first_reference, second_reference))
    assert sorted(p.name for p in shared.iterdir()) == ["int8_check.lock", "int8_check.npz"]  # no partial file left


def test_check_images_scan_is_not_repeated_by_processes_asking_at_once(tmp_path, monkeypatch):
    """Formats' processes ask for the check images at about the same time: the lock makes the
    later ones wait for the first one's file instead of scanning too (threads here: flock locks
    separate opens of the lock file against each other as it does separate processes)."""
    import threading
    import time
    from types import SimpleNamespace

    from edgepack.quantize import agreement

    scans = []

    def slow_scan(job):
        scans.append(1)
        time.sleep(0.5)
        return np.ones((2, 3, 8, 8), np.float32), [np.zeros((2, 5), np.float32), np.ones((2, 1), np.float32)]

    monkeypatch.setattr(agreement, "_scan_check_images", slow_scan)
    jobs = [SimpleNamespace(model=SimpleNamespace(cache={}), calibration=None, shared_dir=tmp_path) for _ in range(3)]
    results = [None] * len(jobs)

    def ask(i):
        results[i] = agreement.check_images(jobs[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(scans) == 1
    for inputs, outputs in results:
        assert inputs.shape == (2, 3, 8, 8) and [o.shape for o in outputs] == [(2, 5), (2, 1)] and outputs[1].all()
