"""``audit(cert, model)``: read the certificate, check it names this model, run the searches,
and return every row."""

from __future__ import annotations

import os
import sys
import time

from boundprop.audit.result import AuditResult
from boundprop.audit.rows import audit_rows
from boundprop.audit.searches import Auditor
from boundprop.certificate import read_certificate_json
from boundprop.errors import BoundpropError
from boundprop.importer import load, model_digest
from boundprop.safe_io import check_input_file

DEFAULT_SAMPLES = 2000
DEFAULT_STEPS = 20


def audit(cert, model, *, samples: int = DEFAULT_SAMPLES, steps: int = DEFAULT_STEPS,
          seed: int = 0, progress: bool = False) -> AuditResult:
    """Empirical lower bounds of every quantity the certificate ``cert`` (a path, the JSON
    dict, or a :class:`boundprop.Certificate`) states about the ONNX ``model`` (a path).

    Raises BoundpropError for unreadable input or a certificate issued for another model."""
    t0 = time.perf_counter()
    doc, where = read_audited_certificate(cert)
    path = os.fspath(model)
    net = _load_certified_model(doc, where, path)
    bar = _progress_bar() if progress else None
    try:
        auditor = Auditor(doc, net, path, samples, steps, seed, bar)
        auditor.search()
        rows = audit_rows(auditor)
    finally:
        if bar is not None:
            bar.close()
    return AuditResult(rows, path, where, auditor.p, auditor.wrt, doc.get("input_set") is not None,
                       int(samples), int(steps), int(seed), time.perf_counter() - t0,
                       auditor.notes)


def read_audited_certificate(cert) -> tuple[dict, str | None]:
    """(the certificate document, its path or None when given as data); a one-line error
    when it lacks what an audit reads (``model.sha256``, ``layers``)."""
    doc = read_certificate_json(cert)
    where = None if isinstance(cert, dict) or hasattr(cert, "to_json") else os.fspath(cert)
    label = where or "certificate"
    model = doc.get("model")
    if not isinstance(model, dict) or "sha256" not in model or "layers" not in doc:
        raise BoundpropError(f"{label}: certificate lacks 'model.sha256' or 'layers'; it is "
                             "truncated or not from boundprop certify")
    return doc, where


def _load_certified_model(doc: dict, where: str | None, path: str):
    """The IR of the model at ``path``, after checking that its digest is the certificate's
    and that it has as many IR nodes as the certificate has layer entries."""
    # A FIFO or /dev/zero given as the model would hang the hash below: regular files only.
    check_input_file(path, "model", 2**62, "give the ONNX file the certificate was issued "
                     f"for ({doc['model'].get('path', '?')})")
    try:
        digest = model_digest(path)  # the certificate's hash: external data files included
    except FileNotFoundError:
        raise BoundpropError(f"model {path}: no such file; give the ONNX file the certificate "
                             f"was issued for ({doc['model'].get('path', '?')})") from None
    except OSError as e:
        raise BoundpropError(f"model {path}: cannot read it ({e.strerror})") from None
    if digest != doc["model"]["sha256"]:
        raise BoundpropError(
            f"{where or 'certificate'} was issued for another model (sha256 "
            f"{str(doc['model']['sha256'])[:12]}…, {doc['model'].get('path', '?')}) but {path} "
            f"has sha256 {digest[:12]}…; audit it against the model it names")
    m = doc["model"]
    shape = tuple(m["input_shape"]) if m.get("input_shape") else None
    net = load(path, input_shape=shape, input_name=m.get("input"),
               output_name=m.get("output"))
    if len(doc["layers"]) != len(net.nodes):
        raise BoundpropError(f"{where or 'certificate'}: {len(doc['layers'])} layer entries but "
                             f"the model has {len(net.nodes)} IR nodes; the certificate was "
                             "made by another boundprop version: certify again")
    return net


def _progress_bar():
    """A tqdm bar on stderr when it is a terminal (and tqdm is installed), else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm  # lazy: tqdm is optional and only needed for a terminal

        return tqdm(total=1, desc="audit", file=sys.stderr, leave=False)
    except ImportError:
        return None
