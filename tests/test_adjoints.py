"""Every affine primitive's adjoint is the transpose of its linear map: ⟨A x, λ⟩ = ⟨x, Aᵀλ⟩
(back-substitution relies on it), on every affine node of every shipped and real model."""

from __future__ import annotations

import numpy as np
import pytest

import boundprop as bp
from boundprop.ops.base import AffinePrimitive
from tests.conftest import model_id, shipped_models, vnncomp_models


@pytest.mark.parametrize("path", shipped_models() + vnncomp_models(), ids=model_id)
def test_adjoint_is_transpose(path):
    net = bp.load(path)
    rng = np.random.default_rng(0)
    checked = 0
    for node in net.nodes[1:]:
        op = node.op
        if not isinstance(op, AffinePrimitive):
            continue
        x = rng.standard_normal((2, *op.in_shapes[0]))
        lam = rng.standard_normal((2, *op.out_shape))
        try:
            at_lam = op.adjoint(lam)
        except NotImplementedError:
            continue
        lhs = np.sum(op.linear(x) * lam, axis=tuple(range(1, lam.ndim)))
        rhs = np.sum(x * at_lam, axis=tuple(range(1, x.ndim)))
        scale = np.sum(np.abs(op.abs_linear(np.abs(x)) * lam)) + 1e-300
        assert np.all(np.abs(lhs - rhs) <= 1e-12 * scale), (node.name, lhs, rhs)
        checked += 1
    assert checked > 0


def test_operator_norms_of_a_dense_map_whose_offset_grows_the_output():
    """Gemm-style bias broadcast over a new axis copies every output: the norms must count the
    copies (the generic materialised path, not the matrix's own norm)."""
    from boundprop.ops.affine import Dense

    rng = np.random.default_rng(0)
    op = Dense((1, 3), rng.standard_normal((2, 3)), rng.standard_normal((4, 2)))
    assert op.out_shape == (4, 2)
    m = op.materialize()
    for norm, order in (("2", 2), ("inf", np.inf), ("1", 1)):
        exact = np.linalg.norm(m, ord=order)
        assert exact <= op.operator_norm_upper(norm) <= exact * (1 + 1e-6) + 1e-12
