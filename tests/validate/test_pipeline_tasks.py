"""Tasks through the real pipeline: a dense-map model converted to ncnn and validated with the
map agreement, the task facts in the manifest; a wrong task guess refused before converting."""

import json

import pytest
import torch
from torch import nn

import edgepack
from edgepack.errors import SpecError


class TinyMap(nn.Module):
    """[1, 3, 64, 64] -> a probability map [1, 1, 16, 16] plus an auxiliary [1, 4] vector."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.map = nn.Conv2d(8, 1, 1)
        self.aux = nn.Linear(8, 4)

    def forward(self, x):
        f = self.body(x)
        return self.aux(f.mean((2, 3))), torch.sigmoid(self.map(f) * 4)


def config(tmp_path, **model) -> str:
    path = tmp_path / "edgepack.yaml"
    lines = ["model:"] + [f"  {k}: {v}" for k, v in model.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_map_model_converts_and_validates_with_the_map_agreement(tmp_path):
    out = tmp_path / "out"
    manifest = edgepack.convert(TinyMap().eval(), torch.rand(1, 3, 64, 64), config=config(tmp_path, task="segment", head="map"),
                                formats="ncnn", precisions="fp32", output=str(out))
    model = manifest["model"]
    names = [o["name"] for o in manifest["artifacts"][0]["outputs"]]
    assert model["task"] == "segment" and model["head"] == "map" and model["task_output"] == names[1]
    assert model["map_values"] == "probabilities" and model["map_channels"] == 1 and model["map_threshold"] == 0.3
    v = manifest["artifacts"][0]["validation"]
    assert v["task_metric"] == "mask_iou" and v["status"] == "ok", v
    assert v["task_agreement"] == 1.0 or v["task_note"].startswith("not measurable")
    reference_task = json.loads((out / "validation" / "reference_task.json").read_text())
    assert len(reference_task) == manifest["validation"]["images"] and "foreground_fraction" in reference_task[0]
    from edgepack.validate.rerun import revalidate  # edgepack.validate is shadowed by the subpackage once imported

    again = revalidate(out)
    assert again["artifacts"][0]["validation"]["status"] == "ok"


def test_wrong_task_guess_is_refused_before_converting(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SpecError) as e:
        edgepack.convert(TinyMap().eval(), torch.rand(1, 3, 64, 64), config=config(tmp_path, task="detect", head="yolov5"),
                         formats="ncnn", precisions="fp32", output=str(out))
    assert "head 'yolov5'" in str(e.value) and "--task tensor" in str(e.value)
    assert not out.exists()
