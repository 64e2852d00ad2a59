"""``boundprop verify``: the VNN-COMP interface (one word on stdout, the result file with its
witness, exit codes, progress, bad input), and models with a dynamic batch dimension."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
import boundprop.verifier as verifier
from boundprop.cli import main
from boundprop.runtime import OrtModel
from boundprop.verifier import Verdict
from boundprop.verify_command import EXIT_UNDECIDED, ProgressLine
from boundprop.vnnlib import load_vnnlib

VNN = Path(__file__).parents[1].parent / "shared" / "vnncomp2021"
TEST = VNN / "test"
needs_vnn = pytest.mark.skipif(not VNN.is_dir(), reason="../shared/vnncomp2021 is absent")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``boundprop ARGS`` in-process: exit code, stdout, stderr."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("boundprop: error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def parse_result(text: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The word and the witness (X, Y as float64 arrays, in index order) of a result file."""
    lines = text.splitlines()
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for m in re.finditer(r"\(\s*([XY])_(\d+)\s+(\S+?)\s*\)", "\n".join(lines[1:])):
        values[m.group(1)][int(m.group(2))] = float(m.group(3))
    as_array = [np.array([v[i] for i in range(len(v))]) for v in (values["X"], values["Y"])]
    return lines[0], as_array[0], as_array[1]


# -- sat / unsat on the competition's test instances -------------------------------------------


@needs_vnn
def test_sat_writes_a_witness_that_onnxruntime_reproduces(capsys, tmp_path):
    result = tmp_path / "result.txt"
    code, out, err = cli(capsys, "verify", TEST / "test_sat.onnx", TEST / "test_prop.vnnlib",
                         "-o", result)
    assert (code, out) == (0, "sat\n"), err
    text = result.read_text()
    assert text.startswith("sat\n(\n(X_0 ") and text.endswith(")\n)\n")
    word, x, y = parse_result(text)
    assert word == "sat" and x.shape == (5,) and y.shape == (5,)
    # the values are the float32 input and output exactly: repr round-trips through float32
    assert np.array_equal(x.astype(np.float32).astype(np.float64), x)
    prop = load_vnnlib(TEST / "test_prop.vnnlib", 5, 5)
    y_ort = OrtModel(TEST / "test_sat.onnx")(x.astype(np.float32).reshape(1, 1, 1, 5))
    assert np.array_equal(np.asarray(y_ort, np.float64).reshape(-1), y)
    hits = []
    for box, unsafe in prop.cases:
        inside = np.all(box.lower.reshape(-1) <= x) and np.all(x <= box.upper.reshape(-1))
        hits.append(inside and any(np.all(a @ y <= b) for a, b in unsafe))
    assert any(hits), "the witness does not violate the property in its box"


@needs_vnn
def test_unsat(capsys, tmp_path):
    result = tmp_path / "result.txt"
    code, out, err = cli(capsys, "verify", TEST / "test_unsat.onnx", TEST / "test_prop.vnnlib",
                         "-o", result, "--timeout", "60")
    assert (code, out) == (0, "unsat\n"), err
    assert result.read_text() == "unsat\n"


@needs_vnn
def test_json_output(capsys):
    code, out, _ = cli(capsys, "verify", TEST / "test_unsat.onnx", TEST / "test_prop.vnnlib",
                       "--json")
    doc = json.loads(out)
    assert code == 0 and doc["result"] == "unsat" and doc["status"] == "verified"
    assert doc["method"] == "linear" and doc["timed_out"] is False and "proof" in doc


# -- unknown and timeout ------------------------------------------------------------------------


def _zero_net(path: Path) -> Path:
    """f(x) = relu(x) + relu(−x) − relu(x) − relu(−x) through four separate neurons: f ≡ 0, but
    without splitting x the relaxations only give f ≥ −1 on [−1, 1]."""
    w1 = np.array([[1.0, -1.0, 1.0, -1.0]], np.float32)
    w2 = np.array([[1.0], [1.0], [-1.0], [-1.0]], np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W2"], ["y"])], "zero",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


PROP_ZERO = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(assert (>= X_0 -1.0))
(assert (<= X_0 1.0))
(assert (<= Y_0 -0.1))
"""


def test_undecided_is_exit_1_and_the_word_only(capsys, tmp_path):
    """A true property the bounds cannot prove (without input splitting): not sat, and when
    undecided: exit 1, the word alone in the result file."""
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "zero.vnnlib"
    prop.write_text(PROP_ZERO)
    result = tmp_path / "result.txt"
    code, out, err = cli(capsys, "verify", model, prop, "-o", result)
    assert out in ("unknown\n", "unsat\n"), (out, err)  # unsat once branching proves it
    assert code == (EXIT_UNDECIDED if out == "unknown\n" else 0)
    assert result.read_text() == out


@pytest.mark.parametrize("timed_out, word", [(False, "unknown"), (True, "timeout")])
def test_unknown_and_timeout_words(capsys, tmp_path, monkeypatch, timed_out, word):
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "zero.vnnlib"
    prop.write_text(PROP_ZERO)
    seen = {}

    def fake_verify(net, p, **kw):
        seen.update(kw)
        return Verdict("unknown", -1.0, timed_out=timed_out,
                       note="timed out" if timed_out else "")

    monkeypatch.setattr(verifier, "verify", fake_verify)
    result = tmp_path / "result.txt"
    code, out, _ = cli(capsys, "verify", model, prop, "-o", result, "--timeout", "2.5",
                       "--seed", "7", "--method", "alpha", "--quiet")
    assert (code, out, result.read_text()) == (EXIT_UNDECIDED, f"{word}\n", f"{word}\n")
    # the budget left after loading the model
    assert 2.0 < seen["timeout"] <= 2.5 and seen["seed"] == 7 and seen["method"] == "alpha"
    assert seen["progress"] is None  # --quiet


def test_real_timeout_gives_timeout(capsys, tmp_path):
    """With a deadline, the search runs until it passes: the word is timeout."""
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "zero.vnnlib"
    prop.write_text(PROP_ZERO)
    code, out, _ = cli(capsys, "verify", model, prop, "--timeout", "0.5")
    assert (code, out) in ((EXIT_UNDECIDED, "timeout\n"), (0, "unsat\n"))


# -- proof and progress -------------------------------------------------------------------------


def test_proof_written_when_the_verdict_has_one(capsys, tmp_path, monkeypatch):
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "zero.vnnlib"
    prop.write_text(PROP_ZERO)

    def fake_verify(net, p, **kw):
        v = Verdict("verified", 0.5)
        v.proof = {"kind": "test", "leaves": [1, 2]}
        return v

    monkeypatch.setattr(verifier, "verify", fake_verify)
    proof = tmp_path / "proof.json"
    code, out, _ = cli(capsys, "verify", model, prop, "--proof", proof)
    assert (code, out) == (0, "unsat\n")
    assert json.loads(proof.read_text()) == {"kind": "test", "leaves": [1, 2]}


def test_no_proof_is_a_note_and_no_file(capsys, tmp_path, monkeypatch):
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "zero.vnnlib"
    prop.write_text(PROP_ZERO)
    monkeypatch.setattr(verifier, "verify", lambda net, p, **kw: Verdict("verified", 0.5))
    proof = tmp_path / "proof.json"
    code, out, err = cli(capsys, "verify", model, prop, "--proof", proof)
    assert (code, out) == (0, "unsat\n") and not proof.exists()
    assert "no proof" in err and len(err.strip().splitlines()) == 1


def test_progress_is_throttled_and_passed_to_verify(capsys, tmp_path, monkeypatch):
    stream = io.StringIO()
    line = ProgressLine(stream, interval=3600.0)
    for k in range(5):
        line({"phase": "branching", "domains_left": 10 - k, "best_bound": -0.5, "elapsed": 1.0})
    assert stream.getvalue() == ("boundprop: branching, 10 domains left, best bound -0.5, "
                                 "1.0 s\n")
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "zero.vnnlib"
    prop.write_text(PROP_ZERO)

    def fake_verify(net, p, progress=None, **kw):
        assert callable(progress)
        progress({"phase": "bounding", "elapsed": 0.0})
        return Verdict("verified", 0.5)

    monkeypatch.setattr(verifier, "verify", fake_verify)
    code, out, err = cli(capsys, "verify", model, prop, "--progress")
    assert (code, out) == (0, "unsat\n") and "boundprop: bounding, 0.0 s" in err


# -- bad input: one line, exit 2, no file -------------------------------------------------------


def test_missing_model(capsys, tmp_path):
    prop = tmp_path / "p.vnnlib"
    prop.write_text(PROP_ZERO)
    result = tmp_path / "result.txt"
    assert_one_line_error(*cli(capsys, "verify", tmp_path / "absent.onnx", prop, "-o", result),
                          "absent.onnx", "no such file")
    assert not result.exists()


def test_missing_property(capsys, tmp_path):
    model = _zero_net(tmp_path / "zero.onnx")
    assert_one_line_error(*cli(capsys, "verify", model, tmp_path / "absent.vnnlib"),
                          "absent.vnnlib", "no such file")


def test_bad_vnnlib_writes_nothing(capsys, tmp_path):
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "bad.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(assert (<= X_0 \n")
    result = tmp_path / "result.txt"
    assert_one_line_error(*cli(capsys, "verify", model, prop, "-o", result), "bad.vnnlib")
    assert not result.exists() and not list(tmp_path.glob(".boundprop-*"))


def test_property_for_another_model(capsys, tmp_path):
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "five.vnnlib"
    prop.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(5))
                    + "(declare-const Y_0 Real)\n"
                    + "".join(f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))\n"
                              for i in range(5)) + "(assert (<= Y_0 -1.0))\n")
    result = tmp_path / "result.txt"
    assert_one_line_error(*cli(capsys, "verify", model, prop, "-o", result), "five.vnnlib")
    assert not result.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--timeout", "0"], "--timeout"), (["--timeout", "nan"], "--timeout"),
    (["--timeout", "-3"], "--timeout"), (["-o", "{tmp}/no/such/dir/r.txt"], "does not exist"),
    (["-o", "{tmp}/same.txt", "--proof", "{tmp}/same.txt"], "two different paths"),
    (["-o", "{model}"], "would be overwritten"), (["-o", "{tmp}"], "folder"),
])
def test_bad_options(capsys, tmp_path, argv, needle):
    model, prop = _zero_net(tmp_path / "zero.onnx"), tmp_path / "p.vnnlib"
    prop.write_text(PROP_ZERO)
    before = model.read_bytes()
    argv = [a.format(tmp=tmp_path, model=model) for a in argv]
    assert_one_line_error(*cli(capsys, "verify", model, prop, *argv), needle)
    assert model.read_bytes() == before and not (tmp_path / "same.txt").exists()


def test_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["verify", "only-a-model.onnx"])
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "exit status: 0 a decided answer (sat or unsat), 1 unknown or timeout" in out
    assert "examples:" in out


# -- dynamic batch dimension --------------------------------------------------------------------


def _dynamic_mlp(path: Path) -> Path:
    """x ['batch', 4] → MatMul, Add, Relu → MatMul, Add → y ['batch', 3]."""
    rng = np.random.default_rng(0)
    inits = {"W1": rng.standard_normal((4, 8)), "b1": rng.standard_normal(8),
             "W2": rng.standard_normal((8, 3)), "b2": rng.standard_normal(3)}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["a"]),
             helper.make_node("Add", ["a", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["c"]),
             helper.make_node("Add", ["c", "b2"], ["y"])]
    return _save(path, nodes, inits, ["batch", 4], ["batch", 3])


def _dynamic_cnn(path: Path) -> Path:
    """x ['N', 1, 6, 6] → Conv 3×3 (2 filters), Relu, Flatten, Gemm → y ['N', 3]."""
    rng = np.random.default_rng(1)
    inits = {"K": rng.standard_normal((2, 1, 3, 3)), "kb": rng.standard_normal(2),
             "W": rng.standard_normal((3, 32)), "b": rng.standard_normal(3)}
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    return _save(path, nodes, inits, ["N", 1, 6, 6], ["N", 3])


def _save(path: Path, nodes, inits: dict, in_dims, out_dims) -> Path:
    g = helper.make_graph(
        nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _box_property(n_in: int, n_out: int, unsafe: str) -> str:
    return ("".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
            + "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))
            + "".join(f"(assert (>= X_{i} -0.5))\n(assert (<= X_{i} 0.5))\n"
                      for i in range(n_in)) + unsafe + "\n")


@pytest.mark.parametrize("build, n_in", [(_dynamic_mlp, 4), (_dynamic_cnn, 36)])
def test_dynamic_batch_loads_as_one_and_matches_onnxruntime(tmp_path, build, n_in):
    path = build(tmp_path / "dyn.onnx")
    with pytest.warns(bp.BoundpropNote, match="fixed to 1"):
        net = bp.load(path)
    assert net.input_shape[0] == 1 and int(np.prod(net.input_shape)) == n_in
    assert net.output_shape == (1, 3)
    xs = np.random.default_rng(2).uniform(-1, 1, (16, *net.input_shape)).astype(np.float32)
    ort = OrtModel(path)
    assert ort.input_shape == net.input_shape
    np.testing.assert_allclose(ort(xs), net(xs.astype(np.float64)), rtol=1e-5, atol=1e-5)
    # the file really is dynamic: onnxruntime takes a batch of 16 at once, with the same values
    batched = ort.session.run(["y"], {"x": xs.reshape(16, *net.input_shape[1:])})[0]
    np.testing.assert_allclose(batched, ort(xs).reshape(16, 3), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("build, n_in", [(_dynamic_mlp, 4), (_dynamic_cnn, 36)])
def test_dynamic_batch_verify(capsys, tmp_path, build, n_in):
    path = build(tmp_path / "dyn.onnx")
    unsat, sat = tmp_path / "unsat.vnnlib", tmp_path / "sat.vnnlib"
    unsat.write_text(_box_property(n_in, 3, "(assert (<= Y_0 -1000.0))"))
    sat.write_text(_box_property(n_in, 3, "(assert (>= Y_1 -1000.0))"))
    with pytest.warns(bp.BoundpropNote):
        net = bp.load(path)
    assert bp.verify(net, unsat).status == "verified"
    v = bp.verify(net, sat)
    assert v.status == "falsified" and v.counterexample[0].shape == net.input_shape
    result = tmp_path / "result.txt"
    code, out, err = cli(capsys, "verify", path, sat, "-o", result)
    assert (code, out) == (0, "sat\n")
    assert err.count("boundprop: note:") == 1 and "dynamic batch dim" in err, err
    word, x, y = parse_result(result.read_text())
    assert (word, x.shape, y.shape) == ("sat", (n_in,), (3,))
    code, out, _ = cli(capsys, "verify", path, unsat)
    assert (code, out) == (0, "unsat\n")
