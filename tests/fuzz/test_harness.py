"""The harness's own oracles can fail: an internal error, a traceback, a multi-line error, an
escaping exception and a hang are each reported; a clean run is not."""

from __future__ import annotations

import time

from tests.fuzz.harness import Campaign, Outcome, call, contract_violation


def test_contract_violations_are_detected():
    assert contract_violation(Outcome(0)) is None
    assert contract_violation(Outcome(2, err="boundprop: error: bad\n")) is None
    assert contract_violation(Outcome(2, err="usage: boundprop ...\nboundprop: error: x\n")) \
        is None
    assert contract_violation(Outcome(3, err="boundprop: internal error: ValueError: x\n")) \
        == "exit 3 ValueError"
    assert contract_violation(Outcome(1, err="Traceback (most recent call last):\n  ...")) \
        == "traceback on stderr"
    assert contract_violation(Outcome(2, err="boundprop: error: a\nsecond line\n")) \
        == "error not one line"
    assert contract_violation(Outcome(None, exception="KeyError: 'x'")) == "escaped KeyError"


def test_hang_and_escape_are_caught():
    _, o = call(lambda: time.sleep(5), seconds=0.2)
    assert o.exception and o.exception.startswith("Hang")
    _, o = call(lambda: {}["x"])
    assert o.exception and o.exception.startswith("KeyError")
    value, o = call(lambda: 7)
    assert value == 7 and o.exception is None


def test_campaign_keeps_the_smallest_input_per_kind():
    c = Campaign("t")
    c.record(None, "ok")
    c.record("", "n/a")
    c.record("exit 3 X", "a long input")
    c.record("exit 3 X", "short")
    assert (c.runs, c.skipped, c.failures, c.examples["exit 3 X"]) == \
        (4, 1, {"exit 3 X": 2}, "short")
