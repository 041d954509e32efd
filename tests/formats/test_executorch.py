"""ExecuTorch .pte fp32/int8 with the XNNPACK delegate: programs loaded and run again with
ExecuTorch's own runtime, numbers recomputed, delegation and quantization read back. The source is
the tiny detector as a PyTorch module (ExecuTorch's own path; int8 of the ONNX-sourced tiny
detector through onnx2torch builds a program that fails to load, see the README, "Other edge runtimes")."""

from __future__ import annotations

import numpy as np
import pytest

from runtime_fixtures import assert_status_matches_numbers, convert, recomputed, validation_set, with_tests_on_path, write_calibration_images


@pytest.fixture(scope="module")
def et_out(tmp_path_factory, detector_labels):
    root = tmp_path_factory.mktemp("executorch")
    arts = convert(root / "out", "runtime_fixtures:tiny_detector_factory", detector_labels, write_calibration_images(root / "calib"),
                   "executorch", "fp32,int8", with_tests_on_path())
    return root / "out", arts


def _run_pte(path, inputs):
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    return np.stack([method.execute([torch.from_numpy(x)])[0].numpy() for x in inputs])


def test_pte_runs_in_executorch_runtime(et_out):
    out, arts = et_out
    assert set(arts) == {"executorch-fp32", "executorch-int8"}
    inputs, _ = validation_set(out, arts["executorch-fp32"])
    fp32 = arts["executorch-fp32"]
    cosine, f1 = recomputed(out, _run_pte(out / fp32["files"]["model"], inputs))
    assert cosine >= 0.9999 and f1 >= 0.99 and fp32["status"] == "ok"
    assert "onnx2torch" not in fp32["executorch"]["converter"]
    int8 = arts["executorch-int8"]
    cosine, f1 = recomputed(out, _run_pte(out / int8["files"]["model"], inputs))
    assert abs(int8["validation"]["cosine"] - cosine) < 1e-5 and abs(int8["validation"]["task_agreement"] - f1) < 1e-9
    assert cosine >= 0.98, cosine
    assert_status_matches_numbers(int8)


def test_delegated_to_xnnpack_and_really_quantized(et_out):
    from edgepack.formats.executorch import ExecuTorchFormat

    out, arts = et_out
    facts = {p: ExecuTorchFormat().describe({"model": out / arts[f"executorch-{p}"]["files"]["model"]}) for p in ("fp32", "int8")}
    for f in facts.values():
        assert f["methods"] == ["forward"] and f["delegates"].get("XnnpackBackend", 0) >= 1
        assert f["inputs"] == [{"shape": [1, 3, 128, 128], "dtype": "float32"}]
    assert arts["executorch-int8"]["size_bytes"] < 0.45 * arts["executorch-fp32"]["size_bytes"]
    assert arts["executorch-int8"]["executorch"]["float_nodes"], "the decode tail stays float"


def test_kept_nodes_really_stay_float():
    """XNNPACK's cat annotator ignores the quantizer's filter function: without edgepack's
    KeptFloatQuantizer the decode tail's final Concat of boxes and scores got one int8 scale
    (scores cosine 0.65 on the built-in detector). Everything kept float must give the float
    model back; with the tail kept, the score channels must come out of float arithmetic."""
    import torch

    from edgepack.builtin import get_example
    from edgepack.formats import executorch as etf

    model = get_example("shapes-detector").load().eval()
    example = torch.zeros(1, 3, 320, 320)
    calibration = np.random.default_rng(0).random((4, 1, 3, 320, 320), dtype=np.float32)
    graph = etf._export(model, example).module().graph
    x = torch.from_numpy(calibration[0])
    with torch.no_grad():
        reference = model(x)
        everything_kept = etf._pt2e(model, example, calibration, {n.name for n in graph.nodes})
        assert float((everything_kept(x) - reference).abs().max()) < 1e-3
        assert not [n for n in everything_kept.graph.nodes if "quantize_per" in str(n.target)]
        tail_kept = etf._pt2e(model, example, calibration, {n.name for n in etf.float_tail(graph)})
        output = tail_kept.graph.find_nodes(op="output")[0].all_input_nodes[0]
        assert "quantize" not in str(output.target) and all("quantize" not in str(a.target) for a in output.all_input_nodes)
        scores = tail_kept(x)[:, 4:]
        assert float((scores - reference[:, 4:]).abs().max()) < 0.1  # 0.62 when the final Concat was int8
