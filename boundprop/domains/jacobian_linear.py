"""Linear bounds through the Jacobian graph: certified bounds on sup ‖row·J(x)‖ over a set.

For a network f and a direction s, the tangent t_k = J_k(x)·s of every node k is a linear
function of s once the Clarke Jacobians of the nonlinear ops are fixed; an elementwise σ
multiplies its input's tangent by a gate d = σ'(z) ∈ [d_lo, d_hi] (the derivative range on
z's enclosure). For s in the unit ball B of the input norm (the cube for ℓ∞, the Euclidean
ball for ℓ2) every tangent set is symmetric, so |t_k| ≤ a_k entrywise, and the product d·t
with t ∈ [−a, a] lies between the chords of min(d_lo·t, d_hi·t) and max(d_lo·t, d_hi·t)
(the exact envelopes; no other line is tighter):

    d·t ≤ m·t + ρ·a,  d·t ≥ m·t − ρ·a,   m = (d_lo + d_hi)/2,  ρ = (d_hi − d_lo)/2.

A row λ on an output's tangent is therefore rewritten backwards exactly through affine ops
and, at a gated node j, as λ·t_j ≤ (λ⊙m)·t + (|λ|⊙ρ)·a_j. The op rule that does this is each
op's ``jacobian_backward`` (rows J ∈ [c − r, c + r] times the op's Clarke Jacobians on its
input boxes): a radius r_j reaching node j is converted into the offset r_j·a_j, and the
centre c goes on. At the input, sup over s ∈ B of (c ± r)·s is ‖|c| + r‖_* (the dual norm:
ℓ1 for the cube, ℓ2 for the ball). Hence, for every x in the set and every Clarke Jacobian,

    ‖λ·J(x)‖_* ≤ ‖|c| + r‖_* + offset   and   ‖λ·J(x) − c‖_* ≤ ‖r‖_* + offset.

The magnitudes a_j are bounds of the same kind on the rows e_i at node j (every entry of
node j, back-substituted to the input through the gates below it), computed first in
topological order. This is Shi et al. (NeurIPS 2022)'s Jacobian bound propagation without
the link between the gates and the input (d is free in its range), which branching supplies:
a domain's enclosures (a sub-box, or a ReLU's phase fixed) narrow its gates.

Rounding: ``jacobian_backward`` puts the rounding of its float products into the radius;
offsets are sums of nonnegative products, rounded up with a γ_n factor. The rows here carry a
leading domain axis: ``layers[k]`` is (lo, hi) of shape (D, *shape_k) and each row belongs to
one domain (``row_domain``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boundprop.errors import BoundpropError
from boundprop.ir import Network
from boundprop.norms import spectral_norm_upper
from boundprop.ops.activation import Activation
from boundprop.ops.base import AffinePrimitive
from boundprop.rounding import gamma, round_up

# Rows held at once by one pass (rows × the widest node's entries, float64).
MAX_ROW_ENTRIES = 2**25
# Work limit (rows × entries) of the magnitude passes of one gated node, per domain; beyond it
# the node's radius is carried (interval Jacobian) instead of converted at it. Per domain, not
# per batch: a limit on the batch made the search's large batches (64 domains of
# mnist-net_256x2) skip layer 2's magnitudes, and bound a domain at 402 that alone got 236.
MAGNITUDE_BUDGET = 2**25

NORMS = ("inf", "2")


class JacobianRuleMissing(BoundpropError):
    """An op on the path from the outputs to the input has no ``jacobian_backward`` rule."""


def dual_norm_upper(c: np.ndarray, norm: str) -> np.ndarray:
    """Rounded-up dual norm of each row of ``c`` (R, n) nonnegative: ℓ1 for the ℓ∞ input
    norm, ℓ2 for ℓ2."""
    n = c.shape[1]
    if norm == "inf":
        return round_up(c.sum(axis=1) * (1 + gamma(n + 2)))
    return round_up(np.sqrt((c * c).sum(axis=1) * (1 + gamma(n + 2))) * (1 + 2.0**-51))


@dataclass
class RowBounds:
    """Bounds of rows λ·J over each row's domain: ``value`` ≥ sup ‖λ·J(x)‖_*; ``centre``
    (R, n_in) and ``error`` with ‖λ·J(x) − centre‖_* ≤ error; ``contributions[j]`` (R,
    size_j): the offset each entry of gated node j added (where branching helps)."""

    value: np.ndarray
    centre: np.ndarray
    error: np.ndarray
    contributions: dict[int, np.ndarray]


class JacobianBounds:
    """Tangent back-substitution on D domains of one network.

    ``layers``: per node (lo, hi) with a leading domain axis (D, *shape); ``norm``: the input
    norm ("inf" or "2"). The magnitudes a_j of the gated nodes (inputs of non-affine ops) are
    computed on construction; with ``keep_centres``, also the centre rows of their entries
    (``centres[j]``: (D, size_j, n_in)), for choosing input splits."""

    def __init__(self, net: Network, layers: list[tuple[np.ndarray, np.ndarray]], norm: str,
                 keep_centres: bool = False, magnitude_budget: int = MAGNITUDE_BUDGET):
        if norm not in NORMS:
            raise BoundpropError(f"Jacobian bounds: norm '{norm}' not supported; use inf or 2")
        self.net, self.layers, self.norm = net, layers, norm
        self.n_domains = layers[0][0].shape[0]
        gated = set()
        for node in net.nodes[1:]:
            if not isinstance(node.op, AffinePrimitive):
                gated.update(j for j in node.inputs if j != 0)
        self.magnitude: dict[int, np.ndarray] = {}
        self.uncertain: dict[int, np.ndarray] = {}
        self.centres: dict[int, np.ndarray] | None = {} if keep_centres else None
        for j in sorted(gated):
            size = int(np.prod(net.nodes[j].shape))
            if size * self._path_entries(j) > magnitude_budget:
                continue
            self.uncertain[j] = self._uncertain(j)
            self.magnitude[j] = self._magnitudes(j)

    def _uncertain(self, j: int) -> np.ndarray:
        """(D, size_j): the entries of gated node j where some consumer's Clarke Jacobian is
        not one value (a gate with d_lo < d_hi) — the only radii worth converting; the
        others (rounding-size) are carried back with the centre."""
        size = int(np.prod(self.net.nodes[j].shape))
        out = np.zeros((self.n_domains, size), dtype=bool)
        for i in self.net.consumers()[j]:
            node = self.net.nodes[i]
            if isinstance(node.op, AffinePrimitive):
                continue
            ones = np.ones((self.n_domains, *node.shape))
            with np.errstate(invalid="ignore", over="ignore"):
                parts = self._backward(i, ones, np.zeros_like(ones), np.arange(self.n_domains))
            for k, (c, r) in zip(node.inputs, parts):
                if k == j:
                    c, r = c.reshape(self.n_domains, -1), r.reshape(self.n_domains, -1)
                    out |= ~(r <= 1e-12 * np.abs(c) + 1e-290)
        return out

    def _path_entries(self, k: int) -> int:
        return sum(int(np.prod(n.shape)) for n in self.net.nodes[: k + 1])

    def _magnitudes(self, j: int) -> np.ndarray:
        """a_j (D, size_j): bounds of sup |t_j,e| per domain, by back-substituting the unit
        row of every uncertain entry (+∞ elsewhere: never used)."""
        shape = self.net.nodes[j].shape
        size = int(np.prod(shape))
        widest = max(int(np.prod(n.shape)) for n in self.net.nodes[: j + 1])
        per_chunk = max(1, MAX_ROW_ENTRIES // (widest * 4))
        out = np.full((self.n_domains, size), np.inf)
        n_in = int(np.prod(self.net.input_shape))
        cen = np.zeros((self.n_domains, size, n_in)) if self.centres is not None else None
        dom, ent = np.nonzero(self.uncertain[j])
        for a in range(0, dom.size, per_chunk):
            d, e = dom[a:a + per_chunk], ent[a:a + per_chunk]
            lam = np.zeros((d.size, size))
            lam[np.arange(d.size), e] = 1.0
            rb = self.rows(j, lam.reshape(d.size, *shape), d)
            # converting with a_j ≤ the carried bound is never worse than carrying r_j
            out[d, e] = np.fmin(rb.value, self.rows(j, lam.reshape(d.size, *shape), d,
                                                    convert=False).value)
            if cen is not None:
                cen[d, e] = rb.centre
        if cen is not None:
            self.centres[j] = cen
        return out

    def output_rows(self, record: bool = False) -> RowBounds:
        """Every output entry's row, in every domain (row d·K + i: domain d, output i)."""
        shape = self.net.output_shape
        k = int(np.prod(shape))
        lam = np.tile(np.eye(k), (self.n_domains, 1)).reshape(self.n_domains * k, *shape)
        return self.rows(self.net.output, lam, np.repeat(np.arange(self.n_domains), k), record)

    def rows(self, target: int, lam: np.ndarray, row_domain: np.ndarray,
             record: bool = False, convert: bool = True) -> RowBounds:
        """Bounds of the rows ``lam`` (R, *shape of node target), row r in domain
        ``row_domain[r]`` (nondecreasing); ``convert=False``: every radius carried to the
        input (the interval Jacobian enclosure of the rows)."""
        n_rows = lam.shape[0]
        acc = {target: (lam, np.zeros_like(lam))}
        offset = np.zeros(n_rows)
        contributions: dict[int, np.ndarray] = {}
        with np.errstate(invalid="ignore", over="ignore"):
            for i in range(target, 0, -1):
                if i not in acc:
                    continue
                c, r = acc.pop(i)
                if convert and i in self.magnitude and i != target:
                    mask = self.uncertain[i][row_domain]
                    r2 = r.reshape(n_rows, -1)
                    part = np.where(mask, r2, 0.0) * np.where(mask, self.magnitude[i][
                        row_domain], 0.0)
                    offset = round_up(offset + round_up(part.sum(axis=1) * (
                        1 + gamma(part.shape[1] + 2))))
                    if record:
                        contributions[i] = part
                    r = np.where(mask, 0.0, r2).reshape(r.shape)
                for j, (cj, rj) in zip(self.net.nodes[i].inputs,
                                       self._backward(i, c, r, row_domain)):
                    if j in acc:
                        c0, r0 = acc[j]
                        acc[j] = (c0 + cj, round_up(r0 + rj + gamma(2) * np.abs(c0 + cj)))
                    else:
                        acc[j] = (cj, rj)
        if 0 not in acc:  # the target does not depend on the input
            zero = np.zeros((n_rows, int(np.prod(self.net.input_shape))))
            return RowBounds(offset, zero, offset, contributions)
        c, r = (a.reshape(n_rows, -1) for a in acc[0])
        value = round_up(dual_norm_upper(round_up(np.abs(c) + r), self.norm) + offset)
        error = round_up(dual_norm_upper(r, self.norm) + offset)
        value = np.where(np.isnan(value), np.inf, value)
        error = np.where(np.isnan(error), np.inf, error)
        return RowBounds(value, c, error, contributions)

    def _backward(self, i: int, c: np.ndarray, r: np.ndarray, row_domain: np.ndarray):
        """Node i's ``jacobian_backward`` on each row's own domain boxes: one call for affine
        ops (no box dependence) and elementwise activations (boxes gathered per row), one per
        domain otherwise."""
        node = self.net.nodes[i]
        op = node.op
        if isinstance(op, AffinePrimitive):
            parts = op.jacobian_backward(c, r, [self.layers[j] for j in node.inputs])
        elif isinstance(op, Activation):
            boxes = [(self.layers[j][0][row_domain], self.layers[j][1][row_domain])
                     for j in node.inputs]
            parts = op.jacobian_backward(c, r, boxes)
        else:
            parts = None
            for d in np.unique(row_domain):
                sel = np.nonzero(row_domain == d)[0]
                sl = slice(sel[0], sel[-1] + 1)
                boxes = [(self.layers[j][0][d:d + 1], self.layers[j][1][d:d + 1])
                         for j in node.inputs]
                got = op.jacobian_backward(c[sl], r[sl], boxes)
                if got is None:
                    parts = None
                    break
                if parts is None:
                    parts = [(np.empty((c.shape[0], *gc.shape[1:])), np.empty(
                        (c.shape[0], *gc.shape[1:]))) for gc, _ in got]
                for (pc, pr), (gc, gr) in zip(parts, got):
                    pc[sl], pr[sl] = gc, gr
        if parts is None:
            raise JacobianRuleMissing(f"node '{node.name}' ({op.kind}) has no Jacobian rule: "
                                      "the Jacobian bounds do not apply to this network")
        return parts


def domain_norm_upper(rb: RowBounds, n_domains: int, norm: str) -> np.ndarray:
    """Per domain, the certified ‖J‖ from its output rows (K consecutive rows per domain):
    ℓ∞: the largest row bound; ℓ2: min(‖C‖₂ + ‖e‖₂, ‖v‖₂) with C the centre rows, e the row
    errors (‖J − C‖₂ ≤ ‖J − C‖_F ≤ ‖e‖₂) and v the row bounds (‖J‖₂ ≤ ‖J‖_F)."""
    v = rb.value.reshape(n_domains, -1)
    if norm == "inf":
        return v.max(axis=1)
    k = v.shape[1]
    e = rb.error.reshape(n_domains, k)
    c = rb.centre.reshape(n_domains, k, -1)
    out = np.empty(n_domains)
    for d in range(n_domains):
        frob = np.sqrt(np.sum(v[d] ** 2) * (1 + 2.0**-40))
        if not np.all(np.isfinite(c[d])) or not np.isfinite(e[d]).all():
            out[d] = frob
            continue
        split = spectral_norm_upper(c[d]) + np.sqrt(np.sum(e[d] ** 2) * (1 + 2.0**-40))
        out[d] = min(frob, split)
    return round_up(out * (1 + 2.0**-50))
