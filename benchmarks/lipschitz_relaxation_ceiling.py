"""How low can gate-free local Lipschitz bounds go on mnist-net_256x2, prop_0 ε=0.03 (ℓ∞)?

Prints, for the root and for each of the ``--patterns`` worst layer-1 phase patterns (the
first layer's unstable ReLUs fixed, domains of the branching):

- ``bound``: boundprop's certified bound of the domain (back-substitution, grouped rows, cuts);
- ``ascent``: the best point of the gate-free relaxed problem found by
  :func:`boundprop.lipschitz.ceiling.relaxed_gate_ascent` on the domain's enclosures (after the
  cuts; every gate-by-gate relaxation on those enclosures certifies at least this);
- ``ascent_lp``: the same on LP-exact second-layer enclosures (scipy HiGHS, float: a
  measurement, not a certificate), i.e. the floor left to tighter enclosures.

    PYTHONPATH=. python benchmarks/lipschitz_relaxation_ceiling.py [--patterns 3]

Measured (2 cores, shared): root bound 299.2, ascent 198.0; worst pattern (−1, 1, 1, 1, 1, 1)
bound 148.7, ascent 140.8 = ascent_lp 140.8 (the cuts reach the LP enclosures); next 144.1 /
138.1, then all six active 133.2 / 124.8 (the cuts: 83 → 54 uncertain gates). So once the
first layer is enumerated the bound is within 6% of what any gate-free relaxation can give, and
below 140.8 only second-layer phase splits help; the search's best point has ‖J‖ = 52.7.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy.optimize import linprog

import boundprop as bp
from boundprop.analysis import output_bounds
from boundprop.domains.batched import DomainBatch, Split
from boundprop.lipschitz.branching import LipschitzSearch
from boundprop.lipschitz.ceiling import relaxed_gate_ascent
from boundprop.sets import Box
from boundprop.vnnlib import load_vnnlib

MNIST = Path(__file__).resolve().parents[2] / "shared" / "vnncomp2021" / "mnistfc"


def lp_second_layer(net, root, sides, unstable):
    """LP-exact (float) bounds of z2 on the box with the first-layer phases ``sides``."""
    w1, w2 = net.nodes[2].op.matrix, net.nodes[4].op.matrix
    b1 = np.asarray(net.nodes[2].op.offset).reshape(-1)
    b2 = np.asarray(net.nodes[4].op.offset).reshape(-1)
    lo1 = root[2][0].reshape(-1)
    act = np.zeros(w1.shape[0], dtype=bool)
    act[lo1 >= 0] = True
    act[unstable[sides > 0]] = True
    c = w2[:, act] @ w1[act]
    c0 = w2[:, act] @ b1[act] + b2
    a_ub = -sides[:, None] * w1[unstable]
    b_ub = sides * b1[unstable]
    box = list(zip(root[0][0].reshape(-1), root[0][1].reshape(-1)))
    lo, hi = np.empty(len(c)), np.empty(len(c))
    for e in range(len(c)):
        lo[e] = linprog(c[e], A_ub=a_ub, b_ub=b_ub, bounds=box, method="highs").fun + c0[e]
        hi[e] = -linprog(-c[e], A_ub=a_ub, b_ub=b_ub, bounds=box, method="highs").fun + c0[e]
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patterns", type=int, default=3)
    args = ap.parse_args()
    net = bp.load(str(MNIST / "mnist-net_256x2.onnx"))
    box = load_vnnlib(MNIST / "prop_0_0.03.vnnlib", 784, 10).boxes[0]
    s = Box(box.lower.reshape(net.input_shape), box.upper.reshape(net.input_shape))
    root = [(np.asarray(lo), np.asarray(hi)) for lo, hi in
            output_bounds(net, s, method="linear").layers]
    lo1, hi1 = (a.reshape(-1) for a in root[2])
    unstable = np.nonzero((lo1 < 0) & (hi1 > 0))[0]
    search = LipschitzSearch(net, root, "inf", "activation", {2: (0.0,), 4: (0.0,)},
                             grouped=True)
    b, _, _ = search.bound(root[0][0][None], root[0][1][None], [()])
    print(f"root: bound {b[0]:.1f}, ascent {relaxed_gate_ascent(net, root)[0]:.1f}")
    pats = [np.array(p) for p in itertools.product((-1, 1), repeat=len(unstable))]
    splits = [tuple(Split(2, int(u), int(v), 0.0) for u, v in zip(unstable, p)) for p in pats]
    n = len(splits)
    x_lo, x_hi = np.repeat(root[0][0][None], n, 0), np.repeat(root[0][1][None], n, 0)
    bounds, _, _ = search.bound(x_lo, x_hi, splits)
    batch = DomainBatch(net, root, x_lo, x_hi, splits)
    layers = [(np.asarray(a), np.asarray(c)) for a, c in batch.dbounds]
    layers = search._one_sided(search._cut(layers, splits, batch.infeasible.copy()), splits)
    for d in np.argsort(-bounds)[: args.patterns]:
        mine = [(lo[d], hi[d]) for lo, hi in layers]
        asc = relaxed_gate_ascent(net, mine)[0]
        lo2, hi2 = lp_second_layer(net, root, pats[d], unstable)
        mine[4] = (lo2.reshape(mine[4][0].shape), hi2.reshape(mine[4][1].shape))
        asc_lp = relaxed_gate_ascent(net, mine)[0]
        print(f"pattern {tuple(int(v) for v in pats[d])}: bound {bounds[d]:.1f}, ascent "
              f"{asc:.1f}, ascent_lp {asc_lp:.1f} ({int(np.sum((lo2 < 0) & (hi2 > 0)))} "
              "uncertain second-layer gates)")


if __name__ == "__main__":
    main()
