"""Re-verification of a ``boundprop.proof/1`` (:mod:`boundprop.bab.proof`): nothing in the
file is trusted but its structure.

1. The model's and the property's SHA-256 match the files given.
2. Each case's certified bounds are recomputed with the verifier's own function (same method,
   same execution); a conjunction the proof says is refuted at the root must be refuted there.
3. Every other conjunction needs a split tree. It is parsed over the case's box: each split
   has both halves, so the leaves cover the box (input splits) or both phases of every split
   entry (activation splits); a missing leaf or a trailing node is an error.
4. Every leaf's bounds are recomputed (:class:`~boundprop.domains.batched.DomainBatch`, on
   the case's enclosures by the proof's ``branching_method``): the leaf must be empty or some
   row of the conjunction must have a lower bound > b. A claimed bound above the recomputed
   one (beyond a relative 1e-9, for summation-order differences between batches) is a false
   claim and rejects the proof too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boundprop.bab.proof import SCHEMA, Leaf, ProofError, file_sha256, leaves
from boundprop.bab.run import domain_slopes, root_layers, widened
from boundprop.bab.search import refutation_rows
from boundprop.domains.alpha import SlopeOptions
from boundprop.domains.batched import DomainBatch
from boundprop.ir import Network
from boundprop.vnnlib import load_vnnlib

CHECK_BATCH = 512  # leaves bounded per batch
CLAIM_SLACK = 1e-9  # relative: a claim may exceed the recomputed bound by this much


@dataclass
class ProofCheck:
    valid: bool
    reason: str = ""
    leaves: int = 0
    elapsed_s: float = 0.0
    prover_seconds: float | None = None


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ProofError(message)


def check_proof(proof: dict, net: Network, model_path: str | Path,
                property_path: str | Path) -> ProofCheck:
    """Re-verify ``proof`` for the model (loaded as ``net``, from ``model_path``) and the
    VNN-LIB property file; never raises on an invalid proof (``valid`` False, ``reason``)."""
    t0 = time.perf_counter()
    try:
        n_leaves = _check(proof, net, Path(model_path), Path(property_path))
    except ProofError as e:
        return ProofCheck(False, str(e), elapsed_s=time.perf_counter() - t0)
    stats = proof.get("stats") if isinstance(proof.get("stats"), dict) else {}
    seconds = stats.get("seconds")
    return ProofCheck(True, leaves=n_leaves, elapsed_s=time.perf_counter() - t0,
                      prover_seconds=seconds if isinstance(seconds, int | float) else None)


def _check(proof: dict, net: Network, model_path: Path, property_path: Path) -> int:
    # deferred: the verifier imports the branch-and-bound package, which this module serves
    from boundprop.verifier import ESCALATION, _certified_margins

    _require(isinstance(proof, dict) and proof.get("schema") == SCHEMA,
             f"not a proof: the schema must be '{SCHEMA}'")
    for key, path in (("model", model_path), ("property", property_path)):
        entry = proof.get(key)
        _require(isinstance(entry, dict) and entry.get("sha256") == file_sha256(path),
                 f"the proof is about another {key} (SHA-256 of {path.name} differs)")
    method, execution = proof.get("method"), proof.get("execution")
    branching = proof.get("branching_method")
    _require(method in ("interval", "linear", "alpha") and execution in ("real", "float32")
             and branching in ("interval", "linear", "alpha"),
             "unknown method, branching_method or execution")
    _require(branching == ESCALATION.get(method, method),
             f"branching_method must be {ESCALATION.get(method, method)!r} for {method!r}")
    iterations = proof.get("slope_iterations", 0)
    _require(isinstance(iterations, int) and not isinstance(iterations, bool)
             and 0 <= iterations <= 1000, "slope_iterations must be an integer in [0, 1000]")
    prop = load_vnnlib(property_path, int(np.prod(net.input_shape)),
                       int(np.prod(net.output_shape)))
    cases = proof.get("cases")
    _require(isinstance(cases, list) and len(cases) == len(prop.cases),
             f"the proof must have one entry per case ({len(prop.cases)})")
    _, per_case, _, _ = _certified_margins(net, prop, method, execution, np.inf)
    total = 0
    for c, (case, (box, unsafe)) in enumerate(zip(cases, prop.cases)):
        conjs = case.get("conjunctions") if isinstance(case, dict) else None
        _require(isinstance(conjs, list) and len(conjs) == len(unsafe),
                 f"case {c}: one entry per conjunction ({len(unsafe)}) needed")
        layers = None
        for j, (entry, (a, b)) in enumerate(zip(conjs, unsafe)):
            where = f"case {c}, conjunction {j}"
            if per_case[c][j] > 0:
                continue  # refuted by the recomputed root bounds, whatever the entry says
            _require(isinstance(entry, dict) and "tree" in entry,
                     f"{where}: not refuted by the root bounds, and no split tree")
            if layers is None:
                layers = root_layers(net, box, branching, execution)
                _require(layers is not None, f"case {c}: infinite enclosures")
            wide = widened(box)
            a, b = refutation_rows(a, b)
            found = leaves(entry["tree"], wide.lower.reshape(-1), wide.upper.reshape(-1),
                           len(b), [int(np.prod(n.shape)) for n in net.nodes], where)
            _check_leaves(net, layers, execution, found, a, b, where, domain_slopes(iterations))
            total += len(found)
    return total


def _check_leaves(net: Network, layers: list, execution: str, found: list[Leaf],
                  a: np.ndarray, b: np.ndarray, where: str,
                  slopes: SlopeOptions | None) -> None:
    """Recompute every leaf's bounds in batches; raise on the first leaf not refuted."""
    shape = net.input_shape
    for start in range(0, len(found), CHECK_BATCH):
        part = found[start:start + CHECK_BATCH]
        batch = DomainBatch(net, layers, np.stack([lf.lo for lf in part]).reshape(-1, *shape),
                            np.stack([lf.hi for lf in part]).reshape(-1, *shape),
                            [lf.splits for lf in part], execution)
        low = batch.spec_lower(a, slopes=slopes)
        for i, lf in enumerate(part):
            at = f"{where}, leaf {start + i}"
            if batch.infeasible[i]:
                continue
            _require(lf.row is not None, f"{at}: claimed empty, but it is not")
            _require(bool(np.any(low[i] > b)),
                     f"{at}: no row's recomputed lower bound exceeds b "
                     f"(best margin {float(np.max(low[i] - b)):.3g})")
            slack = CLAIM_SLACK * (1.0 + abs(low[i, lf.row]))
            _require(lf.bound <= low[i, lf.row] + slack,
                     f"{at}: claimed bound {lf.bound:.17g} of row {lf.row} exceeds the "
                     f"recomputed {low[i, lf.row]:.17g}")
