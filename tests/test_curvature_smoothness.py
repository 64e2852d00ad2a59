"""Soundness of the curvature method of the smoothness constant (``smoothness_curvature``,
:mod:`boundprop.domains.curvature`): every test tries to beat the certified L with the
finite-difference Hessian of the IR (float64) at sampled points, measured in the p-norm
convention of the constants (L = sup ‖D²y[u, v]‖_p over ‖u‖_p, ‖v‖_p ≤ 1, whole tensors), on
the shipped smooth MLPs (each on its declared input set, and globally) and on random MLPs.
A planted error (the bound scaled down, one layer's term dropped) must be caught."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import boundprop as bp
from boundprop.constants import constants
from boundprop.sets import Box, default_input_set
from tests.conftest import MODELS

SMOOTH = ["mlp_sigmoid", "mlp_tanh", "mlp_softplus", "mlp_gelu", "mlp_elu", "mlp_gelu_erf",
          "torch_mlp_gelu_dynamo", "sklearn_mlp_regressor"]
NORMS = ("2", "inf", "1")


def fd_hessians(net, xs: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central second differences: H[s, k, i, j] ≈ ∂²y_k/∂x_i∂x_j at each point xs[s]
    (inputs of at most a few dozen entries)."""
    shape = net.input_shape
    n = int(np.prod(shape))
    eye = np.eye(n).reshape(n, *shape) * h
    out = []
    for x in xs:
        pi, pj = eye[:, None], eye[None, :]
        pts = np.concatenate([(x + pi + pj), (x + pi - pj), (x - pi + pj), (x - pi - pj)]
                             ).reshape(-1, *shape)
        f = net(pts).reshape(4, n, n, -1)
        hess = (f[0] - f[1] - f[2] + f[3]) / (4 * h * h)  # (n, n, k)
        out.append(np.moveaxis(0.5 * (hess + hess.transpose(1, 0, 2)), 2, 0))
    return np.array(out)


def bilinear_norm_lower(hk: np.ndarray, norm: str, rng) -> float:
    """A lower bound (exact for p = 1 and ∞) of sup ‖(uᵀH_k v)_k‖_p over ‖u‖_p, ‖v‖_p ≤ 1,
    for one point's Hessians ``hk`` (k, n, n)."""
    if norm == "1":  # the sup is at vertices ±e_i, ±e_j
        return float(np.abs(hk).sum(axis=0).max())
    if norm == "inf":  # max_k max_u ‖H_k u‖₁ over sign vectors u (n ≤ 12 here)
        n = hk.shape[1]
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
        return float(np.abs(np.einsum("kij,sj->ksi", hk, signs)).sum(axis=2).max())
    # p = 2: sup over unit w of ‖Σ_k w_k H_k‖₂, by ascent from each e_k and random w
    best = 0.0
    starts = list(np.eye(hk.shape[0])) + list(rng.standard_normal((4, hk.shape[0])))
    for w in starts:
        w = w / np.linalg.norm(w)
        for _ in range(20):
            u, s, vt = np.linalg.svd(np.einsum("k,kij->ij", w, hk))
            best = max(best, float(s[0]))
            z = np.einsum("i,kij,j->k", u[:, 0], hk, vt[0])
            if not np.linalg.norm(z):
                break
            w = z / np.linalg.norm(z)
    return best


def empirical_smoothness(net, xs: np.ndarray, norm: str, rng) -> np.ndarray:
    """Per sampled point, a lower bound of ‖D²y(x)‖_p from the finite-difference Hessian."""
    return np.array([bilinear_norm_lower(hk, norm, rng) for hk in fd_hessians(net, xs)])


def beaten(emp: np.ndarray, bound: float) -> bool:
    """Whether some sampled ‖D²y‖ exceeds ``bound`` beyond the finite-difference error."""
    return bool(np.any(emp > bound * (1 + 1e-6) + 1e-5 * (1 + emp.max())))


def _points(net, s, rng, n: int = 24) -> np.ndarray:
    if s is not None:
        return s.sample(n, rng)
    shape = net.input_shape
    return np.concatenate([sc * rng.standard_normal((n // 3, *shape)) for sc in (0.3, 1.0, 3.0)])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("local", [True, False], ids=["local", "global"])
@pytest.mark.parametrize("name", SMOOTH)
def test_curvature_bound_not_beaten_on_shipped_mlps(name, local, norm):
    net = bp.load(MODELS / f"{name}.onnx")
    s = default_input_set(net) if local else None
    c = constants(net, s, norm, symbolic=False)
    assert c.smoothness_curvature is not None, c.curvature_note
    assert c.smoothness == min(c.smoothness_curvature, c.layers[net.output].smoothness)
    rng = np.random.default_rng(0)
    emp = empirical_smoothness(net, _points(net, s, rng), norm, rng)
    assert not beaten(emp, c.smoothness_curvature), (
        f"sampled ‖D²y‖ {emp.max():.6g} > certified {c.smoothness_curvature:.6g}")
    assert emp.max() > 0


def test_planted_errors_are_caught(tmp_path):
    """The test has teeth. On mlp_tanh the certified bound scaled below the sampled values is
    beaten; on one tanh neuron y = v·tanh(wx + b), where the method is exact
    (L = |v| w² sup|tanh''| over the pre-activation interval), a grid of samples comes within
    1 % of the certified L, so any planted factor (a dropped term, a halved κ̄) is caught."""
    net = bp.load(MODELS / "mlp_tanh.onnx")
    s = default_input_set(net)
    rng = np.random.default_rng(0)
    emp = empirical_smoothness(net, _points(net, s, rng), "2", rng)
    c = constants(net, s, "2", symbolic=False)
    ratio = c.smoothness_curvature / emp.max()
    assert ratio < 100
    assert beaten(emp, c.smoothness_curvature / (1.1 * ratio))
    path = tmp_path / "neuron.onnx"
    mlp_onnx(path, rng, [1, 1, 1], "Tanh", 1.0)
    one = bp.load(path)
    box = Box(np.full(one.input_shape, -2.0), np.full(one.input_shape, 2.0))
    xs = np.linspace(-2, 2, 801).reshape(-1, *one.input_shape)
    for norm in NORMS:
        cert = constants(one, box, norm, symbolic=False).smoothness_curvature
        emp1 = empirical_smoothness(one, xs, norm, rng)
        assert not beaten(emp1, cert)
        assert cert <= emp1.max() * 1.01, (cert, emp1.max())
        assert beaten(emp1, 0.98 * cert)


def test_not_applicable_falls_back_with_a_reason():
    net = bp.load(MODELS / "layernorm_mlp.onnx")
    c = constants(net, default_input_set(net), "2", symbolic=False)
    assert c.smoothness_curvature is None
    assert "not applicable" in c.curvature_note and "layernorm" in c.curvature_note
    assert c.smoothness == c.layers[net.output].smoothness
    relu = bp.load(MODELS / "mlp_relu.onnx")
    g = constants(relu, None, "2", symbolic=False)
    assert g.smoothness_curvature == float("inf") and g.smoothness == float("inf")
    assert g.smoothness_reason
    x = np.linspace(-0.5, 0.5, 8).reshape(relu.input_shape)
    p = bp.certify(relu, bp.Box(x, x), wrt="params", param_radius=0.1)
    assert p.constants.smoothness_curvature is None


def test_stable_relu_net_has_zero_curvature():
    net = bp.load(MODELS / "mlp_relu.onnx")
    c = constants(net, bp.LinfBall(np.full(8, 0.5), 1e-4), "inf", symbolic=False)
    assert c.smoothness_curvature == 0.0 and c.smoothness == 0.0


def test_certificate_claims_checked():
    """The curvature value is a checked claim: the certificate verifies, the global L item is
    re-derived, and a lowered ``smoothness_curvature`` or ``Lcurv`` is rejected."""
    path = MODELS / "mlp_tanh.onnx"
    net = bp.load(path)
    doc = bp.certify(net, default_input_set(net), norm="inf").to_json()
    assert doc["smoothness"] == doc["smoothness_curvature"] < doc["layers"][-1]["smoothness"]
    r = bp.check(doc, path)
    items = {i.name: i for i in r.items}
    assert items["global smoothness"].how == "recomputed"
    assert items["smoothness_curvature"].ok and items["constant Lcurv"].ok
    assert any("curvature" in t for t in r.trusted)
    for edit in ("smoothness_curvature", "Lcurv", "smoothness"):
        bad = dict(doc, symbolic={**doc["symbolic"], "values": dict(doc["symbolic"]["values"])})
        if edit == "Lcurv":
            bad["symbolic"]["values"]["Lcurv"] = doc["smoothness_curvature"] * 0.999
        else:
            bad[edit] = doc["smoothness_curvature"] * 0.999
        assert not bp.check(bad, path, raise_on_invalid=False).valid, edit


# ---------------------------------------------------------------------------------------------
# Random MLPs

ACTS = ["Sigmoid", "Tanh", "Softplus", "Elu", "Softsign", "Selu", "Celu"]


def mlp_onnx(path, rng, sizes: list[int], act: str, scale: float) -> None:
    """An ONNX MLP: MatMul + Add, ``act`` between layers (opset 13)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, prev = [], [], "x"
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (scale * rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (0.5 * rng.standard_normal(b)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(bias, f"b{k}")]
        nodes += [helper.make_node("MatMul", [prev, f"W{k}"], [f"m{k}"]),
                  helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"])]
        prev = f"a{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node(act, [prev], [f"z{k}"]))
            prev = f"z{k}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 6), min_size=3, max_size=5), act=st.sampled_from(ACTS),
       scale=st.sampled_from([0.5, 1.0, 3.0]), norm=st.sampled_from(NORMS),
       radius=st.sampled_from([None, 0.05, 0.5, 2.0]), seed=st.integers(0, 2**16))
def test_random_mlps_curvature_not_beaten(tmp_path, sizes, act, scale, norm, radius, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / f"m{seed}.onnx"
    mlp_onnx(path, rng, sizes, act, scale)
    net = bp.load(path)
    s = None
    if radius is not None:
        centre = rng.standard_normal(net.input_shape)
        s = Box(centre - radius, centre + radius)
    c = constants(net, s, norm, symbolic=False)
    assert c.smoothness_curvature is not None, c.curvature_note
    emp = empirical_smoothness(net, _points(net, s, rng, 12), norm, rng)
    assert not beaten(emp, c.smoothness_curvature), (
        f"{act} {sizes} ×{scale}: sampled {emp.max():.6g} > {c.smoothness_curvature:.6g}")
