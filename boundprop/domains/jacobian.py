"""The Jacobian-enclosure domain: an interval matrix containing every Clarke Jacobian of the
network on the set, by a backward pass of each op's ``jacobian_backward`` rule, and its
certified p-norm (the ``enclosure`` method of the Lipschitz constant).

:func:`backward_enclosures` is the pass itself, from any node and any seed rows, keeping the
enclosures of chosen intermediate nodes on the way (the curvature method of the smoothness
constant, :mod:`boundprop.domains.curvature`, uses it).

For ℓ∞ and ℓ2 the enclosure method also takes the tangent back-substitution of
:mod:`boundprop.domains.jacobian_linear` (the same rule, with the gates' radii turned into
offsets on tangent magnitudes) where it is cheap (:data:`LINEAR_MAGNITUDE_BUDGET`), and
reports the smaller bound."""

from __future__ import annotations

import numpy as np

from boundprop.domains.jacobian_linear import (
    JacobianBounds,
    JacobianRuleMissing,
    domain_norm_upper,
)
from boundprop.domains.walker import Box, input_boxes, unbounded
from boundprop.ir import Network
from boundprop.norms import spectral_norm_upper
from boundprop.rounding import gamma, round_up

# Work limit of the enclosure method: rows × total entries of the nodes it passes through.
ENCLOSURE_BUDGET = 60_000_000
# Work limit (entries × path entries) of the tangent magnitudes inside the enclosure method
# (MLPs; convolutional nodes keep the interval radius: their magnitudes cost seconds).
LINEAR_MAGNITUDE_BUDGET = 2**22

Rows = tuple[np.ndarray, np.ndarray]  # (centre, radius), shape (K, *node shape)


def backward_enclosures(net: Network, boxes: list[Box], start: int, seed: Rows,
                        keep: frozenset[int] = frozenset()
                        ) -> tuple[dict[int, Rows] | None, str | None]:
    """Interval rows R·∂(node ``start``)/∂(node i) for the rows ``seed`` = (centre, radius)
    over node ``start``'s entries: the enclosure of every Clarke product on the enclosures
    ``boxes``, propagated backwards by each op's ``jacobian_backward``. Returns ({i: rows} for
    the input node 0 and every node of ``keep`` that ``start`` depends on, each complete: all
    its consumers' parts summed, None) or (None, why not: an op without the rule)."""
    acc: dict[int, Rows] = {start: seed}
    out: dict[int, Rows] = {}
    for i in range(start, 0, -1):
        if i not in acc:
            continue
        node = net.nodes[i]
        c, r = acc.pop(i)
        if i in keep:
            out[i] = (c, r)
        with np.errstate(invalid="ignore", over="ignore"):
            parts = node.op.jacobian_backward(c, r, input_boxes(boxes, node))
        if parts is None:
            return None, f"enclosure not available: no Jacobian rule for {node.op.kind}"
        for j, (cj, rj) in zip(node.inputs, parts):
            if j in acc:
                c0, r0 = acc[j]
                acc[j] = (c0 + cj, round_up(r0 + rj + gamma(2) * np.abs(c0 + cj)))
            else:
                acc[j] = (cj, rj)
    if 0 in acc:
        out[0] = acc[0]
    return out, None


def interval_norm2_upper(c: np.ndarray, r: np.ndarray) -> float:
    """sup ‖J‖₂ over the interval matrix J ∈ [c − r, c + r] (2-D): the smaller of ‖ |c| + r ‖₂
    (entrywise domination) and ‖c‖₂ + ‖r‖₂ (the latter keeps the centre's cancellations);
    certified spectral norms (Gram iteration)."""
    mag = round_up(np.abs(c) + r)
    if not np.all(np.isfinite(mag)):
        return float("inf")
    split = round_up(spectral_norm_upper(c) + spectral_norm_upper(r))
    return float(min(spectral_norm_upper(mag), split))


def jacobian_enclosure_norm(net: Network, layers, norm: str) -> tuple[float | None, str | None]:
    """‖J‖_p over an interval-matrix enclosure of every Clarke Jacobian on the set (or over all
    inputs when ``layers`` is None), by a backward pass from the outputs. Returns
    (bound, None) or (None, why it does not apply)."""
    k_out = int(np.prod(net.output_shape))
    work = k_out * sum(int(np.prod(n.shape)) for n in net.nodes)
    if work > ENCLOSURE_BUDGET:
        return None, (f"enclosure skipped: {k_out} outputs × {work // k_out} node entries "
                      f"exceeds the work budget")
    boxes = layers
    if boxes is None:
        boxes = [unbounded(n.shape) for n in net.nodes]
    seed = (np.eye(k_out).reshape(k_out, *net.output_shape),
            np.zeros((k_out, *net.output_shape)))
    found, why = backward_enclosures(net, boxes, net.output, seed)
    if found is None:
        return None, why
    if 0 not in found:
        return 0.0, None  # the output does not depend on the input
    c, r = found[0]
    mag = round_up(np.abs(c).reshape(k_out, -1) + r.reshape(k_out, -1))
    if not np.all(np.isfinite(mag)):
        return float("inf"), None
    n = mag.shape[1]
    if norm == "1":
        return float(round_up(mag.sum(axis=0).max() * (1 + gamma(k_out + 2)))), None
    if norm == "inf":
        carried = float(round_up(mag.sum(axis=1).max() * (1 + gamma(n + 2))))
    else:  # J = C + E with |E| ≤ R: ‖J‖₂ ≤ ‖ |C| + R ‖₂ and ‖J‖₂ ≤ ‖C‖₂ + ‖R‖₂.
        carried = interval_norm2_upper(c.reshape(k_out, -1), r.reshape(k_out, -1))
    return min(carried, _tangent_bound(net, boxes, norm)), None


def _tangent_bound(net: Network, boxes, norm: str) -> float:
    """The tangent back-substitution's ‖J‖ on the enclosures (+∞ if a rule is missing)."""
    layers = [(np.asarray(lo)[None], np.asarray(hi)[None]) for lo, hi in boxes]
    try:
        rb = JacobianBounds(net, layers, norm, magnitude_budget=LINEAR_MAGNITUDE_BUDGET
                            ).output_rows()
    except JacobianRuleMissing:
        return float("inf")
    return float(domain_norm_upper(rb, 1, norm)[0])
