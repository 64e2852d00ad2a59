"""CROWN everywhere on CNNs and ResNets (issue 13): back-substitution on crops.

- Linear bounds of every node of the shipped CNNs contain float64 IR samples, and the
  float32-execution output bounds contain onnxruntime outputs.
- Every node feeding an unstable ReLU (or a curved activation) is linear-bounded, and no node
  silently falls back to interval bounds.
- Crops change nothing: on every node with rows to tighten, the bounds computed on crops equal
  those of whole arrays (up to rounding); a planted crop that drops part of a receptive field
  is caught by that comparison.
- Op level: ``crop`` of Conv / MaxPool / AveragePool / activations / Sum / scale-shift gives
  the same back-substitution step as the whole op, for rows supported on the region.
- resnet_2b (VNN-COMP 2021): margins of CROWN (auto_LiRPA: −0.5984) and every node linear.
"""

from __future__ import annotations

import numpy as np
import pytest

import boundprop as bp
from boundprop.analysis import interval_bounds, linear_function_bounds, output_bounds
from boundprop.domains import backsub_crop
from boundprop.domains.backsub import BackSubstitution
from boundprop.ops.affine import ElementwiseAffine
from boundprop.ops.conv import Conv
from boundprop.ops.geometry import region_shape, region_slices
from boundprop.ops.join import Sum
from boundprop.ops.piecewise import Relu
from boundprop.ops.pooling import AveragePool, MaxPool
from boundprop.runtime import OrtModel
from boundprop.sets import L2Ball, default_input_set
from tests.conftest import MODELS, VNNCOMP, needs_vnncomp

FAST = ["lenet", "resnet_block", "torch_resnet_tiny_dynamo", "torch_cnn_dynamo"]
# CROWN on every neuron of these 32×32 VGGs (their declared input sets leave every ReLU
# unstable) takes ~10 s of CPU per pass: in the slow run.
VGG = [pytest.param(n, marks=pytest.mark.slow) for n in (
    "vgg_small_relu", "vgg_small_bn", "vgg_small_smooth", "vgg_small_smooth_bn_train")]
CNNS = FAST + VGG


def _setup(name: str):
    net = bp.load(MODELS / f"{name}.onnx")
    s = default_input_set(net).fit(net.input_shape)
    return net, s


def _inside(y, lo, hi, what):
    bad = (y < lo) | (y > hi)
    assert not bad.any(), f"{what}: {int(bad.sum())} samples outside the linear bounds"


@pytest.mark.parametrize("name", CNNS)
def test_samples_inside_every_node(name):
    """float64 IR values of every node, and onnxruntime outputs, lie in the linear bounds."""
    net, s = _setup(name)
    rng = np.random.default_rng(3)
    x = s.sample(300, rng)
    values = net.evaluate_all(x)
    b = output_bounds(net, s, "linear")
    for k, (v, (lo, hi)) in enumerate(zip(values, b.layers)):
        _inside(v, lo, hi, f"{name} node {k} ({b.layers[k].method})")
    path = MODELS / f"{name}.onnx"
    x32 = s.sample(300, rng).astype(np.float32)
    y32 = OrtModel(path, net.input_name, net.output_name)(x32)
    f32 = output_bounds(net, s, "linear", execution="float32")
    _inside(y32, f32.lower, f32.upper, f"{name} onnxruntime")


def _relu_inputs_linear(net, layers) -> None:
    """Every input of a ReLU with unstable entries is linear-bounded (or exact)."""
    for j, node in enumerate(net.nodes):
        if node.op.kind != "Relu":
            continue
        (i,) = node.inputs
        lo, hi = layers[i]
        if np.any((lo < 0) & (hi > 0)):
            m = layers[i].method
            assert m.startswith("linear") or m.startswith("exact"), (j, i, m)


@pytest.mark.parametrize("name", CNNS)
def test_every_unstable_node_is_linear(name):
    net, s = _setup(name)
    b = output_bounds(net, s, "linear")
    methods = [layer.method for layer in b.layers]
    assert methods[0] == "input" and methods[net.output] == "linear"
    assert not any("budget" in m for m in methods), methods
    _relu_inputs_linear(net, b.layers)
    lo, hi = b.layers[net.output]  # still a pair
    assert lo.shape == hi.shape == net.output_shape


def crop_mismatch(net, s, entries: int = 12) -> float:
    """Largest relative difference, over the nodes a linear pass tightens, between bounds of
    ``entries`` of their entries computed on crops and with whole arrays."""
    ibp = interval_bounds(net, s)
    bs = BackSubstitution(net, s, ibp)
    bs.run()
    rng = np.random.default_rng(0)
    worst = 0.0
    for k in bs.linear_nodes:
        if backsub_crop.choose_side(net, k, np.arange(4)) is None:
            continue
        size = int(np.prod(net.nodes[k].shape))
        idx = np.sort(rng.choice(size, min(entries, size), replace=False))
        view = BackSubstitution(net, s, ibp)
        view.bounds = bs.bounds[:k + 1]  # same enclosures upstream as the pass had
        view.relax, view.f32_error = {}, bs.f32_error
        lo_c, hi_c = view._tighten(k, idx)
        view.use_crops = False
        lo_w, hi_w = view._tighten(k, idx)
        scale = np.maximum(np.abs(hi_w - lo_w), 1e-12)
        worst = max(worst, float(np.max((np.abs(lo_c - lo_w) + np.abs(hi_c - hi_w)) / scale)))
    return worst


@pytest.mark.parametrize("name", FAST)
def test_crops_equal_whole_arrays(name):
    net, s = _setup(name)
    assert crop_mismatch(net, s) < 1e-6


def test_crops_on_l2_ball_and_float32():
    """An ℓ2-ball input set (cropped exactly: Λ is zero off the crop) and float32 execution
    (the δ_k of every node sliced with it)."""
    net, s = _setup("resnet_block")
    x0 = s.sample(1, np.random.default_rng(5))[0]
    ball = L2Ball(x0, 0.05)
    assert crop_mismatch(net, ball) < 1e-6
    b = output_bounds(net, ball, "linear")
    y = net(ball.sample(300, np.random.default_rng(6)))
    _inside(y, b.lower, b.upper, "resnet_block ℓ2 ball")
    f32 = output_bounds(net, s, "linear", execution="float32")
    assert f32.layers[net.output].method == "linear"
    _relu_inputs_linear(net, f32.layers)


def test_planted_crop_error_is_caught(monkeypatch):
    """A Conv crop that forgets the last row of its receptive field (reads it as padding):
    the bounds change, and the comparison with whole arrays fails."""
    net, s = _setup("resnet_block")
    good = Conv.crop

    def bad(self, region):
        res = good(self, region)
        if res is None:
            return None
        op, (r,) = res
        (a, b) = r[2]
        if b - a < 2:
            return res
        r2 = r[:2] + ((a, b - 1),) + r[3:]
        pe = list(op.pads_end)
        pe[0] += 1
        return Conv(region_shape(r2), op.weight, op.bias, op.strides, op.pads_begin, pe,
                    op.dilations, op.group), [r2]

    monkeypatch.setattr(Conv, "crop", bad)
    assert crop_mismatch(net, s) > 1e-3


def _check_crop(op, region, in_boxes, rng):
    """The back-substitution step of op.crop(region) on rows supported on ``region`` equals
    the whole op's, zero outside the input regions."""
    res = op.crop(region)
    assert res is not None
    cop, in_regions = res
    assert cop.out_shape == region_shape(region)
    lam = np.zeros((5, *op.out_shape))
    lam[(slice(None), *region_slices(region))] = rng.standard_normal((5, *region_shape(region)))
    boxes = [(lo[None], hi[None]) for lo, hi in in_boxes]
    ins, c, _ = op.backward_linear(lam, op.linear_relaxation(*boxes), boxes)
    cboxes = [(lo[(slice(None), *region_slices(r))], hi[(slice(None), *region_slices(r))])
              for (lo, hi), r in zip(boxes, in_regions)]
    relax = op.crop_relaxation(op.linear_relaxation(*boxes), region)
    if relax is None:
        relax = cop.linear_relaxation(*cboxes)
    cins, cc, _ = cop.backward_linear(lam[(slice(None), *region_slices(region))], relax, cboxes)
    np.testing.assert_allclose(cc, c, rtol=1e-12, atol=1e-12)
    for li, cli, r in zip(ins, cins, in_regions):
        inner = li[(slice(None), *region_slices(r))]
        np.testing.assert_allclose(cli, inner, rtol=1e-12, atol=1e-12)
        outside = li.copy()
        outside[(slice(None), *region_slices(r))] = 0
        assert not outside.any(), "Λ_in nonzero outside the crop's input region"


def _box(shape, rng):
    c = rng.standard_normal(shape)
    r = rng.uniform(0, 1, shape)
    return c - r, c + r


@pytest.mark.parametrize("stride,dil,pads,group", [
    (1, 1, (1, 1), 1), (2, 1, (1, 1), 1), (2, 2, (2, 0), 1), (1, 1, (0, 0), 2), (3, 1, (2, 1), 1)])
def test_conv_crop(stride, dil, pads, group):
    rng = np.random.default_rng(1)
    in_shape = (1, 4, 11, 9)
    w = rng.standard_normal((6, 4 // group, 3, 3))
    op = Conv(in_shape, w, rng.standard_normal(6), (stride, stride), [pads[0]] * 2,
              [pads[1]] * 2, (dil, dil), group)
    _, _, h, wd = op.out_shape
    for region in [((0, 1), (0, 6), (0, 1), (0, 1)), ((0, 1), (0, 6), (1, h), (wd - 1, wd)),
                   ((0, 1), (0, 6), (h // 2, h // 2 + 1), (0, wd))]:
        _check_crop(op, region, [_box(in_shape, rng)], rng)


@pytest.mark.parametrize("cls", ["max", "avg"])
def test_pool_crop(cls):
    rng = np.random.default_rng(2)
    in_shape = (1, 3, 9, 8)
    for ceil in (False, True):
        args = (in_shape, (3, 2), (2, 2), (1, 1), [1, 0], [1, 1], ceil)
        op = MaxPool(*args) if cls == "max" else AveragePool(*args, count_include_pad=False)
        _, _, h, wd = op.out_shape
        for region in [((0, 1), (0, 3), (0, 1), (0, 2)), ((0, 1), (0, 3), (h - 2, h),
                                                           (wd - 1, wd))]:
            _check_crop(op, region, [_box(in_shape, rng)], rng)


def test_entrywise_crops():
    rng = np.random.default_rng(4)
    shape = (1, 3, 5, 6)
    region = ((0, 1), (0, 3), (1, 4), (2, 6))
    _check_crop(Relu(shape), region, [_box(shape, rng)], rng)
    _check_crop(Sum((shape, shape), (1.0, -2.0)), region, [_box(shape, rng),
                                                            _box(shape, rng)], rng)
    op = ElementwiseAffine(shape, rng.standard_normal((3, 1, 1)), rng.standard_normal((3, 5, 1)))
    _check_crop(op, region, [_box(shape, rng)], rng)


@needs_vnncomp()
def test_resnet_2b_matches_crown():
    """auto_LiRPA CROWN: lowest margin −0.5984 on prop_0 (benchmarks/results/
    vs_auto_lirpa.json); interval-only convolutions gave −232."""
    from boundprop.vnnlib import load_vnnlib

    net = bp.load(VNNCOMP / "cifar10_resnet/resnet_2b.onnx")
    prop = load_vnnlib(VNNCOMP / "cifar10_resnet/prop_0_eps_0.008.vnnlib", 3072, 10)
    box, unsafe = prop.cases[0]
    s = box.fit(net.input_shape)
    c = np.vstack([a for a, _ in unsafe if len(a)])
    b = np.concatenate([bb for a, bb in unsafe if len(a)])
    lo, _ = linear_function_bounds(net, s, c)
    margin = float((lo - b).min())
    assert -0.6 < margin < -0.59, margin
    ob = output_bounds(net, s, "linear")
    _relu_inputs_linear(net, ob.layers)
    y = net(s.sample(500, np.random.default_rng(0))).reshape(500, -1)
    assert np.all((y @ c.T - b).min(axis=0) >= lo - b)
