"""Elementwise activations y_i = σ(x_i): the base class, the registry, the shared converter.

:class:`Activation` turns a few scalar facts about σ, which each subclass states (σ itself,
σ', σ'', the points where σ, σ' or σ'' turn or jump), into every rule of the node: interval
image, derivative and curvature ranges, linear relaxations, the ℓ/L constants, the float32
error. The activation functions live in :mod:`boundprop.ops.piecewise` (ReLU family, Clip,
HardSigmoid, HardSwish) and :mod:`boundprop.ops.smooth` (sigmoid, tanh, softplus, softsign,
the ELU family, GELU, erf).
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np

from boundprop.ops.base import (
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    Value,
    attr,
    box_max_abs,
    onnx_converter,
)
from boundprop.ops.geometry import Region
from boundprop.ops.tangent import tangent_slopes
from boundprop.rounding import (
    ELEMENTARY_RELATIVE_ERROR,
    FLOAT32_ABSOLUTE,
    FLOAT32_ELEMENTARY_RELATIVE_ERROR,
    FLOAT32_SAFE_MAX,
    FLOAT32_UNIT_ROUNDOFF,
    TINY,
    UNIT_ROUNDOFF,
    gamma,
    widen,
    widen_elementary,
)

ACTIVATIONS: dict[str, type[Activation]] = {}


class Activation(Primitive):
    """Elementwise y = σ(x). Subclasses implement :meth:`fn` on float64 arrays."""

    family: ClassVar[str] = "activation"
    onnx_op: ClassVar[str] = ""
    # Every activation has these rules; those with an onnxruntime emission add "ort_interval".
    rules: ClassVar[frozenset[str]] = frozenset(
        {"interval", "backward_linear", "constants", "jacobian", "vjp", "needs_tighter",
         "relaxed_forward", "slope_parameters", "curvature", "slope_restriction"})

    def __init__(self, in_shape: Shape, **params: float) -> None:
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.params = {k: float(v) for k, v in params.items()}

    def crop(self, region: Region) -> tuple[Activation, list[Region]] | None:
        """Elementwise: the same σ on the same region of the input. Not for an op holding a
        parameter array (PRelu's slope), which would need cropping too."""
        if any(isinstance(v, np.ndarray) and v.size > 1 for v in vars(self).values()):
            return None
        op = copy.copy(self)
        op.in_shapes = (tuple(b - a for a, b in region),)
        op.out_shape = op.in_shapes[0]
        return op, [region]

    def crop_relaxation(self, relax, region: Region):
        """Entrywise (a_l, b_l, a_u, b_u): the same entries of each array (scalars as they
        are)."""
        sl = (slice(None), *(slice(a, b) for a, b in region))
        return tuple(r[sl] if np.ndim(r) == len(region) + 1 else r for r in relax)

    # ONNX attribute defaults of the σ's parameters (the converter reads these attributes).
    onnx_defaults: ClassVar[dict[str, float]] = {}
    # Whether ``convert_activation`` converts the ONNX op (False: the class's module registers
    # its own converter).
    plain_converter: ClassVar[bool] = True

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if cls.onnx_op:
            ACTIVATIONS[cls.onnx_op] = cls
            if cls.plain_converter:
                onnx_converter(cls.onnx_op)(convert_activation)

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

    def branch_points(self) -> tuple[float, ...]:
        """The kinks of a piecewise-linear σ (its relaxation is exact on each side of a
        split there, once no other kink is inside). Smooth σ: none — splitting their range
        (GenBaB) is not implemented."""
        return tuple(self.derivative_jumps()) if self.pieces() is None else ()

    def derivative_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray,
                                                                        np.ndarray]:
        """[dmin, dmax] ⊇ {σ'(x) : x ∈ [lo, hi]}, with both one-sided derivatives at kinks
        (so it encloses Clarke's generalised derivative). σ' is monotone between the points of
        ``pieces()`` (piecewise constant between the kinks of a piecewise-linear σ), so its
        extremes are among the ends, those points, and one-sided limits at kinks."""
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

    def slope_restriction(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-entry global slope bounds [α, β] (arrays of the input's shape, with a leading
        sample axis of 1): α ≤ (σ(a) − σ(b))/(a − b) ≤ β for all real a ≠ b. σ is continuous
        and piecewise C¹, so a difference quotient is an average of σ' over [b, a]: the
        derivative range over the whole line (:meth:`derivative_range`) bounds it."""
        full = np.full((1, *self.in_shapes[0]), np.inf)
        return self.derivative_range(-full, full)

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
        import sympy as sp  # lazy: sympy is heavy (only constants need it)

        from boundprop.ops.rules import array_norm_upper, chain_rule  # lazy: loads sympy

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
            from boundprop.ops.rules import dim_factor  # lazy: loads sympy

            cap = ctx.symbol("m", float(sup_abs) * dim_factor(int(np.prod(shape)), ctx.norm)
                             * (1 + 1e-15), f"sup ‖{self.kind}‖ over all inputs")
        # B ≤ ‖σ(0)‖ + a₀‖u‖ needs the slope on the segments from 0 to the inputs
        a0 = a if not ctx.local else ctx.symbol(
            "a0", float(np.max(self.lipschitz_on(np.minimum(lo, 0.0), np.maximum(hi, 0.0)))),
            f"sup |{self.kind}'| on the hull of the inputs and 0")
        return chain_rule(ctx, a, k, zero, sup_bound=cap, reason=reason, bound_slope=a0)

    def vjp(self, cot: np.ndarray, inputs: list[np.ndarray], rows: int) -> list[np.ndarray]:
        """cot·diag(σ'(x)): each point's σ'(x) (:meth:`derivative`, one-sided at kinks)
        multiplies its ``rows`` consecutive cotangent rows."""
        return [cot * np.repeat(self.derivative(inputs[0]), rows, axis=0)]

    def jacobian_backward(self, c, r, boxes):
        """Rows times diag(σ'(z)) with σ'(z) ∈ derivative_range on the enclosure."""
        from boundprop.ops.rules import interval_times  # lazy: loads sympy

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
        """Lines a_l·x + b_l ≤ σ(x) ≤ a_u·x + b_u valid on [lo, hi] with the slopes of
        :meth:`relaxation_slopes` (the chord, for a curved σ)."""
        return self.relaxation_with_slopes(lo, hi, *self.relaxation_slopes(lo, hi))

    def inflections(self) -> tuple[tuple[float, ...], int] | None:
        """σ's convexity structure: points p₁ < … < p_k and the sign s of the leftmost piece,
        σ being convex (s = +1) or concave (s = −1) on (−∞, p₁] and alternating on each
        following piece [p_i, p_{i+1}] (a linear piece counts as either; a kink must agree
        with its piece). None: not declared (no tangent relaxation)."""
        return None

    def tangent_relaxation_slopes(self, lo: np.ndarray, hi: np.ndarray
                                  ) -> tuple[np.ndarray, np.ndarray]:
        """Slopes (lower, upper) of CROWN's tangent-based lines, per neuron: on a convex
        [l, u] the chord above and the tangent at the midpoint below (concave: mirrored);
        across one inflection the tightest lines through (l, σ(l)) above and (u, σ(u))
        below (tangent to σ, or the chord); across two (the GELUs) the chord and the middle
        piece's tangent; the chord where σ's structure is not declared (see
        :mod:`boundprop.ops.tangent`)."""
        chord = self.relaxation_slopes(lo, hi)
        shape = self.inflections()
        if shape is None:
            return chord
        with np.errstate(over="ignore", invalid="ignore"):  # far ends: limits, or chord
            return tangent_slopes(self.fn, self._slope_at, lo, hi, shape[0], shape[1], chord)

    def relaxation_candidates(self, lo: np.ndarray, hi: np.ndarray) -> list[tuple]:
        """Sound relaxations (a_l, b_l, a_u, b_u) of σ on [lo, hi] to choose from, bound by
        bound: [chord, tangent] for a σ with declared convexity (:meth:`inflections`), else
        [:meth:`relaxation`]. Each one's offsets are exact extremes (any slope is sound)."""
        chord = self.relaxation(lo, hi)
        if self.inflections() is None:
            return [chord]
        return [chord, self.relaxation_with_slopes(lo, hi,
                                                   *self.tangent_relaxation_slopes(lo, hi))]

    def has_relaxation_candidates(self) -> bool:
        return self.inflections() is not None

    def linear_relaxation_candidates(self, box) -> list:
        """:meth:`relaxation_candidates`, plus (when there are several) the best lines of
        them per neuron: the lower line highest and the upper line lowest at the midpoint
        (the smallest areas). Each line is valid on its own, so any mix of them is sound."""
        cands = self.relaxation_candidates(*box)
        if len(cands) < 2:
            return cands
        mid = 0.5 * (box[0] + box[1])
        stacked = [np.stack(np.broadcast_arrays(*(c[i] for c in cands))) for i in range(4)]
        low = np.argmax(stacked[0] * mid + stacked[1], axis=0)[None]
        up = np.argmin(stacked[2] * mid + stacked[3], axis=0)[None]
        best = tuple(np.take_along_axis(stacked[i], low if i < 2 else up, 0)[0]
                     for i in range(4))
        return [*cands, best]

    def relaxation_with_slopes(self, lo: np.ndarray, hi: np.ndarray, a_l: np.ndarray,
                               a_u: np.ndarray):
        """Lines a_l·x + b_l ≤ σ(x) ≤ a_u·x + b_u valid on [lo, hi] for the given slopes
        (sound for any slopes: b_l = min, b_u = max of σ(x) − a·x over the candidate points,
        which hold the exact extremes, widened by the rounding margin)."""
        b_l, _ = self.line_offset(a_l, lo, hi, lower=True)
        b_u, _ = self.line_offset(a_u, lo, hi, lower=False)
        return a_l, b_l, a_u, b_u

    def line_offset(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray, lower: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The offset b making a·x + b a lower (upper) line of σ on [lo, hi] — the exact
        min (max) of σ(x) − a·x over the candidate points, widened by the rounding margin —
        and the point x* attaining it (where the line touches σ: ∂b/∂a = −x*). ``a`` may
        carry a leading row axis."""
        if a.shape != lo.shape:
            a, lo, hi = np.broadcast_arrays(a, lo, hi)
        vals, points, scale = [], [], np.zeros_like(lo)
        # an infinite enclosure (float32 overflow upstream) gives NaN offsets: they bound
        # nothing, and the back-substitution keeps no bound from them (fmax)
        with np.errstate(invalid="ignore", over="ignore"):
            for x in self._candidates(a, lo, hi):
                fx = self.fn(x)
                vals.append(fx - a * x)
                points.append(x)
                scale = np.maximum(scale, np.abs(fx) + np.abs(a * x))
        margin = 10 * ELEMENTARY_RELATIVE_ERROR * scale + TINY
        stacked = np.stack(vals)
        best = np.argmin(stacked, axis=0) if lower else np.argmax(stacked, axis=0)
        ext = np.take_along_axis(stacked, best[None], 0)[0]
        touch = np.take_along_axis(np.stack(np.broadcast_arrays(*points)), best[None], 0)[0]
        if lower:
            return np.nextafter(ext - margin, -np.inf), touch
        return np.nextafter(ext + margin, np.inf), touch

    # ---------------------------------------------------------------- optimisable slopes
    # Work of with_slopes per entry and row, in multiply-add units: two lines, each offset
    # found by ~70 bisection steps on σ' (the slope optimiser's cost model).
    SLOPE_COST: ClassVar[int] = 140
    # The optimiser's step size for these slopes, relative to its learning rate and the
    # slope's range: curved σ's bounds move smoothly with the slopes and prefer small steps
    # (mlp_sigmoid, 20 iterations: 0.4 → width 0.756, 1.0 → 0.788).
    SLOPE_STEP: ClassVar[float] = 0.4

    def slope_ranges(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        """(lower min, lower max, upper min, upper max) slopes the α pass may choose per
        entry: σ' over [lo, hi]. Any slope is sound (its offset is the exact extreme of
        σ(x) − a·x, :meth:`line_offset`); outside σ's derivative range a line only loosens."""
        dlo, dhi = self.derivative_range(lo, hi)
        fixed = ~(np.isfinite(dlo) & np.isfinite(dhi) & np.isfinite(lo) & np.isfinite(hi))
        a_l, a_u = self.relaxation_slopes(lo, hi)
        lmin, lmax = np.where(fixed, a_l, dlo), np.where(fixed, a_l, dhi)
        umin, umax = np.where(fixed, a_u, dlo), np.where(fixed, a_u, dhi)
        return lmin, lmax, umin, umax

    def with_slopes(self, relax, lo: np.ndarray, hi: np.ndarray, a_l: np.ndarray,
                    a_u: np.ndarray):
        """Lines of slopes a_l, a_u (clipped to :meth:`slope_ranges`; a leading row axis
        allowed) with sound offsets: (relaxation, x_l, x_u), x_l and x_u where the lines
        touch σ (the gradient of an offset with respect to its slope is minus that point)."""
        lmin, lmax, umin, umax = self.slope_ranges(lo, hi)
        a_l, a_u = np.clip(a_l, lmin, lmax), np.clip(a_u, umin, umax)
        b_l, x_l = self.line_offset(a_l, lo, hi, lower=True)
        b_u, x_u = self.line_offset(a_u, lo, hi, lower=False)
        return (a_l, b_l, a_u, b_u), x_l, x_u

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

    def relaxed_forward(self, xs, relax, lam):
        """a_l·x + b_l where Λ ≥ 0, a_u·x + b_u where Λ < 0 (the lines backward_linear used)."""
        a_l, b_l, a_u, b_u = relax
        x = xs[0]
        return np.where(lam >= 0, a_l * x + b_l, a_u * x + b_u)

    def float32_error(self, boxes, out):
        if self.rounding == "exact":
            return np.zeros_like(out[0])
        mag = np.maximum(np.abs(out[0]), np.abs(out[1]))
        rel = 4 * FLOAT32_UNIT_ROUNDOFF if self.rounding == "linear" else \
            FLOAT32_ELEMENTARY_RELATIVE_ERROR
        lo, hi = boxes[0]
        # The argument itself may be rescaled inside the kernel (x/√2, αx + β): that rounding
        # moves σ by at most sup|σ'|·u·|x| (see ``float32_argument_slope``).
        arg = self.float32_argument_slope() * FLOAT32_UNIT_ROUNDOFF * np.maximum(np.abs(lo),
                                                                                 np.abs(hi))
        return rel * mag + arg + FLOAT32_ABSOLUTE

    def float32_argument_slope(self) -> float:
        """A bound ≥ sup|σ'| used for the rounding of σ's argument inside a float32 kernel: 2
        covers every activation here but those whose slope is a parameter (ELU family: up to
        2|α|γ; PRelu overrides this)."""
        slope = 2.0
        if "alpha" in self.params:
            slope = max(slope, abs(self.params["alpha"]) * self.params.get("gamma", 1.0) * 2)
        return slope

    def float32_overflow_free(self, boxes, out, err) -> bool:
        """Elementwise kernels stay finite wherever input and output do (checked against
        onnxruntime up to |x| = 3e38 for every activation here; an intermediate that
        overflows, e.g. x³ in the tanh-GELU, saturates the result to its finite limit)."""
        return box_max_abs(out) <= FLOAT32_SAFE_MAX and box_max_abs(boxes[0]) <= FLOAT32_SAFE_MAX

    def interval(self, box):
        """Exact image of each [l, u]: σ is monotone between its critical points, so the extremes
        are among σ(l), σ(u) and σ at the critical points inside; widened by σ's rounding."""
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


def convert_activation(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    """An ONNX activation node with scalar attributes (their defaults: the class's
    ``onnx_defaults``) as its primitive; registered by ``Activation.__init_subclass__``."""
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("activation input must be computed from the network input")
    cls = ACTIVATIONS[node.op_type]
    params = {k: float(attr(node, k, v)) for k, v in cls.onnx_defaults.items()}
    return [ctx.emit(cls(x.shape, **params), [x])]
