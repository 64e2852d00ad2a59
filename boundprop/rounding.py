"""Outward rounding for float64 enclosures.

IEEE-754 round-to-nearest makes each elementary operation exact up to half an ulp of its result,
so stepping the computed result one ulp away (``np.nextafter``) bounds the exact result of that
*single* operation. For a dot product or sum of n terms computed in any order (BLAS may reorder
or use FMA), the classical bound |fl(Σ a_i b_i) − Σ a_i b_i| ≤ γ_n Σ |a_i b_i| with
γ_n = n·u / (1 − n·u), u = 2⁻⁵³ holds (Higham, *Accuracy and Stability of Numerical Algorithms*,
§3.1); ``gamma`` returns it, doubled to also absorb the rounding of the error estimate itself.
"""

from __future__ import annotations

import numpy as np

UNIT_ROUNDOFF = 2.0**-53
# Relative accuracy we assume of library elementary functions (exp, log1p, tanh, erf, expit…):
# glibc and SciPy document errors of a few ulp; this is ~450 ulp, and is applied as a margin.
ELEMENTARY_RELATIVE_ERROR = 1e-13
TINY = np.finfo(np.float64).tiny  # covers underflow to subnormals in the margin terms


def round_down(x: np.ndarray) -> np.ndarray:
    """The float below the computed result of one operation: ≤ the exact result."""
    return np.nextafter(x, -np.inf)


def round_up(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, np.inf)


def gamma(n: int) -> float:
    """A bound on the relative rounding error of an n-term float64 dot product (doubled γ_n)."""
    nu = (n + 2) * UNIT_ROUNDOFF
    if nu >= 0.01:
        raise ValueError(f"a dot product of {n} terms is too long for the rounding bound")
    return 2.0 * nu / (1.0 - nu)


def widen(lo: np.ndarray, hi: np.ndarray, error: np.ndarray | float) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """[lo − error, hi + error], rounded outward."""
    return round_down(lo - error), round_up(hi + error)


def widen_elementary(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widen values computed by library elementary functions by their error margin."""
    return widen(lo, hi, ELEMENTARY_RELATIVE_ERROR * np.maximum(np.abs(lo), np.abs(hi)) + TINY)


# ---------------------------------------------------------------------------------------------
# A model of float32 execution (what onnxruntime does with float32 models), for bounds that must
# also contain the float32 outputs: each node's float32 result differs from the exact result on
# the same (float32) inputs by at most its ``float32_error``. Dot products and sums follow the
# γ_n bound with u = 2⁻²⁴; library elementary functions (MLAS uses polynomial approximations)
# are assumed accurate to FLOAT32_ELEMENTARY_RELATIVE_ERROR (64 ulp), plus FLOAT32_ABSOLUTE
# for results near zero. This is a stated model of the runtime, not a proof about its code.
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
FLOAT32_ELEMENTARY_RELATIVE_ERROR = 2.0**-18
FLOAT32_ABSOLUTE = 2.0**-120
# Past this magnitude a float32 value (or an intermediate a kernel forms on the way to it) may
# overflow to ±inf, and then anything downstream may be inf or NaN: no finite enclosure holds.
# A quarter of the largest float32 leaves room for the small constant factors kernels apply.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_SAFE_MAX = FLOAT32_MAX / 4


def gamma32(n: int) -> float:
    """Doubled γ_n for float32 accumulation of n terms."""
    nu = (n + 2) * FLOAT32_UNIT_ROUNDOFF
    if nu >= 0.5:
        raise ValueError(f"a float32 sum of {n} terms is too long for the rounding bound")
    return 2.0 * nu / (1.0 - nu)


def float32_input_box(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box after rounding its points to float32 (inputs are fed to the runtime as float32):
    float32 rounding is monotone, so the rounded endpoints' neighbours enclose it."""
    lo32 = np.nextafter(lo.astype(np.float32), np.float32(-np.inf)).astype(np.float64)
    hi32 = np.nextafter(hi.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    return np.minimum(lo32, lo), np.maximum(hi32, hi)
