"""Which certificate fields the checker verifies: every field the schema defines, except the
cosmetic ones in :data:`UNVERIFIED_FIELDS`; keys the schema does not define are unverified."""

from __future__ import annotations

from typing import Any

from boundprop.certificate import schema

# Fields of a certificate the checker does not verify (cosmetic or informational). Paths:
# keys joined by ".", "[]" for the items of a list, "*" for any key of a map. ``check`` lists
# those present (and any key the schema does not define) in ``CheckResult.unverified``;
# ``boundprop report`` shows them as "not verified", never under the checker's verdict.
UNVERIFIED_FIELDS = frozenset({
    "model.path", "tool", "tool.name", "tool.version", "elapsed_s", "enclosure_note",
    "curvature_note", "lmi_note",
    "smoothness_reason", "layers[].smoothness_reason", "symbolic.meaning",
    "symbolic.meaning.*",
})


def _alternatives(sch: dict, root: dict) -> list[dict]:
    """``sch`` with its ``$ref`` resolved, and its ``oneOf``/``anyOf`` alternatives."""
    def resolve(x: dict) -> dict:
        while "$ref" in x:
            x = root["$defs"][x["$ref"].rsplit("/", 1)[-1]]
        return x
    sch = resolve(sch)
    return [sch] + [resolve(a) for key in ("oneOf", "anyOf") for a in sch.get(key, [])]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def schema_fields() -> set[str]:
    """Every field path the certificate schema defines (see ``UNVERIFIED_FIELDS``)."""
    root, out = schema(), set()

    def walk(sch: dict, path: str) -> None:
        for a in _alternatives(sch, root):
            for key, sub in a.get("properties", {}).items():
                out.add(_join(path, key))
                walk(sub, _join(path, key))
            if isinstance(a.get("additionalProperties"), dict):
                out.add(_join(path, "*"))
                walk(a["additionalProperties"], _join(path, "*"))
            if isinstance(a.get("items"), dict):
                walk(a["items"], f"{path}[]")
    walk(root, "")
    return out


def document_fields(doc: dict) -> set[str]:
    """Every field path present in the certificate ``doc``, named as in
    :func:`schema_fields` (a key the schema does not define keeps its own name)."""
    root, out = schema(), set()

    def walk(x: Any, sch: dict | None, path: str) -> None:
        alts = [] if sch is None else _alternatives(sch, root)
        if isinstance(x, dict):
            props = {k: v for a in alts for k, v in a.get("properties", {}).items()}
            extra = next((a["additionalProperties"] for a in alts
                          if isinstance(a.get("additionalProperties"), dict)), None)
            for key, value in x.items():
                sub = props.get(key, extra)
                p = _join(path, key if key in props or extra is None else "*")
                out.add(p)
                walk(value, sub, p)
        elif isinstance(x, list):
            items = next((a["items"] for a in alts if isinstance(a.get("items"), dict)), None)
            for e in x:
                if isinstance(e, (dict, list)):
                    walk(e, items, f"{path}[]")
    walk(doc, root, "")
    return out


def unverified_fields(doc: dict) -> list[str]:
    """The fields of ``doc`` no check item verifies: those of ``UNVERIFIED_FIELDS`` present
    and any the schema does not define (outermost only: ``tool``, not also ``tool.name``)."""
    known = schema_fields()
    found = {p for p in document_fields(doc) if p in UNVERIFIED_FIELDS or p not in known}
    return sorted(p for p in found
                  if not any(p.startswith(q + ".") or p.startswith(q + "[]") for q in found))
