"""Elementwise activations, one small class each.

Each activation is y_i = σ(x_i) with a scalar function σ; its abstract rules (derivative bounds
on an interval, relaxations) live on its class.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import special

from boundprop.ops.base import (
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    Value,
    as_str,
    attr,
    const_value,
    float_array,
    onnx_converter,
)

ACTIVATIONS: dict[str, type[Activation]] = {}


def _newton_root(f, df, x: float, steps: int = 60) -> float:
    for _ in range(steps):
        x -= f(x) / df(x)
    return x


_SQRT2PI = np.sqrt(2 * np.pi)
# argmin of x·Φ(x): root of Φ(x) + x φ(x), by Newton on its derivative φ(x)(2 − x²).
_GELU_ARGMIN = _newton_root(
    lambda x: 0.5 * (1 + special.erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / _SQRT2PI,
    lambda x: np.exp(-x * x / 2) / _SQRT2PI * (2 - x * x), -0.75)


def _gelu_tanh_derivative(x: float) -> float:
    k = np.sqrt(2 / np.pi)
    z = 2 * k * (x + 0.044715 * x**3)
    p = special.expit(z)  # 0.5(1 + tanh), without cancellation
    return p + x * 2 * p * special.expit(-z) * k * (1 + 3 * 0.044715 * x * x)


def _gelu_tanh_second(x: float) -> float:
    return (_gelu_tanh_derivative(x + 1e-6) - _gelu_tanh_derivative(x - 1e-6)) / 2e-6


# Inflection points of the tanh-approximated GELU (roots of its σ''), near ±√2.
_GELU_TANH_INFL = tuple(float(_newton_root(
    _gelu_tanh_second, lambda x: (_gelu_tanh_second(x + 1e-4) - _gelu_tanh_second(x - 1e-4))
    / 2e-4, x0, 30)) for x0 in (-1.4, 1.4))

_GELU_TANH_ARGMIN = _newton_root(
    _gelu_tanh_derivative, lambda x: (_gelu_tanh_derivative(x + 1e-6)
                                      - _gelu_tanh_derivative(x - 1e-6)) / 2e-6, -0.75, 40)


class Activation(Primitive):
    """Elementwise y = σ(x). Subclasses implement :meth:`fn` on float64 arrays."""

    family: ClassVar[str] = "activation"
    onnx_op: ClassVar[str] = ""

    def __init__(self, in_shape: Shape, **params: float) -> None:
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.params = {k: float(v) for k, v in params.items()}

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if cls.onnx_op:
            ACTIVATIONS[cls.onnx_op] = cls

    # Rounding of fn: "exact" (max/min/clip: no rounding), "linear" (one or two rounded
    # products/sums: a few ulp), or "elementary" (library exp/tanh/erf...).
    rounding: ClassVar[str] = "elementary"

    def fn(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def critical_points(self) -> tuple[float, ...]:
        """Points where σ may turn (local extrema, kinks); σ is monotone between them."""
        return ()

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'(x) (one-sided where σ has a kink)."""
        raise NotImplementedError

    # Points that split the line into pieces on which σ' is monotone (kinks and inflections);
    # None marks a piecewise-linear σ (σ' constant on pieces: no roots to search).
    def pieces(self) -> tuple[float, ...] | None:
        return None

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)

    def derivative_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray,
                                                                        np.ndarray]:
        """[dmin, dmax] ⊇ {σ'(x) : x ∈ [lo, hi]}, with both one-sided derivatives at kinks
        (so it encloses Clarke's generalised derivative). σ' is monotone between the points of
        ``pieces()`` (piecewise constant between the kinks of a piecewise-linear σ), so its
        extremes are among the ends, those points, and one-sided limits at kinks."""
        from boundprop.rounding import ELEMENTARY_RELATIVE_ERROR, TINY

        breaks = self.pieces()
        points = tuple(breaks) if breaks is not None else ()
        points += tuple(self.critical_points())
        cands = [self.derivative(lo), self.derivative(hi)]
        for xc in points:
            inside = (lo <= xc) & (xc <= hi)
            if not np.any(inside):
                continue
            for x in (np.nextafter(xc, -np.inf), xc, np.nextafter(xc, np.inf)):
                d = self.derivative(np.full_like(lo, x))
                cands.append(np.where(inside, d, cands[0]))
        dmin, dmax = np.minimum.reduce(cands), np.maximum.reduce(cands)
        margin = 10 * ELEMENTARY_RELATIVE_ERROR * np.maximum(np.abs(dmin), np.abs(dmax)) + TINY
        return dmin - margin, dmax + margin

    def lipschitz_on(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """sup |σ'| on [lo, hi], per entry (the local Lipschitz constant of each neuron)."""
        dmin, dmax = self.derivative_range(lo, hi)
        return np.maximum(np.abs(dmin), np.abs(dmax))

    # ---------------------------------------------------------------- linear relaxation
    def relaxation_slopes(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slopes (lower, upper) of the relaxing lines on [lo, hi]: the chord by default (for a
        convex σ the upper line is then the chord itself; the lower is the parallel tangent)."""
        width = hi - lo
        safe = width > 1e-9 * (1 + np.abs(lo) + np.abs(hi))
        with np.errstate(invalid="ignore", divide="ignore"):
            chord = (self.fn(hi) - self.fn(lo)) / np.where(safe, width, 1.0)
        mid = 0.5 * (lo + hi)
        slope = np.where(safe, chord, self._slope_at(mid))
        return slope, slope

    def _slope_at(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.derivative(x)
        except NotImplementedError:
            h = 1e-6 * (1 + np.abs(x))
            return (self.fn(x + h) - self.fn(x - h)) / (2 * h)

    def _candidates(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
        """Points of [lo, hi] among which σ(x) − a·x attains its extremes: the ends, the
        kinks/critical points inside, and the roots of σ'(x) = a on each piece where σ' is
        monotone (found by bisection to full precision)."""
        cands = [lo, hi]
        for xc in self.critical_points():
            cands.append(np.clip(np.full_like(lo, xc), lo, hi))
        breaks = self.pieces()
        if breaks is None:
            return cands
        for xc in breaks:
            cands.append(np.clip(np.full_like(lo, xc), lo, hi))
        edges = [-np.inf, *sorted(breaks), np.inf]
        for p0, p1 in zip(edges[:-1], edges[1:]):
            left, right = np.maximum(lo, p0), np.minimum(hi, p1)
            ok = left < right
            if not np.any(ok):
                continue
            left, right = np.where(ok, left, lo), np.where(ok, right, lo)
            # σ' of *this* piece at its ends: one ulp inside (at a kink the neighbouring
            # piece's value differs; the ends themselves are candidates already).
            g_left = self.derivative(np.nextafter(left, right)) - a
            g_right = self.derivative(np.nextafter(right, left)) - a
            ok &= g_left * g_right <= 0
            if not np.any(ok):
                continue
            inc = g_left <= g_right
            a_, b_ = left.copy(), right.copy()
            for _ in range(70):
                m = 0.5 * (a_ + b_)
                gm = self.derivative(m) - a
                go_right = (gm < 0) == inc
                a_ = np.where(go_right, m, a_)
                b_ = np.where(go_right, b_, m)
            cands.append(np.where(ok, 0.5 * (a_ + b_), lo))
        return cands

    def relaxation(self, lo: np.ndarray, hi: np.ndarray):
        """Lines a_l·x + b_l ≤ σ(x) ≤ a_u·x + b_u valid on [lo, hi] (sound: each offset is the
        exact extreme of σ(x) − a·x over the candidate points, widened by the rounding
        margin)."""
        from boundprop.rounding import ELEMENTARY_RELATIVE_ERROR, TINY

        a_l, a_u = self.relaxation_slopes(lo, hi)
        out = []
        for a, lower in ((a_l, True), (a_u, False)):
            vals, scale = [], np.zeros_like(lo)
            for x in self._candidates(a, lo, hi):
                fx = self.fn(x)
                vals.append(fx - a * x)
                scale = np.maximum(scale, np.abs(fx) + np.abs(a * x))
            margin = 10 * ELEMENTARY_RELATIVE_ERROR * scale + TINY
            if lower:
                out += [a, np.nextafter(np.minimum.reduce(vals) - margin, -np.inf)]
            else:
                out += [a, np.nextafter(np.maximum.reduce(vals) + margin, np.inf)]
        return tuple(out)

    def needs_tighter(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Entries whose relaxation would improve with tighter input bounds (all, for a curved
        σ; only those straddling a kink, for a piecewise-linear one)."""
        if self.pieces() is not None:
            return np.ones(lo.shape, dtype=bool)
        mask = np.zeros(lo.shape, dtype=bool)
        for xc in self.critical_points():
            mask |= (lo < xc) & (xc < hi)
        return mask

    def linear_relaxation(self, box):
        return self.relaxation(*box)

    def backward_linear(self, lam: np.ndarray, relax, boxes):
        """Λ·σ(z) ≥ (Λ⁺a_l + Λ⁻a_u)·z + Λ⁺·b_l + Λ⁻·b_u, with its float error bound."""
        from boundprop.rounding import UNIT_ROUNDOFF, gamma

        a_l, b_l, a_u, b_u = relax
        lo, hi = boxes[0]
        zmax = np.maximum(np.abs(lo), np.abs(hi))
        lp, ln = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
        lam_in = lp * a_l + ln * a_u
        terms = lp * b_l + ln * b_u
        axes = tuple(range(1, lam.ndim))
        const = terms.sum(axis=axes)
        err = (2 * UNIT_ROUNDOFF * (np.abs(lam_in) * zmax).sum(axis=axes)
               + gamma(int(np.prod(self.out_shape))) * np.abs(terms).sum(axis=axes))
        return [lam_in], const, err

    def float32_error(self, boxes, out):
        from boundprop.rounding import (
            FLOAT32_ABSOLUTE,
            FLOAT32_ELEMENTARY_RELATIVE_ERROR,
            FLOAT32_UNIT_ROUNDOFF,
        )

        if self.rounding == "exact":
            return np.zeros_like(out[0])
        mag = np.maximum(np.abs(out[0]), np.abs(out[1]))
        rel = 4 * FLOAT32_UNIT_ROUNDOFF if self.rounding == "linear" else \
            FLOAT32_ELEMENTARY_RELATIVE_ERROR
        lo, hi = boxes[0]
        # The argument itself may be rescaled inside the kernel (x/√2, αx + β): that rounding
        # moves σ by at most sup|σ'|·u·|x|; sup|σ'| ≤ 2 for every activation here but PRelu and
        # Selu, whose slopes are in the parameters.
        slope = 2.0
        if isinstance(self, PRelu):
            slope = max(1.0, float(np.max(np.abs(self.slope_raw))))
        elif "alpha" in self.params:
            slope = max(slope, abs(self.params["alpha"]) * self.params.get("gamma", 1.0) * 2)
        arg = slope * FLOAT32_UNIT_ROUNDOFF * np.maximum(np.abs(lo), np.abs(hi))
        return rel * mag + arg + FLOAT32_ABSOLUTE

    def interval(self, box):
        """Exact image of each [l, u]: σ is monotone between its critical points, so the extremes
        are among σ(l), σ(u) and σ at the critical points inside; widened by σ's rounding."""
        from boundprop.rounding import widen, widen_elementary

        lo, hi = box
        a, b = self.fn(lo), self.fn(hi)
        ylo, yhi = np.minimum(a, b), np.maximum(a, b)
        for xc in self.critical_points():
            inside = (lo < xc) & (xc < hi)
            if np.any(inside):
                fc = self.fn(np.full_like(lo, xc))
                ylo = np.where(inside, np.minimum(ylo, fc), ylo)
                yhi = np.where(inside, np.maximum(yhi, fc), yhi)
        if self.rounding == "exact":
            return ylo, yhi
        if self.rounding == "linear":
            return widen(ylo, yhi, 4 * 2.0**-53 * np.maximum(np.abs(ylo), np.abs(yhi)))
        return widen_elementary(ylo, yhi)

    def describe(self) -> str:
        return " ".join(f"{k}={v:g}" for k, v in self.params.items())


class Relu(Activation):
    kind = onnx_op = "Relu"

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


class LeakyRelu(Activation):
    kind = onnx_op = "LeakyRelu"

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
        from dataclasses import replace

        from boundprop.fast_interval import ETA, SLACK64, U1, FastIntervalUnavailable

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


class Sigmoid(Activation):
    kind = onnx_op = "Sigmoid"

    def fn(self, x):
        return special.expit(x)

    def derivative(self, x):
        # σ(x)σ(−x), not s(1 − s): the latter cancels to 0 in the tails.
        return special.expit(x) * special.expit(-x)

    def pieces(self):
        return (0.0,)


class Tanh(Activation):
    kind = onnx_op = "Tanh"

    def fn(self, x):
        return np.tanh(x)

    def derivative(self, x):
        # sech²x = 4σ(2x)σ(−2x), not 1 − tanh²x (which cancels to 0 for |x| > 19).
        return 4 * special.expit(2 * x) * special.expit(-2 * x)

    def pieces(self):
        return (0.0,)


class Softplus(Activation):
    """σ(x) = log(1 + eˣ)."""

    kind = onnx_op = "Softplus"

    def fn(self, x):
        return np.logaddexp(0.0, x)

    def derivative(self, x):
        return special.expit(x)

    def pieces(self):
        return ()


class Softsign(Activation):
    kind = onnx_op = "Softsign"

    def fn(self, x):
        return x / (1.0 + np.abs(x))

    def derivative(self, x):
        return 1 / (1 + np.abs(x)) ** 2

    def pieces(self):
        return (0.0,)


class Elu(Activation):
    """σ(x) = x for x ≥ 0, α(eˣ − 1) otherwise."""

    kind = onnx_op = "Elu"

    def fn(self, x):
        return np.where(x >= 0, x, self.params["alpha"] * np.expm1(np.minimum(x, 0.0)))

    def critical_points(self):
        return (0.0,) if self.params["alpha"] < 0 else ()

    def derivative(self, x):
        return np.where(x >= 0, 1.0, self.params["alpha"] * np.exp(np.minimum(x, 0.0)))

    def pieces(self):
        return (0.0,)


class Selu(Activation):
    kind = onnx_op = "Selu"

    def fn(self, x):
        a, g = self.params["alpha"], self.params["gamma"]
        return g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))

    def critical_points(self):
        return (0.0,) if self.params["alpha"] * self.params["gamma"] < 0 else ()

    def derivative(self, x):
        a, g = self.params["alpha"], self.params["gamma"]
        return g * np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0.0)))

    def pieces(self):
        return (0.0,)


class Celu(Activation):
    kind = onnx_op = "Celu"

    def fn(self, x):
        a = self.params["alpha"]
        return np.maximum(x, 0.0) + np.minimum(0.0, a * np.expm1(np.minimum(x, 0.0) / a))

    def derivative(self, x):
        a = self.params["alpha"]
        return np.where(x >= 0, 1.0, np.exp(np.minimum(x, 0.0) / a))

    def pieces(self):
        return (0.0,)


class Gelu(Activation):
    """Exact GELU x Φ(x) (approximate="none") or its tanh approximation."""

    kind = onnx_op = "Gelu"

    def __init__(self, in_shape: Shape, approximate: str = "none") -> None:
        super().__init__(in_shape)
        self.approximate = approximate

    def fn(self, x):
        # x·Φ(x) with Φ = ndtr, and 0.5(1 + tanh z) = expit(2z): the textbook forms
        # 0.5x(1 + erf(x/√2)) and 0.5x(1 + tanh z) cancel catastrophically for x ≪ 0
        # (relative error ~1e-3 at x = −7.5), beyond any elementary-function margin.
        if self.approximate == "tanh":
            return x * special.expit(2 * np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))
        return x * special.ndtr(x)

    def describe(self) -> str:
        return "" if self.approximate == "none" else "tanh approximation"

    def critical_points(self):
        return (_GELU_TANH_ARGMIN if self.approximate == "tanh" else _GELU_ARGMIN,)

    def derivative(self, x):
        if self.approximate == "tanh":
            return _gelu_tanh_derivative(x)
        return special.ndtr(x) + x * np.exp(-0.5 * x * x) / _SQRT2PI

    def pieces(self):
        # σ'' = φ(x)(2 − x²) for the exact form: σ' is monotone between ±√2 (the tanh form's
        # inflections are within 0.01 of these; the bisection only needs monotone pieces,
        # so the tanh form uses its own computed points).
        return (-np.sqrt(2.0), np.sqrt(2.0)) if self.approximate == "none" else _GELU_TANH_INFL


class Erf(Activation):
    kind = onnx_op = "Erf"

    def fn(self, x):
        return special.erf(x)

    def derivative(self, x):
        return 2 / np.sqrt(np.pi) * np.exp(-x * x)

    def pieces(self):
        return (0.0,)


class HardSigmoid(Activation):
    """σ(x) = max(0, min(1, αx + β))."""

    kind = onnx_op = "HardSigmoid"

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


class Clip(Activation):
    """σ(x) = min(max(x, lo), hi); ReLU6 is Clip(0, 6)."""

    kind = onnx_op = "Clip"

    def fn(self, x):
        return np.clip(x, self.params["lo"], self.params["hi"])

    rounding = "exact"

    def emit_interval_onnx(self, b, x):
        """Clip is exact and nondecreasing in x and in both limits: lo through (↓min, ↓max),
        hi through (↑min, ↑max)."""
        from boundprop.fast_interval import down32, up32

        mn, mx = self.params["lo"], self.params["hi"]

        def clip(rnd):
            lims = [b.const(rnd(mn)), b.const(rnd(mx))]
            return lambda n: b.op("Clip", [n, *lims])

        return b.monotone(x, clip(down32), clip(up32), nonneg=bool(down32(mn) >= 0))

    def critical_points(self):
        return tuple(v for v in (self.params["lo"], self.params["hi"]) if np.isfinite(v))

    def derivative(self, x):
        return ((x > self.params["lo"]) & (x < self.params["hi"])).astype(np.float64)


class PRelu(Activation):
    """Leaky ReLU with a constant slope array broadcast against the input."""

    kind = "PRelu"

    def __init__(self, in_shape: Shape, slope: np.ndarray) -> None:
        super().__init__(in_shape)
        from boundprop.ops.affine import lift

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


# Default attribute values, per ONNX op.
_DEFAULTS: dict[str, dict[str, float]] = {
    "LeakyRelu": {"alpha": 0.01},
    "Elu": {"alpha": 1.0},
    "Celu": {"alpha": 1.0},
    "Selu": {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
}


@onnx_converter(*[op for op in ACTIVATIONS if op not in ("Gelu", "Clip")])
def convert_activation(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("activation input must be computed from the network input")
    params = {k: float(attr(node, k, v)) for k, v in _DEFAULTS.get(node.op_type, {}).items()}
    return [ctx.emit(ACTIVATIONS[node.op_type](x.shape, **params), [x])]


@onnx_converter("Gelu")
def convert_gelu(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    approximate = as_str(attr(node, "approximate", "none"))
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"Gelu approximate='{approximate}' is not supported")
    return [ctx.emit(Gelu(x.shape, approximate), [x])]


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
