"""``boundprop report`` and ``boundprop compare``: formats, plot, verdicts, error paths."""

from __future__ import annotations

import base64
import builtins
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import boundprop as bp
from boundprop.cli import main
from boundprop.report import (
    PLOT_NOTE,
    compare_models,
    layer_plot_png,
    load_certificate,
    render_report,
    report_summary,
    run_checker,
)

MODELS = Path(__file__).resolve().parent.parent / "models"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def g6(x) -> str:
    """How a certificate number must appear in a report (written independently of report.py)."""
    if x is None:
        return "-"
    if x == "inf" or x == float("inf"):
        return "inf"
    return f"{float(x):.6g}"


@pytest.fixture(scope="module")
def lenet_cert(tmp_path_factory) -> Path:
    """Local ℓ∞ certificate of LeNet: ReLU/max-pool, so L is infinite and some L are 0."""
    net = bp.load(str(MODELS / "lenet.onnx"))
    c = bp.certify(net, bp.Box(0.0, 1.0), norm="inf")
    path = tmp_path_factory.mktemp("certs") / "c.json"
    c.save(path)
    return path


@pytest.fixture(scope="module")
def sigmoid_cert(tmp_path_factory) -> Path:
    """Global ℓ2 certificate of a smooth MLP: every constant finite except the input's B."""
    net = bp.load(str(MODELS / "mlp_sigmoid.onnx"))
    path = tmp_path_factory.mktemp("certs") / "g.json"
    bp.certify(net, None).save(path)
    return path


def no_matplotlib(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named '{name}' (test)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("boundprop: error:") and "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- formats


def test_html_is_self_contained_with_plot_and_table(lenet_cert, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(lenet_cert), "-o", str(out)]) == 0
    assert "report written to" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    m = re.search(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert m, "no embedded PNG"
    assert base64.b64decode(m.group(1)).startswith(PNG_MAGIC)
    doc = json.loads(lenet_cert.read_text())
    for lc in doc["layers"]:
        assert f"<td>{lc['node']}</td>" in text
        for key in ("lipschitz", "bound", "op_lipschitz"):
            assert f">{g6(lc[key])}</td>" in text
    assert g6(doc["lipschitz"]) in text and g6(doc["lipschitz_enclosure"]) in text
    assert "σ' jumps at 0" in text  # the reason L is infinite
    assert "<link" not in text and "<script" not in text  # nothing external
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp files left


def test_markdown_links_a_png_next_to_it(lenet_cert, tmp_path):
    out = tmp_path / "sub" / "r.md"
    out.parent.mkdir()
    assert main(["report", str(lenet_cert), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert links == ["r.png"]
    assert (out.parent / "r.png").read_bytes().startswith(PNG_MAGIC)
    doc = json.loads(lenet_cert.read_text())
    for lc in doc["layers"]:
        assert f"| {lc['node']} |" in text
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.md", "r.png"]


def test_text_has_every_node_and_the_certificate_values(lenet_cert, capsys):
    assert main(["report", str(lenet_cert)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(lenet_cert.read_text())
    rows = {ln.split()[1]: ln for ln in text.splitlines()
            if re.match(r"\s+\d+\s+\S+\s+\S+\s+(input|affine|activation|pooling)", ln)}
    assert list(rows) == [lc["node"] for lc in doc["layers"]]
    for lc in doc["layers"]:
        cells = rows[lc["node"]].split()
        assert cells[4:9] == [g6(lc[k]) for k in ("op_lipschitz", "op_smoothness", "lipschitz",
                                                  "smoothness", "bound")], cells
    assert f"Lipschitz ℓ     {g6(doc['lipschitz'])}" in text
    assert f"layer product {g6(doc['lipschitz_product'])}" in text
    assert f"smoothness L    inf   ({doc['smoothness_reason']})" in text
    assert f"bound B         {g6(doc['bound'])}" in text
    assert "box [0, 1]^784" in text and "ℓ∞" in text
    assert doc["model"]["sha256"][:16] in text
    for lo in doc["output_bounds"]["lower"]:
        assert g6(lo) in text


def test_txt_file_and_unknown_extension(sigmoid_cert, tmp_path, capsys):
    out = tmp_path / "r.txt"
    assert main(["report", str(sigmoid_cert), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "all inputs (global constants)" in text and "Sigmoid_1" in text
    capsys.readouterr()
    bad = tmp_path / "r.pdf"
    assert main(["report", str(sigmoid_cert), "-o", str(bad)]) == 2
    assert ".html" in one_error_line(capsys.readouterr().err)
    assert not bad.exists()


def test_json_summary_parses(lenet_cert, capsys):
    assert main(["report", str(lenet_cert), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    doc = json.loads(lenet_cert.read_text())
    n = len(doc["layers"])
    assert s["series"]["node"] == [lc["node"] for lc in doc["layers"]]
    for key in ("lipschitz", "smoothness", "bound", "op_lipschitz", "interval_width"):
        assert len(s["series"][key]) == n
        assert s["series"][key] == [lc[key] for lc in doc["layers"]]
    assert s["lipschitz"] == doc["lipschitz"] and s["smoothness"] == "inf"
    assert s["input_set"]["kind"] == "box" and s["input_set"]["dimension"] == 784
    assert s["outputs"] == 10


def test_parameter_certificate_shows_objective_and_step(tmp_path, capsys):
    net = bp.load(str(MODELS / "mlp_sigmoid.onnx"))
    x = np.linspace(-0.5, 0.5, 8).reshape(1, 8)
    c = bp.certify(net, bp.Box(x, x), wrt="params", param_radius=0.1, loss="cross_entropy",
                   targets=np.array([1]))
    c.save(tmp_path / "p.json")
    assert main(["report", str(tmp_path / "p.json")]) == 0
    text = capsys.readouterr().out
    assert "parameters (ball of radius 0.1" in text
    assert f"certified step 1/L_F  {g6(c.objective.step_size)}" in text
    assert "cross_entropy" in text


def test_plot_png_marks_infinite_and_zero(lenet_cert):
    png = layer_plot_png(lenet_cert)
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


# ----------------------------------------------------------------------------- no matplotlib


def test_without_matplotlib_html_and_md_keep_the_table(lenet_cert, tmp_path, monkeypatch,
                                                       capsys):
    no_matplotlib(monkeypatch)
    html_out, md_out = tmp_path / "r.html", tmp_path / "r.md"
    assert main(["report", str(lenet_cert), "-o", str(html_out)]) == 0
    assert main(["report", str(lenet_cert), "-o", str(md_out)]) == 0
    assert PLOT_NOTE in capsys.readouterr().err
    for out in (html_out, md_out):
        text = out.read_text(encoding="utf-8")
        assert PLOT_NOTE in text and "Relu_3" in text and "Gemm_2" in text
        assert "data:image/png" not in text and ".png)" not in text
    assert not (tmp_path / "r.png").exists()
    # compare --plot fails up front (exit 2, one line), before certifying anything
    plot = tmp_path / "c.png"
    assert main(["compare", str(MODELS / "mlp_tanh.onnx"), "--plot", str(plot)]) == 2
    assert "pip install 'boundprop[plot]'" in one_error_line(capsys.readouterr().err)
    assert not plot.exists()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("content", [None, '{"schema": "boundprop.certificate/1", "layers": [',
                                     '{"a": 1}', "[1, 2]", b"\x89PNG\x00\xff\xfe"])
@pytest.mark.parametrize("ext", [".html", ".md", ".txt"])
def test_bad_certificate_exit_2_nothing_written(tmp_path, capsys, content, ext):
    cert = tmp_path / "cert.json"
    if isinstance(content, bytes):
        cert.write_bytes(content)
    elif content is not None:
        cert.write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / f"report{ext}"
    assert main(["report", str(cert), "-o", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cert.json" in line and "boundprop certify" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_folder_missing_and_output_is_the_certificate(sigmoid_cert, tmp_path, capsys):
    assert main(["report", str(sigmoid_cert), "-o", str(tmp_path / "no" / "r.html")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    before = sigmoid_cert.read_bytes()
    copy = tmp_path / "c.txt"
    copy.write_bytes(before)
    assert main(["report", str(copy), "-o", str(copy)]) == 2
    assert "would be overwritten" in one_error_line(capsys.readouterr().err)
    assert copy.read_bytes() == before


def test_tolerates_none_inf_strings_and_missing_keys(sigmoid_cert):
    doc = json.loads(sigmoid_cert.read_text())
    doc["lipschitz_enclosure"] = None
    doc["enclosure_note"] = "skipped: too large"
    doc["smoothness"] = "Infinity"
    doc["bound"] = "inf"
    del doc["tool"], doc["model"]["sha256"], doc["method"]
    doc["layers"][2] = {"node": "Sigmoid_0"}  # every other key missing
    doc["layers"][3]["lipschitz"] = 0.0
    for fmt in ("text", "md", "html", "json"):
        out = render_report(doc, fmt)
        assert "Sigmoid_0" in out
    text = render_report(doc, "text")
    assert "enclosure: skipped: too large" in text and "smoothness L    inf" in text
    assert json.loads(render_report(doc, "json"))["series"]["lipschitz"][2] is None
    assert layer_plot_png(doc).startswith(PNG_MAGIC)
    with pytest.raises(bp.BoundpropError, match="schema"):
        load_certificate({"layers": []})


# ----------------------------------------------------------------------------- verdicts


def test_audit_table_and_violation_exit_1(sigmoid_cert, tmp_path, capsys):
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"rows": [
        {"quantity": "lipschitz", "certified": 1.5, "empirical": 0.75, "ratio": 2.0,
         "violated": False},
        {"quantity": "bound", "certified": "inf"},  # missing keys are tolerated
    ]}))
    assert main(["report", str(sigmoid_cert), "--audit", str(audit)]) == 0
    text = capsys.readouterr().out
    assert "audit: no violations in 2 quantities" in text
    assert re.search(r"lipschitz\s+1\.5\s+0\.75\s+2\s+no", text)
    audit.write_text(json.dumps({"rows": [{"quantity": "smoothness", "certified": 1.0,
                                           "empirical": 2.0, "ratio": 0.5, "violated": True}]}))
    out = tmp_path / "r.html"
    assert main(["report", str(sigmoid_cert), "--audit", str(audit), "-o", str(out)]) == 1
    assert "VIOLATED" in out.read_text(encoding="utf-8")
    capsys.readouterr()
    audit.write_text("{not json")
    assert main(["report", str(sigmoid_cert), "--audit", str(audit)]) == 2
    assert "audit file" in one_error_line(capsys.readouterr().err)


def test_checker_verdicts_with_a_stand_in_checker(sigmoid_cert, monkeypatch):
    seen = []

    def check(cert_path, model_path):
        seen.append((cert_path, model_path))
        ok = "good" in model_path
        return types.SimpleNamespace(valid=ok, reason=None if ok else "ℓ below the product")

    fake = types.ModuleType("boundprop.checker")
    fake.check = check
    monkeypatch.setitem(sys.modules, "boundprop.checker", fake)
    assert run_checker(sigmoid_cert, "good.onnx")["status"] == "valid"
    bad = run_checker(sigmoid_cert, "bad.onnx")
    assert bad == {"status": "invalid", "reason": "ℓ below the product"}
    assert seen[0] == (str(sigmoid_cert), "good.onnx")
    text = render_report(sigmoid_cert, "text", check=bad)
    assert "independent checker: INVALID: ℓ below the product" in text

    def raising(cert_path, model_path):
        raise bp.BoundpropError("model file unreadable")

    fake.check = raising
    assert run_checker(sigmoid_cert, "m.onnx") == {"status": "error",
                                                   "reason": "model file unreadable"}
    monkeypatch.setitem(sys.modules, "boundprop.checker", None)  # import fails
    assert run_checker(sigmoid_cert, "m.onnx")["status"] == "unavailable"
    assert "checker unavailable" in render_report(sigmoid_cert, "text",
                                                  check=run_checker(sigmoid_cert, "m.onnx"))


def test_real_checker_if_present(sigmoid_cert, tmp_path, capsys):
    try:
        from boundprop.checker import check  # noqa: F401
    except ImportError:
        pytest.skip("boundprop.checker.check not available")
    model = str(MODELS / "mlp_sigmoid.onnx")
    assert main(["report", str(sigmoid_cert), "--model", model]) == 0
    assert "independent checker: VALID" in capsys.readouterr().out
    doc = json.loads(sigmoid_cert.read_text())
    doc["lipschitz"] = doc["lipschitz_product"] = doc["lipschitz"] / 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["report", str(bad), "--model", model]) == 1
    assert "independent checker: INVALID" in capsys.readouterr().out


# ----------------------------------------------------------------------------- compare


def test_compare_rows_match_certify(tmp_path, capsys):
    paths = [str(MODELS / "mlp_sigmoid.onnx"), str(MODELS / "mlp_tanh.onnx"),
             str(MODELS / "mlp_relu.onnx")]
    md, plot = tmp_path / "t.md", tmp_path / "t.png"
    assert main(["compare", *paths, "--global", "-o", str(md), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    for p in paths:
        net = bp.load(p)
        c = bp.certify(net, None)
        name = Path(p).stem
        rows = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
        assert len(rows) == 1, text
        cells = rows[0].split()
        assert cells[1] == f"{net.num_parameters():,}" and cells[3] == g6(c.lipschitz)
        assert f"| {name} |" in md.read_text(encoding="utf-8")
    assert "inf (Relu" in text  # the ReLU net has no smoothness constant, and says why
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert main(["compare", *paths[:2], "--norm", "inf", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["mlp_sigmoid", "mlp_tanh"]
    for r, p in zip(rows, paths):
        net = bp.load(p)
        from boundprop.sets import default_input_set

        c = bp.certify(net, default_input_set(net), norm="inf")
        assert r["lipschitz"] == pytest.approx(c.lipschitz, rel=1e-12)
        assert r["local"] is True and r["nodes"] == len(net.nodes) - 1


def test_compare_api_csv_and_errors(tmp_path, capsys):
    rows = compare_models([str(MODELS / "mlp_tanh.onnx")], norm="2", wrt="params", radius=0.05)
    assert rows[0]["wrt"] == "params" and rows[0]["lipschitz"] > 0
    csv_out = tmp_path / "t.csv"
    assert main(["compare", str(MODELS / "mlp_tanh.onnx"), "--global", "-o", str(csv_out)]) == 0
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("model,path,parameters") and len(lines) == 2
    capsys.readouterr()
    missing = tmp_path / "nope.onnx"
    assert main(["compare", str(MODELS / "mlp_tanh.onnx"), str(missing)]) == 2
    assert "nope.onnx" in one_error_line(capsys.readouterr().err)
    assert main(["compare", str(MODELS / "mlp_tanh.onnx"), "--global", "--wrt", "params"]) == 2
    one_error_line(capsys.readouterr().err)
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"not onnx")
    assert main(["compare", str(garbage), "-o", str(tmp_path / "x.md")]) == 2
    one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x.md").exists()


def test_api_render_from_dict_and_summary(sigmoid_cert, tmp_path):
    doc = json.loads(sigmoid_cert.read_text())
    md = render_report(doc, "md", plot_path=str(tmp_path / "p.png"))
    assert "](p.png)" in md and (tmp_path / "p.png").exists()
    s = report_summary(doc)
    assert s["series"]["bound"][0] == "inf" and s["lipschitz"] == doc["lipschitz"]
    with pytest.raises(bp.BoundpropError):
        render_report(doc, "pdf")
