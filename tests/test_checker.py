"""The independent checker: every certificate the prover writes checks; every tampering is
rejected (exit 1, naming the item); bad input is exit 2; its arithmetic pieces are sound."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import boundprop as bp
from boundprop.checker import CertificateInvalid, check, spectral_bound_holds
from boundprop.cli import main
from boundprop.exact import enclose, parse
from boundprop.sets import default_input_set
from tests.conftest import MODELS, by_cost, model_id, shipped_models

CNN_WORDS = ("lenet", "cnn", "vgg", "resnet", "coverage")
FAST = [p for p in shipped_models() if not any(w in p.name for w in CNN_WORDS)]
CNNS = [p for p in shipped_models() if any(w in p.name for w in CNN_WORDS)]
VARIANTS = [("2", "local"), ("inf", "local"), ("1", "local"), ("2", "global"), ("2", "params")]


def make_certificate(path, norm: str, kind: str, out) -> bp.Certificate:
    net = bp.load(path)
    s = default_input_set(net)
    if kind == "params":
        x = s.sample(1, np.random.default_rng(1))[0]  # a data batch: one point of the set
        c = bp.certify(net, bp.Box(x, x), norm=norm, wrt="params", param_radius=0.05)
    else:
        c = bp.certify(net, None if kind == "global" else s, norm=norm)
    c.save(out)
    return c


def _round_trip(path, norm, kind, tmp_path):
    out = tmp_path / "cert.json"
    make_certificate(path, norm, kind, out)
    r = check(out, path, raise_on_invalid=False)
    assert r.valid, r.reason
    assert r.items and all(i.ok for i in r.items)
    hows = {i.how for i in r.items}
    assert {"exact", "independent"} <= hows


@pytest.mark.parametrize("norm,kind", VARIANTS, ids=[f"{n}-{k}" for n, k in VARIANTS])
@pytest.mark.parametrize("path", FAST, ids=model_id)
def test_round_trip_fast_models(path, norm, kind, tmp_path):
    _round_trip(path, norm, kind, tmp_path)


@pytest.mark.parametrize("path", by_cost(CNNS))
def test_round_trip_cnn_inf(path, tmp_path):
    _round_trip(path, "inf", "local", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("norm,kind", [v for v in VARIANTS if v != ("inf", "local")],
                         ids=[f"{n}-{k}" for n, k in VARIANTS if (n, k) != ("inf", "local")])
@pytest.mark.parametrize("path", CNNS, ids=model_id)
def test_round_trip_cnn(path, norm, kind, tmp_path):
    _round_trip(path, norm, kind, tmp_path)


def test_round_trip_cnn_l2_vgg_small(tmp_path):
    """One CNN in ℓ2 in the default run: the Cholesky certificate on materialised convs."""
    path = MODELS / "vgg_small_relu.onnx"
    make_certificate(path, "2", "global", tmp_path / "c.json")
    r = check(tmp_path / "c.json", path)
    assert any("Cholesky" in i.detail for i in r.items)


def test_certificate_with_loss_round_trip(tmp_path):
    net = bp.load(MODELS / "mlp_tanh.onnx")
    x = default_input_set(net).sample(1, np.random.default_rng(0))[0]
    y = net(x)
    for loss, t in (("squared", y + 0.3), ("cross_entropy", np.zeros(1))):
        c = bp.certify(net, bp.Box(x, x), wrt="params", param_radius=0.1, loss=loss, targets=t)
        c.save(tmp_path / "c.json")
        assert check(tmp_path / "c.json", MODELS / "mlp_tanh.onnx")
        loaded = bp.load_certificate(tmp_path / "c.json")
        assert loaded.objective.step_size == c.objective.step_size


# ---------------------------------------------------------------------------------------------
# Tampering


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    path = MODELS / "mlp_sigmoid.onnx"
    make_certificate(path, "2", "local", folder / "cert.json")
    return json.loads((folder / "cert.json").read_text()), path


def _first_constant(doc, prefix):
    return next(k for k in doc["symbolic"]["values"] if k.startswith(prefix))


def _lower(x, by=0.9):
    return x * by


TAMPERINGS = {
    "lowered global lipschitz": lambda d: d.update(lipschitz=_lower(d["lipschitz"])),
    "lowered global smoothness": lambda d: d.update(smoothness=_lower(d["smoothness"])),
    "lowered global bound": lambda d: d.update(bound=_lower(d["bound"])),
    "lowered layer lipschitz": lambda d: d["layers"][2].update(
        lipschitz=_lower(d["layers"][2]["lipschitz"])),
    "lowered layer bound": lambda d: d["layers"][3].update(
        bound=_lower(d["layers"][3]["bound"])),
    "lowered operator norm": lambda d: d["symbolic"]["values"].update(
        {_first_constant(d, "A_"): _lower(d["symbolic"]["values"][_first_constant(d, "A_")])}),
    "lowered activation slope": lambda d: d["symbolic"]["values"].update(
        {_first_constant(d, "a_"): _lower(d["symbolic"]["values"][_first_constant(d, "a_")])}),
    "lowered input radius": lambda d: d["symbolic"]["values"].update(
        R=_lower(d["symbolic"]["values"]["R"])),
    "narrowed output interval": lambda d: d["output_bounds"].update(
        upper=[u - 0.01 for u in d["output_bounds"]["upper"]]),
    "narrowed lower bound": lambda d: d["output_bounds"]["lower"].__setitem__(
        0, d["output_bounds"]["lower"][0] + 0.05),
    "narrowed layer interval width": lambda d: d["layers"][1].update(
        interval_width=_lower(d["layers"][1]["interval_width"])),
    "enlarged input set": lambda d: d["input_set"].update(
        upper=[u + 0.5 for u in d["input_set"]["upper"]]),
    "changed norm": lambda d: d.update(norm="1"),
    "edited layer formula": lambda d: d["layers"][2]["symbolic"].update(lipschitz="0"),
    "edited global formula": lambda d: d["symbolic"].update(lipschitz="R/1000"),
    "unknown constant": lambda d: d["symbolic"]["values"].update(A_ghost=1.0),
    "wrong schema version": lambda d: d.update(schema="boundprop.certificate/2"),
    "missing key": lambda d: d.pop("layers"),
    "negative constant": lambda d: d.update(lipschitz=-1.0),
    "layer removed": lambda d: d["layers"].pop(),
    "different model hash": lambda d: d["model"].update(sha256="0" * 64),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampering_rejected(name, good, tmp_path, capsys):
    doc, model = good
    doc = json.loads(json.dumps(doc))
    TAMPERINGS[name](doc)
    cert = tmp_path / "tampered.json"
    cert.write_text(json.dumps(doc))
    with pytest.raises(CertificateInvalid) as e:
        check(cert, model)
    assert e.value.result.reason
    capsys.readouterr()
    assert main(["check", str(cert), str(model)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and e.value.result.reason.split(":")[0] in out


def test_untampered_copy_is_valid(good, tmp_path):
    doc, model = good
    cert = tmp_path / "same.json"
    cert.write_text(json.dumps(doc))
    assert check(cert, model)


def test_swapped_model_rejected(good, tmp_path):
    doc, model = good
    other = tmp_path / "mlp_sigmoid.onnx"
    shutil.copy(MODELS / "mlp_tanh.onnx", other)  # same file name, other network
    cert = tmp_path / "c.json"
    cert.write_text(json.dumps(doc))
    with pytest.raises(CertificateInvalid, match="sha256"):
        check(cert, other)


def test_smaller_input_set_still_valid(good, tmp_path):
    """Shrinking the set keeps every claim true: the checker must accept it (it checks claims,
    not equality with a re-run)."""
    doc, model = good
    doc = json.loads(json.dumps(doc))
    doc["input_set"]["upper"] = [u - 0.1 for u in doc["input_set"]["upper"]]
    cert = tmp_path / "c.json"
    cert.write_text(json.dumps(doc))
    assert check(cert, model)


def test_raised_constant_still_valid(good, tmp_path):
    doc, model = good
    doc = json.loads(json.dumps(doc))
    doc["lipschitz"] = doc["lipschitz"] * 2
    doc["output_bounds"]["upper"] = [u + 1 for u in doc["output_bounds"]["upper"]]
    cert = tmp_path / "c.json"
    cert.write_text(json.dumps(doc))
    assert check(cert, model)


@pytest.mark.parametrize("what", ["garbled", "missing", "not an object", "model missing"])
def test_bad_input_exit_2(what, good, tmp_path, capsys):
    doc, model = good
    cert = tmp_path / "c.json"
    if what == "garbled":
        cert.write_text(json.dumps(doc)[:200])
    elif what == "not an object":
        cert.write_text("[1, 2]")
    elif what == "model missing":
        cert.write_text(json.dumps(doc))
        model = tmp_path / "nope.onnx"
    code = main(["check", str(cert), str(model)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("boundprop: error")


def test_check_json_and_quiet(good, tmp_path, capsys):
    doc, model = good
    cert = tmp_path / "c.json"
    cert.write_text(json.dumps(doc))
    assert main(["check", str(cert), str(model), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is True and out["items"]
    assert main(["check", str(cert), str(model), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_load_certificate_round_trip(good, tmp_path):
    doc, model = good
    (tmp_path / "c.json").write_text(json.dumps(doc))
    c = bp.load_certificate(tmp_path / "c.json")
    assert c.lipschitz == doc["lipschitz"] and c.bound == doc["bound"]
    assert [lc.node for lc in c.layers] == [lc["node"] for lc in doc["layers"]]
    np.testing.assert_array_equal(c.output_upper.reshape(-1), doc["output_bounds"]["upper"])
    again = c.to_json()
    for key in ("lipschitz", "smoothness", "bound", "layers", "input_set", "norm", "model"):
        assert again[key] == doc[key], key
    c.save(tmp_path / "d.json")
    assert check(tmp_path / "d.json", model)


def test_load_certificate_rejects_non_certificates(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(bp.BoundpropError, match="not a valid boundprop certificate"):
        bp.load_certificate(tmp_path / "x.json")


def test_save_is_atomic(good, tmp_path, monkeypatch):
    """A failure while writing leaves the previous file untouched and no temporary file."""
    import os

    doc, model = good
    c = bp.Certificate.from_json(doc)
    target = tmp_path / "c.json"
    target.write_text("previous")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(bp.BoundpropError, match="disk full"):  # one line, not a traceback
        c.save(target)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_certify_cli_writes_no_half_file(tmp_path, capsys):
    out = tmp_path / "missing_folder" / "c.json"
    code = main(["certify", str(MODELS / "mlp_relu.onnx"), "-o", str(out)])
    assert code == 2 and not out.exists()
    assert "does not exist" in capsys.readouterr().err


def test_schema_is_shipped_and_valid():
    import jsonschema

    from boundprop.checker import schema

    jsonschema.Draft202012Validator.check_schema(schema())


# ---------------------------------------------------------------------------------------------
# The arithmetic pieces


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**31 - 1),
       st.sampled_from([1e-6, 1e-9]))
def test_spectral_bound_holds_brackets_the_norm(n, m, seed, rel):
    a = np.random.default_rng(seed).standard_normal((n, m)) * 10.0 ** np.random.default_rng(
        seed).integers(-3, 4)
    s = float(np.linalg.svd(a, compute_uv=False)[0])
    assert spectral_bound_holds(a, s * (1 + rel))
    assert not spectral_bound_holds(a, s * (1 - rel))


def test_spectral_bound_entry_error_costs_margin():
    a = np.eye(3)
    assert spectral_bound_holds(a, 1.0 + 1e-9)
    assert not spectral_bound_holds(a, 1.0 + 1e-9, entry_rel_error=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=4, max_size=4))
def test_exact_enclosure_contains_the_value(v):
    import mpmath

    a, b, c, d = v
    text = "Min(a*b + sqrt(c), d) + sqrt(a + 1)*(b + 2)**(3/2)/(c + 1) + log(7)"
    lo, hi = enclose(parse(text), dict(zip("abcd", (Fraction(x) for x in v))))
    mpmath.mp.prec = 300
    A, B, C, D = (mpmath.mpf(x) for x in v)
    exact = (min(A * B + mpmath.sqrt(C), D) + mpmath.sqrt(A + 1) * (B + 2) ** 1.5 / (C + 1)
             + mpmath.log(7))
    assert mpmath.mpf(lo.numerator) / lo.denominator <= exact
    assert exact <= mpmath.mpf(hi.numerator) / hi.denominator
    assert float(hi - lo) <= 1e-12 * (1 + float(hi))


def test_exact_infinity_and_zero_times_infinity():
    assert enclose(parse("k*l**2 + a*L"), {"k": math.inf, "l": Fraction(0), "a": Fraction(1),
                                            "L": Fraction(2)})[1] == math.inf
    assert enclose(parse("oo"), {}) == (math.inf, math.inf)
    assert enclose(parse("Min(x, oo)"), {"x": Fraction(3)}) == (3, 3)


def test_exact_names_are_never_sympy_objects():
    """Constant names like gamma_x, E or beta must stay plain symbols."""
    lo, hi = enclose(parse("E + gamma*beta + I"), {"E": Fraction(1), "gamma": Fraction(2),
                                                    "beta": Fraction(3), "I": Fraction(4)})
    assert lo == hi == 11


def test_swapped_external_data_rejected(tmp_path):
    """The model hash covers external data files: new weights under the same file names are
    a different model."""
    src = MODELS / "torch_mlp_dynamo_external"
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    model = folder / "torch_mlp_dynamo_external.onnx"
    make_certificate(model, "2", "global", tmp_path / "c.json")
    assert check(tmp_path / "c.json", model)
    data = folder / "torch_mlp_dynamo_external.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[64:68] = bytes(4)  # zero one float of some weight
    data.write_bytes(bytes(raw))
    with pytest.raises(CertificateInvalid, match="sha256"):
        check(tmp_path / "c.json", model)
