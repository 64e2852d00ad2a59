"""Hostile models (issue 11): float16 casts and float32 overflow must not make the float32
enclosure unsound; huge shapes, bad opsets and malformed files give a one-line BoundpropError,
never an internal error, a hang or an out-of-memory kill. Every model is built here, small,
with ``onnx.helper``; onnxruntime is the ground truth for what a model computes."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.analysis import linear_function_bounds, output_bounds
from boundprop.cli import main
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
@pytest.mark.parametrize("method", ["interval", "linear", "alpha"])
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
    w2 = np.array([[1.0], [-1.0], [1.0]], np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["h"]),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "W2"], ["y"])]
    return _save(path, nodes, {"W1": w1, "W2": w2}, in_dims=(1, 2))


@pytest.mark.parametrize("method", ["interval", "linear", "alpha"])
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
    """Finite float32 bounds (|y| < 3e40) would "verify" that y never reaches 3e40, while
    onnxruntime's y is +inf wherever x_0 > x_1."""
    path = _overflow_model(tmp_path / "big.onnx")
    spec = tmp_path / "p.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
                    "(declare-const Y_0 Real)\n"
                    "(assert (>= X_0 0.0))\n(assert (<= X_0 10000000000.0))\n"
                    "(assert (>= X_1 0.0))\n(assert (<= X_1 10000000000.0))\n"
                    "(assert (>= Y_0 30000000000000000000000000000000000000000.0))\n")
    v = bp.verify(bp.load(path), spec, n_samples=64)
    assert v.status != "verified"


# ---------------------------------------------------------------------------------------------
# Malformed, huge or unsupported models: a one-line BoundpropError (CLI: exit 2), nothing else.


def _relu(path: Path, **kw) -> Path:
    return _save(path, [helper.make_node("Relu", ["x"], ["y"], name="act")], {}, **kw)


def _raw_length(path: Path) -> Path:
    _save(path, [helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": np.ones((4, 3),
                                                                             np.float32)})
    m = onnx.load(str(path))
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-4]
    onnx.save(m, str(path))
    return path


def _dims_mismatch(path: Path) -> Path:
    _save(path, [helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": np.ones((4, 3),
                                                                             np.float32)})
    m = onnx.load(str(path))
    m.graph.initializer[0].dims[:] = [4, 5]
    onnx.save(m, str(path))
    return path


def _negative_initializer_dims(path: Path) -> Path:
    _save(path, [helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": np.ones((4, 3),
                                                                             np.float32)})
    m = onnx.load(str(path))
    m.graph.initializer[0].dims[:] = [-4, -3]
    onnx.save(m, str(path))
    return path


def _truncated(path: Path) -> Path:
    _save(path, [helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": np.ones((64, 64),
                                                                             np.float32)},
          in_dims=(1, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _external_outside(path: Path) -> Path:
    (path.parent / "outside").mkdir()
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../outside/w.bin"), ("offset", "0"), ("length", "48")):
        w.external_data.add(key=k, value=v)
    (path.parent / "outside" / "w.bin").write_bytes(np.ones(12, np.float32).tobytes())
    model_dir = path.parent / "m"
    model_dir.mkdir()
    target = model_dir / path.name
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    target.write_bytes(m.SerializeToString())
    return target


def _missing_input(path: Path) -> Path:
    return _save(path, [helper.make_node("Add", ["x", "nowhere"], ["y"])], {})


def _duplicate_outputs(path: Path) -> Path:
    return _save(path, [helper.make_node("Relu", ["x"], ["y"], name="a"),
                        helper.make_node("Sigmoid", ["x"], ["y"], name="b")], {})


def _cycle(path: Path) -> Path:
    return _save(path, [helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                        helper.make_node("Relu", ["a"], ["b"], name="n2"),
                        helper.make_node("Identity", ["b"], ["y"], name="n3")], {})


def _huge(op: str, reps: list[int]):
    def build(path: Path) -> Path:
        return _save(path, [helper.make_node("Relu", ["x"], ["r"]),
                            helper.make_node(op, ["r", "s"], ["y"], name="big")],
                     {"s": np.array(reps, np.int64)})
    return build


def _pad_huge(path: Path) -> Path:
    """Refused before its constant-padding mask (8 GB) is built."""
    return _save(path, [helper.make_node("Pad", ["x", "pads", "v"], ["y"], name="big")],
                 {"pads": np.array([0, 0, 0, 10**9], np.int64), "v": np.array(1.0, np.float32)})


def _no_outputs(path: Path) -> Path:
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


HOSTILE = {
    "raw_data length": (_raw_length, "W"),
    "dims mismatch": (_dims_mismatch, "W"),
    "negative initializer dims": (_negative_initializer_dims, "negative dims"),
    "truncated file": (_truncated, "truncated"),
    "external data outside the folder": (_external_outside, "outside the model's folder"),
    "missing input": (_missing_input, "nowhere"),
    "duplicate output names": (_duplicate_outputs, "'y' is produced twice"),
    "cycle": (_cycle, "cycle"),
    "opset 100": (lambda p: _relu(p, opset=100), "newest this installation supports (28"),
    "dynamic non-batch dim": (lambda p: _relu(p, in_dims=(1, "n")),
                              "dynamic dims [1, 'n']; give --input-shape 1,1"),
    "dynamic dim of a rank-1 input": (lambda p: _relu(p, in_dims=("n",)),
                                      "dynamic dims ['n']; give --input-shape 1"),
    "zero dim": (lambda p: _relu(p, in_dims=(1, 0)), "no entries"),
    "negative dim": (lambda p: _relu(p, in_dims=(1, -3)), "negative dim"),
    "input of 2^31 entries": (lambda p: _relu(p, in_dims=(1, 2**31)), "memory budget"),
    "Expand to 1e10 entries": (_huge("Expand", [100000, 100000, 4]), "node 'big' (Expand)"),
    "Tile to 1e10 entries": (_huge("Tile", [100000, 25000]), "node 'big' (Tile)"),
    "Pad (with a value) to 1e9 entries": (_pad_huge, "node 'big' (Pad) has 1e+09 values"),
    "no outputs": (_no_outputs, "declares no outputs"),
    "MaxPool with a 0 kernel": (
        lambda p: _save(p, [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[0, 2],
                                             name="mp")], {}, in_dims=(1, 1, 4, 4)),
        "kernel_shape [0, 2] is invalid"),
    "Conv with stride 0": (
        lambda p: _save(p, [helper.make_node("Conv", ["x", "w"], ["y"], strides=[1, 0],
                                             name="cv")],
                        {"w": np.ones((1, 1, 2, 2), np.float32)}, in_dims=(1, 1, 4, 4)),
        "strides [1, 0] is invalid"),
    "Conv kernel_shape unlike its kernel": (
        lambda p: _save(p, [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[7, 9],
                                             name="cv")],
                        {"w": np.ones((1, 1, 2, 2), np.float32)}, in_dims=(1, 1, 4, 4)),
        "does not match the kernel's spatial shape [2, 2]"),
    "GlobalAveragePool of rank 2": (
        lambda p: _save(p, [helper.make_node("GlobalAveragePool", ["x"], ["y"], name="g")], {}),
        "rank >= 3"),
    "Expand to rank 64": (
        lambda p: _save(p, [helper.make_node("Expand", ["x", "s"], ["y"], name="e")],
                        {"s": np.ones(64, np.int64)}), "node 'e' (Expand): cannot convert"),
    "reduction over a repeated axis": (
        lambda p: _save(p, [helper.make_node("ReduceSum", ["x", "ax"], ["y"], name="r")],
                        {"ax": np.array([1, -1], np.int64)}), "name an axis twice"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_model_is_a_one_line_error(tmp_path, case, capsys, monkeypatch):
    monkeypatch.setenv("BOUNDPROP_MAX_MEMORY_BYTES", "4e9")  # the same on every machine
    build, needle = HOSTILE[case]
    path = build(tmp_path / "hostile.onnx")
    with pytest.raises(bp.BoundpropError) as e:
        bp.load(path)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg, msg
    code = main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, (code, err)


def test_summary_of_size_one_rank_four_normalisation(tmp_path):
    """ERAN's MLPs normalise with (1, 1, 1, 1) mean and std constants: ``inspect`` shows them
    (``float()`` of such an array is deprecated in numpy 2)."""
    consts = {"m": np.full((1, 1, 1, 1), 0.1307, np.float32),
              "s": np.full((1, 1, 1, 1), 0.3081, np.float32)}
    nodes = [helper.make_node("Sub", ["x", "m"], ["a"]), helper.make_node("Div", ["a", "s"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    path = _save(tmp_path / "eran.onnx", nodes, consts, in_dims=(1, 1, 2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = bp.load(path).summary()
    assert "*3.246" in text and "-0.4242" in text


@pytest.mark.parametrize("method", ["interval", "linear", "alpha"])
def test_analysis_refused_over_the_memory_budget(tmp_path, monkeypatch, method):
    """The model imports (each node fits) but its analysis would not: a one-line error naming
    the need and the budget, before anything is allocated."""
    nodes = [helper.make_node("Relu" if k % 2 else "Sigmoid", [f"h{k}"], [f"h{k + 1}"])
             for k in range(40)]
    nodes[0].input[0] = "x"
    nodes[-1].output[0] = "y"
    path = _save(tmp_path / "deep.onnx", nodes, {}, in_dims=(1, 1000))
    monkeypatch.setenv("BOUNDPROP_MAX_MEMORY_BYTES", "200000")
    net = bp.load(path)
    box = bp.Box(np.zeros((1, 1000)), np.ones((1, 1000)))
    budget = r"bounds need about .* over the 195 KiB memory budget"
    with pytest.raises(bp.BoundpropError, match=budget) as e:
        output_bounds(net, box, method)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("BOUNDPROP_MAX_MEMORY_BYTES", "not a number")
    with pytest.raises(bp.BoundpropError, match="BOUNDPROP_MAX_MEMORY_BYTES"):
        bp.load(path)


def _f16_inside_model(path: Path, f16_input: bool) -> Path:
    """Sigmoid computed in float16 (after a Cast), or a whole float16 model."""
    if f16_input:
        g = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Sigmoid", ["h"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
            [numpy_helper.from_array(np.full((4, 3), 0.3, np.float16), "W")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.save(m, str(path))
        return path
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Sigmoid", ["h"], ["s"], name="sig16"),
             helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)]
    return _save(path, nodes, {})


@pytest.mark.parametrize("f16_input", [False, True])
def test_float32_execution_refuses_float16_arithmetic(tmp_path, f16_input):
    """onnxruntime rounds float16 arithmetic to 2⁻¹¹, far beyond the float32 error model:
    float32 execution is refused with the node named; real execution still works."""
    net = bp.load(_f16_inside_model(tmp_path / "half.onnx", f16_input))
    box = bp.Box(np.zeros((1, 4)), np.ones((1, 4)))
    needle = "input 'x' is float16" if f16_input else "node 'sig16' (Sigmoid) computes in float16"
    for method in ("interval", "linear", "alpha"):
        with pytest.raises(bp.BoundpropError, match=re.escape(needle)):
            output_bounds(net, box, method, "float32")
        assert np.all(np.isfinite(output_bounds(net, box, method, "real").upper))


@pytest.mark.parametrize("op", ["Conv", "MaxPool", "AveragePool"])
def test_huge_stride_is_one_window(tmp_path, op):
    """A stride of 2³¹ (one output position) imports, evaluates as onnxruntime does, and gets
    certified constants (the conv norm once tabulated an array of stride size: 16 GiB)."""
    kw = dict(strides=[1, 2**31], kernel_shape=[1, 2])
    inits = {"w": np.arange(1, 5, dtype=np.float32).reshape(2, 1, 1, 2)} if op == "Conv" else {}
    nodes = [helper.make_node(op, ["x", "w"] if op == "Conv" else ["x"], ["y"], **kw)]
    path = _save(tmp_path / "stride.onnx", nodes, inits, in_dims=(1, 1, 3, 5))
    net = bp.load(path)
    xs = np.random.default_rng(5).standard_normal((8, 1, 1, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(net(xs.astype(np.float64)), OrtModel(path)(xs), rtol=1e-6)
    c = bp.certify(net, bp.Box(np.zeros((1, 1, 3, 5)), np.ones((1, 1, 3, 5))), norm="2")
    assert np.isfinite(c.lipschitz)
