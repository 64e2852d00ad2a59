"""Pooling and reductions: MaxPool, AveragePool, global pools, ReduceMean/Sum/Max/Min.

Average pooling and sum/mean reductions are linear (affine primitives of the pooling family);
max pooling and max/min reductions are piecewise linear.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from boundprop.domains.interval_ort import FastIntervalUnavailable
from boundprop.ops.base import (
    AffinePrimitive,
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    TightensEveryEntry,
    Value,
    as_str,
    attr,
    const_value,
    normalize_axis,
    onnx_converter,
)
from boundprop.ops.conv import check_window, clamp_strides, resolve_pads, window_crop
from boundprop.ops.geometry import Region, window_slices
from boundprop.rounding import gamma, round_up


def pool_geometry(in_shape: Shape, kernel: Shape, strides: Shape, dilations: Shape,
                  pads_begin: list[int], pads_end: list[int], ceil_mode: bool):
    """Output spatial size, and the extra zero-area each axis needs at its end in ceil mode."""
    out, overflow = [], []
    for n, k, s, d, pb, pe in zip(in_shape[2:], kernel, strides, dilations, pads_begin,
                                  pads_end):
        span = n + pb + pe - ((k - 1) * d + 1)
        if span < 0:
            raise ValueError("pooling window larger than the padded input")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + pb:
            o -= 1  # a window starting in the end padding is dropped (ONNX/ORT rule)
        out.append(o)
        overflow.append(max(0, (o - 1) * s + (k - 1) * d + 1 - (n + pb + pe)))
    return tuple(out), overflow


class _Window:
    """Shared geometry of sliding-window pools."""

    def onnx_shape_inference_agrees(self) -> bool:
        # ONNX inference keeps a ceil-mode window that starts past the input; we drop it.
        return not self.ceil_mode

    def _setup(self, in_shape, kernel, strides, dilations, pads_begin, pads_end, ceil_mode):
        self.in_shapes = (tuple(in_shape),)
        self.kernel, self.strides, self.dilations = tuple(kernel), tuple(strides), tuple(dilations)
        self.pads_begin, self.pads_end, self.ceil_mode = list(pads_begin), list(pads_end), ceil_mode
        out_sp, self.overflow = pool_geometry(in_shape, self.kernel, self.strides,
                                              self.dilations, pads_begin, pads_end, ceil_mode)
        self.out_shape = tuple(in_shape[:2]) + out_sp

    def _pad(self, x: np.ndarray, value: float) -> np.ndarray:
        widths = [(0, 0)] * 3 + [(b, e + o) for b, e, o in zip(self.pads_begin, self.pads_end,
                                                              self.overflow)]
        if any(w != (0, 0) for w in widths):
            x = np.pad(x, widths, constant_values=value)
        return x

    def _slices(self):
        for _, sl in window_slices(self.kernel, self.strides, self.dilations,
                                   self.out_shape[2:]):
            yield (slice(None), slice(None), slice(None), *sl)

    def describe(self) -> str:
        k = "x".join(map(str, self.kernel))
        return f"{k} s{','.join(map(str, self.strides))}" + (
            f" p{','.join(map(str, self.pads_begin + self.pads_end))}"
            if any(self.pads_begin) or any(self.pads_end) else "")


    def _crop_geometry(self, region):
        """For outputs ``region`` spanning every batch entry and channel: the input region
        the windows read, its shape, and the pads of the cropped op (``conv.window_crop``);
        None otherwise."""
        if tuple(region[:2]) != ((0, self.out_shape[0]), (0, self.out_shape[1])):
            return None
        geo = window_crop(region, self.in_shapes[0], self.kernel, self.strides,
                          self.dilations, self.pads_begin)
        if geo is None:
            return None
        in_region, pb, pe = geo
        return in_region, tuple(b - a for a, b in in_region), pb, pe

class MaxPool(_Window, TightensEveryEntry, Primitive):
    family: ClassVar[str] = "pooling"
    rules: ClassVar[frozenset[str]] = (
        frozenset({"interval", "ort_interval", "backward_linear", "constants", "jacobian",
                   "vjp", "needs_tighter", "relaxed_forward"}))
    kind = "maxpool"

    def __init__(self, in_shape, kernel, strides, dilations, pads_begin, pads_end, ceil_mode):
        self._setup(in_shape, kernel, strides, dilations, pads_begin, pads_end, ceil_mode)

    def interval(self, box):
        # max is exact and monotone in every argument.
        return self.evaluate(box[0]), self.evaluate(box[1])

    def float32_error(self, boxes, out):
        return np.zeros_like(out[0])  # max is exact

    def crop(self, region: Region) -> tuple[MaxPool, list[Region]] | None:
        """The same window on the input crop of the outputs in ``region`` (every channel;
        ``conv.window_crop``): each window reads the same entries and the same (−∞) padding,
        so the relaxation (argmax of lower bounds) is the same on it."""
        geo = self._crop_geometry(region)
        if geo is None:
            return None
        in_region, shape, pb, pe = geo
        return MaxPool(shape, self.kernel, self.strides, self.dilations, pb, pe, False), [
            in_region]

    def emit_interval_onnx(self, b, x):
        """MaxPool of lo and of hi: exact and monotone."""
        attrs = dict(kernel_shape=list(self.kernel), strides=list(self.strides),
                     pads=list(self.pads_begin) + list(self.pads_end),
                     dilations=list(self.dilations), ceil_mode=int(self.ceil_mode))
        return b.monotone(x, lambda n: b.op("MaxPool", [n], **attrs), shape=self.out_shape)

    def _window_index(self) -> np.ndarray:
        """(n_offsets, *out_shape): flat input index each window offset reads (−1: padding)."""
        idx = np.arange(int(np.prod(self.in_shapes[0])), dtype=np.int64).reshape(
            (1, *self.in_shapes[0])).astype(np.float64)
        padded = self._pad(idx, -1.0)
        return np.stack([padded[sl][0] for sl in self._slices()]).astype(np.int64)

    def linear_relaxation(self, box):
        """y ≥ x_j* with j* the window entry of largest lower bound; y ≤ x_j* if that entry
        dominates the window (its lower ≥ every other upper), else y ≤ max upper."""
        lo, hi = box
        index = self._window_index()
        valid = index >= 0
        flat_lo, flat_hi = lo.reshape(-1), hi.reshape(-1)
        safe = np.where(valid, index, 0)
        lows = np.where(valid, flat_lo[safe], -np.inf)
        highs = np.where(valid, flat_hi[safe], -np.inf)
        best = np.argmax(lows, axis=0)
        j_star = np.take_along_axis(safe, best[None], 0)[0]
        best_lo = np.take_along_axis(lows, best[None], 0)[0]
        others = np.where(np.arange(len(index))[:, None].reshape(
            (-1,) + (1,) * best.ndim) == best[None], -np.inf, highs).max(axis=0)
        dominated = best_lo >= others
        return j_star, dominated, highs.max(axis=0)

    def backward_linear(self, lam: np.ndarray, relax, boxes):
        j_star, dominated, upper = relax
        lp, ln = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
        coef = lp + np.where(dominated, ln, 0.0)
        k = lam.shape[0]
        lam_in = np.zeros((k, int(np.prod(self.in_shapes[0]))))
        np.add.at(lam_in, (slice(None), j_star.reshape(-1)), coef.reshape(k, -1))
        terms = np.where(dominated, 0.0, ln * upper)
        axes = tuple(range(1, lam.ndim))
        lo, hi = boxes[0]
        zmax = np.maximum(np.abs(lo), np.abs(hi)).reshape(-1)
        n = int(np.prod(self.kernel)) + 1
        err = gamma(n) * (np.abs(lam_in) * zmax).sum(axis=1) + gamma(n) * np.abs(terms).sum(
            axis=axes)
        return [lam_in.reshape((k, *self.in_shapes[0]))], terms.sum(axis=axes), err

    def relaxed_forward(self, xs, relax, lam):
        """x_j* where Λ ≥ 0 (and where j* dominates its window); the window's largest upper
        bound where Λ < 0 otherwise."""
        j_star, dominated, upper = relax
        k = lam.shape[0]
        picked = xs[0].reshape(k, -1)[:, j_star.reshape(-1)].reshape(lam.shape)
        return np.where((lam >= 0) | dominated, picked, upper)

    def multiplicity(self) -> int:
        """Most windows any input entry belongs to."""
        index = self._window_index()
        counts = np.bincount(index[index >= 0].reshape(-1), minlength=1)
        return int(counts.max()) if counts.size else 0

    def _dominated(self, box) -> np.ndarray:
        """Per output: one window entry is the max at every point of the box."""
        return self.linear_relaxation(box)[1]

    def constants_rule(self, ctx):
        """Each output copies one entry of its window: ‖Δy‖_p ≤ c^{1/p}‖Δx‖_p with c the
        most windows sharing an entry (ℓ_∞: 1). Piecewise linear: not smooth, unless on the
        set every window has one entry that dominates (then linear there, L = 0)."""
        import sympy as sp  # lazy: sympy is heavy (only constants need it)

        from boundprop.ops.rules import chain_rule, dim_factor  # lazy: loads sympy

        slope = ctx.symbol("P", dim_factor(self.multiplicity(), ctx.norm),
                           "max-pool overlap factor")
        if ctx.local and bool(np.all(self._dominated(ctx.boxes[0]))):
            return chain_rule(ctx, slope, sp.Integer(0), sp.Integer(0))
        why = ("max pool: ties possible in some window on the set" if ctx.local
               else "max pool is not differentiable where a window has ties")
        return chain_rule(ctx, slope, sp.oo, sp.Integer(0), reason=why)

    def jacobian_backward(self, c, r, boxes):
        """Clarke Jacobian of a window max: a convex combination of the entries that can be
        the max on the box (upper ≥ the window's largest lower). One candidate: exact copy;
        several: each gets a weight in [0, 1], enclosed by the hull of 0 and (C ± R)."""
        lo, hi = boxes[0]
        index = self._window_index()
        valid = index >= 0
        safe = np.where(valid, index, 0)
        flo, fhi = lo.reshape(-1), hi.reshape(-1)
        lows = np.where(valid, flo[safe], -np.inf)
        cand = valid & (np.where(valid, fhi[safe], -np.inf) >= lows.max(axis=0)[None])
        single = (cand.sum(axis=0) == 1).reshape(-1)
        k = c.shape[0]
        cf, rf = c.reshape(k, -1), r.reshape(k, -1)
        lo_s, hi_s = cf - rf, cf + rf
        mult_lo = np.where(single, lo_s, np.minimum(lo_s, 0.0)).reshape(k, -1)
        mult_hi = np.where(single, hi_s, np.maximum(hi_s, 0.0)).reshape(k, -1)
        n_in = int(np.prod(self.in_shapes[0]))
        acc_lo, acc_hi = np.zeros((k, n_in)), np.zeros((k, n_in))
        for o in range(index.shape[0]):
            sel = cand[o].reshape(-1)
            idx = safe[o].reshape(-1)[sel]
            np.add.at(acc_lo, (slice(None), idx), mult_lo[:, sel])
            np.add.at(acc_hi, (slice(None), idx), mult_hi[:, sel])

        centre = 0.5 * (acc_lo + acc_hi)
        radius = round_up((acc_hi - acc_lo) * 0.5 + gamma(index.shape[0] + 2)
                          * (np.abs(acc_lo) + np.abs(acc_hi)))
        shape = (k, *self.in_shapes[0])
        return [(centre.reshape(shape), radius.reshape(shape))]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        xp = self._pad(x, -np.inf)
        out = None
        for sl in self._slices():
            out = xp[sl].copy() if out is None else np.maximum(out, xp[sl])
        return out


class AveragePool(_Window, AffinePrimitive):
    """Mean over each window; padding counts toward the divisor iff ``count_include_pad``."""

    family: ClassVar[str] = "pooling"
    rules: ClassVar[frozenset[str]] = AffinePrimitive.rules | {"ort_interval"}
    kind = "avgpool"

    def __init__(self, in_shape, kernel, strides, dilations, pads_begin, pads_end, ceil_mode,
                 count_include_pad: bool):
        self._setup(in_shape, kernel, strides, dilations, pads_begin, pads_end, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        # The divisor of each output: windows counted over an indicator of what counts.
        inside = np.ones((1, 1, 1, *in_shape[2:]))
        widths = [(0, 0)] * 3 + [(b, e) for b, e in zip(self.pads_begin, self.pads_end)]
        ind = np.pad(inside, widths, constant_values=1.0 if count_include_pad else 0.0)
        ind = np.pad(ind, [(0, 0)] * 3 + [(0, o) for o in self.overflow])
        count = sum(ind[sl] for sl in self._slices())
        self.divisor = count[0]  # (1, 1, *out_spatial) broadcast over batch and channels

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.kernel)) + 1  # the sum, then the division

    def crop(self, region: Region) -> tuple[AveragePool, list[Region]] | None:
        """The same window on the input crop of the outputs in ``region`` (every channel;
        ``conv.window_crop``): each window sums the same entries (padding reads 0), and keeps
        its divisor (sliced from this op's: the crop's padding may count differently)."""
        geo = self._crop_geometry(region)
        if geo is None:
            return None
        in_region, shape, pb, pe = geo
        op = AveragePool(shape, self.kernel, self.strides, self.dilations, pb, pe, False,
                         self.count_include_pad)
        op.divisor = self.divisor[(slice(None), slice(None), *(slice(a, b) for a, b in
                                                                region[2:]))]
        return op, [in_region]

    def emit_interval_onnx(self, b, x):
        """ONNX AveragePool: a nonnegative linear map with row sums ≤ 1."""

        if any(d != 1 for d in self.dilations):
            raise FastIntervalUnavailable("dilated AveragePool needs opset 19")
        attrs = dict(kernel_shape=list(self.kernel), strides=list(self.strides),
                     pads=list(self.pads_begin) + list(self.pads_end),
                     ceil_mode=int(self.ceil_mode), count_include_pad=int(self.count_include_pad))
        return b.positive_linear(x, self.fan_in, 1.0,
                                 lambda n: b.op("AveragePool", [n], **attrs), self.out_shape)

    def linear(self, x: np.ndarray) -> np.ndarray:
        xp = self._pad(x, 0.0)
        total = sum(xp[sl] for sl in self._slices())
        return total / self.divisor

    def abs_linear(self, x: np.ndarray) -> np.ndarray:
        return self.linear(x)

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        return self.adjoint(lam)  # nonnegative weights

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        sp = self.in_shapes[0][2:]
        padded = [d + b + e + o for d, b, e, o in zip(sp, self.pads_begin, self.pads_end,
                                                       self.overflow)]
        grad = np.zeros(lam.shape[:3] + tuple(padded))
        scaled = lam / self.divisor
        for sl in self._slices():
            grad[sl] += scaled
        crop = tuple(slice(b, b + d) for b, d in zip(self.pads_begin, sp))
        return grad[(slice(None), slice(None), slice(None), *crop)]


class Reduce(AffinePrimitive):
    """Sum or mean over axes (ReduceSum, ReduceMean, GlobalAveragePool): linear."""

    family: ClassVar[str] = "pooling"
    rules: ClassVar[frozenset[str]] = AffinePrimitive.rules | {"ort_interval"}

    def __init__(self, in_shape: Shape, axes: tuple[int, ...], keepdims: bool, mean: bool):
        self.in_shapes = (tuple(in_shape),)
        self.axes, self.keepdims, self.mean = tuple(sorted(axes)), bool(keepdims), mean
        self.kind = "mean" if mean else "sum"
        self.out_shape = tuple(1 if i in self.axes else d for i, d in enumerate(in_shape)
                               if keepdims or i not in self.axes)

    @property
    def fan_in(self) -> int:
        return int(np.prod([self.in_shapes[0][a] for a in self.axes])) + 1

    def emit_interval_onnx(self, b, x):
        """ONNX ReduceMean/ReduceSum: nonnegative, row sums 1 (mean) or n (sum)."""
        n = int(np.prod([self.in_shapes[0][a] for a in self.axes]))
        keep = int(self.keepdims)
        if self.mean:
            def emit(name):
                return b.op("ReduceMean", [name], axes=list(self.axes), keepdims=keep)
        else:
            def emit(name):
                return b.op("ReduceSum", [name, b.const(np.array(self.axes, np.int64))],
                            keepdims=keep)
        return b.positive_linear(x, self.fan_in, 1.0 if self.mean else float(n), emit,
                                 self.out_shape)

    def linear(self, x: np.ndarray) -> np.ndarray:
        ax = tuple(a + 1 for a in self.axes)
        f = np.mean if self.mean else np.sum
        return f(x, axis=ax, keepdims=self.keepdims)

    def abs_linear(self, x: np.ndarray) -> np.ndarray:
        return self.linear(x)

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        return self.adjoint(lam)  # nonnegative weights

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        if not self.keepdims:
            lam = np.expand_dims(lam, tuple(a + 1 for a in self.axes))
        if self.mean:
            lam = lam / int(np.prod([self.in_shapes[0][a] for a in self.axes]))
        return np.broadcast_to(lam, (lam.shape[0],) + self.in_shapes[0]).copy()

    def describe(self) -> str:
        return f"axes={list(self.axes)}"


class ReduceExtreme(TightensEveryEntry, Primitive):
    """Max or min over axes (ReduceMax, ReduceMin, GlobalMaxPool): piecewise linear."""

    family: ClassVar[str] = "pooling"
    rules: ClassVar[frozenset[str]] = frozenset({"interval", "ort_interval", "constants",
                                                 "needs_tighter"})

    def __init__(self, in_shape: Shape, axes: tuple[int, ...], keepdims: bool, is_max: bool):
        self.in_shapes = (tuple(in_shape),)
        self.axes, self.keepdims, self.is_max = tuple(sorted(axes)), bool(keepdims), is_max
        self.kind = "max" if is_max else "min"
        self.out_shape = tuple(1 if i in self.axes else d for i, d in enumerate(in_shape)
                               if keepdims or i not in self.axes)

    def interval(self, box):
        return self.evaluate(box[0]), self.evaluate(box[1])

    def float32_error(self, boxes, out):
        return np.zeros_like(out[0])

    def emit_interval_onnx(self, b, x):
        """ReduceMax/ReduceMin of lo and of hi: exact and monotone."""
        op = "ReduceMax" if self.is_max else "ReduceMin"
        return b.monotone(x, lambda n: b.op(op, [n], axes=list(self.axes),
                                            keepdims=int(self.keepdims)), shape=self.out_shape)

    def constants_rule(self, ctx):
        """Each output is the max (min) of its own group: ‖Δy‖_p ≤ ‖Δx‖_p. Not smooth."""
        import sympy as sp  # lazy: sympy is heavy (only constants need it)

        from boundprop.ops.rules import chain_rule  # lazy: loads sympy

        return chain_rule(ctx, sp.Integer(1), sp.oo, sp.Integer(0),
                          reason="max/min reduction is not differentiable at ties")

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        ax = tuple(a + 1 for a in self.axes)
        f = np.max if self.is_max else np.min
        return f(x, axis=ax, keepdims=self.keepdims)

    def describe(self) -> str:
        return f"axes={list(self.axes)}"


# --------------------------------------------------------------------------------------------


def _window_args(ctx: ConversionContext, node, x: Tensor):
    d = len(x.shape) - 2
    a = {at.name: attr(node, at.name) for at in node.attribute}
    if "kernel_shape" not in a:
        raise ctx.fail("pooling needs a kernel_shape attribute")
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides") or [1] * d)
    dilations = tuple(a.get("dilations") or [1] * d)
    check_window(ctx, d, kernel, strides, dilations, a)
    if as_str(a.get("auto_pad", "NOTSET")) in ("SAME_UPPER", "SAME_LOWER") and any(
            d != 1 for d in dilations):
        # The spec counts the dilation when sizing SAME pads; onnxruntime does not. Rather
        # than pick one reading, refuse.
        raise ctx.fail("pooling with auto_pad SAME_* and dilations is ambiguous (the ONNX spec "
                       "and onnxruntime disagree on its pads); export with explicit pads")
    pb, pe = resolve_pads(a, x.shape[2:], kernel, strides, dilations)
    ceil = bool(a.get("ceil_mode", 0))
    if not ceil:  # (with ceil_mode a second window may start in the padding: keep it exact)
        strides = clamp_strides(x.shape[2:], strides, pb, pe)
    return a, kernel, strides, dilations, pb, pe, ceil


@onnx_converter("MaxPool", "AveragePool")
def convert_pool(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor) or len(x.shape) < 3:
        raise ctx.fail("pooling needs a computed input of rank >= 3 (N, C, spatial...)")
    a, kernel, strides, dilations, pb, pe, ceil = _window_args(ctx, node, x)
    try:
        if node.op_type == "MaxPool":
            prim = MaxPool(x.shape, kernel, strides, dilations, pb, pe, ceil)
            return [ctx.emit(prim, [x])] + [None] * (len(node.output) - 1)
        prim = AveragePool(x.shape, kernel, strides, dilations, pb, pe, ceil,
                           a.get("count_include_pad", 0))
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    return [ctx.emit(prim, [x])]


@onnx_converter("GlobalAveragePool", "GlobalMaxPool")
def convert_global_pool(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor) or len(x.shape) < 3:
        raise ctx.fail("global pooling needs a computed input of rank >= 3 (N, C, spatial...)")
    axes = tuple(range(2, len(x.shape)))
    if node.op_type == "GlobalAveragePool":
        return [ctx.emit(Reduce(x.shape, axes, True, mean=True), [x])]
    return [ctx.emit(ReduceExtreme(x.shape, axes, True, is_max=True), [x])]


# Opset from which each reduction takes its axes as an input instead of an attribute.
_AXES_AS_INPUT = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18}


@onnx_converter(*_AXES_AS_INPUT)
def convert_reduce(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("reduction input must be computed from the network input")
    rank = len(x.shape)
    if ctx.opset < _AXES_AS_INPUT[node.op_type]:
        axes = attr(node, "axes")
    elif len(args) > 1 and args[1] is not None:
        axes = [int(v) for v in const_value(ctx, args[1], "reduction axes").reshape(-1)]
    else:
        axes = None
    if not axes:
        if attr(node, "noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    axes = tuple(normalize_axis(int(v), rank) for v in axes)
    if len(set(axes)) != len(axes):
        raise ctx.fail(f"reduction axes {list(axes)} name an axis twice; each may appear once")
    keep = bool(attr(node, "keepdims", 1))
    if node.op_type in ("ReduceSum", "ReduceMean"):
        prim = Reduce(x.shape, axes, keep, mean=node.op_type == "ReduceMean")
    else:
        prim = ReduceExtreme(x.shape, axes, keep, is_max=node.op_type == "ReduceMax")
    return [ctx.emit(prim, [x])]
