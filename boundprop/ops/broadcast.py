"""Broadcasting helpers shared by the primitives: a node's constants are shaped to broadcast
against a batch of samples ``(S, *shape)``, and the adjoint of a broadcast sums it back."""

from __future__ import annotations

import numpy as np

Shape = tuple[int, ...]


def expand_to_rank(a: np.ndarray, rank: int) -> np.ndarray:
    """Prepend unit axes so that ``a`` has ``rank`` axes (ONNX/numpy broadcasting alignment)."""
    return a.reshape((1,) * (rank - a.ndim) + a.shape)


def lift(a: np.ndarray, rank: int) -> np.ndarray:
    """A constant of a node of rank ``rank``, shaped to broadcast against ``(S, *shape)``."""
    return expand_to_rank(np.asarray(a), rank)[None]


def sum_to_shape(y: np.ndarray, shape: Shape) -> np.ndarray:
    """Adjoint of broadcasting ``(K, *shape)`` to ``y``'s shape: sum over the broadcast axes."""
    extra = y.ndim - 1 - len(shape)
    if extra:
        y = y.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i + 1 for i, d in enumerate(shape) if d == 1 and y.shape[i + 1] != 1)
    if axes:
        y = y.sum(axis=axes, keepdims=True)
    return y


def lift_input(x: np.ndarray, rank: int) -> np.ndarray:
    """Insert unit axes after the sample axis so that a sample batch has ``rank`` node axes."""
    missing = rank - (x.ndim - 1)
    if missing <= 0:
        return x
    return x.reshape((x.shape[0],) + (1,) * missing + x.shape[1:])
