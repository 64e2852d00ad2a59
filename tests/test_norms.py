"""Certified operator norms: never below the true norm, and close to it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boundprop.norms import (
    l1_norm_upper,
    linf_norm_upper,
    spectral_norm_lower,
    spectral_norm_upper,
)


def matrices(seed: int, m: int, n: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((m, n))
    if kind == "flat":  # all singular values equal: the hardest case for Gram iteration
        q1, _ = np.linalg.qr(rng.standard_normal((m, m)))
        q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
        k = min(m, n)
        return q1[:, :k] @ q2[:k, :]
    if kind == "rank1":
        return np.outer(rng.standard_normal(m), rng.standard_normal(n))
    if kind == "scaled":
        return rng.standard_normal((m, n)) * 10.0 ** rng.integers(-30, 30)
    # ill-conditioned: singular values spread over 12 decades
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    k = min(m, n)
    return u[:, :k] @ np.diag(np.logspace(0, -12, k)) @ v[:k, :]


@settings(max_examples=150, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 40), n=st.integers(1, 40),
       kind=st.sampled_from(["gaussian", "flat", "rank1", "scaled", "ill"]))
def test_spectral_upper_bound_is_sound_and_tight(seed, m, n, kind):
    w = matrices(seed, m, n, kind)
    sigma = np.linalg.svd(w, compute_uv=False)[0]  # backward stable: relative error ~1e-15
    up = spectral_norm_upper(w)
    assert up >= sigma * (1 - 1e-13), (up, sigma)
    assert up >= spectral_norm_lower(w) * (1 - 1e-13)
    # Gram iteration with 6 steps: within 2^(1/64) − 1 ≈ 1.1 % even for a flat spectrum
    # (‖·‖_F ≤ √k ‖·‖₂ with k ≤ 40 → 40^(1/64) ≈ 1.059 worst case).
    assert up <= sigma * 1.06 + 1e-300


def test_spectral_bound_of_identity_and_zero():
    assert spectral_norm_upper(np.zeros((3, 4))) == 0.0
    up = spectral_norm_upper(np.eye(50))
    assert 1.0 <= up <= 1.07


@settings(max_examples=100, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 30), n=st.integers(1, 30))
def test_linf_l1_norms_are_sound_and_exact(seed, m, n):
    w = np.random.default_rng(seed).standard_normal((m, n))
    inf_true = np.max(np.sum(np.abs(w), axis=1))
    one_true = np.max(np.sum(np.abs(w), axis=0))
    assert inf_true <= linf_norm_upper(w) <= inf_true * (1 + 1e-12)
    assert one_true <= l1_norm_upper(w) <= one_true * (1 + 1e-12)
    # The operator norm is attained at a sign vector (ℓ∞) / a basis vector (ℓ1).
    x = np.sign(w[np.argmax(np.sum(np.abs(w), axis=1))])
    assert np.max(np.abs(w @ x)) <= linf_norm_upper(w)


def test_non_finite_matrix_is_refused():
    with pytest.raises(ValueError, match="non-finite"):
        spectral_norm_upper(np.array([[1.0, np.nan]]))
