"""VNN-LIB parsing: every VNN-COMP 2021 file (shapes, disjuncts, known values, and an
independent regex read of the bounds), synthetic round trips, and bad input with line numbers."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import boundprop as bp
from boundprop.cli import main
from boundprop.errors import BoundpropError
from boundprop.sets import Box
from boundprop.vnnlib import (
    MAX_NESTING,
    PROGRESS_MIN_BOXES,
    Property,
    VnnlibError,
    format_vnnlib,
    load_vnnlib,
    parse_vnnlib,
)
from tests.conftest import VNNCOMP, gemm_onnx, needs_vnncomp

# (folder-relative glob, n_inputs, n_outputs, conjunctions, rows per conjunction)
SPECS = [
    ("acasxu/prop_1.vnnlib", 5, 5, 1, 1),
    ("acasxu/prop_[234].vnnlib", 5, 5, 1, 4),
    ("mnistfc/*.vnnlib", 784, 10, 9, 1),
    ("verivital/specs/maxpool_specs/*.vnnlib", 784, 10, 9, 1),
    ("oval21/*.vnnlib", 3072, 10, 9, 1),
    ("cifar10_resnet/*.vnnlib", 3072, 10, 9, 1),
    ("test/test_nano.vnnlib", 1, 1, 1, 1),
    ("test/test_tiny.vnnlib", 1, 1, 1, 1),
    ("test/test_small.vnnlib", 1, 1, 1, 1),
    ("test/test_prop.vnnlib", 5, 5, 1, 4),
]


def _spec_files():
    out = []
    for pattern, n_in, n_out, n_conj, n_rows in SPECS:
        for p in sorted(VNNCOMP.glob(pattern)) if VNNCOMP.is_dir() else []:
            out.append(pytest.param(p, n_in, n_out, n_conj, n_rows,
                                    id=str(p.relative_to(VNNCOMP))))
    return out


def _regex_box(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The input bounds read independently of the parser (all 2021 files state them as
    (assert (<= X_i c)) / (assert (>= X_i c)), possibly inside one (and ...))."""
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    for op, i, c in re.findall(r"\((<=|>=) X_(\d+) ([-+0-9.eE]+)\)", path.read_text()):
        (hi if op == "<=" else lo)[int(i)] = float(c)
    return lo, hi


def test_the_vnnlib_package_is_not_used_for_2021_files():
    """Documents the parser choice: vnnlib 1.0.2 reads VNN-LIB 2.0 and rejects 2021 files."""
    vnnlib = pytest.importorskip("vnnlib")
    text = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n"
    with pytest.raises(vnnlib.VNNLibException):
        vnnlib.parse_query_string(text)


@needs_vnncomp()
@pytest.mark.parametrize("path,n_in,n_out,n_conj,n_rows", _spec_files())
def test_competition_file_parses(path, n_in, n_out, n_conj, n_rows):
    prop = load_vnnlib(path, n_in, n_out)
    assert (prop.n_inputs, prop.n_outputs) == (n_in, n_out)
    assert len(prop.boxes) == 1
    box = prop.boxes[0]
    assert box.lower.shape == box.upper.shape == (n_in,)
    assert np.all(box.lower <= box.upper)
    assert len(prop.unsafe) == n_conj
    for a, b in prop.unsafe:
        assert a.shape == (n_rows, n_out) and b.shape == (n_rows,)
    lo, hi = _regex_box(path, n_in)
    np.testing.assert_array_equal(box.lower, lo)
    np.testing.assert_array_equal(box.upper, hi)


@needs_vnncomp()
def test_competition_files_are_all_covered():
    listed = {p.values[0] for p in _spec_files()}
    assert set(VNNCOMP.rglob("*.vnnlib")) == listed


@needs_vnncomp()
def test_acasxu_prop_1_values():
    prop = load_vnnlib(VNNCOMP / "acasxu/prop_1.vnnlib", 5, 5)
    box = prop.boxes[0]
    np.testing.assert_array_equal(box.lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    np.testing.assert_array_equal(box.upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])
    (a, b), = prop.unsafe  # unsafe: Y_0 ≥ 3.99…  ⇔  −Y_0 ≤ −3.99…
    np.testing.assert_array_equal(a, [[-1.0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(b, [-3.991125645861615])


@needs_vnncomp()
def test_acasxu_prop_2_to_4_values():
    (a, b), = load_vnnlib(VNNCOMP / "acasxu/prop_2.vnnlib", 5, 5).unsafe  # Y_j ≤ Y_0
    np.testing.assert_array_equal(a, np.hstack([-np.ones((4, 1)), np.eye(4)]))
    np.testing.assert_array_equal(b, np.zeros(4))
    for name in ("prop_3", "prop_4"):  # Y_0 ≤ Y_j
        (a, b), = load_vnnlib(VNNCOMP / f"acasxu/{name}.vnnlib", 5, 5).unsafe
        np.testing.assert_array_equal(a, np.hstack([np.ones((4, 1)), -np.eye(4)]))
        np.testing.assert_array_equal(b, np.zeros(4))
    box = load_vnnlib(VNNCOMP / "acasxu/prop_4.vnnlib", 5, 5).boxes[0]
    assert box.lower[2] == box.upper[2] == 0.0  # a degenerate (point) interval is allowed
    assert not np.signbit(box.lower[2])


@needs_vnncomp()
def test_robustness_spec_values():
    (box,) = load_vnnlib(VNNCOMP / "mnistfc/prop_0_0.03.vnnlib", 784, 10).boxes
    assert np.all(box.lower >= 0) and np.all(box.upper <= 1)
    assert np.max(box.upper - box.lower) <= 2 * 0.03 + 1e-6
    unsafe = load_vnnlib(VNNCOMP / "mnistfc/prop_0_0.03.vnnlib", 784, 10).unsafe
    others = [j for j in range(10) if j != 8]  # label 8: (>= Y_j Y_8) ⇔ Y_8 − Y_j ≤ 0
    for (a, b), j in zip(unsafe, others):
        expected = np.zeros(10)
        expected[8], expected[j] = 1.0, -1.0
        np.testing.assert_array_equal(a[0], expected)
        assert b[0] == 0.0
    unsafe = load_vnnlib(next(VNNCOMP.glob("oval21/*img1598*.vnnlib")), 3072, 10).unsafe
    a, b = unsafe[0]  # label 5: (<= Y_5 Y_0)
    assert a[0, 5] == 1.0 and a[0, 0] == -1.0 and b[0] == 0.0


@needs_vnncomp()
def test_disjunction_with_input_constraints_inside():
    """test_tiny states its input box inside (or (and ...)), together with the output."""
    prop = load_vnnlib(VNNCOMP / "test/test_tiny.vnnlib", 1, 1)
    np.testing.assert_array_equal(prop.boxes[0].lower, [-1.0])
    np.testing.assert_array_equal(prop.boxes[0].upper, [1.0])
    (a, b), = prop.unsafe
    np.testing.assert_array_equal(a, [[-1.0]])
    np.testing.assert_array_equal(b, [-100.0])


@needs_vnncomp()
def test_large_file_parses_quickly():
    import time

    path = next(VNNCOMP.glob("oval21/*.vnnlib"))
    t0 = time.perf_counter()
    load_vnnlib(path, 3072, 10)
    assert time.perf_counter() - t0 < 5.0


# -- synthetic files -----------------------------------------------------------------------

SYNTHETIC = """; every construct of the supported subset
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (>= X_1 -2.5e-1))
(assert (<= X_1 (- 0.75 0.25)))
(assert (or (and (>= X_0 0) (<= X_0 1)) (and (<= X_0 3) (>= (* 2 X_0) 4))))
(assert (or
    (and (<= (+ Y_0 (* 2 Y_1) -1) Y_2) (> Y_0 .5))
    (and (< (- Y_1) (- Y_0 Y_2 3)))
    (and (= Y_2 1))
))
(check-sat)
"""


def test_synthetic_constructs():
    prop = parse_vnnlib(SYNTHETIC, 2, 3, name="syn.vnnlib")
    assert [(b.lower.tolist(), b.upper.tolist()) for b in prop.boxes] == [
        ([0.0, -0.25], [1.0, 0.5]), ([2.0, -0.25], [3.0, 0.5])]
    for _, unsafe in prop.cases:
        (a0, b0), (a1, b1), (a2, b2) = unsafe
        # Y_0 + 2Y_1 − 1 − Y_2 ≤ 0 ; 0.5 − Y_0 ≤ 0
        np.testing.assert_array_equal(a0, [[1, 2, -1], [-1, 0, 0]])
        np.testing.assert_array_equal(b0, [1, -0.5])
        # −Y_1 − (Y_0 − Y_2 − 3) ≤ 0
        np.testing.assert_array_equal(a1, [[-1, -1, 1]])
        np.testing.assert_array_equal(b1, [-3])
        # Y_2 = 1: Y_2 ≤ 1 and −Y_2 ≤ −1
        np.testing.assert_array_equal(a2, [[0, 0, 1], [0, 0, -1]])
        np.testing.assert_array_equal(b2, [1, -1])


def test_same_box_merges_and_unsafe_is_shared():
    prop = parse_vnnlib(SYNTHETIC, 2, 3)
    assert len(prop.cases) == 2 and len(prop.unsafe) == 3
    text = ("(declare-const X_0 Real)(declare-const Y_0 Real)\n"
            "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))"
            " (and (>= X_0 2) (<= X_0 3) (>= Y_0 5))))")
    prop = parse_vnnlib(text, 1, 1)
    assert len(prop.cases) == 2
    with pytest.raises(VnnlibError, match="differs"):
        _ = prop.unsafe


def _random_property(rng: np.random.Generator, n_in: int, n_out: int, n_boxes: int,
                     n_conj: int) -> Property:
    cases = []
    for _ in range(n_boxes):
        lo = rng.normal(size=n_in)
        hi = lo + rng.random(n_in) * rng.integers(0, 2, n_in)  # some point intervals
        conjs = []
        for _ in range(n_conj):
            k = int(rng.integers(0, 4))
            a = rng.normal(size=(k, n_out)) * (rng.random((k, n_out)) < 0.6)
            a[np.arange(k), rng.integers(0, n_out, k)] = 1.0  # no all-zero (constant) row
            conjs.append((a, rng.normal(size=k)))
        cases.append((Box(lo, hi), conjs))
    return Property(cases=cases, n_inputs=n_in, n_outputs=n_out)


def _assert_same(p: Property, q: Property) -> None:
    assert (p.n_inputs, p.n_outputs, len(p.cases)) == (q.n_inputs, q.n_outputs, len(q.cases))
    for (box_p, u_p), (box_q, u_q) in zip(p.cases, q.cases):
        np.testing.assert_array_equal(box_p.lower, box_q.lower)
        np.testing.assert_array_equal(box_p.upper, box_q.upper)
        assert len(u_p) == len(u_q)
        for (a_p, b_p), (a_q, b_q) in zip(u_p, u_q):
            np.testing.assert_array_equal(a_p, a_q)
            np.testing.assert_array_equal(b_p, b_q)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_in=st.integers(1, 6), n_out=st.integers(1, 5),
       n_boxes=st.integers(1, 3), n_conj=st.integers(1, 4))
def test_round_trip(seed, n_in, n_out, n_boxes, n_conj):
    prop = _random_property(np.random.default_rng(seed), n_in, n_out, n_boxes, n_conj)
    _assert_same(prop, parse_vnnlib(format_vnnlib(prop), n_in, n_out))


def test_round_trip_through_a_file(tmp_path):
    prop = _random_property(np.random.default_rng(7), 4, 3, 1, 3)
    path = tmp_path / "p.vnnlib"
    path.write_text(format_vnnlib(prop))
    back = bp.load_vnnlib(path, 4, 3)
    assert back.path == str(path)
    _assert_same(prop, back)


# -- bad input: one line, the file and the line number -------------------------------------

HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
BOX = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"


def _error(tmp_path, text: str, n_in: int = 2, n_out: int = 1) -> str:
    path = tmp_path / "bad.vnnlib"
    path.write_text(text)
    with pytest.raises(VnnlibError) as info:
        load_vnnlib(path, n_in, n_out)
    msg = str(info.value)
    assert isinstance(info.value, bp.BoundpropError)
    assert "\n" not in msg and msg.startswith(f"{path}:"), msg
    return msg


@pytest.mark.parametrize("text,line,needle", [
    (HEAD + BOX + "(assert (<= Y_0 1)\n", 8, "never closed"),
    (HEAD + BOX + "(assert (<= Y_0 1)))\n", 8, "without a matching"),
    (HEAD + "(assert (>= X_0 0)\n(assert (<= X_0 1))\n", 4, "never closed"),
    (HEAD + BOX + "(assert (<= Y_0 1.5x))\n", 8, "unparsable token '1.5x'"),
    (HEAD + BOX + "(assert (<= Y_0 nan))\n", 8, "unparsable token 'nan'"),
    (HEAD + BOX + "(assert (foo Y_0 1))\n", 8, "unknown operator 'foo'"),
    (HEAD + BOX + "(assert (<= (* Y_0 Y_0) 1))\n", 8, "not linear"),
    (HEAD + BOX + "(assert (not (<= Y_0 1)))\n", 8, "unknown operator 'not'"),
    (HEAD + BOX + "(assert (<= Y_1 1))\n", 8, "Y_1 is used but never declared"),
    (HEAD + BOX + "(declare-fun f () Real)\n", 8, "unknown command 'declare-fun'"),
    (HEAD + "(declare-const Z_0 Real)\n", 4, "unsupported variable name 'Z_0'"),
    (HEAD + "(declare-const Y_1 Int)\n", 4, "only Real"),
    (HEAD + BOX + "(assert (<= (+ X_0 X_1) 1))\n", 8, "single input"),
    (HEAD + BOX + "(assert (<= X_0 Y_0))\n", 8, "mixing inputs X and outputs Y"),
    (HEAD + BOX + "stray\n", 8, "unexpected token 'stray'"),
])
def test_bad_syntax(tmp_path, text, line, needle):
    msg = _error(tmp_path, text)
    assert f"bad.vnnlib:{line}:" in msg and needle in msg, msg


def test_output_index_beyond_the_model(tmp_path):
    text = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_12 Real)\n"
    msg = _error(tmp_path, text, n_in=1, n_out=10)
    assert "bad.vnnlib:3:" in msg and "property uses Y_12 but the model has 10 outputs" in msg


def test_input_index_beyond_the_model(tmp_path):
    msg = _error(tmp_path, HEAD + "(declare-const X_2 Real)\n")
    assert "bad.vnnlib:4:" in msg and "property uses X_2 but the model has 2 inputs" in msg


def test_fewer_inputs_than_the_model(tmp_path):
    msg = _error(tmp_path, HEAD + BOX, n_in=3)
    assert "bad.vnnlib:2:" in msg and "declares 2 inputs but the model has 3" in msg


def test_input_without_a_lower_bound(tmp_path):
    text = HEAD + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= X_1 1))\n"
    msg = _error(tmp_path, text)
    assert "bad.vnnlib:2:" in msg and "X_1 has no lower bound" in msg, msg


def test_input_without_any_bound(tmp_path):
    msg = _error(tmp_path, HEAD + "(assert (>= X_1 0))\n(assert (<= X_1 1))\n")
    assert "bad.vnnlib:1:" in msg and "X_0 has no lower bound" in msg, msg


def test_empty_box(tmp_path):
    text = HEAD + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0.5))\n" \
                  "(assert (<= X_1 0.25))\n(assert (<= Y_0 0))\n"
    msg = _error(tmp_path, text)
    assert "bad.vnnlib:7:" in msg and "X_1 has lower bound 0.5 > upper bound 0.25" in msg
    assert "lines 6 and 7" in msg and "empty" in msg


def test_unreadable_file(tmp_path):
    with pytest.raises(VnnlibError, match="missing.vnnlib: no such file"):
        load_vnnlib(tmp_path / "missing.vnnlib", 1, 1)
    with pytest.raises(VnnlibError, match="is a folder"):
        load_vnnlib(tmp_path, 1, 1)
    (tmp_path / "latin1.vnnlib").write_bytes(b"(declare-const X_0 Real) ; \xe9\n")
    with pytest.raises(VnnlibError, match="not UTF-8"):
        load_vnnlib(tmp_path / "latin1.vnnlib", 1, 1)


_LOAD_IN_A_CHILD = """
import sys
from boundprop.errors import BoundpropError
from boundprop.vnnlib import load_vnnlib
try:
    load_vnnlib(sys.argv[1], 1, 1)
except BoundpropError as e:
    print("refused:", e)
"""


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_fifo_or_device_is_refused_without_hanging(tmp_path, kind):
    """Reading a FIFO blocks until a writer comes, /dev/zero never ends: refused unread."""
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        path = tmp_path / "prop.vnnlib"
        os.mkfifo(path)
    else:
        path = Path(kind)
        if not path.exists():
            pytest.skip("no /dev/zero here")
    r = subprocess.run([sys.executable, "-c", _LOAD_IN_A_CHILD, str(path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused:") and "not a regular file" in r.stdout, r.stdout


@pytest.mark.parametrize("wrap", [("(and ", ")"), ("(or ", ")"), ("(+ ", ")")])
def test_deep_nesting_is_a_one_line_error(tmp_path, wrap):
    n = 10**5
    inner = "(<= X_0 1)" if wrap[0] != "(+ " else "(<= " + wrap[0] * n + "Y_0" + ")" * n + " 1)"
    body = inner if wrap[0] == "(+ " else wrap[0] * n + inner + wrap[1] * n
    msg = _error(tmp_path, HEAD + BOX + "\n(assert " + body + ")\n")
    assert "bad.vnnlib:9:" in msg and f"nested more than {MAX_NESTING} deep" in msg, msg


def test_nesting_within_the_limit_is_read():
    depth = MAX_NESTING - 3
    text = HEAD + BOX + "(assert " + "(and " * depth + "(<= Y_0 1)" + ")" * depth + ")\n"
    (a, b), = parse_vnnlib(text, 2, 1).unsafe
    assert a.tolist() == [[1.0]] and b.tolist() == [1.0]


@pytest.mark.parametrize("number,needle", [
    ("1e400", "beyond the float range"), ("-1e400", "beyond the float range"),
    ("9" * 5000, "5000 characters"), ("0." + "1" * 5000, "5002 characters"),
    ("nan", "unparsable token 'nan'"), ("inf", "unparsable token 'inf'"),
    ("-inf", "unparsable token '-inf'"), ("1e99999999999999999999", "beyond the float range"),
])
def test_numbers_beyond_the_float_range(tmp_path, number, needle):
    for text in (HEAD + BOX + f"(assert (<= Y_0 {number}))\n",
                 HEAD + f"(assert (>= X_0 {number}))\n" + BOX):
        msg = _error(tmp_path, text)
        assert needle in msg, msg


@pytest.mark.parametrize("constraint", [
    "(<= (* 1e300 1e300 Y_0) 1)", "(<= (+ 1e308 1e308) Y_0)", "(<= (- Y_0 1e308 1e308) 0)",
    "(<= (* 1e-300 X_0) 1e300)",
])
def test_arithmetic_overflow_is_refused(tmp_path, constraint):
    msg = _error(tmp_path, HEAD + BOX + f"(assert {constraint})\n")
    assert "bad.vnnlib:8:" in msg and "overflows the float range" in msg, msg


def test_huge_but_finite_bounds_are_read():
    text = HEAD + "(assert (>= X_0 -1e300))\n(assert (<= X_0 1e300))\n" \
        "(assert (>= X_1 -1.7e308))\n(assert (<= X_1 1.7e308))\n(assert (<= Y_0 0))\n"
    (box,) = parse_vnnlib(text, 2, 1).boxes
    assert box.lower.tolist() == [-1e300, -1.7e308] and box.upper.tolist() == [1e300, 1.7e308]


def test_huge_bounds_through_the_cli_say_it_in_words(tmp_path, capsys):
    """The whole path: bounds of ±1e300 are accepted; the verdict is 'unknown' with an infinite
    margin; stderr carries at most one plain-words note, never a RuntimeWarning."""
    model = tmp_path / "m.onnx"
    net = _tiny_model(model)
    n_in, n_out = net.input_shape[-1], 1
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
    text += "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))
    text += "".join(f"(assert (>= X_{i} -1e300))\n(assert (<= X_{i} 1e300))\n"
                    for i in range(n_in))
    prop = tmp_path / "huge.vnnlib"
    prop.write_text(text + "(assert (>= Y_0 1e300))\n")
    code = main(["certify", str(model), "--vnnlib", str(prop)])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    assert "Warning" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1, err
    assert "unknown" in out or "verified" in out or "falsified" in out, out


def _tiny_model(path: Path):
    """A 3 → 4 → 1 ReLU network as an ONNX file."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 1))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(w1.astype(np.float32), "w1"),
         numpy_helper.from_array(w2.astype(np.float32), "w2")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return bp.load(path)


def test_variable_index_with_thousands_of_digits(tmp_path):
    msg = _error(tmp_path, HEAD + "(declare-const X_" + "1" * 5000 + " Real)\n")
    assert "bad.vnnlib:4:" in msg and "unsupported variable name" in msg, msg


def _many_boxes(n: int, n_in: int = 5) -> str:
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (or\n"
    text += "".join("(and " + " ".join(f"(>= X_{i} {k * 1e-5:.6f}) (<= X_{i} {k * 1e-5 + .01:.6f})"
                                       for i in range(n_in)) + ")\n" for k in range(n))
    return text + "))\n(assert (<= Y_0 Y_1))\n"


def test_many_input_boxes_parse_in_linear_time():
    t0 = time.perf_counter()
    prop = parse_vnnlib(_many_boxes(2000), 5, 2)
    elapsed = time.perf_counter() - t0
    assert len(prop.boxes) == 2000
    assert elapsed < 10, f"2,000 boxes took {elapsed:.1f} s"


@pytest.mark.slow
def test_twenty_thousand_input_boxes_parse_in_seconds():
    t0 = time.perf_counter()
    prop = parse_vnnlib(_many_boxes(20_000), 5, 2)
    assert len(prop.boxes) == 20_000
    assert time.perf_counter() - t0 < 60


def _competition_texts() -> list[tuple[str, int, int]]:
    out = []
    for pattern, n_in, n_out, _, _ in SPECS:
        if n_in > 784:
            continue  # the 3072-input files are slow to re-read hundreds of times
        for p in sorted(VNNCOMP.glob(pattern))[:3] if VNNCOMP.is_dir() else []:
            out.append((p.read_text(), n_in, n_out))
    return out


_ALPHABET = "()<>=+-*.eE0123456789 \n;XY_ andorsertdcl-Real\x00é"


@needs_vnncomp()
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_competition_files_raise_only_vnnlib_errors(data):
    texts = _cached_competition_texts()
    text, n_in, n_out = texts[data.draw(st.integers(0, len(texts) - 1))]
    for _ in range(data.draw(st.integers(1, 4))):
        k = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 12))
        insert = data.draw(st.one_of(
            st.text(alphabet=_ALPHABET, max_size=10),
            st.sampled_from(["nan", "inf", "-inf", "1e400", "9" * 5000, "X_" + "7" * 5000,
                             "(or ", "(and ", ")", "(", "(+ ", "(* 1e300 ", "Y_99999",
                             "\n(declare-const X_" + "7" * 5000 + " Real)\n", "(and " * 3000,
                             "\n(assert (<= Y_0 1e308))\n(assert (<= (+ Y_0 1e308 1e308) 0))\n"])))
        text = text[:k] + insert + text[k + cut:]
    try:
        prop = parse_vnnlib(text, n_in, n_out, name="mutated.vnnlib")
    except BoundpropError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(prop, Property)


_texts: list = []


def _cached_competition_texts() -> list[tuple[str, int, int]]:
    if not _texts:
        _texts.extend(_competition_texts())
    return _texts


def test_false_disjuncts_are_dropped():
    text = HEAD + BOX + "(assert (or (and (<= 1 0) (<= Y_0 0)) (and (>= Y_0 2))))\n"
    (a, b), = parse_vnnlib(text, 2, 1).unsafe
    np.testing.assert_array_equal(a, [[-1.0]])
    np.testing.assert_array_equal(b, [-2.0])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_many_boxes_show_progress_on_a_terminal_only(monkeypatch, tty):
    err = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    prop = parse_vnnlib(_many_boxes(PROGRESS_MIN_BOXES), 5, 2, name="many.vnnlib")
    assert len(prop.boxes) == PROGRESS_MIN_BOXES
    shown = err.getvalue()
    assert (f"/{PROGRESS_MIN_BOXES}" in shown) == tty, shown[-200:]
    assert ("reading many.vnnlib" in shown) == tty


@pytest.mark.parametrize("tty", [True, False])
def test_verifying_many_boxes_shows_progress_on_a_terminal_only(monkeypatch, tmp_path, tty):
    """Issue 11 item 12: thousands of input boxes were bounded for minutes in silence."""
    net = bp.load(gemm_onnx(tmp_path / "gemm.onnx", np.arange(10.0).reshape(2, 5) / 10))
    prop = parse_vnnlib(_many_boxes(PROGRESS_MIN_BOXES), 5, 2, name="many.vnnlib")
    err = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    v = bp.verify(net, prop)
    assert v.status in ("verified", "falsified", "unknown")
    assert ("bounding" in err.getvalue()) == tty, err.getvalue()[-200:]
