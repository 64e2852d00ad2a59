"""Normalising primitives: training-mode batch norm, layer norm, softmax, log-softmax.

These couple entries of their input (a batch, a feature axis, a class axis), so their rules are
not elementwise.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import special

from boundprop.ops.affine import ElementwiseAffine
from boundprop.ops.base import (
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    Value,
    attr,
    const_value,
    float_array,
    normalize_axis,
    onnx_converter,
)
from boundprop.ops.broadcast import lift
from boundprop.rounding import (
    ELEMENTARY_RELATIVE_ERROR,
    FLOAT32_ABSOLUTE,
    FLOAT32_ELEMENTARY_RELATIVE_ERROR,
    gamma,
    gamma32,
    round_down,
    round_up,
    widen,
)


def standardized_interval(lo: np.ndarray, hi: np.ndarray, axes: tuple[int, ...], eps: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of q_i = (x_i − μ)/sqrt(σ² + ε), statistics over ``axes`` (m entries each).

    d_i = x_i − μ = (1 − 1/m) x_i − (1/m) Σ_{j≠i} x_j is affine: exact bounds. σ² ∈ [0, v̄] with
    v̄ = (1/m) Σ_j max(d_j²) over the bounds. Then q_i = d_i / s with s ∈ [√ε, √(v̄ + ε)], and
    |q_i| ≤ √(m − 1) always (Cauchy–Schwarz on Σ_j d_j = 0 gives d_i² ≤ (m − 1) σ²).
    """

    m = int(np.prod([lo.shape[a] for a in axes]))
    cap = round_up(np.sqrt(max(m - 1, 0)))
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        # Unbounded inputs: only the Cauchy–Schwarz cap is left.
        full = np.full(np.broadcast_shapes(lo.shape, hi.shape), cap)
        return -full, full
    sum_hi, sum_lo = hi.sum(axis=axes, keepdims=True), lo.sum(axis=axes, keepdims=True)
    d_lo = (1 - 1 / m) * lo - (sum_hi - hi) / m
    d_hi = (1 - 1 / m) * hi - (sum_lo - lo) / m
    scale = np.abs(lo).sum(axis=axes, keepdims=True) + np.abs(hi).sum(axis=axes, keepdims=True)
    d_lo, d_hi = widen(d_lo, d_hi, gamma(m + 4) * (scale + np.abs(lo) + np.abs(hi)))
    with np.errstate(over="ignore"):
        v_hi = round_up(np.maximum(d_lo**2, d_hi**2).sum(axis=axes, keepdims=True) / m
                        * (1 + gamma(m + 3)))
    s_lo = np.sqrt(eps) * (1 - 4 * 2.0**-53)
    s_hi = round_up(np.sqrt(round_up(v_hi + eps)))
    q_lo = np.where(d_lo >= 0, d_lo / s_hi, d_lo / s_lo)
    q_hi = np.where(d_hi <= 0, d_hi / s_hi, d_hi / s_lo)
    q_lo, q_hi = widen(q_lo, q_hi, 4 * 2.0**-53 * np.maximum(np.abs(q_lo), np.abs(q_hi)))
    return np.maximum(np.nan_to_num(q_lo, nan=-cap), -cap), np.minimum(
        np.nan_to_num(q_hi, nan=cap), cap)


def affine_interval(q_lo: np.ndarray, q_hi: np.ndarray, scale: np.ndarray | None,
                    bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """[q]·γ + β with outward rounding (γ, β broadcast)."""

    if scale is not None:
        a, b = q_lo * scale, q_hi * scale
        q_lo, q_hi = round_down(np.minimum(a, b)), round_up(np.maximum(a, b))
    if bias is not None:
        q_lo, q_hi = round_down(q_lo + bias), round_up(q_hi + bias)
    return q_lo, q_hi


def standardized_float32_error(box: tuple[np.ndarray, np.ndarray], axes: tuple[int, ...],
                               eps: float, scale, bias, out) -> np.ndarray:
    """Float32 error model of γ (x − μ)/√(σ² + ε) + β: the mean and variance are m-term sums
    (γ_m-relative, against max|x|), amplified by 1/√ε in the quotient."""

    lo, hi = box
    m = int(np.prod([lo.shape[a] for a in axes]))
    zmax = np.maximum(np.abs(lo), np.abs(hi)).max(axis=axes, keepdims=True)
    g = np.abs(scale) if scale is not None else 1.0
    b = np.abs(bias) if bias is not None else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        q = 2 * zmax / np.sqrt(eps) + np.sqrt(m)
        mag = np.maximum(np.abs(out[0]), np.abs(out[1]))
        err = gamma32(4 * m + 20) * (g * q * (1 + zmax**2 / eps) + b + mag)
    # Whatever the inputs, a float32 standardisation stays within the Cauchy–Schwarz cap
    # (up to its own rounding): the error never exceeds twice the output's range.
    ceiling = 2 * (g * (np.sqrt(m) + 1) + b)
    return np.minimum(np.nan_to_num(err, nan=np.inf), ceiling) + FLOAT32_ABSOLUTE


class BatchNormTraining(Primitive):
    """Batch norm that normalises with the statistics of the current batch (ONNX
    ``training_mode=1``): per channel c, over the batch and spatial axes,
    y = γ_c (x − μ_c) / sqrt(σ²_c + ε) + β_c, with σ² the biased (population) variance.
    """

    family: ClassVar[str] = "normalising"
    rules: ClassVar[frozenset[str]] = frozenset({"interval", "constants"})
    kind = "batchnorm-train"

    def __init__(self, in_shape: Shape, scale: np.ndarray, bias: np.ndarray, eps: float):
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.scale, self.bias, self.eps = float_array(scale), float_array(bias), float(eps)
        c = in_shape[1]
        self._bshape = (1, 1, c) + (1,) * (len(in_shape) - 2)
        self.axes = (1,) + tuple(range(3, len(in_shape) + 1))  # batch and spatial, sample-shifted

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        mu = x.mean(axis=self.axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=self.axes, keepdims=True)
        return (self.scale.reshape(self._bshape) * (x - mu) / np.sqrt(var + self.eps)
                + self.bias.reshape(self._bshape))

    def interval(self, box):
        q_lo, q_hi = standardized_interval(box[0], box[1], self.axes, self.eps)
        return affine_interval(q_lo, q_hi, self.scale.reshape(self._bshape),
                               self.bias.reshape(self._bshape))

    def float32_error(self, boxes, out):
        return standardized_float32_error(boxes[0], self.axes, self.eps,
                                          self.scale.reshape(self._bshape),
                                          self.bias.reshape(self._bshape), out)

    def constants_rule(self, ctx):
        from boundprop.ops.rules import array_norm_upper, standardization_rule  # lazy: sympy

        n, c, *sp_ = self.in_shapes[0]
        m = n * int(np.prod(sp_))
        beta = np.broadcast_to(self.bias.reshape(self._bshape)[0], self.out_shape)
        return standardization_rule(ctx, m, c, self.eps, float(np.max(np.abs(self.scale))),
                                    array_norm_upper(beta, ctx.norm))

    def parameters(self) -> dict[str, np.ndarray]:
        return {"scale": self.scale, "bias": self.bias}

    def describe(self) -> str:
        return f"eps={self.eps:g} over batch {self.in_shapes[0][0]}"


class LayerNorm(Primitive):
    """y = γ (x − μ) / sqrt(σ² + ε) + β, statistics over the trailing axes from ``axis``."""

    family: ClassVar[str] = "normalising"
    rules: ClassVar[frozenset[str]] = frozenset({"interval", "constants"})
    kind = "layernorm"

    def __init__(self, in_shape: Shape, axis: int, scale: np.ndarray | None,
                 bias: np.ndarray | None, eps: float):
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        rank = len(in_shape)
        self.axis, self.eps = axis, float(eps)
        self.scale_raw = None if scale is None else float_array(scale)
        self.bias_raw = None if bias is None else float_array(bias)
        self.scale = None if scale is None else lift(self.scale_raw, rank)
        self.bias = None if bias is None else lift(self.bias_raw, rank)
        self.axes = tuple(range(axis + 1, rank + 1))

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        mu = x.mean(axis=self.axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=self.axes, keepdims=True)
        y = (x - mu) / np.sqrt(var + self.eps)
        if self.scale is not None:
            y = y * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y

    def interval(self, box):
        q_lo, q_hi = standardized_interval(box[0], box[1], self.axes, self.eps)
        return affine_interval(q_lo, q_hi, self.scale, self.bias)

    def float32_error(self, boxes, out):
        return standardized_float32_error(boxes[0], self.axes, self.eps, self.scale, self.bias,
                                          out)

    def constants_rule(self, ctx):
        from boundprop.ops.rules import array_norm_upper, standardization_rule  # lazy: sympy

        shape = self.in_shapes[0]
        m = int(np.prod(shape[self.axis:]))
        groups = int(np.prod(shape[: self.axis]))
        gmax = 1.0 if self.scale is None else float(np.max(np.abs(self.scale)))
        beta = 0.0 if self.bias is None else array_norm_upper(
            np.broadcast_to(self.bias[0], self.out_shape), ctx.norm)
        return standardization_rule(ctx, m, groups, self.eps, gmax, beta)

    def parameters(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("scale", self.scale_raw), ("bias", self.bias_raw))
                if v is not None}

    def describe(self) -> str:
        return f"axis={self.axis} eps={self.eps:g}"


class Softmax(Primitive):
    """Softmax (or log-softmax) over ``axes`` jointly (several axes: ONNX < 13 semantics)."""

    family: ClassVar[str] = "normalising"
    rules: ClassVar[frozenset[str]] = frozenset({"interval", "constants"})

    def __init__(self, in_shape: Shape, axes: tuple[int, ...], log: bool = False):
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.axes, self.log = tuple(axes), log
        self.kind = "logsoftmax" if log else "softmax"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        ax = tuple(a + 1 for a in self.axes)
        if self.log:
            return x - special.logsumexp(x, axis=ax, keepdims=True)
        z = np.exp(x - x.max(axis=ax, keepdims=True))
        return z / z.sum(axis=ax, keepdims=True)

    def interval(self, box):
        """Exact per-coordinate image. softmax_i = 1 / (1 + Σ_{j≠i} exp(x_j − x_i)) increases in
        x_i and decreases in every other x_j, so its extremes over a box sit at corners:
        lower_i = 1 / (1 + T_i) with T_i = Σ_{j≠i} exp(u_j − l_i), upper_i with l_j − u_i.
        log-softmax_i = −log(1 + T_i) likewise."""

        lo, hi = box
        ax = tuple(a + 1 for a in self.axes)
        # Move the softmax axes last and flatten them: (..., n).
        rest = [i for i in range(lo.ndim) if i not in ax]
        perm = rest + list(ax)
        flat_shape = tuple(lo.shape[i] for i in rest) + (-1,)
        lf = lo.transpose(perm).reshape(flat_shape)
        hf = hi.transpose(perm).reshape(flat_shape)
        n = lf.shape[-1]
        rel = ELEMENTARY_RELATIVE_ERROR
        off = ~np.eye(n, dtype=bool)
        with np.errstate(over="ignore"):
            # t_lo[..., i] = Σ_{j≠i} exp(u_j − l_i): an upper estimate, inflated for rounding.
            t_lo = (np.exp(np.minimum(hf[..., None, :] - lf[..., :, None], 709.0))
                    * off).sum(-1) * (1 + rel + n * 2.0**-52)
            t_hi = (np.exp(np.minimum(lf[..., None, :] - hf[..., :, None], 709.0))
                    * off).sum(-1) * (1 - rel - n * 2.0**-52)
        if self.log:
            y_lo = round_down(-np.log1p(t_lo) * (1 + rel))
            y_hi = round_up(-np.log1p(np.maximum(t_hi, 0.0)) * (1 - rel))
        else:
            y_lo = np.maximum(round_down(1.0 / (1.0 + t_lo) * (1 - rel)), 0.0)
            y_hi = np.minimum(round_up(1.0 / (1.0 + np.maximum(t_hi, 0.0)) * (1 + rel)), 1.0)
        inv = np.argsort(perm)
        shape_t = tuple(lo.shape[i] for i in perm)
        return (y_lo.reshape(shape_t).transpose(inv), y_hi.reshape(shape_t).transpose(inv))

    def float32_error(self, boxes, out):
        n = int(np.prod([self.in_shapes[0][a] for a in self.axes]))
        rel = gamma32(n + 4) + 4 * FLOAT32_ELEMENTARY_RELATIVE_ERROR
        mag = np.maximum(np.abs(out[0]), np.abs(out[1]))
        if not self.log:
            return rel * mag + FLOAT32_ABSOLUTE
        lo, hi = boxes[0]
        ax = tuple(a + 1 for a in self.axes)
        xmax = np.maximum(np.abs(lo), np.abs(hi)).max(axis=ax, keepdims=True)
        return rel * (mag + 2 * xmax + np.log(n) + 1) + FLOAT32_ABSOLUTE

    def constants_rule(self, ctx):
        """Per group of m entries (block diagonal over groups). Softmax p: Jacobian
        diag(p) − ppᵀ, ‖·‖_p ≤ 1/2 for p = 2, ∞, 1 (symmetric, rows sum 2p_i(1 − p_i));
        D²p[h,k] = a⊙h − a⟨p,h⟩ − p⟨a,h⟩ with a = Dp[k] gives L ≤ 3/2 (ℓ2, ℓ1) and
        1/2 + 1/2 + ‖Dp‖_{∞→1} ≤ 3 (ℓ∞). Log-softmax: Jacobian I − 1pᵀ (an oblique
        projection: ‖·‖₂ = √m‖p‖₂ ≤ √m; ‖·‖_∞ ≤ 2; ‖·‖_1 ≤ max(1, m − 1)); D²y = −1 ⊗
        (diag(p) − ppᵀ): L ≤ √m/2, 2, m/2."""
        import sympy as sp  # lazy: sympy is heavy (only constants need it)

        from boundprop.ops.rules import chain_rule  # lazy: loads sympy

        m = int(np.prod([self.in_shapes[0][a] for a in self.axes]))
        groups = int(np.prod(self.in_shapes[0])) // max(m, 1)
        ms = sp.Integer(m)
        norm = ctx.norm
        total = sp.Integer(m * groups)
        if not self.log:
            slope = sp.Rational(1, 2)
            curv = sp.Integer(3) if norm == "inf" else sp.Rational(3, 2)
            at_zero = {"2": sp.sqrt(total) / ms, "inf": 1 / ms, "1": total / ms}[norm]
            cap = {"2": sp.sqrt(sp.Integer(groups)), "inf": sp.Integer(1),
                   "1": sp.Integer(groups)}[norm]
            return chain_rule(ctx, slope, curv, at_zero, sup_bound=cap)
        slope = {"2": sp.sqrt(ms), "inf": sp.Integer(2), "1": sp.Max(1, ms - 1)}[norm]
        curv = {"2": sp.sqrt(ms) / 2, "inf": sp.Integer(2), "1": ms / 2}[norm]
        at_zero = sp.log(ms) * {"2": sp.sqrt(total), "inf": sp.Integer(1), "1": total}[norm]
        return chain_rule(ctx, slope, curv, at_zero)

    def describe(self) -> str:
        return f"axes={list(self.axes)}"


@onnx_converter("Softmax", "LogSoftmax")
def convert_softmax(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("softmax input must be computed from the network input")
    rank = len(x.shape)
    if ctx.opset < 13:  # input coerced to 2-D at `axis`: all trailing axes are normalised
        axis = normalize_axis(attr(node, "axis", 1), rank)
        axes = tuple(range(axis, rank))
    else:
        axes = (normalize_axis(attr(node, "axis", -1), rank),)
    return [ctx.emit(Softmax(x.shape, axes, log=node.op_type == "LogSoftmax"), [x])]


@onnx_converter("LayerNormalization")
def convert_layernorm(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("LayerNormalization input must be computed from the network input")
    axis = normalize_axis(attr(node, "axis", -1), len(x.shape))
    scale = const_value(ctx, args[1], "LayerNormalization scale")
    bias = None
    if len(args) > 2 and args[2] is not None:
        bias = const_value(ctx, args[2], "LayerNormalization bias")
    prim = LayerNorm(x.shape, axis, scale, bias, attr(node, "epsilon", 1e-5))
    return [ctx.emit(prim, [x])] + [None] * (len(node.output) - 1)


@onnx_converter("BatchNormalization")
def convert_batchnorm(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("BatchNormalization input must be computed from the network input")
    eps = float(attr(node, "epsilon", 1e-5))
    scale = float_array(const_value(ctx, args[1], "BatchNormalization scale"))
    bias = float_array(const_value(ctx, args[2], "BatchNormalization bias"))
    training = bool(attr(node, "training_mode", 0))
    if ctx.opset < 7 and attr(node, "is_test", 1) == 0:
        training = True
    if training:
        prim = BatchNormTraining(x.shape, scale, bias, eps)
        return [ctx.emit(prim, [x])] + [None] * (len(node.output) - 1)
    mean = float_array(const_value(ctx, args[3], "BatchNormalization mean"))
    var = float_array(const_value(ctx, args[4], "BatchNormalization variance"))
    c = x.shape[1]
    per_channel = (c,) + (1,) * (len(x.shape) - 2)
    s = scale / np.sqrt(var + eps)
    prim = ElementwiseAffine(x.shape, s.reshape(per_channel),
                             (bias - mean * s).reshape(per_channel), label="batchnorm")
    return [ctx.emit(prim, [x])]
