"""The interval domain in numpy (IBP): each node's enclosure is its op's ``interval`` rule
applied to its inputs' enclosures, in float64 with outward rounding.

On an ℓ2 ball the leading entry selections and the first affine node are bounded through the
ball itself rather than its bounding box (:func:`l2_first_affine`).
"""

from __future__ import annotations

import numpy as np

from boundprop.domains.walker import Box, input_box, walk
from boundprop.ir import Network, Node
from boundprop.ops.base import AffinePrimitive
from boundprop.rounding import gamma, round_down, round_up, widen
from boundprop.sets import InputSet, L2Ball


def l2_first_affine(net: Network, ball: L2Ball, bounds: list[Box]) -> int:
    """Exact image bounds of an ℓ2 ball through the leading entry selections (each output entry
    a copy of an input entry: the image is the ball around the moved centre) and the first
    affine node with row norms: output_i ∈ A(c)_i ± r‖row_i(A)‖₂ (instead of through the
    bounding box). Appends their enclosures to ``bounds``; returns the index of the last node
    handled this way (0 if none)."""
    k = 1
    c = ball.center[None]
    while k < len(net.nodes):
        node = net.nodes[k]
        if node.inputs != (k - 1,) or not isinstance(node.op, AffinePrimitive):
            return k - 1
        if node.op.has("entry_selection"):
            c = node.op.evaluate(c)
            bounds.append((round_down(c[0] - ball.radius), round_up(c[0] + ball.radius)))
            k += 1
            continue
        op = node.op
        if not op.has("row_norms"):
            return k - 1
        yc = op.evaluate(c)
        row_norm = np.sqrt(op.sq_linear(np.ones_like(c)) * (1 + gamma(op.fan_in + 2)))
        mag = op.abs_linear(np.abs(c)) + (0 if op.offset is None else np.abs(op.offset))
        rad = round_up(ball.radius * row_norm * (1 + 4 * 2.0**-53)) + gamma(op.fan_in + 2) * mag
        lo, hi = widen(yc, yc, rad)
        bounds.append((lo[0], hi[0]))
        return k
    return k - 1


def _interval_rule(k: int, node: Node, boxes: list[Box]) -> Box:
    """The node's own interval rule."""
    return node.op.interval(*boxes)


def interval_pass(net: Network, s: InputSet, execution: str) -> list[Box]:
    """Interval enclosure of every node over ``s`` (already fitted to the input shape), in
    order of ``net.nodes``; with ``execution="float32"`` each also contains the float32
    evaluation (see :func:`boundprop.domains.walker.walk`)."""
    bounds: list[Box] = [input_box(s, execution)]
    if isinstance(s, L2Ball) and execution == "real":
        l2_first_affine(net, s, bounds)
    return walk(net, bounds, _interval_rule, float32=execution == "float32")

