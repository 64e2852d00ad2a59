"""Strict JSON for certificates: what ``json.loads`` lets through silently is an error here.

A key given twice in one object (the last would win), the bare tokens ``NaN``/``Infinity``,
numbers beyond float range (``1e999`` would become ∞), integers of thousands of digits and
nesting deep enough to exhaust the recursion limit each give one :class:`BoundpropError` line.
"""

from __future__ import annotations

import json
import math
from typing import Any

from boundprop.errors import BoundpropError


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a JSON object as a dict, refusing a key given twice (the last
    one would silently win, e.g. a lowered ``lipschitz`` after the genuine one)."""
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _CertificateSyntaxError(f"the key '{key[:40]}' appears twice in one object")
        doc[key] = value
    return doc


class _CertificateSyntaxError(ValueError):
    pass


def _reject_constant(token: str) -> Any:
    raise _CertificateSyntaxError(f"the bare token {token} is not a JSON number (write \"inf\" "
                                  "for an unbounded constant)")


def _finite_float(token: str) -> float:
    x = float(token)
    if not math.isfinite(x):
        raise _CertificateSyntaxError(f"the number {token[:30]} is too large for a float")
    return x


def _bounded_int(token: str) -> int:
    if len(token.lstrip("-")) > 309:  # beyond float range: no certificate number is
        raise _CertificateSyntaxError(f"an integer with {len(token)} digits is too large")
    return int(token)


MAX_DEPTH = 64  # a certificate nests about 5 deep; deeper data would strain every reader


def _too_deep(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """True if ``doc`` nests containers more than ``limit`` deep (iterative: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        x, depth = stack.pop()
        if depth > limit:
            return True
        children = x.values() if isinstance(x, dict) else x
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def loads_strict(text: str, where: str, hint: str) -> Any:
    """Parse certificate JSON strictly: no duplicate keys, no NaN/Infinity tokens, no number
    beyond float range; deep nesting or a huge integer is a one-line error too."""
    try:
        doc = json.loads(text, object_pairs_hook=_reject_duplicates,
                          parse_constant=_reject_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise BoundpropError(f"{where} is not JSON ({e.msg} at line {e.lineno}); "
                             f"{hint}") from None
    except _CertificateSyntaxError as e:
        raise BoundpropError(f"{where} is not a valid certificate: {e}; {hint}") \
            from None
    except RecursionError:
        raise BoundpropError(f"{where} is nested too deeply to be a certificate; "
                             f"{hint}") from None
    except ValueError as e:  # e.g. Python's limit on integer digits
        raise BoundpropError(f"{where} is not a valid certificate ({e}); {hint}") \
            from None
    if isinstance(doc, (dict, list)) and _too_deep(doc):
        raise BoundpropError(f"{where} nests objects or lists more than {MAX_DEPTH} deep; "
                             f"{hint}")
    return doc
