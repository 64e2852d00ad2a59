"""Every field of a certificate is either verified by ``boundprop check`` or listed in
``checker.UNVERIFIED_FIELDS``: each field of real certificates (every key path, per-layer key
and ``symbolic.values`` entry) is tampered (lowered, zeroed, 1e-9, strings/enums/booleans
changed, keys removed) and the checker must reject it, unless the tampered claim still holds
(a smaller input set, a removed optional claim) — then it must not crash. Also the issue-11
findings one by one, and the strict reading of certificate files."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import boundprop as bp
from boundprop.analysis import output_bounds
from boundprop.checker import (
    LOWER_BOUND_STEMS,
    UNVERIFIED_FIELDS,
    CertificateInvalid,
    check,
    schema,
    schema_fields,
)
from boundprop.cli import main
from boundprop.errors import BoundpropError
from tests.conftest import MODELS, VNNCOMP, needs_vnncomp

RELU, TANH, SIGMOID = (MODELS / f"mlp_{n}.onnx" for n in ("relu", "tanh", "sigmoid"))


def _float32(net, s, c: bp.Certificate) -> bp.Certificate:
    """What ``boundprop certify --execution float32`` writes."""
    b = output_bounds(net, s.fit(net.input_shape), c.method, "float32")
    c.output_lower, c.output_upper, c.execution = b.lower, b.upper, "float32"
    return c


def _make(case: str) -> tuple[dict, Any]:
    if case == "relu-inf-local":
        net = bp.load(RELU)
        c = bp.certify(net, bp.LinfBall(np.full(8, 0.5), 0.01), norm="inf")
        return c.to_json(), RELU
    if case == "tanh-l2-local-free":
        net = bp.load(TANH)
        c = bp.certify(net, bp.L2Ball(np.full(8, 0.2), 0.3), norm="2", free=("R",))
        return c.to_json(), TANH
    if case == "sigmoid-l2-global":
        return bp.certify(bp.load(SIGMOID), None, norm="2").to_json(), SIGMOID
    if case == "tanh-params-squared":
        net = bp.load(TANH)
        x = np.linspace(-0.5, 0.5, 8).reshape(net.input_shape)
        c = bp.certify(net, bp.Box(x, x), wrt="params", param_radius=0.1, loss="squared",
                       targets=net(x) + 0.3)
        return c.to_json(), TANH
    assert case == "relu-float32-clip"
    net = bp.load(RELU)
    s = bp.LinfBall(np.full(8, 0.5), 0.3, (0.3, 0.7))  # the clip binds
    return _float32(net, s, bp.certify(net, s, norm="inf")).to_json(), RELU


CASES = ["relu-inf-local", "tanh-l2-local-free", "sigmoid-l2-global", "tanh-params-squared",
         "relu-float32-clip"]
_DOCS: dict[str, tuple[dict, Any]] = {}


def _doc(case: str) -> tuple[dict, Any]:
    if case not in _DOCS:
        _DOCS[case] = _make(case)
    return copy.deepcopy(_DOCS[case][0]), _DOCS[case][1]


def _verdict(doc: dict, model) -> tuple[int, str]:
    """(exit status as ``boundprop check`` gives it, reason). Any other exception than
    BoundpropError (exit 2) propagates: it would be an internal error (exit 3)."""
    try:
        r = check(doc, model, raise_on_invalid=False, samples=4)
    except BoundpropError as e:
        return 2, str(e)
    return (0, "") if r.valid else (1, r.reason or "")


# ---------------------------------------------------------------------------------------------
# Tamperings: (field path as in schema_fields, what was done, edit, must the checker reject?)

Edit = Callable[[dict], None]
# Fields that define the question rather than answer it: changing them asks the checker about
# another set / loss, which it re-derives; each has a change that must be rejected below.
QUESTION_FIELDS = {"input_set.kind", "input_set.center", "input_set.eps", "input_set.clip",
                   "input_set.radius", "input_set.lower", "input_set.upper", "param_radius",
                   "method", "objective.targets", "objective.loss", "objective.reduction",
                   "model.input", "model.output", "free"}
# Upper bounds of ℓ that may exceed a smaller verified one (the enclosure method's value
# when the layer product is smaller): lowering them a little can leave a true claim.
LOOSE = {"lipschitz_enclosure", "Jenc"}


def _norm_path(path: tuple) -> str:
    out = ""
    for i, p in enumerate(path):
        if isinstance(p, int):
            out += "[]"
        elif path[:i] in (("symbolic", "values"), ("symbolic", "meaning")):
            out += ".*"
        else:
            out += f".{p}" if out else p
    return out


def _get(doc: dict, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _setter(path: tuple, value: Any) -> Edit:
    def edit(d: dict) -> None:
        _get(d, path[:-1])[path[-1]] = copy.deepcopy(value)
    return edit


def _remover(path: tuple) -> Edit:
    def edit(d: dict) -> None:
        _get(d, path[:-1]).pop(path[-1])
    return edit


def _lowered_numbers(x: Any) -> list[tuple[str, Any]]:
    """Values strictly below an upper bound x (a number or "inf")."""
    if x == "inf":
        return [("inf→1e-3", 1e-3), ("inf→1e300", 1e300), ("inf→0", 0)]
    out = [("×0.999", x * 0.999), ("1e-9", 1e-9), ("0", 0)]
    return [(w, v) for w, v in out if v < x]


def _number_tamperings(path: tuple, x: Any, lower_claim: bool) -> Iterator[tuple]:
    p = _norm_path(path)
    if lower_claim:  # a lower bound (output_bounds.lower, eps_bn, vlo): raising it is false
        if x != "inf":
            yield p, f"{path} raised", _setter(path, x * 1.001 + 1e-3), True
        return
    for what, v in _lowered_numbers(x):
        if what != "×0.999" or path[-1] not in LOOSE:
            yield p, f"{path} {what}", _setter(path, v), True


def _question_tamperings(path: tuple, x: Any, doc: dict) -> Iterator[tuple]:
    """A change of the question that must be rejected (the set grows, the targets move…)."""
    p = _norm_path(path)
    bigger = {"input_set.eps": lambda v: v * 10 + 0.1, "input_set.radius": lambda v: v * 10 + 1,
              "param_radius": lambda v: v * 10 + 1}
    if p in bigger:  # with a binding clip, a larger ε may leave the set as it was
        clipped = p == "input_set.eps" and doc["input_set"].get("clip") is not None
        yield p, f"{path} enlarged", _setter(path, bigger[p](x)), not clipped
    elif p in ("input_set.center", "input_set.upper", "objective.targets"):
        yield p, f"{path} moved", _setter(path, [v + 3.0 for v in x]), True
    elif p == "input_set.lower":
        yield p, f"{path} moved", _setter(path, [v - 3.0 for v in x]), True
    elif p == "input_set.clip":
        yield p, f"{path} widened", _setter(path, [x[0] - 10, x[1] + 10]), True
        yield p, f"{path} removed", _remover(path), True
    elif p == "input_set.kind":
        yield p, f"{path} changed", _setter(path, "l2" if x != "l2" else "box"), True
    elif p in ("model.input", "model.output"):
        yield p, f"{path} renamed", _setter(path, "no_such_tensor"), True
    elif p == "method" and x == "linear":  # the method matters for bounds on a set only
        yield p, "method → interval", _setter(path, "interval"), \
            doc["input_set"] is not None and doc["wrt"] == "input"
    elif p == "objective.loss":  # re-derived for the loss named: the claim may hold for both
        yield p, "loss changed", _setter(path, "cross_entropy" if x == "squared" else
                                         "squared"), False
    elif p == "objective.reduction":  # one output row here (n = 1): mean and sum coincide
        yield p, "reduction changed", _setter(path, "sum" if x == "mean" else "mean"), False
    elif p == "free":
        yield p, "free: unknown name", _setter(path, [*x, "no_such_constant"]), True


ENUMS = {"norm": ["2", "inf", "1"], "wrt": ["input", "params"], "execution": ["float32"]}
NULL_CLAIMS = {"lipschitz_enclosure": 0, "smoothness_curvature": 0,
               "layers[].interval_width": 0, "param_radius": 0.5,
               "layers[].op_lipschitz": 0, "layers[].op_smoothness": 0, "lipschitz_lmi": 0,
               "lmi_multipliers": [[0.0]]}


def _leaf_tamperings(path: tuple, x: Any, doc: dict) -> Iterator[tuple]:
    p = _norm_path(path)
    if p in QUESTION_FIELDS and x is not None:
        yield from _question_tamperings(path, x, doc)
    elif x is None:
        if p in NULL_CLAIMS:
            yield p, f"{path} null → claim", _setter(path, NULL_CLAIMS[p]), True
        elif p == "output_bounds":
            yield p, "output bounds on no set", _setter(path, {"lower": [0.0] * 4,
                                                                "upper": [0.0] * 4}), True
    elif isinstance(x, bool):
        yield p, f"{path} flipped", _setter(path, not x), True
    elif p == "objective.step_size":  # a step claimed safe: raising it is the lie
        yield p, "step size raised", _setter(path, x * 1.5 + 1e-6), True
    elif p in ENUMS:
        for v in ENUMS[p]:
            if v != x:
                yield p, f"{p} {x}→{v}", _setter(path, v), not (p == "execution" and
                                                                   v == "real")
    elif isinstance(x, (int, float)) or x == "inf":
        name = path[-1] if path[:2] == ("symbolic", "values") else ""
        lower = p == "output_bounds.lower" or any(
            name == s or name.startswith(s + "_") for s in LOWER_BOUND_STEMS)
        yield from _number_tamperings(path, x, lower)
    elif isinstance(x, str):
        new = "0" * 64 if p == "model.sha256" else "boundprop.certificate/2" \
            if p == "schema" else "0" if x != "0" else "1/2"
        yield p, f"{path} edited", _setter(path, new), True
    elif p == "lmi_multipliers" and x:  # the LipSDP-Neuron multipliers: the LMI must fail
        yield p, "first multiplier vector zeroed", _setter(path, [[0.0] * len(x[0]), *x[1:]]), \
            True
        yield p, "a multiplier negative", _setter(path, [[-1.0, *x[0][1:]], *x[1:]]), True
        yield p, "a layer's multipliers dropped", _setter(path, x[1:]), True
    elif isinstance(x, list) and x and all(isinstance(v, (int, float)) for v in x):
        if p == "output_bounds.upper":
            yield p, f"{path}[0] lowered", _setter(path, [x[0] - 1e-3, *x[1:]]), True
        elif p == "output_bounds.lower":
            yield p, f"{path}[0] raised", _setter(path, [x[0] + 1e-3, *x[1:]]), True
        elif p in ("model.input_shape", "model.output_shape", "input_set.shape"):
            yield p, f"{path} changed", _setter(path, [*x[:-1], x[-1] + 1]), True


def _removal_tamperings(doc: dict) -> Iterator[tuple]:
    """Remove each key of the top level, the model, the set, the objective and one layer:
    required keys must be rejected; optional ones drop a claim (must not crash)."""
    root = schema()
    where = [((), root)]
    for key in ("model", "input_set", "objective", "output_bounds"):
        if isinstance(doc.get(key), dict):
            sub = root["properties"][key]
            req = set(sub.get("required", ()))
            for alt in sub.get("oneOf", ()):
                req |= set(alt.get("required", ()))
            where.append(((key,), {"required": sorted(req)}))
    where.append((("layers", 1), root["properties"]["layers"]["items"]))
    for path, sch in where:
        for key in _get(doc, path):
            full = (*path, key)
            must = key in sch.get("required", ()) or full in (("symbolic",),
                                                              ("layers", 1, "symbolic"))
            yield _norm_path(full), f"{full} removed", _remover(full), must


def tamperings(doc: dict) -> Iterator[tuple]:
    """(field path, description, edit, must reject) for every field of ``doc``."""
    def walk(x: Any, path: tuple) -> Iterator[tuple]:
        p = _norm_path(path)
        if p in UNVERIFIED_FIELDS:
            return
        if isinstance(x, dict) and p not in QUESTION_FIELDS:
            for k, v in x.items():
                yield from walk(v, (*path, k))
        elif isinstance(x, list) and x and isinstance(x[0], dict):
            for i, v in enumerate(x):
                yield from walk(v, (*path, i))
        else:
            yield from _leaf_tamperings(path, x, doc)
    yield from walk(doc, ())
    yield from _removal_tamperings(doc)
    yield "layers", "last layer removed", lambda d: d["layers"].pop(), True
    if doc["input_set"] is not None:  # a local certificate relabelled global (issue 11.2)
        yield "local", "local relabelled global", _setter(("local",), False), True


def _cosmetic_tamperings(doc: dict) -> Iterator[tuple]:
    """Edits of unverified fields: the verdict stays VALID and the field is listed."""
    yield "model.path", _setter(("model", "path"), "/elsewhere/other.onnx")
    yield "tool", _setter(("tool",), {"name": "boundprop", "version": "99"})
    yield "elapsed_s", _setter(("elapsed_s",), 12345.0)
    yield "enclosure_note", _setter(("enclosure_note",), "anything")
    yield "smoothness_reason", _setter(("smoothness_reason",), "anything")
    yield "curvature_note", _setter(("curvature_note",), "anything")
    yield "symbolic.meaning", _setter(("symbolic", "meaning"), {"R": "anything"})


def _run_case(case: str) -> list[str]:
    base, model = _doc(case)
    assert _verdict(base, model) == (0, ""), "the untampered certificate must check"
    problems = []
    for field, what, edit, must in tamperings(base):
        doc = copy.deepcopy(base)
        edit(doc)
        code, reason = _verdict(doc, model)
        if must and code == 0:
            problems.append(f"{field}: {what} was accepted")
    for field, edit in _cosmetic_tamperings(base):
        doc = copy.deepcopy(base)
        edit(doc)
        r = check(doc, model, samples=4)
        if field not in r.unverified:
            problems.append(f"{field}: edited, valid, but not listed as unverified")
    return problems


DEFAULT_CASES = ["relu-inf-local", "sigmoid-l2-global"]  # ~20 s; the others ~15 s each


@pytest.mark.parametrize("case", DEFAULT_CASES)
def test_every_field_tampered(case):
    problems = _run_case(case)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c not in DEFAULT_CASES])
def test_every_field_tampered_more(case):
    problems = _run_case(case)
    assert not problems, "\n".join(problems)


def test_every_schema_field_is_verified_or_listed():
    """A schema field neither tampered-and-rejected on some certificate here nor listed in
    UNVERIFIED_FIELDS fails this test: add a check or list it."""
    rejected = set()
    for case in CASES:
        rejected |= {f for f, _, _, must in tamperings(_doc(case)[0]) if must}
    fields = schema_fields()
    missing = sorted(f for f in fields - UNVERIFIED_FIELDS
                     if not any(r == f or r.startswith((f + ".", f + "[]")) for r in rejected))
    assert not missing, f"fields neither verified by a tampering test nor listed: {missing}"
    assert UNVERIFIED_FIELDS <= fields  # no stale names


# ---------------------------------------------------------------------------------------------
# The issue-11 findings, one by one


def _rejected(doc: dict, model, match: str | None = None) -> str:
    with pytest.raises(CertificateInvalid) as e:
        check(doc, model)
    if match:
        assert match in e.value.result.reason
    return e.value.result.reason


def test_zero_lipschitz_rejected():
    """11.0a: ℓ = 0 everywhere for a non-constant net (the input layer's values replaced the
    checked ones, and Jenc counted as covered)."""
    doc, model = _doc("relu-inf-local")
    for lc in doc["layers"]:
        lc["lipschitz"] = 0
    for key in ("lipschitz", "lipschitz_product", "lipschitz_enclosure"):
        doc[key] = 0
    doc["symbolic"]["values"]["Jenc"] = 0
    _rejected(doc, model)
    doc, _ = _doc("relu-inf-local")
    doc["layers"][0]["lipschitz"] = 0  # only the input layer
    _rejected(doc, model, "layer 0")


def test_local_relabelled_global_rejected():
    """11.2: a local ℓ (3.099 on this set) is not a global one (a pair quotient of 7.02
    exists); ``local`` must match the set."""
    doc, model = _doc("relu-inf-local")
    assert doc["local"] is True and abs(doc["lipschitz"] - 3.099) < 1e-3
    doc["local"] = False
    _rejected(doc, model, "local")
    glob = bp.certify(bp.load(model), None, norm="inf")
    assert glob.lipschitz > 7.0  # the global claim is really larger


def test_real_relabelled_float32_rejected():
    """11.1: a real-execution certificate relabelled float32 on a shipped model."""
    doc, model = _doc("relu-float32-clip")
    assert check(doc, model)  # the genuine float32 certificate checks (onnxruntime samples)
    net = bp.load(model)
    real = bp.certify(net, bp.LinfBall(np.full(8, 0.5), 0.3, (0.3, 0.7)), norm="inf").to_json()
    real["execution"] = "float32"
    _rejected(real, model, "output bounds")


@needs_vnncomp()
def test_acas_real_relabelled_float32_rejected():
    """11.1 as reported: ACAS Xu, ℓ∞ ball of 0.001 around a float32 centre, norm inf."""
    path = next(iter(sorted((VNNCOMP / "acasxu").glob("ACASXU_run2a_1_*.onnx"))), None)
    if path is None:
        pytest.skip("no ACAS Xu network")
    net = bp.load(path)
    x = np.array([0.6, -0.3, 0.2, 0.45, -0.45], np.float32).astype(np.float64)
    s = bp.LinfBall(x.reshape(net.input_shape), 0.001)
    doc = bp.certify(net, s, norm="inf").to_json()
    assert check(doc, path)
    doc["execution"] = "float32"
    _rejected(doc, path, "float32")
    f32 = _float32(net, s, bp.certify(net, s, norm="inf")).to_json()
    r = check(f32, path)
    assert any("onnxruntime float32" in i.detail for i in r.items)


@pytest.mark.parametrize("value", [1e-9, 0.001, 0])
@pytest.mark.parametrize("field", ["lipschitz_enclosure", "lipschitz_product", "Jenc",
                                   "op_lipschitz", "op_smoothness"])
def test_formerly_unverified_claims_rejected(field, value):
    """11.3: these claims were never verified."""
    doc, model = _doc("tanh-l2-local-free")
    if field == "Jenc":
        doc["symbolic"]["values"]["Jenc"] = value
    elif field.startswith("op_"):
        doc["layers"][2][field] = value  # the first Tanh: both constants positive
        assert _DOCS["tanh-l2-local-free"][0]["layers"][2][field] > 0.001
    else:
        doc[field] = value
    _rejected(doc, model)


def test_report_does_not_show_unverified_fields_as_checked(tmp_path):
    from boundprop.report import render_report, run_checker

    doc, model = _doc("relu-inf-local")
    doc["elapsed_s"] = 777.0
    verdict = run_checker(doc, str(model))
    assert verdict["status"] == "valid"
    assert {"elapsed_s", "tool", "model.path"} <= set(verdict["unverified"])
    text = render_report(doc, "text", check=verdict)
    assert "not verified by the checker" in text and "elapsed_s" in text


# ---------------------------------------------------------------------------------------------
# Reading certificates strictly (11.4, 11.5)


def _text(case: str = "relu-inf-local") -> str:
    return json.dumps(_doc(case)[0])


BAD_FILES = {
    "duplicate lipschitz": lambda t: t.replace('"lipschitz": ', '"lipschitz": 0.001, '
                                               '"lipschitz": ', 1),
    "duplicate sha256": lambda t: t.replace('"sha256": ', '"sha256": "' + "0" * 64 + '", '
                                            '"sha256": ', 1),
    "duplicate schema": lambda t: t.replace('"schema": ', '"schema": "evil/9", "schema": ', 1),
    "bare NaN": lambda t: t.replace('"lipschitz": ', '"lipschitz": NaN, "x": ', 1),
    "bare Infinity": lambda t: t.replace('"bound": ', '"bound": -Infinity, "y": ', 1),
    "1e999": lambda t: t.replace('"bound": ', '"bound": 1e999, "z": ', 1),
    "5000 digits": lambda t: t.replace('"elapsed_s": ', '"elapsed_s": ' + "9" * 5000
                                       + ', "w": ', 1),
    "nested 10^5 deep": lambda t: t[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "nested 600 deep": lambda t: t[:-1] + ', "deep": ' + '{"a": ' * 600 + "1" + "}" * 601,
}


@pytest.mark.parametrize("what", list(BAD_FILES))
def test_bad_certificate_text_exit_2(what, tmp_path, capsys):
    text = BAD_FILES[what](_text())
    assert text != _text()
    cert = tmp_path / "c.json"
    cert.write_text(text)
    code = main(["check", str(cert), str(RELU)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("boundprop: error")
    with pytest.raises(BoundpropError):
        bp.load_certificate(cert)


def test_nan_in_a_dict_certificate_is_an_input_error():
    doc, model = _doc("relu-inf-local")
    doc["lipschitz"] = float("nan")
    with pytest.raises(BoundpropError, match="JSON"):
        check(doc, model)
