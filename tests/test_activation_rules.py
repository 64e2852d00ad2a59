"""Per-activation rules attacked directly: interval images, derivative ranges, relaxations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from boundprop.ops.piecewise import Clip, HardSigmoid, HardSwish, LeakyRelu, PRelu, Relu
from boundprop.ops.smooth import (
    Celu,
    Elu,
    Erf,
    Gelu,
    Selu,
    Sigmoid,
    Softplus,
    Softsign,
    Tanh,
)

SHAPE = (64,)
ACTIVATIONS = [
    Relu(SHAPE), LeakyRelu(SHAPE, alpha=0.1), LeakyRelu(SHAPE, alpha=-0.5), Sigmoid(SHAPE),
    Tanh(SHAPE), Softplus(SHAPE), Softsign(SHAPE), Elu(SHAPE, alpha=1.0), Elu(SHAPE, alpha=0.3),
    Selu(SHAPE, alpha=1.6732632, gamma=1.0507010), Celu(SHAPE, alpha=0.7), Gelu(SHAPE),
    Gelu(SHAPE, "tanh"), Erf(SHAPE), HardSigmoid(SHAPE, alpha=0.2, beta=0.5),
    HardSwish(SHAPE), Clip(SHAPE, lo=0.0, hi=6.0), PRelu(SHAPE, np.linspace(-0.5, 0.5, 64)),
]
IDS = [f"{type(a).__name__}{a.params or ''}" for a in ACTIVATIONS]


def random_intervals(seed: int, scale: float):
    rng = np.random.default_rng(seed)
    a = scale * rng.standard_normal((1, *SHAPE))
    b = a + scale * rng.random((1, *SHAPE)) * rng.choice([0.0, 0.01, 1.0, 5.0], (1, *SHAPE))
    return a, b


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
@settings(max_examples=40, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]))
def test_interval_image_contains_samples(act, seed, scale):
    lo, hi = random_intervals(seed, scale)
    ylo, yhi = act.interval((lo, hi))
    t = np.random.default_rng(seed).random((400, *SHAPE))
    x = np.concatenate([lo + t * (hi - lo), lo, hi])
    y = act.fn(x)
    assert np.all(y >= ylo) and np.all(y <= yhi)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
@settings(max_examples=40, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]))
def test_derivative_range_contains_difference_quotients(act, seed, scale):
    """Mean value theorem: every (σ(x) − σ(y))/(x − y) with x, y in [lo, hi] is a convex
    combination of derivatives there, so it must lie in [dmin, dmax]."""
    lo, hi = random_intervals(seed, scale)
    dmin, dmax = act.derivative_range(lo, hi)
    rng = np.random.default_rng(seed + 1)
    x = lo + rng.random((300, *SHAPE)) * (hi - lo)
    y = lo + rng.random((300, *SHAPE)) * (hi - lo)
    gap = x - y
    ok = np.abs(gap) > 1e-6 * (1 + np.abs(x))
    q = np.where(ok, (act.fn(x) - act.fn(y)) / np.where(ok, gap, 1.0), 0.5 * (dmin + dmax))
    # float64 evaluation of the quotient: error ≲ 1e-16·(|σ(x)| + |σ(y)|)/|x − y|.
    tol = 4e-16 * (np.abs(act.fn(x)) + np.abs(act.fn(y)) + 1) / np.where(ok, np.abs(gap), 1.0)
    assert np.all(q >= dmin - tol) and np.all(q <= dmax + tol)
    # and it is not vacuous: within the activation's global slope bound (SELU: γα ≈ 1.7581,
    # HardSwish: 1.5 at 3⁻, GELU: 1.1289, the others ≤ 1)
    bound = {Selu: 1.7582, HardSwish: 1.5 + 1e-9}.get(type(act), 1.13)
    assert np.all(act.lipschitz_on(lo, hi) <= bound)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
@settings(max_examples=30, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]))
def test_relaxation_lines_enclose_the_function(act, seed, scale):
    lo, hi = random_intervals(seed, scale)
    a_l, b_l, a_u, b_u = act.relaxation(lo, hi)
    t = np.random.default_rng(seed).random((400, *SHAPE))
    x = np.concatenate([lo + t * (hi - lo), lo, hi])
    y = act.fn(x)
    assert np.all(a_l * x + b_l <= y + 1e-12 * (1 + np.abs(y)))
    assert np.all(a_u * x + b_u >= y - 1e-12 * (1 + np.abs(y)))


def test_relu_derivative_range_at_the_kink_is_clarke():
    z = np.zeros((1, *SHAPE))
    dmin, dmax = Relu(SHAPE).derivative_range(z, z)
    assert np.all(dmin <= 0) and np.all(dmax >= 1)
    dmin, dmax = Relu(SHAPE).derivative_range(z - 2, z - 1)
    assert np.all(np.abs(dmin) < 1e-12) and np.all(np.abs(dmax) < 1e-12)  # stably off: 0


@pytest.mark.parametrize("act", [Sigmoid(SHAPE), Tanh(SHAPE), Gelu(SHAPE), Softplus(SHAPE),
                                 Elu(SHAPE, alpha=1.0), Erf(SHAPE)], ids=lambda a: type(a).__name__)
def test_values_and_derivatives_accurate_in_the_tails(act):
    """Against mpmath-free references: relative accuracy 1e-12 at |x| up to 30, where the
    textbook formulas (1 + erf, s(1 − s), 1 − tanh²) lose every digit."""
    import math

    x = np.linspace(-30, 30, 64)[None]
    ref_fn = {Sigmoid: lambda v: 1 / (1 + math.exp(-v)),
              Tanh: math.tanh,
              Gelu: lambda v: v * 0.5 * math.erfc(-v / math.sqrt(2)),
              Softplus: lambda v: math.log1p(math.exp(v)) if v < 30 else v + math.log1p(
                  math.exp(-v)),
              Elu: lambda v: v if v >= 0 else math.expm1(v),
              Erf: math.erf}[type(act)]
    ref_d = {Sigmoid: lambda v: math.exp(-abs(v)) / (1 + math.exp(-abs(v))) ** 2,
             Tanh: lambda v: 1 / math.cosh(v) ** 2,
             Gelu: lambda v: 0.5 * math.erfc(-v / math.sqrt(2))
             + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi),
             Softplus: lambda v: 1 / (1 + math.exp(-v)),
             Elu: lambda v: 1.0 if v >= 0 else math.exp(v),
             Erf: lambda v: 2 / math.sqrt(math.pi) * math.exp(-v * v)}[type(act)]
    f = np.vectorize(ref_fn)(x)
    d = np.vectorize(ref_d)(x)
    np.testing.assert_allclose(act.fn(x), f, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(act.derivative(x), d, rtol=1e-11, atol=1e-300)


# ------------------------------------------------------------------ smoothness (σ'') rules
SMOOTHNESS_ACTIVATIONS = ACTIVATIONS + [
    LeakyRelu(SHAPE, alpha=1.0), Selu(SHAPE, alpha=1.0, gamma=1.0507010),
    Celu(SHAPE, alpha=1.0), Celu(SHAPE, alpha=2.5), Elu(SHAPE, alpha=-0.4),
    HardSigmoid(SHAPE, alpha=0.0, beta=0.3), HardSigmoid(SHAPE, alpha=-0.3, beta=0.2),
    Clip(SHAPE, lo=-1.0, hi=np.inf), Clip(SHAPE, lo=2.0, hi=2.0),
    PRelu(SHAPE, np.where(np.arange(64) % 3 == 0, 1.0, np.linspace(-2, 2, 64))),
]
SMOOTHNESS_IDS = [f"{type(a).__name__}{a.params or ''}{getattr(a, 'approximate', '')}"
                  f"{'' if not isinstance(a, PRelu) else int(np.sum(a.slope_raw == 1))}"
                  for a in SMOOTHNESS_ACTIVATIONS]
SQRT3 = np.sqrt(3.0)
GELU_SUP_SLOPE = float(special.ndtr(np.sqrt(2)) + np.sqrt(2) * np.exp(-1) / np.sqrt(2 * np.pi))


def known_globals(act) -> tuple[float, float]:
    """(sup |σ'|, sup |σ''|) over ℝ, derived by hand (inf: σ' jumps)."""
    p = act.params
    if isinstance(act, Relu):
        return 1.0, np.inf
    if isinstance(act, LeakyRelu):
        return max(1.0, abs(p["alpha"])), (0.0 if p["alpha"] == 1 else np.inf)
    if isinstance(act, PRelu):
        return max(1.0, float(np.max(np.abs(act.slope_raw)))), np.inf
    if isinstance(act, Sigmoid):
        return 0.25, 1 / (6 * SQRT3)
    if isinstance(act, Tanh):
        return 1.0, 4 / (3 * SQRT3)
    if isinstance(act, Softplus):
        return 1.0, 0.25
    if isinstance(act, Softsign):
        return 1.0, 2.0
    if isinstance(act, Elu):
        return max(1.0, abs(p["alpha"])), (1.0 if p["alpha"] == 1 else np.inf)
    if isinstance(act, Selu):
        slope = p["gamma"] * max(1.0, p["alpha"])
        return slope, (p["gamma"] if p["alpha"] == 1 else np.inf)
    if isinstance(act, Celu):
        return 1.0, 1 / p["alpha"]
    if isinstance(act, Gelu):
        # tanh form: sup σ' = σ'(x*) at its inflection x* = 1.41850400879... (40-digit mpmath);
        # σ''(0) = √(2/π) for both forms (tanh form: S'(0)·2z'(0) = (1/4)·4√(2/π))
        return (GELU_SUP_SLOPE if act.approximate == "none" else 1.1289930686587718,
                np.sqrt(2 / np.pi))
    if isinstance(act, Erf):
        return 2 / np.sqrt(np.pi), np.sqrt(8 / np.pi) * np.exp(-0.5)
    if isinstance(act, HardSigmoid):
        return abs(p["alpha"]), (0.0 if p["alpha"] == 0 else np.inf)
    if isinstance(act, HardSwish):
        return 1.5, np.inf
    if isinstance(act, Clip):
        return (0.0, 0.0) if p["lo"] == p["hi"] else (1.0, np.inf)
    raise AssertionError(type(act))


def special_points(act) -> list[float]:
    return [0.0, *act.derivative_jumps(), *act.curvature_points()]


def smoothness_intervals(act, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """64 intervals of six kinds: ordinary (centre and width over 5 decades), around a jump or
    curvature point (possibly ending exactly on it), just beside one, one-sided infinite,
    huge (up to ±1e300), and the whole line."""
    rng = np.random.default_rng(seed)
    n = SHAPE[0]
    kind = rng.integers(0, 6, n)
    scale = 10.0 ** rng.uniform(-3, 1.7, n)
    c = rng.standard_normal(n) * scale
    w = scale * rng.choice([0.0, 1e-12, 1e-6, 0.01, 1.0, 5.0], n) * rng.random(n)
    lo, hi = c, c + w
    pts = np.array(special_points(act))
    p = rng.choice(pts, n)
    w1 = rng.choice([0.0, 1e-12, 1e-6, 1e-3, 0.5, 3.0], n) * rng.random(n)
    w2 = rng.choice([0.0, 1e-12, 1e-6, 1e-3, 0.5, 3.0], n) * rng.random(n)
    lo, hi = np.where(kind == 1, p - w1, lo), np.where(kind == 1, p + w2, hi)
    d = rng.choice([-1, 1], n) * rng.choice([1e-9, 1e-4, 0.1], n)
    lo = np.where(kind == 2, p + d, lo)
    hi = np.where(kind == 2, p + d + np.abs(d) * rng.random(n), hi)
    left = rng.random(n) < 0.5
    lo = np.where((kind == 3) & left, -np.inf, lo)
    hi = np.where((kind == 3) & ~left, np.inf, hi)
    huge = np.sort(rng.choice([-1, 1], (2, n)) * 10.0 ** rng.uniform(2, 300, (2, n)), axis=0)
    lo, hi = np.where(kind == 4, huge[0], lo), np.where(kind == 4, huge[1], hi)
    lo, hi = np.where(kind == 5, -np.inf, lo), np.where(kind == 5, np.inf, hi)
    return lo[None], hi[None]


def finite_window(lo, hi, r: float = 60.0):
    """The part of [lo, hi] within [−r, r] (or the end nearest 0 if none): where sampling is
    meaningful; the rest of a long interval is a tail."""
    a, b = np.maximum(lo, -r), np.minimum(hi, r)
    empty = a > b
    end = np.where(lo > r, lo, hi)
    return np.where(empty, end, a), np.where(empty, end, b)


def jump_located(act, lo, hi):
    """Per entry: [lo, hi] contains (to 4 ulp) a point where σ' really jumps, checked on σ'
    itself: σ'(p − ε) ≠ σ'(p + ε)."""
    found = np.zeros(np.broadcast_shapes(lo.shape, hi.shape), dtype=bool)
    strict = found.copy()
    for p in act.derivative_jumps():
        eps = 1e-7 * (1 + abs(p))
        jump = np.abs(act.derivative(np.full(found.shape, p + eps))
                      - act.derivative(np.full(found.shape, p - eps))) > 1e-9
        slack = 4 * np.finfo(np.float64).eps * abs(p)
        found |= jump & (lo <= p + slack) & (p - slack <= hi)
        strict |= jump & (lo <= p) & (p <= hi)
    return found, strict


@pytest.mark.parametrize("act", SMOOTHNESS_ACTIVATIONS, ids=SMOOTHNESS_IDS)
@settings(max_examples=25, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_smoothness_is_a_lipschitz_constant_of_the_derivative(act, seed):
    """(a) Where finite, L bounds |σ'(x) − σ'(y)|/|x − y| for pairs in the interval (exact
    derivatives, pairs from far apart down to 1e-7 of the width) and is ≥ the largest |σ''| on
    a dense grid — and within 1% (+1e-9) of it on bounded intervals; (b) where inf, the
    interval contains a genuine jump of σ', and every interval holding one is inf."""
    lo, hi = smoothness_intervals(act, seed)
    bound = act.smoothness_on(lo, hi)
    assert bound.shape == lo.shape and not np.any(np.isnan(bound)) and np.all(bound >= 0)
    found, strict = jump_located(act, lo, hi)
    assert np.all(found[np.isinf(bound)]), "inf without a jump of σ' in the interval"
    assert np.all(np.isinf(bound[strict])), "an interval holding a jump of σ' got a finite bound"
    fin = np.isfinite(bound)
    a, b = finite_window(lo, hi)
    rng = np.random.default_rng(seed)
    x = a + rng.random((300, *SHAPE)) * (b - a)
    step = rng.choice([-1, 1], x.shape) * (b - a) * 10.0 ** rng.uniform(-7, 0, x.shape)
    y = np.clip(x + step, a, b)
    dx, dy = act.derivative(x), act.derivative(y)
    # float error of σ' itself: relative, plus an absolute 1e-15 for the cancellation of
    # O(1) terms where σ' ≈ 0 (GELU's Φ(x) + xφ(x) near its minimum)
    slack = 1e-13 * (np.abs(dx) + np.abs(dy)) + 1e-15
    ok = np.abs(dx - dy) <= np.where(fin, bound, 0.0) * np.abs(x - y) * (1 + 1e-12) + slack
    assert np.all(ok | ~fin), "σ' moved faster than the smoothness bound"
    # dense grid of |σ''| (with the ends and the one-sided neighbours of the special points)
    t = np.linspace(0.0, 1.0, 2001)[:, None]
    extra = [a, b] + [np.clip(q, a, b) for p in special_points(act)
                      for q in (np.nextafter(p, -np.inf), p, np.nextafter(p, np.inf))]
    grid = np.concatenate([a + t * (b - a), *extra])
    top = np.max(np.abs(act.second_derivative(grid)), axis=0, keepdims=True)
    assert np.all((bound >= top)[fin]), "bound below |σ''| on the grid"
    bounded = fin & (a == lo) & (b == hi)
    tight = bound <= top * 1.01 + 1e-9
    assert np.all(tight[bounded]), (bound[bounded & ~tight], top[bounded & ~tight])


@pytest.mark.parametrize("act", SMOOTHNESS_ACTIVATIONS, ids=SMOOTHNESS_IDS)
def test_second_derivative_matches_finite_differences_of_the_derivative(act):
    x = np.random.default_rng(0).uniform(-8, 8, (400, *SHAPE))
    pts = special_points(act)
    away = np.all([np.abs(x - p) > 1e-3 for p in pts], axis=0)
    x = np.where(away, x, 0.5)  # 0.5 is no special point of any activation here
    h = 1e-6
    fd = (act.derivative(x + h) - act.derivative(x - h)) / (2 * h)
    d2 = act.second_derivative(x)
    np.testing.assert_allclose(np.broadcast_to(d2, fd.shape), fd, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("act", SMOOTHNESS_ACTIVATIONS, ids=SMOOTHNESS_IDS)
def test_global_constants_are_the_known_sups(act):
    """(c) sup |σ'| and sup |σ''| over ℝ equal the hand-derived constants (to 1e-6, and never
    below them) and dominate |σ'|, |σ''| and the difference quotients of σ' on a fine grid of
    [−50, 50]; sup |σ| and σ(0) too."""
    g = act.global_constants()
    lip, smooth = known_globals(act)
    for got, want in ((g["lipschitz"], lip), (g["smoothness"], smooth)):
        if np.isinf(want):
            assert np.isinf(got)
        else:
            assert want <= got <= want + 1e-6 * max(1.0, want), (got, want)
    x = np.linspace(-50, 50, 500_001)[:, None]
    d = act.derivative(x)
    assert g["lipschitz"] >= np.max(np.abs(d))
    assert g["bounded"] >= np.max(np.abs(act.fn(x)))
    assert g["value_at_zero"] == float(np.reshape(act.fn(np.zeros((1, *SHAPE))), -1)[0])
    if np.isfinite(g["smoothness"]):
        assert g["smoothness"] >= np.max(np.abs(act.second_derivative(x)))
        h = x[1, 0] - x[0, 0]
        assert g["smoothness"] * h * (1 + 1e-9) >= np.max(np.abs(np.diff(d, axis=0)))
    else:
        assert act.derivative_jumps()


@pytest.mark.parametrize("act", SMOOTHNESS_ACTIVATIONS, ids=SMOOTHNESS_IDS)
def test_derivative_jumps_are_real_and_complete(act):
    """Every declared jump is a discontinuity of σ', and on a grid of [−10, 10] (step 1e-3) σ'
    changes across every cell by at most that cell's smoothness bound times its width: no
    undeclared jump (any jump ≥ 1e-3 would break this)."""
    for p in act.derivative_jumps():
        eps = 1e-7 * (1 + abs(p))
        gap = np.abs(act.derivative(np.full((1, *SHAPE), p + eps))
                     - act.derivative(np.full((1, *SHAPE), p - eps)))
        assert np.max(gap) > 1e-3
    x = np.linspace(-10, 10, 20001)[:, None]  # broadcasts against PRelu's per-entry slopes
    d = act.derivative(x)
    bound = act.smoothness_on(x[:-1], x[1:])
    change = np.abs(np.diff(d, axis=0))
    ok = change <= bound * (x[1:] - x[:-1]) * (1 + 1e-12) + 1e-13 * (np.abs(d[1:]) + 1e-300)
    assert np.all(ok)


def test_smoothness_zero_on_linear_pieces_and_inf_across_kinks():
    """(d) A ReLU stably off or on has smoothness exactly 0; one whose interval reaches its kink
    has none; likewise the pieces of LeakyReLU, Clip and HardSwish (1/3, just above)."""
    relu = Relu(SHAPE)
    z = np.zeros((1, *SHAPE))
    assert np.all(relu.smoothness_on(z - 2, z - 1) == 0)
    assert np.all(relu.smoothness_on(z + 1e-300, z + 1e300) == 0)
    assert np.all(relu.smoothness_on(z - np.inf, z - 5e-324) == 0)
    for lo, hi in ((-1, 1), (0, 1), (-1, 0), (0, 0), (-np.inf, np.inf)):
        assert np.all(np.isinf(relu.smoothness_on(z + lo, z + hi)))
    assert np.all(LeakyRelu(SHAPE, alpha=0.1).smoothness_on(z + 1, z + 2) == 0)
    clip = Clip(SHAPE, lo=0.0, hi=6.0)
    assert np.all(clip.smoothness_on(z + 1, z + 5) == 0)
    assert np.all(np.isinf(clip.smoothness_on(z + 5, z + 7)))
    hs = HardSwish(SHAPE).smoothness_on(z - 2.9, z + 2.9)
    assert np.all((1 / 3 < hs) & (hs <= 1 / 3 * (1 + 1e-11)))
    assert np.all(HardSwish(SHAPE).smoothness_on(z + 3.5, z + 9) == 0)


def test_celu_negative_alpha_curvature_is_unbounded_towards_minus_infinity():
    """CELU with α < 0: σ'' = e^(x/α)/α grows as x → −∞ (no jump, yet no global constant)."""
    act = Celu(SHAPE, alpha=-0.5)
    z = np.zeros((1, *SHAPE))
    assert not act.derivative_jumps()
    local = act.smoothness_on(z - 2, z - 1)
    assert np.all((2 * np.exp(4) <= local) & (local <= 2 * np.exp(4) * (1 + 1e-11)))
    assert np.all(np.isinf(act.smoothness_on(z - np.inf, z)))


def test_tanh_gelu_curvature_brackets_hold_every_sign_change_of_the_third_derivative():
    """The certified brackets of the zeros of the tanh-GELU's third derivative are tiny, hold
    its zeros (0 and ±2.01348072462425793, from 40-digit mpmath), and σ⁽³⁾ = sign(x)·S'(z)·Q(|x|)
    keeps one sign between and beyond them (checked on Q, which does not underflow as S' does);
    each bracket's bound U is ≥ |σ''| across the bracket, and tight."""
    from boundprop.ops import smooth as mod

    brackets = mod._gelu_tanh_curvature_brackets()
    assert len(brackets) == 3 and all(b - a < 1e-9 for a, b, _ in brackets)
    for a, b, _ in brackets:
        assert any(a <= r <= b for r in (-2.013480724624258, 0.0, 2.013480724624258))
    x = np.linspace(-100, 100, 2_000_001)
    pos, neg = mod._gelu_tanh_q_terms(np.abs(x))
    inside = np.any([(x >= a) & (x <= b) for a, b, _ in brackets], axis=0)
    s = (np.sign(x) * np.sign(pos - neg))[~inside]
    assert np.all(s != 0) and len(np.nonzero(s[1:] != s[:-1])[0]) == 3
    for a, b, u in brackets:
        top = np.max(np.abs(mod._gelu_tanh_second(np.linspace(a, b, 101))))
        assert top <= u <= top * (1 + 1e-11)
