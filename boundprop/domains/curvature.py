"""The curvature method of the smoothness constant: L from the exact second-order chain rule
with per-neuron bounds, instead of the layer-by-layer composition.

Identity (anchors §4.1, for any DAG whose nodes are affine maps or elementwise σ). With a_j
the pre-activation of neuron j of an elementwise node I (its input node's entry), g_j = ∇_x a_j
its gradient row and D_I = ∂y/∂z_I the sensitivity of the output y to the node's output,

    D²y(x)[u, v] = Σ_I Σ_j D_I[:, j] · σ_I''(a_j) · (g_j·u)(g_j·v)

(where σ'' exists; σ' is Lipschitz with constant κ̄_j on neuron j's interval, so this is the
derivative of Dy almost everywhere and its sup bounds the Lipschitz constant of Dy on the
convex set). Certified on the enclosures: κ̄_j ≥ |σ''| on the neuron's pre-activation interval
(the op's ``curvature`` rule, ``smoothness_on``), D̄ = |centre| + radius of an interval
enclosure of D_I (the backward Jacobian pass from the output stopped at node I), and interval
enclosures of the rows g_j (a backward pass from node I's input to the network input).

The constant is the one of ``boundprop.ops.rules``: L = sup_x sup_{‖u‖_p, ‖v‖_p ≤ 1}
‖D²y(x)[u, v]‖_p, the same p-norm on inputs and outputs over whole tensors. Per node I:

- p = 2: ‖D²y[u,v]‖₂ = sup_{‖w‖₂≤1} Σ_j (wᵀD[:,j]) σ''_j (g_j·u)(g_j·v) ≤ Σ_j c_j |g_j·u||g_j·v|
  with c_j = κ̄_j ‖D̄[:,j]‖₂, and by Cauchy–Schwarz ≤ ‖diag(√c) G‖₂ ‖diag(√c) G‖₂ for unit
  u, v: T_I = ‖diag(√c) G_I‖₂², the certified spectral norm of the interval matrix
  diag(√c)·[G] (Gram iteration on |C| + R, or ‖C‖₂ + ‖R‖₂). For one output this is the
  brief's Σ ‖diag(√(|δ| κ)) W J‖₂²; the enclosure of G = W J keeps the signs of J's centre,
  which the product ‖diag(√c) W‖₂ ℓ_{I−1} would lose to a loose ℓ_{I−1}.
- p = ∞: |g_j·u| ≤ ‖g_j‖₁ for ‖u‖_∞ ≤ 1, so T_I = max_k Σ_j D̄[k,j] κ̄_j ‖ḡ_j‖₁².
- p = 1: |g_j·u| ≤ ‖g_j‖_∞ for ‖u‖₁ ≤ 1, so T_I = Σ_j (Σ_k D̄[k,j]) κ̄_j ‖ḡ_j‖_∞².

L ≤ Σ_I T_I (triangle inequality), every product and sum rounded up. Applies when every node
is elementwise with the ``curvature`` rule or affine on its enclosure (its constants rule says
L_φ = 0) and has a ``jacobian`` rule; otherwise it reports why not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy as sp  # the constants rules speak sympy (op_smoothness = 0: affine on the set)

from boundprop.domains.jacobian import (
    ENCLOSURE_BUDGET,
    backward_enclosures,
    interval_norm2_upper,
)
from boundprop.domains.walker import Box, input_boxes, unbounded
from boundprop.ir import Network, Node
from boundprop.ops.rules import RuleContext
from boundprop.rounding import gamma, round_up

ROUND = 1 + 2.0**-50  # covers one rounded product or square root of nonnegative floats


def _affine_on_set(node: Node, boxes: list[Box] | None, norm: str) -> bool:
    """Whether the node's constants rule says L_φ = 0 on its enclosure (affine there)."""
    k = len(node.inputs)
    dummy = [sp.Symbol(f"_{w}{j}", nonnegative=True) for w in "lLB" for j in range(k)]
    ctx = RuleContext(norm, "curv", None if boxes is None else input_boxes(boxes, node),
                      dummy[:k], dummy[k:2 * k], dummy[2 * k:])
    try:
        return node.op.constants_rule(ctx).op_smoothness == 0
    except NotImplementedError:
        return False


def _not_applicable(net: Network, layers: list[Box] | None, norm: str,
                    op_smoothness: Sequence[float] | None) -> str | None:
    """Why the curvature method does not apply to ``net`` (None: it applies). A node that is
    not elementwise is admitted when its op's L_φ on its enclosure is 0 (``op_smoothness``:
    the values the constants pass computed; None: ask each op's constants rule)."""
    for i, node in enumerate(net.nodes[1:], 1):
        if not node.op.has("jacobian"):
            return f"curvature method not applicable: no Jacobian rule for {node.op.kind}"
        if node.op.has("curvature") and len(node.inputs) == 1:
            continue
        affine = (op_smoothness[i] == 0.0 if op_smoothness is not None
                  else _affine_on_set(node, layers, norm))
        if not affine:
            return (f"curvature method not applicable: node {node.name} ({node.op.kind}) is "
                    "neither elementwise with a curvature rule nor affine on the set")
    return None


def _work(net: Network, acts: list[int]) -> int:
    """Rows × node entries of the backward passes: from the output, and from each elementwise
    node's input."""
    k_out = int(np.prod(net.output_shape))
    sizes = np.cumsum([int(np.prod(n.shape)) for n in net.nodes])
    return k_out * int(sizes[-1]) + sum(int(np.prod(net.nodes[i].shape)) *
                                        int(sizes[net.nodes[i].inputs[0]]) for i in acts)


def _column_weights(d: np.ndarray, norm: str) -> np.ndarray:
    """Per neuron j, the bound on |D[:, j]| the norm needs: ‖D̄[:,j]‖₂ (p = 2), Σ_k D̄[k,j]
    (p = 1); for p = ∞ the max over rows is taken later (ones here)."""
    k = d.shape[0]
    if norm == "2":
        return round_up(np.sqrt(round_up((d * d).sum(axis=0) * (1 + gamma(k + 2)))) * ROUND)
    if norm == "1":
        return round_up(d.sum(axis=0) * (1 + gamma(k + 2)))
    return np.ones(d.shape[1])


def _node_term(d: np.ndarray, kappa: np.ndarray, rows: Box | None, picked: np.ndarray,
               norm: str) -> float:
    """T_I of the module docstring for one elementwise node: ``d`` = D̄ (k_out, n),
    ``kappa`` (n), ``rows`` the interval rows of G for the neurons ``picked`` (None: G = 0)."""
    if rows is None or not picked.size:
        return 0.0
    c, r = (a.reshape(len(picked), -1) for a in rows)
    m = c.shape[1]
    mag = round_up(np.abs(c) + r)
    if not np.all(np.isfinite(mag)):
        return float("inf")
    if norm == "2":
        w = round_up(_column_weights(d, norm)[picked] * kappa[picked] * ROUND)
        s = round_up(np.sqrt(w) * ROUND)[:, None]
        sc = s * c  # diag(s)[C ± R] ⊆ [sC ± (sR + u|sC|)]
        g = interval_norm2_upper(sc, round_up(s * r * ROUND + 2.0**-52 * np.abs(sc)))
        return float(round_up(g * g * ROUND))
    gn = (round_up(mag.sum(axis=1) * (1 + gamma(m + 2))) if norm == "inf"
          else mag.max(axis=1))
    per = round_up(kappa[picked] * round_up(gn * gn * ROUND) * ROUND)  # κ̄_j ‖ḡ_j‖²
    n = len(picked)
    if norm == "inf":
        return float(round_up((d[:, picked] * per).sum(axis=1).max() * (1 + gamma(n + 2))))
    w = _column_weights(d, norm)[picked]
    return float(round_up((w * per).sum() * (1 + gamma(n + 2))))


def _weights_and_picks(d: np.ndarray, kappa: np.ndarray, norm: str
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """κ̄ with 0 where D̄[:, j] = 0 (a neuron the output ignores), and the neurons with a
    nonzero term; None if some neuron with a nonzero D̄ column has κ̄ = ∞."""
    live = d.max(axis=0) > 0
    if np.any(live & ~np.isfinite(kappa)):
        return None
    kappa = np.where(live, kappa, 0.0)
    return kappa, np.flatnonzero(kappa > 0)


def curvature_smoothness(net: Network, layers: list[Box] | None, norm: str,
                         op_smoothness: Sequence[float] | None = None
                         ) -> tuple[float | None, str | None]:
    """Certified L of the network output on the set (``layers``: every node's enclosure; None:
    over all inputs) by the per-neuron second-order chain rule (module docstring), in the
    p-norm ``norm``. ``op_smoothness``: each node's certified L_φ if already computed.
    Returns (L, None) or (None, why the method does not apply)."""
    acts = [i for i, n in enumerate(net.nodes) if i and n.op.has("curvature")]
    work = _work(net, acts)
    if work > ENCLOSURE_BUDGET:
        return None, (f"curvature method skipped: {work} row × entry operations exceed the "
                      "work budget")
    why = _not_applicable(net, layers, norm, op_smoothness)
    if why is not None:
        return None, why
    boxes = layers if layers is not None else [unbounded(n.shape) for n in net.nodes]
    k_out = int(np.prod(net.output_shape))
    seed = (np.eye(k_out).reshape(k_out, *net.output_shape),
            np.zeros((k_out, *net.output_shape)))
    sens, why = backward_enclosures(net, boxes, net.output, seed, frozenset(acts))
    if sens is None:
        return None, why
    total = []
    for i in acts:
        if i not in sens:
            continue  # the output does not depend on this node
        node = net.nodes[i]
        p = node.inputs[0]
        c, r = sens[i]
        d = round_up(np.abs(c).reshape(k_out, -1) + r.reshape(k_out, -1))
        kappa = np.asarray(node.op.smoothness_on(boxes[p][0][None], boxes[p][1][None]),
                           dtype=np.float64).reshape(-1)
        got = _weights_and_picks(d, kappa, norm)
        if got is None or not np.all(np.isfinite(d)):
            return float("inf"), None
        kappa, picked = got
        rows = None
        if picked.size:
            eye = np.zeros((len(picked), kappa.size))
            eye[np.arange(len(picked)), picked] = 1.0
            shape = net.nodes[p].shape
            g, why = backward_enclosures(net, boxes, p, (eye.reshape(-1, *shape),
                                                         np.zeros((len(picked), *shape))))
            if g is None:
                return None, why
            rows = g.get(0)
        total.append(_node_term(d, kappa, rows, picked, norm))
    if not any(total):
        return 0.0, None
    return float(round_up(sum(total) * (1 + gamma(len(total) + 2)))), None
