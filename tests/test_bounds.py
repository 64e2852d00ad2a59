"""Soundness and tightness of certified output bounds (interval and linear).

Every bound is attacked: samples of the input set evaluated by onnxruntime (float32) must lie in
the bounds computed with ``execution="float32"``; samples evaluated by the float64 IR must lie in
the real-arithmetic bounds; ReLU nets are also probed at box corners.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.analysis import output_bounds
from boundprop.runtime import OrtModel
from boundprop.sets import Box, InputSetError, L2Ball, LinfBall, default_input_set
from tests.conftest import by_cost, model_id, shipped_models, vnncomp_models

ALL_MODELS = shipped_models() + vnncomp_models()


def model_set(net):
    try:
        return default_input_set(net)
    except InputSetError:
        return Box(np.zeros(net.input_shape), np.ones(net.input_shape))


def assert_inside(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    below = y < lo
    above = y > hi
    n_bad = int(below.sum() + above.sum())
    if n_bad:
        worst = float(max((lo - y)[below].max(initial=0), (y - hi)[above].max(initial=0)))
        pytest.fail(f"{what}: {n_bad} sampled outputs outside the certified bounds "
                    f"(worst by {worst:.3g})")


def _activation_size(net) -> int:
    return sum(int(np.prod(n.shape)) for n in net.nodes)


def check_samples_inside(path, n_ir: int, n_ort: int) -> None:
    net = bp.load(path)
    s = model_set(net)
    rng = np.random.default_rng(1)
    x = s.sample(n_ir, rng)
    y = net(x)
    x32 = s.sample(n_ort, rng).astype(np.float32)
    y32 = OrtModel(path, net.input_name, net.output_name)(x32)
    for method in ("interval", "linear"):
        # Real-arithmetic bounds vs the float64 IR.
        real = output_bounds(net, s, method)
        assert_inside(y, real.lower, real.upper, f"{path.name} {method} (IR float64)")
        # Float32-execution bounds vs onnxruntime on float32 samples.
        f32 = output_bounds(net, s, method, execution="float32")
        assert_inside(y32, f32.lower, f32.upper, f"{path.name} {method} (onnxruntime)")


@pytest.mark.parametrize("path", by_cost(ALL_MODELS))
def test_samples_inside_bounds(path):
    """10,000 onnxruntime samples on models cheap to run one by one (MLPs, ACAS Xu, MNIST),
    2,000 on the CNNs in the default run; the slow variant takes 10,000 everywhere."""
    small = _activation_size(bp.load(path)) <= 20_000
    check_samples_inside(path, n_ir=10_000 if small else 1_000,
                         n_ort=10_000 if small else 2_000)


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL_MODELS, ids=model_id)
def test_samples_inside_bounds_10k(path):
    check_samples_inside(path, n_ir=10_000, n_ort=10_000)


def _is_relu_net(net) -> bool:
    return any(n.op.kind == "Relu" for n in net.nodes) and all(
        n.family in ("input", "affine", "join") or n.op.kind in ("Relu", "maxpool")
        for n in net.nodes)


@pytest.mark.parametrize("path", [p for p in ALL_MODELS if int(np.prod(
    bp.load(p).input_shape)) <= 16 and _is_relu_net(bp.load(p))], ids=model_id)
def test_relu_nets_corners_inside_bounds(path):
    net = bp.load(path)
    s = model_set(net)
    d = int(np.prod(net.input_shape))
    corners = (np.arange(2**d)[:, None] >> np.arange(d)[None]) & 1
    lo, hi = s.lower.reshape(-1), s.upper.reshape(-1)
    x = np.where(corners == 1, hi, lo).reshape((-1, *net.input_shape))
    for method in ("interval", "linear", "alpha"):
        b = output_bounds(net, s, method)
        assert_inside(net(x), b.lower, b.upper, f"{path.name} {method} corners")


@pytest.mark.parametrize("path", by_cost(ALL_MODELS))
def test_linear_never_looser_than_interval(path):
    net = bp.load(path)
    s = model_set(net)
    ibp = output_bounds(net, s, "interval")
    lin = output_bounds(net, s, "linear")
    for k, ((li, hi), (ll, hl)) in enumerate(zip(ibp.layers, lin.layers)):
        assert np.all(ll >= li) and np.all(hl <= hi), f"node {k} looser with linear bounds"


def test_linear_tighter_on_mlp():
    net = bp.load("models/mlp_784_100_100_10_relu.onnx")
    s = default_input_set(net)
    ibp, lin = output_bounds(net, s, "interval"), output_bounds(net, s, "linear")
    assert np.mean(lin.width) < 0.5 * np.mean(ibp.width)


# ---------------------------------------------------------------- random networks and sets
ACTS = ["Relu", "Sigmoid", "Tanh", "Softplus", "Elu", "LeakyRelu", "Gelu", "HardSigmoid",
        "Softsign", "HardSwish"]


def random_mlp(tmp_path, rng, widths, acts) -> str:
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        w = (rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
        bias = (0.3 * rng.standard_normal(b)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node(acts[i], [prev], [f"a{i}"]))
            prev = f"a{i}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, widths[0]])], [helper.make_tensor_value_info(
            prev, TensorProto.FLOAT, [1, widths[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    path = tmp_path / f"rand_{rng.integers(1 << 30)}.onnx"
    onnx.save(m, str(path))
    return str(path)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 4), kind=st.sampled_from(
    ["box", "linf", "l2"]), scale=st.sampled_from([0.01, 0.3, 2.0]),
       acts=st.lists(st.sampled_from(ACTS), min_size=4, max_size=4))
def test_random_networks_and_sets(tmp_path, seed, depth, kind, scale, acts):
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(1, 7)) for _ in range(depth + 2)]
    path = random_mlp(tmp_path, rng, widths, acts)
    net = bp.load(path)
    c = rng.standard_normal(net.input_shape)
    if kind == "box":
        s = Box(c - scale * rng.random(c.shape), c + scale * rng.random(c.shape))
    elif kind == "linf":
        s = LinfBall(c, scale)
    else:
        s = L2Ball(c, scale)
    x = s.sample(3000, rng)
    if kind != "l2":  # also the extreme points of the box
        x = np.concatenate([x, np.where(rng.random((500, *c.shape)) < 0.5, s.lower, s.upper)])
    y = net(x)
    ort_model = OrtModel(path)
    x32 = x[:300].astype(np.float32)
    y32 = ort_model(x32)
    for method in ("interval", "linear", "alpha"):
        b = output_bounds(net, s, method)
        assert_inside(y, b.lower, b.upper, f"{method} real")
        b32 = output_bounds(net, s, method, execution="float32")
        assert_inside(y32, b32.lower, b32.upper, f"{method} float32")


# ---------------------------------------------------------------- bad input sets
def test_box_lower_above_upper():
    with pytest.raises(InputSetError, match="lower bound > upper bound"):
        Box([0.0, 1.0], [1.0, 0.5])


def test_set_shape_mismatch():
    net = bp.load("models/mlp_relu.onnx")
    with pytest.raises(InputSetError, match="shape"):
        output_bounds(net, Box(np.zeros(5), np.ones(5)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_in_set(bad):
    with pytest.raises(InputSetError, match="NaN"):
        Box([0.0, bad], [1.0, 1.0])
    with pytest.raises(InputSetError, match="NaN"):
        LinfBall([0.0, bad], 0.1)
    with pytest.raises(InputSetError, match="NaN"):
        L2Ball([0.0, 0.0], bad)


def test_negative_radius():
    with pytest.raises(InputSetError, match="negative"):
        LinfBall([0.0], -0.1)


@settings(max_examples=200, deadline=None, database=None)
@given(c=st.floats(-1e3, 1e3), eps=st.floats(0, 1e2), clip=st.booleans())
def test_ball_bounding_boxes_contain_the_real_ball(c, eps, clip):
    """Exact rational check: lower ≤ c − eps and upper ≥ c + eps (rounding never shrinks)."""
    from fractions import Fraction

    lo_clip, hi_clip = -1e4, 1e4
    ball = LinfBall([c], eps, clip=(lo_clip, hi_clip) if clip else None)
    assert Fraction(float(ball.lower[0])) <= max(Fraction(c) - Fraction(eps), Fraction(lo_clip))
    assert Fraction(float(ball.upper[0])) >= min(Fraction(c) + Fraction(eps), Fraction(hi_clip))
    l2 = L2Ball([c], eps)
    assert Fraction(float(l2.lower[0])) <= Fraction(c) - Fraction(eps)
    assert Fraction(float(l2.upper[0])) >= Fraction(c) + Fraction(eps)


def test_node_without_linear_rule_is_concretised(tmp_path):
    """A reflect Pad has no back-substitution rule (it copies entries): the pass concretises
    it over its box and goes on (a regression: the rows were popped twice, KeyError)."""
    pads = numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 1], dtype=np.int64), "pads")
    w = numpy_helper.from_array(np.ones((6, 2), dtype=np.float32), "W")
    g = helper.make_graph(
        [helper.make_node("Tanh", ["x"], ["t"]),
         helper.make_node("Pad", ["t", "pads"], ["p"], mode="reflect"),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("MatMul", ["f", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [pads, w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    path = tmp_path / "pad.onnx"
    onnx.save(m, str(path))
    net = bp.load(str(path))
    s = Box(-np.ones(net.input_shape), np.ones(net.input_shape))
    x = s.sample(2000, np.random.default_rng(0))
    for method in ("linear", "alpha"):
        b = output_bounds(net, s, method)
        assert_inside(net(x), b.lower, b.upper, f"reflect pad {method}")
