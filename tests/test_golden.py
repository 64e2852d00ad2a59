"""Behaviour unchanged on the shipped models: every bound, constant, formula and certificate
recomputed and compared, bit for bit, with the values recorded in tests/golden/values.json
(``python -m tests.golden.golden record`` rewrites them; do that only for an intended change,
and say why in the commit)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HEAVY_ENTRIES, activation_entries
from tests.golden.golden import ROOT, VALUES, model_values

RECORDED = json.loads(VALUES.read_text())


@pytest.mark.parametrize("model", [
    pytest.param(m, marks=[pytest.mark.slow] if activation_entries(ROOT / m) > HEAVY_ENTRIES
                 else []) for m in sorted(RECORDED)])
def test_shipped_model_values_unchanged(model):
    now = model_values(ROOT / model)
    then = RECORDED[model]
    changed = {k: (then.get(k), now.get(k)) for k in set(then) | set(now)
               if then.get(k) != now.get(k)}
    assert not changed, f"{model}: values changed: {changed}"
