"""Constants w.r.t. the parameters: sampled parameter pairs in the ball, Jacobian-vector pairs,
and the descent lemma for one gradient step of the certified size 1/L."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.ops.affine import Dense
from boundprop.sets import Box


def batch_mlp(tmp_path, rng, widths, acts, batch, softmax=False) -> str:
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        w = (rng.standard_normal((a, b)) * np.sqrt(1.5 / a)).astype(np.float32)
        bias = (0.2 * rng.standard_normal(b)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node(acts[i % len(acts)], [prev], [f"a{i}"]))
            prev = f"a{i}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [batch, widths[0]])], [helper.make_tensor_value_info(
            prev, TensorProto.FLOAT, [batch, widths[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / f"mlp_{rng.integers(1 << 30)}.onnx"
    onnx.save(m, str(path))
    return str(path)


def dense_nodes(net) -> list[int]:
    return [i for i, n in enumerate(net.nodes) if isinstance(n.op, Dense)]


def theta_of(net) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(net.nodes[i].op.matrix.copy(), net.nodes[i].op.offset_raw.copy())
            for i in dense_nodes(net)]


def with_theta(net, theta):
    new = copy.copy(net)
    new.nodes = list(net.nodes)
    for i, (w, b) in zip(dense_nodes(net), theta):
        old = net.nodes[i].op
        new.nodes[i] = copy.copy(net.nodes[i])
        new.nodes[i].op = Dense(old.in_shapes[0], w, b, old.axis)
    return new


def flat(theta) -> np.ndarray:
    return np.concatenate([np.concatenate([w.ravel(), b.ravel()]) for w, b in theta])


def unflat(v, like):
    out, k = [], 0
    for w, b in like:
        nw, nb = w.size, b.size
        out.append((v[k:k + nw].reshape(w.shape), v[k + nw:k + nw + nb].reshape(b.shape)))
        k += nw + nb
    return out


def in_ball(rng, theta, rho, frac=1.0):
    """A point of the product of per-layer balls ‖(ΔW, Δb)‖_F ≤ rho."""
    out = []
    for w, b in theta:
        d = rng.standard_normal(w.size + b.size)
        d *= rho * frac * rng.random() ** (1 / d.size) / np.linalg.norm(d)
        out.append((w + d[:w.size].reshape(w.shape), b + d[w.size:].reshape(b.shape)))
    return out


ACTS = ["Softplus", "Tanh", "Sigmoid", "Elu"]


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 3),
       rho=st.sampled_from([0.0, 0.05, 0.5]), loss=st.sampled_from(["squared",
                                                                     "cross_entropy"]))
def test_params_constants_and_descent_lemma(tmp_path, seed, depth, rho, loss):
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(2, 6)) for _ in range(depth + 2)]
    batch = int(rng.integers(1, 4))
    path = batch_mlp(tmp_path, rng, widths, [ACTS[int(rng.integers(4))]], batch)
    net = bp.load(path)
    x = rng.standard_normal(net.input_shape)
    data = Box(x, x)
    if loss == "squared":
        targets = rng.standard_normal(net.output_shape)
    else:
        targets = rng.integers(0, widths[-1], size=batch)
    cert = bp.certify(net, data, wrt="params", param_radius=rho, loss=loss, targets=targets,
                      reduction="mean")
    c, obj = cert.constants, cert.objective
    theta0 = theta_of(net)

    def out(theta):
        return with_theta(net, theta)(x)

    # ℓ and B: pairs of parameter points in the ball
    for _ in range(30):
        t1, t2 = in_ball(rng, theta0, rho), in_ball(rng, theta0, rho)
        if rho == 0:
            t2 = unflat(flat(t1) + 1e-4 * rng.standard_normal(flat(t1).size), t1)
        y1, y2 = out(t1), out(t2)
        d = np.linalg.norm(flat(t1) - flat(t2))
        assert np.linalg.norm(y1 - y2) <= c.lipschitz * d * (1 + 1e-9) + 1e-12
        assert np.linalg.norm(y1) <= c.bound * (1 + 1e-12) or rho == 0
        assert np.all(y1 >= cert.output_lower - 1e-9) and np.all(y1 <= cert.output_upper + 1e-9)

    # descent lemma: F(θ − g/L) ≤ F(θ) − ‖g‖²/(2L), g by central differences
    def objective(v):
        y = out(unflat(v, theta0))
        if loss == "squared":
            return 0.5 * np.sum((y - targets) ** 2) / batch
        z = y - y.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return -np.sum(logp[np.arange(batch), targets]) / batch

    v0 = flat(theta0)
    h = 1e-6
    g = np.array([(objective(v0 + h * e) - objective(v0 - h * e)) / (2 * h)
                  for e in np.eye(v0.size)])
    L = obj.smoothness
    assert np.linalg.norm(g) <= obj.lipschitz * (1 + 1e-6) + 1e-9
    if rho > 0 and np.linalg.norm(g) > 0:
        # Step t = 1/L, shortened if needed so the segment stays in the ball where L holds;
        # descent lemma for t ≤ 1/L: F(θ − t g) ≤ F(θ) − t‖g‖²/2.
        t = min(1.0 / L, rho / np.linalg.norm(g))
        f0, f1 = objective(v0), objective(v0 - t * g)
        assert f1 <= f0 - t * np.dot(g, g) / 2 + 1e-12 * (1 + abs(f0))


def test_params_norm_must_be_2(tmp_path):
    rng = np.random.default_rng(0)
    net = bp.load(batch_mlp(tmp_path, rng, [3, 4, 2], ["Tanh"], 1))
    x = np.zeros(net.input_shape)
    with pytest.raises(bp.BoundpropError, match="norm 2"):
        bp.certify(net, Box(x, x), norm="inf", wrt="params", param_radius=0.1)


def test_params_step_is_useful_on_a_small_fit(tmp_path):
    """The certified step decreases the squared loss on a real fit, step after step (each
    step re-certified on a ball around the current weights)."""
    rng = np.random.default_rng(4)
    net = bp.load(batch_mlp(tmp_path, rng, [3, 8, 2], ["Softplus"], 4))
    x = rng.standard_normal(net.input_shape)
    y = rng.standard_normal(net.output_shape)
    losses = []
    for _ in range(3):
        cert = bp.certify(net, Box(x, x), wrt="params", param_radius=0.5, loss="squared",
                          targets=y)
        theta = theta_of(net)
        v = flat(theta)

        def f(vv, net=net, theta=theta):
            return 0.5 * np.sum((with_theta(net, unflat(vv, theta))(x) - y) ** 2) / 4

        g = np.array([(f(v + 1e-6 * e) - f(v - 1e-6 * e)) / 2e-6 for e in np.eye(v.size)])
        losses.append(f(v))
        net = with_theta(net, unflat(v - g * cert.objective.step_size, theta))
    assert losses[2] < losses[1] < losses[0]
