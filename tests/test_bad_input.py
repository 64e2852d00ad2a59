"""Bad input gives a one-line BoundpropError (CLI: message on stderr, exit 2), never a
traceback, and untrusted files cannot reach outside their folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.cli import main
from tests.conftest import MODELS


def _mlp(path: Path, weight: np.ndarray | None = None, input_dims=(1, 4), op: str = "Relu",
         extra_nodes=(), extra_inputs=(), opset: int = 13) -> Path:
    w = np.ones((4, 3), np.float32) if weight is None else weight
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node(op, ["h"], ["y"], name="act"), *extra_nodes]
    out = nodes[-1].output[0]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_dims)), *extra_inputs],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "boundprop.cli", *args], capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def assert_cli_error(path: Path, *needles: str, extra=()) -> str:
    code, out, err = run_cli("inspect", str(path), *extra)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_not_an_onnx_file(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(bp.ModelLoadError, match="notes.onnx"):
        bp.load(p)
    assert_cli_error(p, "notes.onnx")


def test_missing_file(tmp_path):
    with pytest.raises(bp.ModelLoadError, match="no such file"):
        bp.load(tmp_path / "absent.onnx")
    assert_cli_error(tmp_path / "absent.onnx", "no such file")


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.33, 0.5, 0.77, 0.95, 0.999])
def test_truncated_file(tmp_path, fraction):
    data = (MODELS / "lenet.onnx").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(bp.BoundpropError):
        bp.load(p)


def test_truncated_file_cli(tmp_path):
    data = (MODELS / "mlp_784_100_100_10_relu.onnx").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    assert_cli_error(p, "cut.onnx")


def test_unsupported_ops_are_all_named(tmp_path):
    extra = [helper.make_node("Sin", ["y"], ["s"], name="my_sin"),
             helper.make_node("Cos", ["s"], ["c"], name="my_cos")]
    p = _mlp(tmp_path / "trig.onnx", extra_nodes=extra)
    with pytest.raises(bp.UnsupportedModelError) as e:
        bp.load(p)
    msg = str(e.value)
    for needle in ("Sin", "my_sin", "Cos", "my_cos", "supports", "Conv"):
        assert needle in msg
    assert_cli_error(p, "Sin", "my_sin", "Cos")


def test_product_of_computed_tensors_is_refused(tmp_path):
    extra = [helper.make_node("Mul", ["y", "y"], ["sq"], name="square")]
    p = _mlp(tmp_path / "sq.onnx", extra_nodes=extra)
    with pytest.raises(bp.UnsupportedModelError, match="square"):
        bp.load(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(tmp_path, bad):
    w = np.ones((4, 3), np.float32)
    w[2, 1] = bad
    p = _mlp(tmp_path / "nan.onnx", weight=w)
    with pytest.raises(bp.ModelLoadError, match="NaN/Inf"):
        bp.load(p)
    assert_cli_error(p, "NaN/Inf", "mm")


def test_dynamic_dimension_needs_input_shape(tmp_path):
    p = _mlp(tmp_path / "dyn.onnx", input_dims=(1, "n"))
    with pytest.raises(bp.InputShapeError, match="input_shape"):
        bp.load(p)
    assert_cli_error(p, "dynamic", "--input-shape")
    assert bp.load(p, input_shape=(1, 4)).output_shape == (1, 3)


def test_dynamic_batch_dimension_is_fixed_to_one(tmp_path):
    """A free leading dim alone (['batch', 4]) is read as 1, with one note line in the CLI;
    --input-shape still chooses another size."""
    p = _mlp(tmp_path / "dyn.onnx", input_dims=("batch", 4))
    with pytest.warns(bp.BoundpropNote, match="dynamic batch dim"):
        net = bp.load(p)
    assert net.input_shape == (1, 4) and net.output_shape == (1, 3)
    code, out, err = run_cli("inspect", str(p))
    assert code == 0 and "1x3" in out, (code, out, err)
    assert err.count("boundprop: note:") == 1 and "fixed to 1" in err, err
    net = bp.load(p, input_shape=(2, 4))
    assert net.output_shape == (2, 3)
    code, out, _ = run_cli("inspect", str(p), "--input-shape", "2,4")
    assert code == 0 and "2x3" in out
    with pytest.raises(bp.InputShapeError, match="does not fit"):
        bp.load(p, input_shape=(2, 5))


def test_several_inputs_need_a_choice(tmp_path):
    extra = [helper.make_node("Add", ["y", "z"], ["out"], name="add_z")]
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])
    p = _mlp(tmp_path / "two.onnx", extra_nodes=extra, extra_inputs=[z])
    with pytest.raises(bp.InputShapeError, match="2 inputs"):
        bp.load(p)
    assert_cli_error(p, "'x'", "'z'", "--input")
    with pytest.raises(bp.InputShapeError, match="no value"):
        bp.load(p, input_name="x")
    net = bp.load(p, input_name="x", constants={"z": np.full((1, 3), 10.0)})
    np.testing.assert_allclose(net(np.ones((1, 4))), np.full((1, 3), 14.0))


def test_wrong_input_to_network():
    net = bp.load(MODELS / "mlp_relu.onnx")
    with pytest.raises(bp.InputShapeError, match="does not match"):
        net(np.zeros((1, 9)))


def _external_model(tmp_path: Path, location: str) -> Path:
    p = _mlp(tmp_path / "ext.onnx")
    m = onnx.load(str(p))
    w = m.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "48")):
        e = w.external_data.add()
        e.key, e.value = k, v
    onnx.save(m, str(p))
    return p


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_external_data_outside_folder_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(np.ones(12, np.float32).tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    p = _external_model(model_dir, location)
    with pytest.raises(bp.ModelLoadError, match="outside"):
        bp.load(p)
    assert_cli_error(p, "outside")


def test_external_data_symlink_escape_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.ones(12, np.float32).tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(tmp_path / "secret.bin", model_dir / "weights.bin")
    p = _external_model(model_dir, "weights.bin")
    with pytest.raises(bp.ModelLoadError, match="outside"):
        bp.load(p)


def test_external_data_inside_folder_loads(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.ones(12, np.float32).tobytes())
    p = _external_model(tmp_path, "weights.bin")
    net = bp.load(p)
    np.testing.assert_allclose(net(np.ones((1, 4))), np.full((1, 3), 4.0))


def test_missing_or_truncated_external_data(tmp_path):
    p = _external_model(tmp_path, "weights.bin")
    with pytest.raises(bp.ModelLoadError, match="missing"):
        bp.load(p)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(bp.ModelLoadError, match="truncated"):
        bp.load(p)


def test_model_too_large_for_memory_is_refused(tmp_path, monkeypatch):
    p = _mlp(tmp_path / "m.onnx")
    monkeypatch.setenv("BOUNDPROP_MAX_MEMORY_BYTES", "100")
    with pytest.raises(bp.ModelLoadError, match="BOUNDPROP_MAX_MEMORY_BYTES"):
        bp.load(p)


def test_folded_constant_bomb_is_refused(tmp_path):
    shape = numpy_helper.from_array(np.array([100000, 100000], np.int64), "big_shape")
    nodes = [helper.make_node("ConstantOfShape", ["big_shape"], ["big"], name="bomb"),
             helper.make_node("Add", ["x", "big"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "bomb.onnx"))
    with pytest.raises(bp.UnsupportedModelError, match="bomb"):
        bp.load(tmp_path / "bomb.onnx")


def test_invalid_graph_is_reported(tmp_path):
    p = _mlp(tmp_path / "bad.onnx")
    m = onnx.load(str(p))
    m.graph.node[1].input[0] = "nowhere"
    onnx.save(m, str(p))
    with pytest.raises(bp.ModelLoadError, match="invalid ONNX model|undefined"):
        bp.load(p)


def test_cli_usage_errors_exit_2(tmp_path):
    code, _, err = run_cli("inspect", str(MODELS / "mlp_relu.onnx"), "--input-shape", "a,b")
    assert code == 2 and "Traceback" not in err
    assert main(["inspect", str(tmp_path / "nothing.onnx")]) == 2


def test_ambiguous_same_pooling_with_dilation_is_refused(tmp_path):
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2],
                            dilations=[2], auto_pad="SAME_UPPER")
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "pool.onnx"))
    with pytest.raises(bp.UnsupportedModelError, match="ambiguous"):
        bp.load(tmp_path / "pool.onnx")


def test_cli_output_closed_early_is_not_an_error(monkeypatch):
    """Like `boundprop inspect ... | head -1`: the reader is gone before we write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        assert main(["inspect", str(MODELS / "lenet.onnx")]) == 0
    finally:
        monkeypatch.undo()
        try:
            stream.close()
        except OSError:
            pass
