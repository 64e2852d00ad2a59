"""Tangent-based slopes for the linear relaxation of a smooth activation σ (CROWN's choice).

Only the *slopes* are chosen here. :meth:`Activation.relaxation_with_slopes` then computes each
offset as the exact extreme of σ(x) − a·x over [l, u] (plus the rounding margin), so the lines
are valid for any slope returned: a slope that is slightly off (a bisection stopped early, an
inflection point known to a few ulp) costs tightness, never soundness.

The activation declares its convexity structure (:meth:`Activation.inflections`): points
p₁ < … < p_k and the sign s of the leftmost piece, σ being convex (s = +1) or concave (s = −1)
on (−∞, p₁] and alternating on each [p_i, p_{i+1}]. Per neuron, with m = (l + u)/2 and f = s'·σ
where s' = ±1 makes f convex on the left part of [l, u]:

* no p_i inside (l, u), f convex on [l, u]: upper line of f = the chord; lower = the tangent at
  m (among tangent lines the one of least area: d/dt ∫(f(t) + f'(t)(x − t))dx = f''(t)(u − l)
  (m − t)).
* one p inside, f convex on [l, p], concave on [p, u]: the upper line of f is the tightest
  line through (l, f(l)) above f, slope max_{d ∈ (l, u]} c(d), c(d) = (f(d) − f(l))/(d − l).
  c increases on [l, p] (convexity) and c'(d) = g(d)/(d − l)² with g(d) = f'(d)(d − l) −
  (f(d) − f(l)), g' = f''(d)(d − l) ≤ 0 on [p, u], g(p) ≥ 0: the max is at the root d* of g in
  [p, u] (the tangent point), or at u if g(u) ≥ 0 (the chord). Symmetrically the lower line
  is the tightest line through (u, f(u)) below f, slope max_{d ∈ [l, u)} (f(u) − f(d))/(u − d),
  at the root of h(d) = f'(d)(u − d) − (f(u) − f(d)) in [l, p] (h increasing there), or at l.
* two p inside (the GELUs on intervals spanning both inflections, concave-convex-concave):
  the chord on the side of the outer pieces' curvature (above, for the GELUs), and on the other
  the slope of the middle piece's tangent at the midpoint clipped into it, clipped between
  σ'(l) and σ'(u) (a steeper line would cut the outer pieces: for the GELUs on a wide [l, u]
  this is ReLU's lower line, slope ≈ 0 or 1); a heuristic, not a proven optimum. Three or
  more: the chord slope for both lines.

The slope of each line is taken as the chord slope to the bisection's end point rather than
f'(d*): the two agree at a tangent point, and the chord slope is also right where the max is
at a kink (a concave kink of the ELU family at p = 0).
"""

from __future__ import annotations

import numpy as np

BISECTION_STEPS = 70  # as Activation._candidates: d* to ~2⁻⁷⁰ of [l, u]


def _chord(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return (fn(b) - fn(a)) / (b - a)


def _root(g, a: np.ndarray, b: np.ndarray, inc: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bisection of a monotone g on [a, b] (increasing if ``inc``) with g(a), g(b) of opposite
    signs; returns the final bracket (left, right)."""
    for _ in range(BISECTION_STEPS):
        m = 0.5 * a + 0.5 * b
        right = (g(m) < 0) == inc
        a, b = np.where(right, m, a), np.where(right, b, m)
    return a, b


def s_shape_slopes(f, df, lo, hi, p) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) slopes for an f convex on [lo, p], concave on [p, hi], lo < p < hi:
    the tangent-from-endpoint lines of the module docstring."""
    f_lo, f_hi = f(lo), f(hi)
    g_hi = df(hi) * (hi - lo) - (f_hi - f_lo)
    # Each bisection ends with a bracket (a, b) of the maximiser; both chord slopes are ≤ the
    # max (they are values of the function maximised): the larger is the tighter line.
    a, b = _root(lambda d: df(d) * (d - lo) - (f(d) - f_lo), p.copy(), hi.copy(), inc=False)
    upper = np.where(g_hi >= 0, _chord(f, lo, hi),
                     np.fmax(_chord(f, lo, a), _chord(f, lo, b)))
    h_lo = df(lo) * (hi - lo) - (f_hi - f_lo)
    a, b = _root(lambda d: df(d) * (hi - d) - (f_hi - f(d)), lo.copy(), p.copy(), inc=True)
    lower = np.where(h_lo >= 0, _chord(f, lo, hi),
                     np.fmax(_chord(f, a, hi), _chord(f, b, hi)))
    return lower, upper


def tangent_slopes(fn, df, lo, hi, points, sign, fallback) -> tuple[np.ndarray, np.ndarray]:
    """(a_lower, a_upper) per neuron for σ = ``fn`` (σ' = ``df``) with inflection points
    ``points`` and leftmost-piece sign ``sign`` (see the module docstring); ``fallback`` =
    (lower, upper) chord slopes, kept where [lo, hi] is tiny, infinite, or spans ≥ 3 points."""
    a_l, a_u = (np.array(s, dtype=np.float64, copy=True) for s in fallback)
    lo, hi = np.broadcast_arrays(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    width = hi - lo
    ok = (np.isfinite(lo) & np.isfinite(hi)
          & (width > 1e-9 * (1 + np.abs(lo) + np.abs(hi))))
    pts = np.asarray(sorted(points), dtype=np.float64)
    below = sum(((pt <= lo).astype(int) for pt in pts), np.zeros(lo.shape, int))
    inside = sum(((lo < pt) & (pt < hi)).astype(int) for pt in pts) if pts.size else 0
    # sign of σ'' on the piece holding lo: s·(−1)^(number of inflections ≤ lo)
    s_lo = np.where(below % 2 == 0, sign, -sign).astype(np.float64)
    one = ok & (inside == 1)
    zero = ok & (inside == 0)
    if np.any(zero):
        mid = 0.5 * lo + 0.5 * hi
        chord, tan = _chord(fn, lo, hi), df(mid)
        a_l = np.where(zero, np.where(s_lo > 0, tan, chord), a_l)
        a_u = np.where(zero, np.where(s_lo > 0, chord, tan), a_u)
    two = ok & (inside == 2)
    if np.any(two) and pts.size == 2:
        # the middle piece [p₁, p₂] has the sign −s_lo: its tangent at the midpoint clipped
        # into it on that side, the chord on the other
        tan = df(np.clip(0.5 * lo + 0.5 * hi, pts[0], pts[1]))
        d_lo, d_hi = df(lo), df(hi)
        tan = np.clip(tan, np.minimum(d_lo, d_hi), np.maximum(d_lo, d_hi))
        chord = _chord(fn, lo, hi)
        a_l = np.where(two, np.where(s_lo < 0, tan, chord), a_l)
        a_u = np.where(two, np.where(s_lo < 0, chord, tan), a_u)
    if np.any(one):
        p = np.zeros(lo.shape)
        for pt in pts:
            p = np.where((lo < pt) & (pt < hi), pt, p)
        idx = np.nonzero(one)
        s, l_, h_, p_ = s_lo[idx], lo[idx], hi[idx], p[idx]
        # f = s·σ is convex left of p, concave right of it (an S); for s = −1 (a Z) the
        # upper line of σ is −(the lower line of f) and vice versa.
        fl, fu = s_shape_slopes(lambda x: s * fn(x), lambda x: s * df(x), l_, h_, p_)
        a_l[idx] = np.where(s > 0, fl, -fu)
        a_u[idx] = np.where(s > 0, fu, -fl)
    # an overflowing σ far out (CELU with α < 0) can make a slope inf or NaN: keep the chord's
    a_l = np.where(np.isfinite(a_l), a_l, fallback[0])
    a_u = np.where(np.isfinite(a_u), a_u, fallback[1])
    return a_l, a_u


def elu_family_inflections(left_curvature: float, slope_left: float, slope_right: float
                           ) -> tuple[tuple[float, ...], int]:
    """Convexity structure of σ = a curved piece on x < 0 (σ'' of sign ``left_curvature``
    there) and a linear piece on x ≥ 0, with one-sided slopes σ'(0−) = ``slope_left``,
    σ'(0+) = ``slope_right``: σ is convex on ℝ iff the left piece is convex and σ' does not
    drop at 0; convex-then-concave (inflection 0) if it drops; mirrored for a concave left
    piece. A linear piece is both convex and concave."""
    jump = slope_right - slope_left
    if left_curvature >= 0:
        return ((), 1) if jump >= 0 else ((0.0,), 1)
    return ((), -1) if jump <= 0 else ((0.0,), -1)
