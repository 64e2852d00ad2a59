"""Shared fixtures: the shipped models and the VNN-COMP 2021 networks (skipped if absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from boundprop.sets import METADATA_KEY, default_input_set

# CI runs the same examples every time: a submission lands or fails on its code, not on a draw.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

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


def gemm_onnx(path: Path, weight: np.ndarray) -> Path:
    """A one-node ONNX model y = x·Wᵀ (x of shape [1, in], W = ``weight`` of shape [out, in],
    float32), saved at ``path``: the smallest real model a test can give the CLI."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_out, n_in = weight.shape
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
        [numpy_helper.from_array(weight.astype(np.float32), "W")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# Models whose full CROWN analysis (every unstable neuron of every convolution back-substituted)
# takes seconds to tens of seconds: their whole-model checks run with ``-m slow``.
HEAVY_ENTRIES = 30_000


def activation_entries(path: Path) -> int:
    import boundprop as bp  # deferred: collection-time only, and boundprop loads lazily

    return sum(int(np.prod(n.shape)) for n in bp.load(path).nodes)


def by_cost(paths: list[Path]) -> list:
    """pytest params of ``paths``, those over HEAVY_ENTRIES activation entries marked slow."""
    return [pytest.param(p, id=model_id(p), marks=[pytest.mark.slow]
                         if activation_entries(p) > HEAVY_ENTRIES else [])
            for p in paths]
