"""Fuzzing certificates: mutations of every field of genuine certificates (types, NaN/∞/huge,
nesting, duplicate keys, removal) and tampering that makes a claim FALSE.

Targets:

- ``cert_fields``: ``boundprop check CERT MODEL`` and ``bp.load_certificate`` on a mutated
  certificate: exit 0/1/2 and BoundpropError only, within the time limit;
- ``cert_tamper``: a claim is moved in a direction that makes it false, decided by a witness
  computed here, independently of boundprop, from the tiny MLP's own weights (an output sample
  beyond a bound, a pair of inputs whose quotient beats the Lipschitz constant, a pair of
  gradients whose quotient beats the smoothness constant, a different sha256). ``check`` must
  not exit 0 on such a certificate.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import strategies as st

import boundprop as bp
from tests.fuzz import corpus
from tests.fuzz.harness import MODES, call, contract_violation, fuzz, run_cli

HOSTILE_VALUES = [None, True, False, 0, -1, 1, 2**64, -(2**63), 10**400, 1e308, -1e308, 5e-324,
                  float("nan"), float("inf"), -float("inf"), "", "inf", "-inf", "nan", "oo",
                  "1e999", "x" * 10_000, "A_h*l_x", "Min(", "9**9**9**9", "(1).__class__",
                  [], [None], [float("nan")], {}, {"a": 1}, [[[[[]]]]], "Ｘ", "\u0000"]
NETS = {"relu": corpus.tiny(0, "Relu"), "tanh": corpus.tiny(0, "Tanh")}
CERTS = ("relu_box_2", "relu_linf_inf", "relu_l2_1", "relu_global_2",
         "tanh_box_2", "tanh_linf_inf", "tanh_l2_1", "tanh_global_2")


def _paths(x, prefix=()):
    """Every path (tuple of keys/indices) into a JSON document, the root excluded."""
    out = []
    if isinstance(x, dict):
        items = x.items()
    elif isinstance(x, list):
        items = list(enumerate(x))[:8]
    else:
        return out
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _set(doc, path, value):
    node = doc
    for k in path[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()


@st.composite
def field_mutations(draw, docs: dict[str, dict]):
    """(cert name, JSON text): 1–3 field mutations of a genuine certificate, then maybe a
    text-level one (duplicate key, truncation, deep nesting)."""
    name = draw(st.sampled_from(sorted(docs)))
    doc = json.loads(json.dumps(docs[name]))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["value", "value", "delete", "wrap", "scale"]))
        old = _get(doc, path)
        if how == "value":
            # A copy: a later mutation may write inside it, which would change HOSTILE_VALUES
            # itself and make hypothesis's draws differ between replays (FlakyStrategy).
            new = copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))
        elif how == "delete":
            new = _DELETE
        elif how == "wrap":
            new = [old]
        else:
            new = old * draw(st.sampled_from([-1, 0, 0.5, 2, 1e300])) \
                if isinstance(old, (int, float)) and not isinstance(old, bool) else old
        try:
            _set(doc, path, new)
        except (KeyError, IndexError, TypeError):
            pass
    text = json.dumps(doc)
    extra = draw(st.sampled_from(["", "", "dup", "cut", "nest", "extra"]))
    if extra == "dup":  # a duplicate key: the first occurrence of a claim, repeated lower
        text = text.replace('"lipschitz": ', '"lipschitz": 0.0, "lipschitz": ', 1)
    elif extra == "cut":
        text = text[:draw(st.integers(0, len(text)))]
    elif extra == "nest":
        d = draw(st.sampled_from([100, 100_000]))
        text = text[:-1] + ', "deep": ' + "[" * d + "]" * d + "}"
    elif extra == "extra":
        text = text[:-1] + ', "zz_extra": {"lipschitz": 0}}'
    return name, text


def _get(doc, path):
    node = doc
    for k in path:
        node = node[k]
    return node


@pytest.fixture(scope="module")
def docs(seed_dir) -> dict[str, dict]:
    return {n: json.loads((seed_dir / f"{n}.json").read_text()) for n in CERTS}


@pytest.mark.parametrize("mode", MODES)
def test_certificate_fields(mode, seed_dir, docs, tmp_path):
    def prop(x):
        name, text = x
        cert = tmp_path / "cert.json"
        cert.write_text(text, encoding="utf-8", errors="surrogatepass")
        model = seed_dir / f"{name.split('_')[0]}.onnx"
        o = run_cli(["check", str(cert), str(model), "--quiet"])
        kind = contract_violation(o)
        if kind:
            return kind, o.exception or o.err[-800:]
        if o.code == 0 and _witness_beats(text, name):
            return "check accepted a false claim (field mutation)", text[:2000]
        _, lo = call(lambda: _load_or_error(cert))
        if lo.exception:
            return "load_certificate: " + lo.exception.split(":")[0], lo.exception
        return None, ""

    fuzz("cert_fields", mode, field_mutations(docs), prop, smoke=120)


def _witness_beats(text: str, name: str) -> bool:
    """Whether a witness beats a claim of the accepted document (False when the document is
    too broken for the witnesses to read: then nothing is decided)."""
    try:
        doc = json.loads(text)
        w = witnesses(NETS[name.split("_")[0]], doc, np.random.default_rng(0))
        return _beaten(doc, w) or ("smoothness" in w and
                                   w["smoothness"] > float(doc["smoothness"]) * (1 + 1e-6))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return False


def _load_or_error(path):
    try:
        bp.load_certificate(path)
    except bp.BoundpropError:
        pass


# --- tampering towards false claims ------------------------------------------------------------

def _sample_set(s: dict | None, n: int, rng) -> np.ndarray:
    """n points of the claimed input set (rows of length N_IN), corners and faces included."""
    if s is None:
        return rng.standard_normal((n, corpus.N_IN)) * 10.0
    if s["kind"] == "box":
        lo, hi = np.asarray(s["lower"], float).ravel(), np.asarray(s["upper"], float).ravel()
    elif s["kind"] == "linf":
        c = np.asarray(s["center"], float).ravel()
        lo, hi = c - s["eps"], c + s["eps"]
        if s.get("clip"):
            lo, hi = np.maximum(lo, s["clip"][0]), np.minimum(hi, s["clip"][1])
    else:
        c = np.asarray(s["center"], float).ravel()
        d = rng.standard_normal((n, c.size))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return c + d * s["radius"] * rng.uniform(0, 1, (n, 1)) ** (1 / c.size)
    u = rng.uniform(0, 1, (n, lo.size))
    u[: n // 4] = np.round(u[: n // 4])  # corners
    return lo + u * (hi - lo)


def _pnorm(v: np.ndarray, norm: str) -> np.ndarray:
    return np.linalg.norm(v, ord={"2": 2, "inf": np.inf, "1": 1}[norm], axis=-1)


def _jacobian(net: corpus.Tiny, x: np.ndarray) -> np.ndarray:
    w1, w2 = net.w1.astype(np.float32).astype(float), net.w2.astype(np.float32).astype(float)
    h = x @ w1 + net.b1.astype(np.float32).astype(float)
    d = (h > 0).astype(float) if net.act == "Relu" else 1 - np.tanh(h) ** 2
    return np.einsum("ih,nh,ho->noi", w1, d, w2)  # J[n] = W2ᵀ diag(act'(h_n)) W1ᵀ


def witnesses(net: corpus.Tiny, doc: dict, rng) -> dict[str, float]:
    """Values the true constants are at least (attained on samples of the claimed set)."""
    s = doc.get("input_set")
    x = _sample_set(s, 2000, rng)
    y = net.forward(x)
    norm = doc["norm"]
    pair = x[rng.integers(0, len(x), 2000)]
    step = rng.standard_normal(pair.shape) * 1e-3
    x2 = np.clip(pair + step, x.min(0), x.max(0)) if s is not None else pair + step
    dx = _pnorm(x2 - pair, norm)
    ok = dx > 1e-9
    q = _pnorm(net.forward(x2) - net.forward(pair), norm)[ok] / dx[ok]
    w = {"lipschitz": float(q.max()), "bound": float(np.abs(y).max()),
         "lower": y.min(0), "upper": y.max(0)}
    if norm == "2" and net.act == "Tanh":
        j1, j2 = _jacobian(net, pair[ok]), _jacobian(net, x2[ok])
        w["smoothness"] = float((np.linalg.norm(j1 - j2, ord=2, axis=(1, 2)) / dx[ok]).max())
    return w


TAMPERS = ["upper", "lower", "lipschitz", "lipschitz_all", "bound", "smoothness", "sha256",
           "widen", "norm"]


@st.composite
def tampers(draw, docs: dict[str, dict]):
    name = draw(st.sampled_from(sorted(docs)))
    return (name, draw(st.sampled_from(TAMPERS)), draw(st.integers(0, 2**32 - 1)),
            draw(st.sampled_from([1e-9, 1e-6, 1e-3, 0.1, 0.5, 1.0])))


def tamper(doc: dict, what: str, seed: int, t: float, net: corpus.Tiny) -> dict | None:
    """``doc`` with one claim made false (None when this tamper does not apply to it)."""
    rng = np.random.default_rng(seed)
    doc = json.loads(json.dumps(doc))
    if what == "sha256":
        h = doc["model"]["sha256"]
        doc["model"]["sha256"] = h[:-1] + ("0" if h[-1] != "0" else "1")
        return doc
    if what == "widen":
        s = doc.get("input_set")
        if not s or s["kind"] != "box":
            return None
        grow = 10.0 * (1 + t)
        s["lower"] = [v - grow for v in s["lower"]]
        s["upper"] = [v + grow for v in s["upper"]]
    elif what == "norm":
        doc["norm"] = {"2": "1", "inf": "1", "1": "inf"}[doc["norm"]]
    w = witnesses(net, doc, rng)
    if what in ("widen", "norm"):  # keep the claims; false only if a witness beats them
        return doc if _beaten(doc, w) else None
    if what in ("upper", "lower"):
        if doc.get("output_bounds") is None:
            return None
        i = int(rng.integers(0, corpus.N_OUT))
        sign = -1 if what == "upper" else 1
        doc["output_bounds"][what][i] = float(w[what][i] + sign * t * (1 + abs(w[what][i])))
        return doc
    if what == "smoothness" and "smoothness" not in w:
        return None
    key = "lipschitz" if what == "lipschitz_all" else what
    false = w[key] * (1 - t) if t < 1 else 0.0
    doc[key] = false
    if what == "lipschitz_all":  # every place the constant appears, consistently
        for k in ("lipschitz_product", "lipschitz_enclosure"):
            if doc.get(k) is not None:
                doc[k] = false
        doc["layers"][-1]["lipschitz"] = false
        vals = (doc.get("symbolic") or {}).get("values") or {}
        for k in ("Jenc", f"l_{doc['layers'][-1]['node']}"):
            if k in vals:
                vals[k] = false
    return doc


def _beaten(doc: dict, w: dict) -> bool:
    def num(v):
        return math.inf if v in ("inf", None) else float(v)

    ob = doc.get("output_bounds")
    if ob is not None and (np.any(w["upper"] > np.asarray(ob["upper"]) * (1 + 1e-9) + 1e-9) or
                           np.any(w["lower"] < np.asarray(ob["lower"]) * (1 + 1e-9) - 1e-9)):
        return True
    return w["lipschitz"] > num(doc["lipschitz"]) * (1 + 1e-6) or \
        w["bound"] > num(doc["bound"]) * (1 + 1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_tampered_certificate_is_rejected(mode, seed_dir, docs, tmp_path):
    nets = NETS

    def prop(x):
        name, what, seed, t = x
        act = name.split("_")[0]
        doc = tamper(docs[name], what, seed, t, nets[act])
        if doc is None:
            return "", ""
        cert = tmp_path / "cert.json"
        cert.write_text(json.dumps(doc))
        o = run_cli(["check", str(cert), str(seed_dir / f"{act}.onnx")])
        kind = contract_violation(o)
        if kind:
            return kind, o.exception or o.err[-800:]
        if o.code == 0:
            return f"check accepted a false claim ({what})", o.out[-800:]
        return None, ""

    fuzz("cert_tamper", mode, tampers(docs), prop, smoke=80)


def test_witnesses_hold_for_genuine_certificates(docs, seed_dir):
    """The oracle itself: genuine certificates pass `check` and are never beaten by the
    witnesses (otherwise the tamper target would test nothing, or blame the checker for the
    prover's bug, or the oracle is wrong)."""
    for name, doc in docs.items():
        o = run_cli(["check", str(seed_dir / f"{name}.json"),
                     str(seed_dir / f"{name.split('_')[0]}.onnx"), "--quiet"])
        assert o.code == 0, (name, o)
        w = witnesses(NETS[name.split("_")[0]], doc, np.random.default_rng(0))
        assert not _beaten(doc, w), name
        if "smoothness" in w:
            assert w["smoothness"] <= float(doc["smoothness"]), name
        assert w["lipschitz"] > 0
