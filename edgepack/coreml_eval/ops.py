"""The op table: one numpy function per ML Program operation, registered by its MIL name.

Semantics follow the MIL op definitions of coremltools 9 (`coremltools.converters.mil.mil.ops.defs`,
iOS15..iOS18 opsets). A function receives `Args` (the op's inputs as numpy values, in the dtypes
the program stores) and returns its output(s); the runner then casts each output to the dtype the
program declares and checks its shape against the declared one.

Arithmetic: floating inputs are read as float32 (`Args.f`), so every op computes in float32 and
fp16 ops are rounded to float16 once, when the runner stores the output. For single arithmetic
ops that is exactly numpy's own float16 arithmetic (which also computes in float32 and rounds);
convolutions and matrix products accumulate in float32 and round the result to fp16, as Apple's
GPU and Neural Engine kernels accumulate in wider precision than their fp16 storage. Composite ops
(softmax, normalizations, gelu) round once at the end, so they are slightly more accurate than a
device that rounds intermediate values: the evaluator checks the graph and the weights, not
Apple's kernels.

Adding an op: write `def my_op(a: Args)` and decorate it with `@op("my_op")`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

OPS: dict[str, Callable[["Args"], Any]] = {}
_HALF_AND_SINGLE = {np.dtype(np.float16), np.dtype(np.float32)}


def as_dtype(value: Any, dtype: Any) -> np.ndarray:
    """`value` as a numpy array of `dtype`. float32 <-> float16 goes through torch when this process
    has already imported it: the same round-to-nearest-even bits as numpy's cast (tested), about 7x
    faster -- numpy's is a scalar loop, and fp16 programs spent two thirds of their evaluation time
    in it. torch is never imported for this (`edgepack validate` reads Core ML without it)."""
    value = np.asarray(value)
    dtype = np.dtype(dtype)
    torch = sys.modules.get("torch")
    if (torch is not None and value.dtype != dtype and {value.dtype, dtype} == _HALF_AND_SINGLE
            and value.size >= 4096 and value.flags.c_contiguous and value.flags.writeable):
        return torch.from_numpy(value).to(torch.float16 if dtype == np.float16 else torch.float32).numpy()
    return value.astype(dtype, copy=False)


def op(*names: str) -> Callable[[Callable[["Args"], Any]], Callable[["Args"], Any]]:
    def register(fn: Callable[["Args"], Any]) -> Callable[["Args"], Any]:
        for name in names:
            OPS[name] = fn
        return fn

    return register


@dataclass
class Args:
    type: str  # the op's MIL name
    values: dict[str, Any]  # input name -> numpy array, or a tuple of arrays for variadic inputs
    out_dtypes: list[Any]  # declared numpy dtype of each output
    out_shapes: list[tuple[int, ...] | None]  # declared static shape of each output (None if symbolic)

    def __contains__(self, name: str) -> bool:
        return self.values.get(name) is not None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def f(self, name: str) -> np.ndarray:
        """The input as float32 (the compute type of every float op)."""
        return as_dtype(self.values[name], np.float32)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def scalar(self, name: str, default: Any = None) -> Any:
        """A scalar input as a Python value (str, bool, int or float)."""
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        return np.asarray(value).reshape(-1)[0].item()

    def ints(self, name: str, default: Any = None) -> list[int] | None:
        value = self.values.get(name)
        return default if value is None else [int(v) for v in np.asarray(value).reshape(-1)]

    def bools(self, name: str, size: int, default: bool = False) -> list[bool]:
        value = self.values.get(name)
        return [default] * size if value is None else [bool(v) for v in np.asarray(value).reshape(-1)]

    @property
    def floating(self) -> bool:
        return np.issubdtype(np.dtype(self.out_dtypes[0]), np.floating)

    def num(self, name: str) -> np.ndarray:
        """The input in the op's compute type: float32 for float ops, its own dtype otherwise."""
        return self.f(name) if self.floating else np.asarray(self.values[name])


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# --- constants -------------------------------------------------------------------------------------


@op("const")
def const(a: Args) -> Any:
    return a["val"]


@op("identity")
def identity(a: Args) -> np.ndarray:
    return a["x"]


def _broadcast_along(values: np.ndarray, rank: int, axis: int | None) -> np.ndarray:
    """A per-axis vector (scale, zero point) shaped to broadcast against a rank-`rank` tensor."""
    values = np.asarray(values)
    if values.ndim == 0 or values.size == 1 and values.ndim <= 1:
        return values.reshape(())
    if values.ndim == rank:
        return values
    shape = [1] * rank
    shape[_axis(int(axis or 0), rank)] = values.size
    return values.reshape(shape)


@op("constexpr_affine_dequantize")
def constexpr_affine_dequantize(a: Args) -> np.ndarray:
    data = np.asarray(a["quantized_data"])
    axis = a.scalar("axis", 0)
    scale = _broadcast_along(np.asarray(a["scale"], np.float32), data.ndim, axis)
    zero = _broadcast_along(np.asarray(a["zero_point"], np.float32), data.ndim, axis)
    return scale * (data.astype(np.float32) - zero)


def _block_expand(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat a per-block tensor (same rank as `shape`, each dim dividing it) to `shape`."""
    out = np.asarray(values)
    for axis, (size, blocks) in enumerate(zip(shape, out.shape)):
        if blocks != size:
            out = np.repeat(out, size // blocks, axis=axis)
    return out


@op("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(a: Args) -> np.ndarray:
    data = np.asarray(a["data"]).astype(np.float32)
    scale = _block_expand(np.asarray(a["scale"], np.float32), data.shape)
    if "offset" in a:
        data = data - _block_expand(np.asarray(a["offset"], np.float32), data.shape)
    return scale * data


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """LSB-first bit fields, as the iOS16 constexpr ops pack indices and masks."""
    bits = np.unpackbits(np.asarray(packed, np.uint8).reshape(-1), bitorder="little")
    bits = bits[: count * nbits].reshape(count, nbits).astype(np.int64)
    return (bits << np.arange(nbits)).sum(axis=1)


@op("constexpr_lut_to_dense")
def constexpr_lut_to_dense(a: Args) -> np.ndarray:
    lut = np.asarray(a["lut"])
    if "shape" in a:  # iOS16: flat LUT, indices packed into bytes
        shape = tuple(a.ints("shape"))
        nbits = int(math.log2(lut.size))
        indices = _unpack_bits(a["indices"], nbits, int(np.prod(shape)))
        return lut.reshape(-1)[indices].reshape(shape)
    # iOS18: lut [*blocks, palettes, vector]; indices already unpacked to their own shape
    indices = np.asarray(a["indices"]).astype(np.int64)
    rank = indices.ndim
    vector = lut.shape[-1]
    groups = lut.shape[:rank]
    block = [s // g for s, g in zip(indices.shape, groups)]
    grid = np.meshgrid(*[np.arange(s) // b for s, b in zip(indices.shape, block)], indexing="ij")
    values = lut[tuple(grid) + (indices,)]  # indices.shape + (vector,)
    if vector == 1:
        return values[..., 0]
    axis = _axis(a.scalar("vector_axis", 0), rank)
    values = np.moveaxis(values, -1, axis + 1)  # the vector lands right after its axis
    shape = list(indices.shape)
    shape[axis] *= vector
    return values.reshape(shape)


@op("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(a: Args) -> np.ndarray:
    nonzero = np.asarray(a["nonzero_data"])
    if "shape" in a:  # iOS16: flat byte mask
        shape = tuple(a.ints("shape"))
        mask = _unpack_bits(a["mask"], 1, int(np.prod(shape))).astype(bool)
    else:
        mask = np.asarray(a["mask"]).astype(bool)
        shape = mask.shape
    out = np.zeros(int(np.prod(shape)), nonzero.dtype)
    out[mask.reshape(-1)] = nonzero.reshape(-1)
    return out.reshape(shape)


@op("constexpr_lut_to_sparse")
def constexpr_lut_to_sparse(a: Args) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(a["indices_mask"]).astype(bool)
    lut = np.asarray(a["lut"])
    dense_indices = np.zeros(mask.shape, np.int64)
    dense_indices[mask] = np.asarray(a["indices_nonzero_data"]).reshape(-1)
    dense = constexpr_lut_to_dense(Args(a.type, {"indices": dense_indices, "lut": lut, "vector_axis": a.get("vector_axis")}, a.out_dtypes, a.out_shapes))
    vector = lut.shape[-1]
    if vector > 1:
        mask = np.repeat(mask, vector, axis=_axis(a.scalar("vector_axis", 0), mask.ndim))
    return mask.astype(np.uint8), dense[mask]


@op("constexpr_sparse_blockwise_shift_scale")
def constexpr_sparse_blockwise_shift_scale(a: Args) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(a["data_mask"]).astype(bool)
    dense = np.zeros(mask.shape, np.float32)
    dense[mask] = np.asarray(a["nonzero_data"], np.float32).reshape(-1)
    values = {"data": dense, "scale": a["scale"], "offset": a.get("offset")}
    dense = constexpr_blockwise_shift_scale(Args(a.type, values, a.out_dtypes, a.out_shapes))
    return mask.astype(np.uint8), dense[mask]


@op("constexpr_cast")
def constexpr_cast(a: Args) -> np.ndarray:
    return np.asarray(a["source_val"], np.float32)


@op("dequantize")
def dequantize(a: Args) -> np.ndarray:
    x = np.asarray(a["input"]).astype(np.float32)
    axis = a.scalar("axis")
    scale = _broadcast_along(np.asarray(a["scale"], np.float32), x.ndim, axis)
    zero = _broadcast_along(np.asarray(a.get("zero_point", 0), np.float32), x.ndim, axis)
    return scale * (x - zero)


@op("quantize")
def quantize(a: Args) -> np.ndarray:
    x = a.f("input")
    axis = a.scalar("axis")
    scale = _broadcast_along(np.asarray(a["scale"], np.float32), x.ndim, axis)
    zero = _broadcast_along(np.asarray(a.get("zero_point", 0), np.float32), x.ndim, axis)
    info = np.iinfo(np.dtype(a.out_dtypes[0]))
    return np.clip(np.round(x / scale) + zero, info.min, info.max)


# --- casts and elementwise ---------------------------------------------------------------------------


@op("cast")
def cast(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    target = np.dtype(a.out_dtypes[0])
    if np.issubdtype(target, np.integer) and np.issubdtype(x.dtype, np.floating):
        return np.trunc(x.astype(np.float32))  # toward zero, as a C cast
    return x


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "floor_div": np.floor_divide,
    "mod": np.mod,
}
_COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}


@op(*_BINARY)
def elementwise_binary(a: Args) -> np.ndarray:
    fn = _BINARY[a.type]
    if a.floating:
        return fn(a.f("x"), a.f("y"))
    x, y = np.asarray(a["x"]).astype(np.int64), np.asarray(a["y"]).astype(np.int64)
    if a.type == "real_div":
        return np.floor_divide(x, y)
    return fn(x, y)


@op(*_COMPARE)
def elementwise_compare(a: Args) -> np.ndarray:
    x, y = np.asarray(a["x"]), np.asarray(a["y"])
    if np.issubdtype(x.dtype, np.floating) or np.issubdtype(y.dtype, np.floating):
        x, y = x.astype(np.float32), y.astype(np.float32)
    return _COMPARE[a.type](x, y)


@op("logical_not")
def logical_not(a: Args) -> np.ndarray:
    return np.logical_not(a["x"])


@op("select")
def select(a: Args) -> np.ndarray:
    return np.where(np.asarray(a["cond"]).astype(bool), a.num("a"), a.num("b"))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7, float32's own resolution);
    numpy has no erf and scipy is not a dependency."""
    x64 = x.astype(np.float64)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x64))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x64) * (1.0 - poly * np.exp(-x64 * x64))).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free logistic


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.float32(0), x)


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "ceil": np.ceil,
    "cos": np.cos,
    "cosh": np.cosh,
    "erf": _erf,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "round": np.round,  # half to even: 0.5 -> 0, as the MIL spec says
    "sign": np.sign,
    "sin": np.sin,
    "sinh": np.sinh,
    "sqrt": np.sqrt,
    "square": np.square,
    "tan": np.tan,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "relu6": lambda x: np.clip(x, np.float32(0), np.float32(6)),
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "softplus": _softplus,
    "softsign": lambda x: x / (np.float32(1) + np.abs(x)),
}


@op(*_UNARY)
def elementwise_unary(a: Args) -> np.ndarray:
    if not a.floating:  # abs/sign/square of int tensors
        return _UNARY[a.type](np.asarray(a["x"]))
    return _UNARY[a.type](a.f("x"))


@op("inverse")
def inverse(a: Args) -> np.ndarray:
    return np.float32(1) / (a.f("x") + np.float32(a.scalar("epsilon", 1e-4)))


@op("log")
def log(a: Args) -> np.ndarray:
    return np.log(a.f("x") + np.float32(a.scalar("epsilon", 1e-45)))


@op("rsqrt")
def rsqrt(a: Args) -> np.ndarray:
    return np.float32(1) / np.sqrt(a.f("x") + np.float32(a.scalar("epsilon", 1e-12)))


@op("clip")
def clip(a: Args) -> np.ndarray:
    return np.minimum(np.maximum(a.f("x"), a.f("alpha")), a.f("beta"))


@op("threshold")
def threshold(a: Args) -> np.ndarray:
    return np.maximum(a.f("x"), a.f("alpha"))


@op("gelu")
def gelu(a: Args) -> np.ndarray:
    x = a.f("x")
    mode = a.scalar("mode", "EXACT")
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(np.float32(1.702) * x)
    return 0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2))))


@op("leaky_relu")
def leaky_relu(a: Args) -> np.ndarray:
    x = a.f("x")
    return np.where(x >= 0, x, a.f("alpha") * x)


@op("elu")
def elu(a: Args) -> np.ndarray:
    x = a.f("x")
    return np.where(x > 0, x, a.f("alpha") * np.expm1(np.minimum(x, 0)))


def _per_channel(values: np.ndarray, rank: int) -> np.ndarray:
    """A [C] parameter broadcast along axis 1 (the channel axis) of a rank-`rank` tensor."""
    values = np.asarray(values, np.float32)
    return values.reshape((1, -1) + (1,) * (rank - 2)) if values.ndim == 1 and values.size > 1 else values


@op("prelu")
def prelu(a: Args) -> np.ndarray:
    x = a.f("x")
    return np.where(x >= 0, x, _per_channel(a["alpha"], x.ndim) * x)


@op("sigmoid_hard")
def sigmoid_hard(a: Args) -> np.ndarray:
    return np.clip(a.f("alpha") * a.f("x") + a.f("beta"), np.float32(0), np.float32(1))


@op("softplus_parametric")
def softplus_parametric(a: Args) -> np.ndarray:
    x = a.f("x")
    return _per_channel(a["alpha"], x.ndim) * _softplus(_per_channel(a["beta"], x.ndim) * x)


@op("scaled_tanh")
def scaled_tanh(a: Args) -> np.ndarray:
    return a.f("alpha") * np.tanh(a.f("beta") * a.f("x"))


@op("linear_activation")
def linear_activation(a: Args) -> np.ndarray:
    return a.f("alpha") * a.f("x") + a.f("beta")


@op("thresholded_relu")
def thresholded_relu(a: Args) -> np.ndarray:
    x = a.f("x")
    return np.where(x > a.f("alpha"), x, np.float32(0))


@op("clamped_relu")
def clamped_relu(a: Args) -> np.ndarray:
    x = a.f("x")
    return np.minimum(a.f("beta"), np.where(x >= 0, x, a.f("alpha") * x))


@op("softmax")
def softmax(a: Args) -> np.ndarray:
    x = a.f("x")
    axis = a.scalar("axis", -1)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --- reductions -------------------------------------------------------------------------------------


def _reduce(a: Args, fn: Callable[..., np.ndarray]) -> np.ndarray:
    x = a.num("x")
    axes = a.ints("axes")
    keep = bool(a.scalar("keep_dims", False))
    return fn(x, axis=None if axes is None else tuple(axes), keepdims=keep)


_REDUCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "reduce_mean": np.mean,
    "reduce_sum": np.sum,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_prod": np.prod,
    "reduce_l1_norm": lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims),
    "reduce_l2_norm": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
    "reduce_sum_square": lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims),
    "reduce_log_sum": lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims)),
    "reduce_log_sum_exp": lambda x, axis, keepdims: np.logaddexp.reduce(x, axis=axis, keepdims=keepdims),
}


@op(*_REDUCTIONS)
def reduction(a: Args) -> np.ndarray:
    return _reduce(a, _REDUCTIONS[a.type])


@op("reduce_argmax", "reduce_argmin")
def reduce_arg(a: Args) -> np.ndarray:
    x = a.num("x")
    axis = a.scalar("axis", -1)
    fn = np.argmax if a.type == "reduce_argmax" else np.argmin
    out = fn(x, axis=axis)
    return np.expand_dims(out, axis) if a.scalar("keep_dims", False) else out


# --- linear algebra ---------------------------------------------------------------------------------


@op("linear")
def linear(a: Args) -> np.ndarray:
    y = np.matmul(a.num("x"), a.num("weight").T)
    return y + a.num("bias") if "bias" in a else y


@op("matmul")
def matmul(a: Args) -> np.ndarray:
    x, y = a.num("x"), a.num("y")
    if a.scalar("transpose_x", False) and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if a.scalar("transpose_y", False) and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@op("einsum")
def einsum(a: Args) -> np.ndarray:
    values = a["values"]
    return np.einsum(a.scalar("equation"), *[np.asarray(v, np.float32) for v in values])


# --- convolution and pooling ------------------------------------------------------------------------


def _pads(a: Args, spatial: tuple[int, ...], kernel: tuple[int, ...], strides: list[int], dilations: list[int]) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dimension for pad_type valid/custom/same/same_lower."""
    pad_type = a.scalar("pad_type", "valid")
    n = len(spatial)
    if pad_type == "custom":
        pad = a.ints("pad", [0] * 2 * n)
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            effective = (k - 1) * d + 1
            total = max(0, s * math.ceil(size / s) - size + effective - s)
            small, large = total // 2, total - total // 2
            out.append((large, small) if pad_type == "same_lower" else (small, large))
        return out
    return [(0, 0)] * n


def _windows(x: np.ndarray, kernel: tuple[int, ...], strides: list[int], dilations: list[int], out_spatial: tuple[int, ...]) -> np.ndarray:
    """x: [N, C, *S] (already padded) -> view [N, C, *out_spatial, *kernel]."""
    n = len(kernel)
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    view = np.lib.stride_tricks.sliding_window_view(x, effective, axis=tuple(range(2, 2 + n)))
    index = [slice(None), slice(None)]
    index += [slice(0, o * s, s) for o, s in zip(out_spatial, strides)]
    index += [slice(None, None, d) for d in dilations]
    return view[tuple(index)]


@op("conv")
def conv(a: Args) -> np.ndarray:
    x, w = a.f("x"), a.f("weight")
    n_spatial = x.ndim - 2
    kernel = tuple(w.shape[2:])
    strides = a.ints("strides", [1] * n_spatial)
    dilations = a.ints("dilations", [1] * n_spatial)
    groups = int(a.scalar("groups", 1))
    pads = _pads(a, x.shape[2:], kernel, strides, dilations)
    x = np.pad(x, [(0, 0), (0, 0)] + pads)
    out_spatial = tuple(
        (size - ((k - 1) * d + 1)) // s + 1 for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations)
    )
    batch, channels = x.shape[:2]
    c_out = w.shape[0]
    positions = int(np.prod(out_spatial))
    k_size = int(np.prod(kernel))
    if k_size == 1 and groups == 1:  # 1x1: one matrix product, no window copy
        cols = x[(slice(None), slice(None)) + tuple(slice(0, o * s, s) for o, s in zip(out_spatial, strides))]
        y = np.matmul(w.reshape(c_out, channels), cols.reshape(batch, channels, positions))
    else:
        win = _windows(x, kernel, strides, dilations, out_spatial)  # N, C, *out, *k
        spatial_axes = tuple(range(2, 2 + n_spatial))
        kernel_axes = tuple(range(2 + n_spatial, 2 + 2 * n_spatial))
        # columns [N, groups, C/g * K, P]: one batched matrix product per group
        cols = win.transpose((0, 1) + kernel_axes + spatial_axes).reshape(batch, groups, (channels // groups) * k_size, positions)
        wg = w.reshape(groups, c_out // groups, (channels // groups) * k_size)
        y = np.matmul(wg[None], cols).reshape(batch, c_out, positions)
    y = y.reshape((batch, c_out) + out_spatial)
    if "bias" in a:
        y = y + _per_channel(a["bias"], y.ndim)
    return y


@op("conv_transpose")
def conv_transpose(a: Args) -> np.ndarray:
    x, w = a.f("x"), a.f("weight")  # w: [C_in, C_out / groups, *K]
    n_spatial = x.ndim - 2
    kernel = tuple(w.shape[2:])
    strides = a.ints("strides", [1] * n_spatial)
    dilations = a.ints("dilations", [1] * n_spatial)
    groups = int(a.scalar("groups", 1))
    batch, c_in = x.shape[:2]
    spatial = x.shape[2:]
    c_out_g = w.shape[1]
    full = [(size - 1) * s + (k - 1) * d + 1 for size, s, k, d in zip(spatial, strides, kernel, dilations)]
    positions = int(np.prod(spatial))
    k_size = int(np.prod(kernel))
    # contributions [N, groups, C_out/g * K, P], scattered back onto the output grid
    wg = w.reshape(groups, c_in // groups, c_out_g * k_size).transpose(0, 2, 1)
    contrib = np.matmul(wg[None], x.reshape(batch, groups, c_in // groups, positions))
    contrib = contrib.reshape((batch, groups * c_out_g) + kernel + tuple(spatial))
    y = np.zeros((batch, groups * c_out_g) + tuple(full), np.float32)
    for k_index in np.ndindex(*kernel):
        target = (slice(None), slice(None)) + tuple(
            slice(k * d, k * d + (size - 1) * s + 1, s) for k, d, size, s in zip(k_index, dilations, spatial, strides)
        )
        y[target] += contrib[(slice(None), slice(None)) + k_index]
    out_spatial = a.out_shapes[0][2:] if a.out_shapes[0] is not None else None
    pad_type = a.scalar("pad_type", "valid")
    if pad_type == "custom":
        pad = a.ints("pad", [0] * 2 * n_spatial)
        before = [pad[2 * i] for i in range(n_spatial)]
        if out_spatial is None:
            out_spatial = tuple(f - pad[2 * i] - pad[2 * i + 1] for i, f in enumerate(full))
    elif pad_type == "same":
        out_spatial = out_spatial or tuple(size * s for size, s in zip(spatial, strides))
        before = [max(0, f - o) // 2 for f, o in zip(full, out_spatial)]
    else:
        out_spatial = out_spatial or tuple(full)
        before = [0] * n_spatial
    grown = [max(0, b + o - f) for b, o, f in zip(before, out_spatial, full)]
    if any(grown):
        y = np.pad(y, [(0, 0), (0, 0)] + [(0, g) for g in grown])
    y = y[(slice(None), slice(None)) + tuple(slice(b, b + o) for b, o in zip(before, out_spatial))]
    if "bias" in a:
        y = y + _per_channel(a["bias"], y.ndim)
    return y


def _pool_geometry(a: Args, x: np.ndarray) -> tuple[tuple[int, ...], list[int], list[tuple[int, int]], tuple[int, ...]]:
    n_spatial = x.ndim - 2
    kernel = tuple(a.ints("kernel_sizes"))
    strides = a.ints("strides", [1] * n_spatial)
    pads = _pads(a, x.shape[2:], kernel, strides, [1] * n_spatial)
    ceil_mode = bool(a.scalar("ceil_mode", False))
    out = []
    for size, k, s, (p0, p1) in zip(x.shape[2:], kernel, strides, pads):
        total = size + p0 + p1
        if ceil_mode:  # as coremltools' shape inference (PyTorch's rule)
            o = (total - k + s - 1) // s + 1
            if (o - 1) * s >= size + p0:
                o -= 1
        else:
            o = (total - k) // s + 1
        out.append(o)
    return kernel, strides, pads, tuple(out)


def _pool(a: Args, x: np.ndarray, fill: float) -> tuple[np.ndarray, tuple[int, ...], list[int], list[tuple[int, int]], tuple[int, ...]]:
    """Windows of the padded input; windows that run past the padding (ceil mode) see `fill`."""
    kernel, strides, pads, out = _pool_geometry(a, x)
    extra = [max(0, (o - 1) * s + k - (size + p0 + p1)) for o, s, k, size, (p0, p1) in zip(out, strides, kernel, x.shape[2:], pads)]
    padded = np.pad(x, [(0, 0), (0, 0)] + [(p0, p1 + e) for (p0, p1), e in zip(pads, extra)], constant_values=fill)
    return _windows(padded, kernel, strides, [1] * len(kernel), out), kernel, strides, pads, out


@op("max_pool")
def max_pool(a: Args) -> np.ndarray:
    x = a.f("x")
    win = _pool(a, x, -np.inf)[0]
    return win.max(axis=tuple(range(x.ndim, win.ndim)))


@op("avg_pool")
def avg_pool(a: Args) -> np.ndarray:
    x = a.f("x")
    win, kernel, strides, pads, out = _pool(a, x, 0.0)
    axes = tuple(range(x.ndim, win.ndim))
    total = win.sum(axis=axes)
    # divisor: window cells inside the input (exclude_padding_from_average) or inside input + padding
    exclude = bool(a.scalar("exclude_padding_from_average", False))
    ones = np.ones((1, 1) + x.shape[2:], np.float32)
    inside = np.pad(ones, [(0, 0), (0, 0)] + list(pads), constant_values=0.0 if exclude else 1.0)
    extra = [max(0, (o - 1) * s + k - n) for o, s, k, n in zip(out, strides, kernel, inside.shape[2:])]
    inside = np.pad(inside, [(0, 0), (0, 0)] + [(0, e) for e in extra])
    count = _windows(inside, kernel, strides, [1] * len(kernel), out).sum(axis=axes)
    return total / np.maximum(count, 1.0)


@op("l2_pool")
def l2_pool(a: Args) -> np.ndarray:
    x = a.f("x")
    win = _pool(a, x * x, 0.0)[0]
    return np.sqrt(win.sum(axis=tuple(range(x.ndim, win.ndim))))


# --- normalization ----------------------------------------------------------------------------------


@op("batch_norm")
def batch_norm(a: Args) -> np.ndarray:
    x = a.f("x")
    rank = x.ndim
    mean, var = _per_channel(a["mean"], rank), _per_channel(a["variance"], rank)
    y = (x - mean) / np.sqrt(var + np.float32(a.scalar("epsilon", 1e-5)))
    if "gamma" in a:
        y = y * _per_channel(a["gamma"], rank)
    if "beta" in a:
        y = y + _per_channel(a["beta"], rank)
    return y


@op("instance_norm")
def instance_norm(a: Args) -> np.ndarray:
    x = a.f("x")
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.float32(a.scalar("epsilon", 1e-5)))
    if "gamma" in a:
        y = y * _per_channel(a["gamma"], x.ndim)
    if "beta" in a:
        y = y + _per_channel(a["beta"], x.ndim)
    return y


@op("layer_norm")
def layer_norm(a: Args) -> np.ndarray:
    x = a.f("x")
    axes = tuple(_axis(v, x.ndim) for v in (a.ints("axes") or range(x.ndim)))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.float32(a.scalar("epsilon", 1e-5)))
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if "gamma" in a:
        y = y * a.f("gamma").reshape(shape)
    if "beta" in a:
        y = y + a.f("beta").reshape(shape)
    return y


@op("l2_norm")
def l2_norm(a: Args) -> np.ndarray:
    x = a.f("x")
    axes = tuple(range(max(0, x.ndim - 3), x.ndim))
    return x / np.sqrt((x * x).sum(axis=axes, keepdims=True) + np.float32(a.scalar("epsilon", 1e-6)))


@op("local_response_norm")
def local_response_norm(a: Args) -> np.ndarray:
    x = a.f("x")
    size = int(a.scalar("size"))
    alpha, beta, k = (np.float32(a.scalar(n, d)) for n, d in (("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)))
    sq = np.pad(x * x, [(0, 0), ((size - 1) // 2, size // 2)] + [(0, 0)] * (x.ndim - 2))
    window = sum(sq[:, i : i + x.shape[1]] for i in range(size))
    return x / (k + alpha / size * window) ** beta


# --- shape and data movement ------------------------------------------------------------------------


@op("reshape")
def reshape(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    shape = a.ints("shape")
    shape = [x.shape[i] if v == 0 and len(shape) == x.ndim else v for i, v in enumerate(shape)]
    return x.reshape(shape)


@op("transpose")
def transpose(a: Args) -> np.ndarray:
    return np.transpose(a["x"], a.ints("perm"))


@op("squeeze")
def squeeze(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    if axes is None:
        return np.squeeze(x)
    axes = tuple(ax for ax in (_axis(v, x.ndim) for v in axes) if x.shape[ax] == 1)  # PyTorch's lenience
    return np.squeeze(x, axis=axes)


@op("expand_dims")
def expand_dims(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    rank = x.ndim + len(a.ints("axes"))
    return np.expand_dims(x, tuple(_axis(v, rank) for v in a.ints("axes")))


@op("flatten2d")
def flatten2d(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = _axis(a.scalar("axis", 1), x.ndim)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@op("concat")
def concat(a: Args) -> np.ndarray:
    values = [np.asarray(v) for v in a["values"]]
    axis = a.scalar("axis")
    if a.scalar("interleave", False):
        stacked = np.stack(values, axis=_axis(axis, values[0].ndim) + 1)
        return stacked.reshape(a.out_shapes[0] or values[0].shape[:axis] + (-1,) + values[0].shape[axis + 1 :])
    return np.concatenate(values, axis=axis)


@op("stack")
def stack(a: Args) -> np.ndarray:
    return np.stack([np.asarray(v) for v in a["values"]], axis=a.scalar("axis"))


@op("split")
def split(a: Args) -> tuple[np.ndarray, ...]:
    x = np.asarray(a["x"])
    axis = _axis(a.scalar("axis"), x.ndim)
    sizes = a.ints("split_sizes")
    if sizes is None:
        parts = int(a.scalar("num_splits"))
        sizes = [x.shape[axis] // parts] * parts
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _slice_index(x: np.ndarray, a: Args) -> tuple[tuple[Any, ...], list[int]]:
    rank = x.ndim
    begin, end = a.ints("begin"), a.ints("end")
    stride = a.ints("stride", [1] * rank)
    begin_mask, end_mask = a.bools("begin_mask", rank), a.bools("end_mask", rank)
    squeeze_mask = a.bools("squeeze_mask", rank)
    index: list[Any] = []
    squeezed = []
    for i in range(rank):
        if squeeze_mask[i]:
            index.append(slice(begin[i], begin[i] + 1 if begin[i] != -1 else None))
            squeezed.append(i)
            continue
        b = None if begin_mask[i] else begin[i]
        e = None if end_mask[i] else end[i]
        index.append(slice(b, e, stride[i]))
    return tuple(index), squeezed


@op("slice_by_index")
def slice_by_index(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    index, squeezed = _slice_index(x, a)
    out = x[index]
    return np.squeeze(out, axis=tuple(squeezed)) if squeezed else out


@op("slice_by_size")
def slice_by_size(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    begin, size = a.ints("begin"), a.ints("size")
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


@op("gather")
def gather(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    indices = np.asarray(a["indices"]).astype(np.int64)
    axis = _axis(a.scalar("axis", 0), x.ndim)
    batch_dims = int(a.scalar("batch_dims", 0))
    indices = np.where(indices < 0, indices + x.shape[axis], indices)
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    # batched: recurse over the shared leading dimensions
    return np.stack([
        gather(Args(a.type, {"x": x[i], "indices": indices[i], "axis": axis - 1, "batch_dims": batch_dims - 1}, a.out_dtypes, [None]))
        for i in range(x.shape[0])
    ])


@op("gather_along_axis")
def gather_along_axis(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = _axis(a.scalar("axis", 0), x.ndim)
    indices = np.asarray(a["indices"]).astype(np.int64)
    indices = np.where(indices < 0, indices + x.shape[axis], indices)
    return np.take_along_axis(x, indices, axis=axis)


@op("gather_nd")
def gather_nd(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    indices = np.asarray(a["indices"]).astype(np.int64)
    batch_dims = int(a.scalar("batch_dims", 0))
    if batch_dims:
        return np.stack([gather_nd(Args(a.type, {"x": x[i], "indices": indices[i], "batch_dims": batch_dims - 1}, a.out_dtypes, [None])) for i in range(x.shape[0])])
    depth = indices.shape[-1]
    return x[tuple(np.moveaxis(indices, -1, 0))] if depth else x


@op("tile")
def tile(a: Args) -> np.ndarray:
    return np.tile(a["x"], a.ints("reps"))


@op("pad")
def pad(a: Args) -> np.ndarray:
    x = a.num("x")
    amounts = a.ints("pad")
    n = len(amounts) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(amounts[2 * i], amounts[2 * i + 1]) for i in range(n)]
    mode = a.scalar("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, constant_values=a.scalar("constant_val", 0.0))
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


@op("reverse")
def reverse(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    return np.flip(x, axis=None if axes is None else tuple(axes))


@op("depth_to_space")
def depth_to_space(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    b = int(a.scalar("block_size"))
    n, c, h, w = x.shape
    # DCR order, as TensorFlow's depth_to_space
    return x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, c // (b * b), h * b, w * b)


@op("space_to_depth")
def space_to_depth(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    b = int(a.scalar("block_size"))
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)


@op("pixel_shuffle")
def pixel_shuffle(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    f = int(a.scalar("upscale_factor"))
    n, c, h, w = x.shape
    return x.reshape(n, c // (f * f), f, f, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (f * f), h * f, w * f)


@op("pixel_unshuffle")
def pixel_unshuffle(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    f = int(a.scalar("downscale_factor"))
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * f * f, h // f, w // f)


@op("shape")
def shape(a: Args) -> np.ndarray:
    return np.asarray(np.asarray(a["x"]).shape, np.int32)


@op("fill")
def fill(a: Args) -> np.ndarray:
    return np.full(a.ints("shape"), a.scalar("value", 0.0))


@op("range_1d")
def range_1d(a: Args) -> np.ndarray:
    return np.arange(a.scalar("start"), a.scalar("end"), a.scalar("step"))


@op("cumsum")
def cumsum(a: Args) -> np.ndarray:
    x = a.num("x")
    axis = a.scalar("axis", 0)
    if a.scalar("reverse", False):
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis)
    if a.scalar("exclusive", False):
        out = out - x
    return np.flip(out, axis) if a.scalar("reverse", False) else out


@op("band_part")
def band_part(a: Args) -> np.ndarray:
    x = a.num("x")
    lower, upper = int(a.scalar("lower", -1)), int(a.scalar("upper", -1))
    m, n = x.shape[-2:]
    i, j = np.arange(m)[:, None], np.arange(n)[None, :]
    keep = ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))
    return np.where(keep, x, 0)


@op("argsort")
def argsort(a: Args) -> np.ndarray:
    x = a.num("x")
    axis = a.scalar("axis", -1)
    return np.argsort(x if a.scalar("ascending", False) else -x, axis=axis, kind="stable")


@op("topk")
def topk(a: Args) -> tuple[np.ndarray, np.ndarray]:
    x = a.num("x")
    k = int(a.scalar("k", 1))
    axis = a.scalar("axis", -1)
    order = np.argsort(x if a.scalar("ascending", False) else -x, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, indices, axis=axis), indices


# --- resizing ---------------------------------------------------------------------------------------


def _grid(size_in: int, size_out: int, mode: str) -> np.ndarray:
    """Sample positions (in input pixels) for the MIL sampling modes (resize_bilinear's notes)."""
    i = np.arange(size_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if size_out == 1:
            grid = np.array([(size_in - 1) / 2 if mode == "ALIGN_CORNERS" else 0.0])
        else:
            grid = i * (size_in - 1) / (size_out - 1)
    elif mode == "DEFAULT":
        grid = i * ((size_in - size_in / size_out) / (size_out - 1)) if size_out > 1 else np.zeros(1)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, size_in - 1) / size_out
        grid = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        spacing = size_in / size_out
        grid = i * spacing + 0.5 * spacing - 0.5
    elif mode == "ASYMMETRIC":  # upsample_bilinear with align_corners=False, half_pixel_centers=False
        grid = i * size_in / size_out
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    return np.clip(grid, 0, size_in - 1)


def _bilinear(x: np.ndarray, out_h: int, out_w: int, mode: str) -> np.ndarray:
    h, w = x.shape[-2:]
    out = x
    for axis, size_in, size_out in ((-2, h, out_h), (-1, w, out_w)):
        grid = _grid(size_in, size_out, mode)
        low = np.floor(grid).astype(np.int64)
        high = np.minimum(low + 1, size_in - 1)
        frac = (grid - low).astype(np.float32)
        shape = [1] * out.ndim
        shape[axis] = size_out
        frac = frac.reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - frac) + np.take(out, high, axis=axis) * frac
    return out


def _nearest(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w = x.shape[-2:]
    rows = np.minimum(np.floor(np.arange(out_h) * (h / out_h)).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(out_w) * (w / out_w)).astype(np.int64), w - 1)
    return x[..., rows, :][..., cols]


def _out_hw(a: Args, x: np.ndarray) -> tuple[int, int]:
    if a.out_shapes[0] is not None:
        return a.out_shapes[0][-2], a.out_shapes[0][-1]
    h, w = x.shape[-2:]
    return int(math.floor(h * a.scalar("scale_factor_height", 1))), int(math.floor(w * a.scalar("scale_factor_width", 1)))


@op("upsample_nearest_neighbor")
def upsample_nearest_neighbor(a: Args) -> np.ndarray:
    x = a.num("x")
    return _nearest(x, *_out_hw(a, x))


@op("resize_nearest_neighbor")
def resize_nearest_neighbor(a: Args) -> np.ndarray:
    x = a.num("x")
    return _nearest(x, int(a.scalar("target_size_height")), int(a.scalar("target_size_width")))


@op("upsample_bilinear")
def upsample_bilinear(a: Args) -> np.ndarray:
    x = a.f("x")
    align = bool(a.scalar("align_corners", True))
    half_pixel = bool(a.scalar("half_pixel_centers", not align))
    mode = "STRICT_ALIGN_CORNERS" if align else ("UNALIGN_CORNERS" if half_pixel else "ASYMMETRIC")
    return _bilinear(x, *_out_hw(a, x), mode)


@op("resize_bilinear")
def resize_bilinear(a: Args) -> np.ndarray:
    x = a.f("x")
    return _bilinear(x, int(a.scalar("target_size_height", 1)), int(a.scalar("target_size_width", 1)), a.scalar("sampling_mode", "DEFAULT"))


@op("resize")
def resize(a: Args) -> np.ndarray:
    x = a.num("x")
    out = a.out_shapes[0]
    if out is None:
        raise ValueError("resize with a dynamic output shape")
    dims = int(a.scalar("resized_dims"))
    if dims != 2:
        raise ValueError(f"resize over {dims} dimensions")
    if a.scalar("interpolation_mode", "LINEAR") == "NEAREST_NEIGHBOR":
        return _nearest(x, out[-2], out[-1])
    return _bilinear(x.astype(np.float32), out[-2], out[-1], a.scalar("sampling_mode", "DEFAULT"))


@op("crop")
def crop(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    (t, b), (l, r) = a.ints("crop_height"), a.ints("crop_width")
    return x[..., t : x.shape[-2] - b, l : x.shape[-1] - r]


@op("classify")
def classify(a: Args) -> tuple[Any, dict[Any, float]]:
    """The classifier's label and {label: probability}; validation reads the probabilities input."""
    probabilities = np.asarray(a["probabilities"], np.float32).reshape(-1)
    classes = list(a["classes"])
    return classes[int(np.argmax(probabilities))], dict(zip(classes, probabilities.tolist()))
