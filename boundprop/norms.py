"""Certified upper bounds on operator norms of dense matrices.

ℓ∞ (max row |·|-sum) and ℓ1 (max column |·|-sum) are computed exactly up to the γ_n rounding
bound, applied upward. ℓ2 (the spectral norm σ₁) uses Gram iteration (Delattre et al., ICML 2023)
with a floating-point error recursion that makes the bound rigorous:

For the matrix A_t held in floats, B = fl(A_tᵀA_t) satisfies ‖B − A_tᵀA_t‖₂ ≤ ‖·‖_F ≤
γ_n ‖A_t‖_F² (n = inner dimension; any summation order). Hence
    σ₁(A_t)² = ‖A_tᵀA_t‖₂ ≤ ‖B‖₂ + γ_n ‖A_t‖_F²,
and with A_{t+1} = B / s_{t+1} (s a power of two: exact),
    σ₁(A_t) ≤ sqrt(s_{t+1} σ₁(A_{t+1}) + γ_n ‖A_t‖_F²).
At the last iterate σ₁(A_T) ≤ ‖A_T‖_F. Unwinding gives σ₁(W) ≤ s₀ u₀, each step rounded up.
Power iteration gives only a *lower* bound and is used here for nothing but tightness reports.

Convolutions (their ℓ2 norm at the real input size, certified): ``boundprop.conv_norms``.
"""

from __future__ import annotations

import math

import numpy as np

from boundprop.rounding import gamma, round_up

GRAM_STEPS = 6


def _pow2_scale(x: float) -> float:
    """A power of two near x (scaling by it is exact)."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    return 2.0 ** math.floor(math.log2(x))


def _frobenius_upper(a: np.ndarray) -> float:
    """‖a‖_F rounded up (sum of squares: γ_{n+1}-bounded)."""
    s = float(np.sum(a * a))
    return float(round_up(math.sqrt(s * (1 + gamma(a.size + 1))) * (1 + 2.0**-52)))


def linf_norm_upper(w: np.ndarray) -> float:
    """‖W‖_∞ = max_i Σ_j |w_ij|, rounded up."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    return float(round_up(np.abs(w).sum(axis=1).max() * (1 + gamma(w.shape[1]))))


def l1_norm_upper(w: np.ndarray) -> float:
    """‖W‖_1 = max_j Σ_i |w_ij|, rounded up."""
    return linf_norm_upper(np.atleast_2d(np.asarray(w, dtype=np.float64)).T)


def spectral_norm_upper(w: np.ndarray, steps: int = GRAM_STEPS) -> float:
    """A certified upper bound on σ₁(W) by Gram iteration with rigorous rounding."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    if not np.all(np.isfinite(w)):
        raise ValueError("matrix has non-finite entries")
    if w.shape[0] < w.shape[1]:
        w = w.T  # σ₁(W) = σ₁(Wᵀ); iterate on the smaller Gram matrix
    if not np.any(w):
        return 0.0
    s0 = _pow2_scale(float(np.abs(w).max()))
    a = w / s0
    scales, frob, inner = [], [], []
    for _ in range(steps):
        fa = _frobenius_upper(a)
        b = a.T @ a
        s = _pow2_scale(float(np.abs(b).max()))
        scales.append(s)
        frob.append(fa)
        inner.append(a.shape[0])
        a = b / s
        if not np.any(a):
            break
    u = _frobenius_upper(a)
    for s, fa, n in zip(reversed(scales), reversed(frob), reversed(inner)):
        u = math.sqrt(round_up(s * u + gamma(n) * fa * fa) * (1 + 2.0**-52))
        u = float(round_up(u * (1 + 2.0**-52)))
    return float(round_up(s0 * u))


def spectral_norm_lower(w: np.ndarray, iterations: int = 100, seed: int = 0) -> float:
    """Power iteration: a *lower* bound estimate of σ₁(W) (for tightness reports only)."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    v = np.random.default_rng(seed).standard_normal(w.shape[1])
    sigma = 0.0
    for _ in range(iterations):
        u = w @ v
        nu = np.linalg.norm(u)
        if nu == 0:
            return 0.0
        v = w.T @ (u / nu)
        sigma = float(np.linalg.norm(v))
        v /= sigma
    return sigma
