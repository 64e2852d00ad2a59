"""The onnxruntime interval engine (``boundprop.domains.interval_ort``): sound and close to numpy.

* every shipped model whose primitives all have an ONNX interval rule: the float32 onnxruntime
  bounds of every node contain 2,000 sampled float64 IR values and are within a few percent of
  (and, up to numpy's own 1e-14 rounding margin, no tighter than) the numpy float64 bounds;
* each rule on adversarial boxes — huge centres with zero or tiny radii and massive
  cancellation, where float32 rounding of the centre (the γ|c| term) is the whole width. Weights
  and inputs are small integers / dyadic numbers, so the float64 reference is EXACT;
* hypothesis-generated random CNNs and MLPs on random boxes (containment at every node);
* the runtime assumption: onnxruntime's float32 Conv / Gemm / ConvTranspose / depthwise kernels
  obey the dot-product error bound |fl(Σ) − Σ| ≤ γ_n Σ|w x| (no Winograd/FFT), on adversarial
  inputs against an exact reference;
* engine selection, fallback on overflow, engine reuse.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special

import boundprop as bp
from boundprop.analysis import interval_bounds, output_bounds
from boundprop.domains.interval_ort import (
    FastIntervalUnavailable,
    OrtIntervalEngine,
    interval_bounds_ort,
    multiply_adds,
    unsupported_primitives,
)
from boundprop.errors import BoundpropError
from boundprop.ir import InputPrimitive, Network, Node
from boundprop.ops.affine import Dense, ElementwiseAffine
from boundprop.ops.conv import Conv, ConvTranspose
from boundprop.ops.join import Concat, Sum
from boundprop.ops.piecewise import Clip, LeakyRelu, Relu
from boundprop.ops.pooling import AveragePool, MaxPool, Reduce, ReduceExtreme
from boundprop.ops.shape import (
    ConcatConst,
    Expand,
    Gather,
    Pad,
    Reshape,
    Slice,
    Tile,
    Transpose,
)
from boundprop.ops.smooth import (
    ORT_KERNEL_ERROR,
    Celu,
    Elu,
    Erf,
    Gelu,
    Sigmoid,
    Softplus,
    Softsign,
    Tanh,
)
from boundprop.sets import Box, InputSetError, default_input_set
from tests.conftest import model_id, shipped_models

U32 = 2.0**-24


def model_set(net):
    try:
        return default_input_set(net)
    except InputSetError:
        return Box(np.zeros(net.input_shape), np.ones(net.input_shape))


def supported_models():
    return [p for p in shipped_models() if not unsupported_primitives(bp.load(p))]


def assert_contains(lo, hi, y, what):
    """Every row of y (samples × node shape) inside [lo, hi]."""
    bad = (y < lo) | (y > hi)
    if bad.any():
        worst = float(np.max(np.maximum(lo - y, y - hi)[bad]))
        pytest.fail(f"{what}: {int(bad.sum())} values outside the bounds (worst by {worst:.3g})")


def assert_close_to_numpy(ort_b, np_b, what, rel=0.05, absolute=1e-6):
    """ORT ⊇ numpy up to numpy's own rounding margin, and at most a few percent wider: the
    extra width of every entry is ≤ ``rel`` × the node's typical (median nonzero) numpy
    width (after a ReLU a cancelling entry's width can grow by more than ``rel`` of itself,
    by ``rel`` of its pre-activation width) + ``absolute`` × the node's largest magnitude (the
    float32 γ|c| term where a box is (nearly) a point), and the median width ratio over the
    entries wider than that margin is ≤ 1 + rel."""
    for k, ((lo, hi), (nlo, nhi)) in enumerate(zip(ort_b, np_b)):
        tiny = 1e-9 * (1.0 + np.maximum(np.abs(nlo), np.abs(nhi)))
        assert np.all(lo <= nlo + tiny) and np.all(hi >= nhi - tiny), \
            f"{what}: node {k} tighter than numpy"
        w, nw = hi - lo, nhi - nlo
        typical = float(np.median(nw[nw > 0])) if np.any(nw > 0) else 0.0
        scale = 1.0 + float(np.max(np.maximum(np.abs(nlo), np.abs(nhi)), initial=0.0))
        excess = w - nw
        assert np.all(excess <= rel * typical + absolute * scale), \
            f"{what}: node {k} wider than numpy by {np.max(excess):.3g} (typical width " \
            f"{typical:.3g})"
        wide = nw > 1e3 * absolute * scale  # widths well above the float32 margin
        if np.any(wide):
            ratio = np.median(w[wide] / nw[wide])
            assert ratio <= 1 + rel, f"{what}: node {k} median width ratio {ratio:.4f}"


def make_net(input_shape, *layers) -> Network:
    """An IR network from (primitive, input indices) pairs; the last one is the output."""
    nodes = [Node("input", InputPrimitive(tuple(input_shape)), ())]
    for i, (op, ins) in enumerate(layers):
        nodes.append(Node(f"n{i + 1}", op, tuple(ins)))
    return Network(nodes=nodes, output=len(nodes) - 1)


def check_sound(net, lower, upper, rng, n=300, what=""):
    """Bounds of every node contain the IR values at n points (corners included)."""
    bounds = interval_bounds_ort(net, Box(lower, upper))
    pts = lower + (upper - lower) * rng.random((n, *lower.shape))
    corners = np.where(rng.random((n, *lower.shape)) < 0.5, lower, upper)
    xs = np.concatenate([pts, corners, lower[None], upper[None]])
    for k, y in enumerate(net.evaluate_all(xs)):
        assert_contains(bounds[k][0], bounds[k][1], y, f"{what} node {k}")
    return bounds


# ---------------------------------------------------------------- shipped models
@pytest.mark.parametrize("path", supported_models(), ids=model_id)
def test_models_sound_and_close_to_numpy(path):
    net = bp.load(path)
    s = model_set(net)
    ort_b = interval_bounds_ort(net, s)
    np_b = interval_bounds(net, s, engine="numpy")
    x = s.sample(2000, np.random.default_rng(0))
    for k, y in enumerate(net.evaluate_all(x)):
        assert_contains(ort_b[k][0], ort_b[k][1], y, f"{path.name} node {k}")
    assert_close_to_numpy(ort_b, np_b, path.name)


# ---------------------------------------------------------------- each rule, adversarial boxes
def _int_weights(rng, shape, mag=64):
    w = rng.integers(-mag, mag + 1, size=shape).astype(np.float64)
    return w


def _adversarial_boxes(rng, shape, nonneg=False):
    """(lower, upper) pairs: huge integer centres with zero and dyadic-tiny radii, plus a
    moderate box. All endpoints are exact small-precision dyadic numbers."""
    big = rng.integers(-2**20, 2**20, size=shape).astype(np.float64)
    if nonneg:
        big = np.abs(big)
    out = [(big, big.copy()), (big - 2.0**-10, big + 2.0**-10)]
    mid = rng.integers(-64, 65, size=shape).astype(np.float64) / 8
    if nonneg:
        mid = np.abs(mid)
    out.append((mid, mid + rng.integers(0, 17, size=shape) / 16))
    return out


def _affine_exact(op, lower, upper):
    """The exact image box of an affine op (integer/dyadic data: float64 is exact here)."""
    c, r = (lower + upper) / 2, (upper - lower) / 2
    yc = op.evaluate(c[None])[0]
    yr = op.abs_linear(r[None])[0]
    return yc - yr, yc + yr


AFFINE_CASES = {
    "dense": lambda rng: (Dense((1, 40), _int_weights(rng, (30, 40)),
                                _int_weights(rng, (30,))), (1, 40)),
    "dense-left": lambda rng: (Dense((1, 5, 6), _int_weights(rng, (4, 5)), None, axis=-2),
                               (1, 5, 6)),
    "conv-nchwc": lambda rng: (Conv((1, 16, 6, 6), _int_weights(rng, (16, 16, 3, 3)),
                                    _int_weights(rng, (16,)), (1, 1), [1, 1], [1, 1], (1, 1), 1),
                               (1, 16, 6, 6)),
    "conv-strided-grouped": lambda rng: (Conv((1, 6, 7, 7), _int_weights(rng, (4, 3, 3, 3)),
                                              None, (2, 2), [0, 1], [1, 0], (1, 1), 2),
                                         (1, 6, 7, 7)),
    "conv-transpose": lambda rng: (ConvTranspose((1, 4, 3, 3), _int_weights(rng, (4, 2, 3, 3)),
                                                 _int_weights(rng, (2,)), (2, 2), [1, 1], [0, 0],
                                                 (1, 1), (1, 1), 1), (1, 4, 3, 3)),
    "scale-shift": lambda rng: (ElementwiseAffine((1, 3, 4), _int_weights(rng, (3, 1)),
                                                  _int_weights(rng, (4,))), (1, 3, 4)),
    "avgpool": lambda rng: (AveragePool((1, 2, 5, 5), (3, 3), (2, 2), (1, 1), [1, 1], [1, 1],
                                        True, False), (1, 2, 5, 5)),
    "reduce-sum": lambda rng: (Reduce((1, 3, 4), (1, 2), False, mean=False), (1, 3, 4)),
    "reduce-mean": lambda rng: (Reduce((1, 3, 4), (2,), True, mean=True), (1, 3, 4)),
}


@pytest.mark.parametrize("case", list(AFFINE_CASES))
@pytest.mark.parametrize("nonneg", [False, True])
def test_affine_rule_adversarial(case, nonneg):
    """Huge centres, zero/tiny radii: the exact image (exact in float64 for this data) lies in
    the bounds, and a naive float32 centre ± |A|r would have missed it."""
    rng = np.random.default_rng(hash(case) % 2**32)
    op, shape = AFFINE_CASES[case](rng)
    net = make_net(shape, (op, (0,)))
    missed = 0.0
    for lower, upper in _adversarial_boxes(rng, shape, nonneg):
        lo, hi = interval_bounds_ort(net, Box(lower, upper))[1]
        elo, ehi = _affine_exact(op, lower, upper)
        assert np.all(lo <= elo) and np.all(hi >= ehi), f"{case}: exact image not enclosed"
        if case == "dense" and np.all(lower == upper):
            # The same product in float32 (numpy): a point box, so a naive centre ± |A|r
            # bound would be this single value — and it misses the exact one.
            y32 = (lower.astype(np.float32) @ op.matrix.astype(np.float32).T
                   + op.offset_raw.astype(np.float32)).astype(np.float64)
            missed = max(missed, float(np.max(np.abs(y32 - elo))))
        # and the bounds stay tight: width ≤ exact width + a float32-sized margin
        mag = op.abs_linear(np.maximum(np.abs(lower), np.abs(upper))[None])[0]
        off = 0 if op.offset is None else np.abs(op.offset[0])
        n = getattr(op, "fan_in", 1)
        assert np.all((hi - lo) <= (ehi - elo) + 8 * (n + 4) * U32 * (mag + off) + 1e-30)
    if case == "dense":
        assert missed > 0, "the float32 centre happened to be exact: not adversarial"


def _monotone_net(kind, rng):
    """Nets with a non-affine rule (after a cancelling Dense/Conv so that its inputs arrive in
    centre/radius form with huge centres)."""
    if kind in ("relu", "leakyrelu", "clip", "maxpool", "reducemax"):
        shape = (1, 16, 4, 4)
        conv = Conv(shape, _int_weights(rng, (16, 16, 3, 3), 8), None, (1, 1), [1, 1], [1, 1],
                    (1, 1), 1)
        act = {"relu": Relu(conv.out_shape), "leakyrelu": LeakyRelu(conv.out_shape, alpha=0.25),
               "clip": Clip(conv.out_shape, lo=-3.5, hi=2.0**20),
               "maxpool": MaxPool(conv.out_shape, (2, 2), (2, 2), (1, 1), [0, 0], [0, 0], False),
               "reducemax": ReduceExtreme(conv.out_shape, (2, 3), True, True)}[kind]
        layers = [(conv, (0,)), (act, (1,))]
        if kind in ("maxpool", "reducemax"):
            layers = [(conv, (0,)), (Relu(conv.out_shape), (1,)), (act, (2,))]
        return shape, layers
    if kind == "residual":
        shape = (1, 12)
        d1 = Dense(shape, _int_weights(rng, (12, 12), 8), _int_weights(rng, (12,)))
        return shape, [(d1, (0,)), (Relu(d1.out_shape), (1,)), (Sum((shape, shape), (1.0, -1.0)),
                                                                (2, 0)), (Relu(shape), (3,))]
    if kind == "concat":
        shape = (1, 8, 3, 3)
        conv = Conv(shape, _int_weights(rng, (8, 8, 1, 1), 8), None, (1, 1), [0, 0], [0, 0],
                    (1, 1), 1)
        return shape, [(conv, (0,)), (Relu(conv.out_shape), (1,)),
                       (Concat((conv.out_shape, shape), 1), (2, 0))]
    if kind == "shape-ops":
        shape = (1, 2, 3, 4)
        t = Transpose(shape, (0, 2, 3, 1))
        sl = Slice(t.out_shape, (slice(None), slice(2, None, -1), slice(0, 4, 2), slice(None)))
        p = Pad(sl.out_shape, [0, 1, 0, 0], [0, 0, 2, 0], "constant", 0.3)
        g = Gather(p.out_shape, np.array([1, 0, 1]), 2)
        r = Reshape(g.out_shape, (1, int(np.prod(g.out_shape))))
        e = Expand(r.out_shape, (3, r.out_shape[1]))
        tl = Tile(e.out_shape, (1, 2))
        cc = ConcatConst(tl.out_shape, [None, np.full((3, 2), -7.1)], 1)
        pr = Pad(shape, [0, 0, 1, 1], [0, 0, 1, 0], "reflect", 0.0)
        return shape, [(t, (0,)), (sl, (1,)), (p, (2,)), (g, (3,)), (r, (4,)), (e, (5,)),
                       (tl, (6,)), (cc, (7,)), (pr, (0,))]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["relu", "leakyrelu", "clip", "maxpool", "reducemax",
                                  "residual", "concat", "shape-ops"])
def test_nonlinear_rule_adversarial(kind):
    rng = np.random.default_rng(7)
    shape, layers = _monotone_net(kind, rng)
    net = make_net(shape, *layers)
    np_rng = np.random.default_rng(1)
    for lower, upper in _adversarial_boxes(rng, shape):
        check_sound(net, lower, upper, np_rng, what=kind)
    lower, upper = _adversarial_boxes(rng, shape)[2]
    assert_close_to_numpy(interval_bounds_ort(net, Box(lower, upper)),
                          interval_bounds(net, Box(lower, upper), engine="numpy"), kind,
                          rel=0.01)


def test_inexact_weights_and_underflow_scale():
    """Weights that are not float32 numbers (folded batch norm, 1/3) and tiny magnitudes near
    float32's underflow threshold."""
    rng = np.random.default_rng(3)
    shape = (1, 8, 5, 5)
    conv = Conv(shape, rng.standard_normal((8, 8, 3, 3)) / 3, rng.standard_normal(8) / 7,
                (1, 1), [1, 1], [1, 1], (1, 1), 1)
    bn = ElementwiseAffine(conv.out_shape, (1 + rng.random((8, 1, 1))) / 3,
                           rng.standard_normal((8, 1, 1)) / 11)
    net = make_net(shape, (conv, (0,)), (bn, (1,)), (Relu(bn.out_shape), (2,)),
                   (AveragePool(bn.out_shape, (2, 2), (1, 1), (1, 1), [0, 0], [0, 0], False,
                                False), (3,)))
    for scale in (1e-36, 1e-3, 1.0, 1e15):
        c = rng.standard_normal(shape) * scale
        check_sound(net, c - 0.01 * scale, c + 0.01 * scale, rng, what=f"scale {scale}")
        check_sound(net, c, c, rng, n=5, what=f"point, scale {scale}")


# ---------------------------------------------------------------- random networks
def _random_cnn(draw, rng):
    ch = draw(st.sampled_from([1, 3, 8, 16]))
    hw = draw(st.integers(4, 7))
    shape = (1, ch, hw, hw)
    layers, cur, idx = [], shape, 0
    exact = draw(st.booleans())

    def w(*s):
        a = rng.standard_normal(s) / np.sqrt(max(1, np.prod(s[1:])))
        return a.astype(np.float32).astype(np.float64) if exact else a

    def add(op, ins=None):
        nonlocal cur, idx
        layers.append((op, (idx,) if ins is None else ins))
        idx += 1
        cur = op.out_shape

    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "bn", "relu", "leaky", "clip", "maxpool",
                                     "avgpool", "residual", "concat"]))
        c, h = cur[1], cur[2]
        if kind == "conv":
            k = draw(st.integers(1, min(3, h)))
            out = draw(st.sampled_from([4, 8, 16]))
            stride = draw(st.integers(1, 2)) if h > k else 1
            add(Conv(cur, w(out, c, k, k), w(out), (stride, stride), [k // 2] * 2,
                     [k // 2] * 2, (1, 1), 1))
        elif kind == "bn":
            add(ElementwiseAffine(cur, 0.5 + rng.random((c, 1, 1)), w(c, 1, 1)))
        elif kind == "relu":
            add(Relu(cur))
        elif kind == "leaky":
            add(LeakyRelu(cur, alpha=0.125))
        elif kind == "clip":
            add(Clip(cur, lo=-0.5, hi=1.25))
        elif kind == "maxpool" and h >= 2:
            add(MaxPool(cur, (2, 2), (2, 2), (1, 1), [0, 0], [0, 0], draw(st.booleans())))
        elif kind == "avgpool" and h >= 3:
            add(AveragePool(cur, (3, 3), (1, 1), (1, 1), [1, 1], [1, 1], False,
                            draw(st.booleans())))
        elif kind == "residual":
            skip = idx
            add(Conv(cur, w(c, c, 3, 3), w(c), (1, 1), [1, 1], [1, 1], (1, 1), 1))
            add(Relu(cur))
            add(Sum((cur, cur), (1.0, 1.0)), (idx, skip))
        elif kind == "concat":
            skip, skip_shape = idx, cur
            add(Conv(cur, w(8, c, 1, 1), None, (1, 1), [0, 0], [0, 0], (1, 1), 1))
            add(Relu(cur))
            add(Concat((cur, skip_shape), 1), (idx, skip))
    flat = int(np.prod(cur))
    add(Reshape(cur, (1, flat)))
    add(Dense(cur, w(10, flat), w(10)))
    add(Relu(cur))
    add(Dense(cur, w(3, 10), w(3)))
    return shape, layers


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1),
       centre=st.sampled_from([0.0, 1.0, 1e3, 1e6]), radius=st.sampled_from([0.0, 1e-6, 1e-2,
                                                                           0.5, 3.0]),
       nonneg=st.booleans())
def test_random_networks(data, seed, centre, radius, nonneg):
    rng = np.random.default_rng(seed)
    shape, layers = _random_cnn(data.draw, rng)
    net = make_net(shape, *layers)
    c = rng.standard_normal(shape) * max(centre, 1.0) + centre
    r = radius * max(centre, 1.0) * rng.random(shape)
    lower, upper = c - r, c + r
    if nonneg:
        lower, upper = np.abs(lower), np.abs(lower) + 2 * r
    bounds = check_sound(net, lower, upper, rng, n=150, what="random net")
    if radius >= 0.5 and centre <= 1.0:
        # Radius ~ centre ~ 1: float32's γ|c| margins are small against every width. (With
        # huge centres an O(γ)-relative difference before a Clip can move an entry across the
        # clip range: sound, but not "close" entry by entry.)
        assert_close_to_numpy(bounds, interval_bounds(net, Box(lower, upper), engine="numpy"),
                              "random net", absolute=1e-4)


@settings(max_examples=25, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 4), radius=st.sampled_from(
    [0.0, 1e-4, 0.1, 2.0]))
def test_random_mlps(seed, depth, radius):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    shape = (1, n)
    layers, cur = [], shape
    for _ in range(depth):
        m = int(rng.integers(1, 30))
        d = Dense(cur, rng.standard_normal((m, cur[1])), rng.standard_normal(m))
        layers.append((d, (len(layers),)))
        cur = d.out_shape
        layers.append((Relu(cur), (len(layers),)))
    net = make_net(shape, *layers)
    c = rng.standard_normal(shape) * 10
    check_sound(net, c - radius, c + radius, rng, what="mlp")


# ---------------------------------------------------------------- the runtime assumption
def _ort_single(op_type, inputs, attrs, x):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(a.astype(np.float32), f"p{i}")
             for i, a in enumerate(inputs)]
    node = helper.make_node(op_type, ["x"] + [f"p{i}" for i in range(len(inputs))], ["y"],
                            **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(x.shape))], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x.astype(np.float32)})[0].astype(np.float64)


KERNELS = {
    # name: (in shape, weight shape, attrs, fan-in) — NCHWc 3x3, NCHW (3 and 20 channels:
    # im2col + SGEMM), 1x1 (direct GEMM), depthwise, a GEMV with a long sum, ConvTranspose.
    "conv3x3-64": ((1, 64, 12, 12), (64, 64, 3, 3), dict(pads=[1, 1, 1, 1]), 576),
    "conv3x3-c3": ((1, 3, 16, 16), (32, 3, 3, 3), dict(pads=[1, 1, 1, 1]), 27),
    "conv3x3-c20": ((1, 20, 9, 9), (20, 20, 3, 3), dict(pads=[1, 1, 1, 1]), 180),
    "conv1x1": ((1, 48, 7, 7), (40, 48, 1, 1), {}, 48),
    "depthwise": ((1, 32, 9, 9), (32, 1, 3, 3), dict(group=32, pads=[1, 1, 1, 1]), 9),
    "gemm": ((1, 4096), (512, 4096), dict(transB=1), 4096),
    "conv-transpose": ((1, 16, 6, 6), (16, 8, 3, 3), dict(strides=[2, 2]), 16 * 9),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_ort_kernels_obey_dot_product_bound(name):
    """|ORT − exact| ≤ γ_n·Σ|w||x| on adversarial data (huge alternating-sign inputs that cancel,
    mixed magnitudes): what summation in any order guarantees and Winograd/FFT would not."""
    from boundprop.ops.affine import Dense as IRDense
    from boundprop.ops.conv import Conv as IRConv
    from boundprop.ops.conv import ConvTranspose as IRConvT

    xs, ws, attrs, n = KERNELS[name]
    rng = np.random.default_rng(11)
    w = rng.integers(-2**11, 2**11, size=ws).astype(np.float64)
    worst = 0.0
    for trial in range(3):
        if trial == 0:  # huge alternating signs: massive cancellation in every window
            x = (2.0**22 + rng.integers(0, 2**10, size=xs)) * np.where(
                np.indices(xs).sum(axis=0) % 2 == 0, 1.0, -1.0)
        elif trial == 1:  # mixed magnitudes (exact dyadic values)
            x = rng.integers(-2**12, 2**12, size=xs) * 2.0 ** rng.integers(-8, 9, size=xs)
        else:
            x = rng.integers(-2**23, 2**23, size=xs).astype(np.float64)
        x32 = x.astype(np.float32).astype(np.float64)
        if name == "gemm":
            op = IRDense(xs, w)
        elif name == "conv-transpose":
            op = IRConvT(xs, w, None, (2, 2), [0, 0], [0, 0], (1, 1), (0, 0), 1)
        else:
            g = attrs.get("group", 1)
            p = attrs.get("pads", [0, 0, 0, 0])
            op = IRConv(xs, w, None, (1, 1), p[:2], p[2:], (1, 1), g)
        # float64 reference: products of ≤ 24-bit integers × dyadics and their partial sums
        # stay well inside 53 bits for trials 0 and 2 (exact); trial 1 has a 2⁻⁵³-relative
        # reference error, far below the float32 bound.
        exact = op.evaluate(x32[None])[0]
        mag = op.abs_linear(np.abs(x32)[None])[0]
        got = _ort_single("Gemm" if name == "gemm" else "ConvTranspose"
                          if name == "conv-transpose" else "Conv", [w], attrs, x32)
        gamma_n = n * U32 / (1 - n * U32)
        err = np.abs(got - exact)
        assert np.all(err <= gamma_n * mag + 1e-30), f"{name}: error above γ_n Σ|w||x|"
        worst = max(worst, float(np.max(err / (U32 * np.maximum(mag, 1e-300)))))
    assert worst <= n  # observed error in units of u·Σ|w||x| (≤ fan-in, as summation gives)


# ---------------------------------------------------------------- selection, fallback, reuse
def test_engine_selection_and_errors(monkeypatch):
    net = bp.load("models/vgg_small_relu.onnx")
    s = default_input_set(net)
    auto = interval_bounds(net, s)  # small model: numpy
    numpy_b = interval_bounds(net, s, engine="numpy")
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(auto, numpy_b))
    ort_b = interval_bounds(net, s, engine="onnxruntime")
    assert_close_to_numpy(ort_b, numpy_b, "vgg_small_relu")
    ob = output_bounds(net, s, "interval", engine="onnxruntime")
    assert np.array_equal(ob.lower, ort_b[net.output][0])
    import boundprop.analysis as an

    monkeypatch.setattr(an, "AUTO_ORT_MULTIPLY_ADDS", 0)  # now "auto" picks onnxruntime
    auto = interval_bounds(net, s)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(auto, ort_b))
    with pytest.raises(BoundpropError, match="unknown interval engine"):
        interval_bounds(net, s, engine="gpu")
    with pytest.raises(NotImplementedError):
        interval_bounds(net, s, execution="float32", engine="onnxruntime")
    # float32 execution and unsupported primitives stay on numpy under "auto"
    interval_bounds(net, s, execution="float32")
    gelu = bp.load("models/mlp_gelu.onnx")
    assert "Gelu" in unsupported_primitives(gelu)
    with pytest.raises(NotImplementedError, match="Gelu"):
        interval_bounds(gelu, model_set(gelu), engine="onnxruntime")
    interval_bounds(gelu, model_set(gelu))


def test_overflow_is_detected_and_auto_falls_back(monkeypatch):
    shape = (1, 4)
    d1 = Dense(shape, np.full((4, 4), 1e20), None)
    d2 = Dense((1, 4), np.array([[1e19, -1e19, 1.0, 2.0]]), None)
    net = make_net(shape, (d1, (0,)), (Relu((1, 4)), (1,)), (d2, (2,)))
    box = Box(np.ones(shape), 2 * np.ones(shape))
    with pytest.raises(FastIntervalUnavailable, match="overflow"):
        interval_bounds_ort(net, box)
    import boundprop.analysis as an

    monkeypatch.setattr(an, "AUTO_ORT_MULTIPLY_ADDS", 0)
    auto = interval_bounds(net, box)
    ref = interval_bounds(net, box, engine="numpy")
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(auto, ref))
    big = Box(-1e39 * np.ones(shape), np.ones(shape))  # beyond float32 range: lo = -inf
    lo, hi = interval_bounds_ort(make_net(shape, (Relu(shape), (0,))), big)[1]
    assert np.all(lo <= 0) and np.all(lo > -1e-30) and np.all(hi >= 1)
    with pytest.raises(FastIntervalUnavailable, match="overflow"):  # an affine map sees -inf
        interval_bounds_ort(make_net(shape, (d1, (0,))), big)


def test_engine_is_reused_across_boxes():
    net = bp.load("models/lenet.onnx")
    s = default_input_set(net)
    b1 = interval_bounds_ort(net, s, nodes="output")
    from boundprop.domains.interval_ort import get_engine

    e1 = get_engine(net, "output", nonneg_input=True)
    b2 = interval_bounds_ort(net, s, nodes="output")
    assert get_engine(net, "output", nonneg_input=True) is e1
    assert np.array_equal(b1[net.output][0], b2[net.output][0])
    assert b1[1] is None  # only the output is materialised
    e = OrtIntervalEngine(net, "all")
    got = e.run(s.lower - 1.0, s.upper)  # a signed box through a freshly built engine
    assert set(got) == set(range(1, len(net.nodes)))


def test_unsupported_list():
    net = make_net((1, 3), (Gelu((1, 3)), (0,)))
    assert unsupported_primitives(net) == ["Gelu"]
    with pytest.raises(NotImplementedError):
        interval_bounds_ort(net, Box(np.zeros((1, 3)), np.ones((1, 3))))


# ---------------------------------------------------------------- smooth monotone activations
SMOOTH = {"Sigmoid": Sigmoid, "Tanh": Tanh, "Softplus": Softplus, "Erf": Erf,
          "Softsign": Softsign, "Elu": lambda shape: Elu(shape, alpha=1.0),
          "Elu0.3": lambda shape: Elu(shape, alpha=0.30000001192092896),
          "Celu": lambda shape: Celu(shape, alpha=0.699999988079071)}


def _expm1_part(x, alpha, scale=1.0):
    return alpha * np.expm1(np.minimum(x, 0.0) / scale)


# (op, attributes, float64 reference): several α for the kernels whose error scales with it
KERNEL_CASES = [
    ("Sigmoid", {}, special.expit), ("Tanh", {}, np.tanh), ("Erf", {}, special.erf),
    ("Softplus", {}, lambda x: np.logaddexp(0.0, x)),
    ("Softsign", {}, lambda x: x / (1 + np.abs(x))),
    *[("Elu", {"alpha": a}, lambda x, a=a: np.where(x >= 0, x, _expm1_part(x, a)))
      for a in (1.0, 0.30000001192092896, 2.5)],
    *[("Celu", {"alpha": a}, lambda x, a=a: np.maximum(x, 0.0) + np.minimum(
        0.0, _expm1_part(x, a, a))) for a in (1.0, 0.699999988079071, 3.0)],
]


@pytest.mark.parametrize("op, attrs, reference", KERNEL_CASES,
                         ids=[f"{c[0]}{c[1] or ''}" for c in KERNEL_CASES])
def test_ort_kernel_obeys_its_error_model(op, attrs, reference):
    """The assumption of the smooth activations' emission rules, on the installed onnxruntime:
    |σ̂(x) − σ(x)| ≤ rel·|σ(x)| + absolute (× |α| for Elu/Celu) on every 1024th float32 bit
    pattern (zeros and subnormals included; ±∞ too, but for Softsign, whose rule clips them),
    2²⁰ points of [−20, 20] and the integers around saturation."""
    rng = np.random.default_rng(3)
    bits = np.arange(int(rng.integers(1024)), 2**32, 1024, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = np.concatenate([x[np.isfinite(x)], np.linspace(-20, 20, 2**20, dtype=np.float32),
                        np.arange(-120, 121, dtype=np.float32),
                        np.array([0.0, -0.0] + [np.inf, -np.inf] * (op != "Softsign"),
                                 np.float32)])
    got = _ort_single(op, [], attrs, x)
    with np.errstate(invalid="ignore"):
        ref = reference(x.astype(np.float64))
    ref = np.where(np.isinf(x) & np.isnan(ref), np.sign(x), ref)
    rel, absolute = ORT_KERNEL_ERROR[op]
    if "alpha" in attrs:
        absolute = absolute * attrs["alpha"] + 2.0**-120
    finite = np.isfinite(ref)
    assert np.array_equal(got[~finite], ref[~finite])  # Softplus(∞) = Elu(∞) = ∞
    err = np.abs(got[finite] - ref[finite])
    bound = rel * np.abs(ref[finite]) + absolute
    assert np.all(err <= bound), f"{op}: error {np.max(err - bound):.3g} above the model"


def _smooth_mlp(rng, acts, width, depth, scale=1.0):
    """Dense → activation layers (``acts`` cycled), Gaussian weights scaled by ``scale``."""
    shape = (1, width)
    layers, cur = [], shape
    for i in range(depth):
        d = Dense(cur, scale * rng.standard_normal((width, cur[1])) / np.sqrt(cur[1]),
                  rng.standard_normal(width))
        layers.append((d, (len(layers),)))
        cur = d.out_shape
        layers.append((SMOOTH[acts[i % len(acts)]](cur), (len(layers),)))
    return shape, layers


@pytest.mark.parametrize("acts", [["Sigmoid"], ["Tanh"], ["Softplus"], ["Erf"], ["Softsign"],
                                  ["Elu", "Celu", "Elu0.3"],
                                  ["Tanh", "Sigmoid", "Softplus", "Erf"]])
@pytest.mark.parametrize("box", ["unit", "saturating", "extreme", "tiny", "point"])
def test_smooth_activation_nets(acts, box):
    """Sampled float64 values at every node lie in the onnxruntime bounds, which contain the
    numpy engine's (up to numpy's 1e-14 margin) — on moderate boxes, saturating ones (|x| up to
    1e3, weights ×30), boxes of radius 1e-7 and points; within a few percent of numpy where
    widths are far above float32's resolution."""
    rng = np.random.default_rng(len(box) * 7 + len(acts[0]))
    scale = 30.0 if box in ("saturating", "extreme") else 1.0
    shape, layers = _smooth_mlp(rng, acts, 48, 4, scale)
    net = make_net(shape, *layers)
    c = rng.standard_normal(shape) * (1e3 if box == "extreme" else 3.0)
    r = {"unit": 1.0, "saturating": 1.0, "extreme": 50.0, "tiny": 1e-7, "point": 0.0}[box]
    lower, upper = c - r * rng.random(shape), c + r * rng.random(shape)
    ort_b = check_sound(net, lower, upper, rng, n=400, what=f"{acts} {box}")
    np_b = interval_bounds(net, Box(lower, upper), engine="numpy")
    for k, ((lo, hi), (nlo, nhi)) in enumerate(zip(ort_b, np_b)):
        tiny = 1e-9 * (1.0 + np.maximum(np.abs(nlo), np.abs(nhi)))
        assert np.all(lo <= nlo + tiny) and np.all(hi >= nhi - tiny), f"node {k} tighter"
    if box == "unit":
        assert_close_to_numpy(ort_b, np_b, f"{acts} {box}", absolute=1e-5)


@pytest.mark.parametrize("act", list(SMOOTH))
def test_smooth_activation_after_every_form(act):
    """The rule from each value form: the exact input box (lh, no widening), after a Relu
    (lh, pending widening), after an affine map (cr), twice in a row; on 4-D tensors too."""
    rng = np.random.default_rng(11)
    shape = (1, 8, 3, 3)
    conv = Conv(shape, rng.standard_normal((8, 8, 1, 1)), rng.standard_normal(8), (1, 1),
                [0, 0], [0, 0], (1, 1), 1)
    f = SMOOTH[act]
    net = make_net(shape, (f(shape), (0,)), (Relu(shape), (0,)), (f(shape), (2,)),
                   (conv, (3,)), (f(shape), (4,)), (f(shape), (5,)),
                   (MaxPool(shape, (2, 2), (1, 1), (1, 1), [0, 0], [0, 0], False), (6,)),
                   (f((1, 8, 2, 2)), (7,)))
    for c, r in ((0.0, 2.0), (-20.0, 1.0), (200.0, 300.0), (1.0, 0.0)):
        lower = c - r * rng.random(shape)
        check_sound(net, lower, lower + 2 * r * rng.random(shape), rng, what=act)


def test_big_smooth_nets_take_onnxruntime_under_auto():
    """A sigmoid/tanh/softplus MLP above AUTO_ORT_MULTIPLY_ADDS runs on onnxruntime."""
    import boundprop.analysis as an

    rng = np.random.default_rng(5)
    shape, layers = _smooth_mlp(rng, ["Sigmoid", "Tanh", "Softplus"], 2048, 3)
    net = make_net(shape, *layers)
    assert multiply_adds(net) > an.AUTO_ORT_MULTIPLY_ADDS and not unsupported_primitives(net)
    box = Box(-np.ones(shape), np.ones(shape))
    assert an._interval_engine(net, box, "real", "auto") == "onnxruntime"
    auto = interval_bounds(net, box)
    ort_b = interval_bounds_ort(net, box)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(auto, ort_b))


def test_softsign_and_alpha_kernels_at_the_edges():
    """Softsign's kernel gives NaN at ±∞: an overflowed bound (a box beyond float32's range)
    is clipped first, so Softsign → Relu still encloses; Elu/Celu with an α the kernel cannot
    take exactly (not a float32, or negative) are refused, and "auto" falls back to numpy."""
    shape = (1, 4)
    net = make_net(shape, (Softsign(shape), (0,)), (Relu(shape), (1,)))
    lower, upper = np.full(shape, -1e39), np.array([[-1e39, 0.5, 1e39, 2.0]])
    bounds = interval_bounds_ort(net, Box(lower, upper))
    assert np.all(bounds[1][0] <= -1.0) and np.all(bounds[1][1] >= [[-1.0, 1 / 3, 1.0, 2 / 3]])
    assert np.all(bounds[2][1] >= [[0.0, 1 / 3, 1.0, 2 / 3]])
    box = Box(-np.ones(shape), np.ones(shape))
    for op in (Elu(shape, alpha=0.1), Elu(shape, alpha=-0.5), Celu(shape, alpha=0.1)):
        with pytest.raises(FastIntervalUnavailable, match="alpha"):
            interval_bounds_ort(make_net(shape, (op, (0,))), box)
