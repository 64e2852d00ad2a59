"""Elementwise activations, one small class each.

Each activation is y_i = σ(x_i) with a scalar function σ; its abstract rules (derivative bounds
on an interval, relaxations) live on its class.
"""

from __future__ import annotations

import functools
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
    box_max_abs,
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
_LN_2_SQRT3 = float(np.log(2 + np.sqrt(3.0)))  # arccosh 2: sigmoid's (and 2×tanh's) σ''' zero
# argmin of x·Φ(x): root of Φ(x) + x φ(x), by Newton on its derivative φ(x)(2 − x²).
_GELU_ARGMIN = _newton_root(
    lambda x: 0.5 * (1 + special.erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / _SQRT2PI,
    lambda x: np.exp(-x * x / 2) / _SQRT2PI * (2 - x * x), -0.75)


_GT_K = np.sqrt(2 / np.pi)  # tanh-GELU: σ(x) = x·S(z(x)), S = expit, z = 2k(x + c x³)
_GT_C = 0.044715
# Beyond this |x| every σ', σ'', σ''' of GELU (both forms) and Erf differs from its limit by
# less than TINY (e.g. the tanh-GELU's S'(z) < e^(−1e9)); inputs are clipped to it so that
# ±inf and overflowing powers give those limits instead of inf·0 = nan.
_FAR = 1e3

# onnxruntime's float32 kernels of the smooth monotone activations, assumed to satisfy
# |σ̂(x) − σ(x)| ≤ rel·|σ(x)| + absolute at every float32 x (σ's limits at ±∞): the package's
# float32 margin for elementary functions, rel = 64 ulp (2⁻¹⁸), and an absolute term. Measured
# on onnxruntime 1.32 (MLAS, x86-64 FMA) over every 16th float32 bit pattern (2.7e8 inputs),
# against float64 references, and on 2²⁴ points of [−20, 0]: Sigmoid's error is absolute, up
# to 1.8e-7 (0.5 + p/q loses σ's relative accuracy for x < 0: it returns 0 at x = −15.79, where
# σ = 1.4e-7, and 3.0e-7 at −15.93, where σ = 1.2e-7), hence 2⁻²⁰ ≈ 9.5e-7; Tanh, Softplus
# and Erf stay within 6 ulp of σ relative, with subnormal absolute errors (≤ 1.5e-43), hence
# 2⁻¹²⁰. (Softsign's kernel is as accurate but gives NaN at ±∞, which a Relu after it could
# hide: no emission.) Each kernel maps ±∞ to σ's limits. tests/test_fast_interval.py
# re-checks these bounds on the installed onnxruntime.
ORT_KERNEL_ERROR: dict[str, tuple[float, float]] = {
    "Sigmoid": (2.0**-18, 2.0**-20),
    "Tanh": (2.0**-18, 2.0**-120),
    "Softplus": (2.0**-18, 2.0**-120),
    "Erf": (2.0**-18, 2.0**-120),
}


def _gelu_tanh_derivative(x: float) -> float:
    x = np.clip(x, -_FAR, _FAR)
    k = _GT_K
    z = 2 * k * (x + _GT_C * x**3)
    p = special.expit(z)  # 0.5(1 + tanh), without cancellation
    return p + x * 2 * p * special.expit(-z) * k * (1 + 3 * _GT_C * x * x)


def _gelu_tanh_factors(ax):
    """For ax = |x| ≥ 0: z, z' = 2k(1 + 3c x²), z'' = 12kc·ax, T = tanh(z/2), 1 − T² (as
    4S(z)S(−z), without cancellation) and S'(z) = S(z)S(−z). All are nondecreasing in ax
    except 1 − T² and S'(z), which are nonincreasing."""
    k, c = _GT_K, _GT_C
    z = 2 * k * (ax + c * ax**3)
    zp = 2 * k * (1 + 3 * c * ax * ax)
    zpp = 12 * k * c * ax
    sp = special.expit(z) * special.expit(-z)
    return z, zp, zpp, np.tanh(z / 2), 4 * sp, sp


def _gelu_tanh_second_parts(x):
    """σ'' of the tanh-GELU and the magnitude of the terms it sums (its rounding scale).

    σ = x/2 + (x/2)·tanh(z/2) with z odd, so σ'' is even; with S' = S(1 − S) and
    S'' = −S'·T: σ'' = 2S'z' + x(S''z'² + S'z'') = S'(z)·B, B = 2z' + x·z'' − x·T·z'²
    (everything at |x|)."""
    ax = np.minimum(np.abs(x), _FAR)
    _, zp, zpp, t, _, sp = _gelu_tanh_factors(ax)
    pos, neg = 2 * zp + ax * zpp, ax * t * zp * zp
    return sp * (pos - neg), sp * (pos + neg)


def _gelu_tanh_second(x):
    return _gelu_tanh_second_parts(x)[0]


def _gelu_tanh_q_terms(ax):
    """σ''' = sign(x)·S'(z)·Q(|x|), from differentiating S'(z)·B with dT/dx = (1 − T²)z'/2:
    Q = B' − T z' B = [4z'' + x T² z'³] − [3T z'² + 3x T z' z'' + (x/2)(1 − T²) z'³].
    Returns the two brackets (each a sum of products of monotone factors ≥ 0 on x ≥ 0)."""
    _, zp, zpp, t, sech2, _ = _gelu_tanh_factors(ax)
    pos = 4 * zpp + ax * t * t * zp**3
    neg = 3 * t * zp * zp + 3 * ax * t * zp * zpp + 0.5 * ax * sech2 * zp**3
    return pos, neg


def _gelu_tanh_third(x):
    ax = np.minimum(np.abs(x), _FAR)
    pos, neg = _gelu_tanh_q_terms(ax)
    return np.sign(x) * _gelu_tanh_factors(ax)[5] * (pos - neg)


# Inflection points of the tanh-approximated GELU (roots of its σ''), near ±√2.
_GELU_TANH_INFL = tuple(float(_newton_root(_gelu_tanh_second, _gelu_tanh_third, x0, 30))
                        for x0 in (-1.4, 1.4))

_GELU_TANH_ARGMIN = _newton_root(_gelu_tanh_derivative, _gelu_tanh_second, -0.75, 40)


def _gelu_tanh_q_enclosure(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """[qlo, qhi] ⊇ Q([a, b]) for 0 ≤ a ≤ b, and a rounding margin for it.

    Natural interval extension: every factor of every term of Q is monotone and ≥ 0 on x ≥ 0,
    so each term lies between its values with all factors at their lower and at their upper
    ends. Each term is a few correctly rounded products of library tanh/expit values (relative
    error ≤ 1e-13 each), so |computed − exact| ≤ 1e-11·(the terms' total magnitude)."""
    from boundprop.rounding import TINY

    _, zpa, zppa, ta, secha, _ = _gelu_tanh_factors(a)
    _, zpb, zppb, tb, sechb, _ = _gelu_tanh_factors(b)
    p_lo = 4 * zppa + a * ta * ta * zpa**3
    p_hi = 4 * zppb + b * tb * tb * zpb**3
    n_lo = 3 * ta * zpa * zpa + 3 * a * ta * zpa * zppa + 0.5 * a * sechb * zpa**3
    n_hi = 3 * tb * zpb * zpb + 3 * b * tb * zpb * zppb + 0.5 * b * secha * zpb**3
    return p_lo - n_hi, p_hi - n_lo, 1e-11 * (p_hi + n_hi) + TINY


_GELU_TANH_TAIL = 4.0


@functools.cache
def _gelu_tanh_curvature_brackets() -> tuple[tuple[float, float, float], ...]:
    """Certified brackets (a, b, U) that contain every zero of the tanh-GELU's σ''' (so every
    point where σ'' can have an interior extremum), with U ≥ sup_{[a, b]} |σ''|.

    Proof, for x ≥ 0 (σ''' is odd: the negative brackets are the mirror images):

    * x ≥ 4: with 4z'' ≥ 0 and T ≤ 1, Q ≥ x T² z'³ − 3z'² − 3x z' z'' − (x/2)(1 − T²) z'³,
      so Q/(x z'³) ≥ (3T² − 1)/2 − 3/(x z') − 3z''/z'². The first term increases with x, the
      second decreases, and z''/z'² ∝ x/(1 + 3cx²)² decreases for x² > 1/(9c) (x > 1.58):
      the bound's value at x = 4 (≈ 0.65 > 0) holds on [4, ∞), so Q > 0 there (no zero).
    * [0, 4]: a cell on which the interval enclosure of Q excludes 0 (beyond its rounding
      margin) holds no zero; the other cells are bisected down to width 2⁻⁴⁰ and kept. Two
      groups remain: [0, ~1e-12] at the zero x = 0, and a ~1e-12 bracket of x ≈ 2.0135.
    * U: for x in a bracket [a, b] with midpoint m, |σ''(x)| ≤ |σ''(m)| + (b − a)/2 ·
      S'(z(a))·sup|Q| (S'∘z decreases on x ≥ 0) — an O(width²) excess over |σ''(m)|, as
      sup|Q| is O(width) on a bracket around a zero — plus σ''(m)'s own rounding margin.
    """
    from boundprop.rounding import ELEMENTARY_RELATIVE_ERROR, TINY

    x = np.float64(_GELU_TANH_TAIL)
    _, zp, zpp, t, _, _ = _gelu_tanh_factors(x)
    tail = (3 * t * t - 1) / 2 - 3 / (x * zp) - 3 * zpp / (zp * zp)
    if not tail > 1e-3:
        raise RuntimeError("tanh-GELU curvature certificate: the tail bound failed")
    edges = np.linspace(0.0, float(x), 257)
    a, b = edges[:-1], edges[1:]
    kept: list[tuple[float, float]] = []
    while a.size:
        qlo, qhi, margin = _gelu_tanh_q_enclosure(a, b)
        undecided = (qlo <= margin) & (qhi >= -margin)
        a, b = a[undecided], b[undecided]
        small = (b - a) <= 2.0**-40
        kept += list(zip(a[small].tolist(), b[small].tolist()))
        a, b = a[~small], b[~small]
        if a.size > 10000:
            raise RuntimeError("tanh-GELU curvature certificate: the bisection diverged")
        mid = 0.5 * (a + b)
        a, b = np.concatenate([a, mid]), np.concatenate([mid, b])
    groups: list[list[float]] = []
    for lo, hi in sorted(kept):
        if groups and lo <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], hi)
        else:
            groups.append([lo, hi])
    out = []
    for lo, hi in groups:
        qlo, qhi, margin = _gelu_tanh_q_enclosure(np.float64(lo), np.float64(hi))
        slope = _gelu_tanh_factors(np.float64(lo))[5] * (max(abs(qlo), abs(qhi)) + margin)
        m = 0.5 * (lo + hi)
        g, scale = _gelu_tanh_second_parts(np.float64(m))
        u = (abs(g) + 10 * ELEMENTARY_RELATIVE_ERROR * scale + TINY
             + (hi - lo) / 2 * slope * (1 + 1e-12))
        u = float(np.nextafter(u, np.inf))
        # [0, w] holds the zero at 0 and mirrors onto [−w, 0]: one bracket [−w, w]
        out.append((-hi if lo == 0.0 else lo, hi, u))
        if lo != 0.0:
            out.append((-hi, -lo, u))
    return tuple(sorted(out))


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
        # σ' at ±inf may be undefined (a clip without limits compares inf < inf): use the
        # largest finite floats, where σ' has reached its limit for every activation here.
        big = np.finfo(np.float64).max
        with np.errstate(over="ignore", invalid="ignore"):
            cands = [self.derivative(np.maximum(lo, -big)), self.derivative(np.minimum(hi, big))]
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

    # ---------------------------------------------------------------- smoothness
    # The smoothness (curvature) constant of σ on [lo, hi] is the Lipschitz constant of σ' there.
    # Where σ' is continuous and piecewise C¹ on [lo, hi] (σ'' existing but for finitely many
    # points, where it may jump), that constant is sup |σ''| over the points where σ'' exists:
    # σ'(y) − σ'(x) = ∫_x^y σ''. Where σ' itself jumps (ReLU at 0) no constant exists: inf.

    # Whether a computed σ'' can underflow (or be rounded) below the true |σ''|: if so the bound
    # gets an absolute TINY on top of the relative margin. Piecewise-linear (and HardSwish's
    # piecewise-quadratic) σ have σ'' ∈ {0, a rounded constant}: a relative margin suffices,
    # so an interval inside one linear piece gets exactly 0.
    curvature_may_underflow: ClassVar[bool] = True

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ''(x) where it exists. Where σ'' jumps but σ' is continuous (Softsign, ELU with
        α = 1 and CELU at 0) the one-sided value from the side :meth:`derivative` uses there;
        at a jump of σ' (see :meth:`derivative_jumps`) σ'' does not exist and the value
        returned is the (zero) a.e. value of the neighbouring linear pieces."""
        raise NotImplementedError

    def derivative_jumps(self) -> tuple[float, ...]:
        """The points where σ' is discontinuous (σ' is Lipschitz on no interval containing one
        of them); σ' is continuous elsewhere."""
        return ()

    def curvature_points(self) -> tuple[float, ...]:
        """Points where |σ''| can have an extremum other than the ends of an interval: the zeros
        of σ''' and the points where σ'' jumps. σ'' is continuous and monotone between them
        (and between the points of :meth:`derivative_jumps`)."""
        return ()

    def _second_derivative_scale(self, x: np.ndarray) -> np.ndarray:
        """A magnitude M(x) ≥ |σ''(x)| with |computed σ''(x) − σ''(x)| ≤ ELEMENTARY_RELATIVE_ERROR
        ·M(x) (up to the TINY of underflow): |σ''| itself where σ'' is a product of accurately
        computed factors; the sum of the magnitudes of the terms where it is a difference."""
        return np.abs(self.second_derivative(x))

    def _jump_mask(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Entries whose [lo, hi] contains (or comes within 4 ulp of, for jump points that are
        themselves rounded, e.g. HardSigmoid's −β/α) a point where σ' jumps; NaN bounds too."""
        bad = np.isnan(lo) | np.isnan(hi)
        for p in self.derivative_jumps():
            slack = 4 * np.finfo(np.float64).eps * abs(p)
            bad = bad | ((lo <= p + slack) & (p - slack <= hi))
        return bad

    def _curvature_candidates(self, lo: np.ndarray, hi: np.ndarray
                              ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(|σ''(x)|, rounding scale) at points x of [lo, hi] among which sup |σ''| on [lo, hi]
        is attained: the ends, and each curvature point and its float neighbours (the one-sided
        values of a jumping σ''), clipped into [lo, hi] — a clipped point is still a point of
        [lo, hi], so it never overstates the sup. The curvature points are rounded: σ''' = 0
        there, so the rounding costs only O(ulp²) of |σ''|, far inside the margin."""
        xs = [lo, hi]
        for p in self.curvature_points():
            for q in (np.nextafter(p, -np.inf), p, np.nextafter(p, np.inf)):
                xs.append(np.clip(q, lo, hi))
        return [(np.abs(self.second_derivative(x)), self._second_derivative_scale(x))
                for x in xs]

    def smoothness_on(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Upper bound on sup_{x ∈ [lo, hi]} |σ''(x)|, the Lipschitz constant of σ' on [lo, hi],
        per entry; inf where [lo, hi] contains a jump of σ' (no such constant), or where the
        sup itself is infinite (CELU with α < 0 towards −∞).

        σ'' is continuous and monotone between the curvature points and jumps, so its extremes
        on [lo, hi] are among the ends and the (one-sided values at the) curvature points inside.
        Each computed |σ''| is widened by 10·ELEMENTARY_RELATIVE_ERROR times its scale, plus TINY
        where it can underflow, and rounded up."""
        from boundprop.rounding import ELEMENTARY_RELATIVE_ERROR, TINY

        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        cands = self._curvature_candidates(lo, hi)
        val = np.maximum.reduce([v for v, _ in cands])
        scale = np.maximum.reduce([s for _, s in cands])
        tiny = TINY if self.curvature_may_underflow else 0.0
        raw = val + 10 * ELEMENTARY_RELATIVE_ERROR * scale + tiny
        bound = np.where(raw == 0, 0.0, np.nextafter(raw, np.inf))
        return np.where(self._jump_mask(lo, hi) | np.isnan(bound), np.inf, bound)

    def value_bound(self) -> float:
        """sup_x |σ(x)| over ℝ (inf when σ is unbounded)."""
        return float("inf")

    def global_constants(self) -> dict[str, float]:
        """Constants of σ over the whole line: {"lipschitz": sup |σ'| (Clarke, both one-sided
        values at kinks), "smoothness": sup |σ''| = Lipschitz constant of σ' (inf if σ' jumps),
        "value_at_zero": σ(0) as computed in float64, "bounded": sup |σ|}, the first two
        rounded up; for per-entry parameters (PRelu) the worst entry."""
        ones = np.ones((1,) + (1,) * len(self.in_shapes[0]))
        lo, hi = -np.inf * ones, np.inf * ones
        return {"lipschitz": float(np.max(self.lipschitz_on(lo, hi))),
                "smoothness": float(np.max(self.smoothness_on(lo, hi))),
                "value_at_zero": float(np.reshape(self.fn(0 * ones), -1)[0]),
                "bounded": self.value_bound()}

    # ---------------------------------------------------------------- constants rules
    def constants_rule(self, ctx):
        """Elementwise: ‖diag(σ'(z))‖_p = max|σ'| and D²y[h,k] = σ''(z)⊙h⊙k, so ℓ_φ = sup|σ'|,
        L_φ = sup|σ''| over the enclosure of the input (over ℝ for global constants); a kink
        of σ' inside some neuron's interval makes L infinite (reported with the reason)."""
        import sympy as sp

        from boundprop.ops.rules import array_norm_upper, chain_rule

        shape = self.in_shapes[0]
        if ctx.local:
            lo, hi = ctx.boxes[0]
        else:
            lo, hi = np.full((1, *shape), -np.inf), np.full((1, *shape), np.inf)
        slopes = self.lipschitz_on(lo, hi)
        curv = self.smoothness_on(lo, hi)
        a = ctx.symbol("a", float(np.max(slopes)), f"sup |{self.kind}'| on the node's inputs",
                       latex=f"a_{{\\mathrm{{{ctx.tag}}}}}")
        kinked = ~np.isfinite(curv)
        reason = None
        if np.any(kinked):
            k = ctx.symbol("k", float("inf"), f"sup |{self.kind}''|")
            jumps = self.derivative_jumps()
            what = (f"σ' jumps at {', '.join(f'{p:g}' for p in jumps)}" if jumps
                    else "σ'' is unbounded")
            n_bad = int(np.count_nonzero(kinked))
            reason = f"{self.kind}: {what}" + (
                f"; {n_bad} of {kinked.size} neurons can reach it on the set" if ctx.local
                else " (not smooth)")
        else:
            k = ctx.symbol("k", float(np.max(curv)), f"sup |{self.kind}''| on the node's inputs",
                           latex=f"k_{{\\mathrm{{{ctx.tag}}}}}")
        zero = ctx.symbol("s0", array_norm_upper(
            np.broadcast_to(np.abs(self.fn(np.zeros((1, *shape)))), (1, *shape)), ctx.norm),
            f"‖{self.kind}(0)‖")
        sup_abs = self.global_constants()["bounded"]
        cap = sp.oo
        if np.isfinite(sup_abs):
            from boundprop.ops.rules import dim_factor

            cap = ctx.symbol("m", float(sup_abs) * dim_factor(int(np.prod(shape)), ctx.norm)
                             * (1 + 1e-15), f"sup ‖{self.kind}‖ over all inputs")
        # B ≤ ‖σ(0)‖ + a₀‖u‖ needs the slope on the segments from 0 to the inputs
        a0 = a if not ctx.local else ctx.symbol(
            "a0", float(np.max(self.lipschitz_on(np.minimum(lo, 0.0), np.maximum(hi, 0.0)))),
            f"sup |{self.kind}'| on the hull of the inputs and 0")
        return chain_rule(ctx, a, k, zero, sup_bound=cap, reason=reason, bound_slope=a0)

    def jacobian_backward(self, c, r, boxes):
        """Rows times diag(σ'(z)) with σ'(z) ∈ derivative_range on the enclosure."""
        from boundprop.ops.rules import interval_times

        lo, hi = boxes[0]
        dlo, dhi = self.derivative_range(lo, hi)
        return [interval_times(c, r, dlo, dhi)]

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

    def float32_overflow_free(self, boxes, out, err) -> bool:
        """Elementwise kernels stay finite wherever input and output do (checked against
        onnxruntime up to |x| = 3e38 for every activation here; an intermediate that
        overflows, e.g. x³ in the tanh-GELU, saturates the result to its finite limit)."""
        from boundprop.rounding import FLOAT32_SAFE_MAX

        return box_max_abs(out) <= FLOAT32_SAFE_MAX and box_max_abs(boxes[0]) <= FLOAT32_SAFE_MAX

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

    curvature_may_underflow = False

    def derivative_jumps(self) -> tuple[float, ...]:
        return (0.0,)  # σ'(0−) = 0, σ'(0+) = 1

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = 0 on each linear piece."""
        return np.zeros(np.shape(x))


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

        from boundprop.domains.interval_ort import ETA, SLACK64, U1, FastIntervalUnavailable

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


class Sigmoid(Activation):
    kind = onnx_op = "Sigmoid"

    def fn(self, x):
        return special.expit(x)

    def emit_interval_onnx(self, b, x):
        """Increasing, in (0, 1): onnxruntime's Sigmoid on the outer float32 bounds, the
        kernel's error (``ORT_KERNEL_ERROR``) as the pending widening, lower end ≥ 0."""
        return b.increasing_kernel(x, "Sigmoid", *ORT_KERNEL_ERROR["Sigmoid"], nonneg=True)

    def derivative(self, x):
        # σ(x)σ(−x), not s(1 − s): the latter cancels to 0 in the tails.
        return special.expit(x) * special.expit(-x)

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = σ'(1 − 2σ) = −σ(x)σ(−x)·tanh(x/2) (1 − 2σ(x) = −tanh(x/2), without the
        cancellation of 1 − 2σ near 0)."""
        return -special.expit(x) * special.expit(-x) * np.tanh(x / 2)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = σ'(1 − 6σ + 6σ²) vanishes iff σ = (3 ± √3)/6, i.e. eˣ = σ/(1 − σ) = 2 ± √3:
        x = ±ln(2 + √3) ≈ ±1.3170, where |σ''| = (1/6)(1/√3) = 1/(6√3), the global sup."""
        return (-_LN_2_SQRT3, _LN_2_SQRT3)

    def value_bound(self) -> float:
        return 1.0


class Tanh(Activation):
    kind = onnx_op = "Tanh"

    def fn(self, x):
        return np.tanh(x)

    def emit_interval_onnx(self, b, x):
        """Increasing: onnxruntime's Tanh on the outer float32 bounds, the kernel's error
        (``ORT_KERNEL_ERROR``) as the pending widening."""
        return b.increasing_kernel(x, "Tanh", *ORT_KERNEL_ERROR["Tanh"], nonneg=False)

    def derivative(self, x):
        # sech²x = 4σ(2x)σ(−2x), not 1 − tanh²x (which cancels to 0 for |x| > 19).
        return 4 * special.expit(2 * x) * special.expit(-2 * x)

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = −2 tanh(x)·sech²(x)."""
        return -2 * np.tanh(x) * self.derivative(x)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = 2sech²x·(3tanh²x − 1) vanishes iff tanh x = ±1/√3, x = ±ln(2 + √3)/2 ≈
        ±0.6585, where |σ''| = 2·(1/√3)·(2/3) = 4/(3√3), the global sup."""
        return (-_LN_2_SQRT3 / 2, _LN_2_SQRT3 / 2)

    def value_bound(self) -> float:
        return 1.0


class Softplus(Activation):
    """σ(x) = log(1 + eˣ)."""

    kind = onnx_op = "Softplus"

    def fn(self, x):
        return np.logaddexp(0.0, x)

    def emit_interval_onnx(self, b, x):
        """Increasing, positive: onnxruntime's Softplus on the outer float32 bounds, the
        kernel's error (``ORT_KERNEL_ERROR``) as the pending widening, lower end ≥ 0."""
        return b.increasing_kernel(x, "Softplus", *ORT_KERNEL_ERROR["Softplus"], nonneg=True)

    def derivative(self, x):
        return special.expit(x)

    def pieces(self):
        return ()

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = sigmoid'(x) = s(x)s(−x) > 0."""
        return special.expit(x) * special.expit(-x)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = s'(1 − 2s) vanishes at 0 only, where σ'' = 1/4, the global sup."""
        return (0.0,)


class Softsign(Activation):
    kind = onnx_op = "Softsign"

    def fn(self, x):
        return x / (1.0 + np.abs(x))

    def derivative(self, x):
        with np.errstate(over="ignore"):  # huge |x|: (1 + |x|)² = inf, σ' = 0
            return 1 / (1 + np.abs(x)) ** 2

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = −2·sign(x)/(1 + |x|)³: σ' is continuous at 0 but σ'' jumps from 2 to −2
        (the right-hand value −2 at 0); |σ''| decreases in |x|: the global sup is 2."""
        return np.where(x >= 0, -2.0, 2.0) * (1 / (1 + np.abs(x))) ** 3

    def curvature_points(self) -> tuple[float, ...]:
        return (0.0,)

    def value_bound(self) -> float:
        return 1.0


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

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(0−) = α, σ'(0+) = 1
        return () if self.params["alpha"] == 1 else (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = α eˣ for x < 0, 0 for x ≥ 0 (the right-hand value at 0, as
        :meth:`derivative`); |σ''| increases towards 0⁻: for α = 1 the global sup is 1, and
        σ'' jumps from 1 to 0 there while σ' is continuous."""
        return np.where(x >= 0, 0.0, self.params["alpha"] * np.exp(np.minimum(x, 0.0)))

    def curvature_points(self) -> tuple[float, ...]:
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

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(0−) = γα, σ'(0+) = γ
        a, g = self.params["alpha"], self.params["gamma"]
        return () if a == 1 or g == 0 else (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = γα eˣ for x ≤ 0 (the left-hand value at 0, as :meth:`derivative`), 0 for
        x > 0; for α = 1 the global sup is |γ| (at 0⁻)."""
        a, g = self.params["alpha"], self.params["gamma"]
        return np.where(x > 0, 0.0, g * a * np.exp(np.minimum(x, 0.0)))

    def curvature_points(self) -> tuple[float, ...]:
        return (0.0,)

    def value_bound(self) -> float:
        return 0.0 if self.params["gamma"] == 0 else float("inf")


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

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = e^(x/α)/α for x < 0, 0 for x ≥ 0 (the right-hand value at 0). σ'(0⁻) = e⁰ = 1
        = σ'(0⁺): no jump of σ' for any α. For α > 0 the global sup is 1/α (at 0⁻); for α < 0
        |σ''| grows without bound as x → −∞."""
        a = self.params["alpha"]
        with np.errstate(over="ignore"):
            return np.where(x >= 0, 0.0, np.exp(np.minimum(x, 0.0) / a) / a)

    def curvature_points(self) -> tuple[float, ...]:
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
        x = np.clip(x, -_FAR, _FAR)  # the limits 0 and 1 at ∓inf, not inf·0
        return special.ndtr(x) + x * np.exp(-0.5 * x * x) / _SQRT2PI

    def pieces(self):
        # σ'' = φ(x)(2 − x²) for the exact form: σ' is monotone between ±√2 (the tanh form's
        # inflections are within 0.01 of these; the bisection only needs monotone pieces,
        # so the tanh form uses its own computed points).
        return (-np.sqrt(2.0), np.sqrt(2.0)) if self.approximate == "none" else _GELU_TANH_INFL

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """Exact form: σ'' = φ(x)(2 − x²). Tanh form: σ'' = S'(z)·(2z' + x z'' − x T z'²) at
        |x| (it is even), see ``_gelu_tanh_second_parts``."""
        if self.approximate == "tanh":
            return _gelu_tanh_second(x)
        x = np.clip(x, -_FAR, _FAR)
        return np.exp(-0.5 * x * x) / _SQRT2PI * (2 - x * x)

    def _second_derivative_scale(self, x: np.ndarray) -> np.ndarray:
        # 2 − x² and the tanh form's bracket cancel near their roots (±√2, ±1.4185): the
        # rounding is relative to the terms' magnitudes, not to |σ''|.
        if self.approximate == "tanh":
            return _gelu_tanh_second_parts(x)[1]
        x = np.clip(x, -_FAR, _FAR)
        return np.exp(-0.5 * x * x) / _SQRT2PI * (2 + x * x)

    def curvature_points(self) -> tuple[float, ...]:
        """Exact form: σ''' = xφ(x)(x² − 4) vanishes at 0, ±2, where |σ''| = 2φ(0) = √(2/π)
        (the global sup) and 2φ(2). Tanh form: the midpoints of the certified brackets of the
        zeros of its σ''' (0 and ±2.0135; see ``_gelu_tanh_curvature_brackets``)."""
        if self.approximate == "tanh":
            return tuple(0.5 * (a + b) for a, b, _ in _gelu_tanh_curvature_brackets())
        return (-2.0, 0.0, 2.0)

    def _curvature_candidates(self, lo, hi):
        """Tanh form: besides the ends, each certified bracket of a zero of σ''' that meets
        [lo, hi] contributes its bound U ≥ sup |σ''| over the bracket. An interior extremum
        of σ'' on [lo, hi] is a zero of σ''', hence in such a bracket: the sup over [lo, hi]
        is at most max(|σ''(lo)|, |σ''(hi)|, those U)."""
        cands = super()._curvature_candidates(lo, hi)
        if self.approximate == "tanh":
            for a, b, u in _gelu_tanh_curvature_brackets():
                hit = np.where((lo <= b) & (a <= hi), u, 0.0)
                cands.append((hit, hit))
        return cands


class Erf(Activation):
    kind = onnx_op = "Erf"

    def fn(self, x):
        return special.erf(x)

    def emit_interval_onnx(self, b, x):
        """Increasing: onnxruntime's Erf on the outer float32 bounds, the kernel's error
        (``ORT_KERNEL_ERROR``) as the pending widening."""
        return b.increasing_kernel(x, "Erf", *ORT_KERNEL_ERROR["Erf"], nonneg=False)

    def derivative(self, x):
        with np.errstate(over="ignore"):  # huge |x|: x² = inf, σ' = 0
            return 2 / np.sqrt(np.pi) * np.exp(-x * x)

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = −(4/√π)·x·e^(−x²)."""
        x = np.clip(x, -_FAR, _FAR)
        return -4 / np.sqrt(np.pi) * x * np.exp(-x * x)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = −(4/√π)e^(−x²)(1 − 2x²) vanishes at ±1/√2, where |σ''| = √(8/π)·e^(−1/2)
        ≈ 0.96788, the global sup."""
        return (-np.sqrt(0.5), np.sqrt(0.5))

    def value_bound(self) -> float:
        return 1.0


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

    def fn(self, x):
        return np.clip(x, self.params["lo"], self.params["hi"])

    rounding = "exact"

    def emit_interval_onnx(self, b, x):
        """Clip is exact and nondecreasing in x and in both limits: lo through (↓min, ↓max),
        hi through (↑min, ↑max)."""
        from boundprop.domains.interval_ort import down32, up32

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

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(0−) = slope, σ'(0+) = 1, per entry (see _jump_mask)
        return () if np.all(self.slope_raw == 1) else (0.0,)

    def _jump_mask(self, lo, hi):
        """Per entry: only the entries whose slope is not 1 jump at 0."""
        return np.isnan(lo) | np.isnan(hi) | ((lo <= 0) & (0 <= hi) & (self.slope != 1))

    curvature_may_underflow = False

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = 0 on each linear piece."""
        return np.zeros(np.shape(x))


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
