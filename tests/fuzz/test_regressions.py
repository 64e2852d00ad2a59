"""Inputs the fuzzing harness found (issue 11), one test each. Marked xfail(strict=True) while
the bug is open: when a fix lands the test passes, strict xfail turns that into a failure, and
the lead removes the mark. Findings: /tmp/helpers/fuzz_findings.md (F<n> below)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from onnx import TensorProto

import boundprop as bp
from boundprop.exact import enclose, parse
from tests.fuzz import corpus
from tests.fuzz.harness import contract_violation, run_cli, run_cli_subprocess


def _wrap_close_index() -> int:
    subclasses = ().__class__.__base__.__subclasses__()
    return next(i for i, c in enumerate(subclasses) if c.__name__ == "_wrap_close")


def test_f1_certificate_formula_cannot_run_code(seed_dir, tmp_path):
    """F1 (found on 8c63ef7, where it ran the command; exact.parse's whitelist grammar fixes
    it): loading a certificate never evaluates its formulas as Python."""
    canary = tmp_path / "PWNED"
    payload = (f'().__class__.__base__.__subclasses__()[{_wrap_close_index()}].__init__'
               f'.__globals__["system"]("touch {canary}")')
    doc = json.loads((seed_dir / "relu_box_2.json").read_text())
    doc["symbolic"]["lipschitz"] = payload
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(doc))
    try:
        bp.load_certificate(cert)
    except bp.BoundpropError:
        pass
    assert not canary.exists(), "the certificate ran a shell command"


def _external_model(tmp_path: Path, location: str) -> Path:
    m = corpus.tiny(0).proto()
    t = m.graph.initializer[1]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    return corpus.save_model(m, tmp_path / "model.onnx")


def test_f2_external_location_with_nul_byte(tmp_path):
    path = _external_model(tmp_path, "\x00x")
    o = run_cli(["inspect", str(path)])
    assert contract_violation(o) is None, o
    assert o.code == 2


@pytest.mark.parametrize("shape", [[1], [1, 2e300]])
def test_f3_load_certificate_output_shape_mismatch(seed_dir, tmp_path, shape):
    doc = json.loads((seed_dir / "tanh_box_2.json").read_text())
    doc["model"]["output_shape"] = shape
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(doc))
    with pytest.raises(bp.BoundpropError):
        bp.load_certificate(cert)


@pytest.mark.parametrize("text", ["1/oo", "oo/oo", "sqrt(oo-oo)", "oo-oo", "A*oo-oo"])
def test_f4_enclose_with_infinity(text):
    try:
        lo, hi = enclose(parse(text), {"A": 1.0})
    except bp.BoundpropError:
        return
    assert lo <= hi, (lo, hi)


@pytest.mark.parametrize("option", [["--samples", "2147483648"], ["--steps", "2147483648"]])
def test_f5_f6_audit_huge_counts_are_refused(seed_dir, option):
    """F5/F6 (found on d1b6253: 2^31 samples ran until the OOM killer; fixed by 7c418ab)."""
    # a child with an address-space limit and a 10 s timeout: a refusal is immediate
    o = run_cli_subprocess(["audit", str(seed_dir / "relu_box_2.json"),
                            str(seed_dir / "relu.onnx"), "--quiet", *option], seconds=10)
    assert o.exception is None, o.exception  # no hang
    assert o.code == 2 and "out of memory" not in o.err, (o.code, o.err)


def test_f8_report_audit_fifo_does_not_hang(seed_dir, tmp_path):
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    o = run_cli(["report", str(seed_dir / "relu_box_2.json"), "--audit", str(fifo), "--json"],
                seconds=5)
    assert o.exception is None, o.exception
    assert o.code == 2, (o.code, o.err)


def test_f9_huge_operator_norm_claim(seed_dir, tmp_path):
    doc = json.loads((seed_dir / "relu_box_2.json").read_text())
    doc["symbolic"]["values"]["A_mm2"] = 1e300
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(doc))
    o = run_cli(["check", str(cert), str(seed_dir / "relu.onnx")])
    assert contract_violation(o) is None, o.err
    # The enormous norm is a true claim (accepted), but the layer's ℓ composed from it is not.
    assert o.code == 1 and "lipschitz: claimed" in o.out, o.out


def test_f10_compare_checks_output_first(seed_dir, tmp_path):
    o = run_cli(["compare", str(seed_dir / "relu.onnx"), str(seed_dir / "tanh.onnx"),
                 "--global", "-o", str(tmp_path / "nofolder" / "out.json")])
    assert o.code == 2 and contract_violation(o) is None, o.err


def test_f11_compare_checks_every_model_first(seed_dir):
    o = run_cli(["compare", str(seed_dir / "relu.onnx"), str(seed_dir / "relu_box_2.json"),
                 "--global"])
    assert o.code == 2 and contract_violation(o) is None, o.err


def test_f12_log_of_huge_rational():
    try:
        lo, hi = enclose(parse("log(1e-300**-11)"), {})
    except bp.BoundpropError:
        return
    true = 3300 * math.log(10)  # ln(10^3300) = 7598.53…
    assert lo <= true * (1 + 1e-12) and hi >= true * (1 - 1e-12), (lo, hi)


def test_f13_thousands_of_disjuncts_do_not_hang(seed_dir, tmp_path):
    """vnnlib_cli campaign (10^4 inputs): a property whose output constraint is a disjunction of
    ~1,000 conjunctions ran > 20 s — every score and every Gauss-Newton start looped over all
    conjunctions in Python (quadratic)."""
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(corpus.N_IN))
    text += "".join(f"(declare-const Y_{i} Real)\n" for i in range(corpus.N_OUT))
    text += "".join(f"(assert (<= X_{i} {'1e308' if i == 1 else '1.0'}))\n"
                    f"(assert (>= X_{i} -1.0))\n" for i in range(corpus.N_IN))
    text += "(assert (or " + "(and (<= Y_0 0))" * 1000 + "))\n"
    prop = tmp_path / "p.vnnlib"
    prop.write_text(text)
    o = run_cli(["certify", str(seed_dir / "relu.onnx"), "--vnnlib", str(prop), "--quiet"])
    assert contract_violation(o) is None, (o.exception, o.err)


@pytest.mark.parametrize("text", ["0.5\u0661", "\u0661", "1 +\u00a02"])
def test_f14_non_ascii_digits_and_spaces_are_refused(text):
    """formula campaign (10^4): the tokenizer's \\d took Arabic-Indic digits, and sympy's Float
    raised ValueError (escaping FormulaError)."""
    with pytest.raises(bp.BoundpropError):
        parse(text)
