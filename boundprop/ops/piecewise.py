"""Piecewise-linear activations (and HardSwish, piecewise quadratic): ReLU, LeakyReLU,
PReLU, Clip, HardSigmoid, HardSwish — σ', where it exists, is constant (or linear) between
kinks, so their rules need no root finding (see :class:`~boundprop.ops.activation.Activation`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from boundprop.domains.float32_values import (
    ETA,
    SLACK64,
    U1,
    FastIntervalUnavailable,
    down32,
    up32,
)
from boundprop.ops.activation import Activation
from boundprop.ops.affine import lift
from boundprop.ops.base import (
    ConversionContext,
    Shape,
    Value,
    attr,
    const_value,
    float_array,
    onnx_converter,
)


class KinkAtOrigin:
    """ReLU family: σ(x) = x for x ≥ 0 and s·x for x < 0 (s the negative slope, ≤ 1).

    On an interval l < 0 < u every line a·x with s ≤ a ≤ 1 lies below σ (a·x ≤ x for x ≥ 0,
    a·x ≤ s·x for x < 0), exactly, with offset 0: the free lower slope that α-CROWN optimises
    per neuron and per bound. Entries that are stable, or whose s > 1 (σ concave), keep the
    default relaxation (range of one point)."""

    SLOPE_COST = 1  # offsets are 0: no root finding
    SLOPE_STEP = 1.0  # α-CROWN's steps on [s, 1]

    def negative_slope(self) -> np.ndarray | float:
        raise NotImplementedError

    def _free(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.broadcast_to(self.negative_slope(), lo.shape)
        return (lo < 0) & (hi > 0) & (s <= 1), s

    def slope_ranges(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        """Lower slope in [s, 1] on the free entries (offset 0); the upper line stays the
        chord (the tightest upper line of a convex σ); elsewhere the default lines."""
        free, s = self._free(lo, hi)
        a_l, a_u = self.relaxation_slopes(lo, hi)
        return np.where(free, s, a_l), np.where(free, 1.0, a_l), a_u, a_u

    def with_slopes(self, relax, lo: np.ndarray, hi: np.ndarray, a_l: np.ndarray,
                    a_u: np.ndarray):
        """The relaxation ``relax`` with lower lines a_l·x (offset 0, touching σ at 0) on the
        free entries; ``a_l`` may carry a leading row axis (one slope per bound row)."""
        l0, b_l, a_u0, b_u = relax
        free, s = self._free(lo, hi)
        a_l = np.clip(a_l, s, 1.0)  # never trust the optimiser with soundness
        zero = np.zeros(np.broadcast_shapes(np.shape(a_l), lo.shape))
        return (np.where(free, a_l, l0), np.where(free, 0.0, b_l), a_u0, b_u), zero, zero


class Relu(KinkAtOrigin, Activation):
    kind = onnx_op = "Relu"
    rules = Activation.rules | {"ort_interval"}

    def negative_slope(self):
        return 0.0

    def fn(self, x):
        return np.maximum(x, 0.0)

    rounding = "exact"

    def relaxation_slopes(self, lo, hi):
        # CROWN's adaptive lower slope: 1 or 0, whichever leaves the smaller area.
        upper, _ = super().relaxation_slopes(lo, hi)
        lower = np.where(lo >= 0, 1.0, np.where(hi <= 0, 0.0, (hi >= -lo).astype(float)))
        return lower, upper

    def emit_interval_onnx(self, b, x):
        """Relu of lo and of hi (exact, monotone); from centre/radius form the subtraction,
        addition and Relu fuse into one pass each (``IntervalGraphBuilder.lh``)."""
        return b.lh(x, activation="Relu")

    def critical_points(self):
        return (0.0,)

    def derivative(self, x):
        return (x > 0).astype(np.float64)

    curvature_may_underflow = False

    def derivative_jumps(self) -> tuple[float, ...]:
        return (0.0,)  # σ'(0−) = 0, σ'(0+) = 1

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = 0 on each linear piece."""
        return np.zeros(np.shape(x))


class LeakyRelu(KinkAtOrigin, Activation):
    kind = onnx_op = "LeakyRelu"
    rules = Activation.rules | {"ort_interval"}
    onnx_defaults = {"alpha": 0.01}

    def negative_slope(self):
        return self.params["alpha"]

    def fn(self, x):
        a = self.params["alpha"]
        return np.where(x >= 0, x, a * x)

    rounding = "linear"

    def critical_points(self):
        return (0.0,)

    def emit_interval_onnx(self, b, x):
        """LeakyRelu of lo and hi (monotone for α ≥ 0). The product αx is one rounding:
        f(x) ≥ f̂ − U1|f̂| (and ≤ f̂ + U1|f̂|), and f(x − eps|x| − tau) ≥ f(x) − eps|f(x)| −
        max(1, α)tau, so eps' = (1+eps)(1+U1) − 1, tau' = max(1, α)·tau + ETA."""
        a = self.params["alpha"]
        if a < 0 or float(np.float32(a)) != a:
            raise FastIntervalUnavailable("LeakyRelu with a negative or non-float32 slope")
        v = b.lh(x)
        return replace(v, a=b.op("LeakyRelu", [v.a], alpha=a),
                       b=b.op("LeakyRelu", [v.b], alpha=a),
                       eps=((1 + v.eps) * (1 + U1) - 1) * SLACK64,
                       tau=max(1.0, a) * v.tau + ETA, nonneg=a == 0.0)

    def relaxation_slopes(self, lo, hi):
        upper, _ = super().relaxation_slopes(lo, hi)
        a = self.params["alpha"]
        lower = np.where(lo >= 0, 1.0, np.where(hi <= 0, a, np.where(hi >= -lo, 1.0, a)))
        return lower, upper

    def derivative(self, x):
        return np.where(x > 0, 1.0, self.params["alpha"])

    curvature_may_underflow = False

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(0−) = α, σ'(0+) = 1: continuous only for α = 1 (the identity)
        return () if self.params["alpha"] == 1 else (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = 0 on each linear piece."""
        return np.zeros(np.shape(x))


class HardSigmoid(Activation):
    """σ(x) = max(0, min(1, αx + β))."""

    kind = onnx_op = "HardSigmoid"
    onnx_defaults = {"alpha": 0.2, "beta": 0.5}

    def fn(self, x):
        return np.clip(self.params["alpha"] * x + self.params["beta"], 0.0, 1.0)

    rounding = "linear"

    def critical_points(self):
        a, b = self.params["alpha"], self.params["beta"]
        return () if a == 0 else (-b / a, (1 - b) / a)

    def derivative(self, x):
        a, b = self.params["alpha"], self.params["beta"]
        z = a * x + b
        return np.where((z > 0) & (z < 1), a, 0.0)

    def inflections(self):
        """Convex up to the middle of the sloped piece and concave after (α > 0; mirrored for
        α < 0; a linear piece counts as either), so CROWN's tangent lines apply."""
        a, b = self.params["alpha"], self.params["beta"]
        if a == 0:
            return None
        return ((0.5 - b) / a,), (1 if a > 0 else -1)

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ' steps between 0 and α at αx + β = 0 and αx + β = 1 (none if α = 0: constant)
        a, b = self.params["alpha"], self.params["beta"]
        return () if a == 0 else tuple(p for p in (-b / a, (1 - b) / a) if np.isfinite(p))

    def value_bound(self) -> float:
        a, b = self.params["alpha"], self.params["beta"]
        return 1.0 if a != 0 else float(np.clip(b, 0.0, 1.0))

    curvature_may_underflow = False

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = 0 on each linear piece."""
        return np.zeros(np.shape(x))


class HardSwish(Activation):
    kind = onnx_op = "HardSwish"

    def fn(self, x):
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)

    rounding = "linear"

    def critical_points(self):
        return (-1.5,)

    def derivative(self, x):
        return np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, x / 3 + 0.5))

    def pieces(self):
        return (-3.0, 3.0)

    curvature_may_underflow = False

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(−3⁻) = 0 vs σ'(−3⁺) = −1/2; σ'(3⁻) = 3/2 vs σ'(3⁺) = 1
        return (-3.0, 3.0)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ = x(x + 3)/6 on (−3, 3): σ'' = 1/3 there, 0 outside (and at ±3, as
        :meth:`derivative` takes the outer pieces there)."""
        return np.where(np.abs(x) < 3, 1 / 3, 0.0)


class Clip(Activation):
    """σ(x) = min(max(x, lo), hi); ReLU6 is Clip(0, 6)."""

    kind = onnx_op = "Clip"
    rules = Activation.rules | {"ort_interval"}
    plain_converter = False  # min/max are inputs from opset 11 on: ``convert_clip``

    def fn(self, x):
        return np.clip(x, self.params["lo"], self.params["hi"])

    def inflections(self):
        """Convex below the middle of [lo, hi], concave above (one-sided clips: convex or
        concave throughout), so CROWN's tangent lines apply."""
        lo, hi = self.params["lo"], self.params["hi"]
        if np.isfinite(lo) and np.isfinite(hi):
            return (0.5 * (lo + hi),), 1
        if np.isfinite(lo):
            return (), 1  # max(x, lo): convex
        return ((), -1) if np.isfinite(hi) else None

    rounding = "exact"

    def emit_interval_onnx(self, b, x):
        """Clip is exact and nondecreasing in x and in both limits: lo through (↓min, ↓max),
        hi through (↑min, ↑max)."""
        mn, mx = self.params["lo"], self.params["hi"]

        def clip(rnd):
            lims = [b.const(rnd(mn)), b.const(rnd(mx))]
            return lambda n: b.op("Clip", [n, *lims])

        return b.monotone(x, clip(down32), clip(up32), nonneg=bool(down32(mn) >= 0))

    def critical_points(self):
        return tuple(v for v in (self.params["lo"], self.params["hi"]) if np.isfinite(v))

    def derivative(self, x):
        return ((x > self.params["lo"]) & (x < self.params["hi"])).astype(np.float64)

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ' steps between 0 and 1 at each finite limit (none if lo = hi: σ is constant)
        lo, hi = self.params["lo"], self.params["hi"]
        return () if lo == hi else tuple(v for v in (lo, hi) if np.isfinite(v))

    def value_bound(self) -> float:
        return float(max(abs(self.params["lo"]), abs(self.params["hi"])))

    curvature_may_underflow = False

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = 0 on each linear piece."""
        return np.zeros(np.shape(x))


class PRelu(KinkAtOrigin, Activation):
    """Leaky ReLU with a constant slope array broadcast against the input."""

    kind = "PRelu"

    def negative_slope(self):
        return self.slope

    def __init__(self, in_shape: Shape, slope: np.ndarray) -> None:
        super().__init__(in_shape)
        self.slope_raw = float_array(slope)
        if np.broadcast_shapes(in_shape, self.slope_raw.shape) != tuple(in_shape):
            raise ValueError(f"slope of shape {self.slope_raw.shape} does not broadcast to "
                             f"{in_shape}")
        self.slope = lift(self.slope_raw, len(in_shape))

    def fn(self, x):
        return np.where(x >= 0, x, self.slope * x)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"slope": self.slope_raw}

    rounding = "linear"

    def critical_points(self):
        return (0.0,)

    def relaxation_slopes(self, lo, hi):
        upper, _ = super().relaxation_slopes(lo, hi)
        a = self.slope
        lower = np.where(lo >= 0, 1.0, np.where(hi <= 0, a, np.where(hi >= -lo, 1.0, a)))
        return lower, upper

    def derivative(self, x):
        return np.where(x > 0, 1.0, self.slope)

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(0−) = slope, σ'(0+) = 1, per entry (see _jump_mask)
        return () if np.all(self.slope_raw == 1) else (0.0,)

    def float32_argument_slope(self) -> float:
        return max(1.0, float(np.max(np.abs(self.slope_raw))))

    def _jump_mask(self, lo, hi):
        """Per entry: only the entries whose slope is not 1 jump at 0."""
        return np.isnan(lo) | np.isnan(hi) | ((lo <= 0) & (0 <= hi) & (self.slope != 1))

    curvature_may_underflow = False

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = 0 on each linear piece."""
        return np.zeros(np.shape(x))


@onnx_converter("Clip")
def convert_clip(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if ctx.opset < 11:
        lo, hi = attr(node, "min", -np.inf), attr(node, "max", np.inf)
    else:
        def bound(i, default):
            if len(args) > i and args[i] is not None:
                return float(const_value(ctx, args[i], "Clip bound").reshape(-1)[0])
            return default
        lo, hi = bound(1, -np.inf), bound(2, np.inf)
    if lo > hi:
        raise ctx.fail(f"Clip min {lo} > max {hi}")
    return [ctx.emit(Clip(x.shape, lo=lo, hi=hi), [x])]


@onnx_converter("PRelu")
def convert_prelu(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    slope = const_value(ctx, args[1], "PRelu slope")
    try:
        return [ctx.emit(PRelu(x.shape, slope), [x])]
    except ValueError as e:
        raise ctx.fail(str(e)) from None
