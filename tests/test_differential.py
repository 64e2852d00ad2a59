"""The IR computes what onnxruntime computes, on every shipped model and real network.

Tolerance: the IR evaluates in float64 and onnxruntime these float32 models in float32; the
float32 result carries a relative rounding error of order sqrt(n)·2⁻²⁴ ≈ 6e-8·sqrt(n) per
accumulation of n terms, compounded over a few layers (measured: ≤ 6.3e-6 on the 6×200 sigmoid
net). We require max|ir − ort| ≤ 1e-5 · max|ort| (relative to the output scale, as elementwise
relative error is meaningless for outputs near 0).
"""

from __future__ import annotations

import numpy as np
import pytest

import boundprop as bp
from boundprop.runtime import OrtModel
from tests.conftest import model_id, random_inputs, shipped_models, vnncomp_models

RTOL = 1e-5


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-30))


def check_matches_ort(path, n: int = 8) -> float:
    net = bp.load(path)
    ort_model = OrtModel(path, net.input_name, net.output_name)
    x = random_inputs(net, n)
    ours = net(x)
    ref = ort_model(x)
    assert ours.shape == ref.shape
    err = relative_error(ours, ref)
    assert err <= RTOL, f"{path}: IR vs onnxruntime relative error {err:.3g}"
    return err


@pytest.mark.parametrize("path", shipped_models(), ids=model_id)
def test_shipped_model_matches_onnxruntime(path):
    check_matches_ort(path)


@pytest.mark.parametrize("path", vnncomp_models(), ids=model_id)
def test_vnncomp_network_matches_onnxruntime(path):
    check_matches_ort(path)


def test_single_input_and_stack_agree():
    path = shipped_models()[0]
    net = bp.load(path)
    x = random_inputs(net, 3)
    stacked = net(x)
    for i in range(3):
        np.testing.assert_array_equal(net(x[i]), stacked[i])
