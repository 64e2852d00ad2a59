"""The global ℓ2 Lipschitz bound by a verified LipSDP-Neuron certificate (domains/lipsdp.py,
checker kernel ``psd_holds`` / ``neuron_lmi_holds``): below the layer product on the shipped
MLPs, never below exact Jacobian norms or difference quotients (points at every scale, so
many activation patterns are hit), never below the largest norm over *all* activation
patterns of tiny random ReLU nets (enumerated), and planted errors rejected by the verified
test: a multiplier perturbed so that the LMI fails, a lowered value, a negative multiplier,
a matrix that is not positive definite by a rounding-sized margin."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import boundprop as bp
from boundprop.audit.function import AuditedFunction
from boundprop.checker import check
from boundprop.checker.kernel import neuron_lmi_holds, psd_holds
from boundprop.domains.lipsdp import lipschitz_lmi, mlp_chain
from boundprop.domains.lipsdp_search import eclipse_candidate
from boundprop.ir import InputPrimitive, Network, Node
from boundprop.ops.affine import Dense
from boundprop.ops.piecewise import HardSwish, LeakyRelu, Relu
from boundprop.ops.smooth import Gelu, Sigmoid, Tanh
from tests.conftest import MODELS, VNNCOMP, needs_vnncomp

SHIPPED = ["mlp_relu", "mlp_sigmoid", "mlp_tanh", "mlp_leakyrelu", "mlp_prelu", "mlp_softplus",
           "mlp_elu", "mlp_clip", "mlp_gelu"]  # GELU: α < 0, the α-aware search


def chain_net(weights: list[np.ndarray], act=Relu, biases: bool = True, seed: int = 0
              ) -> Network:
    """Dense → act → … → Dense as an IR network (input shape (1, n_0))."""
    rng = np.random.default_rng(seed)
    nodes = [Node("input", InputPrimitive((1, weights[0].shape[1])), ())]
    for i, w in enumerate(weights):
        b = rng.standard_normal(w.shape[0]) if biases else None
        nodes.append(Node(f"d{i}", Dense((1, w.shape[1]), w, b), (len(nodes) - 1,)))
        if i < len(weights) - 1:
            nodes.append(Node(f"a{i}", act((1, w.shape[0])), (len(nodes) - 1,)))
    return Network(nodes=nodes, output=len(nodes) - 1)


def jacobian_norms(net: Network, xs: np.ndarray) -> np.ndarray:
    """‖J(x)‖₂ at each point by the IR's exact reverse pass (one-sided at kinks)."""
    f = AuditedFunction(net, "input")
    k = int(np.prod(net.output_shape))
    rows = np.broadcast_to(np.eye(k).reshape(1, k, *net.output_shape), (len(xs), k,
                                                                        *net.output_shape))
    jac = f.jacobians(xs.reshape(len(xs), -1), np.zeros(len(xs), dtype=int), rows)
    return np.linalg.norm(jac, ord=2, axis=(1, 2))


def points(net: Network, n: int, seed: int) -> np.ndarray:
    """Standard normal points scaled by 0.1 … 1000 (many activation patterns)."""
    rng = np.random.default_rng(seed)
    scales = rng.choice([0.1, 1.0, 10.0, 100.0, 1000.0], size=(n, 1))
    return (rng.standard_normal((n, int(np.prod(net.input_shape)))) * scales).reshape(
        n, *net.input_shape)


def attack(net: Network, bound: float, seed: int, n: int = 400) -> None:
    """Exact Jacobian norms and difference quotients (near and far pairs) ≤ bound."""
    xs = points(net, n, seed)
    assert float(np.max(jacobian_norms(net, xs))) <= bound
    rng = np.random.default_rng(seed + 1)
    for step in (1e-4, 1.0, 100.0):
        d = rng.standard_normal(xs.shape) * step
        num = np.linalg.norm((net(xs + d) - net(xs)).reshape(n, -1), axis=1)
        q = num / np.linalg.norm(d.reshape(n, -1), axis=1)
        assert float(np.max(q)) <= bound * (1 + 1e-9)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_mlps_below_product_checked_and_attacked(name):
    path = MODELS / f"{name}.onnx"
    net = bp.load(path)
    c = bp.certify(net, None, norm="2")
    k = c.constants
    assert k.lipschitz_lmi is not None, k.lmi_note
    assert k.lipschitz == k.lipschitz_lmi < k.lipschitz_product
    assert "Jlmi" in str(k.lipschitz_formula)
    r = check(c.to_json(), path, samples=0)
    assert any(i.name == "lipschitz_lmi" and i.how == "independent" for i in r.items)
    attack(net, k.lipschitz_lmi, seed=len(name))


def test_local_and_inf_certificates_carry_no_lmi():
    net = bp.load(MODELS / "mlp_relu.onnx")
    assert bp.constants(net, None, norm="inf").lipschitz_lmi is None
    local = bp.certify(net, bp.L2Ball(np.full(8, 0.5), 0.1), norm="2")
    assert local.constants.lipschitz_lmi is None and local.to_json()["lmi_multipliers"] is None


def test_not_a_chain_gives_no_value():
    net = bp.load(MODELS / "resnet_block.onnx")
    r = lipschitz_lmi(net)
    assert r.value is None and r.note


def _pattern_max(ws: list[np.ndarray]) -> float:
    """max over every 0/1 activation pattern D_l of ‖W_L D_{L−1} ⋯ D_1 W_1‖₂ (reachable or
    not): the slope-[0, 1] certificate covers every such product, so it is a lower bound."""
    hidden = [w.shape[0] for w in ws[:-1]]
    best = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=sum(hidden)):
        m, k = ws[0], 0
        for w, n in zip(ws[1:], hidden):
            m = w @ (np.asarray(bits[k:k + n])[:, None] * m)
            k += n
        best = max(best, float(np.linalg.norm(m, 2)))
    return best


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), widths=st.lists(st.integers(1, 4), min_size=3,
                                                       max_size=5),
       scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_tiny_relu_nets_above_every_activation_pattern(seed, widths, scale):
    if sum(widths[1:-1]) > 10:
        widths = widths[:3]
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((b, a)) * scale for a, b in zip(widths[:-1], widths[1:])]
    net = chain_net(ws, seed=seed)
    r = lipschitz_lmi(net)
    assert r.value is not None, r.note
    assert r.value >= _pattern_max(ws)
    prod = np.prod([np.linalg.norm(w, 2) for w in ws])
    assert r.value <= prod * (1 + 2e-2)  # the closed form is never above the product


@pytest.mark.parametrize("act", [Relu, Sigmoid, Tanh, functools.partial(LeakyRelu, alpha=0.1),
                                 Gelu, HardSwish],
                         ids=["relu", "sigmoid", "tanh", "leakyrelu", "gelu", "hardswish"])
def test_random_deeper_nets_attacked(act):
    rng = np.random.default_rng(7)
    widths = [6, 12, 12, 12, 3]
    ws = [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
    net = chain_net(ws, act=act)
    r = lipschitz_lmi(net)
    assert r.value is not None, r.note
    attack(net, r.value, seed=3)


def test_planted_errors_rejected():
    """The multipliers of a verified certificate, perturbed: a lowered value, a zeroed or
    negative multiplier, a multiplier scaled so that a diagonal block goes indefinite — each
    must fail the verified test (the untouched certificate passes)."""
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((5, 4)), rng.standard_normal((5, 5)), rng.standard_normal((2, 5))]
    chain, _ = mlp_chain(chain_net(ws))
    r = lipschitz_lmi(chain_net(ws))
    ts = r.multipliers
    assert neuron_lmi_holds(chain.weights, chain.slopes, ts, r.value)[0]
    bad = [
        (ts, r.value * 0.99),
        ([ts[0] * 0, ts[1]], r.value),
        ([np.r_[-1.0, ts[0][1:]], ts[1]], r.value),
        ([ts[0], ts[1] * 1e-3], r.value),  # 2T − WᵀW loses definiteness
        ([ts[0] * 1e3, ts[1]], r.value),  # the coupling to the input block dominates
        (ts[:1], r.value),
    ]
    for planted, u in bad:
        assert not neuron_lmi_holds(chain.weights, chain.slopes, planted, u)[0]
    # the weights themselves: a larger last layer breaks the same certificate
    w2 = [chain.weights[0], chain.weights[1], (chain.weights[2][0] * 1.05,
                                                chain.weights[2][1])]
    assert not neuron_lmi_holds(w2, chain.slopes, ts, r.value)[0]


def test_psd_holds_at_the_rounding_margin():
    """A PSD matrix with a tiny negative eigenvalue (−1e-12 relative) is rejected; shifted up
    by 1e-6 it is shown; a claimed error bound larger than the margin is rejected."""
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    lam = np.linspace(1.0, 2.0, 60)
    lam[0] = -1e-12
    m = (q * lam) @ q.T
    m = np.triu(m) + np.triu(m, 1).T
    zero = np.zeros_like(m)
    assert not psd_holds(m, zero)[0]
    m2 = m + 1e-6 * np.eye(60)
    assert psd_holds(m2, zero)[0]
    assert not psd_holds(m2, np.full_like(m, 1e-6))[0]
    assert not psd_holds(m2[:, ::-1], zero)[0]  # not symmetric


def test_closed_form_is_below_the_product():
    """ECLipsE-Fast (all factors 1) never exceeds ∏ β_l ‖W_l‖₂ (by induction, X_l ⪰ T_l)."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        widths = rng.integers(1, 9, size=rng.integers(3, 6))
        ws = [rng.standard_normal((b, a)) for a, b in zip(widths[:-1], widths[1:])]
        chain, _ = mlp_chain(chain_net(ws, biases=False))
        rho = eclipse_candidate(chain, [1.0] * len(chain.slopes))[0]
        prod = np.prod([np.linalg.norm(w, 2) * (1 + 1e-11) for w in ws])
        assert np.sqrt(rho) <= prod * (1 + 1e-9)


@needs_vnncomp()
@pytest.mark.slow
def test_mnist_256x2_below_product():
    """mnist-net_256x2: the layer product 839.3; the LMI strictly below, checked, attacked."""
    path = VNNCOMP / "mnistfc" / "mnist-net_256x2.onnx"
    net = bp.load(path)
    c = bp.certify(net, None, norm="2")
    assert c.constants.lipschitz_lmi < 839.0 and c.lipschitz == c.constants.lipschitz_lmi
    assert check(c.to_json(), path, samples=0)
    attack(net, c.lipschitz, seed=5, n=200)
