"""The certificate file: the :class:`Certificate` dataclass, its JSON form (writing, strict
reading, validation against the shipped JSON Schema) and the schema itself.

One place for the certificate format: :mod:`boundprop.certify` builds certificates,
:mod:`boundprop.checker` re-verifies them, ``boundprop audit``/``report`` read them; all go
through this module. Schema validation is the checker kernel's
(:func:`boundprop.checker.kernel.schema_errors`, prover-independent code)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

from boundprop import __version__
from boundprop.checker.kernel import schema_errors as _validate
from boundprop.constants import Constants, LayerConstants, ObjectiveConstants
from boundprop.errors import BoundpropError
from boundprop.exact import parse
from boundprop.safe_io import json_safe, json_text, read_input_text, write_atomic
from boundprop.sets import InputSet, input_set_from_json
from boundprop.strict_json import loads_strict

SCHEMA = "boundprop.certificate/1"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "certificate-1.schema.json"


def schema() -> dict:
    """The certificate's JSON Schema (shipped with the package)."""
    return json.loads(SCHEMA_PATH.read_text())


def schema_errors(doc: dict) -> list[str]:
    """Every violation of the certificate schema by ``doc``, one line each."""
    return _validate(doc, schema())


@dataclass
class Certificate:
    """Certified facts about one model on one input set, in one norm.

    ``output_lower``/``output_upper``: every output on the set lies between them (None for
    global constants without a set); ``lipschitz``, ``smoothness``, ``bound``: ℓ, L, B of the
    output (w.r.t. the input, or the parameters with ``wrt="params"``); ``layers``: the same per
    IR node; ``constants``: the full :class:`boundprop.constants.Constants` (formulas, both ℓ
    methods); ``objective``: loss constants and the certified step size, when a loss is given."""

    model: dict[str, Any]
    input_set: InputSet | None
    norm: str
    wrt: str
    method: str
    output_lower: np.ndarray | None
    output_upper: np.ndarray | None
    constants: Constants = field(repr=False)
    objective: ObjectiveConstants | None = None
    free: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    execution: str = "real"

    @property
    def lipschitz(self) -> float:
        return self.constants.lipschitz

    @property
    def smoothness(self) -> float:
        return self.constants.smoothness

    @property
    def bound(self) -> float:
        return self.constants.bound

    @property
    def layers(self):
        return self.constants.layers

    def formula(self, which: str = "lipschitz"):
        return self.constants.formula(which, self.free)

    def to_json(self) -> dict[str, Any]:
        c = self.constants
        symbolic: dict[str, Any] = {}
        for which in ("lipschitz", "smoothness", "bound"):
            if getattr(c, f"{which}_formula") is not None:
                symbolic[which] = str(getattr(c, f"{which}_formula"))
                if self.free:
                    symbolic[f"{which}_free"] = str(self.formula(which))
        symbolic["values"] = {str(k): v for k, v in c.values.items()}
        symbolic["meaning"] = {str(k): v for k, v in c.meaning.items()}
        doc = {
            "schema": SCHEMA,
            "model": self.model,
            "input_set": None if self.input_set is None else self.input_set.to_json(),
            "norm": self.norm, "wrt": self.wrt, "local": c.local,
            "param_radius": c.param_radius,
            "output_bounds": None if self.output_lower is None else {
                "lower": self.output_lower.reshape(-1).tolist(),
                "upper": self.output_upper.reshape(-1).tolist()},
            "lipschitz": c.lipschitz,
            "lipschitz_product": c.lipschitz_product,
            "lipschitz_enclosure": c.lipschitz_enclosure,
            "enclosure_note": c.enclosure_note,
            "lipschitz_lmi": c.lipschitz_lmi,
            "lmi_multipliers": None if c.lmi_multipliers is None else
            [np.asarray(t, dtype=np.float64).tolist() for t in c.lmi_multipliers],
            "lmi_note": c.lmi_note,
            "smoothness": c.smoothness,
            "smoothness_reason": c.smoothness_reason,
            "smoothness_curvature": c.smoothness_curvature,
            "curvature_note": c.curvature_note,
            "bound": c.bound,
            "objective": None if self.objective is None else self.objective.to_json(),
            "layers": [lc.to_json() for lc in c.layers],
            "symbolic": symbolic,
            "free": list(self.free),
            "method": self.method,
            "execution": self.execution,
            "tool": {"name": "boundprop", "version": __version__},
            "elapsed_s": self.elapsed_s,
        }
        # JSON has no infinity: ±inf is written "inf" / "-inf" (an output bound that overflows
        # float64, a constant with no finite bound); a NaN is a one-line error, never written.
        return json_safe(doc)

    def save(self, path: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()) -> None:
        """Write the certificate as strict JSON atomically (a temporary file renamed into
        place), never onto the model it is about nor one of ``protect`` (other inputs), nor
        onto a device, FIFO or folder: see :func:`boundprop.safe_io.write_atomic`."""
        text = json_text(self.to_json(), indent=1)
        model = self.model.get("path") if isinstance(self.model, dict) else None
        own = [model] if isinstance(model, str) and model else []
        write_atomic(path, text, "certificate", [*own, *protect])

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Certificate:
        """The certificate a JSON document describes (validated against the schema). Its
        numbers are what the document claims: ``bp.check`` says whether they hold."""
        errs = schema_errors(doc) if isinstance(doc, dict) else ["not a JSON object"]
        if errs:
            raise BoundpropError(f"not a valid boundprop certificate: {errs[0]}")

        def num(x):
            return None if x is None else float(x)

        layers = [LayerConstants(k, lc["node"], lc["op"], lc.get("family", ""),
                                 num(lc["lipschitz"]), num(lc["smoothness"]), num(lc["bound"]),
                                 num(lc.get("op_lipschitz")), num(lc.get("op_smoothness")),
                                 num(lc.get("interval_width")), lc.get("smoothness_reason"),
                                 dict(lc.get("symbolic") or {}))
                  for k, lc in enumerate(doc["layers"])]
        sym = doc.get("symbolic") or {}
        values = {sp.Symbol(k, nonnegative=True): float(v)
                  for k, v in (sym.get("values") or {}).items()}
        meaning = {sp.Symbol(k, nonnegative=True): v
                   for k, v in (sym.get("meaning") or {}).items()}
        formulas = {w: parse(sym[w]) if w in sym else None
                    for w in ("lipschitz", "smoothness", "bound")}
        m = doc["model"]
        s = None if doc["input_set"] is None else input_set_from_json(
            doc["input_set"], tuple(m["input_shape"]))
        ob = doc["output_bounds"]
        try:
            out_shape = tuple(int(d) for d in m["output_shape"])
            lower, upper = (None if ob is None else
                            np.asarray(ob[k], dtype=np.float64).reshape(out_shape)
                            for k in ("lower", "upper"))
        except (ValueError, TypeError, OverflowError):
            raise BoundpropError(f"not a valid boundprop certificate: output_bounds do not "
                                 f"fit model.output_shape {m['output_shape']}") from None
        c = Constants(norm=doc["norm"], local=bool(doc.get("local", s is not None)),
                      lipschitz=float(doc["lipschitz"]),
                      lipschitz_product=float(doc.get("lipschitz_product", doc["lipschitz"])),
                      lipschitz_enclosure=num(doc.get("lipschitz_enclosure")),
                      enclosure_note=doc.get("enclosure_note"),
                      smoothness=float(doc["smoothness"]),
                      smoothness_reason=doc.get("smoothness_reason"), bound=float(doc["bound"]),
                      smoothness_curvature=num(doc.get("smoothness_curvature")),
                      curvature_note=doc.get("curvature_note"),
                      layers=layers, values=values, meaning=meaning,
                      latex_names={k: str(k) for k in values},
                      lipschitz_formula=formulas["lipschitz"],
                      smoothness_formula=formulas["smoothness"],
                      bound_formula=formulas["bound"], wrt=doc["wrt"],
                      param_radius=doc.get("param_radius"),
                      output_box=None if lower is None else (lower, upper),
                      lipschitz_lmi=num(doc.get("lipschitz_lmi")),
                      lmi_multipliers=None if doc.get("lmi_multipliers") is None else
                      [np.asarray(t, dtype=np.float64) for t in doc["lmi_multipliers"]],
                      lmi_note=doc.get("lmi_note"))
        objective = None
        if doc.get("objective"):
            o = doc["objective"]
            objective = ObjectiveConstants(
                o["loss"], o["reduction"], float(o["loss_lipschitz"]),
                float(o["loss_smoothness"]), float(o["lipschitz"]), float(o["smoothness"]),
                None if o.get("targets") is None else np.asarray(o["targets"]))
        return cls(dict(m), s, doc["norm"], doc["wrt"], doc["method"], lower, upper, c,
                   objective, tuple(doc.get("free") or ()), float(doc["elapsed_s"]),
                   doc.get("execution", "real"))


CERTIFY_HINT = "give the JSON written by 'boundprop certify MODEL -o CERT.json'"


def read_certificate_json(cert: str | os.PathLike | dict | Certificate) -> dict[str, Any]:
    """The certificate document from a path, a parsed dict or a Certificate, with one-line
    errors (unreadable or non-regular file, not JSON, duplicate keys, NaN/Infinity, numbers
    beyond float range, nesting too deep, not an object, no boundprop schema). A dict is
    re-serialised and parsed the same way (a private copy). Only its outer shape is checked
    here: ``bp.check`` validates the schema and the claims."""
    if isinstance(cert, Certificate):
        cert = cert.to_json()
    if isinstance(cert, dict):
        where = "certificate"
        try:
            text = json.dumps(cert, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as e:
            msg = "nested too deeply" if isinstance(e, RecursionError) else \
                " ".join(str(e).split())[:120]
            raise BoundpropError(f"{where} is not valid JSON data ({msg}); {CERTIFY_HINT}") \
                from None
    else:
        where = f"certificate {os.fspath(cert)}"
        text = read_input_text(cert, "certificate", hint=CERTIFY_HINT)
    doc = loads_strict(text, where, CERTIFY_HINT)
    if not isinstance(doc, dict):
        raise BoundpropError(f"{where} is not a boundprop certificate (a "
                             f"{type(doc).__name__}, not a JSON object); {CERTIFY_HINT}")
    tag = doc.get("schema")
    if not isinstance(tag, str) or not tag.startswith("boundprop.certificate/"):
        raise BoundpropError(f"{where} is not a valid boundprop certificate (schema "
                             f"{tag!r}, expected '{SCHEMA}'); {CERTIFY_HINT}")
    return doc


def load_certificate(path: str | os.PathLike) -> Certificate:
    """Read a certificate written by :meth:`Certificate.save` (one-line error if it is not
    one). Loading does not check it: use ``bp.check(path, model)``."""
    return Certificate.from_json(read_certificate_json(path))
