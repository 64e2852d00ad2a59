"""Jacobian norms at points: the empirical side of a local Lipschitz bound.

‖J(x)‖ at a point x of the set is a lower bound of sup_{x∈S} ‖J(x)‖ (the local Lipschitz
constant on a convex S, where f is differentiable at x). J is the float64 IR's exact
reverse-mode Jacobian (each op's ``vjp``); its rounding is covered by the factor
:data:`LOWER_FACTOR`.
"""

from __future__ import annotations

import numpy as np

from boundprop.audit.function import reverse_pass
from boundprop.ir import Network

# Relative allowance for the float64 evaluation of J and of its norm (a lower bound is
# reported slightly below the computed value).
LOWER_FACTOR = 1 - 1e-9


def jacobians(net: Network, xs: np.ndarray) -> np.ndarray:
    """Exact Jacobians (S, K, n) of the flattened output w.r.t. the flattened input at the S
    points ``xs`` (S, *input shape)."""
    s = xs.shape[0]
    k = int(np.prod(net.output_shape))
    vals = net.evaluate_all(xs)
    rows = np.tile(np.eye(k), (s, 1)).reshape(s * k, *net.output_shape)
    got, _ = reverse_pass(net, vals, rows, s, set())
    return np.asarray(got).reshape(s, k, -1)


def operator_norms(jac: np.ndarray, norm: str) -> np.ndarray:
    """‖J_s‖ for each of the S matrices (S, K, n): ℓ∞ → max row ℓ1 sum, ℓ2 → largest singular
    value."""
    if norm == "inf":
        return np.abs(jac).sum(axis=2).max(axis=1)
    return np.linalg.norm(jac, ord=2, axis=(1, 2))


def best_point(net: Network, xs: np.ndarray, norm: str, chunk: int = 64
               ) -> tuple[float, np.ndarray | None]:
    """The largest ‖J(x)‖ over the points ``xs`` (times LOWER_FACTOR), and that point."""
    best, arg = 0.0, None
    for a in range(0, xs.shape[0], chunk):
        norms = operator_norms(jacobians(net, xs[a:a + chunk]), norm)
        i = int(np.argmax(norms))
        if norms[i] * LOWER_FACTOR > best:
            best, arg = float(norms[i] * LOWER_FACTOR), xs[a + i]
    return best, arg
