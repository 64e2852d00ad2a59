"""The relaxed-gate ascent (``boundprop.lipschitz.ceiling``): its values are points of the
gate-free relaxed problem, so every gate-free certified bound on the same enclosures must stay
above them — an attack with gate combinations no single x produces. Checked on hypothesis
networks at the root and on phase-split domains; a planted error in the gate rule is caught."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import boundprop as bp
from boundprop.analysis import output_bounds
from boundprop.domains.batched import DomainBatch, Split
from boundprop.domains.jacobian_linear import JacobianBounds
from boundprop.lipschitz.branching import LipschitzSearch
from boundprop.lipschitz.ceiling import relaxed_gate_ascent
from boundprop.ops.activation import Activation
from boundprop.ops.rules import interval_times
from boundprop.sets import LinfBall
from tests.test_bounds import ACTS, random_mlp
from tests.test_lipschitz_jacobian import (
    DEPTHS,
    RANDOM_NETS,
    SCALES,
    SEEDS,
    activations,
    attack_points,
    jacobians,
    operator_norms,
)

TOL = 1e-9


def root_layers(net, s):
    ob = output_bounds(net, s, method="linear")
    return [(np.asarray(lo), np.asarray(hi)) for lo, hi in ob.layers]


def certified(net, layers):
    """Per-output certified ℓ∞ row bounds on one domain's enclosures."""
    return JacobianBounds(net, [(lo[None], hi[None]) for lo, hi in layers], "inf"
                          ).output_rows().value


def case(tmp, seed, widths, acts, scale):
    rng = np.random.default_rng(seed)
    net = bp.load(random_mlp(tmp, rng, widths, acts))
    return net, LinfBall(rng.standard_normal(net.input_shape), scale), rng


@settings(RANDOM_NETS, max_examples=40)
@given(seed=SEEDS, depth=DEPTHS,
       scale=SCALES,
       acts=activations(ACTS))
def test_ascent_never_beats_the_root_bound(tmp_path_factory, seed, depth, scale, acts):
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(1, 7)) for _ in range(depth + 2)]
    net, s, rng = case(tmp_path_factory.mktemp("ce"), seed, widths, acts, scale)
    layers = root_layers(net, s)
    got = relaxed_gate_ascent(net, layers, starts=16, iters=10, seed=seed)
    assert got is not None
    value, per = got
    bound = certified(net, layers)
    assert np.all(per <= bound * (1 + TOL) + 1e-12)
    # the relaxed problem contains every x's Jacobian: exact norms are points of it too
    exact = operator_norms(jacobians(net, attack_points(s, rng, 200)), "inf")
    assert exact.max() <= bound.max() * (1 + TOL) + 1e-12
    assert value >= 0


@settings(RANDOM_NETS, max_examples=15)
@given(seed=st.integers(0, 10**6))
def test_ascent_never_beats_phase_split_domains(tmp_path_factory, seed):
    """Domains of the activation branching (one-sided gates on split entries, tighter
    enclosures): the ascent on each domain's enclosures stays below its bound."""
    net, s, rng = case(tmp_path_factory.mktemp("ce"), seed, [6, 8, 8, 3], ["Relu"] * 2, 0.5)
    root = root_layers(net, s)
    splits = []
    for _ in range(6):
        cons = []
        for node in (1, 3):  # the two ReLUs' inputs (the Gemm outputs)
            lo, hi = (a.reshape(-1) for a in root[node])
            unstable = np.nonzero((lo < 0) & (hi > 0))[0]
            for e in rng.permutation(unstable)[: int(rng.integers(0, 3))]:
                cons.append(Split(node, int(e), int(rng.choice([-1, 1])), 0.0))
        splits.append(tuple(cons))
    n = len(splits)
    assert all(isinstance(net.nodes[c.node + 1].op, Activation) for cs in splits for c in cs)
    x_lo = np.repeat(root[0][0][None], n, 0)
    x_hi = np.repeat(root[0][1][None], n, 0)
    search = LipschitzSearch(net, root, "inf", "activation", {1: (0.0,), 3: (0.0,)})
    bounds, infeasible, _ = search.bound(x_lo, x_hi, splits)
    batch = DomainBatch(net, root, x_lo, x_hi, splits)
    layers = [(np.asarray(a), np.asarray(b)) for a, b in batch.dbounds]
    # the relaxed problem on the enclosures the bound used: z2 cut under the splits where
    # every first-layer phase is fixed (on uncut enclosures it may rightly exceed the bound)
    layers = search._one_sided(search._cut(layers, splits, batch.infeasible.copy()), splits)
    for d in range(n):
        if infeasible[d]:
            continue
        mine = [(lo[d], hi[d]) for lo, hi in layers]
        value, _ = relaxed_gate_ascent(net, mine, starts=16, iters=10, seed=d)
        assert value <= bounds[d] * (1 + TOL) + 1e-12


def test_a_planted_gate_error_is_caught(tmp_path, monkeypatch):
    """The gate rule with σ' ranges shrunk by a quarter toward their midpoints: on some of
    ten small nets the certified bound falls below a point the ascent finds (and never with
    the real rule)."""
    nets = [case(tmp_path, seed, [4, 6, 3], ["Relu"], 0.5) for seed in range(10)]
    ascents = []
    for net, s, _ in nets:
        layers = root_layers(net, s)
        ascents.append(relaxed_gate_ascent(net, layers)[0])
        assert ascents[-1] <= certified(net, layers).max() * (1 + TOL)

    def shrunk(self, c, r, boxes):
        dlo, dhi = self.derivative_range(*boxes[0])
        m, q = 0.5 * (dlo + dhi), 0.5 * (dhi - dlo)
        return [interval_times(c, r, m - 0.75 * q, m + 0.75 * q)]

    monkeypatch.setattr(Activation, "jacobian_backward", shrunk)
    caught = sum(v > certified(net, root_layers(net, s)).max() * (1 + TOL)
                 for (net, s, _), v in zip(nets, ascents))
    assert caught >= 1


def test_exact_where_every_gate_is_fixed():
    """On a tiny ball every ReLU is stable: the relaxed problem is the one Jacobian, and the
    ascent finds its norm (s = the signs of the worst row)."""
    net = bp.load("models/mlp_784_100_100_10_relu.onnx")
    x = LinfBall(np.zeros(net.input_shape), 1.0).sample(1, np.random.default_rng(3))[0]
    s = LinfBall(x, 1e-7)
    value, _ = relaxed_gate_ascent(net, root_layers(net, s), starts=2, iters=2)
    true = operator_norms(jacobians(net, x[None]), "inf")[0]
    assert true * (1 - 1e-6) <= value <= certified(net, root_layers(net, s)).max() * (1 + TOL)
