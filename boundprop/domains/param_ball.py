"""The parameter-ball interval domain: enclosures of every node when the input ranges over a
set and every parametric layer's (W, b) over a Frobenius ball around its current value."""

from __future__ import annotations

import numpy as np

from boundprop.domains.walker import Box, input_box, walk
from boundprop.ir import Network, Node
from boundprop.rounding import round_up, widen
from boundprop.sets import InputSet


def param_ball_intervals(net: Network, s: InputSet, rho: float) -> list[Box]:
    """Interval enclosure of every node over x ∈ s and every dense/conv layer's (W, b) in the
    ball ‖(ΔW, Δb)‖_F ≤ ρ around its current value: each output entry of such a layer moves by
    at most |ΔW_i·patch + Δb_i| ≤ ρ·sqrt(‖patch‖² + 1) ≤ ρ·sqrt(max_b sup‖u_b‖₂² + 1)."""

    def transfer(k: int, node: Node, boxes: list[Box]) -> Box:
        lo, hi = node.op.interval(*boxes)
        if node.op.has("parametric") and rho > 0:
            ulo, uhi = boxes[0]
            mag = np.maximum(np.abs(ulo), np.abs(uhi))[0]
            per = np.sqrt((mag.reshape(mag.shape[0], -1) ** 2).sum(axis=1)).max() \
                if mag.ndim > 1 else np.sqrt((mag**2).sum())
            lo, hi = widen(lo, hi, round_up(rho * np.sqrt(per**2 * (1 + 1e-12) + 1.0)
                                            * (1 + 1e-12)))
        return lo, hi

    return walk(net, [input_box(s, "real")], transfer)
