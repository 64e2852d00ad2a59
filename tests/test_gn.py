"""The Gauss-Newton uses: reconstruction, layer fits, the certified safeguard step (descent
lemma), the margin search behind verify, and the `boundprop gn` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

import boundprop as bp
from boundprop.cli import main
from boundprop.gn import Problem, certified_step, fit_layers, reconstruct_input, solve
from boundprop.gn.layers import LAYER_OPS, last_layer_names, parameter_initializers
from boundprop.gn.uses import MarginProblem, margin_search
from boundprop.sets import default_input_set
from tests.conftest import MODELS


def _objective(net, x, y):
    r = net(x.reshape(net.input_shape)) - y
    return 0.5 * float(np.sum(r * r))


@pytest.mark.parametrize("model", ["mlp_tanh.onnx", "mlp_sigmoid.onnx", "mlp_elu.onnx"])
def test_reconstruct_input_reaches_target(model):
    net = bp.load(MODELS / model)
    s = default_input_set(net)
    rng = np.random.default_rng(3)
    hidden, start = s.sample(2, rng)
    y = net(hidden)
    r = reconstruct_input(MODELS / model, y, x0=start, tol=1e-14, max_iter=60)
    assert r.cost <= 1e-10 * max(r.cost0, 1e-30) or r.status.startswith("converged")
    assert _objective(net, r.w, y) <= 1e-8 * (1 + _objective(net, start, y))


def test_fit_last_layer_lowers_cost():
    model = MODELS / "mlp_784_100_100_10_relu.onnx"
    net = bp.load(model)
    rng = np.random.default_rng(0)
    X = default_input_set(net).sample(8, rng).reshape(8, -1)
    Y = np.eye(10)[rng.integers(0, 10, 8)]
    names = last_layer_names(model)
    assert len(names) >= 1
    r = fit_layers(model, X, Y, tol=1e-12, max_iter=10)
    assert r.cost <= 1e-8 * r.cost0  # linear in the last layer: GN is exact
    assert r.forward_passes > 0 and r.ort_calls > 0


@pytest.mark.parametrize("model", ["mlp_tanh.onnx", "mlp_sigmoid.onnx", "mlp_softplus.onnx"])
def test_certified_step_satisfies_descent_lemma(model):
    """F(w − t g) ≤ F(w) − t‖g‖²/2 with the certified t, g the exact gradient (IR float64)."""
    net = bp.load(MODELS / model)
    s = default_input_set(net)
    rng = np.random.default_rng(1)
    for _ in range(3):
        hidden, start = s.sample(2, rng)
        y = net(hidden) + 0.1
        problem = Problem(MODELS / model, variables="input", targets=y, x0=start)
        step = certified_step(problem, radius=0.3)
        w = problem.w0
        jac = problem.exact_jacobian(w)
        r = (net(w.reshape(net.input_shape)) - y).reshape(-1)
        g = jac.T @ r
        t = step(w, g)
        assert 0 < t < np.inf
        assert t * np.linalg.norm(g) <= 0.3 * (1 + 1e-12)
        f0, f1 = _objective(net, w, y), _objective(net, w - t * g, y)
        assert f1 <= f0 - t * float(g @ g) / 2 + 1e-12 * (1 + f0)


def test_certified_step_zero_for_relu_kinks():
    net = bp.load(MODELS / "mlp_relu.onnx")
    x = default_input_set(net).sample(1, np.random.default_rng(0))[0]
    problem = Problem(MODELS / "mlp_relu.onnx", variables="input", targets=net(x) + 1, x0=x)
    step = certified_step(problem, radius=10.0)  # a big ball reaches kinks: L = ∞
    assert step(problem.w0, np.ones(problem.p)) == 0.0


def test_certified_step_for_parameters_descends():
    model = MODELS / "mlp_tanh.onnx"
    net = bp.load(model)
    x = default_input_set(net).sample(1, np.random.default_rng(2))[0]
    names = last_layer_names(model)
    problem = Problem(model, variables=names, inputs=x, targets=net(x) + 0.5)
    step = certified_step(problem, radius=0.2)
    r = solve(problem, max_iter=5, certified_step=step)
    costs = [h["cost"] for h in r.history]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(costs, costs[1:]))


def test_certified_step_refuses_other_parameters():
    model = MODELS / "vgg_small_bn.onnx"
    import onnx

    g = onnx.load(str(model)).graph
    bn_scale = next(n.input[1] for n in g.node if n.op_type == "BatchNormalization")
    net = bp.load(model)
    x = default_input_set(net).sample(1, np.random.default_rng(0))[0]
    problem = Problem(model, variables=[bn_scale], inputs=x, targets=net(x))
    with pytest.raises(bp.BoundpropError, match="Gemm/MatMul/Conv"):
        certified_step(problem, radius=0.1)


def test_margin_search_reaches_a_reachable_conjunction():
    """Unsafe set {y : y_0 ≤ y(x*)_0 − 0.01·|·|...}: built around a known reachable output."""
    net = bp.load(MODELS / "mlp_tanh.onnx")
    s = default_input_set(net)
    rng = np.random.default_rng(5)
    target, start = s.sample(2, rng)
    y = net(target).reshape(-1)
    a = np.vstack([np.eye(len(y)), -np.eye(len(y))])[:2]  # y_0 ≤ y*_0 + 1e-3, y_1 ≤ y*_1 + 1e-3
    b = np.array([y[0] + 1e-3, y[1] + 1e-3])
    x, result = margin_search(net, s.lower, s.upper, a, b, start)
    out = net(x.reshape(net.input_shape)).reshape(-1)
    assert np.all(a @ out <= b)
    assert np.all(x >= s.lower.reshape(-1)) and np.all(x <= s.upper.reshape(-1))


def test_margin_problem_jacobian_matches_jvp():
    net = bp.load(MODELS / "mlp_sigmoid.onnx")
    s = default_input_set(net)
    x0 = s.sample(1, np.random.default_rng(0))[0]
    y = net(x0).reshape(-1)
    mp = MarginProblem(net, s.lower, s.upper, np.eye(len(y))[:1], np.array([y[0] - 1.0]), x0)
    jac, r = mp.jacobian(mp.w0)
    v = np.random.default_rng(1).standard_normal((3, mp.p))
    np.testing.assert_allclose(mp.jvp(mp.w0, v), (jac @ v.T).T, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# CLI


def test_gn_cli_reconstruction(tmp_path, capsys):
    net = bp.load(MODELS / "mlp_tanh.onnx")
    x = default_input_set(net).sample(1, np.random.default_rng(0))[0]
    np.save(tmp_path / "y.npy", net(x))
    code = main(["gn", str(MODELS / "mlp_tanh.onnx"), "--targets", str(tmp_path / "y.npy"),
                 "-o", str(tmp_path / "w.npy"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"].startswith("converged")
    w = np.load(tmp_path / "w.npy")
    assert np.linalg.norm(net(w.reshape(net.input_shape)) - net(x)) < 1e-5


def test_gn_cli_progress_lines(tmp_path, capsys):
    net = bp.load(MODELS / "mlp_sigmoid.onnx")
    x = default_input_set(net).sample(1, np.random.default_rng(0))[0]
    np.save(tmp_path / "y.npy", net(x))
    main(["gn", str(MODELS / "mlp_sigmoid.onnx"), "--targets", str(tmp_path / "y.npy"),
          "--max-iter", "3", "--certified-radius", "0.5"])
    out = capsys.readouterr().out
    assert "cost" in out and "passes" in out and len(out.strip().splitlines()) >= 4


@pytest.mark.parametrize("case", ["bad targets shape", "unknown variable", "missing targets",
                                  "inputs with input variable", "no inputs for weights"])
def test_gn_cli_bad_input(case, tmp_path, capsys):
    model = str(MODELS / "mlp_tanh.onnx")
    np.save(tmp_path / "y.npy", np.zeros(3))
    np.save(tmp_path / "y_ok.npy", np.zeros(bp.load(model).output_shape))
    np.save(tmp_path / "x.npy", np.zeros(bp.load(model).input_shape))
    args = {"bad targets shape": ["--targets", str(tmp_path / "y.npy")],
            "unknown variable": ["--targets", str(tmp_path / "y_ok.npy"), "--variables",
                                 "no_such_tensor", "--inputs", str(tmp_path / "x.npy")],
            "missing targets": ["--targets", str(tmp_path / "nope.npy")],
            "inputs with input variable": ["--targets", str(tmp_path / "y_ok.npy"),
                                           "--inputs", str(tmp_path / "x.npy")],
            "no inputs for weights": ["--targets", str(tmp_path / "y_ok.npy"),
                                      "--variables", "last"]}[case]
    code = main(["gn", model, *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("boundprop: error") and err.count("\n") == 1


def test_audit_uses_gauss_newton_for_output_bounds(tmp_path):
    """The audit's output-bound search includes GN; what it finds stays below the bounds."""
    net = bp.load(MODELS / "mlp_tanh.onnx")
    bp.certify(net, default_input_set(net)).save(tmp_path / "c.json")
    result = bp.audit(tmp_path / "c.json", MODELS / "mlp_tanh.onnx", samples=200)
    assert result.ok
    hows = [r.how for r in result.rows if r.quantity.startswith("output[")]
    assert any("gauss-newton" in (h or "") for h in hows), hows


def test_layer_table_matches_the_parametric_primitives():
    # gn's one table of layer op types (LAYER_OPS) is the set of ONNX op types the importer
    # turns into primitives with the "parametric" rule: no parametric node from another op
    # type, no entry that never yields one
    heads = set()
    for name in ("mlp_tanh.onnx", "lenet.onnx", "mlp_784_100_100_10_relu.onnx",
                 "resnet_block.onnx"):
        net = bp.load(MODELS / name)
        heads |= {node.onnx_op.split("+")[0] for node in net.nodes if node.op.has("parametric")}
        # and the layers' weights are what the certified step accepts as parameters
        assert set(last_layer_names(MODELS / name)) <= parameter_initializers(MODELS / name)
    assert heads == set(LAYER_OPS), heads
