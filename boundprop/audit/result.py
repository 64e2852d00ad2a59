"""The result of an audit: one row per audited quantity (certified value, empirical lower
bound, how it was found, tightness ratio), as text or JSON (schema ``boundprop.audit/1``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AuditRow:
    """One audited quantity: its certified value, the best empirical lower bound found, and how.

    ``certified``/``empirical``: floats (``inf`` allowed for certified), or None when the
    certificate does not state it / it was not audited. ``kind``: "constant", "upper",
    "lower", "width" or "crosscheck" (how the ratio is read)."""

    quantity: str
    certified: float | None
    empirical: float | None
    how: str
    kind: str = "constant"
    violated: bool = False
    node: str | None = None
    ort: float | None = None  # onnxruntime's value at the witness (output rows)
    reference: float | None = None  # midpoint of the observed range (output rows)

    @property
    def ratio(self) -> float | None:
        """certified / empirical (constants, widths); for output bounds the distances from the
        midpoint m of the observed range, (upper − m) / (max − m) and (m − lower) / (m − min);
        inf when the empirical value is 0, 1 when both are 0; None when not audited."""
        c, e = self.certified, self.empirical
        if c is None or e is None or not math.isfinite(c):
            return None
        if self.kind in ("upper", "lower"):
            m = self.reference if self.reference is not None else 0.0
            num, den = (c - m, e - m) if self.kind == "upper" else (m - c, m - e)
        else:
            num, den = c, e
        if den <= 0:
            return 1.0 if num == den else (math.inf if num > 0 else None)
        return num / den

    def to_json(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "node": self.node,
                "certified": _json_float(self.certified),
                "empirical": _json_float(self.empirical), "ratio": _json_float(self.ratio),
                "violated": self.violated, "how": self.how, "kind": self.kind,
                "ort": _json_float(self.ort)}


@dataclass
class AuditResult:
    """Every audited row of one certificate (``rows``), the violated ones (``violations``)."""

    rows: list[AuditRow]
    model: str
    certificate: str | None
    norm: str
    wrt: str
    local: bool
    samples: int
    steps: int
    seed: int
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[AuditRow]:
        return [r for r in self.rows if r.violated]

    @property
    def ok(self) -> bool:
        return not self.violations

    def row(self, quantity: str) -> AuditRow:
        for r in self.rows:
            if r.quantity == quantity:
                return r
        raise KeyError(quantity)

    def to_json(self) -> dict[str, Any]:
        return {"schema": "boundprop.audit/1", "model": self.model,
                "certificate": self.certificate, "norm": self.norm, "wrt": self.wrt,
                "local": self.local, "samples": self.samples, "steps": self.steps,
                "seed": self.seed, "elapsed_s": self.elapsed_s, "ok": self.ok,
                "violations": [r.quantity for r in self.violations], "notes": self.notes,
                "rows": [r.to_json() for r in self.rows]}

    def format(self) -> str:
        where = "global" if not self.local else "on the certificate's set"
        head = (f"{self.model}: audit of {self.certificate or 'certificate'} ({where}, norm "
                f"{self.norm}, w.r.t. the {'input' if self.wrt == 'input' else 'parameters'}; "
                f"{self.samples} samples, {self.steps} ascent steps, seed {self.seed}, "
                f"{self.elapsed_s:.2f} s)")
        qw = max([len(r.quantity) for r in self.rows] + [8])
        nw = min(max([len(r.node or "") for r in self.rows] + [4]), 20)
        lines = [head, f"{'quantity':<{qw}} {'node':<{nw}} {'certified':>12} {'empirical':>12} "
                       f"{'ratio':>9}  {'':<8} how"]
        for r in self.rows:
            status = "VIOLATED" if r.violated else ("" if r.empirical is not None else "-")
            how = r.how + (f"; onnxruntime {r.ort:.6g}" if r.ort is not None else "")
            lines.append(f"{r.quantity:<{qw}} {(r.node or '')[:nw]:<{nw}} {_fmt(r.certified):>12} "
                         f"{_fmt(r.empirical):>12} {_fmt_ratio(r.ratio):>9}  {status:<8} {how}")
        lines.extend(f"note: {n}" for n in self.notes)
        v = self.violations
        lines.append(f"{len(v)} violation{'s' if len(v) != 1 else ''}: "
                     + ", ".join(r.quantity for r in v) if v else
                     "no violation: every certified value is at least its empirical lower bound")
        return "\n".join(lines)


def _json_float(x: float | None) -> Any:
    """A float for JSON: ±inf as the strings "inf", "-inf"."""
    if x is None:
        return None
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else ("inf" if x == math.inf else f"{x:.3g}")
