"""Shared fixtures: the shipped models and the VNN-COMP 2021 networks (skipped if absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boundprop.sets import METADATA_KEY, default_input_set

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
VNNCOMP = ROOT.parent / "shared" / "vnncomp2021"


def shipped_models() -> list[Path]:
    return sorted(MODELS.rglob("*.onnx"))


def vnncomp_models() -> list[Path]:
    return sorted(VNNCOMP.rglob("*.onnx")) if VNNCOMP.is_dir() else []


def needs_vnncomp() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not VNNCOMP.is_dir(),
                              reason="../shared/vnncomp2021 is absent on this machine")


def random_inputs(net, n: int, seed: int = 0) -> np.ndarray:
    """n points of the model's default input set (standard normal points if it declares none),
    rounded to float32: what onnxruntime sees."""
    rng = np.random.default_rng(seed)
    if net.metadata.get(METADATA_KEY):
        x = default_input_set(net).sample(n, rng)
    else:
        x = rng.standard_normal((n, *net.input_shape))
    return x.astype(np.float32).astype(np.float64)


def model_id(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p.relative_to(VNNCOMP.parent))
