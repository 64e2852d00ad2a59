"""The verdicts a report shows: the independent checker's (run on the model) and an audit
file's."""

from __future__ import annotations

import json
import os
import tempfile

from boundprop.errors import BoundpropError
from boundprop.report.data import audit_rows


def run_checker(cert: str | os.PathLike | dict, model_path: str) -> dict:
    """Run the independent checker; a dict {status: valid|invalid|error|unavailable, reason}.
    Never raises for the checker's own failures: they become the verdict."""
    try:
        # Imported at the call, deliberately: the report works without the checker, and a
        # missing or broken one is the verdict "unavailable", not an import error.
        from boundprop.checker import check
    except Exception:  # ImportError, or a half-written checker module
        return {"status": "unavailable", "reason": "checker unavailable"}
    tmp = None
    try:
        if isinstance(cert, dict):
            fd, tmp = tempfile.mkstemp(prefix=".boundprop-cert-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(cert, f)
            path = tmp
        else:
            path = os.fspath(cert)
        result = check(path, model_path)
    except Exception as e:
        rejected = getattr(e, "result", None)  # the checker's "invalid" exception carries it
        if rejected is not None and not getattr(rejected, "valid", True):
            reason = getattr(rejected, "reason", None) or str(e)
            return {"status": "invalid", "reason": " ".join(str(reason).split())}
        kind = "" if isinstance(e, BoundpropError) else f"{type(e).__name__}: "
        return {"status": "error", "reason": f"{kind}{' '.join(str(e).split())}"}
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    valid = result if isinstance(result, bool) else getattr(result, "valid", result)
    reason = "" if isinstance(result, bool) else getattr(result, "reason", "") or ""
    out = {"status": "valid" if valid else "invalid", "reason": " ".join(str(reason).split())}
    items = getattr(result, "items", None)
    if valid and isinstance(items, list) and not out["reason"]:
        out["reason"] = f"{len(items)} items re-verified"
    unverified = getattr(result, "unverified", None)
    if isinstance(unverified, list) and unverified:
        out["unverified"] = [str(u) for u in unverified]  # fields no check item covers
    return out


def verdict_lines(check: dict | None, audit: dict | None) -> list[tuple[str, str]]:
    """(label, verdict) lines of the checker's result and of the audit file."""
    out = []
    if check is not None:
        status = check.get("status", "?")
        text = {"valid": "VALID", "invalid": "INVALID", "error": "NOT CHECKED (error)",
                "unavailable": "checker unavailable"}.get(status, status)
        if check.get("reason") and status != "unavailable":
            text += f" ({check['reason']})" if status == "valid" else f": {check['reason']}"
        out.append(("independent checker", text))
        if check.get("unverified"):
            out.append(("not verified by the checker", ", ".join(check["unverified"])))
    if audit is not None:
        rows, violated = audit_rows(audit)
        if rows or audit.get("violations") is not None:
            text = (f"{violated} violation(s): a certified constant is below an empirical "
                    "lower bound" if violated else f"no violations in {len(rows)} quantities")
        else:
            text = "no rows in the audit file"
        out.append(("audit", text))
    return out


def is_negative(check: dict | None, audit: dict | None) -> bool:
    """The checker rejected the certificate (or could not run) or the audit found a
    violation: the report command then exits 1."""
    if check is not None and check.get("status") in ("invalid", "error"):
        return True
    return audit is not None and audit_rows(audit)[1] > 0
