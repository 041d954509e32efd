"""ncnn int8 against ncnn's own format: byte-identical parse/write round trips, the table
format, the rewrite rules, and the runtime as the judge of the int8 weight bytes."""

from __future__ import annotations

import subprocess

import ncnn
import numpy as np
import pnnx
import pytest
import torch
from torch import nn

from edgepack.builtin import scale_init
from edgepack.errors import SpecError
from edgepack.formats.ncnn import strict_fp32
from edgepack.quantize import ncnn_int8
from edgepack.quantize.ncnn_model import TAG_INT8, ParamFile, read_bin, tagged_fp32, write_bin
from edgepack.validate import metrics


class Mixed(nn.Module):
    """3x3 s1 conv (6-bit rule), 3x3 s2 conv, depthwise conv, conv->conv (requantize fusion), FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.conv = nn.Conv2d(8, 16, 3, 1, 1)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.conv(x))
        x = self.pw(torch.relu(self.dw(x)))  # relu is fused into the depthwise conv by pnnx
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ncnn_int8")
    torch.manual_seed(0)
    model = Mixed().eval()
    scale_init(model, seed=3)
    torch.jit.trace(model, torch.rand(1, 3, 32, 32)).save(str(folder / "model.pt"))
    subprocess.run([pnnx.EXEC_PATH, "model.pt", "inputshape=[1,3,32,32]", "fp16=0"], cwd=folder, check=True, capture_output=True)
    return folder / "model.ncnn.param", folder / "model.ncnn.bin"


@pytest.fixture(scope="module")
def calibration():
    rng = np.random.default_rng(0)
    return rng.random((12, 1, 3, 32, 32), dtype=np.float32)


def run(param, bin_path, x, fp32=False):
    net = ncnn.Net()
    if fp32:
        strict_fp32(net.opt)
    net.load_param(str(param))
    net.load_model(str(bin_path))
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
    return np.array(ex.extract("out0")[1])


def test_param_and_bin_round_trip_byte_identical(fp32_model, tmp_path):
    param_path, bin_path = fp32_model
    param = ParamFile.read(param_path)
    assert param.text() == param_path.read_text()
    write_bin(read_bin(param, bin_path), tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == bin_path.read_bytes()


def test_table_format_and_scales(fp32_model, calibration, tmp_path):
    param_path, bin_path = fp32_model
    table = ncnn_int8.calibrate(param_path, bin_path, "in0", calibration, "kl")
    layers = {l.name: l for l in ParamFile.read(param_path).layers}
    assert set(table.weight_scales) == set(table.blob_scales) == {
        n for n, l in layers.items() if l.type in ("Convolution", "ConvolutionDepthWise", "InnerProduct")
    }
    for name, scales in table.weight_scales.items():
        layer = layers[name]
        expected = layer.get(7, 1) if layer.type == "ConvolutionDepthWise" else layer.get(0, 0)
        assert len(scales) == expected
    text = table.text()
    parsed = ncnn_int8.Table.parse(text)
    assert parsed.blob_scales.keys() == table.blob_scales.keys()
    for name in table.weight_scales:
        np.testing.assert_allclose(parsed.weight_scales[name], table.weight_scales[name], rtol=1e-7)
        assert f"{name}_param_0 " in text
    with pytest.raises(SpecError, match="line 1"):
        ncnn_int8.Table.parse("conv_0_param_0 abc\n")


def test_rewrite_follows_ncnn_format(fp32_model, calibration, tmp_path):
    param_path, bin_path = fp32_model
    table = ncnn_int8.calibrate(param_path, bin_path, "in0", calibration, "minmax")
    details = ncnn_int8.apply_table(param_path, bin_path, table, tmp_path / "q.param", tmp_path / "q.bin")
    q = ParamFile.read(tmp_path / "q.param")
    terms = {l.type: [] for l in q.layers}
    for layer in q.layers:
        terms[layer.type].append(int(layer.get(8, 0)))
    assert set(terms["ConvolutionDepthWise"]) <= {1, 101}
    assert set(terms["InnerProduct"]) == {2}
    assert 102 in terms["Convolution"] and details["requantize_fused"] >= 1  # conv -> conv is fused
    blobs = read_bin(q, tmp_path / "q.bin")
    for layer, layer_blobs in zip(q.layers, blobs):
        if layer.type in ("Convolution", "ConvolutionDepthWise", "InnerProduct"):
            assert int.from_bytes(layer_blobs[0].data[:4], "little") == TAG_INT8
            values = np.frombuffer(layer_blobs[0].data[4 : 4 + layer_blobs[0].count], np.int8)
            kw, stride = layer.get(1, 0), layer.get(3, 1)
            limit = 31 if layer.type == "Convolution" and kw == 3 and stride == 1 else 127
            assert np.abs(values).max() == limit  # every output channel's absmax maps to the limit
    assert (tmp_path / "q.bin").stat().st_size < bin_path.stat().st_size * 0.4


def test_int8_bytes_match_what_ncnn_computes_itself(fp32_model, calibration, tmp_path):
    """ncnn quantizes fp32 weights at load time when a layer has int8 scales: giving it the same
    model with fp32 weights must produce bit-identical outputs to our pre-quantized bytes."""
    param_path, bin_path = fp32_model
    table = ncnn_int8.calibrate(param_path, bin_path, "in0", calibration, "kl")
    ncnn_int8.apply_table(param_path, bin_path, table, tmp_path / "q.param", tmp_path / "q.bin")
    q = ParamFile.read(tmp_path / "q.param")
    original = read_bin(ParamFile.read(param_path), bin_path)
    blobs = read_bin(q, tmp_path / "q.bin")
    for i, layer in enumerate(q.layers):
        if int(layer.get(8, 0)):
            blobs[i][0] = tagged_fp32(original[i][0].floats())
    write_bin(blobs, tmp_path / "runtime.bin")
    for x in calibration[:3]:
        ours = run(tmp_path / "q.param", tmp_path / "q.bin", x)
        theirs = run(tmp_path / "q.param", tmp_path / "runtime.bin", x)
        np.testing.assert_array_equal(ours, theirs)
        reference = run(param_path, bin_path, x, fp32=True)
        assert metrics.cosine(ours, reference) > 0.99


def test_commented_table_line_keeps_layer_float(fp32_model, calibration, tmp_path):
    param_path, bin_path = fp32_model
    table = ncnn_int8.calibrate(param_path, bin_path, "in0", calibration, "kl")
    first = next(iter(table.weight_scales))
    text = "\n".join(f"#{line}" if line.split()[0] in (first, f"{first}_param_0") else line for line in table.text().splitlines())
    ncnn_int8.apply_table(param_path, bin_path, ncnn_int8.Table.parse(text), tmp_path / "m.param", tmp_path / "m.bin")
    layers = {l.name: l for l in ParamFile.read(tmp_path / "m.param").layers}
    assert layers[first].get(8, 0) == 0
    assert sum(1 for l in layers.values() if l.get(8, 0)) == len(table.weight_scales) - 1
    out = run(tmp_path / "m.param", tmp_path / "m.bin", calibration[0])
    assert metrics.cosine(out, run(param_path, bin_path, calibration[0], fp32=True)) > 0.99


def test_kl_stable_when_tiny_values_appear(calibration):
    """Denormal-sized activations must not move the KL threshold (they count as zero)."""
    from edgepack.quantize.calibration import BlobStats

    rng = np.random.default_rng(1)
    values = np.abs(rng.normal(0, 1, 200_000)).astype(np.float32)
    values[::3] = 0.0
    a, b = BlobStats(), BlobStats()
    for stats, data in ((a, values), (b, np.where(values == 0, 1e-30, values).astype(np.float32))):
        stats.add_absmax(data)
        stats.add_histogram(data, np.random.default_rng(0))
    assert a.scale("kl") == b.scale("kl")
    assert a.scale("minmax") < a.scale("percentile") and a.scale("minmax") < a.scale("kl")
