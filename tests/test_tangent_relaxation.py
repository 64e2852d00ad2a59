"""Tangent-based relaxations of the smooth activations (``Activation.relaxation_candidates``).

Every candidate's lines must bound the real σ: a_l·x + b_l ≤ σ(x) ≤ a_u·x + b_u at dense
points of [l, u] and at the points where each line touches σ (the candidates of the exact
offset computation: ends, kinks, roots of σ' = a). Where the float gap is not clearly positive
the comparison is redone exactly: the line in 256-bit arithmetic (exact for these operands up to
far below the margins) against σ by mpmath. The structure checks state what the construction
proves: on a convex (concave) [l, u] the chord side is today's line, the other side touches σ
at the midpoint and the area is no larger than the chord relaxation's; across one inflection
the lines pass through (l, σ(l)) and (u, σ(u)) with slopes on the known side of the chord;
across two (the GELUs) the chord stays above and the lower line touches the middle piece.
A planted slope error (offsets computed for one slope, another slope reported) is caught by the
same check.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boundprop.ops.piecewise import LeakyRelu, Relu
from boundprop.ops.smooth import Celu, Elu, Erf, Gelu, Selu, Sigmoid, Softplus, Softsign, Tanh

N = 16
ACTS = [Sigmoid((N,)), Tanh((N,)), Softplus((N,)), Softsign((N,)), Elu((N,), alpha=1.0),
        Elu((N,), alpha=0.3), Elu((N,), alpha=1.7), Elu((N,), alpha=-0.5),
        Elu((N,), alpha=0.0), Selu((N,), **Selu.onnx_defaults), Selu((N,), alpha=-1.0, gamma=1.0),
        Celu((N,), alpha=0.7), Gelu((N,)),
        Gelu((N,), "tanh"), Erf((N,))]
IDS = [f"{type(a).__name__}{getattr(a, 'approximate', '')}{a.params or ''}" for a in ACTS]

mpmath.mp.prec = 256
_M = mpmath.mpf


def _ref(act, x: float):
    """σ(x) in 256-bit arithmetic (the ONNX definitions; the tanh-GELU with its decimal
    constants)."""
    x = _M(float(x))
    p = {k: _M(v) for k, v in act.params.items()}
    name = type(act).__name__
    if name == "Sigmoid":
        return 1 / (1 + mpmath.exp(-x))
    if name == "Tanh":
        return mpmath.tanh(x)
    if name == "Softplus":
        return mpmath.log1p(mpmath.exp(x))
    if name == "Softsign":
        return x / (1 + abs(x))
    if name == "Elu":
        return x if x >= 0 else p["alpha"] * mpmath.expm1(x)
    if name == "Selu":
        return p["gamma"] * (x if x > 0 else p["alpha"] * mpmath.expm1(x))
    if name == "Celu":
        return max(x, 0) + min(0, p["alpha"] * mpmath.expm1(x / p["alpha"]))
    if name == "Erf":
        return mpmath.erf(x)
    if act.approximate == "tanh":
        z = mpmath.sqrt(2 / mpmath.pi) * (x + _M("0.044715") * x**3)
        return x / (1 + mpmath.exp(-2 * z))
    return x / 2 * mpmath.erfc(-x / mpmath.sqrt(2))


def _points(act, relax, lo, hi, dense: int = 33) -> np.ndarray:
    """(K, N) points: a dense grid of [lo, hi] (ends included) and every candidate point of
    each line's exact offset (where the line may touch σ)."""
    t = np.linspace(0.0, 1.0, dense)[:, None]
    xs = [lo + t * (hi - lo), lo, hi]
    for a in (relax[0], relax[2]):
        xs += [np.broadcast_to(c, lo.shape) for c in act._candidates(a, lo, hi)]
    return np.clip(np.concatenate([np.reshape(x, (-1, lo.shape[-1])) for x in xs]), lo, hi)


def violations(act, relax, lo, hi, xs=None) -> np.ndarray:
    """Per neuron: True where some point of [lo, hi] has a line on the wrong side of the real
    σ (float screening, exact comparison of every close call)."""
    a_l, b_l, a_u, b_u = (np.broadcast_to(v, lo.shape).reshape(-1) for v in relax)
    xs = _points(act, relax, lo, hi) if xs is None else xs
    y = act.fn(xs)
    bad = np.zeros(xs.shape[1], dtype=bool)
    for a, b, sign in ((a_l, b_l, 1.0), (a_u, b_u, -1.0)):
        gap = sign * (y - (a * xs + b))  # ≥ 0 when the line is on its side
        scale = 1 + np.abs(y) + np.abs(a * xs) + np.abs(b)
        for k, j in zip(*np.nonzero(~(gap > 1e-9 * scale))):
            x = xs[k, j]
            line = _M(float(a[j])) * _M(float(x)) + _M(float(b[j]))
            bad[j] |= bool(sign * (_ref(act, x) - line) < 0)
    return bad


def area(relax, lo, hi) -> np.ndarray:
    """∫_l^u (upper − lower) dx = (u − l)·((a_u − a_l)·m + b_u − b_l), m the midpoint."""
    a_l, b_l, a_u, b_u = relax
    return (hi - lo) * ((a_u - a_l) * (0.5 * lo + 0.5 * hi) + (b_u - b_l))


def _structure(act, lo, hi):
    """Per neuron: the sign of σ'' on the piece holding lo and the number of inflections
    strictly inside (lo, hi)."""
    pts, s = act.inflections()
    below = sum((p <= lo).astype(int) for p in pts) if pts else np.zeros(lo.shape, int)
    inside = sum(((lo < p) & (p < hi)).astype(int) for p in pts) if pts else np.zeros(
        lo.shape, int)
    return np.where(below % 2 == 0, s, -s), inside


def check_all(act, lo, hi):
    chord, tangent = act.relaxation_candidates(lo, hi)
    assert not np.any(violations(act, chord, lo, hi)), "chord relaxation unsound"
    bad = violations(act, tangent, lo, hi)
    assert not np.any(bad), f"tangent relaxation unsound on {lo[bad]}, {hi[bad]}"
    # structure
    s, inside = _structure(act, lo, hi)
    width = hi - lo
    real = np.isfinite(width) & (width > 1e-9 * (1 + np.abs(lo) + np.abs(hi)))
    a_l, b_l, a_u, b_u = tangent
    ca_l, cb_l, ca_u, cb_u = chord
    tol = 1e-10 * (1 + np.abs(lo) + np.abs(hi))
    one_piece = real & (inside == 0)
    chord_side = np.where(s > 0, (a_u == ca_u) & (b_u == cb_u), (a_l == ca_l) & (b_l == cb_l))
    assert np.all(chord_side[one_piece]), "convex/concave: the chord side must be unchanged"
    m = 0.5 * lo + 0.5 * hi
    sm = act.fn(m)
    touch = np.where(s > 0, sm - (a_l * m + b_l), (a_u * m + b_u) - sm)
    assert np.all(touch[one_piece] <= tol[one_piece]), "the tangent must touch σ at m"
    gain = area(chord, lo, hi) - area(tangent, lo, hi)
    assert np.all(gain[one_piece] >= -tol[one_piece] * width[one_piece])
    # one inflection: f = s·σ is an S; its upper line passes through (l, f(l)) with slope ≥
    # the chord's, its lower through (u, f(u)) with slope ≥ the chord's.
    cross = real & (inside == 1)
    f_up = np.where(s > 0, a_u * lo + b_u - act.fn(lo), act.fn(lo) - (a_l * lo + b_l))
    f_dn = np.where(s > 0, act.fn(hi) - (a_l * hi + b_l), a_u * hi + b_u - act.fn(hi))
    assert np.all(f_up[cross] <= tol[cross]) and np.all(f_dn[cross] <= tol[cross])
    chord_slope = (act.fn(hi) - act.fn(lo)) / np.where(real, width, 1.0)
    stol = 1e-9 * (1 + np.abs(chord_slope))
    for t_slope in (a_l, a_u):
        assert np.all((s * (t_slope - chord_slope) >= -stol)[cross])
    # two inflections (the GELUs, concave-convex-concave): the chord above; below a line of
    # slope between σ'(l) and σ'(u) touching σ (at one of its offset's candidate points)
    two = real & (inside == 2)
    if np.any(two):
        assert np.all((a_u == ca_u)[two] & (b_u == cb_u)[two] & (s < 0)[two])
        d_lo, d_hi = act.derivative(lo), act.derivative(hi)
        assert np.all(((np.minimum(d_lo, d_hi) <= a_l) & (a_l <= np.maximum(d_lo, d_hi)))[two])
        xs = np.stack([np.broadcast_to(c, lo.shape) for c in act._candidates(a_l, lo, hi)])
        gap = np.min(act.fn(xs) - (a_l * xs + b_l), axis=0)
        assert np.all(gap[two] <= tol[two] + 1e-12 * np.abs(a_l * lo)[two])


def _intervals(pairs) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(pairs)
    pairs += [pairs[-1]] * (-len(pairs) % N)
    arr = np.array(pairs, dtype=np.float64)
    return arr[:, 0].reshape(-1, N), arr[:, 1].reshape(-1, N)


R2 = float(np.sqrt(2.0))
GRID = [
    # tiny (below and above the chord's width threshold), degenerate
    (0.3, 0.3), (-1.0, -1.0 + 1e-12), (0.0, 1e-10), (-1e-6, 1e-6), (2.0, 2.0 + 1e-7),
    # one-sided, touching an inflection at an end
    (0.0, 1.0), (-1.0, 0.0), (0.5, 4.0), (-4.0, -0.5), (1e-300, 3.0), (-3.0, -1e-300),
    # crossing 0, symmetric and lopsided
    (-3.0, 2.0), (-0.1, 0.1), (-8.0, 0.3), (-0.3, 8.0), (-1.0, 1.0), (-20.0, 20.0),
    # the GELU inflections ±√2: one inside, both inside, at an end
    (-3.0, -1.0), (1.0, 3.0), (-2.0, 2.0), (-R2, 0.5), (-1.5, R2), (-5.0, 5.0),
    # |x| up to 1e4
    (-1e4, 1e4), (-1e4, -9e3), (9e3, 1e4), (-1e4, 0.5), (-0.5, 1e4), (-1e4, -1e4 + 1e-3),
    (1e3, 1e4), (-30.0, 1e3), (-7.0, 50.0),
]


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_grid(act):
    los, his = _intervals(GRID)
    for lo, hi in zip(los, his):
        check_all(act, lo, hi)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@settings(max_examples=15, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 0.3, 1.0, 4.0, 30.0, 1e4]))
def test_random_intervals(act, seed, scale):
    rng = np.random.default_rng(seed)
    a = scale * rng.standard_normal(N)
    b = a + scale * rng.random(N) * rng.choice([1e-6, 0.01, 1.0, 5.0], N)
    check_all(act, np.clip(a, -1e4, 1e4), np.clip(b, -1e4, 1e4))


def _planted(relax, delta: float):
    """Offsets computed for the given slopes, slopes then steepened on the left (the bug)."""
    a_l, b_l, a_u, b_u = relax
    return a_l - delta, b_l, a_u + delta, b_u


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_planted_too_steep_slope_is_caught(act):
    """The lines pass through (l, σ(l)) (up to the margin) wherever they touch σ at l; a slope
    steepened by δ moves them by δ·|l| there, to the wrong side once l < 0: the check must
    flag every such neuron (and flags nothing on the unplanted relaxation)."""
    los, his = _intervals(GRID)
    caught_any = 0
    for lo, hi in zip(los, his):
        for relax in act.relaxation_candidates(lo, hi):
            bad = violations(act, _planted(relax, 1e-6), lo, hi)
            a_l, b_l, a_u, b_u = relax
            y = act.fn(lo)
            gap = np.minimum(y - (a_l * lo + b_l), a_u * lo + b_u - y)
            must = (lo < -0.1) & (gap < 1e-7 * np.abs(lo)) & (hi > lo)
            assert np.all(bad[must]), f"planted slope not caught on {lo[must & ~bad]}"
            caught_any += int(np.count_nonzero(bad))
    assert caught_any > 0


def test_piecewise_ops_have_one_candidate():
    lo, hi = np.array([[-1.0, 0.5]]), np.array([[2.0, 3.0]])
    for act in (Relu((2,)), LeakyRelu((2,), alpha=0.1)):
        (only,) = act.relaxation_candidates(lo, hi)
        assert all(np.array_equal(x, y) for x, y in zip(only, act.relaxation(lo, hi)))
        assert act.linear_relaxation_candidates((lo, hi))[0][0] is not None


def test_relaxation_output_is_the_chord_candidate():
    """relaxation() is unchanged (golden bounds): it is the first candidate, bit for bit."""
    rng = np.random.default_rng(3)
    lo = 3 * rng.standard_normal((1, N))
    hi = lo + 2 * rng.random((1, N))
    for act in ACTS:
        first = act.relaxation_candidates(lo, hi)[0]
        assert all(np.array_equal(x, y) for x, y in zip(first, act.relaxation(lo, hi)))


def test_tangent_is_tighter_than_chord_on_sigmoid_crossing():
    act = Sigmoid((3,))
    lo, hi = np.array([[-3.0, -1.0, -6.0]]), np.array([[2.0, 1.0, 6.0]])
    chord, tangent = act.relaxation_candidates(lo, hi)
    assert np.all(area(tangent, lo, hi) < 0.9 * area(chord, lo, hi))
