"""Shared fixtures: the shipped models and the VNN-COMP 2021 networks (skipped if absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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
    """n points of the model's default input set (box [lo, hi] or around its centre), or
    standard normal points if it declares none; rounded to float32 (what onnxruntime sees)."""
    rng = np.random.default_rng(seed)
    shape = (n, *net.input_shape)
    spec = net.metadata.get("boundprop.input_set")
    if spec:
        s = json.loads(spec)
        if s["kind"] == "box":
            lo = np.broadcast_to(np.reshape(s["lower"], -1) if np.ndim(s["lower"]) else
                                 s["lower"], shape[1:]) if np.ndim(s["lower"]) == 0 else \
                np.reshape(s["lower"], shape[1:])
            hi = np.broadcast_to(s["upper"], shape[1:]) if np.ndim(s["upper"]) == 0 else \
                np.reshape(s["upper"], shape[1:])
            x = lo + (hi - lo) * rng.random(shape)
        else:
            c = np.broadcast_to(np.asarray(s["center"], dtype=float).reshape(-1)
                                if np.ndim(s["center"]) else s["center"], (int(np.prod(shape[1:])),))
            r = s.get("eps", s.get("radius", 0.1))
            x = c.reshape(shape[1:]) + r * (2 * rng.random(shape) - 1)
    else:
        x = rng.standard_normal(shape)
    return x.astype(np.float32).astype(np.float64)


def model_id(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p.relative_to(VNNCOMP.parent))
