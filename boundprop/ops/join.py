"""Joins: primitives fed by two or more computed tensors (residual sums, concatenations)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from boundprop.domains.interval_ort import ETA, SLACK64, U1, FastIntervalUnavailable, IValue
from boundprop.ops.affine import ElementwiseAffine
from boundprop.ops.base import (
    Const,
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    Value,
    attr,
    broadcast_shapes,
    float_array,
    normalize_axis,
    onnx_converter,
)
from boundprop.ops.broadcast import lift_input, sum_to_shape
from boundprop.ops.geometry import Region
from boundprop.ops.shape import ConcatConst
from boundprop.ops.smooth import Erf, Gelu
from boundprop.rounding import FLOAT32_ABSOLUTE, UNIT_ROUNDOFF, gamma, gamma32, round_up, widen


class Sum(Primitive):
    """y = Σ_k c_k x_k with NumPy broadcasting (Add/Sub of computed tensors: residuals)."""

    family: ClassVar[str] = "join"
    rules: ClassVar[frozenset[str]] = (
        frozenset({"interval", "ort_interval", "backward_linear", "constants", "jacobian",
                   "vjp", "relaxed_forward"}))
    kind = "sum"

    def __init__(self, in_shapes: tuple[Shape, ...], coefficients: tuple[float, ...]):
        self.in_shapes = tuple(tuple(s) for s in in_shapes)
        self.coefficients = tuple(float(c) for c in coefficients)
        self.out_shape = broadcast_shapes(*self.in_shapes)

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        rank = len(self.out_shape)
        total = None
        for c, x in zip(self.coefficients, xs):
            term = lift_input(x, rank) * c if c != 1.0 else lift_input(x, rank)
            total = term if total is None else total + term
        if total.shape[1:] != self.out_shape:
            total = np.broadcast_to(total, (total.shape[0], *self.out_shape))
        return total

    def interval(self, *boxes):
        lo_terms, hi_terms = [], []
        for c, (lo, hi) in zip(self.coefficients, boxes):
            a, b = (lo * c, hi * c) if c >= 0 else (hi * c, lo * c)
            lo_terms.append(a)
            hi_terms.append(b)
        plain = Sum(self.in_shapes, (1.0,) * len(boxes))
        lo, hi = plain.evaluate(*lo_terms), plain.evaluate(*hi_terms)
        mag = plain.evaluate(
            *[np.maximum(np.abs(a), np.abs(b)) for a, b in zip(lo_terms, hi_terms)])
        return widen(lo, hi, gamma(len(boxes) + 1) * mag)

    def emit_interval_onnx(self, b, *xs):
        """Centre/radius form, one input at a time: with both radii materialised
        (r_k ≥ ρ_k r_k + eps_k|c_k|), ĉ = fl(c₁ ± c₂) and r̂ = fl(r₁ + r₂) are one rounding
        each: |c₁ ± c₂ − ĉ| ≤ U1|ĉ| + ETA and r₁ + r₂ ≤ (r̂ + ETA)/(1−γf) (γf: the radius
        Add may be fused into the convolution producing r₁, see ``gamma_fused``; centres feed
        a guard too, so they are never fused); so the sum is ``cr`` with rho = 1/(1−γf),
        eps = U1, tau = tau₁ + tau₂ + 3·ETA."""

        if any(c not in (1.0, -1.0) for c in self.coefficients):
            raise FastIntervalUnavailable("Sum with coefficients other than +-1")
        acc = b.cr(xs[0])
        if self.coefficients[0] == -1.0:  # negation is exact
            acc = IValue("cr", b.op("Neg", [acc.a]), acc.b, acc.shape, eps=acc.eps,
                         tau=acc.tau, rho=acc.rho, guarded=acc.guarded)
        for coef, x in zip(self.coefficients[1:], xs[1:]):
            acc, v = b.materialise(acc), b.materialise(b.cr(x))
            c = b.op("Add" if coef == 1.0 else "Sub", [acc.a, v.a])
            r = b.op("Add", [acc.b, v.b])
            acc = IValue("cr", c, r, self.out_shape, rho=SLACK64 / (1 - b.gamma_fused),
                         eps=U1 * SLACK64,
                         tau=acc.tau + v.tau + 3 * ETA, guarded=False)
        return acc

    def linear_relaxation(self, *boxes):
        return None

    def relaxed_forward(self, xs, relax, lam):
        return self.evaluate(*xs)  # linear: the map itself

    def float32_error(self, boxes, out):
        mags = [np.abs(c) * np.maximum(np.abs(lo), np.abs(hi))
                for c, (lo, hi) in zip(self.coefficients, boxes)]
        return gamma32(len(boxes) + 1) * Sum(self.in_shapes, (1.0,) * len(boxes)).evaluate(
            *mags) + FLOAT32_ABSOLUTE

    def backward_linear(self, lam: np.ndarray, relax, boxes):
        outs, err = [], np.zeros(lam.shape[0])
        for c, shape, (lo, hi) in zip(self.coefficients, self.in_shapes, boxes):
            li = sum_to_shape(lam, shape)
            if li.shape[1:] != shape:
                li = li.reshape((li.shape[0],) + shape)
            if c != 1.0:
                li = li * c
            # Broadcast sums and non-unit coefficients round: γ-bound against |z| ≤ zmax.
            if c not in (1.0, -1.0) or li.size != lam.size:
                zmax = np.maximum(np.abs(lo), np.abs(hi))
                n = lam.size // max(li.size, 1) + 1
                err += 2 * (n + 1) * UNIT_ROUNDOFF * (np.abs(li) * zmax).sum(
                    axis=tuple(range(1, li.ndim)))
            outs.append(li)
        return outs, np.zeros(lam.shape[0]), err

    def crop(self, region: Region) -> tuple[Sum, list[Region]] | None:
        """Without broadcasting the sum is entrywise: the same region of every input."""
        if any(s != self.out_shape for s in self.in_shapes):
            return None
        shape = tuple(b - a for a, b in region)
        return Sum((shape,) * len(self.in_shapes), self.coefficients), [region] * len(
            self.in_shapes)

    def _copies(self, k: int) -> int:
        return int(np.prod(self.out_shape)) // max(int(np.prod(self.in_shapes[k])), 1)

    def constants_rule(self, ctx):
        """ℓ ≤ Σ_k |c_k| r_k ℓ_k with r_k = (copies made by broadcasting)^{1/p}; L, B alike."""
        import sympy as sp  # lazy: sympy is heavy (only constants need it)

        from boundprop.ops.rules import dim_factor, sum_rule  # lazy: loads sympy

        weights = []
        for k, c in enumerate(self.coefficients):
            copies = self._copies(k)
            factor = sp.sqrt(copies) if ctx.norm == "2" else sp.Integer(
                int(dim_factor(copies, ctx.norm)))
            weights.append(abs(sp.Rational(c)) * factor)
        return sum_rule(ctx, weights)

    def jacobian_backward(self, c, r, boxes):
        out = []
        for k, coef in enumerate(self.coefficients):
            cc = sum_to_shape(c * coef, self.in_shapes[k]) if coef != 1.0 else sum_to_shape(
                c, self.in_shapes[k])
            rr = sum_to_shape(r * abs(coef) + gamma(self._copies(k) + 2) * np.abs(c * coef),
                              self.in_shapes[k])
            out.append((cc, round_up(rr)))
        return out

    def describe(self) -> str:
        return " ".join(f"{c:+g}" for c in self.coefficients)


class Concat(Primitive):
    """Concatenation of computed tensors along an axis."""

    family: ClassVar[str] = "join"
    rules: ClassVar[frozenset[str]] = (
        frozenset({"interval", "ort_interval", "backward_linear", "constants", "jacobian",
                   "vjp", "relaxed_forward"}))
    kind = "concat"

    def __init__(self, in_shapes: tuple[Shape, ...], axis: int):
        self.in_shapes, self.axis = tuple(tuple(s) for s in in_shapes), axis
        out = list(self.in_shapes[0])
        out[axis] = sum(s[axis] for s in self.in_shapes)
        self.out_shape = tuple(out)

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=self.axis + 1)

    def interval(self, *boxes):
        return (self.evaluate(*[b[0] for b in boxes]), self.evaluate(*[b[1] for b in boxes]))

    def emit_interval_onnx(self, b, *xs):
        """ONNX Concat of the lows and of the highs (or of centres and radii): exact; the
        pending widening of the result is the largest of the inputs'."""
        from dataclasses import replace

        forms = {x.kind for x in xs}
        vs = list(xs) if forms == {"cr"} else [b.lh(x) for x in xs]
        cat = [b.op("Concat", [getattr(v, f) for v in vs], axis=self.axis) for f in "ab"]
        return replace(vs[0], a=cat[0], b=cat[1], shape=self.out_shape,
                       eps=max(v.eps for v in vs), tau=max(v.tau for v in vs),
                       rho=max(v.rho for v in vs), nonneg=all(v.nonneg for v in vs),
                       guarded=all(v.guarded for v in vs))

    def linear_relaxation(self, *boxes):
        return None

    def relaxed_forward(self, xs, relax, lam):
        return self.evaluate(*xs)  # linear: the map itself

    def float32_error(self, boxes, out):
        return np.zeros_like(out[0])

    def backward_linear(self, lam: np.ndarray, relax, boxes):
        sizes = np.cumsum([s[self.axis] for s in self.in_shapes])[:-1]
        parts = np.split(lam, sizes, axis=self.axis + 1)
        return list(parts), np.zeros(lam.shape[0]), np.zeros(lam.shape[0])

    def constants_rule(self, ctx):
        from boundprop.ops.rules import stack_rule  # lazy: loads sympy

        return stack_rule(ctx)

    def jacobian_backward(self, c, r, boxes):
        cuts = np.cumsum([s[self.axis] for s in self.in_shapes])[:-1]
        ax = self.axis + 1
        return list(zip(np.split(c, cuts, axis=ax), np.split(r, cuts, axis=ax)))

    def describe(self) -> str:
        return f"axis={self.axis}"


@onnx_converter("Concat")
def convert_concat(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    vals = [a for a in args if a is not None]
    tensors = [a for a in vals if isinstance(a, Tensor)]
    rank = len(tensors[0].shape)
    axis = normalize_axis(attr(node, "axis", 1 if ctx.opset < 4 else 0), rank)
    shapes = [a.shape if isinstance(a, Tensor) else a.value.shape for a in vals]
    for s in shapes:
        if len(s) != rank or any(d != e for i, (d, e) in enumerate(zip(s, shapes[0]))
                                 if i != axis):
            raise ctx.fail(f"Concat inputs of shapes {shapes} do not match off axis {axis}")
    vals = [v for v, s in zip(vals, shapes) if s[axis] > 0]  # empty pieces add nothing
    tensors = [a for a in vals if isinstance(a, Tensor)]
    if len(vals) == 1:
        return [vals[0]]
    if len(tensors) == 1:
        pieces = [None if isinstance(v, Tensor) else v.value for v in vals]
        return [ctx.emit(ConcatConst(tensors[0].shape, pieces, axis), [tensors[0]])]
    if len(tensors) != len(vals):
        # Several computed tensors and constants: join the computed ones, then embed constants.
        joined_shapes = [t.shape for t in tensors]
        joined = ctx.emit(Concat(tuple(joined_shapes), axis), tensors, "/join")
        # Positions of the constants relative to the joined block must stay contiguous.
        kinds = [isinstance(v, Tensor) for v in vals]
        first, last = kinds.index(True), len(kinds) - 1 - kinds[::-1].index(True)
        if not all(kinds[first:last + 1]):
            raise ctx.fail("Concat interleaving constants between computed tensors is not "
                           "supported")
        pieces = ([v.value for v in vals[:first]] + [None]
                  + [v.value for v in vals[last + 1:]])
        return [ctx.emit(ConcatConst(joined.shape, pieces, axis), [joined])]
    return [ctx.emit(Concat(tuple(t.shape for t in tensors), axis), tensors)]


@onnx_converter("Sum")
def convert_sum(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    tensors = [a for a in args if isinstance(a, Tensor)]
    consts = [a.value for a in args if isinstance(a, Const)]
    out = tensors[0] if len(tensors) == 1 else ctx.emit(
        Sum(tuple(t.shape for t in tensors), (1.0,) * len(tensors)), tensors)
    if consts:
        out = ctx.emit(ElementwiseAffine(out.shape, None, sum(consts)), [out], "/const")
    return [out]


def match_gelu_product(ctx: ConversionContext, a: Tensor, b: Tensor) -> Tensor | None:
    """Recognise x·α·(k + k·erf(x/√2)) — the product torch exports for exact GELU — and emit
    Gelu(x) scaled by 2αk instead. Returns None when the operands are not that pattern."""

    nodes = ctx.graph_nodes

    def scalar_affine(t: Tensor):
        """(source tensor, scale, shift) if t is a scalar scale-shift of another tensor."""
        n = nodes[t.node]
        p = n.op
        if isinstance(p, ElementwiseAffine) and n.shape == p.in_shapes[0]:
            sc = 1.0 if p.scale_raw is None else p.scale_raw
            sh = 0.0 if p.shift_raw is None else p.shift_raw
            if np.size(sc) == 1 and np.size(sh) == 1:
                src = n.inputs[0]
                return Tensor(src, nodes[src].shape), float(np.ravel(sc)[0]), float(
                    np.ravel(sh)[0])
        return None

    for x_side, erf_side in ((a, b), (b, a)):
        # erf side: k1 * erf(c * x) + k0 with k1 == k0 and c == 1/sqrt(2)
        outer = scalar_affine(erf_side)
        if outer is None:
            continue
        erf_t, k1, k0 = outer
        if not isinstance(nodes[erf_t.node].op, Erf):
            continue
        inner = scalar_affine(Tensor(nodes[erf_t.node].inputs[0], erf_t.shape))
        if inner is None:
            continue
        x_t, c, shift = inner
        if shift != 0.0 or not np.isclose(c, 1 / np.sqrt(2), rtol=1e-6):
            continue
        if not np.isclose(k1, k0, rtol=1e-6):
            continue
        # x side: x itself or alpha * x
        if x_side.node == x_t.node:
            alpha = 1.0
        else:
            xs = scalar_affine(x_side)
            if xs is None or xs[0].node != x_t.node or xs[2] != 0.0:
                continue
            alpha = xs[1]
        if x_t.shape != a.shape or a.shape != b.shape:
            continue
        g = ctx.emit(Gelu(x_t.shape), [x_t], "/gelu")
        factor = 2.0 * alpha * k0
        if factor == 1.0:
            return g
        return ctx.emit(ElementwiseAffine(g.shape, np.array(factor), None), [g], "/gelu-scale")
    return None


@onnx_converter("Add", "Sub", "Mul", "Div")
def convert_arithmetic(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    a, b = args
    op = node.op_type
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if op in ("Add", "Sub"):
            return [ctx.emit(Sum((a.shape, b.shape), (1.0, 1.0 if op == "Add" else -1.0)), [a, b])]
        if op == "Mul":
            gelu = match_gelu_product(ctx, a, b)
            if gelu is not None:
                return [gelu]
        raise ctx.fail(f"{op} of two computed tensors is not supported (only Add/Sub, and the "
                       "Erf-GELU product pattern)")
    if isinstance(a, Tensor):
        x, c = a, float_array(b.value)
        if op == "Add":
            prim = ElementwiseAffine(x.shape, None, c)
        elif op == "Sub":
            prim = ElementwiseAffine(x.shape, None, -c)
        elif op == "Mul":
            prim = ElementwiseAffine(x.shape, c, None)
        else:
            if np.any(c == 0):
                raise ctx.fail("division by a constant containing zeros")
            prim = ElementwiseAffine(x.shape, 1.0 / c, None)
        return [ctx.emit(prim, [x])]
    x, c = b, float_array(a.value)
    if op == "Add":
        prim = ElementwiseAffine(x.shape, None, c)
    elif op == "Sub":
        prim = ElementwiseAffine(x.shape, np.array(-1.0), c)
    elif op == "Mul":
        prim = ElementwiseAffine(x.shape, c, None)
    else:
        raise ctx.fail("division of a constant by a computed tensor (reciprocal) is not supported")
    return [ctx.emit(prim, [x])]
