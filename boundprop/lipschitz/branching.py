"""Branching on the Jacobian bound: the set is cut into domains until the largest domain
bound is close to the best lower bound, or the time budget ends.

sup_{x∈S} ‖J(x)‖ is the maximum over any cover of S by domains of each domain's sup, so the
certified value is the largest bound over the open leaves (each leaf's bound is also capped
by its parent's, the leaf being a subset): splitting the worst leaf never raises it, and the
search is anytime. A leaf is

- a sub-box (``mode="input"``, inputs of at most :data:`INPUT_SPLIT_MAX` values), halved on
  the coordinate i maximising Σ_e w_e·|C_e,i|·width_i / width(z_e): w_e the offset gate entry
  e added to the worst row, C_e the centre of e's own Jacobian row (how fast z_e moves with
  x_i), width(z_e) its enclosure's width — the share of e's uncertainty one halving removes;
- or phase constraints on kinks of piecewise-linear activations (``mode="activation"``):
  z_e ≤ t | z_e ≥ t on the unstable entry e with the largest offset w_e in the worst row,
  in the earliest node that has one (a phase fixed early narrows every later enclosure:
  mnist-net_256x2 ε=0.03 reached 233 in 3 s this way, 258 by the largest offset overall).
  With the phase fixed, σ' is one-sided there: the gate is exact, and the domain's other
  enclosures tighten (:class:`~boundprop.domains.batched.DomainBatch`). The input of a
  smooth σ (sigmoid, tanh, softplus…; GenBaB-style) is split at the midpoint t of the
  domain's interval [l, u] instead: each half's gate is σ' over [l, t] or [t, u], narrower.

On a split z_e ≥ t (or ≤ t) the gate uses σ' on (t, u] (or [l, t)): the Lipschitz constant
of f on a convex set is the essential supremum of ‖∇f‖, the points with z_e = t are a null
set where ∇z_e ≠ 0, and where ∇z_e = 0 the gate multiplies a zero tangent.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from boundprop.domains.batched import DomainBatch, Split
from boundprop.domains.jacobian_linear import JacobianBounds, RowBounds, domain_norm_upper
from boundprop.domains.lipsdp import lipschitz_lmi_cached
from boundprop.ir import Network
from boundprop.lipschitz.cuts import first_layers, tighten
from boundprop.lipschitz.grouped import grouped_rows

INPUT_SPLIT_MAX = 16
# Domains bounded per round at first; the batch then grows or shrinks toward ~0.5 s a round.
FIRST_BATCH = 8
MAX_BATCH = 512
MAX_LEAVES = 200_000


@dataclass(order=True)
class Leaf:
    key: float
    order: int
    lo: np.ndarray = field(compare=False)
    hi: np.ndarray = field(compare=False)
    splits: tuple[Split, ...] = field(compare=False, default=())
    bound: float = field(compare=False, default=np.inf)
    score: np.ndarray | None = field(compare=False, default=None)  # split choice data


class LipschitzSearch:
    """Best-first branching over the domains of one input set."""

    def __init__(self, net: Network, root_layers: list, norm: str, mode: str | None,
                 kinks: dict[int, tuple[float, ...]], grouped: bool = False,
                 lmi: bool = False):
        self.net, self.root, self.norm, self.mode = net, root_layers, norm, mode
        self.grouped = grouped and norm == "inf"  # also bound rows by input groups
        self.lmi = lmi and norm == "2"  # also the set-local LipSDP-Neuron bound per domain
        self.first = first_layers(net)  # x → z1 → ReLU → z2: z2 tightened under the splits
        self.kinks = kinks  # gated node -> kink points of its consumers
        self.leaves: list[Leaf] = []
        self.count = itertools.count()
        self.bounded = 0
        self.history: list[tuple[float, float]] = []

    # ------------------------------------------------------------------ bounding
    def bound(self, lo: np.ndarray, hi: np.ndarray, splits: list[tuple[Split, ...]]
              ) -> tuple[np.ndarray, np.ndarray, list]:
        """Bounds (D,) of ‖J‖ on each domain (−inf on an empty one), and the split data."""
        batch = DomainBatch(self.net, self.root, lo, hi, splits)
        layers = [(np.asarray(a), np.asarray(b)) for a, b in batch.dbounds]
        infeasible = batch.infeasible.copy()
        if self.first is not None and any(splits):
            layers = self._cut(layers, splits, infeasible)
        layers = self._one_sided(layers, splits)
        jb = JacobianBounds(self.net, layers, self.norm, keep_centres=self.mode == "input")
        rb = jb.output_rows(record=self.mode is not None)
        d = lo.shape[0]
        if self.grouped:
            rb = self._with_grouped(rb, layers, infeasible)
        bounds = domain_norm_upper(rb, d, self.norm)
        if self.lmi:
            bounds = self._with_lmi(bounds, layers, infeasible)
        bounds[infeasible] = -np.inf
        self.bounded += d
        scores = [self._score(jb, rb, layers, i) if self.mode else None for i in range(d)]
        return bounds, infeasible, scores

    def _cut(self, layers: list, splits: list[tuple[Split, ...]], infeasible: np.ndarray
             ) -> list:
        """z2's enclosures intersected, per domain with every first-layer phase fixed, with
        the Lagrangian bounds under its splits (:func:`~boundprop.lipschitz.cuts.tighten`);
        a domain left with an empty enclosure is infeasible (``infeasible`` updated)."""
        k2 = self.first[2]
        lo2, hi2 = (a.reshape(a.shape[0], -1).copy() for a in layers[k2])
        for d, cons in enumerate(splits):
            if infeasible[d] or not cons:
                continue
            unsure = (lo2[d] < 0) & (hi2[d] > 0)  # only these change a gate
            if not unsure.any():
                continue
            got = tighten(self.net, self.first, [(lo[d], hi[d]) for lo, hi in layers], cons,
                          unsure)
            if got is None:
                continue
            lo2[d], hi2[d] = np.fmax(lo2[d], got[0]), np.fmin(hi2[d], got[1])
            infeasible[d] |= bool(np.any(lo2[d] > hi2[d]))
        layers = list(layers)
        layers[k2] = (lo2.reshape(layers[k2][0].shape), hi2.reshape(layers[k2][1].shape))
        return layers

    def _with_grouped(self, rb: RowBounds, layers: list, infeasible: np.ndarray) -> RowBounds:
        """ℓ∞ row bounds: each row's smaller of the back-substituted and the grouped-vertex
        bound (:func:`~boundprop.lipschitz.grouped.grouped_rows`) on its domain."""
        k = int(np.prod(self.net.output_shape))
        value = rb.value.copy()
        for d in np.nonzero(~infeasible)[0]:
            got = grouped_rows(self.net, [(lo[d], hi[d]) for lo, hi in layers])
            if got is not None:
                value[d * k:(d + 1) * k] = np.fmin(value[d * k:(d + 1) * k], got)
        return RowBounds(value, rb.centre, rb.error, rb.contributions)

    def _with_lmi(self, bounds: np.ndarray, layers: list, infeasible: np.ndarray
                  ) -> np.ndarray:
        """ℓ2: each domain's smaller of its Jacobian bound and the LipSDP-Neuron bound with
        slopes local to the domain (a Lipschitz bound of f on that convex domain, so of
        ‖J‖ there; the true α of each range counts, e.g. GELU's σ' ≥ 0.04 on a sub-box)."""
        bounds = bounds.copy()
        for d in np.nonzero(~infeasible)[0]:
            got = lipschitz_lmi_cached(self.net, [(lo[d], hi[d]) for lo, hi in layers],
                                       quick=True).value
            if got is not None:
                bounds[d] = min(bounds[d], got)
        return bounds

    def _one_sided(self, layers: list, splits: list[tuple[Split, ...]]) -> list:
        """The enclosures with each split entry moved off its kink (one-sided σ' there)."""
        if not any(splits):
            return layers
        layers = [(lo.copy(), hi.copy()) if any(s.node == k for c in splits for s in c)
                  else (lo, hi) for k, (lo, hi) in enumerate(layers)]
        for d, cons in enumerate(splits):
            for s in cons:
                lo, hi = (a.reshape(a.shape[0], -1) for a in layers[s.node])
                if s.side > 0:
                    lo[d, s.index] = max(lo[d, s.index], np.nextafter(s.point, np.inf))
                else:
                    hi[d, s.index] = min(hi[d, s.index], np.nextafter(s.point, -np.inf))
        return layers

    def _score(self, jb: JacobianBounds, rb: RowBounds, layers: list, d: int):
        """Split data of domain d from its worst output row."""
        k = int(np.prod(self.net.output_shape))
        worst = d * k + int(np.argmax(rb.value[d * k:(d + 1) * k]))
        if self.mode == "input":
            lo, hi = layers[0]
            width = (hi[d] - lo[d]).reshape(-1)
            score = np.zeros_like(width)
            for j, w in rb.contributions.items():
                zlo, zhi = (a[d].reshape(-1) for a in layers[j])
                cen = jb.centres.get(j)
                if cen is None:
                    continue
                share = w[worst] / np.maximum(zhi - zlo, 1e-300)
                score += share @ np.abs(cen[d])
            return score * width
        for j in sorted(rb.contributions):  # the earliest node first
            points = self.kinks.get(j)
            if points is None:
                continue
            zlo, zhi = (a[d].reshape(-1) for a in layers[j])
            if not points:  # smooth σ: the widest-offset entry, at its interval's midpoint
                mid = 0.5 * (zlo + zhi)
                cand = np.where((zlo < mid) & (mid < zhi) & np.isfinite(mid),
                                rb.contributions[j][worst], -1.0)
                e = int(np.argmax(cand))
                if cand[e] > 0:
                    return (j, e, float(mid[e]))
                continue
            for t in points:
                cand = np.where((zlo < t) & (t < zhi), rb.contributions[j][worst], -1.0)
                e = int(np.argmax(cand))
                if cand[e] > 0:
                    return (j, e, t)
        return None

    # ------------------------------------------------------------------ search
    def push(self, lo, hi, splits, bound, score) -> None:
        if bound == -np.inf:
            return
        heapq.heappush(self.leaves, Leaf(-bound, next(self.count), lo, hi, splits, bound,
                                         score))

    def upper(self) -> float:
        return self.leaves[0].bound if self.leaves else 0.0

    def children(self, leaf: Leaf) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
        if self.mode == "input":
            if leaf.score is None or not np.any(leaf.score > 0):
                width = (leaf.hi - leaf.lo).reshape(-1)
                i = int(np.argmax(width))
            else:
                i = int(np.argmax(leaf.score))
            flat_lo, flat_hi = leaf.lo.reshape(-1), leaf.hi.reshape(-1)
            mid = 0.5 * (flat_lo[i] + flat_hi[i])
            a_hi, b_lo = flat_hi.copy(), flat_lo.copy()
            a_hi[i], b_lo[i] = mid, mid
            return [(leaf.lo, a_hi.reshape(leaf.hi.shape), leaf.splits),
                    (b_lo.reshape(leaf.lo.shape), leaf.hi, leaf.splits)]
        if leaf.score is None:
            return []
        j, e, t = leaf.score
        return [(leaf.lo, leaf.hi, leaf.splits + (Split(j, e, side, t),)) for side in (-1, 1)]

    def run(self, deadline: float, lower: Callable[[], float],
            points: Callable[[np.ndarray], None], target_ratio: float,
            progress: Callable[[dict], None] | None, t0: float,
            max_domains: int | None = None, cap: float = np.inf) -> None:
        """Split the worst leaves until the deadline, ``max_domains`` bounded, the leaf cap,
        or min(upper, ``cap``) ≤ target·lower (``cap``: another certified bound of the same
        constant, e.g. the global LipSDP-Neuron one)."""
        batch, per_domain = FIRST_BATCH, 0.0
        while self.leaves and time.perf_counter() + per_domain * 2 * batch < deadline:
            if (min(self.upper(), cap) <= target_ratio * lower()
                    or len(self.leaves) > MAX_LEAVES):
                break
            if max_domains is not None and self.bounded >= max_domains:
                break
            taken, kids = [], []
            while self.leaves and len(kids) < 2 * batch:
                leaf = heapq.heappop(self.leaves)
                ch = self.children(leaf)
                if not ch:
                    self.push(leaf.lo, leaf.hi, leaf.splits, leaf.bound, None)
                    break
                taken.append(leaf)
                kids += [(c, leaf.bound) for c in ch]
            if not kids:
                break
            t_round = time.perf_counter()
            lo = np.stack([c[0] for c, _ in kids])
            hi = np.stack([c[1] for c, _ in kids])
            bounds, _, scores = self.bound(lo, hi, [c[2] for c, _ in kids])
            for ((clo, chi, cs), parent), b, sc in zip(kids, bounds, scores):
                self.push(clo, chi, cs, min(b, parent) if b > -np.inf else b, sc)
            if self.mode == "input":
                points(0.5 * (lo + hi))
            elapsed = time.perf_counter() - t_round
            per_domain = elapsed / len(kids)
            batch = int(min(MAX_BATCH, max(1, batch * (2 if elapsed < 0.25 else 0.5)),
                            max(1, (deadline - time.perf_counter()) / (2 * per_domain + 1e-12))))
            now = time.perf_counter() - t0
            self.history.append((now, self.upper()))
            if progress is not None:
                progress({"leaves": len(self.leaves), "upper": self.upper(),
                          "lower": lower(), "elapsed": now})

