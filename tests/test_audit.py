"""``boundprop audit``: empirical lower bounds never beat an honest certificate, a tampered one is
caught (exit 1), bad input is a one-line error (exit 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import boundprop as bp
from boundprop.audit import AuditResult, audit
from boundprop.cli import main
from boundprop.sets import default_input_set
from tests.conftest import gemm_onnx

MODELS = Path(__file__).resolve().parent.parent / "models"
FAST = {"samples": 400, "steps": 8}


def _model(name: str) -> str:
    return str(MODELS / f"{name}.onnx")


def _cert(tmp_path, name: str, norm: str = "2", input_set="default", **kw) -> str:
    net = bp.load(_model(name))
    s = default_input_set(net) if input_set == "default" else input_set
    path = tmp_path / f"{name}_{norm}.json"
    bp.certify(net, s, norm=norm, **kw).save(path)
    return str(path)


def _assert_clean(res: AuditResult) -> None:
    assert res.ok, [(r.quantity, r.certified, r.empirical) for r in res.violations]
    audited = [r for r in res.rows if r.ratio is not None]
    assert audited
    for r in audited:
        assert r.ratio >= 1 - 1e-9, (r.quantity, r.certified, r.empirical)
    for r in res.rows:  # every certified finite constant got an empirical value
        if r.kind == "constant" and r.certified is not None and math.isfinite(r.certified):
            assert r.empirical is not None and r.empirical >= 0, r.quantity


@pytest.mark.parametrize("name,norm", [("mlp_relu", "2"), ("mlp_tanh", "inf"),
                                       ("mlp_sigmoid", "1")])
def test_honest_certificates_pass(tmp_path, name, norm):
    cert = _cert(tmp_path, name, norm)
    res = audit(cert, _model(name), **FAST)
    _assert_clean(res)
    doc = json.loads(open(cert).read())
    assert sum(r.quantity.startswith("output[") for r in res.rows) == \
        2 * len(doc["output_bounds"]["upper"])
    assert sum(r.quantity.endswith(".bound") for r in res.rows) == len(doc["layers"])
    lip = res.row("lipschitz")
    assert 0 < lip.empirical <= lip.certified
    assert res.row("onnxruntime").violated is False
    if name == "mlp_tanh":  # smooth network: L is finite and audited
        assert 0 < res.row("smoothness").empirical <= res.row("smoothness").certified


def test_lenet_and_default_runtime(tmp_path):
    res = audit(_cert(tmp_path, "lenet"), _model("lenet"), samples=300, steps=5)
    _assert_clean(res)
    assert res.row("layer[12].bound").empirical > 0


def test_mlp_relu_defaults_are_fast(tmp_path):
    res = audit(_cert(tmp_path, "mlp_relu"), _model("mlp_relu"))
    _assert_clean(res)
    assert res.elapsed_s < 10


def test_global_certificate(tmp_path):
    cert = _cert(tmp_path, "mlp_sigmoid", "2", input_set=None)
    res = audit(cert, _model("mlp_sigmoid"), **FAST)
    _assert_clean(res)
    assert not any(r.quantity.startswith("output[") for r in res.rows)
    assert res.row("smoothness").empirical > 0


def test_tight_when_the_network_is_affine_on_the_set(tmp_path):
    """On a tiny ball every ReLU is stable: ℓ2 is ‖J‖₂ exactly (the certificate is tight) and
    L = 0. The audit must reach ℓ within 1e-3 and report no curvature from float noise."""
    net = bp.load(_model("mlp_relu"))
    s = bp.LinfBall(np.full((1, 8), 0.3), 1e-3)
    c = bp.certify(net, s, norm="2")
    assert c.smoothness == 0.0
    res = audit(c.to_json(), _model("mlp_relu"), **FAST)
    _assert_clean(res)
    assert res.row("lipschitz").ratio < 1.001
    assert res.row("smoothness").empirical == 0.0


def test_params_certificate(tmp_path):
    x = np.random.default_rng(0).random((1, 8))
    net = bp.load(_model("mlp_sigmoid"))
    c = bp.certify(net, bp.Box(x, x), wrt="params", param_radius=0.1,
                   loss="cross_entropy", targets=np.array([2]))
    path = tmp_path / "params.json"
    c.save(path)
    res = audit(str(path), _model("mlp_sigmoid"), **FAST)
    _assert_clean(res)
    assert res.wrt == "params"
    for q in ("output[0].upper", "lipschitz", "smoothness", "bound", "objective.lipschitz"):
        assert res.row(q).empirical > 0, q
    # the last layer alone moves the output by ~ sqrt(‖u‖² + 1) per unit of parameters
    assert res.row("lipschitz").ratio < 2


def _tamper(src: str, dst, fn) -> str:
    doc = json.loads(open(src).read())
    fn(doc)
    dst.write_text(json.dumps(doc))
    return str(dst)


def test_lowered_lipschitz_is_a_violation(tmp_path, capsys):
    cert = _cert(tmp_path, "mlp_tanh")
    emp = audit(cert, _model("mlp_tanh"), **FAST).row("lipschitz").empirical
    bad = _tamper(cert, tmp_path / "bad.json", lambda d: d.update(lipschitz=0.5 * emp))
    rc = main(["audit", bad, _model("mlp_tanh"), "--samples", "400", "--steps", "8",
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "VIOLATED" in out and "1 violation: lipschitz" in out
    res = audit(bad, _model("mlp_tanh"), **FAST)
    assert [r.quantity for r in res.violations] == ["lipschitz"]
    assert res.row("lipschitz").ratio < 1


def test_lowered_output_bound_is_a_violation(tmp_path, capsys):
    cert = _cert(tmp_path, "mlp_relu")
    res = audit(cert, _model("mlp_relu"), **FAST)
    hi = res.row("output[2].upper").empirical

    def lower(d):
        d["output_bounds"]["upper"][2] = hi - 0.05
    bad = _tamper(cert, tmp_path / "bad.json", lower)
    rc = main(["audit", bad, _model("mlp_relu"), "--samples", "400", "--steps", "8",
               "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["ok"] is False
    assert doc["violations"] == ["output[2].upper"]
    row = next(r for r in doc["rows"] if r["quantity"] == "output[2].upper")
    assert row["violated"] and row["empirical"] > row["certified"]


def test_cli_clean_quiet_and_json(tmp_path, capsys):
    cert = _cert(tmp_path, "mlp_relu")
    assert main(["audit", cert, _model("mlp_relu"), "--quiet", "--samples", "200"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", cert, _model("mlp_relu"), "--json", "--samples", "200"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["violations"] == [] and doc["schema"] == "boundprop.audit/1"
    smooth = next(r for r in doc["rows"] if r["quantity"] == "smoothness")
    assert smooth["certified"] == "inf" and smooth["ratio"] is None
    assert main(["audit", cert, _model("mlp_relu"), "--samples", "200", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "no violation" in out and "lipschitz" in out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_certificate_for_another_model(tmp_path, capsys):
    cert = _cert(tmp_path, "mlp_relu")
    assert main(["audit", cert, _model("mlp_tanh")]) == 2
    assert "another model" in _one_line_error(capsys)


@pytest.mark.parametrize("what", ["cert", "model", "garbage", "not-a-cert"])
def test_bad_input_exit_2(tmp_path, capsys, what):
    cert = _cert(tmp_path, "mlp_relu")
    model = _model("mlp_relu")
    if what == "cert":
        cert = str(tmp_path / "missing.json")
    elif what == "model":
        model = str(tmp_path / "missing.onnx")
    elif what == "garbage":
        (tmp_path / "g.json").write_text("{not json")
        cert = str(tmp_path / "g.json")
    else:
        (tmp_path / "n.json").write_text(json.dumps({"hello": 1}))
        cert = str(tmp_path / "n.json")
    assert main(["audit", cert, model]) == 2
    _one_line_error(capsys)


def test_parameter_gradients_match_finite_differences():
    """The reverse pass that guides the wrt=params searches (dense and conv weights, biases)."""
    from boundprop.audit.function import AuditedFunction as _Function

    net = bp.load(_model("lenet"))
    layers = [k for k, n in enumerate(net.nodes) if hasattr(n.op, "param_structure")]
    assert {net.nodes[k].op.kind for k in layers} == {"conv", "dense"}
    rng = np.random.default_rng(1)
    fn = _Function(net, "params", rng.random((1, *net.input_shape)), layers)
    z = rng.standard_normal(fn.dim) * 1e-3
    rows = np.zeros((1, 1, *net.output_shape))
    rows[0, 0, 0, 3] = 1.0
    g = fn.jacobians(z[None], [0], rows)[0, 0]
    for _ in range(3):
        v = rng.standard_normal(fn.dim)
        v /= np.linalg.norm(v)
        f = [fn.values_out((z + s * 1e-5 * v)[None])[0, 0, 0, 3] for s in (1, -1)]
        assert (f[0] - f[1]) / 2e-5 == pytest.approx(g @ v, rel=1e-5, abs=1e-8)


def test_lenet_params_certificate(tmp_path):
    x = np.random.default_rng(0).random((1, 1, 28, 28))
    net = bp.load(_model("lenet"))
    path = tmp_path / "lenet_params.json"
    bp.certify(net, bp.Box(x, x), wrt="params", param_radius=0.01).save(path)
    res = audit(str(path), _model("lenet"), samples=200, steps=3)
    _assert_clean(res)
    assert res.row("lipschitz").empirical > 0


def test_audit_model_with_external_data(tmp_path):
    """The audit compares the model hash the way certificates record it (external data
    files included), so a model with external data is audited, not refused."""
    model = MODELS / "torch_mlp_dynamo_external/torch_mlp_dynamo_external.onnx"
    net = bp.load(model)
    try:
        s = default_input_set(net)
    except bp.BoundpropError:
        s = bp.Box(-1.0, 1.0).fit(net.input_shape)
    bp.certify(net, s).save(tmp_path / "c.json")
    assert bp.audit(tmp_path / "c.json", model, samples=100).ok


def test_float32_overflow_certificate_checks_and_audits_clean(tmp_path, capsys):
    """Issue 11: a float32 certificate whose outputs overflow float32 has ±inf bounds, written
    "inf"/"-inf"; check must accept it and the audit must not call onnxruntime's inf a
    disagreement (it is the overflow the bounds admit)."""
    model = gemm_onnx(tmp_path / "big.onnx", np.full((2, 3), 1e30))
    cert = tmp_path / "c.json"
    assert main(["certify", str(model), "--box", "0", "1e10", "--execution", "float32",
                 "-o", str(cert), "--quiet"]) == 0
    doc = json.loads(cert.read_text())
    assert doc["output_bounds"]["upper"] == ["inf", "inf"]
    assert main(["check", str(cert), str(model), "--quiet"]) == 0
    assert main(["audit", str(cert), str(model), "--samples", "20", "--quiet"]) == 0
    capsys.readouterr()
