"""Branch and bound on one unsafe conjunction A·y ≤ b over one input box.

A domain is refuted when some row k has a certified lower bound min A_k·y > b_k on it
(:class:`~boundprop.domains.batched.DomainBatch`, every domain of a round in one batch), or
when its constraints leave no input (infeasible). An open domain is split in two:

- ``mode="input"`` (few inputs, e.g. ACAS Xu's 5): on the input coordinate j maximising
  |λ_j|·(hi_j − lo_j), λ the input coefficients of the linear bound of the domain's most
  promising row — halving coordinate j raises that bound by up to |λ_j|·(hi_j − lo_j)/2;
- ``mode="activation"``: on an entry z_i of a node feeding a piecewise-linear activation whose
  range [l, u] contains a kink t (z_i ≤ t and z_i ≥ t: both phases), the one maximising
  |Λ_i|·(t − l)(u − t)/(u − l) — the gap of the upper relaxation line at the kink (BaBSR's
  intercept score), weighted by the row's coefficient Λ_i on the activation's output.

The search is best-first (the lowest margin first) on batches of domains; each round the
input minimisers of the relaxed bounds are handed to ``confirm`` (the verifier's attack,
which checks them with onnxruntime). It ends when every domain is refuted ("verified": the
split tree, whose leaves each name their refuting row, is the proof), when ``confirm``
accepts a point ("falsified"), or at the deadline or the queue cap ("unknown").
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from boundprop.domains.alpha import SlopeOptions
from boundprop.domains.batched import DomainBatch, Split
from boundprop.domains.walker import Box
from boundprop.ir import Network

MODES = ("input", "activation")
INPUT_SPLIT_MAX_DIM = 16  # input splitting for inputs of at most this many values
ROUND_SECONDS = 1.0  # target duration of one bounding round (the batch size adapts)
MAX_BATCH = 2048
MAX_QUEUE = 200_000  # open domains kept at most (memory cap): beyond, "unknown"
# With a domain budget instead of a deadline (no timeout): no branching when bounding the root
# domain takes longer than this (seconds), which the budget would multiply by hundreds.
ROOT_COST_LIMIT = 0.05


@dataclass(eq=False)
class Domain:
    """An open part of the problem: its input box (flat), constraints and proof-tree node."""

    lo: np.ndarray
    hi: np.ndarray
    splits: tuple[Split, ...]
    tree: dict
    margin: float = -np.inf  # max_k(lower bound of A_k·y − b_k): > 0 refuted
    choice: tuple | None = None  # how to split it next; None: it cannot be split


@dataclass
class BabResult:
    """``status``: "verified" (``tree`` is the complete split tree), "falsified" (``confirm``
    accepted a point), or "unknown" (``note`` says why). ``margin``: the lowest margin of
    the open domains (a certified lower bound of min over the box of max_k(A_k·y − b_k)
    while domains remain; +∞ once verified)."""

    status: str
    tree: dict
    margin: float
    domains: int  # domains bounded
    rounds: int
    elapsed_s: float
    note: str = ""
    stats: dict = field(default_factory=dict)


def choose_mode(net: Network) -> str | None:
    """Input splitting for small inputs, activation splitting when the network has
    piecewise-linear activations to split, else None (no branch and bound)."""
    if int(np.prod(net.input_shape)) <= INPUT_SPLIT_MAX_DIM:
        return "input"
    return "activation" if splittable_nodes(net) else None


def splittable_nodes(net: Network) -> list[tuple[int, int, tuple[float, ...]]]:
    """(node k, its elementwise consumer j, the consumer's branch points) for every node k
    feeding an op with branch points (the pre-activations of ReLUs)."""
    out = []
    for j, node in enumerate(net.nodes[1:], start=1):
        points = node.op.branch_points()
        if points and len(node.inputs) == 1 and node.op.in_shapes[0] == node.shape:
            out.append((node.inputs[0], j, tuple(points)))
    return out


class BranchAndBound:
    """The search of one conjunction (rows ``a`` (m, n_out), bounds ``b``) over the box
    [lo, hi] (the model's input shape), with the root problem's enclosures ``root_layers``
    (``OutputBounds.layers``, all finite, of the same ``execution``)."""

    def __init__(self, net: Network, root_layers: list[Box], lo: np.ndarray, hi: np.ndarray,
                 a: np.ndarray, b: np.ndarray, execution: str = "float32",
                 mode: str = "input", slopes: SlopeOptions | None = None) -> None:
        assert mode in MODES, mode
        self.net, self.root, self.execution, self.mode = net, root_layers, execution, mode
        self.a, self.b = refutation_rows(a, b)
        self.lo, self.hi = np.asarray(lo, float).reshape(-1), np.asarray(hi, float).reshape(-1)
        self.splittable = splittable_nodes(net)
        self.slopes = slopes  # optimise each domain's output slopes (None: CROWN's)
        self.tree: dict = {}
        self.counter = itertools.count()
        self.bounded = 0
        self.min_refuted = np.inf  # the smallest margin of a refuted leaf

    # ---------------------------------------------------------------- bounding
    def bound(self, domains: list[Domain]) -> np.ndarray:
        """Bound the domains (one batch), set their margins and next splits, mark the
        refuted ones' tree nodes as leaves; returns the input minimisers of each domain's
        most promising row (D, n_in) (attack candidates)."""
        shape = self.net.input_shape
        batch = DomainBatch(self.net, self.root, np.stack([d.lo for d in domains]).reshape(
            -1, *shape), np.stack([d.hi for d in domains]).reshape(-1, *shape),
            [d.splits for d in domains], self.execution)
        low, bp = batch.spec_lower(self.a, record=True, slopes=self.slopes)
        self.bounded += len(domains)
        m = len(self.b)
        with np.errstate(invalid="ignore"):
            gaps = low - self.b[None]
        gaps = np.where(np.isnan(gaps), -np.inf, gaps)
        best = np.argmax(gaps, axis=1)
        rows = np.arange(len(domains)) * m + best  # the most promising row of each domain
        for d, dom in enumerate(domains):
            dom.margin = float(gaps[d, best[d]])
            if batch.infeasible[d]:
                dom.tree.update({"infeasible": True})
            elif dom.margin > 0:
                dom.tree.update({"refuted_by": int(best[d]), "bound": float(low[d, best[d]])})
                self.min_refuted = min(self.min_refuted, dom.margin)
        open_ = [d for d, dom in enumerate(domains) if not dom.tree]
        if self.mode == "input":
            lam0 = bp.lams[0].reshape(len(domains) * m, -1)[rows]
            self._choose_input_splits([domains[d] for d in open_], lam0[open_])
        else:
            self._choose_activation_splits(domains, open_, batch, bp.lams, rows)
        return bp.point.reshape(len(domains) * m, -1)[rows]

    def _choose_input_splits(self, domains: list[Domain], lam0: np.ndarray) -> None:
        """Per domain, the coordinate j maximising |λ_j|·(hi_j − lo_j), λ the input
        coefficients of its most promising row (halving j raises that bound by up to half
        of it); the widest coordinate where λ vanishes."""
        for dom, lam in zip(domains, lam0):
            width = dom.hi - dom.lo
            score = np.abs(lam) * width
            j = int(np.argmax(score)) if np.any(score > 0) else int(np.argmax(width))
            mid = 0.5 * (dom.lo[j] + dom.hi[j])
            dom.choice = ("x", j, float(mid)) if dom.lo[j] < mid < dom.hi[j] else None

    def _choose_activation_splits(self, domains: list[Domain], open_: list[int],
                                  batch: DomainBatch, lams: dict[int, np.ndarray],
                                  rows: np.ndarray) -> None:
        best_score = np.full(len(domains), -1.0)
        choice: list[tuple | None] = [None] * len(domains)
        for k, j, points in self.splittable:
            lo, hi = (x.reshape(len(domains), -1) for x in batch.dbounds[k])
            lam = lams.get(j)
            lam = (lam.reshape(lam.shape[0], -1)[rows] if lam is not None
                   else np.zeros_like(lo))
            # rows with Λ < 0 pay the upper line's intercept (both phases remove it); Λ > 0
            # rows use a lower line through the kink's side: a small weight
            weight = np.maximum(-lam, 0.0) + 0.01 * np.maximum(lam, 0.0)
            for t in points:
                with np.errstate(invalid="ignore", divide="ignore"):
                    gap = np.where((lo < t) & (t < hi), (t - lo) * (hi - t) / (hi - lo), -1.0)
                # tie-break on the gap alone where no row reaches the entry
                score = np.where(gap > 0, weight * gap + 1e-12 * gap, -1.0)
                for d in open_:
                    i = int(np.argmax(score[d]))
                    if score[d, i] > best_score[d]:
                        best_score[d] = score[d, i]
                        choice[d] = ("z", k, i, float(t))
        for d in open_:
            domains[d].choice = choice[d]

    # ---------------------------------------------------------------- splitting
    def children(self, dom: Domain) -> list[Domain]:
        """The two halves of a domain; its tree node becomes their parent."""
        kind, *what = dom.choice
        left, right = {}, {}
        dom.tree.update({"split": [kind, *what], "children": [left, right]})
        if kind == "x":
            j, v = what
            hi_l, lo_r = dom.hi.copy(), dom.lo.copy()
            hi_l[j], lo_r[j] = v, v
            out = [Domain(dom.lo, hi_l, dom.splits, left), Domain(lo_r, dom.hi, dom.splits,
                                                                   right)]
        else:
            k, i, t = what
            out = [Domain(dom.lo, dom.hi, dom.splits + (Split(k, i, -1, t),), left),
                   Domain(dom.lo, dom.hi, dom.splits + (Split(k, i, 1, t),), right)]
        return out

    def run(self, deadline: float, confirm: Callable[[np.ndarray], bool] | None = None,
            progress: Callable[[dict], None] | None = None,
            max_domains: int | None = None) -> BabResult:
        """Search until every domain is refuted, ``confirm`` accepts a candidate, the
        ``deadline`` (perf_counter seconds) passes, or ``max_domains`` were bounded."""
        t0 = time.perf_counter()
        root = Domain(self.lo, self.hi, (), self.tree)
        queue: list[tuple[float, int, Domain]] = []
        rounds = 0

        def result(status: str, note: str = "") -> BabResult:
            margin = min((dom.margin for _, _, dom in queue), default=np.inf)
            return BabResult(status, self.tree, margin if status != "verified" else np.inf,
                             self.bounded, rounds, time.perf_counter() - t0, note,
                             stats={"domains_per_s": self.bounded / max(
                                 time.perf_counter() - t0, 1e-9)})

        t_round = time.perf_counter()
        todo, points = [root], self.bound([root])
        while todo:
            rounds += 1
            per_domain = (time.perf_counter() - t_round) / len(todo)
            if confirm is not None and confirm(points):
                return result("falsified")
            if max_domains is not None and rounds == 1 and per_domain > ROOT_COST_LIMIT:
                return result("unknown", f"one domain costs {per_domain:.2g} s: no branching "
                              "without a timeout")
            for dom in todo:
                if dom.tree:
                    continue
                if dom.choice is None:
                    return result("unknown", "a domain cannot be split further")
                heapq.heappush(queue, (dom.margin, next(self.counter), dom))
            if not queue:
                return result("verified")
            if progress is not None:
                progress({"phase": "branch and bound", "domains_left": len(queue),
                          "best_bound": queue[0][0], "domains": self.bounded,
                          "elapsed": time.perf_counter() - t0})
            if len(queue) > MAX_QUEUE:
                return result("unknown", f"more than {MAX_QUEUE} open domains")
            if max_domains is not None and self.bounded >= max_domains:
                return result("unknown", f"domain budget ({max_domains}) spent")
            left = deadline - time.perf_counter()
            batch = int(np.clip(ROUND_SECONDS / max(per_domain, 1e-6) / 2, 1, MAX_BATCH))
            if np.isfinite(left):
                batch = min(batch, max(1, int(left / max(per_domain, 1e-6) / 2)))
            if left <= 2 * per_domain:
                return result("unknown", "timed out")
            t_round = time.perf_counter()
            parents = [heapq.heappop(queue)[2] for _ in range(min(batch, len(queue)))]
            todo = [c for p in parents for c in self.children(p)]
            points = self.bound(todo)
        return result("verified")  # pragma: no cover - the loop returns


def refutation_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose certified bound can refute the conjunction A·y ≤ b on a domain:
    each row A_k·y ≤ b_k, and (for m > 1 rows) their average (row m): if every row held, the
    average would, so a lower bound of mean(A)·y above mean(b) refutes the conjunction too —
    sometimes where no single row's bound does."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.asarray(b, dtype=np.float64)
    if len(b) > 1:
        a, b = np.vstack([a, a.mean(axis=0)]), np.append(b, b.mean())
    return a, b


def count_leaves(tree: dict) -> int:
    """Leaves of a split tree (iteratively: trees can be deep)."""
    n, stack = 0, [tree]
    while stack:
        t = stack.pop()
        if "children" in t:
            stack.extend(t["children"])
        else:
            n += 1
    return n
