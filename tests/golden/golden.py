"""Bit-identical behaviour of the shipped models, recorded before a refactoring.

``python -m tests.golden.golden record`` writes ``values.json`` from the current code; the test
(tests/test_golden.py) recomputes every entry and compares digests of the float64 bytes, so any
change of any bound, constant, formula or certificate field on a shipped model shows.
Recorded per model: output bounds (interval and linear, real and float32 execution; every
layer's enclosure), certified ℓ/L/B (ℓ2 and ℓ∞, global and local), the certificate JSON of
``certify`` (volatile fields removed) and of ``certify(wrt="params")`` where it applies.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.errors import BoundpropError
from boundprop.sets import default_input_set

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VALUES = HERE / "values.json"
VOLATILE = {"elapsed_s", "created", "seconds", "time_s", "boundprop_version", "path"}


def digest(a) -> str:
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()[:24]


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _json_digest(doc) -> str:
    return hashlib.sha256(json.dumps(_strip(doc), sort_keys=True).encode()).hexdigest()[:24]


def _attempt(out: dict, key: str, fn) -> None:
    try:
        out[key] = fn()
    except BoundpropError as e:
        out[key] = f"error: {type(e).__name__}"


def model_values(path: Path) -> dict:
    net = bp.load(path)
    s = default_input_set(net)
    out: dict = {}
    for method in ("interval", "linear"):
        for execution in ("real", "float32"):
            def bounds(method=method, execution=execution):
                b = bp.output_bounds(net, s, method=method, execution=execution)
                return [digest(b.lower), digest(b.upper),
                        digest(np.concatenate([np.concatenate([lo.ravel(), hi.ravel()])
                                               for lo, hi in b.layers]))]
            _attempt(out, f"bounds/{method}/{execution}", bounds)
    for norm in ("2", "inf"):
        for local in (False, True):
            def consts(norm=norm, local=local):
                c = bp.constants(net, s if local else None, norm=norm)
                return [c.lipschitz, c.lipschitz_product, c.lipschitz_enclosure,
                        c.smoothness, c.bound, str(c.lipschitz_formula),
                        str(c.smoothness_formula), str(c.bound_formula),
                        _json_digest([layer.to_json() for layer in c.layers]),
                        _json_digest({str(k): v for k, v in c.values.items()})]
            _attempt(out, f"constants/{norm}/{'local' if local else 'global'}", consts)
    _attempt(out, "certificate", lambda: _json_digest(bp.certify(net, s).to_json()))
    _attempt(out, "certificate/params", lambda: _json_digest(
        bp.certify(net, s, wrt="params", param_radius=1e-3).to_json()))
    return out


def models() -> list[Path]:
    return sorted((ROOT / "models").rglob("*.onnx"))


def record() -> None:
    values = {str(p.relative_to(ROOT)): model_values(p) for p in models()}
    VALUES.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python -m tests.golden.golden record")
    record()
