"""Grouped-vertex row bounds (``boundprop.lipschitz.grouped``): attacked with exact IR
Jacobians (random points, box corners, a dense grid on 2-input nets) and with points of the
gate-free relaxed problem (``relaxed_gate_ascent``, which every bound of that problem must stay
above), at the root and on phase-split domains; planted errors are caught."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import boundprop as bp
import boundprop.lipschitz.grouped as gr
from boundprop.domains.batched import Split
from boundprop.lipschitz import local_lipschitz
from boundprop.lipschitz.branching import LipschitzSearch
from boundprop.lipschitz.ceiling import relaxed_gate_ascent
from boundprop.sets import LinfBall
from tests.test_bounds import ACTS, random_mlp
from tests.test_lipschitz_ceiling import root_layers
from tests.test_lipschitz_jacobian import (
    DEPTHS,
    RANDOM_NETS,
    SCALES,
    SEEDS,
    SET_KINDS,
    activations,
    attack_points,
    grid_case,
    jacobians,
    random_case,
)

TOL = 1e-9


def row_norms(net, xs):
    return np.abs(jacobians(net, xs)).sum(-1)  # (points, outputs): ‖∇f_k(x)‖₁


@settings(RANDOM_NETS, max_examples=40)
@given(seed=SEEDS, depth=DEPTHS,
       kind=SET_KINDS, scale=SCALES,
       group=st.sampled_from([1, 2, 3, 6]),
       acts=activations(ACTS))
def test_rows_hold_on_random_networks(tmp_path_factory, seed, depth, kind, scale, group, acts):
    rng = np.random.default_rng(seed)
    net, s = random_case(tmp_path_factory.mktemp("gr"), rng, depth, kind, scale, acts, 8)
    layers = root_layers(net, s)
    got = gr.grouped_rows(net, layers, group=group)
    assert got is not None
    exact = row_norms(net, attack_points(s, rng, 300)).max(axis=0)
    assert np.all(exact <= got * (1 + TOL) + 1e-12)
    _, relaxed = relaxed_gate_ascent(net, layers, starts=16, iters=10, seed=seed)
    assert np.all(relaxed <= got * (1 + TOL) + 1e-12)


@settings(RANDOM_NETS, max_examples=10)
@given(seed=st.integers(0, 10**6), group=st.sampled_from([1, 2]))
def test_rows_stay_above_a_grid(tmp_path_factory, seed, group):
    """2 inputs on [−1, 1]²: every output's bound is above its 121² grid maximum, at the root
    and on the branched search (which uses the grouped rows in every domain)."""
    net, s, truth = grid_case(tmp_path_factory.mktemp("gr"), seed)
    g = np.linspace(-1, 1, 121)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, *net.input_shape)
    exact = row_norms(net, grid).max(axis=0)
    got = gr.grouped_rows(net, root_layers(net, s), group=group)
    assert np.all(exact <= got * (1 + TOL))
    res = local_lipschitz(net, s, norm="inf", time_budget=60, max_domains=400,
                          search_budget=0.2)
    assert truth["inf"] <= res.upper * (1 + TOL)


@settings(RANDOM_NETS, max_examples=10)
@given(seed=st.integers(0, 10**6))
def test_phase_split_domains(tmp_path_factory, seed):
    """Activation-branching domains with the grouped rows on: each domain's bound stays above
    points of its relaxed problem and above exact Jacobians at points of the set that satisfy
    its splits."""
    rng = np.random.default_rng(seed)
    net = bp.load(random_mlp(tmp_path_factory.mktemp("gr"), rng, [6, 8, 8, 3], ["Relu"] * 2))
    s = LinfBall(rng.standard_normal(net.input_shape), 0.5)
    root = root_layers(net, s)
    xs = attack_points(s, rng, 2000)
    z1 = xs.reshape(len(xs), -1) @ net.nodes[1].op.matrix.T + net.nodes[1].op.offset.reshape(-1)
    lo, hi = (a.reshape(-1) for a in root[1])
    unstable = np.nonzero((lo < 0) & (hi > 0))[0]
    splits = [()]
    for e in unstable[:3]:
        splits = [c + (Split(1, int(e), side, 0.0),) for c in splits for side in (-1, 1)]
    n = len(splits)
    search = LipschitzSearch(net, root, "inf", "activation", {1: (0.0,), 3: (0.0,)},
                             grouped=True)
    bounds, infeasible, _ = search.bound(np.repeat(root[0][0][None], n, 0),
                                         np.repeat(root[0][1][None], n, 0), splits)
    norms = row_norms(net, xs).max(axis=1)
    for d, cons in enumerate(splits):
        inside = np.ones(len(xs), dtype=bool)
        for c in cons:
            inside &= (z1[:, c.index] >= 0) if c.side > 0 else (z1[:, c.index] <= 0)
        if inside.any():
            assert not infeasible[d]
            assert norms[inside].max() <= bounds[d] * (1 + TOL) + 1e-12


@pytest.mark.parametrize("plant", ["half_vertices", "scaled"])
def test_planted_errors_are_caught(tmp_path, monkeypatch, plant):
    """Only the vertices with last coordinate +1 (as if F(−v) = F(v)), or the bound scaled by
    0.7: on ten small nets the relaxed ascent beats the planted bound (never the real one)."""
    nets = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        net = bp.load(random_mlp(tmp_path, rng, [4, 6, 3], ["Relu"]))
        layers = root_layers(net, LinfBall(rng.standard_normal(net.input_shape), 0.5))
        _, relaxed = relaxed_gate_ascent(net, layers)
        assert np.all(relaxed <= gr.grouped_rows(net, layers, group=2) * (1 + TOL))
        nets.append((net, layers, relaxed))
    real = gr._vertices
    if plant == "half_vertices":
        monkeypatch.setattr(gr, "_vertices", lambda g: real(g)[real(g)[:, -1] > 0])
        bound = lambda net, layers: gr.grouped_rows(net, layers, group=2)  # noqa: E731
    else:
        bound = lambda net, layers: 0.7 * gr.grouped_rows(net, layers, group=2)  # noqa: E731
    caught = sum(bool(np.any(r > bound(net, la) * (1 + TOL))) for net, la, r in nets)
    assert caught >= 5


@pytest.mark.parametrize("name", ["resnet_block", "lenet"])
def test_not_a_chain_is_none(name):
    """Residual or convolutional graphs keep the back-substituted bound alone."""
    from boundprop.sets import default_input_set

    net = bp.load(f"models/{name}.onnx")
    assert gr.grouped_rows(net, root_layers(net, default_input_set(net))) is None


def test_shipped_relu_mlp_row_bounds():
    """mlp_784_100_100_10_relu on an ℓ∞ ball: grouped rows above exact Jacobians."""
    net = bp.load("models/mlp_784_100_100_10_relu.onnx")
    rng = np.random.default_rng(0)
    s = LinfBall(rng.random(net.input_shape), 0.02)
    got = gr.grouped_rows(net, root_layers(net, s))
    assert np.all(row_norms(net, attack_points(s, rng, 400)).max(axis=0) <= got * (1 + TOL))
