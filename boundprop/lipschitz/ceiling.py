"""How low can a gate-free Jacobian bound go? Points of the relaxed problem, found by ascent.

The Jacobian bounds of :mod:`boundprop.domains.jacobian_linear` hold for every choice of the
gates d_e ∈ [d_lo,e, d_hi,e] (each σ' range on its enclosure), chosen independently of each
other and of the input x, and every direction s of the unit ℓ∞ cube. For a chain network
(affine maps W_j and elementwise activations, J = W_L·D_{L−1}·…·D_1·W_1) that relaxed problem
is

    R_k = max { e_kᵀ W_L D_{L−1} ⋯ D_1 W_1 s : s ∈ [−1, 1]^n, D_j diagonal, D_j ∈ [d_lo, d_hi] },

and any bound of that kind on output k is ≥ R_k: no relaxation of the gates one by one can
certify less, only coupling the gates to x (which gate patterns occur together) can.
:func:`relaxed_gate_ascent` finds points of the relaxed set by block coordinate ascent (the
objective is linear in s and in each D_j alone: s = sign of the row, each D_j entry at the end
of its range the sign of row × tangent picks), from random vertices, and returns the best
value met: a lower bound of max_k R_k, hence of every gate-free certified ℓ∞ bound on the same
enclosures (the value is exact float64 arithmetic at a feasible point up to rounding, a few
ulps; the tests allow 1e−9 relative).

It is a diagnostic and an attack: on mnist-net_256x2, prop_0 ε=0.03 it found 198 at the root
(certified 342.7), 197.4 with the 6 unstable layer-1 phases fixed to the worst pattern, and
140.8 in the worst such domain even with LP-exact layer-2 enclosures
(benchmarks/lipschitz_relaxation_ceiling.py), so the issue-15 target (≤ 100) needs second-layer
phase splits (gate–input coupling); and since every
certified gate-free bound must stay above it, it attacks those bounds with gate combinations no
single x produces (tests/test_lipschitz_ceiling.py).
"""

from __future__ import annotations

import numpy as np

from boundprop.ir import Network
from boundprop.ops.activation import Activation
from boundprop.ops.affine import Dense
from boundprop.ops.shape import Reshape


def chain(net: Network, layers: list[tuple[np.ndarray, np.ndarray]]) -> list | None:
    """The network as a list of ("W", matrix) and ("D", d_lo, d_hi) factors (input first),
    gates from ``layers`` (per node (lo, hi), no domain axis); None if it is not a chain of
    Dense (last axis), Reshape and elementwise activations."""
    out: list = []
    for k, node in enumerate(net.nodes[1:], start=1):
        if list(node.inputs) != [k - 1]:
            return None
        op = node.op
        if isinstance(op, Reshape):
            continue
        if isinstance(op, Dense) and op.axis == -1 and int(np.prod(node.shape)) == \
                op.matrix.shape[0]:
            out.append(("W", np.asarray(op.matrix, dtype=np.float64)))
        elif isinstance(op, Activation):
            lo, hi = (np.asarray(a, dtype=np.float64).reshape(-1) for a in layers[k - 1])
            d_lo, d_hi = op.derivative_range(lo, hi)
            out.append(("D", np.asarray(d_lo, dtype=np.float64).reshape(-1),
                        np.asarray(d_hi, dtype=np.float64).reshape(-1)))
        else:
            return None
    return out


def _row(factors: list, gates: list, k: int, upto: int, s: int) -> np.ndarray:
    """e_kᵀ times the factors after index ``upto`` (``s`` rows, one per start): the row
    that multiplies factor ``upto``'s output."""
    lam = None
    for i in range(len(factors) - 1, upto, -1):
        f = factors[i]
        if f[0] == "W":
            lam = np.broadcast_to(f[1][k], (s, f[1].shape[1])).copy() if lam is None \
                else lam @ f[1]
        else:
            lam = lam * gates[i]
    return lam


def _tangent(factors: list, gates: list, x: np.ndarray, upto: int) -> np.ndarray:
    """The tangent after factors 0..upto−1 applied to directions x (S, n_in)."""
    t = x
    for i in range(upto):
        f = factors[i]
        t = t @ f[1].T if f[0] == "W" else t * gates[i]
    return t


def relaxed_gate_ascent(net: Network, layers: list[tuple[np.ndarray, np.ndarray]],
                        starts: int = 32, iters: int = 20, seed: int = 0
                        ) -> tuple[float, np.ndarray] | None:
    """(max_k value, per-output values): the best e_kᵀ W_L D ⋯ D W_1 s found, s in the unit
    ℓ∞ cube and each gate D_j entry anywhere in its σ' range on ``layers`` (per node (lo,
    hi)), i.e. ‖row‖₁ at a point of the relaxed problem (see the module doc). None when the
    network is not a chain of Dense/Reshape/elementwise activations."""
    factors = chain(net, layers)
    if factors is None or not factors or factors[-1][0] != "W":
        return None
    rng = np.random.default_rng(seed)
    where = [i for i, f in enumerate(factors) if f[0] == "D"]
    n_out = factors[-1][1].shape[0]
    per = np.zeros(n_out)
    for k in range(n_out):
        gates: list = [None] * len(factors)
        for i in where:
            lo, hi = factors[i][1], factors[i][2]
            gates[i] = np.where(rng.random((starts, lo.size)) < 0.5, lo, hi)
        best = 0.0
        for _ in range(iters):
            row = _row(factors, gates, k, -1, starts)
            best = max(best, float(np.abs(row).sum(axis=1).max()))
            s = np.where(row >= 0, 1.0, -1.0)
            for i in where:  # each gate layer at its best with the others and s fixed
                g = _row(factors, gates, k, i, starts) * _tangent(factors, gates, s, i)
                gates[i] = np.where(g > 0, factors[i][2], factors[i][1])
            row = _row(factors, gates, k, -1, starts)
            best = max(best, float(np.abs(row).sum(axis=1).max()))
        per[k] = best
    return float(per.max()), per
