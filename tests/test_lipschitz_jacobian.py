"""Local Lipschitz bounds through the Jacobian graph (``boundprop.lipschitz``): attacked with
exact IR Jacobians at many points (random, box corners, near kinks), on shipped models,
hypothesis networks and branched domains; a planted error is caught."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import boundprop as bp
import boundprop.domains.jacobian_linear as jl
from boundprop.analysis import output_bounds
from boundprop.audit.jacobian_search import exact_jacobians, jacobian_norms
from boundprop.cli import main as cli
from boundprop.domains.jacobian_linear import JacobianBounds, JacobianRuleMissing
from boundprop.lipschitz import local_lipschitz
from boundprop.sets import Box, L2Ball, LinfBall, default_input_set
from boundprop.vnnlib import load_vnnlib
from tests.conftest import VNNCOMP, needs_vnncomp
from tests.test_bounds import ACTS, random_mlp

# Hypothesis settings of the random-network tests: slow examples (no deadline), no example
# database (a failure is reproduced from its printed seed), and the function-scoped temporary
# folder fixture they write their ONNX files to.
RANDOM_NETS = settings(deadline=None, database=None,
                       suppress_health_check=[HealthCheck.function_scoped_fixture])
SEEDS = st.integers(0, 2**31 - 1)
DEPTHS = st.integers(1, 3)
SET_KINDS = st.sampled_from(["box", "linf", "l2"])
SCALES = st.sampled_from([0.01, 0.3, 2.0])


def activations(choices, n: int = 3):
    """n activations of a random MLP, each drawn from ``choices``."""
    return st.lists(st.sampled_from(choices), min_size=n, max_size=n)


SHIPPED = ["mlp_relu", "mlp_sigmoid", "mlp_tanh", "mlp_gelu", "mlp_elu", "mlp_leakyrelu",
           "mlp_prelu", "mlp_clip", "mlp_hardsigmoid", "sklearn_mlp_regressor",
           "mlp_784_100_100_10_relu", "torch_mlp_gelu_dynamo"]


def jacobians(net, xs: np.ndarray) -> np.ndarray:
    return exact_jacobians(net, xs.reshape(xs.shape[0], -1))


def operator_norms(jac: np.ndarray, norm: str) -> np.ndarray:
    return jacobian_norms(jac, norm)[0]


def attack_points(s, rng, n: int = 400) -> np.ndarray:
    """Random points of the set, and (for boxes) random corners: where ReLU patterns are
    extreme."""
    xs = [s.sample(n, rng)]
    if not isinstance(s, L2Ball):
        lo, hi = s.lower, s.upper
        corners = np.where(rng.random((n // 4, *lo.shape)) < 0.5, lo, hi)
        xs.append(corners)
    return np.concatenate(xs)


def random_case(folder, rng, depth: int, kind: str, scale: float, acts, max_width: int = 7):
    """A random MLP of ``depth`` hidden layers (widths 1 … max_width − 1) and a random set of
    ``kind`` (box, linf, l2) and size ``scale`` around a random centre."""
    widths = [int(rng.integers(1, max_width)) for _ in range(depth + 2)]
    net = bp.load(random_mlp(folder, rng, widths, acts))
    c = rng.standard_normal(net.input_shape)
    s = {"box": lambda: Box(c - scale * rng.random(c.shape), c + scale * rng.random(c.shape)),
         "linf": lambda: LinfBall(c, scale), "l2": lambda: L2Ball(c, scale)}[kind]()
    return net, s


def violations(net, s, rb, norm: str, xs: np.ndarray) -> tuple[int, int]:
    """(rows exceeding their value bound, rows farther from their centre than their error
    bound) over the points xs, for the root's output rows ``rb``."""
    jac = jacobians(net, xs)
    k = jac.shape[1]
    dual = (lambda v: np.abs(v).sum(-1)) if norm == "inf" else (
        lambda v: np.sqrt((v * v).sum(-1)))
    tol = 1e-9 * (1 + np.abs(jac).sum(-1))
    over = dual(jac) > rb.value[:k][None] + tol
    far = dual(jac - rb.centre[:k][None]) > rb.error[:k][None] + tol
    return int(over.sum()), int(far.sum())


def root_rows(net, s, norm):
    ob = output_bounds(net, s, method="linear")
    layers = [(np.asarray(lo)[None], np.asarray(hi)[None]) for lo, hi in ob.layers]
    return JacobianBounds(net, layers, norm).output_rows()


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("name", SHIPPED)
def test_row_bounds_hold_on_shipped_models(name, norm):
    net = bp.load(f"models/{name}.onnx")
    s = default_input_set(net)
    rb = root_rows(net, s, norm)
    rng = np.random.default_rng(0)
    assert violations(net, s, rb, norm, attack_points(s, rng)) == (0, 0)
    res = local_lipschitz(net, s, norm=norm)
    norms = operator_norms(jacobians(net, attack_points(s, rng, 200)), norm)
    assert norms.max() <= res.upper * (1 + 1e-9)
    assert 0 < res.lower <= res.upper


@pytest.mark.parametrize("name", ["softmax_head", "layernorm_mlp"])
def test_ops_without_a_jacobian_rule_are_named(name):
    net = bp.load(f"models/{name}.onnx")
    with pytest.raises(JacobianRuleMissing, match="has no Jacobian rule"):
        local_lipschitz(net, default_input_set(net))


@settings(RANDOM_NETS, max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 4),
       kind=SET_KINDS, scale=SCALES,
       norm=st.sampled_from(["inf", "2"]),
       acts=st.lists(st.sampled_from(ACTS), min_size=4, max_size=4))
def test_random_networks(tmp_path_factory, seed, depth, kind, scale, norm, acts):
    rng = np.random.default_rng(seed)
    net, s = random_case(tmp_path_factory.mktemp("jl"), rng, depth, kind, scale, acts)
    rb = root_rows(net, s, norm)
    assert violations(net, s, rb, norm, attack_points(s, rng, 600)) == (0, 0)


def test_exact_where_every_unit_is_stable():
    """On a tiny box every ReLU is stable: the bound is ‖J‖ itself (and the attack above
    would see any slack below it)."""
    net = bp.load("models/mlp_784_100_100_10_relu.onnx")
    x = default_input_set(net).sample(1, np.random.default_rng(3))[0]
    s = LinfBall(x, 1e-7)
    for norm in ("inf", "2"):
        got = local_lipschitz(net, s, norm=norm)
        true = operator_norms(jacobians(net, x[None]), norm)[0]
        assert true <= got.upper <= true * (1 + 1e-6)


# ---------------------------------------------------------------- branching
def grid_case(tmp_path, seed: int):
    """A random 2-8-8-3 ReLU net on [−1, 1]², with max ‖J‖ (both norms) over a 121² grid."""
    rng = np.random.default_rng(seed)
    net = bp.load(random_mlp(tmp_path, rng, [2, 8, 8, 3], ["Relu", "Relu"]))
    s = Box(-np.ones(net.input_shape), np.ones(net.input_shape))
    g = np.linspace(-1, 1, 121)
    jac = jacobians(net, np.stack(np.meshgrid(g, g), -1).reshape(-1, *net.input_shape))
    return net, s, {n: operator_norms(jac, n).max() for n in ("inf", "2")}


@settings(RANDOM_NETS, max_examples=12)
@given(seed=st.integers(0, 10**6), norm=st.sampled_from(["inf", "2"]))
def test_input_branching_stays_above_a_grid(tmp_path_factory, seed, norm):
    """2 inputs: the branched Jacobian bound (no LMI) tightens, monotonically, and stays
    above the grid."""
    net, s, truth = grid_case(tmp_path_factory.mktemp("jl"), seed)
    root = local_lipschitz(net, s, norm=norm, lmi=False)
    got = local_lipschitz(net, s, norm=norm, time_budget=60, max_domains=3000, search_budget=0.5,
                          lmi=False)
    assert truth[norm] <= got.upper * (1 + 1e-9)
    assert got.upper <= root.upper
    assert all(b[1] <= a[1] for a, b in zip(got.history, got.history[1:]))


@settings(RANDOM_NETS, max_examples=3)
@given(seed=st.integers(0, 10**6))
def test_domain_lmis_stay_above_a_grid(tmp_path_factory, seed):
    """ℓ2 with every input-split domain also bounded by its own set-local LMI: above the
    grid's largest ‖J‖₂."""
    net, s, truth = grid_case(tmp_path_factory.mktemp("jl"), seed)
    kw = {"norm": "2", "time_budget": 60, "max_domains": 100, "search_budget": 0.5}
    got = local_lipschitz(net, s, **kw)
    assert got.domain_lmi and truth["2"] <= got.upper * (1 + 1e-9)


def test_a_planted_error_is_caught(tmp_path, monkeypatch):
    """Gates shrunk by a quarter toward their midpoint are unsound: branching then ends
    below the grid's maximum, which the test above would report."""
    net, s, truth = grid_case(tmp_path, 2)
    kw = {"time_budget": 60, "max_domains": 3000, "search_budget": 0.5}
    assert local_lipschitz(net, s, **kw).upper >= truth["inf"]
    real = jl.Activation.derivative_range

    def shrunk(self, lo, hi):
        dlo, dhi = real(self, lo, hi)
        m, r = 0.5 * (dlo + dhi), 0.5 * (dhi - dlo)
        return m - 0.75 * r, m + 0.75 * r

    monkeypatch.setattr(jl.Activation, "derivative_range", shrunk)
    assert local_lipschitz(net, s, **kw).upper < truth["inf"]


def test_activation_branching_stays_above_samples(tmp_path):
    rng = np.random.default_rng(7)
    net = bp.load(random_mlp(tmp_path, rng, [20, 16, 16, 4], ["Relu", "Relu"]))
    x = rng.standard_normal(net.input_shape)
    s = LinfBall(x, 0.3)
    root = local_lipschitz(net, s, norm="inf")
    got = local_lipschitz(net, s, norm="inf", time_budget=60, max_domains=100, search_budget=0.5)
    assert got.mode == "activation" and got.domains > 1
    xs = attack_points(s, rng, 4000)
    assert operator_norms(jacobians(net, xs), "inf").max() <= got.upper * (1 + 1e-9)
    assert got.upper <= root.upper


def test_one_sided_gates_only_on_split_entries(tmp_path):
    """A split moves its entry off the kink (one-sided σ'); other entries keep [0, 1]."""
    from boundprop.domains.batched import Split
    from boundprop.lipschitz.branching import LipschitzSearch

    rng = np.random.default_rng(1)
    net = bp.load(random_mlp(tmp_path, rng, [20, 16, 4], ["Relu"]))
    s = LinfBall(rng.standard_normal(net.input_shape), 2.0)
    ob = output_bounds(net, s, method="linear")
    root = [(np.asarray(lo), np.asarray(hi)) for lo, hi in ob.layers]
    search = LipschitzSearch(net, root, "inf", "activation", {1: (0.0,)})
    layers = [(lo[None], hi[None]) for lo, hi in root]
    lo1 = root[1][0].reshape(-1)
    e = int(np.argmax((lo1 < 0) & (root[1][1].reshape(-1) > 0)))
    out = search._one_sided(layers, [(Split(1, e, 1, 0.0),)])
    assert out[1][0].reshape(-1)[e] > 0 and layers[1][0].reshape(-1)[e] < 0
    assert np.array_equal(np.delete(out[1][0].reshape(-1), e), np.delete(lo1, e))


@needs_vnncomp()
def test_acas_branching_tightens_by_orders_of_magnitude():
    net = bp.load(str(VNNCOMP / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx"))
    p = load_vnnlib(VNNCOMP / "acasxu" / "prop_1.vnnlib", 5, 5)
    box = p.boxes[0]
    s = Box(box.lower.reshape(net.input_shape), box.upper.reshape(net.input_shape))
    got = local_lipschitz(net, s, norm="inf", time_budget=60, max_domains=600, search_budget=0.5)
    assert got.upper < 0.1 * local_lipschitz(net, s, norm="inf").upper
    rng = np.random.default_rng(0)
    xs = attack_points(s, rng, 2000)
    assert operator_norms(jacobians(net, xs), "inf").max() <= got.upper


# ---------------------------------------------------------------- command line
def test_lipschitz_command(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli(["lipschitz", "models/mlp_relu.onnx", "--norm", "2", "--json", "-o",
                str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == doc
    net = bp.load("models/mlp_relu.onnx")
    assert doc["upper"] == local_lipschitz(net, default_input_set(net), norm="2").upper
    assert 0 < doc["lower"] <= doc["upper"] and doc["branching"] is None


@pytest.mark.parametrize("argv, message", [
    (["models/softmax_head.onnx"], "has no Jacobian rule"),
    (["models/mlp_relu.onnx", "--time-budget", "-1"], "--time-budget -1"),
    (["models/mlp_relu.onnx", "--clip", "0", "1"], "--clip applies"),
    (["models/mlp_relu.onnx", "--vnnlib", "missing.vnnlib"], "missing.vnnlib"),
])
def test_lipschitz_command_bad_input(argv, message, capsys, tmp_path):
    out = tmp_path / "r.json"
    assert cli(["lipschitz", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
