"""A model with two outputs whose graph computes them in the other order: every runtime's outputs
are matched to the reference by name, and the manifest and sidecars keep the source's order."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import load_manifest, run_cli


class TwoHeads(torch.nn.Module):
    """`mask` is the first output but its layers come last in the graph."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.body = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.mask_head = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        features = torch.relu(self.body(x))
        return torch.sigmoid(self.mask_head(features)), features.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def two_output_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two")
    path = folder / "two.onnx"
    torch.onnx.export(TwoHeads().eval(), (torch.rand(1, 3, 32, 32),), str(path), opset_version=17, dynamo=False,
                      input_names=["images"], output_names=["mask", "embedding"])
    out = folder / "out"
    result = run_cli("convert", str(path), "--task", "tensor", "--formats", "ncnn,mnn,tflite", "--precisions", "fp32", "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_outputs_are_matched_by_name_in_every_runtime(two_output_out):
    manifest = load_manifest(two_output_out)
    assert {e["id"] for e in manifest["artifacts"]} == {"ncnn-fp32", "mnn-fp32", "tflite-fp32"}
    for entry in manifest["artifacts"]:
        assert [o["name"] for o in entry["outputs"]] == ["mask", "embedding"]
        assert [o["shape"] for o in entry["outputs"]] == [[1, 2, 32, 32], [1, 8]]
        rows = {row["name"]: row for row in entry["validation"]["outputs"]}
        assert set(rows) == {"mask", "embedding"}
        for row in rows.values():
            assert row["cosine"] >= 0.9999, (entry["id"], row)
        assert entry["status"] == "ok", (entry["id"], entry["validation"]["reasons"])


def test_ncnn_blobs_follow_the_source_order(two_output_out):
    entry = next(e for e in load_manifest(two_output_out)["artifacts"] if e["format"] == "ncnn")
    assert entry["ncnn"]["output_blobs"] == ["out0", "out1"]
    sidecar = json.loads((two_output_out / entry["files"]["sidecar"]).read_text())
    assert [o["name"] for o in sidecar["outputs"]] == ["mask", "embedding"]
    assert sidecar["ncnn"]["output_blobs"] == ["out0", "out1"]
