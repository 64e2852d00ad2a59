"""Per-activation rules attacked directly: interval images, derivative ranges, relaxations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boundprop.ops.activation import (
    Celu,
    Clip,
    Elu,
    Erf,
    Gelu,
    HardSigmoid,
    HardSwish,
    LeakyRelu,
    PRelu,
    Relu,
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
