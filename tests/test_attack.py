"""The projected-gradient attack (``boundprop.attack``) and its place in ``bp.verify``.

- its gradients (the IR reverse pass) are those of the margin loss, checked against central
  finite differences; the smoothed reverse rules of small τ give the exact gradient back;
- it finds a planted counterexample in a pocket that random sampling does not reach;
- on VNN-COMP 2021 (skipped when ../shared/vnncomp2021 is absent): the sat mnistfc instance is
  falsified with a counterexample onnxruntime confirms; on an unsat one it reports nothing.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import boundprop as bp
from boundprop.attack import (
    WHOLE_SCORE,
    NoJacobian,
    checkpoints,
    loss_and_gradient,
    margin_losses,
    pgd,
    smoothed_network,
    targets_for,
)
from boundprop.runtime import OrtModel
from boundprop.sets import Box
from boundprop.verifier import _Search, _Unsafe
from boundprop.vnnlib import load_vnnlib
from tests.conftest import MODELS, VNNCOMP, needs_vnncomp, random_inputs
from tests.test_verify import _affine_relu_model, _run_text, _spec


def _random_unsafe(n_out: int, sizes: list[int], seed: int) -> _Unsafe:
    """Conjunctions of random rows A_k·y ≤ b_k (one per entry of ``sizes``)."""
    rng = np.random.default_rng(seed)
    return _Unsafe([(rng.standard_normal((k, n_out)), rng.standard_normal(k)) for k in sizes])


def _central_differences(net, unsafe, x, targets, directions, h):
    """(L(x + h·v) − L(x − h·v)) / 2h for each direction v (rows of ``directions``)."""
    n = len(directions)
    plus, _ = loss_and_gradient(net, unsafe, x + h * directions, np.repeat(targets, n))
    minus, _ = loss_and_gradient(net, unsafe, x - h * directions, np.repeat(targets, n))
    return (plus - minus) / (2 * h)


@pytest.mark.parametrize("model", ["mlp_tanh", "mlp_relu", "mlp_gelu", "mlp_prelu", "lenet",
                                   "resnet_block"])
def test_gradient_matches_central_differences(model):
    """At random points, g·v (g from the reverse pass) equals the central difference of the
    loss along v, for the whole score and for each targeted conjunction (directional checks:
    a handful of random directions plus the coordinate axes of small inputs)."""
    net = bp.load(MODELS / f"{model}.onnx")
    n_in, n_out = int(np.prod(net.input_shape)), int(np.prod(net.output_shape))
    unsafe = _random_unsafe(n_out, [1, 2, 3], seed=1)
    xs = random_inputs(net, 3, seed=2).reshape(3, n_in)
    rng = np.random.default_rng(3)
    dirs = rng.standard_normal((6, n_in))
    if n_in <= 16:
        dirs = np.vstack([dirs, np.eye(n_in)])
    for target in (WHOLE_SCORE, 0, 2):
        targets = np.full(len(xs), target)
        _, grads = loss_and_gradient(net, unsafe, xs, targets)
        for x, g, t in zip(xs, grads, targets):
            fd = _central_differences(net, unsafe, x, t, dirs, h=1e-6)
            np.testing.assert_allclose(dirs @ g, fd, rtol=1e-4, atol=1e-6 * (1 + np.abs(g).sum()))


def test_loss_is_the_score_or_the_target_margin():
    y = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]])
    unsafe = _Unsafe([(np.array([[1.0, 0, 0], [0, 1.0, 0]]), np.zeros(2)),  # max(y0, y1)
                      (np.array([[0, 0, 1.0]]), np.array([1.0]))])  # y2 − 1
    loss, active = margin_losses(y, unsafe, np.array([WHOLE_SCORE, WHOLE_SCORE]))
    np.testing.assert_array_equal(loss, unsafe.scores(y))
    np.testing.assert_array_equal(loss, [1.0, -0.5])
    np.testing.assert_array_equal(active, [1, 2])
    loss, active = margin_losses(y, unsafe, np.array([0, 0]))
    np.testing.assert_array_equal(loss, [1.0, 3.0])
    np.testing.assert_array_equal(active, [1, 0])


@pytest.mark.parametrize("model", ["mlp_relu", "mlp_leakyrelu", "mlp_prelu", "lenet"])
def test_smoothed_network_evaluates_alike_and_steers_exactly_as_tau_vanishes(model):
    net = bp.load(MODELS / f"{model}.onnx")
    n_in, n_out = int(np.prod(net.input_shape)), int(np.prod(net.output_shape))
    unsafe = _random_unsafe(n_out, [1, 2], seed=4)
    xs = random_inputs(net, 4, seed=5).reshape(4, n_in)
    targets = np.full(4, WHOLE_SCORE)
    smooth = smoothed_network(net, 1e-9)
    np.testing.assert_array_equal(smooth(xs.reshape(4, *net.input_shape)),
                                  net(xs.reshape(4, *net.input_shape)))
    exact_loss, exact = loss_and_gradient(net, unsafe, xs, targets)
    loss, steered = loss_and_gradient(net, unsafe, xs, targets, reverse_net=smooth)
    np.testing.assert_array_equal(loss, exact_loss)
    np.testing.assert_allclose(steered, exact, rtol=1e-9, atol=1e-12)
    _, wide = loss_and_gradient(net, unsafe, xs, targets, reverse_net=smoothed_network(net, 1.0))
    assert not np.allclose(wide, exact)  # a wide τ does change the direction


def test_an_op_without_reverse_rule_raises_and_the_search_falls_back():
    """softmax_head ends in a Softmax (no vjp): the attack raises NoJacobian, _Search records
    it and still runs its sampling / finite-difference search."""
    net = bp.load(MODELS / "softmax_head.onnx")
    n_in, n_out = int(np.prod(net.input_shape)), int(np.prod(net.output_shape))
    unsafe = _random_unsafe(n_out, [1], seed=6)
    with pytest.raises(NoJacobian):
        loss_and_gradient(net, unsafe, np.zeros((1, n_in)), np.array([WHOLE_SCORE]))
    box = Box(-np.ones(n_in), np.ones(n_in))
    search = _Search(net, None, box, unsafe.rows, np.random.default_rng(0), np.inf, 256)
    assert search.run(64) is False  # no onnxruntime model: nothing confirmed
    assert search.exact_gradients is False and np.isfinite(search.best)


def test_checkpoints_and_targets():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert all(0 < w < 10 for w in checkpoints(10))
    np.testing.assert_array_equal(targets_for(7, 2), [-1, 0, 1, -1, 0, 1, -1])
    np.testing.assert_array_equal(targets_for(3, 1), [-1, -1, -1])
    np.testing.assert_array_equal(targets_for(3, 100), [-1, -1, -1])


# -- a planted counterexample ------------------------------------------------------------------

DIM = 12
POCKET = np.linspace(-0.6, 0.7, DIM)  # the centre of the unsafe pocket (not the box centre)
RADIUS = 0.05  # ℓ1 radius of the pocket


def _pocket_model(tmp_path):
    """y = (relu(x − c), relu(c − x)) on x ∈ [−1, 1]^DIM: Σ y = ‖x − c‖₁."""
    w = np.vstack([np.eye(DIM), -np.eye(DIM)])
    return _affine_relu_model(tmp_path / "pocket.onnx", w, np.concatenate([-POCKET, POCKET]))


def _pocket_spec() -> str:
    box = "".join(f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(DIM))
    total = " ".join(f"Y_{j}" for j in range(2 * DIM))
    return _spec(DIM, 2 * DIM, box, f"(assert (<= (+ {total}) {RADIUS}))\n")


def test_pgd_finds_a_planted_pocket_that_sampling_misses(tmp_path):
    """The unsafe set is the ℓ1 ball of radius 0.05 around c in [−1, 1]^12 (a fraction ~1e-19
    of the box): 4096 random points (uniform and vertices) miss it, PGD from random starts
    lands in it, and verify() returns a counterexample onnxruntime confirms."""
    path = _pocket_model(tmp_path)
    net = bp.load(path)
    spec = tmp_path / "p.vnnlib"
    spec.write_text(_pocket_spec())
    (box, conjs), = load_vnnlib(spec, DIM, 2 * DIM).cases
    search = _Search(net, None, box, conjs, np.random.default_rng(0), np.inf, 256)
    _, sampled = search.sample(4096)
    assert sampled.min() > RADIUS  # nowhere near the pocket
    lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
    starts = lo + (hi - lo) * np.random.default_rng(1).random((8, DIM))
    result = pgd(net, search.unsafe, lo, hi, starts, targets_for(8, 1))
    assert result.loss.min() < 0
    x = result.x[np.argmin(result.loss)]
    assert np.abs(x - POCKET).sum() <= RADIUS
    v = _run_text(path, _pocket_spec(), tmp_path)  # checks the counterexample with ORT
    assert v.status == "falsified" and v.search_margin <= 0


def test_the_search_is_deterministic_given_the_seed(tmp_path):
    path = _pocket_model(tmp_path)
    a = _run_text(path, _pocket_spec(), tmp_path, seed=3)
    b = _run_text(path, _pocket_spec(), tmp_path, seed=3)
    np.testing.assert_array_equal(a.counterexample[0], b.counterexample[0])
    assert a.search_margin == b.search_margin


# -- VNN-COMP 2021 -------------------------------------------------------------------------------

MNIST = VNNCOMP / "mnistfc"


@needs_vnncomp()
def test_mnist_prop_0_eps_005_is_falsified():
    """mnist-net_256x2, prop_0 at ε = 0.05: sat (α,β-CROWN, VeriNet, nnenum, ERAN found
    counterexamples). Exact-gradient PGD alone stalls (the first layer has 2 of 256 neurons on
    in the box's basin, all others far off); the smoothed directions find it."""
    net = bp.load(MNIST / "mnist-net_256x2.onnx")
    ort = OrtModel(net.source, net.input_name, net.output_name)
    prop = load_vnnlib(MNIST / "prop_0_0.05.vnnlib", 784, 10)
    t0 = time.perf_counter()
    v = bp.verify(net, prop, ort_model=ort, timeout=60)
    assert v.status == "falsified", v
    assert time.perf_counter() - t0 < 30
    x, y = v.counterexample
    assert x.dtype == np.float32
    (box, conjs), = prop.cases
    flat = x.reshape(-1).astype(np.float64)
    assert np.all(box.lower.reshape(-1) <= flat) and np.all(flat <= box.upper.reshape(-1))
    y_ort = np.asarray(ort(x), dtype=np.float64).reshape(-1)
    np.testing.assert_array_equal(y_ort, y.reshape(-1))
    assert any(np.all(a @ y_ort <= b) for a, b in conjs)


@needs_vnncomp()
def test_no_counterexample_on_an_unsat_instance():
    """mnist-net_256x2, prop_10 at ε = 0.03 is unsat (verified): two rounds of the attack
    (smoothed and exact PGD, then samples, ascent and GN) on every conjunction report nothing,
    and every PGD loss stays positive."""
    net = bp.load(MNIST / "mnist-net_256x2.onnx")
    ort = OrtModel(net.source, net.input_name, net.output_name)
    (box, conjs), = load_vnnlib(MNIST / "prop_10_0.03.vnnlib", 784, 10).cases
    search = _Search(net, ort, box, conjs, np.random.default_rng(0), np.inf, 256)
    assert not search.attack() and not search.attack()
    assert search.found is None and search.rejected == 0 and search.best > 0
    lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
    result = pgd(net, search.unsafe, lo, hi, search.pgd_starts(16),
                 targets_for(16, len(conjs)), reverse_net=smoothed_network(net))
    assert result.loss.min() > 0
