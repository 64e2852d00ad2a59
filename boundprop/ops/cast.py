"""Casts: to float32/float64 (the identity on the reals the IR computes with) and the rounding
to float16/bfloat16 (RoundToFormat, a step function: interval rule only).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from boundprop.ops.base import (
    Const,
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    TightensEveryEntry,
    Value,
    attr,
    const_value,
    onnx_converter,
)
from boundprop.ops.shape import computed_input

_FLOAT_TYPES = {1, 10, 11, 16}  # float, float16, double, bfloat16


def _f16_round(x: np.ndarray, direction: int) -> np.ndarray:
    """x rounded to float16: to nearest-even (direction 0), down (−1) or up (+1). numpy's
    float64 → float16 conversion is correctly rounded (to nearest-even); stepping it one
    float16 towards the exact value where it went the wrong way gives the directed rounding.
    Beyond the largest finite float16 (65504) nearest rounding gives ±inf from 65520 on."""
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.asarray(x, dtype=np.float64).astype(np.float16)
        if direction < 0:
            r = np.where(r > x, np.nextafter(r, np.float16(-np.inf)), r)
        elif direction > 0:
            r = np.where(r < x, np.nextafter(r, np.float16(np.inf)), r)
    return r.astype(np.float64)


def _bf16_round(x: np.ndarray, direction: int) -> np.ndarray:
    """x rounded to bfloat16 (float32's exponent range, 8 significant bits). Directed
    roundings (±1) go through float32 rounded the same way, then drop the low 16 bits
    towards the wanted side (both steps are monotone and on the right side, so their
    composition is the directed rounding). Nearest (0): float32 then nearest-even on the
    16 dropped bits, as onnxruntime does."""
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.asarray(x, dtype=np.float64)
        f = x.astype(np.float32)
        if direction < 0:
            f = np.where(f > x, np.nextafter(f, np.float32(-np.inf)), f)
        elif direction > 0:
            f = np.where(f < x, np.nextafter(f, np.float32(np.inf)), f)
        bits = f.view(np.uint32).astype(np.uint64)
        if direction == 0:
            bits = bits + 0x7FFF + ((bits >> 16) & 1)
        trunc = (bits & 0xFFFF0000).astype(np.uint32).view(np.float32)
        if direction != 0:  # truncation rounds towards zero: step away where that is wrong
            wrong = (trunc > f) if direction < 0 else (trunc < f)
            step = (bits + 0x10000) & 0xFFFF0000
            trunc = np.where(wrong, step.astype(np.uint32).view(np.float32), trunc)
        finite = np.isfinite(f)
        out = np.where(finite, trunc, f).astype(np.float64)
    return np.where(np.isnan(x), np.nan, out)


class RoundToFormat(TightensEveryEntry, Primitive):
    """Cast to a narrower float format (float16, bfloat16) and back: y = round(x), rounded
    to nearest-even with overflow to ±inf. Rounding is monotone, so the image of [l, u] lies
    in [round_down(l), round_up(u)] (which also covers truncating implementations). A step
    function: not Lipschitz (its constants are infinite), no linear relaxation (boxed)."""

    family: ClassVar[str] = "activation"
    rules: ClassVar[frozenset[str]] = frozenset({"interval", "constants", "needs_tighter"})
    FORMATS: ClassVar[dict[int, str]] = {10: "float16", 16: "bfloat16"}

    def __init__(self, in_shape: Shape, fmt: str) -> None:
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.format = fmt
        self.kind = f"round-{'f16' if fmt == 'float16' else 'bf16'}"

    def _round(self, x: np.ndarray, direction: int) -> np.ndarray:
        return (_f16_round if self.format == "float16" else _bf16_round)(x, direction)

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return self._round(x, 0)

    def interval(self, box):
        """[round_down(lo), round_up(hi)]: contains round(x) for every x in [lo, hi]."""
        return self._round(box[0], -1), self._round(box[1], 1)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """None that bounds anything: 0 almost everywhere, a jump at every rounding boundary."""
        raise NotImplementedError(f"{self.kind} is a step function")

    def float32_error(self, boxes, out):
        """0: the interval rule already encloses the rounding of any value of the (float32)
        input enclosure, as onnxruntime rounds it (its overflow to ±inf included)."""
        return np.zeros_like(out[0])

    def constants_rule(self, ctx):
        import sympy as sp  # lazy: sympy is heavy (only constants need it)

        from boundprop.ops.rules import Rule  # lazy: loads sympy

        return Rule(sp.oo, sp.oo, sp.oo, sp.oo, sp.oo,
                    reason=f"{self.kind}: a cast to {self.format} is a step function "
                           "(not Lipschitz, not differentiable)")

    def describe(self) -> str:
        return f"cast to {self.format} and back"


@onnx_converter("Cast", "CastLike")
def convert_cast(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    if node.op_type == "CastLike" and isinstance(args[0], Const):
        # The target is only used for its type: a constant cast like a computed float tensor.
        return [Const(np.asarray(args[0].value, dtype=np.float64))]
    x = computed_input(ctx, args[0], node.op_type)
    if node.op_type == "Cast":
        to = attr(node, "to")
    else:
        like = args[1]
        to = 1 if isinstance(like, Tensor) else {
            np.dtype(np.float32): 1, np.dtype(np.float64): 11, np.dtype(np.float16): 10}.get(
            const_value(ctx, like, "CastLike target").dtype, 0)
    if to not in _FLOAT_TYPES:
        raise ctx.fail("a cast of a computed tensor to a non-float type is not differentiable; "
                       "boundprop analyses real-valued networks only")
    if to in RoundToFormat.FORMATS:
        return [ctx.emit(RoundToFormat(x.shape, RoundToFormat.FORMATS[to]), [x])]
    # A cast to float32/float64 is the identity on the real numbers the IR computes with
    # (float32 execution models float32 rounding separately, see rounding.py).
    return [x]
