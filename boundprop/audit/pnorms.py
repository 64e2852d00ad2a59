"""p-norms (p ∈ {1, 2, inf}, given as the strings "1", "2", "inf") of vectors and matrices."""

from __future__ import annotations

import math

import numpy as np


def vector_norm(a, p: str):
    """‖a‖_p over the last axis."""
    if p == "inf":
        return np.abs(a).max(axis=-1, initial=0.0)
    if p == "1":
        return np.abs(a).sum(axis=-1)
    return np.sqrt((a * a).sum(axis=-1))


def entries_factor(n: int, p: str) -> float:
    """‖e‖_p for a vector of n entries each at most 1 in absolute value."""
    return 1.0 if p == "inf" else (float(n) if p == "1" else math.sqrt(n))


def operator_norm_direction(J, p: str, with_u: bool = False):
    """(‖J‖_{p→p}, a unit input direction v nearly attaining it[, the output functional u with
    uᵀJv = ‖J‖]) of a (K, d) matrix: the largest absolute row sum (p = inf), column sum
    (p = 1), or the largest singular value and its singular vectors (p = 2)."""
    K, d = J.shape
    if J.size == 0:
        s, v, u = 0.0, np.zeros(d), np.zeros(K)
    elif p == "inf":
        sums = np.abs(J).sum(axis=1)
        i = int(np.argmax(sums))
        s, v, u = float(sums[i]), np.sign(J[i]), np.zeros(K)
        u[i] = 1.0
    elif p == "1":
        sums = np.abs(J).sum(axis=0)
        j = int(np.argmax(sums))
        v = np.zeros(d)
        v[j] = 1.0
        s, u = float(sums[j]), np.sign(J[:, j])
    else:
        if K <= d:
            w, uu = np.linalg.eigh(J @ J.T)
            v = J.T @ uu[:, -1]
        else:
            w, vv = np.linalg.eigh(J.T @ J)
            v = vv[:, -1]
        s = float(np.sqrt(max(w[-1], 0.0)))
        n = np.linalg.norm(v)
        v = v / n if n > 0 else v
        u = J @ v
        n = np.linalg.norm(u)
        u = u / n if n > 0 else u
    return (s, v, u) if with_u else (s, v)


def operator_norm(J, p: str) -> float:
    """‖J‖_{p→p} of a (K, d) matrix."""
    return operator_norm_direction(J, p)[0]
