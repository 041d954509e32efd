"""TensorRT bundle: the calibration cache in TensorRT's text format (checked against the values
NVIDIA's and ONNX Runtime's documentation show), the build script run against a stand-in trtexec
that records its command line, and the simulated int8 run recomputed from the cache file."""

from __future__ import annotations

import os
import struct
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import load_manifest, run_cli
from runtime_fixtures import assert_status_matches_numbers, convert, recomputed, validation_set, write_calibration_images


@pytest.fixture(scope="module")
def trt_out(tmp_path_factory, onnx_detector, detector_labels):
    root = tmp_path_factory.mktemp("tensorrt")
    arts = convert(root / "out", onnx_detector, detector_labels, write_calibration_images(root / "calib"), "tensorrt", "fp16,int8")
    return root / "out", arts


def test_cache_text_format_matches_nvidia_examples():
    from edgepack.formats.tensorrt import cache_text, read_cache

    # TensorRT writes the scale's IEEE-754 bits as hex: ONNX Runtime's TensorRT provider documents
    # "data_0: 4000889d" for 2.008338, TensorRT samples "3f800000" for 1.0
    version, scales = read_cache("TRT-7103-EntropyCalibration2\ndata_0: 4000889d\n")
    assert version == 7103 and abs(scales["data_0"] - 2.008338) < 1e-6
    text = cache_text({"images": 1.0, "/model/conv/Conv_output_0": 0.0078125}, 100300)
    assert text == "TRT-100300-EntropyCalibration2\nimages: 3f800000\n/model/conv/Conv_output_0: 3c000000\n"
    assert read_cache(text)[1] == {"images": 1.0, "/model/conv/Conv_output_0": 0.0078125}


@pytest.mark.parametrize("bad", ["", "TRT-8600-MinMaxCalibration\nx: 3f800000", "TRT-8600-EntropyCalibration2\nx 3f800000",
                                 "TRT-8600-EntropyCalibration2\nx: 7fc00000", "TRT-8600-EntropyCalibration2\nx: bf800000"])
def test_bad_caches_are_refused_with_the_line(bad):
    from edgepack.errors import SpecError
    from edgepack.formats.tensorrt import read_cache

    with pytest.raises(SpecError):
        read_cache(bad)


def test_cache_scales_come_from_the_calibration(trt_out):
    from edgepack.formats.tensorrt import read_cache

    out, arts = trt_out
    entry = arts["tensorrt-int8"]
    assert set(entry["files"]) == {"model", "calibration_cache", "qdq_model", "build_script"}
    from edgepack.formats.tensorrt import activation_scales
    from edgepack.quantize.onnx_graph import stem_and_head_nodes

    version, scales = read_cache((out / entry["files"]["calibration_cache"]).read_text())
    model = onnx.load(str(out / entry["files"]["model"]))
    graph = model.graph
    assert version == 100300
    produced = {o: n.op_type for n in graph.node for o in n.output}
    assert all(name == graph.input[0].name or name in produced for name in scales)
    assert graph.output[0].name not in scales  # the decode tail has no entry: TensorRT runs it in fp16
    assert len(scales) == entry["tensorrt"]["calibration"]["tensors"] > 20
    # recomputed here from the same calibration images: every written scale is edgepack's KL threshold / 127
    from runtime_fixtures import calibration_inputs

    full = activation_scales(out / entry["files"]["model"], calibration_inputs(out), entry["tensorrt"]["calibration"]["method"])
    assert all(abs(scales[k] - full[k]) <= 1e-6 * full[k] for k in scales)
    if "fp16_layers" in entry["tensorrt"].get("mixed_precision", {}):  # stem and heads lost their entries: fp16 in TensorRT
        dropped = {o for n in stem_and_head_nodes(graph) for o in n.output} | {graph.input[0].name}
        assert not dropped & set(scales) and dropped - {graph.input[0].name} <= set(full)
    else:  # images normalised to 0..1: the input's threshold is at most 1, its scale about 1/127
        assert 0.5 / 127 < scales[graph.input[0].name] <= 1.0 / 127 + 1e-9


def _fake_trtexec(folder):
    log = folder / "trtexec.args"
    fake = folder / "trtexec"
    fake.write_text(f"""#!/usr/bin/env bash
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b17] # trtexec $*"
printf '%s\\n' "$@" > {log}
""")
    fake.chmod(0o755)
    return fake, log


def test_build_script_runs_trtexec_with_the_bundle(trt_out, tmp_path):
    out, arts = trt_out
    fake, log = _fake_trtexec(tmp_path)
    entry = arts["tensorrt-int8"]
    script = out / entry["files"]["build_script"]
    assert os.access(script, os.X_OK) and subprocess.run(["bash", "-n", str(script)]).returncode == 0
    old = (out / entry["files"]["calibration_cache"]).read_text()
    (out / entry["files"]["calibration_cache"]).write_text(old.replace("TRT-100300-", "TRT-8601-", 1))
    try:
        result = subprocess.run([str(script), "--verbose"], capture_output=True, text=True, env={**os.environ, "TRTEXEC": str(fake)})
    finally:
        (out / entry["files"]["calibration_cache"]).write_text(old)
    assert result.returncode == 0, result.stderr
    args = log.read_text().splitlines()
    name = entry["files"]["model"].split("/")[-1]
    assert args[:3] == [f"--onnx={name}", "--int8", "--fp16"] and args[-1] == "--verbose"
    calib = next(a for a in args if a.startswith("--calib=")).removeprefix("--calib=")
    rewritten = (script.parent / calib).read_text()
    assert rewritten.startswith("TRT-100300-EntropyCalibration2\n") and rewritten.split("\n", 1)[1] == old.split("\n", 1)[1]
    (script.parent / calib).unlink()
    assert f"--saveEngine={name.replace('.onnx', '.engine')}" in args
    assert not [a for a in args if "shapes" in a.lower()]  # trtexec refuses --shapes for a static-shape ONNX
    explicit = subprocess.run([str(script), "--explicit"], capture_output=True, text=True, env={**os.environ, "TRTEXEC": str(fake)})
    assert explicit.returncode == 0 and log.read_text().splitlines()[0] == f"--onnx={name.replace('.onnx', '.qdq.onnx')}"
    missing = subprocess.run([str(script)], capture_output=True, text=True, env={**os.environ, "TRTEXEC": str(tmp_path / "none")})
    assert missing.returncode == 1 and "trtexec not found" in missing.stderr
    fp16 = subprocess.run([str(out / arts["tensorrt-fp16"]["files"]["build_script"])], capture_output=True, text=True, env={**os.environ, "TRTEXEC": str(fake)})
    assert fp16.returncode == 0 and "--fp16" in log.read_text().splitlines() and "--int8" not in log.read_text()


def test_simulated_int8_recomputed_from_the_cache(trt_out, tmp_path):
    from edgepack.formats.tensorrt import read_cache, simulated_int8

    out, arts = trt_out
    entry = arts["tensorrt-int8"]
    inputs, _ = validation_set(out, entry)
    _, scales = read_cache((out / entry["files"]["calibration_cache"]).read_text())
    sim = simulated_int8(onnx.load(str(out / entry["files"]["model"])), scales)
    session = ort.InferenceSession(sim.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.stack([session.run(None, {"images": x})[0] for x in inputs])
    cosine, f1 = recomputed(out, got)
    assert abs(entry["validation"]["cosine"] - cosine) < 1e-5 and abs(entry["validation"]["task_agreement"] - f1) < 1e-9
    assert cosine >= 0.98
    assert_status_matches_numbers(entry)
    shipped = ort.InferenceSession(str(out / entry["files"]["qdq_model"]), providers=["CPUExecutionProvider"])
    assert np.allclose(np.stack([shipped.run(None, {"images": x})[0] for x in inputs]), got, atol=1e-5)
    qdq = {n.op_type for n in onnx.load(str(out / entry["files"]["qdq_model"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= qdq
    assert entry["tensorrt"]["engine"]["built"] is False and arts["tensorrt-fp16"]["status"] == "ok"


def test_the_simulation_reads_the_cache_file(trt_out, tmp_path):
    """Scales 1000x too large in the cache must show up in the revalidated numbers."""
    import shutil

    from edgepack.formats.tensorrt import cache_text, read_cache

    out, arts = trt_out
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    cache = copy / arts["tensorrt-int8"]["files"]["calibration_cache"]
    version, scales = read_cache(cache.read_text())
    cache.write_text(cache_text({k: v * 1000 for k, v in scales.items()}, version))  # activations round to 0
    # record the edited cache as the artifact (validate refuses bytes that differ from the manifest's sha256)
    import hashlib
    import json

    manifest = load_manifest(copy)
    entry = next(e for e in manifest["artifacts"] if e["id"] == "tensorrt-int8")
    entry["sha256"]["calibration_cache"] = hashlib.sha256(cache.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("validate", str(copy))
    assert result.returncode == 0, result.stderr
    entry = next(e for e in load_manifest(copy)["artifacts"] if e["id"] == "tensorrt-int8")
    # the boxes' anchor grid keeps the cosine high; the detections are gone
    assert entry["validation"]["task_agreement"] < 0.5 and entry["status"] == "degraded"
