"""Optimised relaxations (α-CROWN style): the slopes of the activations' relaxing lines,
chosen per bound row by projected gradient ascent on the back-substituted bound.

Free parameters per entry (``slope_parameters`` rule): the lower slope of ReLU-family ops in
[s, 1] (offset 0); for every other activation both slopes within σ' over the entry's interval,
each offset the exact extreme of σ(x) − a·x (``Activation.line_offset``). Every slope in an
op's ``slope_ranges`` gives a sound relaxation, so the optimiser is untrusted: each iterate's
bound is the certified one of :meth:`BackSubstitution.backward` at those slopes (full
rounding-error accounting), and each row keeps the best iterate — never below the plain CROWN
bound it starts from.

Gradient of a row's bound L with respect to the slopes of entry j of node n (analytic, no
autodiff): for fixed signs of the back-substituted rows, L is linear in the rows Λ_n reaching
each node, and ∂L/∂Λ_n is the relaxed network evaluated forward at the input minimiser x* —
each op replaced by the line back-substitution used for that row (``relaxed_forward``),
concretised nodes by the vertex their box was minimised at. Node n contributes
Λ⁺(a_l·z + b_l(a_l)) + Λ⁻(a_u·z + b_u(a_u)), and by the envelope theorem ∂b/∂a = −x_t (x_t
where the line touches σ), so ∂L/∂a_l = Λ⁺_j·(ĝ_j − x_l) and ∂L/∂a_u = Λ⁻_j·(ĝ_j − x_u), ĝ the
forward value at n's input. One backward and one forward pass per iteration, for all rows at
once. Steps: Adam on the ascent direction (as α-CROWN), projected onto the slope ranges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from boundprop.domains.backsub import BackSubstitution, BackwardPass, box_minimizer

DEFAULT_ITERATIONS = 20
DEFAULT_LEARNING_RATE = 0.5  # measured on mnist-net_256x2 (0.1: 40 iterations for the same bound)
ADAM_BETAS = (0.9, 0.999)
LR_DECAY = 0.98  # per iteration, as auto_LiRPA's default schedule
# intermediate="auto": optimise an intermediate node's rows when one back-substitution of them
# and the new relaxations cost at most this many multiply-adds (BackSubstitution.work and
# SLOPE_COST); mnist-net_256x2's hidden layer: ~2e7, a LeNet conv layer's ~1e9.
INTERMEDIATE_WORK = 1e8


@dataclass
class SlopeOptions:
    """The slope optimiser's budget: ``iterations`` per query, Adam's ``learning_rate``, and
    an optional wall-clock ``time_budget`` (seconds, over the whole analysis). The rows of
    intermediate nodes feeding relaxations are optimised too (α-CROWN's choice) when
    ``intermediate`` is True, never when False, and with ``"auto"`` when one pass over them
    costs at most INTERMEDIATE_WORK multiply-adds; the output's rows always."""

    iterations: int = DEFAULT_ITERATIONS
    learning_rate: float = DEFAULT_LEARNING_RATE
    time_budget: float | None = None
    intermediate: bool | str = "auto"

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    def expired(self) -> bool:
        return (self.time_budget is not None
                and time.perf_counter() - self.started > self.time_budget)


class SlopeOptimizer:
    """Lower bounds of rows Λ·z_target with optimised slopes, on top of ``bs``'s enclosures."""

    def __init__(self, bs: BackSubstitution, options: SlopeOptions):
        self.bs = bs
        self.options = options

    def _free_nodes(self, target: int, rows: np.ndarray) -> dict[int, tuple[np.ndarray, ...]]:
        """Nodes before ``target`` with a free slope somewhere: {n: slope ranges} (per row
        where the rows' enclosures differ, :meth:`BackSubstitution.row_enclosure`)."""
        out = {}
        for n in range(1, target):
            node = self.bs.net.nodes[n]
            if node is None or not node.op.has("slope_parameters"):
                continue
            lo, hi = self.bs.row_enclosure(node.inputs[0], rows)
            ranges = node.op.slope_ranges(lo, hi)
            if np.any(ranges[1] > ranges[0]) or np.any(ranges[3] > ranges[2]):
                out[n] = ranges
        return out

    def _relax(self, slopes: dict[int, tuple[np.ndarray, np.ndarray]], rows: np.ndarray
               ) -> tuple[dict[int, object], dict[int, tuple[np.ndarray, np.ndarray]]]:
        """Relaxations at the given (lower, upper) slopes of ``rows``, and where their lines
        touch σ."""
        relax, touch = {}, {}
        for n, (a_l, a_u) in slopes.items():
            lo, hi = self.bs.row_enclosure(self.bs.net.nodes[n].inputs[0], rows)
            relax[n], x_l, x_u = self.bs.net.nodes[n].op.with_slopes(
                self.bs.row_relaxation(n, rows), lo, hi, a_l, a_u)
            touch[n] = (x_l, x_u)
        return relax, touch

    def _forward(self, bp: BackwardPass, relax: dict[int, object], rows: np.ndarray
                 ) -> dict[int, np.ndarray]:
        """∂L/∂Λ_n for every node the pass reached: the relaxed network at x*, per row."""
        net, bs = self.bs.net, self.bs
        g = {0: bp.point}
        for n in sorted(bp.lams):
            if n == 0:
                continue
            node = net.nodes[n]
            lam = bp.lams[n]
            if node.op.has("relaxed_forward") and all(i in g for i in node.inputs):
                r = relax[n] if n in relax else bs.row_relaxation(n, rows)
                g[n] = node.op.relaxed_forward([g[i] for i in node.inputs], r, lam)
            else:  # concretised over its enclosure, at the vertex that minimised it
                g[n] = box_minimizer(lam, *bs.row_enclosure(n, rows))
        return g

    def wants(self, target: int, rows: int) -> bool:
        """Whether ``rows`` rows of ``target`` are optimised (the output's always)."""
        inter = self.options.intermediate
        if target == self.bs.net.output or inter is True:
            return True
        slopes = sum(int(np.prod(n.shape)) * n.op.SLOPE_COST
                     for n in self.bs.net.nodes[1:target] if n.op.has("slope_parameters"))
        return inter == "auto" and self.bs.work(target, rows) + rows * slopes <= INTERMEDIATE_WORK

    def lower(self, target: int, lam: np.ndarray) -> np.ndarray:
        """Certified lower bounds of each row Λ_k·z_target, the best over the iterates.

        Rows of an intermediate node stop once their bound is positive: the sign of their
        entry is then settled, which is all a ReLU-family kink at 0 can use."""
        bs, opts = self.bs, self.options
        best = bs.lower(target, lam)
        k = lam.shape[0]
        free = self._free_nodes(target, np.arange(k))
        if not free or opts.iterations <= 0 or opts.expired():
            return best
        settle = target != bs.net.output
        active = np.flatnonzero(~(best > 0)) if settle else np.arange(k)
        slopes = {}
        for n in free:
            # start from the best lines per neuron where the op offers several relaxations
            a_l, _, a_u, _ = bs.node_candidates(n)[-1] if bs.net.nodes[
                n].op.has_relaxation_candidates() else bs.row_relaxation(n, np.arange(k))
            shape = (k, *np.shape(a_l)[1:])
            slopes[n] = (np.broadcast_to(a_l, shape).copy(), np.broadcast_to(a_u, shape).copy())
        moments = {(n, side): (np.zeros_like(slopes[n][0]), np.zeros_like(slopes[n][0]))
                   for n in free for side in (0, 1)}
        lr = opts.learning_rate
        for it in range(1, opts.iterations + 1):
            if active.size == 0:
                break
            relax, touch = self._relax({n: (a[active], b[active]) for n, (a, b) in
                                        slopes.items()}, active)
            bp = bs.backward_rows(target, lam[active], active, relax, record=True, cuts=False)
            best[active] = np.fmax(best[active], bp.bound)  # a NaN iterate bounds nothing
            if bp.point is None or opts.expired() or it == opts.iterations:
                break
            g = self._forward(bp, relax, active)
            for n, ranges in free.items():
                inp = bs.net.nodes[n].inputs[0]
                if n not in bp.lams or inp not in g:
                    continue
                # Λ⁺(a_l·ĝ + b_l(a_l)) + Λ⁻(a_u·ĝ + b_u(a_u)), ∂b/∂a = −(touch point)
                lam_n = bp.lams[n]
                for side, weight in ((0, np.maximum(lam_n, 0.0)), (1, np.minimum(lam_n, 0.0))):
                    lo_r, hi_r = (_rows(r, active) for r in ranges[2 * side: 2 * side + 2])
                    if not np.any(hi_r > lo_r):
                        continue
                    grad = weight * (g[inp] - touch[n][side])
                    # steps in units of the slope's range (ReLU: [0, 1]; sigmoid's σ' ≤ 1/4)
                    scale = (hi_r - lo_r) * bs.net.nodes[n].op.SLOPE_STEP
                    step = scale * _adam_step(moments[(n, side)], active, grad, it, lr)
                    slopes[n][side][active] = np.clip(slopes[n][side][active] + step, lo_r,
                                                      hi_r)
            lr *= LR_DECAY
            if settle:
                active = active[~(best[active] > 0)]
        return best


def _rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The given rows of a per-row array; a shared one (leading axis 1) as it is."""
    return a if np.ndim(a) == 0 or np.shape(a)[0] == 1 else a[rows]


def _adam_step(moments: tuple[np.ndarray, np.ndarray], rows: np.ndarray, grad: np.ndarray,
               it: int, lr: float) -> np.ndarray:
    """Adam's ascent step for ``rows`` (updating their first and second moments in place)."""
    b1, b2 = ADAM_BETAS
    m, v = moments
    m[rows] = b1 * m[rows] + (1 - b1) * grad
    v[rows] = b2 * v[rows] + (1 - b2) * grad**2
    return lr * (m[rows] / (1 - b1**it)) / (np.sqrt(v[rows] / (1 - b2**it)) + 1e-12)
