"""Branch and bound on every conjunction a property's certified bounds left open, one after
the other, and the proof of a "verified" (:mod:`boundprop.bab.proof`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boundprop.analysis import output_bounds
from boundprop.bab.proof import build_proof
from boundprop.bab.search import BranchAndBound, choose_mode, count_leaves
from boundprop.domains.alpha import SlopeOptions
from boundprop.ir import Network
from boundprop.sets import Box
from boundprop.vnnlib import Property

# Without a timeout, each conjunction's search stops after this many domains.
DEFAULT_MAX_DOMAINS = 500
# Slope-optimisation iterations per domain (α on each domain's output rows), per mode:
# activation splitting needs them (mnist-net_256x2 prop_0 ε=0.03: the root's margin −0.363
# with CROWN's slopes, −0.182 with 10 iterations, verified in 7 domains); on ACAS Xu's
# input splitting they made the trees no smaller (prop_3: 16.7k domains, not done, vs 6.7k).
SLOPE_ITERATIONS = {"input": 0, "activation": 10}


def domain_slopes(iterations: int) -> SlopeOptions | None:
    """The per-domain slope options of a proof's ``slope_iterations``."""
    return SlopeOptions(iterations=iterations) if iterations > 0 else None


def widened(box: Box) -> Box:
    """The case's box one ulp outwards (covers the file's decimals however they were parsed;
    the verifier's certified bounds use the same box)."""
    return Box(np.nextafter(box.lower, -np.inf), np.nextafter(box.upper, np.inf))


@dataclass
class BranchingOutcome:
    """``status``: "verified" (``proof`` set), "falsified" (a ``confirm`` succeeded) or
    "unknown" (``note``). ``margin``: on "verified", the smallest refutation margin of any
    leaf or root-refuted conjunction (> 0)."""

    status: str
    margin: float = -np.inf
    proof: dict | None = None
    note: str = ""


def root_layers(net: Network, box: Box, method: str, execution: str) -> list | None:
    """The case's enclosures every domain is intersected with (None: some is infinite, e.g.
    float32 overflow, and branch and bound does not apply)."""
    layers = output_bounds(net, widened(box).fit(net.input_shape), method, execution).layers
    if all(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) for lo, hi in layers):
        return layers
    return None


def branch_open_conjunctions(net: Network, prop: Property, per_case: list[np.ndarray],
                             method: str, branching_method: str, execution: str,
                             deadline: float, confirm: dict[int, Callable[[np.ndarray], bool]],
                             progress: Callable[[dict], None] | None = None,
                             max_domains: int | None = None) -> BranchingOutcome:
    """Search each conjunction the case bounds ``per_case`` (the verifier's certified
    margins, > 0 refuted) left open; ``confirm[c]`` checks attack candidates of case c."""
    mode = choose_mode(net)
    if mode is None:
        return BranchingOutcome("unknown", note="no branching applies (a large input and no "
                                "piecewise-linear activation to split)")
    t0 = time.perf_counter()
    trees: list[list[dict | None]] = []
    margin = min((float(m[m > 0].min()) for m in per_case if np.any(m > 0)), default=np.inf)
    domains = leaves = 0
    for c, (box, unsafe) in enumerate(prop.cases):
        trees.append([None] * len(unsafe))
        open_js = [j for j in range(len(unsafe)) if not per_case[c][j] > 0]
        if not open_js:
            continue
        layers = root_layers(net, box, branching_method, execution)
        if layers is None:
            return BranchingOutcome("unknown", note="infinite enclosures (float32 overflow): "
                                    "no branch and bound")
        wide = widened(box).fit(net.input_shape)
        for j in sorted(open_js, key=lambda j: per_case[c][j]):
            a, b = unsafe[j]
            if not len(b):
                return BranchingOutcome("unknown", note="an empty conjunction: every output")
            search = BranchAndBound(net, layers, wide.lower, wide.upper, a, b, execution, mode,
                                    domain_slopes(SLOPE_ITERATIONS[mode]))
            r = search.run(deadline, confirm.get(c), progress, max_domains)
            domains += r.domains
            if r.status != "verified":
                return BranchingOutcome(r.status, note=r.note)
            trees[c][j] = r.tree
            leaves += count_leaves(r.tree)
            margin = min(margin, search.min_refuted)
    stats = {"mode": mode, "domains": domains, "leaves": leaves,
             "seconds": time.perf_counter() - t0}
    proof = None
    if net.source and Path(prop.path).is_file():
        proof = build_proof(net.source, prop.path, method, branching_method, execution, trees,
                            stats, SLOPE_ITERATIONS[mode])
    return BranchingOutcome("verified", margin, proof)
