"""ncnn int8: the calibration table (what ncnn2table writes) and the param/bin rewrite (what
ncnn2int8 does), neither of which the ncnn pip wheel ships.

Table format (text, one line per entry; a line starting with '#' is ignored, so commenting a
layer's lines keeps that layer in float):
    <layer>_param_0 s_0 s_1 ...   weight scales, one per output channel (per group for depthwise)
    <layer> s                     the scale of that layer's bottom blob
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError, SpecError
from edgepack.quantize.calibration import METHODS, BlobStats
from edgepack.quantize.ncnn_model import Blob, Layer, ParamFile, raw, read_bin, tagged_fp16, tagged_int8, write_bin

log = logging.getLogger(__name__)
QUANTIZABLE = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
FUSABLE = ("Convolution", "ConvolutionDepthWise")


@dataclass
class Table:
    weight_scales: dict[str, np.ndarray]
    blob_scales: dict[str, float]
    # per layer: the measured blob, its absmax, the chosen threshold and the share of values it clips
    ranges: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int = 0  # single-threaded ncnn nets the calibration ran in parallel

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


def calibration_blobs(param: ParamFile, layers: list[Layer]) -> dict[str, str]:
    """Layer name -> the blob whose statistics give its bottom scale. A Split's outputs hold the
    same values as its input, so layers reading different outputs of one Split share one blob
    (extracted and measured once)."""
    producer = {top: layer for layer in param.layers for top in layer.tops}
    result = {}
    for layer in layers:
        blob = layer.bottoms[0]
        while blob in producer and producer[blob].type == "Split":
            blob = producer[blob].bottoms[0]
        result[layer.name] = blob
    return result


def calibrate(
    param_path: Path,
    bin_path: Path,
    input_blob: str,
    calibration: np.ndarray,
    method: str,
    skip: set[str] = frozenset(),
    threads: int | None = None,
    histograms: bool | None = None,
) -> Table:
    """Weight scales from the fp32 weights; bottom-blob scales from the calibration images run
    once through the fp32 model on the ncnn runtime itself (one pass: absmax and, for
    percentile/kl or when `histograms` is set, the histogram of |x| together)."""
    import ncnn

    from edgepack.formats.ncnn import strict_fp32

    if method not in METHODS:
        raise SpecError(f"calibration method {method!r} is not valid (choose from: {', '.join(METHODS)})")
    param = ParamFile.read(param_path)
    per_layer = read_bin(param, bin_path)
    layers = [(i, l) for i, l in enumerate(param.layers) if l.type in QUANTIZABLE and l.name not in skip and not l.get(19, 0)]
    table = Table({}, {})
    for i, layer in layers:
        table.weight_scales[layer.name] = weight_scales(layer, per_layer[i][0].floats())
    blob_of = calibration_blobs(param, [l for _, l in layers])
    # extraction in the order the blobs are produced, as ncnn2table does (light mode frees the rest)
    order = {top: index for index, layer in enumerate(param.layers) for top in layer.tops}
    blobs = sorted(set(blob_of.values()), key=lambda b: order.get(b, -1))
    want_histograms = method != "minmax" if histograms is None else histograms

    def load():
        net = ncnn.Net()
        strict_fp32(net.opt)
        net.opt.num_threads = 1
        net.load_param(str(param_path))
        net.load_model(str(bin_path))
        return net

    next_image, take_lock, failed = itertools.count(), threading.Lock(), threading.Event()

    def measure(_worker: int) -> dict[str, BlobStats]:
        try:
            return measure_until_done()
        except BaseException:
            failed.set()  # the other nets stop at their next image too
            raise

    def measure_until_done() -> dict[str, BlobStats]:
        net, stats = load(), {blob: BlobStats(histogram=want_histograms) for blob in blobs}
        while True:
            with take_lock:
                index = next(next_image)
            if index >= len(calibration) or failed.is_set():
                return stats
            x = calibration[index]
            ex = net.create_extractor()
            ex.set_light_mode(True)
            ex.input(input_blob, ncnn.Mat(np.ascontiguousarray(x[0], np.float32)))
            for blob in blobs:
                stats[blob].add(_blob_values(ex, blob))

    # one single-threaded net per core, each taking the next image until none is left, merged at
    # the end: ncnn and numpy release the GIL, no OpenMP threads spin waiting for each other (with
    # one net on all cores a busy machine made 2 threads 50x slower than 1), and a core slowed by
    # other work takes fewer images instead of holding up the end. The statistics do not depend on
    # which net saw which image (calibration.BlobStats), so the table is the same on any machine.
    workers = max(1, min(threads or os.cpu_count() or 1, len(calibration)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        try:
            parts = list(pool.map(measure, range(workers)))
        except BaseException:  # Ctrl-C or SIGTERM here: the nets stop at their next image
            failed.set()
            raise
    stats = parts[0]
    for part in parts[1:]:
        for blob, blob_stats in part.items():
            stats[blob].merge(blob_stats)
    table.threads = workers
    for _, layer in layers:
        blob_stats = stats[blob_of[layer.name]]
        threshold = blob_stats.threshold(method)
        table.blob_scales[layer.name] = 1.0 if threshold == 0 else 127.0 / max(threshold, 1e-12)
        table.ranges[layer.name] = {
            "blob": blob_of[layer.name],
            "absmax": blob_stats.absmax,
            "threshold": threshold,
            "clipped": blob_stats.clipped_fraction(threshold) if blob_stats.fine is not None else 0.0,
        }
    return table


def _blob_values(extractor: Any, blob: str) -> np.ndarray:
    """Every value of a blob as fp32, in ncnn's memory order (the statistics do not depend on it).
    ncnn's default extraction unpacks a packed blob (4, 8 or 16 channels interleaved) into a new
    Mat, 1 s of a 10 s calibration at 640; extracted as the layer left it, the blob is only
    copied (ncnn clones what its pool owns, so the memory is ours). The Python binding cannot
    show a packed Mat to numpy, but a packed fp32 Mat is `c` channel groups of w x h x d x
    elempack floats, one group every cstep x elempack floats: described so, as a 2-D fp32 Mat,
    numpy reads it without another copy."""
    import ncnn

    def extracted(kind: int) -> Any:
        mat = ncnn.Mat()
        if extractor.extract(blob, mat, kind) != 0 or mat.dims == 0:
            raise ConversionError(f"ncnn int8: cannot extract blob {blob} during calibration")
        return mat

    mat = extracted(1)  # 1: as the layer left it (packed, and fp32 with strict fp32 options)
    if mat.elemsize != 4 * mat.elempack:  # fp16/bf16 storage slipped through: ncnn converts to fp32
        mat = extracted(0)
    if mat.elempack == 1:
        return np.asarray(mat)
    per_group = mat.w * mat.h * mat.d * mat.elempack
    groups, stride = (mat.c, mat.cstep * mat.elempack) if mat.dims >= 3 else (1, per_group)
    mat.dims, mat.w, mat.h, mat.d, mat.c, mat.elemsize, mat.elempack = 2, stride, groups, 1, 1, 4, 1
    return np.asarray(mat)[:, :per_group]  # the view holds `mat`, which holds the copy


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
    net.opt.num_threads = 1  # many small runs: one thread is never slowed by spinning peers on a busy machine
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


def _check(job, param: Path, bin_path: Path, input_blob: str, output_blobs: list[str]):
    """The int8 check (quantize/agreement.py) of an ncnn int8 model against the ONNX reference."""
    from edgepack.formats.ncnn import NcnnRunner
    from edgepack.quantize.agreement import artifact_entry, check_runner

    entry = {**artifact_entry(job, "int8"), "ncnn": {"input_blob": input_blob, "output_blobs": output_blobs}}
    return check_runner(job, NcnnRunner(param, bin_path, entry, 1))  # one thread: never slowed by spinning peers


def quantize(job, param: Path, bin_path: Path, input_blob: str, output_blobs: list[str]) -> tuple[dict[str, Path], dict[str, Any]]:
    """Calibrate (min-max unless asked otherwise), write the table, rewrite to int8; fall back to
    float stem and head layers when the int8 check (box F1 on images with objects, class-score
    channels apart) fails."""
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
    start = time.perf_counter()
    table = calibrate(param, bin_path, input_blob, inputs, calib.method, histograms=calib.explain or None)
    seconds = time.perf_counter() - start
    kept: set[str] = set(skip)
    details: dict[str, Any] = {
        "calibration": {"method": calib.method, "images": int(len(inputs)), "seconds": round(seconds, 2), "threads": table.threads}
    }
    details.update(apply_table(param, bin_path, _without(table, kept), out_param, out_bin))
    check = _check(job, out_param, out_bin, input_blob, output_blobs)
    if calib.auto_mixed and not check.passed:
        from edgepack.quantize.agreement import at_least_as_good

        extra = head_and_stem_layers(parsed, input_blob) - kept
        log.warning("ncnn int8: %s; keeping %s in float", "; ".join(check.reasons), sorted(extra))
        before, first_kept = check, set(kept)
        kept |= extra
        details.update(apply_table(param, bin_path, _without(table, kept), out_param, out_bin))
        details["mixed_precision"] = {"reason": "; ".join(check.reasons), "before": check.record()}
        check = _check(job, out_param, out_bin, input_blob, output_blobs)
        if not check.passed and at_least_as_good(before, check):  # the fallback did no better: keep the first
            details["mixed_precision"].update(kept="the plain int8 model (float stem/heads did no better)", fallback=check.record())
            kept, check = first_kept, before
            details.update(apply_table(param, bin_path, _without(table, kept), out_param, out_bin))
    details["float_layers"] = sorted(kept)
    if calib.explain:
        details["sensitivity"] = sensitivity(param, bin_path, table, input_blob, check_inputs(job)[:4], job.workdir / "explain")
    details["calibration"]["int8_check"] = check.record()
    details["calibration"]["task_agreement_on_calibration"] = round(check.value, 4)
    # the table keeps every layer; the ones kept in float are commented out, as a user would
    out_table.write_text(_table_text(table, kept))
    return {"param": out_param, "bin": out_bin, "table": out_table}, details


def check_inputs(job) -> np.ndarray:
    from edgepack.quantize.agreement import check_images

    return check_images(job)[0]


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
    cosine alone barely moves on detector outputs dominated by box coordinates), with the blob's
    absmax, the chosen clipping threshold and the share of its values that threshold clips."""
    from edgepack.validate.metrics import cosine, psnr

    folder.mkdir()
    reference = run_ncnn(param, bin_path, input_blob, inputs, fp32=True)
    rows = []
    for name in table.weight_scales:
        only = Table({name: table.weight_scales[name]}, {name: table.blob_scales[name]})
        apply_table(param, bin_path, only, folder / "one.param", folder / "one.bin")
        quantized = run_ncnn(folder / "one.param", folder / "one.bin", input_blob, inputs, fp32=False)
        ranges = table.ranges.get(name, {})
        rows.append({
            "layer": name, "psnr": round(psnr(quantized, reference), 2), "cosine": round(cosine(quantized, reference), 9),
            "absmax": round(float(ranges.get("absmax", 127.0 / table.blob_scales[name])), 6),
            "threshold": round(127.0 / table.blob_scales[name], 6),
            "clipped_percent": round(100 * float(ranges.get("clipped", 0.0)), 4),
        })
    return sorted(rows, key=lambda r: r["psnr"])
