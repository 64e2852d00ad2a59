"""Symbolic-linear bounds: back-substitution in the style of CROWN / DeepPoly.

For a target node t and rows Λ (objectives), walk the DAG backwards from t: each primitive's
``backward_linear`` turns Λ·(its output) into Λ_in·(its inputs) + const, exactly for affine maps
and through its linear relaxation (valid on its input's enclosure) for nonlinear ones; at the
input, Λ_x·x is minimised over the input set in closed form. Nodes with no linear rule
(softmax, normalisations) are concretised to their interval there.

Soundness in floating point: every step reports a bound on its own rounding error (γ-bounds
against the enclosures |z| ≤ max(|lo|, |hi|)); their sum is subtracted at the end, so the result
bounds the real-arithmetic network. Each node's enclosure is the intersection of its interval and
linear bounds, so linear bounds are never looser than interval bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boundprop.domains import backsub_crop
from boundprop.domains.walker import Box, input_boxes, sanitize, walk
from boundprop.ir import Network, Node, memory_budget
from boundprop.ops.base import AffinePrimitive, PermutationPrimitive
from boundprop.rounding import UNIT_ROUNDOFF, gamma, round_down, widen
from boundprop.sets import InputSet, L2Ball

# Optional work budget of one node's back-substitution (``work``); None: no limit. A node past
# a given budget keeps its interval bounds, and its method says so.
DEFAULT_WORK_BUDGET = None
# Largest array of rows Λ one back-substitution step holds (several are alive at once): at most
# 256 MiB, and at most 1/16 of the memory budget (``ir.memory_budget``).
MAX_CHUNK_BYTES = 256 * 2**20

# Values of ``methods[k]`` (how node k's enclosure was obtained; ``OutputBounds.layers[k].method``).
INPUT = "input"
EXACT = "exact (affine of the input)"
INTERVAL = "interval"
LINEAR = "linear"
OVERFLOW = "unbounded (float32 overflow)"


def chunk_bytes() -> int:
    """Bytes of one chunk of rows: MAX_CHUNK_BYTES, less on a machine with little memory."""
    return int(max(2**20, min(MAX_CHUNK_BYTES, memory_budget() // 16)))


def _concretize_box(lam: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """min over the box of Λ·z (per row), and its rounding-error bound."""
    k = lam.shape[0]
    lam2 = lam.reshape(k, -1)
    c = (0.5 * (lo + hi)).reshape(-1)
    r = np.nextafter(np.maximum(hi.reshape(-1) - c, c - lo.reshape(-1)), np.inf)
    absl = np.abs(lam2)
    val = lam2 @ c - absl @ r
    err = gamma(lam2.shape[1] + 2) * (absl @ (np.abs(c) + r))
    return val, err


def _concretize_input(lam: np.ndarray, s: InputSet) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(s, L2Ball):
        k = lam.shape[0]
        lam2 = lam.reshape(k, -1)
        c = s.center.reshape(-1)
        norms = np.sqrt((lam2**2).sum(axis=1)) * (1 + gamma(lam2.shape[1] + 2))
        val = lam2 @ c - s.radius * norms
        err = gamma(lam2.shape[1] + 2) * (np.abs(lam2) @ np.abs(c) + s.radius * norms)
        return val, err
    return _concretize_box(lam, s.lower, s.upper)


def _input_minimizer(lam: np.ndarray, s: InputSet) -> np.ndarray:
    """Per row, a point of the input set where Λ_k·x is smallest (shape (K, *input shape))."""
    k = lam.shape[0]
    if isinstance(s, L2Ball):
        lam2 = lam.reshape(k, -1)
        norms = np.sqrt((lam2**2).sum(axis=1, keepdims=True))
        step = np.where(norms > 0, lam2 / np.where(norms > 0, norms, 1.0), 0.0)
        return (s.center.reshape(1, -1) - s.radius * step).reshape(lam.shape)
    return box_minimizer(lam, s.lower, s.upper)


def box_minimizer(lam: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row, the vertex of the box [lo, hi] where Λ_k·z is smallest (K, *box shape); the
    box may carry a leading row axis (one box per row)."""
    return np.where(lam >= 0, lo, hi)


@dataclass
class BackwardPass:
    """One back-substitution: ``bound`` the certified lower bound per row; with ``record``,
    ``lams[n]`` the rows Λ reaching node n (on its output) and ``point`` the input minimiser
    of the final rows (the relaxed network's argmin, per row)."""

    bound: np.ndarray
    lams: dict[int, np.ndarray]
    point: np.ndarray | None


class BackSubstitution:
    """Linear bounds of a network over an input set ``s`` (fitted to its input shape), node by
    node, given the interval enclosures ``ibp`` of every node (the same execution)."""

    def __init__(self, net: Network, s: InputSet, ibp: list[Box],
                 work_budget: float | None = DEFAULT_WORK_BUDGET, execution: str = "real",
                 variants: bool = True):
        self.net = net
        self.set = s
        self.work_budget = work_budget
        self.execution = execution
        self.ibp = ibp
        self.bounds: list[tuple[np.ndarray, np.ndarray]] = [self.ibp[0]]
        # float32 mode: |float32 − exact| at each node (node 0: rounding the input to float32).
        self.f32_error: dict[int, np.ndarray] = {}
        if execution == "float32":
            lo, hi = self.ibp[0]
            self.f32_error[0] = np.maximum(hi - self.set.upper, self.set.lower - lo)
        self.relax: dict[int, object] = {}
        self.candidates: dict[int, list] = {}  # sound relaxations to choose from, per node
        self.variants = variants  # False: every node's default relaxation only
        self.linear_nodes: list[int] = []  # nodes whose bounds came from back-substitution
        # How each node was bounded (see ``analysis.OutputBounds``): INPUT, EXACT, INTERVAL,
        # LINEAR, "linear (n of m entries)", "interval (work budget ...)", OVERFLOW.
        self.methods: list[str] = [INPUT] + [INTERVAL] * (len(net.nodes) - 1)
        self.chunk_bytes = chunk_bytes()
        self.tightened: dict[int, np.ndarray] = {}  # flat masks of back-substituted entries
        self.use_crops = True  # False: whole arrays everywhere (same bounds, for tests)
        # The α method's slope optimiser (``domains.alpha.SlopeOptimizer``): its ``lower``
        # replaces :meth:`lower` for the rows it ``wants``.
        self.optimizer = None

    def _boxes(self, k: int) -> list[Box]:
        return input_boxes(self.bounds, self.net.nodes[k])

    def _relaxation(self, k: int):
        if k not in self.relax:
            self.relax[k] = self.net.nodes[k].op.linear_relaxation(*self._boxes(k))
        return self.relax[k]

    def work(self, target: int, rows: int) -> float:
        """Multiply-adds of back-substituting ``rows`` rows from ``target`` (an estimate)."""
        total = 0.0
        for n in self.net.nodes[1: target + 1]:
            fan = n.op.fan_in if isinstance(n.op, AffinePrimitive) else 1
            total += int(np.prod(n.shape)) * fan
        return rows * total

    def lower(self, target: int, lam: np.ndarray, relax: dict[int, object] | None = None,
              affine_only: bool = False) -> np.ndarray:
        """Certified lower bounds of each row Λ_k·z_target (lam of shape (K, *shape));
        ``relax`` overrides nodes' relaxations (e.g. optimised slopes, per row), see
        :meth:`backward`. Without it, each row gets the best bound over the relaxation
        variants (:meth:`_variants`: chord, tangent, best lines of the smooth activations)."""
        if relax is not None or affine_only or not self.variants:
            variants = [relax]
        else:
            variants = self._variants(target)
        out = None
        for r in variants:
            b = self.backward(target, lam, r, affine_only=affine_only).bound
            out = b if out is None else np.fmax(out, b)
        return out

    def _variants(self, target: int) -> list[dict[int, object] | None]:
        """Relaxation overrides to try, one back-substitution each: None (every node's
        default relaxation) and, when nodes before ``target`` offer several sound
        relaxations (``linear_relaxation_candidates``), the i-th candidate of each."""
        count, cands = 1, {}
        for n in range(1, target):
            node = self.net.nodes[n]
            if node is None or not (n in self.candidates or node.op.has_relaxation_candidates()):
                continue  # outside a crop's cone, or a single relaxation
            c = self.node_candidates(n)
            if len(c) > 1:
                cands[n] = c
                count = max(count, len(c))
        return [None] + [{n: c[min(i, len(c) - 1)] for n, c in cands.items()}
                         for i in range(1, count)]

    def node_candidates(self, n: int) -> list:
        """Node n's sound relaxations to choose from (``linear_relaxation_candidates``)."""
        if n not in self.candidates:
            try:
                self.candidates[n] = self.net.nodes[n].op.linear_relaxation_candidates(
                    *self._boxes(n))
            except NotImplementedError:
                self.candidates[n] = []
        return self.candidates[n]

    def backward(self, target: int, lam: np.ndarray, relax: dict[int, object] | None = None,
                 record: bool = False, affine_only: bool = False, cuts: bool = True
                 ) -> BackwardPass:
        """Back-substitute rows Λ from node ``target`` to the input.

        At every step the rows stand as Σ_i Λ_i·z_i + const over the pending nodes i; each
        such *cut* is itself a lower bound once every Λ_i·z_i is concretised over node i's
        enclosure, and each row keeps the best of these bounds and the final one at the input
        (the enclosures were paid for: e.g. folding a property's rows into the last affine
        layer over the previous layer's box, as interval propagation does, can beat going all
        the way back). ``affine_only``: stop at the first node that needs a relaxation.
        ``record``: keep the Λ reaching every node and the input minimiser (for the slope
        optimiser, :mod:`boundprop.domains.alpha`). ``cuts=False``: only the final bound
        (cheaper; the optimiser's iterates)."""
        net = self.net
        relax = relax or {}
        k_rows = lam.shape[0]
        pending: dict[int, np.ndarray] = {target: lam}
        const = np.zeros(k_rows)
        err = np.zeros(k_rows)
        best = np.full(k_rows, -np.inf)
        lams: dict[int, np.ndarray] = {}
        for n in range(target, 0, -1):
            if n not in pending:
                continue
            if cuts:
                best = np.fmax(best, self._cut_bound(pending, const, err))
            node = net.nodes[n]
            boxes = self._boxes(n)
            lam_n = pending[n]
            try:
                r = relax[n] if n in relax else self._relaxation(n)
                if affine_only and r is not None:
                    return BackwardPass(best, lams, None)
                lam_ins, c, e = node.op.backward_linear(lam_n, r, boxes)
            except NotImplementedError:  # no linear rule: the node's box
                if affine_only:
                    return BackwardPass(best, lams, None)
                c, e = self._concretize_node(n, lam_n)
                lam_ins = []
            del pending[n]
            if record:
                lams[n] = lam_n
            const += c
            err += e
            if n in self.f32_error:  # Λ·(y + δ) ≥ Λ·y − |Λ|·|δ|max
                err += (np.abs(lam_n) * self._rows_f32_error(n)).reshape(k_rows, -1).sum(1)
            for i, li in zip(node.inputs, lam_ins):
                if i in pending:
                    total = pending[i] + li
                    lo, hi = self.bounds[i]
                    zmax = np.maximum(np.abs(lo), np.abs(hi))
                    err += UNIT_ROUNDOFF * (np.abs(total) * zmax).reshape(k_rows, -1).sum(1)
                    pending[i] = total
                else:
                    pending[i] = li
        c, e, point = (0.0, 0.0, None)
        if 0 in pending:
            lam0 = pending.pop(0)
            c, e = self._concretize_at_input(lam0)
            if 0 in self.f32_error:
                e = e + (np.abs(lam0) * self.f32_error[0][None]).reshape(k_rows, -1).sum(1)
            if record:
                lams[0] = lam0
                point = self._input_minimizer(lam0)
        total = const + c
        mag = np.abs(const) + np.abs(c)
        final = round_down(total - err - e - gamma(4) * mag)
        return BackwardPass(np.fmax(best, final), lams, point)  # NaN: no bound there

    # Per-row views (the slope optimiser's): every row shares this problem's enclosures here;
    # the batched engine (:mod:`boundprop.domains.batched`) gives each row its domain's.
    def row_enclosure(self, n: int, rows: np.ndarray) -> Box:
        """Node n's enclosure for the given rows (leading axis 1: shared)."""
        lo, hi = self.bounds[n]
        return lo[None], hi[None]

    def row_relaxation(self, n: int, rows: np.ndarray):
        """Node n's default relaxation for the given rows."""
        return self._relaxation(n)

    def backward_rows(self, target: int, lam: np.ndarray, rows: np.ndarray,
                      relax: dict[int, object] | None = None, **kw) -> BackwardPass:
        """:meth:`backward` of the given rows (of the rows :meth:`lower` was called with)."""
        return self.backward(target, lam, relax, **kw)

    def _rows_f32_error(self, n: int) -> np.ndarray:
        """Node n's float32 error bound δ_n, broadcastable against the rows Λ."""
        return self.f32_error[n][None]

    def _concretize_node(self, n: int, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """min of Λ·z_n over node n's enclosure, per row, and its rounding-error bound."""
        lo, hi = self.bounds[n]
        return _concretize_box(lam, lo, hi)

    def _concretize_at_input(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """min of Λ·x over the input set, per row, and its rounding-error bound."""
        return _concretize_input(lam, self.set)

    def _input_minimizer(self, lam: np.ndarray) -> np.ndarray:
        return _input_minimizer(lam, self.set)

    def _cut_bound(self, pending: dict[int, np.ndarray], const: np.ndarray, err: np.ndarray
                   ) -> np.ndarray:
        """const − err + Σ_i min over node i's enclosure of Λ_i·z_i (−∞ where unbounded).
        In float32 mode each enclosure holds the node's float32 value, which is what the
        pending Λ_i multiplies (its own δ_i is injected only when node i is rewritten)."""
        total, mag, e = const.copy(), np.abs(const), err.copy()
        for i, lam_i in pending.items():
            lo, hi = self.bounds[i]
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
                return np.full(len(const), -np.inf)
            c, ce = self._concretize_node(i, lam_i)
            total += c
            mag += np.abs(c)
            e += ce
        out = round_down(total - e - gamma(len(pending) + 4) * mag)
        return np.where(np.isnan(out), -np.inf, out)

    def node_bounds(self, target: int, rows: np.ndarray | None = None,
                    affine_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of rows·z_target (identity rows: the node's own entries)."""
        shape = self.net.nodes[target].shape
        size = int(np.prod(shape))
        if rows is None:
            rows = np.eye(size)
        k = rows.shape[0]
        both = np.concatenate([rows, -rows]).reshape((2 * k, *shape))
        max_size = max(int(np.prod(n.shape)) for n in self.net.nodes[: target + 1])
        opt = self.optimizer
        if opt is not None and not affine_only and opt.wants(target, 2 * k):
            out = self._chunked_lower(opt.lower, target, both, max_size)
        else:
            out = self._chunked_lower(
                lambda t, lam: self.lower(t, lam, affine_only=affine_only), target, both,
                max_size)
        return out[:k], -out[k:]

    def _chunked_lower(self, lower, target: int, lam: np.ndarray, max_size: int) -> np.ndarray:
        """``lower(target, rows)`` on chunks of rows: arrays of the largest node (``max_size``
        entries per row, ~3 alive at once) of at most ``chunk_bytes`` each."""
        chunk = max(1, int(self.chunk_bytes // (8 * max_size * 3)))
        return np.concatenate([lower(target, lam[i:i + chunk])
                               for i in range(0, lam.shape[0], chunk)])

    def _tighten(self, k: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of node k's entries ``idx`` (flat) by back-substitution:
        on crops tile by tile (:mod:`backsub_crop`) when the cone of a convolution-shaped
        node can be cropped, else with whole arrays (:meth:`node_bounds`)."""
        shape = self.net.nodes[k].shape
        side = backsub_crop.choose_side(self.net, k, idx) if self.use_crops else None
        if self.optimizer is not None and self.optimizer.wants(k, 2 * idx.size):
            side = None  # the slope optimiser's rows go through node_bounds, uncropped
        if side is None:
            rows = np.zeros((idx.size, int(np.prod(shape))))
            rows[np.arange(idx.size), idx] = 1.0
            return self.node_bounds(k, rows)
        lo, hi = np.empty(idx.size), np.empty(idx.size)
        where = {int(j): t for t, j in enumerate(idx)}
        for region, sub_idx in backsub_crop.tiles(shape, idx, side):
            regions, ops = backsub_crop.plan(self.net, k, region)
            sub = backsub_crop.cropped_view(self, regions, ops)
            rshape = backsub_crop.region_shape(region)
            local = np.ravel_multi_index(tuple(
                p - a for p, (a, _) in zip(np.unravel_index(sub_idx, shape), region)), rshape)
            m = sub_idx.size
            lam = np.zeros((2 * m, int(np.prod(rshape))))
            lam[np.arange(m), local] = 1.0
            lam[m + np.arange(m), local] = -1.0
            max_size = max(int(np.prod(backsub_crop.region_shape(r))) for r in regions.values())
            out = self._chunked_lower(sub.lower, k, lam.reshape(2 * m, *rshape), max_size)
            pos = np.array([where[int(j)] for j in sub_idx])
            lo[pos], hi[pos] = out[:m], -out[m:]
        return lo, hi

    def _entries_to_tighten(self, k: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
        """Flat indices of node k worth back-substituting: the output, and entries feeding a
        relaxation that tighter bounds would improve (e.g. unstable ReLUs). None: none."""
        net = self.net
        if k == net.output:
            return np.arange(lo.size)
        mask = np.zeros(lo.shape, dtype=bool)
        for j in self.consumers[k]:
            op = net.nodes[j].op
            if op.has("needs_tighter"):
                mask |= op.needs_tighter(lo, hi)
        idx = np.flatnonzero(mask)
        return self._not_implied(k, idx) if idx.size else None

    def _not_implied(self, k: int, idx: np.ndarray) -> np.ndarray | None:
        """Drop the entries of an activation node y = σ(z) whose input entry z_i already has
        back-substituted (or exact) bounds [l, u]: back-substituting y_i gives a·(bound of
        z_i) + b from a relaxation of σ on [l, u], never tighter than σ's exact image of
        [l, u], which is its interval bound."""
        node = self.net.nodes[k]
        if node.family != "activation" or len(node.inputs) != 1 or \
                node.op.in_shapes[0] != node.shape:
            return idx
        i = node.inputs[0]
        done = self.tightened.get(i)
        if not self.curved[i]:
            return None
        if done is not None:
            idx = idx[~done[idx]]
        return idx if idx.size else None

    def _transfer(self, k: int, node: Node, boxes: list[Box]) -> Box:
        """The node's interval rule on the (tightened) enclosures of its inputs; in float32
        mode widened by its own float32 rounding δ_k (recorded: back-substitution bounds the
        exact node function of the float32 inputs and injects δ_k into later steps)."""
        lo, hi = node.op.interval(*boxes)
        if self.execution == "float32":
            self.f32_error[k] = node.op.float32_error(boxes, (lo, hi))[0]
            lo, hi = widen(lo, hi, self.f32_error[k][None])
        return lo, hi

    def _settled(self, k: int) -> Box | None:
        """float32 overflow possible at node k: its interval enclosure (−∞, ∞), no rows."""
        return self.ibp[k] if self._overflows(k) else None

    def _refine(self, k: int) -> None:
        """Intersect node k's enclosure with its interval one, then tighten the entries that
        matter (:meth:`_entries_to_tighten`) by back-substitution, within the work budget."""
        node = self.net.nodes[k]
        lo, hi = self.bounds[k]
        lo, hi = np.maximum(lo, self.ibp[k][0]), np.minimum(hi, self.ibp[k][1])
        self.bounds[k] = (lo, hi)
        if not self.curved[k]:
            self.methods[k] = EXACT
            return
        if isinstance(node.op, PermutationPrimitive):
            return
        idx = self._entries_to_tighten(k, lo, hi)
        if idx is None:
            return
        if self.work_budget is not None and self.work(k, 2 * idx.size) > self.work_budget:
            self.methods[k] = (f"interval (work budget {self.work_budget:.3g} < "
                               f"{self.work(k, 2 * idx.size):.3g})")
            return
        # In float32 mode lower() injects δ_k at node k too: it bounds the float32 value.
        l2, h2 = sanitize(*self._tighten(k, idx))
        lo, hi = lo.copy().reshape(-1), hi.copy().reshape(-1)
        lo[idx] = np.maximum(lo[idx], l2)
        hi[idx] = np.minimum(hi[idx], h2)
        self.bounds[k] = (lo.reshape(node.shape), hi.reshape(node.shape))
        self.linear_nodes.append(k)
        self.tightened[k] = np.zeros(lo.size, dtype=bool)
        self.tightened[k][idx] = True
        self.methods[k] = LINEAR if idx.size == lo.size else (
            f"{LINEAR} ({idx.size} of {lo.size} entries)")

    def run(self, spec: np.ndarray | None = None):
        """Enclosures of every node (intersection of interval and linear bounds), and the
        bounds of spec·y (y the output) if ``spec`` is given."""
        net = self.net
        self.consumers = net.consumers()
        # A node reached from the input through affine maps only has exact interval bounds
        # (up to rounding) on a box: back-substitution cannot tighten it.
        self.curved = [False] * len(net.nodes)
        for k, node in enumerate(net.nodes[1:], start=1):
            self.curved[k] = (not isinstance(node.op, AffinePrimitive)) or any(
                self.curved[i] for i in node.inputs)
        walk(net, self.bounds, self._transfer, settled=self._settled, refine=self._refine)
        for k in range(1, len(net.nodes)):
            if self._overflows(k):
                self.methods[k] = OVERFLOW
        spec_bounds = None
        if spec is not None:
            spec = np.atleast_2d(np.asarray(spec, dtype=np.float64))
            if self._overflows(net.output):
                spec_bounds = (np.full(spec.shape[0], -np.inf), np.full(spec.shape[0], np.inf))
            else:
                spec_bounds = self.node_bounds(net.output, spec)
        return self.bounds, spec_bounds

    def _overflows(self, k: int) -> bool:
        """float32 mode: the interval pass found that node k's float32 evaluation may
        overflow (or follows one that may); its enclosure is then (−∞, ∞) and stays so."""
        lo, hi = self.ibp[k]
        return self.execution == "float32" and not np.all(np.isfinite(lo) & np.isfinite(hi))



def folded_spec_bounds(net: Network, s: InputSet, layers: list[Box], spec: np.ndarray,
                       execution: str = "real") -> tuple[np.ndarray, np.ndarray]:
    """Bounds of spec·y (y the flattened output) from enclosures already computed for every
    node (the interval method's): the rows are rewritten back through the network's affine
    tail — as interval propagation folds a property into the last affine layer, bounding
    (C·W)·h + C·b over the previous layer's box instead of C·y over the output box — and
    concretised at every cut, each row keeping its best bound (:meth:`BackSubstitution.
    backward`). Never looser than bounding C·y over the output's enclosure (the first cut).
    """
    bs = BackSubstitution(net, s, layers, execution=execution)
    bs.bounds = list(layers)
    if execution == "float32":
        todo, seen = [net.output], set()
        while todo:  # δ_k of the nodes the affine tail rewrites, as the interval pass had it
            k = todo.pop()
            if k == 0 or k in seen:
                continue
            seen.add(k)
            node = net.nodes[k]
            try:  # (an infinite box makes NaN relaxations: not used, only tested for None)
                with np.errstate(invalid="ignore", over="ignore"):
                    if node.op.linear_relaxation(*bs._boxes(k)) is not None:
                        continue
            except NotImplementedError:
                continue
            boxes = bs._boxes(k)
            out = node.op.interval(*boxes)
            bs.f32_error[k] = node.op.float32_error(boxes, out)[0]
            todo.extend(node.inputs)
    spec = np.atleast_2d(np.asarray(spec, dtype=np.float64))
    lo, hi = layers[net.output]
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        return np.full(spec.shape[0], -np.inf), np.full(spec.shape[0], np.inf)
    return bs.node_bounds(net.output, spec, affine_only=True)
