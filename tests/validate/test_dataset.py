"""`edgepack validate OUT --dataset DIR`: mAP / top-1 per artifact next to the reference."""

import numpy as np

from conftest import load_manifest, run_cli
from edgepack.datasets.shapes import write_classification_set, write_detection_set
from edgepack.validate.dataset import Sample, coco_map


def test_coco_map_of_perfect_and_shifted_predictions():
    boxes = np.array([[10, 10, 50, 50], [60, 60, 100, 120]], np.float32)
    samples = [Sample(None, None, (128, 128), boxes, np.array([0, 1]))]
    perfect = coco_map(samples, [(boxes, np.array([0.9, 0.8]), np.array([0, 1]))], 2)
    assert perfect == {"map50_95": 1.0, "map50": 1.0}
    shifted = coco_map(samples, [(boxes + 4, np.array([0.9, 0.8]), np.array([0, 1]))], 2)
    assert shifted["map50"] == 1.0 and shifted["map50_95"] < 0.8
    wrong = coco_map(samples, [(boxes, np.array([0.9, 0.8]), np.array([1, 0]))], 2)
    assert wrong["map50"] == 0.0


def test_detector_dataset_metrics(detector_out, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(detector_out, out)
    dataset = write_detection_set(tmp_path / "eval", 12, seed=11, size=(128, 160))
    result = run_cli("validate", str(out), "--dataset", str(dataset))
    assert result.returncode == 0, result.stderr
    m = load_manifest(out)
    assert m["dataset"]["images"] == 12 and 0 <= m["dataset"]["reference"]["map50_95"] <= 1
    for entry in m["artifacts"]:
        metric = entry["dataset_metric"]  # Core ML too: measured by edgepack's evaluator
        assert set(metric) == {"map50_95", "map50", "map50_95_delta", "map50_delta"}
        if entry["precision"] == "fp32":
            assert abs(metric["map50_95_delta"]) < 1e-3
    assert "mAP50-95 (Δ)" in result.stdout


def test_classifier_dataset_metrics(classifier_out, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(classifier_out, out)
    dataset = tmp_path / "cls"
    write_classification_set(dataset, 10, seed=3, size=64)
    # the tiny classifier's labels are class_0..class_3: rename the shape folders accordingly
    for i, folder in enumerate(sorted(p for p in dataset.iterdir() if p.is_dir())):
        folder.rename(dataset / f"class_{i % 4}" if not (dataset / f"class_{i % 4}").exists() else dataset / f"extra_{i}")
    for extra in dataset.glob("extra_*"):
        shutil.rmtree(extra)
    result = run_cli("validate", str(out), "--dataset", str(dataset))
    assert result.returncode == 0, result.stderr
    m = load_manifest(out)
    assert 0 <= m["dataset"]["reference"]["top1"] <= 1
    assert all(abs(e["dataset_metric"]["top1_delta"]) < 1e-9 for e in m["artifacts"] if e["precision"] == "fp32")


def test_coco_json_gives_the_same_samples_as_yolo_txt(detector_out, tmp_path):
    """The same images and boxes as COCO json (category names = labels, ids shuffled) and as YOLO
    txt load to the same ground truth, so both layouts give the same mAP."""
    import json

    from PIL import Image

    from edgepack.validate.dataset import load_dataset

    manifest = load_manifest(detector_out)
    labels = manifest["model"]["labels"]
    yolo = write_detection_set(tmp_path / "yolo", 5, seed=13, size=(128, 160))
    coco_dir = tmp_path / "coco"
    (coco_dir / "images").mkdir(parents=True)
    images, annotations = [], []
    for i, image_path in enumerate(sorted((yolo / "images").iterdir())):
        (coco_dir / "images" / image_path.name).write_bytes(image_path.read_bytes())
        w, h = Image.open(image_path).size
        images.append({"id": 100 + i, "file_name": image_path.name, "width": w, "height": h})
        for row in np.loadtxt(yolo / "labels" / f"{image_path.stem}.txt", ndmin=2):
            cls = int(row[0]) % len(labels)
            bw, bh = row[3] * w, row[4] * h
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 7 + cls,
                                "bbox": [row[1] * w - bw / 2, row[2] * h - bh / 2, bw, bh], "area": bw * bh, "iscrowd": 0})
    categories = [{"id": 7 + c, "name": name} for c, name in reversed(list(enumerate(labels)))]
    (coco_dir / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    from_coco = load_dataset(coco_dir, manifest)
    from_yolo = load_dataset(yolo, manifest)
    assert len(from_coco) == len(from_yolo) == 5
    for a, b in zip(from_coco, from_yolo):
        assert np.allclose(a.boxes, b.boxes, atol=1e-3)
        assert list(a.classes) == [int(c) % len(labels) for c in b.classes]
        assert np.array_equal(a.tensor, b.tensor)
