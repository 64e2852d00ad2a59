"""Jacobian norms at points: the empirical side of a local Lipschitz bound.

‖J(x)‖ at a point x of the set is a lower bound of sup_{x∈S} ‖J(x)‖ (the local Lipschitz
constant on a convex S, where f is differentiable at x). J is the float64 IR's exact
reverse-mode Jacobian (:func:`boundprop.audit.jacobian_search.exact_jacobians`); its rounding
is covered by the factor :data:`LOWER_FACTOR`.
"""

from __future__ import annotations

import numpy as np

from boundprop.audit.jacobian_search import exact_jacobians, jacobian_norms
from boundprop.ir import Network

# Relative allowance for the float64 evaluation of J and of its norm (a lower bound is
# reported slightly below the computed value).
LOWER_FACTOR = 1 - 1e-9


def best_point(net: Network, xs: np.ndarray, norm: str) -> tuple[float, np.ndarray | None]:
    """The largest ‖J(x)‖ over the points ``xs`` (S, *input shape), times LOWER_FACTOR, and
    that point."""
    norms, _ = jacobian_norms(exact_jacobians(net, xs.reshape(xs.shape[0], -1)), norm)
    i = int(np.argmax(norms))
    return float(norms[i] * LOWER_FACTOR), xs[i]
