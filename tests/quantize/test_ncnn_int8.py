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


def test_table_does_not_depend_on_how_many_nets_calibrate_or_image_order(fp32_model, calibration):
    """Each net takes the next image, so which net sees which image varies from run to run and
    machine to machine; the table (histograms and KL thresholds included) must not. A nearly
    black image (1e-9 of the others) is where a cut relative to the running maximum would
    depend on whether it comes first."""
    param_path, bin_path = fp32_model
    images = np.concatenate([calibration[:1] * 1e-9, calibration])
    tables = [ncnn_int8.calibrate(param_path, bin_path, "in0", images, method, threads=n).text() for n in (1, 2, 3) for method in ("kl", "percentile")]
    tables.extend(ncnn_int8.calibrate(param_path, bin_path, "in0", images[::-1].copy(), method, threads=1).text() for method in ("kl", "percentile"))
    assert tables[0::2] == [tables[0]] * 4 and tables[1::2] == [tables[1]] * 4


def test_packed_blobs_are_read_in_place_value_for_value(fp32_model, calibration):
    """Calibration reads packed blobs (channels interleaved 4/8/16 at a time) as views instead of
    letting ncnn unpack them: every blob must hold exactly the values of ncnn's own unpacked one."""
    param_path, bin_path = fp32_model
    param = ParamFile.read(param_path)
    net = ncnn.Net()
    strict_fp32(net.opt)
    net.load_param(str(param_path))
    net.load_model(str(bin_path))
    packs = set()
    for blob in {top for layer in param.layers for top in layer.tops}:
        packed, unpacked = net.create_extractor(), net.create_extractor()
        packed.input("in0", ncnn.Mat(np.ascontiguousarray(calibration[0][0])))
        unpacked.input("in0", ncnn.Mat(np.ascontiguousarray(calibration[0][0])))
        probe = ncnn.Mat()
        packed.extract(blob, probe, 1)
        pack = probe.elempack
        packs.add(pack)
        values = ncnn_int8._blob_values(packed, blob)
        expected = np.array(unpacked.extract(blob)[1])
        assert values.size == expected.size, blob
        if pack > 1:  # channel groups of `pack` interleaved channels -> channels
            values = values.reshape(values.shape[0], -1, pack).transpose(0, 2, 1)
        np.testing.assert_array_equal(values.reshape(expected.shape), expected, err_msg=blob)
    assert packs - {1}, "no packed blob in the model: the test would prove nothing"


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


def blob_values(param_path, bin_path, blob, calibration):
    """Every value of one blob over the calibration set, read straight from ncnn."""
    net = ncnn.Net()
    strict_fp32(net.opt)
    net.load_param(str(param_path))
    net.load_model(str(bin_path))
    values = []
    for x in calibration:
        ex = net.create_extractor()
        ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
        values.append(np.array(ex.extract(blob)[1]).ravel())
    return np.concatenate(values)


def test_minmax_is_the_default_and_gives_absmax_scales(fp32_model, calibration):
    from edgepack.spec import CalibrationSpec

    assert CalibrationSpec().method == "minmax"
    param_path, bin_path = fp32_model
    table = ncnn_int8.calibrate(param_path, bin_path, "in0", calibration, "minmax")
    layers = {l.name: l for l in ParamFile.read(param_path).layers}
    for name, scale in table.blob_scales.items():
        absmax = float(np.abs(blob_values(param_path, bin_path, layers[name].bottoms[0], calibration)).max())
        assert scale == pytest.approx(127 / absmax, rel=1e-6)
        assert table.ranges[name]["threshold"] == pytest.approx(absmax, rel=1e-6) and table.ranges[name]["clipped"] == 0


def test_kl_and_percentile_tables_match_two_pass_statistics(fp32_model, calibration):
    """One pass (absmax and a doubling fine histogram together) against ncnn2table's two passes."""
    from edgepack.quantize.calibration import NUM_BINS, kl_divergences, kl_threshold_bin

    param_path, bin_path = fp32_model
    kl = ncnn_int8.calibrate(param_path, bin_path, "in0", calibration, "kl")
    percentile = ncnn_int8.calibrate(param_path, bin_path, "in0", calibration, "percentile")
    layers = {l.name: l for l in ParamFile.read(param_path).layers}
    for name in kl.blob_scales:
        values = np.abs(blob_values(param_path, bin_path, layers[name].bottoms[0], calibration))
        absmax = float(values.max())
        nonzero = values[values > absmax * 1e-7]
        histogram = np.histogram(nonzero, bins=NUM_BINS, range=(0, absmax))[0].astype(np.float64)
        # the bin our threshold falls in is (near-)optimal for the exact two-pass histogram; KL is
        # flat near its minimum, so on this little data the argmin itself may move a few bins
        ours = int(round((127 / kl.blob_scales[name]) / absmax * NUM_BINS - 0.5))
        divergences = kl_divergences(histogram)
        assert divergences[ours - 128] <= divergences.min() * (1 + 2e-3)
        assert abs(ours - kl_threshold_bin(histogram)) < 0.15 * NUM_BINS
        assert 127 / percentile.blob_scales[name] == pytest.approx(float(np.percentile(nonzero, 99.99)), rel=0.02)
        assert kl.ranges[name]["clipped"] == pytest.approx(float(np.mean(nonzero > 127 / kl.blob_scales[name])), abs=1e-3)


def test_split_outputs_share_one_measured_blob(tmp_path):
    """Layers reading different outputs of one Split are measured once, on the Split's input."""
    text = "\n".join([
        "7767517", "4 5",
        "Input in 0 1 in0",
        "Split split 1 2 in0 a b",
        "Convolution c1 1 1 a o1 0=2 1=1 6=6",
        "Convolution c2 1 1 b o2 0=2 1=1 6=6",
    ])
    (tmp_path / "m.param").write_text(text + "\n")
    param = ParamFile.read(tmp_path / "m.param")
    convs = [l for l in param.layers if l.type == "Convolution"]
    assert ncnn_int8.calibration_blobs(param, convs) == {"c1": "in0", "c2": "in0"}
