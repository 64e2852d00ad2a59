"""Fixtures of the fuzzing harness: the memory budget, tiny models and genuine certificates
(session-wide: built once, copied per input when an input may modify them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fuzz import corpus
from tests.fuzz.harness import MEMORY_LIMIT_BYTES


@pytest.fixture(scope="session", autouse=True)
def _memory_budget():
    """Every in-process run sees the 2 GB model-memory budget (BOUNDPROP_MAX_MEMORY_BYTES)."""
    old = os.environ.get("BOUNDPROP_MAX_MEMORY_BYTES")
    os.environ["BOUNDPROP_MAX_MEMORY_BYTES"] = str(MEMORY_LIMIT_BYTES)
    yield
    if old is None:
        os.environ.pop("BOUNDPROP_MAX_MEMORY_BYTES", None)
    else:
        os.environ["BOUNDPROP_MAX_MEMORY_BYTES"] = old


@pytest.fixture(scope="session")
def seed_dir(tmp_path_factory) -> Path:
    """A folder with the tiny models (relu.onnx, tanh.onnx) and genuine certificates
    (relu_<set>_<norm>.json) made by bp.certify."""
    d = tmp_path_factory.mktemp("fuzz_seed")
    for act in ("Relu", "Tanh"):
        corpus.save_model(corpus.tiny(0, act).proto(), d / f"{act.lower()}.onnx")
    for act in ("relu", "tanh"):
        for kind, norm in (("box", "2"), ("linf", "inf"), ("l2", "1"), ("global", "2")):
            doc = corpus.genuine_certificate(d / f"{act}.onnx", kind, norm)
            (d / f"{act}_{kind}_{norm}.json").write_text(json.dumps(doc))
    return d
