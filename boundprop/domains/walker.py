"""The shared topological walker of the interval-valued domains.

Every forward domain (numpy intervals, back-substitution, the parameter ball) visits
``net.nodes`` in order and maps its inputs' enclosures to its own. :func:`walk` is that loop,
written once: it hands each node its inputs' boxes with the leading sample axis, applies the
domain's per-node ``transfer``, models float32 execution when asked (each enclosure widened by
the node's ``float32_error``; a node whose float32 evaluation may overflow, and everything
downstream of it, gets (−∞, ∞)), and replaces NaN endpoints by ∓∞ (:func:`sanitize`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from boundprop.errors import BoundpropError
from boundprop.ir import Network, Node
from boundprop.ops.base import box_max_abs
from boundprop.rounding import FLOAT32_SAFE_MAX, float32_input_box, widen
from boundprop.sets import InputSet

Box = tuple[np.ndarray, np.ndarray]
# (index, node, input boxes with the sample axis) -> the node's enclosure with the sample axis
Transfer = Callable[[int, Node, list[Box]], Box]

EXECUTIONS = ("real", "float32")


def check_execution(execution: str, net: Network | None = None) -> None:
    """Refuse an unknown execution, and float32 execution of a model that computes in
    float16/bfloat16 (whose rounding the float32 model does not bound)."""
    if execution not in EXECUTIONS:
        raise BoundpropError(f"unknown execution '{execution}'; use 'real' (the real-arithmetic "
                             "function) or 'float32' (also float32 evaluation, as onnxruntime)")
    if execution == "float32" and net is not None and net.low_precision:
        raise BoundpropError(
            f"{net.source or 'network'}: {net.low_precision}, so onnxruntime rounds to that "
            "format, which execution 'float32' does not model; use execution 'real' (casts to "
            "float16 that return to float32 are modelled)")


def input_box(s: InputSet, execution: str) -> Box:
    """The bounding box analyses start from (float32 mode: after rounding inputs to float32)."""
    if execution == "float32":
        return float32_input_box(s.lower, s.upper)
    return s.lower, s.upper


def sanitize(lo: np.ndarray, hi: np.ndarray) -> Box:
    """A NaN endpoint (∞ − ∞ on unbounded enclosures) means "no information": ∓∞."""
    if np.isnan(lo).any() or np.isnan(hi).any():
        lo, hi = np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi)
    return lo, hi


def unbounded(shape: tuple[int, ...]) -> Box:
    """(−∞, ∞) everywhere: no enclosure (e.g. float32 evaluation may overflow)."""
    return np.full(shape, -np.inf), np.full(shape, np.inf)


def input_boxes(bounds: list[Box], node: Node) -> list[Box]:
    """The enclosures of ``node``'s inputs, each with a leading sample axis of length 1."""
    return [(bounds[i][0][None], bounds[i][1][None]) for i in node.inputs]


def walk(net: Network, bounds: list[Box], transfer: Transfer, *, float32: bool = False,
         settled: Callable[[int], Box | None] | None = None,
         refine: Callable[[int], None] | None = None) -> list[Box]:
    """Extend ``bounds`` (the enclosures of nodes 0..len(bounds)−1, without the sample axis)
    to every node of ``net``, in topological order, and return it.

    Node k's enclosure is ``transfer(k, node, boxes)``, then, with ``float32``, widened by
    the node's float32 rounding-error bound: [lo − δ_k, hi + δ_k] (outward rounded); if the
    float32 evaluation may overflow, node k and every node downstream get (−∞, ∞) (so does
    every node when the first enclosure exceeds FLOAT32_SAFE_MAX). ``settled(k)``: an
    enclosure known beforehand (used as is, no transfer, no refinement), or None.
    ``refine(k)``: called once node k's enclosure is appended; it may replace ``bounds[k]``
    by a tighter enclosure.
    """
    overflow: set[int] = set()
    if float32 and len(bounds) == 1 and not box_max_abs(bounds[0]) <= FLOAT32_SAFE_MAX:
        overflow.add(0)
        bounds[0] = unbounded(net.input_shape)
    for k, node in enumerate(net.nodes[len(bounds):], start=len(bounds)):
        known = None if settled is None else settled(k)
        if known is not None:
            bounds.append(known)
            continue
        if overflow.intersection(node.inputs):
            overflow.add(k)
            bounds.append(unbounded(node.shape))
            continue
        boxes = input_boxes(bounds, node)
        lo, hi = transfer(k, node, boxes)
        if float32:
            err = node.op.float32_error(boxes, (lo, hi))
            lo, hi = widen(lo, hi, err)
            if not node.op.float32_overflow_free(boxes, (lo, hi), err):
                overflow.add(k)
                lo, hi = unbounded((1, *node.shape))
        bounds.append(sanitize(lo[0], hi[0]))
        if refine is not None:
            refine(k)
    return bounds
