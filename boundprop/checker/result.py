"""What a check produces: its items (each says how it was verified), the verdict, and the
prover functions the ``recomputed`` items trusted; the state the items of one check share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boundprop.checker.recomputed import Prover


class CertificateInvalid(Exception):  # noqa: N818 - "invalid" is the verdict's name
    """The certificate does not hold for the model; ``result`` has every checked item."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.reason)
        self.result = result


@dataclass
class CheckItem:
    """One verified claim. ``how``: ``independent`` (the checker kernel's own argument),
    ``exact`` (rational arithmetic on verified values) or ``recomputed`` (the prover's code,
    listed in :attr:`CheckResult.trusted`, re-run on the certificate's inputs)."""

    name: str
    ok: bool
    how: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"item": self.name, "ok": self.ok, "how": self.how, "detail": self.detail}


@dataclass
class CheckResult:
    """Outcome of a check: truthy iff valid. ``reason`` names the first failing item;
    ``unverified``: fields no item checks; ``trusted``: the prover functions the check called
    (see :mod:`boundprop.checker.recomputed`)."""

    certificate: str
    model: str
    items: list[CheckItem] = field(default_factory=list)
    elapsed_s: float = 0.0
    prover_elapsed_s: float | None = None
    unverified: list[str] = field(default_factory=list)
    trusted: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def reason(self) -> str | None:
        bad = next((i for i in self.items if not i.ok), None)
        return None if bad is None else f"{bad.name}: {bad.detail}"

    def __bool__(self) -> bool:
        return self.valid

    def counts(self) -> dict[str, int]:
        """How many items were verified each way."""
        counts: dict[str, int] = {}
        for i in self.items:
            counts[i.how] = counts.get(i.how, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "reason": self.reason, "certificate": self.certificate,
                "model": self.model, "checked": self.counts(), "elapsed_s": self.elapsed_s,
                "prover_elapsed_s": self.prover_elapsed_s, "unverified": self.unverified,
                "trusted": self.trusted, "items": [i.to_json() for i in self.items]}


class Failed(Exception):
    """An item failed: the check stops there."""


class Recorder:
    """Appends each item to the result; stops the check (raises :class:`Failed`) at the first
    that fails."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result

    def item(self, name: str, ok: bool, how: str, detail: str = "") -> None:
        self.result.items.append(CheckItem(name, bool(ok), how, detail))
        if not ok:
            raise Failed


@dataclass
class State:
    """What the items of one check share: the certificate document, the prover's functions
    (``prover``), the model, the input set, the re-derived enclosures and the claimed named
    constants (name → exact value) with the names already verified; per node, its constants'
    symbols and the rules' expressions; the exact upper ends of the layer formulas."""

    doc: dict
    prover: Prover
    net: Any = None
    s: Any = None
    boxes: list | None = None
    claimed: dict[str, Any] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)
    syms: list = field(default_factory=list)
    rules_local: list = field(default_factory=list)
    rules_op: list = field(default_factory=list)
    layer_hi: list = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    lmi: Any = None  # the verified LipSDP-Neuron bound (compositions.check_lmi), if any
    _enclosure: tuple | None = None
    _curvature: tuple | None = None

    def enclosure(self) -> tuple[float | None, str | None]:
        """The Jacobian enclosure's norm re-derived by the prover's code (computed once)."""
        if self._enclosure is None:
            self._enclosure = self.prover.jacobian_enclosure_norm(self.net, self.boxes,
                                                                  self.doc["norm"])
        return self._enclosure

    def curvature(self) -> tuple[float | None, str | None]:
        """The curvature method's bound on L re-derived by the prover's code (computed once)."""
        if self._curvature is None:
            self._curvature = self.prover.curvature_smoothness(self.net, self.boxes,
                                                               self.doc["norm"])
        return self._curvature
