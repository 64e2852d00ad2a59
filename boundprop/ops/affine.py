"""Dense and elementwise affine primitives: MatMul/Gemm with a constant matrix, arithmetic with
constants (Add/Sub/Mul/Div/Neg, input normalisation, inference batch norm). Convolutions live
in :mod:`boundprop.ops.conv`.

Each is y = A x + offset with A linear; ``linear`` applies A and ``abs_linear`` applies |A|
(entrywise absolute value of A's matrix), which is what interval propagation needs.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import ClassVar

import numpy as np

from boundprop.norms import spectral_norm_upper
from boundprop.ops.base import (
    AffinePrimitive,
    Const,
    ConversionContext,
    ParametricAffine,
    Shape,
    Tensor,
    Value,
    attr,
    broadcast_shapes,
    const_value,
    float_array,
    onnx_converter,
)
from boundprop.ops.broadcast import expand_to_rank, lift, lift_input, sum_to_shape
from boundprop.ops.geometry import Region
from boundprop.ops.shape import Reshape, Transpose
from boundprop.rounding import round_down, round_up


# --------------------------------------------------------------------------------------------
class Dense(ParametricAffine):
    """y = M x along one axis of the input, plus an offset: MatMul/Gemm with a constant matrix.

    ``matrix`` has shape (out, in). With ``axis == -1`` it maps the last axis (x @ Mᵀ, the usual
    "input times weights" product); with ``axis == -2`` the second-to-last (M @ x, a constant on
    the left of MatMul).
    """
    rules: ClassVar[frozenset[str]] = ParametricAffine.rules | {"ort_interval", "row_norms"}

    kind = "dense"

    def __init__(self, in_shape: Shape, matrix: np.ndarray, offset: np.ndarray | None = None,
                 axis: int = -1) -> None:
        matrix = float_array(matrix)
        if matrix.ndim != 2 or axis not in (-1, -2) or len(in_shape) < -axis:
            raise ValueError("Dense needs a 2-D matrix and an input axis -1 or -2")
        if in_shape[axis] != matrix.shape[1]:
            raise ValueError(f"matrix {matrix.shape} does not fit input {in_shape} on axis {axis}")
        self.matrix = matrix
        self.axis = axis
        self.in_shapes = (tuple(in_shape),)
        out = list(in_shape)
        out[axis] = matrix.shape[0]
        base = tuple(out)
        self.offset_raw = None if offset is None else float_array(offset)
        self.out_shape = base if offset is None else broadcast_shapes(base, self.offset_raw.shape)
        self.offset = None if offset is None else lift(self.offset_raw, len(self.out_shape))

    def _apply(self, m: np.ndarray, x: np.ndarray) -> np.ndarray:
        y = x @ m.T if self.axis == -1 else m @ x
        if y.shape[1:] != self.out_shape:  # offset broadcasting grows the output
            y = np.broadcast_to(lift_input(y, len(self.out_shape)), (y.shape[0], *self.out_shape))
        return y

    @cached_property
    def abs_weight(self) -> np.ndarray:
        """|matrix| entrywise (the matrix of abs_linear), computed once."""
        return np.abs(self.matrix)

    def linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.matrix, x)

    def abs_linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.abs_weight, x)

    def sq_linear(self, x: np.ndarray) -> np.ndarray:
        """The map whose matrix is A's squared entrywise: row norms² are sq_linear(1)."""
        return self._apply(self.matrix**2, x)

    def _grows(self) -> bool:
        base = list(self.in_shapes[0])
        base[self.axis] = self.matrix.shape[0]
        return tuple(base) != self.out_shape  # offset broadcasting copies the output

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        if self._grows():
            raise NotImplementedError
        return lam @ self.matrix if self.axis == -1 else self.matrix.T @ lam

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        if self._grows():
            raise NotImplementedError
        m = self.abs_weight
        return lam @ m if self.axis == -1 else m.T @ lam

    def param_structure(self) -> tuple[float, int]:
        """(bilinear constant c, copies of the bias): ‖ΔM u‖ ≤ ‖ΔM‖_F‖u‖, so c = 1."""
        rows = int(np.prod(self.out_shape)) // self.matrix.shape[0]
        return 1.0, rows if self.offset is not None else 0

    def weight_and_bias(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(M, offset): the matrix and the offset as held (lifted to the output's rank)."""
        return self.matrix, self.offset

    def perturbed(self, dw: np.ndarray, db: np.ndarray | None) -> Dense:
        """M + dw, and the offset moved by db per output row of M (along ``axis``)."""
        op = copy.copy(self)
        op.__dict__.pop("abs_weight", None)
        op.matrix = self.matrix + dw
        if db is not None:
            op.offset = self.offset + (db if self.axis == -1 else db[:, None])
        return op

    def param_vjp(self, cot, u, rows):
        """y_p = M u_p + b along the axis: ∂/∂M = Σ_p cot_p u_pᵀ, ∂/∂b = Σ_p cot_p over the
        positions p of the other axes (None for M when the offset broadcasts the output)."""
        m, n = self.matrix.shape
        if self.axis == -1:
            if cot.shape[1:-1] != u.shape[1:-1]:
                return None, cot.reshape(rows, -1, m).sum(axis=1)
            cr, ur = cot.reshape(rows, -1, m), u.reshape(-1, n)
            return np.einsum("rpm,pn->rmn", cr, ur), cr.sum(axis=1)
        k = self.out_shape[-1]
        if cot.shape[1:-2] != u.shape[1:-2] or u.shape[-1] != k:
            return None, cot.reshape(rows, -1, m, k).sum(axis=(1, 3))
        cr, ur = cot.reshape(rows, -1, m, k), u.reshape(-1, n, k)
        return np.einsum("rpmk,pnk->rmn", cr, ur), cr.sum(axis=(1, 3))

    def spectral_norm_upper(self) -> float:
        """The same matrix acts on every slice of the other axes (block diagonal): the norm is
        ‖M‖₂, bounded by Gram iteration (``norms.spectral_norm_upper``)."""

        if self._grows():
            return super().spectral_norm_upper()
        return spectral_norm_upper(self.matrix)

    @property
    def fan_in(self) -> int:
        return int(self.matrix.shape[1])

    def with_extra_offset(self, shift: np.ndarray) -> Dense | None:
        shift = float_array(shift)
        if broadcast_shapes(self.out_shape, shift.shape) != self.out_shape:
            return None
        total = shift if self.offset_raw is None else self.offset_raw + shift
        return Dense(self.in_shapes[0], self.matrix, total, self.axis)

    def emit_interval_onnx(self, b, x):
        """Centre and radius as MatMul (+ Add): see ``fast_interval.affine``."""
        gemm = self.axis == -1 and len(self.in_shapes[0]) == 2 and (
            self.offset_raw is None or self.offset_raw.ndim <= 2 and broadcast_shapes(
                self.offset_raw.shape, (self.in_shapes[0][0], self.matrix.shape[0]))
            == (self.in_shapes[0][0], self.matrix.shape[0]))

        def emit(inp, w, bias):
            if gemm:  # x Wᵀ + b with W as stored (no transposed copy)
                return b.op("Gemm", [inp, b.const(w)] + ([] if bias is None else
                                                         [b.const(bias)]), transB=1)
            if self.axis == -1:
                y = b.op("MatMul", [inp, b.const(np.ascontiguousarray(w.T))])
            else:
                y = b.op("MatMul", [b.const(w), inp])
            return y if bias is None else b.op("Add", [y, b.const(bias)])

        return b.affine(x, self.matrix, self.offset_raw, self.fan_in,
                        float(np.abs(self.matrix).sum(axis=1).max()), emit, self.out_shape)

    def parameters(self) -> dict[str, np.ndarray]:
        p = {"weight": self.matrix}
        if self.offset_raw is not None:
            p["bias"] = self.offset_raw
        return p

    def describe(self) -> str:
        bias = "+b" if self.offset_raw is not None else ""
        side = "" if self.axis == -1 else " (left)"
        return f"{self.matrix.shape[1]}->{self.matrix.shape[0]}{bias}{side}"


class ElementwiseAffine(AffinePrimitive):
    """y = x * scale + shift, with constants broadcast NumPy/ONNX-style.

    Covers Add/Sub/Mul/Div with a constant, input normalisation, inference-mode batch norm.
    """
    rules: ClassVar[frozenset[str]] = AffinePrimitive.rules | {"ort_interval", "row_norms"}

    kind = "scale-shift"

    def __init__(self, in_shape: Shape, scale: np.ndarray | None, shift: np.ndarray | None,
                 label: str = "") -> None:
        self.in_shapes = (tuple(in_shape),)
        shapes = [tuple(in_shape)]
        self.scale_raw = None if scale is None else float_array(scale)
        self.shift_raw = None if shift is None else float_array(shift)
        for p in (self.scale_raw, self.shift_raw):
            if p is not None:
                shapes.append(p.shape)
        self.out_shape = broadcast_shapes(*shapes)
        rank = len(self.out_shape)
        self.scale = None if scale is None else lift(self.scale_raw, rank)
        self.offset = None if shift is None else lift(self.shift_raw, rank)
        self.label = label

    def crop(self, region: Region) -> tuple[ElementwiseAffine, list[Region]] | None:
        """Entrywise (when the constants do not broadcast the input bigger): the same region
        of the input, with the constants sliced on their non-broadcast axes."""
        if self.out_shape != self.in_shapes[0]:
            return None
        rank = len(self.out_shape)

        def part(p):
            if p is None:
                return None
            p = expand_to_rank(p, rank)
            return p[tuple(slice(a, b) if d > 1 else slice(None)
                           for (a, b), d in zip(region, p.shape))]

        shape = tuple(b - a for a, b in region)
        return ElementwiseAffine(shape, part(self.scale_raw), part(self.shift_raw),
                                 self.label), [region]

    def _apply(self, scale: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        x = lift_input(x, len(self.out_shape))
        y = x if scale is None else x * scale
        if y.shape[1:] != self.out_shape:
            y = np.broadcast_to(y, (x.shape[0], *self.out_shape))
        return y

    def linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.scale, x)

    def abs_linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(None if self.scale is None else np.abs(self.scale), x)

    def sq_linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(None if self.scale is None else self.scale**2, x)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        y = lam if self.scale is None else lam * self.scale
        return sum_to_shape(y, self.in_shapes[0])

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        y = lam if self.scale is None else lam * np.abs(self.scale)
        return sum_to_shape(y, self.in_shapes[0])

    def spectral_norm_upper(self) -> float:
        """A diagonal map (when the constants do not broadcast the input bigger): max |scale|."""
        if self.out_shape != self.in_shapes[0]:
            return super().spectral_norm_upper()
        return 1.0 if self.scale is None else float(np.max(np.abs(self.scale)))

    @property
    def fan_in(self) -> int:
        return 1

    def interval(self, box):
        """Exact endpoints x·s + b (by the sign of s), each operation rounded outward."""

        lo, hi = box
        if self.scale is not None:
            a, b = self._apply(self.scale, lo), self._apply(self.scale, hi)
            lo, hi = round_down(np.minimum(a, b)), round_up(np.maximum(a, b))
        else:
            lo, hi = self._apply(None, lo), self._apply(None, hi)
        if self.offset is not None:
            lo, hi = round_down(lo + self.offset), round_up(hi + self.offset)
        return lo, hi

    def emit_interval_onnx(self, b, x):
        """Mul (+ Add) on centre and radius: an affine map of fan-in 1."""
        scale = np.ones(()) if self.scale_raw is None else self.scale_raw

        def emit(inp, w, bias):
            y = inp if (w.size == 1 and float(w.reshape(-1)[0]) == 1.0) else b.op(
                "Mul", [inp, b.const(w)])
            return y if bias is None else b.op("Add", [y, b.const(bias)])

        return b.affine(x, scale, self.shift_raw, 1, float(np.abs(scale).max()), emit,
                        self.out_shape)

    def with_extra_offset(self, shift: np.ndarray) -> ElementwiseAffine | None:
        shift = float_array(shift)
        if broadcast_shapes(self.out_shape, shift.shape) != self.out_shape:
            return None
        total = shift if self.shift_raw is None else self.shift_raw + shift
        return ElementwiseAffine(self.in_shapes[0], self.scale_raw, total, self.label)

    def parameters(self) -> dict[str, np.ndarray]:
        p = {}
        if self.scale_raw is not None:
            p["scale"] = self.scale_raw
        if self.shift_raw is not None:
            p["shift"] = self.shift_raw
        return p

    def describe(self) -> str:
        parts = []
        if self.scale_raw is not None:
            parts.append("*" + _brief(self.scale_raw))
        if self.shift_raw is not None:
            parts.append("+" + _brief(self.shift_raw))
        return (self.label + " " if self.label else "") + " ".join(parts)


def _brief(a: np.ndarray) -> str:
    return f"{a.item():.4g}" if a.size == 1 else f"[{'x'.join(map(str, a.shape))}]"


# --------------------------------------------------------------------------------------------
# Converters


@onnx_converter("MatMul")
def convert_matmul(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    a, b = args
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        raise ctx.fail("a product of two computed tensors (e.g. attention) is not supported; "
                       "only MatMul with a constant operand")
    if isinstance(b, Const):  # x @ W
        w = float_array(b.value)
        x = a
        if w.ndim == 1:  # vector: contracts the last axis away
            y = ctx.emit(Dense(x.shape, w[None, :]), [x])
            return [ctx.emit(Reshape(y.shape, y.shape[:-1]), [y], "/squeeze")]
        if w.ndim != 2:
            raise ctx.fail(f"MatMul with a constant of rank {w.ndim} is not supported (rank 2)")
        return [ctx.emit(Dense(x.shape, w.T), [x])]
    w = float_array(const_value(ctx, a, "MatMul operand"))  # W @ x
    x = b
    if w.ndim == 2 and len(x.shape) == 1:  # W @ v for a vector v is v ↦ M v on its only axis
        return [ctx.emit(Dense(x.shape, w), [x])]
    if w.ndim != 2 or len(x.shape) < 2:
        raise ctx.fail("MatMul with a constant left operand needs a 2-D constant and a "
                       "computed operand of rank >= 2")
    return [ctx.emit(Dense(x.shape, w, axis=-2), [x])]


@onnx_converter("Gemm")
def convert_gemm(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    trans_a, trans_b = attr(node, "transA", 0), attr(node, "transB", 0)
    bias = None
    if c is not None:
        bias = beta * float_array(const_value(ctx, c, "Gemm bias C"))
    if isinstance(a, Tensor) and isinstance(b, Const):
        x = a
        if trans_a:
            x = ctx.emit(Transpose(x.shape, (1, 0)), [x], "/transA")
        w = float_array(b.value)
        w = w.T if trans_b else w  # (K, N)
        return [ctx.emit(Dense(x.shape, alpha * w.T, bias), [x])]
    if isinstance(b, Tensor) and isinstance(a, Const):
        x = b
        if trans_b:
            x = ctx.emit(Transpose(x.shape, (1, 0)), [x], "/transB")
        w = float_array(a.value)
        w = w.T if trans_a else w  # (M, K)
        return [ctx.emit(Dense(x.shape, alpha * w, bias, axis=-2), [x])]
    raise ctx.fail("Gemm of two computed tensors is not supported; one operand must be constant")


@onnx_converter("Neg")
def convert_neg(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    return [ctx.emit(ElementwiseAffine(x.shape, np.array(-1.0), None), [x])]
