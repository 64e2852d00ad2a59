"""Issue 11, CLI and file I/O under attack: NaN sets, outputs onto inputs/devices/FIFOs/links,
FIFOs and devices as inputs, exit 3 where 2 is due, negative numbers in scientific notation,
numpy warning spam, silently ignored options, and the happy paths' empty stderr."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from boundprop.cli import main
from boundprop.sets import Box, InputSetError, L2Ball, LinfBall
from tests.conftest import MODELS, gemm_onnx

MODEL = str(MODELS / "mlp_relu.onnx")  # input 1x8, output 1x4, default set the box [-1, 1]
TANH = str(MODELS / "mlp_tanh.onnx")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout, stderr of ``boundprop argv`` run in-process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    assert err.startswith("boundprop") and "error" in err and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err


def strict_json(text: str):
    """JSON with no NaN / Infinity tokens (json.loads accepts them by default)."""
    def refuse(token):
        raise ValueError(f"non-JSON token {token}")
    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- 0d: NaN sets

NAN_SETS = [
    ["--linf", "0.5", "0.1", "--clip", "nan", "nan"],
    ["--linf", "0.5", "0.1", "--clip", "0", "nan"],
    ["--box", "nan", "1"], ["--box", "0", "nan"],
    ["--linf", "nan", "0.1"], ["--linf", "0.5", "nan"],
    ["--l2", "nan", "0.1"], ["--l2", "0.5", "nan"],
    ["--linf", "0.5", "0.1", "--clip", "2", "3"],  # clip disjoint from the ball: empty
    ["--linf", "0.5", "0.1", "--clip", "1", "0"],  # empty clip range
    ["--box", "1", "0"],                            # lower > upper: empty
    ["--box", "-inf", "inf"],                       # unbounded: refused, not NaN bounds
]


@pytest.mark.parametrize("opts", NAN_SETS, ids=" ".join)
def test_nan_or_empty_set_refused_nothing_written(opts, tmp_path, capsys):
    out = tmp_path / "c.json"
    code, _, err = run(["certify", MODEL, *opts, "-o", out], capsys)
    one_line_error(code, err)
    assert not out.exists()


def test_sets_refuse_nan_clip_and_keep_infinite_clip():
    with pytest.raises(InputSetError, match="NaN"):
        LinfBall([0.5, 0.5], 0.1, clip=(float("nan"), float("nan")))
    with pytest.raises(InputSetError, match="empty"):
        LinfBall([0.5, 0.5], 0.1, clip=(2.0, 3.0))
    assert LinfBall([0.5], 0.1, clip=(-np.inf, np.inf)).clip is None
    s = LinfBall([0.5], 0.1, clip=(-np.inf, 0.55))
    assert s.upper[0] == 0.55 and s.to_json()["clip"] == ["-inf", 0.55]
    with pytest.raises(InputSetError, match="one number"):
        L2Ball([0.0], [0.1, 0.2])


def test_sampling_a_huge_box_stays_inside():
    """(hi − lo)·u overflowed to inf for [−1e308, 1e308]: samples were ±inf, outside the set."""
    s = Box(-1e308, 1e308).fit((64,))
    x = s.sample(8, np.random.default_rng(0))
    assert np.all(np.isfinite(x)) and np.all(x >= s.lower) and np.all(x <= s.upper)


# ------------------------------------------------ 5 (write side), 11: huge sets, strict JSON

@pytest.mark.parametrize("opts", [["--linf", "0.5", "1e308"], ["--box", "0", "1e308"]],
                         ids=" ".join)
def test_huge_set_strict_json_and_one_note(opts, tmp_path, capsys):
    out = tmp_path / "c.json"
    code, _, err = run(["certify", MODEL, *opts, "-o", out, "--quiet"], capsys)
    assert code == 0, err
    assert err.count("\n") == 1 and "infinite" in err and "Warning" not in err, err
    doc = strict_json(out.read_text())
    ups = doc["output_bounds"]["upper"]
    assert "inf" in ups and all(u == "inf" or isinstance(u, float) for u in ups)
    code, stdout, err = run(["certify", MODEL, *opts, "--json"], capsys)
    assert code == 0 and strict_json(stdout)["output_bounds"]["lower"][0] in ("-inf",) or \
        isinstance(strict_json(stdout)["output_bounds"]["lower"][0], float)


# ----------------------------------------------------------------- 0e, 6: where -o writes

def test_output_onto_the_model_refused(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL, model)
    before = model.read_bytes()
    code, _, err = run(["certify", model, "-o", model], capsys)
    one_line_error(code, err)
    assert model.read_bytes() == before


def test_output_onto_an_input_array_refused(tmp_path, capsys):
    lo = tmp_path / "lo.npy"
    np.save(lo, np.zeros((1, 8)))
    before = lo.read_bytes()
    code, _, err = run(["certify", MODEL, "--box", lo, "1", "-o", lo], capsys)
    one_line_error(code, err)
    assert lo.read_bytes() == before


def test_gn_output_onto_its_model_or_targets_refused(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(TANH, model)
    y = tmp_path / "y.npy"
    np.save(y, np.zeros((1, 4)))
    for target in (model, y):
        before = target.read_bytes()
        code, _, err = run(["gn", model, "--targets", y, "--max-iter", "1", "-o", target],
                           capsys)
        one_line_error(code, err)
        assert target.read_bytes() == before


@pytest.mark.parametrize("kind", ["devnull", "fifo", "folder", "empty", "long name",
                                  "missing folder", "long path"])
def test_bad_output_paths_refused(kind, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    path = {"devnull": "/dev/null", "fifo": str(fifo), "folder": str(tmp_path), "empty": "",
            "long name": str(tmp_path / ("n" * 300 + ".json")),
            "missing folder": str(tmp_path / "no" / "c.json"),
            "long path": "/" + "/".join(["d" * 200] * 25)}[kind]
    code, _, err = run(["certify", MODEL, "-o", path], capsys)
    one_line_error(code, err)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_symlink_output_written_through(tmp_path, capsys):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _, err = run(["certify", MODEL, "-o", link, "--quiet"], capsys)
    assert code == 0 and err == ""
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert strict_json(target.read_text())["schema"].startswith("boundprop.certificate/")


# ---------------------------------------------------------- 7: FIFOs and devices as inputs

def _cli(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "boundprop.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_fifo_and_device_inputs_do_not_hang(tmp_path, capsys):
    """A FIFO never written to blocks open() forever: run in a subprocess with a timeout."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cert = tmp_path / "c.json"
    assert run(["certify", MODEL, "-o", cert, "--quiet"], capsys)[0] == 0
    cases = [["certify", MODEL, "--box", fifo, "1"],
             ["certify", MODEL, "--linf", "/dev/zero", "0.1"],
             ["certify", MODEL, "--wrt", "params", "--loss", "squared", "--targets", fifo],
             ["audit", cert, fifo], ["audit", cert, "/dev/zero"], ["inspect", fifo]]
    procs = [subprocess.Popen([sys.executable, "-m", "boundprop.cli", *map(str, args)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for args in cases]  # side by side: one interpreter start-up of wall time
    try:
        for args, p in zip(cases, procs):
            err = p.communicate(timeout=90)[1]
            assert p.returncode == 2 and err.count("\n") == 1, (args, err)
            assert "not a regular file" in err or "not a file" in err, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_pickled_npy_not_loaded(tmp_path, capsys):
    bad = tmp_path / "x.npy"
    np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = run(["certify", MODEL, "--box", bad, "1"], capsys)
    one_line_error(code, err)


# ----------------------------------------------------- 8: exit 3 where a usage error is due

LONG = "x" * 5000


@pytest.mark.parametrize("argv", [
    ["certify", MODEL, "--linf", "0.5", "abc"],
    ["certify", MODEL, "--l2", "0.5", "1e3x"],
    ["certify", LONG], ["inspect", LONG], ["gn", LONG, "--targets", "y.npy"],
    ["certify", MODEL, "--box", LONG, "1"],
    ["certify", MODEL, "--radius", "nan", "--wrt", "params"],
    ["certify", MODEL, "--wrt", "params", "--radius", "-1"],
    ["certify", MODEL, "--wrt", "params", "--radius", "inf"],
    ["gn", MODEL, "--targets", "y.npy", "--regularization", "nan"],
    ["gn", MODEL, "--targets", "y.npy", "--tol", "-1"],
    ["gn", MODEL, "--targets", "y.npy", "--subspace", "0"],
    ["audit", "c.json", MODEL, "--seed", "-5"],
    ["audit", "c.json", LONG],
], ids=lambda a: " ".join(x[:12] for x in a))
def test_bad_numbers_and_paths_exit_2(argv, inputs, capsys):
    code, _, err = run([inputs.get(a, a) for a in argv], capsys)
    one_line_error(code, err)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Real files for the placeholders y.npy (targets of mlp_relu) and c.json (a valid
    certificate of it), so that the option under test is what gets refused."""
    d = tmp_path_factory.mktemp("inputs")
    np.save(d / "y.npy", np.zeros((1, 4)))
    assert main(["certify", MODEL, "-o", str(d / "c.json"), "--quiet"]) == 0
    return {"y.npy": str(d / "y.npy"), "c.json": str(d / "c.json")}


# ---------------------------------------------- 10: negative numbers in scientific notation

@pytest.mark.parametrize("opts", [["--box", "-1e-3", "1e-3"], ["--box", "-.5", ".5"],
                                  ["--linf", "0.5", "0.1", "--clip", "-inf", "inf"],
                                  ["--linf", "-2.5E-1", "0.1", "--clip", "-1E0", "1"]],
                         ids=" ".join)
def test_negative_numbers_in_any_notation(opts, capsys):
    code, out, err = run(["certify", MODEL, *opts, "--json"], capsys)
    assert code == 0 and err == "", err
    doc = strict_json(out)
    assert all(isinstance(v, float) for v in doc["output_bounds"]["upper"])


def test_usage_errors_are_one_line(capsys):
    code, _, err = run(["certify", MODEL, "--box", "1"], capsys)
    one_line_error(code, err)
    assert "--help" in err


# ------------------------------------------------------------- 13: silently accepted input

@pytest.mark.parametrize("argv", [
    ["certify", MODEL, "--clip", "0", "1"],
    ["certify", MODEL, "-o", ""],
    ["certify", MODEL, "--targets", "1"],
    ["certify", MODEL, "--global", "--box", "0", "1"],
    ["certify", MODEL, "--global", "--execution", "float32"],
    ["certify", MODEL, "--radius", "0.1"],
    ["certify", MODEL, "--wrt", "params", "--loss", "cross_entropy", "--targets", "7"],
    ["certify", MODEL, "--wrt", "params", "--loss", "cross_entropy", "--targets", "1.5"],
    ["certify", MODEL, "--wrt", "params", "--loss", "cross_entropy", "--targets", "-1"],
    ["certify", MODEL, "--wrt", "params", "--loss", "squared", "--targets", "nan"],
], ids=lambda a: " ".join(a[2:]))
def test_ignored_or_out_of_range_options_refused(argv, capsys):
    code, _, err = run(argv, capsys)
    one_line_error(code, err)


def test_cross_entropy_range_named(capsys):
    code, _, err = run(["certify", MODEL, "--wrt", "params", "--loss", "cross_entropy",
                        "--targets", "4"], capsys)
    one_line_error(code, err)
    assert "0..3" in err


# --------------------------------------------------------------- happy paths: stderr empty

def test_happy_paths_have_empty_stderr(tmp_path, capsys):
    cert = tmp_path / "c.json"
    y = tmp_path / "y.npy"
    np.save(y, np.zeros((1, 4)))
    steps = [["certify", MODEL], ["certify", MODEL, "-o", cert],
             ["certify", MODEL, "--linf", "0.5", "0.05", "--clip", "0", "1", "--norm", "inf"],
             ["check", cert, MODEL], ["audit", cert, MODEL, "--samples", "16", "--steps", "2"],
             ["report", cert], ["report", cert, "-o", tmp_path / "r.html"],
             ["compare", MODEL, TANH], ["inspect", MODEL], ["ops"],
             ["gn", TANH, "--targets", y, "--max-iter", "2", "-o", tmp_path / "w.npy"]]
    for argv in steps:
        code, out, err = run(argv, capsys)
        expected = (0, 1) if argv[0] == "gn" else (0,)  # gn: 1 = not converged in 2 steps
        assert code in expected and err == "", (argv, code, err)
        assert out


@pytest.mark.parametrize("option", [["--samples", "2147483648"], ["--steps", "2147483648"],
                                    ["--seed", "-5"]], ids=" ".join)
def test_audit_counts_are_bounded(option, inputs):
    """--samples 2^31 ran for hours / until the OOM killer (fuzz F5/F6): refused at once."""
    r = _cli(["audit", inputs["c.json"], MODEL, "--quiet", *option], timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def test_save_never_overwrites_its_model(tmp_path):
    import boundprop as bp
    from boundprop.errors import BoundpropError

    model = tmp_path / "m.onnx"
    shutil.copy(MODEL, model)
    before = model.read_bytes()
    cert = bp.certify(bp.load(str(model)), Box(-1.0, 1.0))
    with pytest.raises(BoundpropError, match="overwritten"):
        cert.save(model)
    assert model.read_bytes() == before


def test_check_of_a_certificate_whose_bounds_overflow(tmp_path, capsys):
    """--linf 0.5 1e308: every bound is infinite ("inf"); check said exit 3 (a float ∞ taken
    for a Fraction in the input radius)."""
    cert = tmp_path / "c.json"
    code, _, _ = run(["certify", str(MODELS / "mlp_relu.onnx"), "--linf", "0.5", "1e308",
                      "-o", str(cert), "--quiet"], capsys)
    assert code == 0
    code, out, err = run(["check", str(cert), str(MODELS / "mlp_relu.onnx")], capsys)
    assert code == 0, (out, err)


def test_check_refuses_a_device_as_model(tmp_path, capsys):
    cert = tmp_path / "c.json"
    assert run(["certify", str(MODELS / "mlp_relu.onnx"), "-o", str(cert), "--quiet"],
               capsys)[0] == 0
    code, _, err = run(["check", str(cert), "/dev/zero"], capsys)
    assert code == 2 and "not a regular file" in err and err.count("\n") == 1, err


def test_report_never_writes_onto_its_model(tmp_path, capsys):
    model = tmp_path / "m.html"  # a model whose name looks like a report
    shutil.copy(MODELS / "mlp_relu.onnx", model)
    cert = tmp_path / "c.json"
    assert run(["certify", str(model), "-o", str(cert), "--quiet"], capsys)[0] == 0
    before = model.read_bytes()
    code, _, err = run(["report", str(cert), "--model", str(model), "-o", str(model)], capsys)
    assert code == 2 and "overwritten" in err, err
    assert model.read_bytes() == before


def test_float32_overflow_is_named_once(tmp_path, capsys):
    model = gemm_onnx(tmp_path / "big.onnx", np.full((2, 3), 1e30))
    code, _, err = run(["certify", str(model), "--box", "0", "1e10", "--execution", "float32",
                        "--quiet"], capsys)
    assert code == 0 and err.count("\n") == 1 and "node 'y' (Gemm) may overflow float32" in err


def test_npy_whose_header_overstates_its_data_is_called_truncated(tmp_path, capsys):
    """A 16-byte .npy declaring 2⁴⁰ values was reported as 'out of memory'."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(2))
    bad = tmp_path / "lo.npy"
    bad.write_bytes(buf.getvalue().replace(b"(2,)", b"(1099511627776,)"))
    code, _, err = run(["certify", str(MODELS / "mlp_relu.onnx"), "--box", str(bad), "1"],
                       capsys)
    assert code == 2 and "truncated" in err and err.count("\n") == 1, err
