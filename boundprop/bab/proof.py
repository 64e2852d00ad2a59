"""Proofs of "verified" (schema ``boundprop.proof/1``): what the verifier found, in a form
anyone can re-check (:mod:`boundprop.checker.proof`).

Each leaf's bounds are those of :class:`~boundprop.domains.batched.DomainBatch` on the case's
enclosures by ``branching_method``, with ``slope_iterations`` of slope optimisation on the
output rows (0: CROWN's slopes).

A property's cases are boxes with unsafe conjunctions (:mod:`boundprop.vnnlib`). Each
conjunction of each case is refuted either at the root — by the case's certified bounds, the
verifier's first step, which the checker recomputes with the same function — or by a split
tree, written in preorder as a flat list of nodes (no nesting limit):

- ``["x", j, v]``: split input coordinate j at v; the subtree of [lo_j, v] follows, then the
  subtree of [v, hi_j];
- ``["z", k, i, t]``: split entry i (flat) of node k at t; the subtree of z ≤ t follows, then
  that of z ≥ t;
- ``["leaf", r, bound]``: row r of the conjunction has the certified lower bound ``bound``
  > b_r on this domain (the checker recomputes it; the value is a claim, never trusted);
  r = m (the conjunction's row count, when m > 1) names the average of its rows
  (:func:`~boundprop.bab.search.refutation_rows`);
- ``["empty"]``: the domain's constraints leave no input.

Every split covers its domain by construction (both halves, closed), so the leaves cover the
case's box: a leaf removed or a split dropped breaks the preorder or leaves a domain the
recomputed bounds do not refute.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boundprop.domains.batched import Split
from boundprop.errors import BoundpropError

SCHEMA = "boundprop.proof/1"


class ProofError(BoundpropError):
    """A malformed proof (the message says where)."""


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def preorder(tree: dict) -> list[list]:
    """The split tree (nested dicts of :class:`~boundprop.bab.search.BranchAndBound`) as
    its flat preorder node list."""
    out, stack = [], [tree]
    while stack:
        t = stack.pop()
        if "split" in t:
            out.append(list(t["split"]))
            stack.extend(reversed(t["children"]))
        elif t.get("infeasible"):
            out.append(["empty"])
        elif "refuted_by" in t:
            out.append(["leaf", t["refuted_by"], t["bound"]])
        else:
            raise ProofError("the split tree has an open domain: not a proof")
    return out


@dataclass
class Leaf:
    """A leaf domain: its input box (flat), its constraints, and the claim."""

    lo: np.ndarray
    hi: np.ndarray
    splits: tuple[Split, ...]
    row: int | None  # the refuting row; None: claimed empty
    bound: float


def _int(v, what: str, limit: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < limit:
        raise ProofError(f"{what}: expected an integer in [0, {limit}), got {v!r}")
    return v


def _float(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
        raise ProofError(f"{what}: expected a finite number, got {v!r}")
    return float(v)


def leaves(nodes: list, lo: np.ndarray, hi: np.ndarray, n_rows: int,
           node_sizes: list[int], where: str) -> list[Leaf]:
    """Parse a preorder node list over the box [lo, hi] (flat) into its leaf domains; every
    malformed node, a premature end or trailing nodes raise :class:`ProofError`."""
    if not isinstance(nodes, list) or not nodes:
        raise ProofError(f"{where}: the tree must be a non-empty list of nodes")
    out: list[Leaf] = []
    # stack of domains still to be matched with a subtree, last on top
    stack: list[tuple[np.ndarray, np.ndarray, tuple[Split, ...]]] = [(lo, hi, ())]
    for pos, node in enumerate(nodes):
        at = f"{where}, node {pos}"
        if not stack:
            raise ProofError(f"{at}: nodes after the tree is complete")
        d_lo, d_hi, cons = stack.pop()
        if not isinstance(node, list) or not node:
            raise ProofError(f"{at}: a node must be a non-empty list")
        kind = node[0]
        if kind == "x" and len(node) == 3:
            j = _int(node[1], f"{at}: input coordinate", len(d_lo))
            v = _float(node[2], f"{at}: split value")
            if not d_lo[j] <= v <= d_hi[j]:
                raise ProofError(f"{at}: split value {v} outside [{d_lo[j]}, {d_hi[j]}]")
            left_hi, right_lo = d_hi.copy(), d_lo.copy()
            left_hi[j], right_lo[j] = v, v
            stack.append((right_lo, d_hi, cons))
            stack.append((d_lo, left_hi, cons))
        elif kind == "z" and len(node) == 4:
            k = _int(node[1], f"{at}: node", len(node_sizes))
            i = _int(node[2], f"{at}: entry", node_sizes[k])
            t = _float(node[3], f"{at}: split point")
            stack.append((d_lo, d_hi, cons + (Split(k, i, 1, t),)))
            stack.append((d_lo, d_hi, cons + (Split(k, i, -1, t),)))
        elif kind == "leaf" and len(node) == 3:
            out.append(Leaf(d_lo, d_hi, cons, _int(node[1], f"{at}: row", n_rows),
                            _float(node[2], f"{at}: bound")))
        elif kind == "empty" and len(node) == 1:
            out.append(Leaf(d_lo, d_hi, cons, None, np.inf))
        else:
            raise ProofError(f"{at}: unknown node {node[:4]!r}")
    if stack:
        raise ProofError(f"{where}: the tree ends with {len(stack)} domain(s) not covered")
    return out


def build_proof(model_path: str | Path, property_path: str | Path, method: str,
                branching_method: str, execution: str, trees: list[list[dict | None]],
                stats: dict, slope_iterations: int = 0) -> dict:
    """The proof document: ``trees[c][j]`` the split tree of conjunction j of case c, None
    where the case's certified bounds refute it at the root."""
    cases = []
    for case in trees:
        cases.append({"conjunctions": [
            {"root": True} if t is None else {"tree": preorder(t)} for t in case]})
    return {"schema": SCHEMA,
            "model": {"file": Path(model_path).name, "sha256": file_sha256(model_path)},
            "property": {"file": Path(property_path).name,
                         "sha256": file_sha256(property_path)},
            "method": method, "branching_method": branching_method, "execution": execution,
            "slope_iterations": slope_iterations, "cases": cases, "stats": stats}
