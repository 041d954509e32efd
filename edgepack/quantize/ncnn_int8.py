"""ncnn int8: the calibration table (what ncnn2table writes) and the param/bin rewrite (what
ncnn2int8 does), neither of which the ncnn pip wheel ships.

Table format (text, one line per entry; a line starting with '#' is ignored, so commenting a
layer's lines keeps that layer in float):
    <layer>_param_0 s_0 s_1 ...   weight scales, one per output channel (per group for depthwise)
    <layer> s                     the scale of that layer's bottom blob
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError, SpecError
from edgepack.quantize.calibration import BlobStats
from edgepack.quantize.ncnn_model import Blob, Layer, ParamFile, raw, read_bin, tagged_fp16, tagged_int8, write_bin

log = logging.getLogger(__name__)
QUANTIZABLE = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
FUSABLE = ("Convolution", "ConvolutionDepthWise")


@dataclass
class Table:
    weight_scales: dict[str, np.ndarray]
    blob_scales: dict[str, float]

    def text(self) -> str:
        lines = [f"{name}_param_0 " + " ".join(f"{s:.9g}" for s in scales) for name, scales in self.weight_scales.items()]
        lines += [f"{name} {scale:.9g}" for name, scale in self.blob_scales.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, source: str = "table") -> "Table":
        weights: dict[str, np.ndarray] = {}
        blobs: dict[str, float] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, *values = line.split()
            try:
                floats = np.array([float(v) for v in values], np.float32)
            except ValueError:
                raise SpecError(f"{source} line {number}: scales must be numbers") from None
            if not len(floats):
                raise SpecError(f"{source} line {number}: '{key}' has no scale")
            if key.endswith("_param_0"):
                weights[key[: -len("_param_0")]] = floats
            else:
                blobs[key] = float(floats[0])
        return cls(weights, blobs)


def _is_6bit(layer: Layer) -> bool:
    """ncnn's int8 Winograd F(4,3) kernels need 6-bit weights for 3x3 stride-1 dilation-1 convs."""
    kw = int(layer.get(1, 0))
    kh = int(layer.get(11, kw))
    dw = int(layer.get(2, 1))
    dh = int(layer.get(12, dw))
    sw = int(layer.get(3, 1))
    sh = int(layer.get(13, sw))
    return layer.type == "Convolution" and (kw, kh, dw, dh, sw, sh) == (3, 3, 1, 1, 1, 1)


def weight_scales(layer: Layer, weights: np.ndarray) -> np.ndarray:
    """Per output channel (per group for depthwise): 127/absmax, or 31/absmax for 6-bit convs."""
    groups = int(layer.get(7, 1)) if layer.type == "ConvolutionDepthWise" else int(layer.get(0, 0))
    chunks = weights.reshape(groups, -1)
    absmax = np.abs(chunks).max(axis=1)
    top = 31.0 if _is_6bit(layer) else 127.0
    return np.where(absmax == 0, 1.0, top / np.where(absmax == 0, 1.0, absmax)).astype(np.float32)


def quantize_weights(weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """round half away from zero of w * scale, clamped to [-127, 127], in the original order."""
    chunks = weights.reshape(len(scales), -1).astype(np.float64) * scales[:, None]
    rounded = np.sign(chunks) * np.floor(np.abs(chunks) + 0.5)
    return np.clip(rounded, -127, 127).astype(np.int8).ravel()


def calibrate(
    param_path: Path,
    bin_path: Path,
    input_blob: str,
    calibration: np.ndarray,
    method: str,
    skip: set[str] = frozenset(),
) -> Table:
    """Weight scales from the fp32 weights; bottom-blob scales from the calibration images run
    through the fp32 model on the ncnn runtime itself."""
    import ncnn

    from edgepack.formats.ncnn import strict_fp32

    param = ParamFile.read(param_path)
    per_layer = read_bin(param, bin_path)
    layers = [(i, l) for i, l in enumerate(param.layers) if l.type in QUANTIZABLE and l.name not in skip and not l.get(19, 0)]
    table = Table({}, {})
    for i, layer in layers:
        table.weight_scales[layer.name] = weight_scales(layer, per_layer[i][0].floats())
    net = ncnn.Net()
    strict_fp32(net.opt)
    net.opt.num_threads = 2
    net.load_param(str(param_path))
    net.load_model(str(bin_path))
    stats = {layer.name: BlobStats() for _, layer in layers}
    rng = np.random.default_rng(0)
    for pass_index in (0, 1):
        for x in calibration:
            ex = net.create_extractor()
            ex.set_light_mode(False)  # keep intermediate blobs to extract several
            data = np.ascontiguousarray(x[0], np.float32)
            ex.input(input_blob, ncnn.Mat(data))
            for _, layer in layers:
                ret, mat = ex.extract(layer.bottoms[0])
                if ret != 0:
                    raise ConversionError(f"ncnn int8: cannot extract blob {layer.bottoms[0]} during calibration")
                values = np.array(mat)
                if pass_index == 0:
                    stats[layer.name].add_absmax(values)
                else:
                    stats[layer.name].add_histogram(values, rng)
    for _, layer in layers:
        table.blob_scales[layer.name] = stats[layer.name].scale(method)
    return table


def apply_table(param_path: Path, bin_path: Path, table: Table, out_param: Path, out_bin: Path) -> dict[str, Any]:
    """The ncnn2int8 rewrite: int8 weights with their scales for every layer that has both
    scales in the table; requantize fusion between quantized convs; other weights to fp16."""
    param = ParamFile.read(param_path)
    per_layer = read_bin(param, bin_path)
    quantized = {
        l.name for l in param.layers if l.type in QUANTIZABLE and l.name in table.weight_scales and l.name in table.blob_scales
    }
    unknown = (set(table.weight_scales) | set(table.blob_scales)) - {l.name for l in param.layers}
    if unknown:
        raise SpecError(f"ncnn int8 table names layers the model does not have: {', '.join(sorted(unknown)[:5])}")
    new_bin: list[list[Blob]] = []
    fused = 0
    for layer, blobs in zip(param.layers, per_layer):
        if layer.name not in quantized:
            # ncnn2int8 stores every remaining tagged fp32 weight as fp16 (storage_type=1)
            new_bin.append([tagged_fp16(b.floats()) if b.is_tagged_fp32() else b for b in blobs])
            continue
        weights = blobs[0].floats()
        scales = table.weight_scales[layer.name]
        expected = int(layer.get(7, 1)) if layer.type == "ConvolutionDepthWise" else int(layer.get(0, 0))
        if len(scales) != expected:
            raise SpecError(f"ncnn int8 table: {layer.name} has {len(scales)} weight scales, the layer needs {expected}")
        term = 1 if layer.type == "ConvolutionDepthWise" else 2
        top_scale = _fused_top_scale(param, layer, quantized, table)
        if top_scale is not None:
            term += 100
            fused += 1
        layer.set(8, term)
        param.mark_edited(layer)
        new_blobs = [tagged_int8(quantize_weights(weights, scales))]
        new_blobs += blobs[1:]  # bias, if any: raw fp32, unchanged
        new_blobs += [raw(scales), raw(np.array([table.blob_scales[layer.name]]))]
        if top_scale is not None:
            new_blobs.append(raw(np.array([top_scale])))
        new_bin.append(new_blobs)
    out_param.write_text(param.text())
    write_bin(new_bin, out_bin)
    return {"int8_layers": len(quantized), "requantize_fused": fused}


def _fused_top_scale(param: ParamFile, layer: Layer, quantized: set[str], table: Table) -> float | None:
    """ncnn2int8's fuse_requantize: a quantized conv whose output feeds only quantized convs
    (directly, or through a Split whose every consumer is one) writes int8 output."""
    if layer.type not in FUSABLE:
        return None
    consumers = param.consumers(layer.tops[0])
    if len(consumers) != 1:
        return None
    nxt = consumers[0]
    if nxt.type == "Split":
        after = [c for top in nxt.tops for c in param.consumers(top)]
        if after and all(c.type in FUSABLE and c.name in quantized for c in after):
            return table.blob_scales[after[0].name]
        return None
    if nxt.type in FUSABLE and nxt.name in quantized:
        return table.blob_scales[nxt.name]
    return None


def head_and_stem_layers(param: ParamFile, input_blob: str) -> set[str]:
    """The first conv (reads the image) and the terminal convs (no conv after them): the layers
    whose quantization hurts most, kept float by the automatic mixed-precision fallback."""
    keep = {l.name for l in param.layers if l.type in QUANTIZABLE and input_blob in l.bottoms}
    for layer in param.layers:
        if layer.type not in QUANTIZABLE:
            continue
        frontier, seen, reaches_conv = list(layer.tops), set(), False
        while frontier and not reaches_conv:
            blob = frontier.pop()
            for consumer in param.consumers(blob):
                if consumer.type in QUANTIZABLE:
                    reaches_conv = True
                    break
                if consumer.name not in seen:
                    seen.add(consumer.name)
                    frontier.extend(consumer.tops)
        if not reaches_conv:
            keep.add(layer.name)
    return keep


def run_ncnn(param: Path, bin_path: Path, input_blob: str, inputs: np.ndarray, fp32: bool) -> np.ndarray:
    """The first output of an ncnn model for each input (N x 1 x C x H x W), stacked."""
    import ncnn

    from edgepack.formats.ncnn import strict_fp32

    net = ncnn.Net()
    if fp32:
        strict_fp32(net.opt)
    net.load_param(str(param))
    net.load_model(str(bin_path))
    outputs = []
    for x in inputs:
        ex = net.create_extractor()
        ex.input(input_blob, ncnn.Mat(np.ascontiguousarray(x[0], np.float32)))
        outputs.append(np.array(ex.extract(net.output_names()[0])[1]))
    return np.stack(outputs)


def _agreement(param: Path, bin_path: Path, reference: tuple[Path, Path], job, input_blob: str, inputs: np.ndarray) -> float:
    """Task agreement of an int8 model with the fp32 ncnn model on some calibration images."""
    from edgepack.validate.validator import TaskSpec, task_agreement, task_outputs

    shape = (len(inputs), *job.model.output_shapes[0])
    fp32 = run_ncnn(*reference, input_blob, inputs, fp32=True).reshape(shape)
    int8 = run_ncnn(param, bin_path, input_blob, inputs, fp32=False).reshape(shape)
    task = TaskSpec.for_job(job)
    result = task_agreement(task, task_outputs(task, [fp32]), task_outputs(task, [int8]))
    return result[1] if result else 1.0


def quantize(job, param: Path, bin_path: Path, input_blob: str) -> tuple[dict[str, Path], dict[str, Any]]:
    """Calibrate, write the table, rewrite to int8; fall back to float stem and head layers when
    the task agreement on calibration images drops below the int8 floor."""
    from edgepack.validate.validator import TASK_FLOOR

    calib = job.spec.calibration
    inputs = job.calibration()
    parsed = ParamFile.read(param)
    skip = set(calib.int8_skip)
    missing = skip - {l.name for l in parsed.layers}
    if missing:
        names = ", ".join(l.name for l in parsed.layers if l.type in QUANTIZABLE)
        raise SpecError(f"--int8-skip names layers the ncnn model does not have: {', '.join(sorted(missing))} (layers: {names})")
    out_dir = job.workdir / "int8"
    out_dir.mkdir()
    out_param, out_bin, out_table = out_dir / "model.ncnn.param", out_dir / "model.ncnn.bin", out_dir / "model.ncnn.table"
    table = calibrate(param, bin_path, input_blob, inputs, calib.method)
    kept: set[str] = set(skip)
    details: dict[str, Any] = {"calibration": {"method": calib.method, "images": int(len(inputs))}}
    applied = _without(table, kept)
    details.update(apply_table(param, bin_path, applied, out_param, out_bin))
    check = inputs[: min(len(inputs), 16)]
    agreement = _agreement(out_param, out_bin, (param, bin_path), job, input_blob, check)
    if calib.auto_mixed and agreement < TASK_FLOOR["int8"]:
        extra = head_and_stem_layers(parsed, input_blob) - kept
        log.warning("ncnn int8: task agreement %.3f on calibration images; keeping %s in float", agreement, sorted(extra))
        kept |= extra
        applied = _without(table, kept)
        details.update(apply_table(param, bin_path, applied, out_param, out_bin))
        details["mixed_precision"] = {"reason": f"task agreement {agreement:.3f} < {TASK_FLOOR['int8']}", "before": agreement}
        agreement = _agreement(out_param, out_bin, (param, bin_path), job, input_blob, check)
    details["float_layers"] = sorted(kept)
    if calib.explain:
        details["sensitivity"] = sensitivity(param, bin_path, table, input_blob, check[:4], job.workdir / "explain")
    details["calibration"]["task_agreement_on_calibration"] = round(agreement, 4)
    # the table keeps every layer; the ones kept in float are commented out, as a user would
    out_table.write_text(_table_text(table, kept))
    return {"param": out_param, "bin": out_bin, "table": out_table}, details


def _without(table: Table, names: set[str]) -> Table:
    return Table(
        {k: v for k, v in table.weight_scales.items() if k not in names},
        {k: v for k, v in table.blob_scales.items() if k not in names},
    )


def _table_text(table: Table, float_layers: set[str]) -> str:
    lines = []
    for line in table.text().splitlines():
        key = line.split()[0]
        name = key[: -len("_param_0")] if key.endswith("_param_0") else key
        lines.append(f"#{line}" if name in float_layers else line)
    return "\n".join(lines) + "\n"


def sensitivity(param: Path, bin_path: Path, table: Table, input_blob: str, inputs: np.ndarray, folder: Path) -> list[dict]:
    """Quantize one layer at a time and measure how far the output moves (worst PSNR first;
    cosine alone barely moves on detector outputs dominated by box coordinates)."""
    from edgepack.validate.metrics import cosine, psnr

    folder.mkdir()
    reference = run_ncnn(param, bin_path, input_blob, inputs, fp32=True)
    rows = []
    for name in table.weight_scales:
        only = Table({name: table.weight_scales[name]}, {name: table.blob_scales[name]})
        apply_table(param, bin_path, only, folder / "one.param", folder / "one.bin")
        quantized = run_ncnn(folder / "one.param", folder / "one.bin", input_blob, inputs, fp32=False)
        rows.append({"layer": name, "psnr": round(psnr(quantized, reference), 2), "cosine": round(cosine(quantized, reference), 9)})
    return sorted(rows, key=lambda r: r["psnr"])
