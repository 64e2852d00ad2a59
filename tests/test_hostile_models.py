"""Hostile models (issue 11): float16 casts and float32 overflow must not make the float32
enclosure unsound; huge shapes, bad opsets and malformed files give a one-line BoundpropError,
never an internal error, a hang or an out-of-memory kill. Every model is built here, small,
with ``onnx.helper``; onnxruntime is the ground truth for what a model computes."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.analysis import linear_function_bounds, output_bounds
from boundprop.runtime import OrtModel


def _save(path: Path, nodes, inits, in_dims=(1, 4), opset: int = 17, in_name: str = "x",
          value_info=()) -> Path:
    out = nodes[-1].output[0]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, list(in_dims))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
        value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _cast_model(path: Path, act: str, to: int, seed: int = 0) -> Path:
    """x → Gemm → Cast(to) → Cast(float32) → act → Gemm, scaled so that the cast's rounding
    matters: pre-activations of a few hundred for Relu (a float16 ulp of 0.25), of about 1
    for Tanh (where it is unsaturated)."""
    rng = np.random.default_rng(seed)
    scale = 60.0 if act == "Relu" else 0.5
    w1 = (rng.standard_normal((4, 8)) * scale).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32)
    w2 = rng.standard_normal((8, 3)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="g1"),
             helper.make_node("Cast", ["h"], ["h16"], to=to, name="down"),
             helper.make_node("Cast", ["h16"], ["h32"], to=TensorProto.FLOAT, name="up"),
             helper.make_node(act, ["h32"], ["a"], name="act"),
             helper.make_node("Gemm", ["a", "W2"], ["y"], name="g2")]
    return _save(path, nodes, {"W1": w1, "b1": b1, "W2": w2})


def _cast_reference(path: Path, xs: np.ndarray, act: str, to: int) -> np.ndarray:
    """The cast model in float64 with the exact round-to-nearest-even of the cast format."""
    w = {t.name: numpy_helper.to_array(t).astype(np.float64)
         for t in onnx.load(str(path)).graph.initializer}
    fmt = np.float16 if to == TensorProto.FLOAT16 else ml_dtypes.bfloat16
    h = (xs @ w["W1"] + w["b1"]).astype(fmt).astype(np.float64)
    a = np.maximum(h, 0.0) if act == "Relu" else np.tanh(h)
    return a @ w["W2"]


def _inside(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per sample: y in [lo, hi] exactly (a non-finite y only inside (−∞, ∞))."""
    unbounded = np.isneginf(lo) & np.isposinf(hi)
    ok = (lo <= y) & (y <= hi) | unbounded
    return ok.reshape(len(y), -1).all(axis=1)


@pytest.mark.parametrize("to", [TensorProto.FLOAT16, TensorProto.BFLOAT16])
@pytest.mark.parametrize("act", ["Relu", "Tanh"])
@pytest.mark.parametrize("method", ["interval", "linear"])
def test_float16_casts_enclosed(tmp_path, act, to, method):
    """On small boxes (where the cast's rounding dominates the width) both executions enclose
    it: float32 mode every onnxruntime output (no tolerance), real mode a float64
    evaluation that rounds to the format exactly."""
    path = _cast_model(tmp_path / "cast.onnx", act, to)
    net, ort = bp.load(path), OrtModel(path)
    rng = np.random.default_rng(1)
    outside_f32 = outside_real = 0
    for centre in rng.uniform(-2, 2, (30, 1, 4)):
        box = bp.Box(centre - 1e-4, centre + 1e-4)
        xs = rng.uniform(box.lower, box.upper, (200, 1, 4)).astype(np.float32)
        xs = np.clip(xs, np.float32(box.lower), np.float32(box.upper))  # float32 points of it
        f32 = output_bounds(net, box, method, "float32")
        outside_f32 += int(np.sum(~_inside(ort(xs), f32.lower, f32.upper)))
        real = output_bounds(net, box, method, "real")
        x64 = xs.astype(np.float64)
        outside_real += int(np.sum(~_inside(_cast_reference(path, x64, act, to), real.lower,
                                                     real.upper)))
    assert (outside_f32, outside_real) == (0, 0)


def test_cast_evaluation_rounds_like_onnxruntime(tmp_path):
    """The IR's float64 evaluation of a float16 round trip is onnxruntime's on float32 inputs
    that the first Gemm maps exactly (weights powers of two)."""
    w = np.diag([1.0, 0.5, 2.0, 0.25]).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Cast", ["h"], ["h16"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h16"], ["y"], to=TensorProto.FLOAT)]
    path = _save(tmp_path / "rt.onnx", nodes, {"W": w})
    xs = np.random.default_rng(2).standard_normal((500, 1, 4)).astype(np.float32)
    xs *= np.float32(10.0) ** np.random.default_rng(3).integers(-6, 6, (500, 1, 4))
    np.testing.assert_array_equal(bp.load(path)(xs.astype(np.float64)), OrtModel(path)(xs))


def _overflow_model(path: Path) -> Path:
    """Weights 1e30 on inputs up to 1e10: float32 overflows to inf in the first Gemm, and the
    second mixes +inf and −inf into NaN."""
    w1 = np.array([[1e30, -1e30, 1.0], [1e30, 1e30, 1.0]], np.float32)
    w2 = np.array([[1.0], [1.0], [1.0]], np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["h"]),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "W2"], ["y"])]
    return _save(path, nodes, {"W1": w1, "W2": w2}, in_dims=(1, 2))


@pytest.mark.parametrize("method", ["interval", "linear"])
def test_float32_overflow_is_not_enclosed_by_a_finite_box(tmp_path, method):
    path = _overflow_model(tmp_path / "big.onnx")
    net = bp.load(path)
    box = bp.Box(np.zeros((1, 2)), np.full((1, 2), 1e10))
    xs = np.random.default_rng(4).uniform(0, 1e10, (200, 1, 2)).astype(np.float32)
    ort_y = OrtModel(path)(xs)
    assert not np.all(np.isfinite(ort_y))  # the model does overflow in onnxruntime
    b = output_bounds(net, box, method, "float32")
    assert _inside(ort_y, b.lower, b.upper).all()
    assert np.isneginf(b.lower).all() and np.isposinf(b.upper).all()
    assert b.note is not None and "overflow float32" in b.note
    lo, hi = linear_function_bounds(net, box, np.ones((1, 1)), method, "float32")
    assert np.isneginf(lo).all() and np.isposinf(hi).all()
    # real arithmetic has no overflow: the real enclosure stays finite
    assert np.all(np.isfinite(output_bounds(net, box, method, "real").upper))


def test_verify_never_verifies_an_overflowing_model(tmp_path):
    path = _overflow_model(tmp_path / "big.onnx")
    spec = tmp_path / "p.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
                    "(declare-const Y_0 Real)\n"
                    "(assert (>= X_0 0.0))\n(assert (<= X_0 10000000000.0))\n"
                    "(assert (>= X_1 0.0))\n(assert (<= X_1 10000000000.0))\n"
                    "(assert (<= Y_0 -1.0))\n")
    v = bp.verify(bp.load(path), spec, n_samples=64)
    assert v.status != "verified"
