"""Linear bounds of many sub-problems at once: back-substitution with a leading domain axis.

A *domain* is a part of one root problem: a sub-box of the root input box (input splitting)
and/or sign constraints on entries of nodes that feed a kink (activation splitting: z_i ≤ t or
z_i ≥ t at the kink t of a ReLU-family σ). The branch-and-bound search bounds hundreds of them
per round; here they share one back-substitution: each domain's K rows are rows of one stack
Λ of shape (D·K, …), and each nonlinear node's relaxation, computed per domain from that
domain's enclosures, is repeated K times — one numpy call per op per round, whatever D.

Soundness. The op rules are those of :class:`~boundprop.domains.backsub.BackSubstitution`
(whose ``backward`` this class runs unchanged); what changes is where things are concretised:
at the input over each domain's box, at a node over each domain's enclosure. Every domain's
enclosure is intersected with the root's (a domain is a subset of the root problem) and with
its split constraints (the constraint defines the domain). The rounding-error terms use the
root's enclosures, which contain every domain's (larger magnitudes: still bounds); the float32
errors δ_k are each domain's own (the root's, as large as its enclosures, would floor every
domain's bound: ACAS Xu 1_1 prop_2 stalled at −0.018 after 72k domains, then took 493). A
domain whose enclosure becomes empty somewhere (lo > hi) contains no input: it is
``infeasible`` and refutes everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boundprop.domains.alpha import SlopeOptimizer, SlopeOptions
from boundprop.domains.backsub import BackSubstitution, BackwardPass, chunk_bytes
from boundprop.domains.walker import Box, sanitize
from boundprop.ir import Network
from boundprop.ops.base import AffinePrimitive
from boundprop.rounding import float32_input_box, gamma, widen
from boundprop.sets import Box as BoxSet


@dataclass(frozen=True)
class Split:
    """The constraint z ≤ point (side −1) or z ≥ point (side +1) on entry ``index`` (flat) of
    node ``node``'s value (float32 value in float32 mode: the value the next op consumes)."""

    node: int
    index: int
    side: int
    point: float


def concretize_rows(lam: np.ndarray, lo: np.ndarray, hi: np.ndarray, row_domain: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """min of Λ_r·z over the box of row r's domain ``row_domain[r]``, and its rounding-error
    bound: lam of shape (R, …), boxes lo, hi of shape (D, …)."""
    d = lo.shape[0]
    n = int(np.prod(lo.shape[1:]))
    lam2 = lam.reshape(len(row_domain), n)
    c = 0.5 * (lo + hi).reshape(d, n)
    r = np.nextafter(np.maximum(hi.reshape(d, n) - c, c - lo.reshape(d, n)), np.inf)
    c, r = c[row_domain], r[row_domain]
    absl = np.abs(lam2)
    val = np.einsum("rn,rn->r", lam2, c) - np.einsum("rn,rn->r", absl, r)
    err = gamma(n + 2) * np.einsum("rn,rn->r", absl, np.abs(c) + r)
    return val, err


class DomainBatch(BackSubstitution):
    """Enclosures of every node and bounds of C·y on D domains of one root problem.

    ``root_layers``: the root problem's enclosure of every node (``OutputBounds.layers`` of
    the same execution), all finite. ``x_lo``, ``x_hi`` (D, *input shape): each domain's input
    box (inside the root's); ``splits[d]``: domain d's constraints.
    """

    def __init__(self, net: Network, root_layers: list[Box], x_lo: np.ndarray,
                 x_hi: np.ndarray, splits: list[tuple[Split, ...]] | None = None,
                 execution: str = "real"):
        root = [(np.asarray(lo), np.asarray(hi)) for lo, hi in root_layers]
        super().__init__(net, BoxSet(root[0][0], root[0][1]), root, execution=execution,
                         variants=False)
        self.bounds = root
        self.n_domains = len(x_lo)
        self.splits = splits or [()] * self.n_domains
        # float32 errors δ_k per domain (D, *shape), from each domain's own enclosures: the
        # root's are as large as its enclosures and would floor every domain's bound
        self.f32_error = {}
        if execution == "float32":
            x_lo, x_hi = float32_input_box(x_lo, x_hi)
        self.dbounds: list[Box] = [(x_lo, x_hi)]
        self.drelax: dict[int, object] = {}
        self._override: dict[int, object] = {}  # per-domain relaxations replacing the default
        self.row_domain = np.arange(self.n_domains)  # the domain of each row of a pass
        self._rows_all = self.row_domain  # the slope optimiser's rows (row_enclosure, ...)
        self.use_crops = False
        self.infeasible = np.zeros(self.n_domains, dtype=bool)
        self.consumers = net.consumers()
        self.curved = [False] * len(net.nodes)
        for k, node in enumerate(net.nodes[1:], start=1):
            self.curved[k] = (not isinstance(node.op, AffinePrimitive)) or any(
                self.curved[i] for i in node.inputs)
        with np.errstate(invalid="ignore", over="ignore"):
            for k in range(1, len(net.nodes)):
                self._enclose(k)

    # ---------------------------------------------------------------- enclosures
    def _constrain(self, k: int, lo: np.ndarray, hi: np.ndarray) -> Box:
        """Intersect with the root's enclosure and the domains' constraints on node k."""
        rlo, rhi = self.bounds[k]
        lo, hi = np.maximum(lo, rlo[None]), np.minimum(hi, rhi[None])
        lo2, hi2 = lo.reshape(self.n_domains, -1), hi.reshape(self.n_domains, -1)
        for d, cons in enumerate(self.splits):
            for s in cons:
                if s.node != k:
                    continue
                if s.side > 0:
                    lo2[d, s.index] = max(lo2[d, s.index], s.point)
                else:
                    hi2[d, s.index] = min(hi2[d, s.index], s.point)
        self.infeasible |= np.any(lo2 > hi2, axis=1)
        return lo, hi

    def _enclose(self, k: int) -> None:
        """Node k's enclosure per domain: its interval rule on the domains' enclosures, the
        float32 error, the root's enclosure and the constraints; then the entries that feed
        a relaxation tighter bounds would improve are back-substituted, per domain."""
        node = self.net.nodes[k]
        boxes = [self.dbounds[i] for i in node.inputs]
        lo, hi = node.op.interval(*boxes)
        if self.execution == "float32":
            err = np.asarray(node.op.float32_error(boxes, (lo, hi)), dtype=np.float64)
            self.f32_error[k] = np.broadcast_to(err, lo.shape)
            lo, hi = widen(lo, hi, self.f32_error[k])
        lo, hi = self._constrain(k, *sanitize(lo, hi))
        self.dbounds.append((lo, hi))
        mask = self._entries_to_tighten_batch(k, lo, hi)
        if mask is None:
            return
        l2, h2 = self.entry_bounds(k, mask)
        lo = np.fmax(lo.reshape(self.n_domains, -1), l2)
        hi = np.fmin(hi.reshape(self.n_domains, -1), h2)
        shape = (self.n_domains, *node.shape)
        self.dbounds[k] = self._constrain(k, lo.reshape(shape), hi.reshape(shape))

    def _entries_to_tighten_batch(self, k: int, lo: np.ndarray, hi: np.ndarray
                                  ) -> np.ndarray | None:
        """Mask (D, size) of node k's entries some consumer's relaxation would improve on,
        per feasible domain; None if there are none."""
        if k == self.net.output or not self.curved[k]:
            return None
        mask = np.zeros(lo.shape, dtype=bool)
        for j in self.consumers[k]:
            op = self.net.nodes[j].op
            if op.has("needs_tighter"):
                mask |= op.needs_tighter(lo, hi) & (lo < hi)
        mask = mask.reshape(self.n_domains, -1)
        mask[self.infeasible] = False
        return mask if mask.any() else None

    def entry_bounds(self, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of node k's entries where ``mask`` (D, size) holds, per
        domain (−∞/+∞ elsewhere): only those rows are back-substituted, without cut bounds
        (the root's enclosures, which every domain's is intersected with, had them; on
        ACAS Xu sub-boxes they refuted no more domains and cost a third of the time)."""
        size = int(np.prod(self.net.nodes[k].shape))
        shape = self.net.nodes[k].shape
        dom, ent = np.nonzero(mask)
        max_size = max(int(np.prod(n.shape)) for n in self.net.nodes[: k + 1])
        per_chunk = max(1, int(chunk_bytes() // (8 * max_size * 6)))
        lo, hi = np.full(mask.shape, -np.inf), np.full(mask.shape, np.inf)
        for a in range(0, dom.size, per_chunk):
            d, e = dom[a:a + per_chunk], ent[a:a + per_chunk]
            p = d.size
            lam = np.zeros((2 * p, size))
            lam[np.arange(p), e] = 1.0
            lam[p + np.arange(p), e] = -1.0
            out = self._lower_rows(k, lam.reshape(2 * p, *shape), np.concatenate([d, d]),
                                   cuts=False).bound
            lo[d, e], hi[d, e] = out[:p], -out[p:]
        return lo, hi

    # ---------------------------------------------------------------- bounds of rows
    def _lower_rows(self, k: int, lam: np.ndarray, row_domain: np.ndarray, cuts: bool = True,
                    record: bool = False):
        """One back-substitution of rows Λ (R, *shape of node k), row r in domain
        ``row_domain[r]``; NaN bounds (no information) become −∞."""
        self.row_domain = row_domain
        with np.errstate(invalid="ignore", over="ignore"):
            bp = self.backward(k, lam, record=record, cuts=cuts)
        bp.bound = np.where(np.isnan(bp.bound), -np.inf, bp.bound)
        return bp

    def rows_lower(self, k: int, rows: np.ndarray, cuts: bool = True, record: bool = False):
        """Certified lower bounds (D, R) of rows·z_k (rows (R, size)) in every domain (+∞ on
        infeasible ones); with ``record``, also the BackwardPass (Λ reaching each node, and
        the input minimisers, row d·R + r for domain d's row r)."""
        shape = self.net.nodes[k].shape
        r = rows.shape[0]
        lam = np.broadcast_to(rows.reshape(1, r, *shape), (self.n_domains, r, *shape))
        bp = self._lower_rows(k, lam.reshape(self.n_domains * r, *shape).copy(),
                              np.repeat(np.arange(self.n_domains), r), cuts, record)
        out = bp.bound.reshape(self.n_domains, r)
        out[self.infeasible] = np.inf
        return (out, bp) if record else out

    def spec_lower(self, spec: np.ndarray, record: bool = False,
                   slopes: SlopeOptions | None = None):
        """Lower bounds (D, R) of spec·y (y the flattened output) in every domain: the best,
        per row, of the default relaxations and of the extreme free slopes (every free
        lower slope at its minimum, then at its maximum: a ReLU's 0 and 1), where those
        lines cost no root finding."""
        size = int(np.prod(self.net.output_shape))
        rows = np.asarray(spec, dtype=np.float64).reshape(-1, size)
        best = self.rows_lower(self.net.output, rows, record=record)
        low = best[0] if record else best
        for variant in self._extreme_slopes():
            self._override = variant
            try:
                low = np.fmax(low, self.rows_lower(self.net.output, rows))
            finally:
                self._override = {}
        if slopes is not None:
            low = np.fmax(low, self.optimised_lower(rows, slopes))
        return (low, best[1]) if record else low

    def optimised_lower(self, rows: np.ndarray, slopes: SlopeOptions) -> np.ndarray:
        """Lower bounds (D, R) of rows·y with the free slopes optimised per domain and row
        (:class:`~boundprop.domains.alpha.SlopeOptimizer` on this batch's per-row views)."""
        shape = self.net.output_shape
        r = rows.shape[0]
        lam = np.broadcast_to(rows.reshape(1, r, *shape), (self.n_domains, r, *shape))
        self._rows_all = self.row_domain = np.repeat(np.arange(self.n_domains), r)
        with np.errstate(invalid="ignore", over="ignore"):
            out = SlopeOptimizer(self, slopes).lower(
                self.net.output, lam.reshape(self.n_domains * r, *shape).copy())
        out = np.where(np.isnan(out), -np.inf, out).reshape(self.n_domains, r)
        out[self.infeasible] = np.inf
        return out

    def _extreme_slopes(self) -> list[dict[int, object]]:
        """Per-domain relaxations with every free lower slope at the bottom, then the top, of
        its range (nodes whose slopes are free and cost nothing to move)."""
        out: list[dict[int, object]] = [{}, {}]
        for k, node in enumerate(self.net.nodes[1:], start=1):
            op = node.op
            if not op.has("slope_parameters") or op.SLOPE_COST > 1:
                continue
            base = self._domain_relaxation(k)
            if base is None:
                continue
            lo, hi = self.dbounds[node.inputs[0]]
            lmin, lmax, umin, _ = op.slope_ranges(lo, hi)
            for variant, a_l in zip(out, (lmin, lmax)):
                variant[k] = op.with_slopes(base, lo, hi, a_l, umin)[0]
        return [v for v in out if v]

    # ---------------------------------------------------------------- BackSubstitution hooks
    def _domain_relaxation(self, k: int):
        """Node k's relaxation on each domain's enclosures (arrays with the domain axis)."""
        if k not in self.drelax:
            node = self.net.nodes[k]
            self.drelax[k] = node.op.linear_relaxation(*(self.dbounds[i]
                                                          for i in node.inputs))
        return self.drelax[k]

    def _relaxation(self, k: int):
        """Node k's relaxation per domain, each array gathered for the rows' domains."""
        relax = self._override.get(k) or self._domain_relaxation(k)
        if relax is None:
            return None
        if not isinstance(relax, tuple):
            raise NotImplementedError("a relaxation without per-entry arrays")
        ndim = len(self.net.nodes[k].shape) + 1
        out = []
        for a in relax:
            if np.ndim(a) == ndim and np.shape(a)[0] == self.n_domains:
                out.append(a[self.row_domain])
            elif np.ndim(a) < ndim or np.shape(a)[0] == 1:
                out.append(a)
            else:
                raise NotImplementedError("a relaxation of unexpected shape")
        return tuple(out)

    def row_enclosure(self, n: int, rows: np.ndarray) -> Box:
        lo, hi = self.dbounds[n]
        d = self._rows_all[rows]
        return lo[d], hi[d]

    def row_relaxation(self, n: int, rows: np.ndarray):
        saved, self.row_domain = self.row_domain, self._rows_all[rows]
        try:
            return self._relaxation(n)
        finally:
            self.row_domain = saved

    def backward_rows(self, target: int, lam: np.ndarray, rows: np.ndarray,
                      relax: dict[int, object] | None = None, **kw) -> BackwardPass:
        self.row_domain = self._rows_all[rows]
        return self.backward(target, lam, relax, **kw)

    def _rows_f32_error(self, n: int) -> np.ndarray:
        return self.f32_error[n][self.row_domain]

    def _concretize_node(self, n: int, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return concretize_rows(lam, *self.dbounds[n], self.row_domain)

    def _concretize_at_input(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return concretize_rows(lam, *self.dbounds[0], self.row_domain)

    def _input_minimizer(self, lam: np.ndarray) -> np.ndarray:
        lo, hi = self.dbounds[0]
        return np.where(lam >= 0, lo[self.row_domain], hi[self.row_domain])
