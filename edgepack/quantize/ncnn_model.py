"""Read and write ncnn's .param (text) and .bin files without losing a byte.

The .bin has no index: each layer reads its blobs in `load_model` order, so walking it needs
each weight-bearing layer type's load sequence. `tagged` blobs start with a 4-byte storage tag
(fp32 / fp16 / int8 / lookup table); `raw` blobs are plain float32 with no tag.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepack.errors import ConversionError

MAGIC = "7767517"
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32 = 0x0002C056


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: list[tuple[str, str]]  # (key, value) text tokens in file order

    def get(self, key: int, default: float | int) -> float | int:
        for k, v in self.params:
            if k == str(key):
                return float(v) if any(c in v for c in ".eE") else int(v)
        return default

    def set(self, key: int, value: int) -> None:
        for i, (k, _) in enumerate(self.params):
            if k == str(key):
                self.params[i] = (k, str(value))
                return
        self.params.append((str(key), str(value)))

    def line(self, widths: tuple[int, int] = (24, 24)) -> str:
        head = f"{self.type:<{widths[0]}} {self.name:<{widths[1]}} {len(self.bottoms)} {len(self.tops)}"
        rest = " ".join(self.bottoms + self.tops + [f"{k}={v}" for k, v in self.params])
        return f"{head} {rest}".rstrip()


@dataclass
class ParamFile:
    layers: list[Layer]
    blob_count: int
    raw_lines: list[str] = field(default_factory=list)  # the original layer lines, for round trips
    edited: set[int] = field(default_factory=set)

    @classmethod
    def read(cls, path: Path) -> "ParamFile":
        lines = path.read_text().splitlines()
        if not lines or lines[0].strip() != MAGIC:
            raise ConversionError(f"ncnn: {path.name} is not an ncnn text param file")
        _, blob_count = (int(v) for v in lines[1].split())
        layers, raw = [], []
        for line in lines[2:]:
            if not line.strip():
                continue
            tokens = line.split()
            n_bottom, n_top = int(tokens[2]), int(tokens[3])
            blobs = tokens[4 : 4 + n_bottom + n_top]
            params = [tuple(t.split("=", 1)) for t in tokens[4 + n_bottom + n_top :]]
            layers.append(Layer(tokens[0], tokens[1], blobs[:n_bottom], blobs[n_bottom:], params))  # type: ignore[arg-type]
            raw.append(line)
        return cls(layers, blob_count, raw)

    def text(self) -> str:
        out = [MAGIC, f"{len(self.layers)} {self.blob_count}"]
        for i, layer in enumerate(self.layers):
            out.append(self.raw_lines[i] if i not in self.edited and i < len(self.raw_lines) else layer.line())
        return "\n".join(out) + "\n"

    def mark_edited(self, layer: Layer) -> None:
        self.edited.add(self.layers.index(layer))

    def consumers(self, blob: str) -> list[Layer]:
        return [layer for layer in self.layers if blob in layer.bottoms]


@dataclass
class Blob:
    kind: str  # "tagged" | "raw"
    count: int  # number of elements
    data: bytes  # exactly as stored, tag included

    def is_tagged_fp32(self) -> bool:
        return self.kind == "tagged" and struct.unpack("<I", self.data[:4])[0] in (0, TAG_FP32)

    def floats(self) -> np.ndarray:
        """The values as float32, whatever the storage."""
        if self.kind == "raw":
            return np.frombuffer(self.data, np.float32, self.count)
        tag = struct.unpack("<I", self.data[:4])[0]
        body = self.data[4:]
        if tag in (0, TAG_FP32):
            return np.frombuffer(body, np.float32, self.count)
        if tag == TAG_FP16:
            return np.frombuffer(body, np.float16, self.count).astype(np.float32)
        raise ConversionError(f"ncnn: weights with storage tag {tag:#x} cannot be re-quantized")


def _align4(n: int) -> int:
    return (n + 3) & ~3


def tagged_fp32(values: np.ndarray) -> Blob:
    return Blob("tagged", values.size, struct.pack("<I", 0) + values.astype("<f4").tobytes())


def tagged_fp16(values: np.ndarray) -> Blob:
    body = values.astype("<f2").tobytes()
    return Blob("tagged", values.size, struct.pack("<I", TAG_FP16) + body + b"\0" * (_align4(len(body)) - len(body)))


def tagged_int8(values: np.ndarray) -> Blob:
    body = values.astype(np.int8).tobytes()
    return Blob("tagged", values.size, struct.pack("<I", TAG_INT8) + body + b"\0" * (_align4(len(body)) - len(body)))


def raw(values: np.ndarray) -> Blob:
    values = np.asarray(values, dtype="<f4").ravel()
    return Blob("raw", values.size, values.tobytes())


def _read_tagged(buf: memoryview, pos: int, count: int) -> tuple[Blob, int]:
    tag = struct.unpack_from("<I", buf, pos)[0]
    if tag == TAG_FP16:
        size = 4 + _align4(count * 2)
    elif tag == TAG_INT8:
        size = 4 + _align4(count)
    elif tag in (0, TAG_FP32):
        size = 4 + count * 4
    else:  # legacy 256-entry lookup table plus uint8 indices
        size = 4 + 256 * 4 + _align4(count)
    return Blob("tagged", count, bytes(buf[pos : pos + size])), pos + size


# Layers that read nothing from the .bin.
WEIGHTLESS = {
    "AbsVal", "BinaryOp", "BNLL", "Cast", "Clip", "Concat", "Crop", "CumulativeSum", "Deconvolution_dynamic",
    "Dequantize", "Dropout", "ELU", "Eltwise", "Erf", "Exp", "ExpandDims", "Flatten", "Fold", "GELU", "GLU",
    "Gather", "GridSample", "HardSigmoid", "HardSwish", "Input", "Interp", "Log", "LRN", "MatMul", "Mish",
    "Noop", "Normalize", "Packing", "Padding", "Permute", "PixelShuffle", "Pooling", "Pooling1D", "Pooling3D",
    "Power", "Quantize", "Reduction", "ReLU", "Reorg", "Requantize", "Reshape", "RMSNorm_noaffine", "SELU",
    "ShuffleChannel", "Sigmoid", "Slice", "Softmax", "Softplus", "Split", "Squeeze", "Swish", "TanH",
    "Threshold", "Tile", "UnaryOp", "Unfold", "CopyTo", "Diag", "Shrink", "Spectrogram", "InverseSpectrogram",
}


def load_sequence(layer: Layer) -> list[tuple[str, int]]:
    """(kind, element count) of each blob the layer's load_model reads, in order."""
    t, g = layer.type, layer.get
    if t in WEIGHTLESS:
        return []
    if t in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise",
             "Convolution1D", "Convolution3D", "Deconvolution1D", "Deconvolution3D", "ConvolutionDepthWise1D",
             "ConvolutionDepthWise3D", "DeconvolutionDepthWise1D", "DeconvolutionDepthWise3D"):
        if g(19, 0):  # dynamic weight: comes from a blob at run time
            return []
        num_output = int(g(0, 0))
        seq = [("tagged", int(g(6, 0)))]
        if g(5, 0):
            seq.append(("raw", num_output))
        term = int(g(8, 0))
        if term and t in ("Convolution", "InnerProduct"):
            seq += [("raw", num_output), ("raw", 1)]
        elif term in (1, 101) and t == "ConvolutionDepthWise":
            seq += [("raw", int(g(7, 1))), ("raw", 1)]
        elif term in (2, 102) and t == "ConvolutionDepthWise":
            seq += [("raw", 1), ("raw", 1)]
        elif term:
            raise ConversionError(f"ncnn: int8 {t} layer '{layer.name}' is not supported by the rewriter")
        if term > 100:
            seq.append(("raw", 1))
        return seq
    if t == "InnerProduct":
        num_output = int(g(0, 0))
        seq = [("tagged", int(g(2, 0)))]
        if g(1, 0):
            seq.append(("raw", num_output))
        if int(g(8, 0)):
            seq += [("raw", num_output), ("raw", 1)]
        return seq
    if t == "BatchNorm":
        return [("raw", int(g(0, 0)))] * 4
    if t == "Scale":
        size = int(g(0, 0))
        return ([] if size == -233 else [("raw", size)]) + ([("raw", size)] if g(1, 0) else [])
    if t == "Bias":
        return [("raw", int(g(0, 0)))]
    if t == "PReLU":
        return [("raw", int(g(0, 0)))]
    if t == "MemoryData":
        dims = [int(g(k, 0)) for k in (0, 1, 11, 2)]
        count = int(np.prod([d for d in dims if d])) if any(dims) else 0
        return [("raw" if int(g(21, 1)) == 1 else "tagged", count)] if count else []
    if t == "LayerNorm":
        return [("raw", int(g(0, 0)))] * 2 if g(2, 1) else []
    if t == "InstanceNorm":
        return [("raw", int(g(0, 0)))] * 2 if g(2, 1) else []
    if t == "GroupNorm":
        return [("raw", int(g(1, 0)))] * 2 if g(3, 1) else []
    if t == "Embed":
        seq = [("tagged", int(g(3, 0)))]
        return seq + ([("raw", int(g(0, 0)))] if g(2, 0) else [])
    raise ConversionError(
        f"ncnn: int8 rewrite does not know the weights of layer type {t} ('{layer.name}')",
        "keep this model in fp16, or open an issue with the layer type",
    )


def read_bin(param: ParamFile, path: Path) -> list[list[Blob]]:
    """The .bin split into each layer's blobs (same order as param.layers)."""
    data = path.read_bytes()
    buf = memoryview(data)
    pos = 0
    per_layer: list[list[Blob]] = []
    for layer in param.layers:
        blobs = []
        for kind, count in load_sequence(layer):
            if kind == "raw":
                blobs.append(Blob("raw", count, bytes(buf[pos : pos + 4 * count])))
                pos += 4 * count
            else:
                blob, pos = _read_tagged(buf, pos, count)
                blobs.append(blob)
        per_layer.append(blobs)
    if pos != len(data):
        raise ConversionError(f"ncnn: {path.name} has {len(data) - pos} bytes the param file does not account for")
    return per_layer


def write_bin(per_layer: list[list[Blob]], path: Path) -> None:
    with open(path, "wb") as f:
        for blobs in per_layer:
            for blob in blobs:
                f.write(blob.data)
