"""Branch and bound: batched domain bounds, the complete search, proofs and their checker.

Every bound is attacked by sampling (the IR in float64 for real execution, onnxruntime for
float32 execution); every verdict is compared with the truth of small networks decided by a
dense grid over the (effectively two-dimensional) input box; every proof is re-checked, and
tampered proofs must be rejected.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.analysis import linear_function_bounds, output_bounds
from boundprop.bab.search import choose_mode, refutation_rows, splittable_nodes
from boundprop.checker.proof import check_proof
from boundprop.cli import main as cli
from boundprop.domains.alpha import SlopeOptions
from boundprop.domains.batched import DomainBatch, Split
from boundprop.runtime import OrtModel
from boundprop.sets import Box, default_input_set
from tests.conftest import MODELS, VNNCOMP, needs_vnncomp


def mlp_onnx(path, sizes: list[int], seed: int, scale: float = 1.0):
    """A ReLU MLP (Gemm + Relu layers, float32) with standard-normal weights / √fan-in."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = scale * rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        c = 0.3 * rng.standard_normal(n_out)
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(c.astype(np.float32), f"c{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"c{i}"], [f"h{i}"], transB=1))
        x = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, sizes[0]])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, sizes[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def pre_activations(net) -> list[int]:
    return [n.inputs[0] for n in net.nodes[1:] if n.op.branch_points()]


# -- DomainBatch: sound on every domain ------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**6), execution=st.sampled_from(["real", "float32"]),
       optimise=st.booleans())
def test_domain_bounds_hold_on_samples(tmp_path_factory, seed, execution, optimise):
    """Random sub-boxes and random phase constraints of a random MLP: every sampled input of a
    domain (in its box, meeting its constraints) has C·y above the domain's bound; a domain
    called infeasible has no such sample."""
    path = mlp_onnx(tmp_path_factory.mktemp("bab") / "m.onnx", [3, 8, 8, 3], seed)
    net = bp.load(path)
    rng = np.random.default_rng(seed)
    root = Box(-np.ones(3), np.ones(3)).fit(net.input_shape)
    layers = output_bounds(net, root, "linear", execution).layers
    d = 6
    a, b = rng.random((d, 3)) * 2 - 1, rng.random((d, 3)) * 2 - 1
    lo, hi = np.minimum(a, b).reshape(d, 1, 3), np.maximum(a, b).reshape(d, 1, 3)
    pre = pre_activations(net)
    splits = [tuple(Split(int(rng.choice(pre)), int(rng.integers(8)), int(rng.choice([-1, 1])),
                          0.0) for _ in range(rng.integers(0, 4))) for _ in range(d)]
    c = rng.standard_normal((4, 3))
    batch = DomainBatch(net, layers, lo, hi, splits, execution)
    low = batch.spec_lower(c, slopes=SlopeOptions(iterations=5) if optimise else None)
    ort = OrtModel(path, net.input_name, net.output_name)
    for i in range(d):
        xs = lo[i] + (hi[i] - lo[i]) * rng.random((3000, 1, 3))
        if execution == "float32":
            xs = np.clip(xs.astype(np.float32), lo[i], hi[i]).astype(np.float64)
        vals = net.evaluate_all(xs)
        keep = np.ones(len(xs), dtype=bool)
        for s in splits[i]:
            z = vals[s.node].reshape(len(xs), -1)[:, s.index]
            keep &= (z >= s.point) if s.side > 0 else (z <= s.point)
        if batch.infeasible[i]:
            assert not keep.any(), "a domain with inputs was called infeasible"
            continue
        if not keep.any():
            continue
        y = (ort(xs[keep].astype(np.float32)) if execution == "float32" else
             vals[-1][keep]).reshape(int(keep.sum()), -1)
        assert np.all(y @ c.T >= low[i]), (y @ c.T - low[i]).min()


def test_one_domain_is_the_root_bound(tmp_path):
    """The batch of the root box alone reproduces the linear method's bound exactly."""
    net = bp.load(mlp_onnx(tmp_path / "m.onnx", [4, 16, 16, 3], 7))
    root = Box(-np.ones(4), np.ones(4)).fit(net.input_shape)
    c = np.eye(3) - np.eye(3)[[1, 2, 0]]
    for execution in ("real", "float32"):
        layers = output_bounds(net, root, "linear", execution).layers
        ref, _ = linear_function_bounds(net, root, c, "linear", execution)
        got = DomainBatch(net, layers, root.lower[None], root.upper[None],
                          execution=execution).spec_lower(c)[0]
        assert np.all(got >= ref - 1e-12 * (1 + np.abs(ref)))


# -- verdicts against the truth of a dense grid ------------------------------------------------

def _grid_truth(path, n_in: int, free: tuple[int, int], x0: np.ndarray, c: np.ndarray,
                steps: int = 301) -> np.ndarray:
    """c·y (onnxruntime, float32) on a steps×steps grid of the two free coordinates."""
    net = bp.load(path)
    g = np.linspace(-1.0, 1.0, steps)
    xs = np.repeat(x0[None], steps * steps, axis=0)
    xs[:, free[0]] = np.repeat(g, steps)
    xs[:, free[1]] = np.tile(g, steps)
    y = OrtModel(path, net.input_name, net.output_name)(
        xs.astype(np.float32).reshape(-1, *net.input_shape))
    return y.reshape(len(xs), -1) @ c


def _property(n_in: int, n_out: int, free: tuple[int, int], x0: np.ndarray, c: np.ndarray,
              t: float) -> str:
    """Inputs: the free coordinates in [−1, 1], the others fixed at x0; unsafe: c·y ≤ t."""
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i in range(n_in):
        lo, hi = (-1.0, 1.0) if i in free else (float(np.float32(x0[i])),) * 2
        lines += [f"(assert (>= X_{i} {lo!r}))", f"(assert (<= X_{i} {hi!r}))"]
    terms = " ".join(f"(* {float(v)!r} Y_{j})" for j, v in enumerate(c) if v != 0)
    lines.append(f"(assert (<= (+ {terms}) {float(t)!r}))")
    return "\n".join(lines) + "\n"


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10**6), n_in=st.sampled_from([2, 20]))  # input / activation splits
def test_verdicts_agree_with_the_grid(tmp_path_factory, seed, n_in):
    """Random networks, with the truth from a dense grid: thresholds just above the grid's
    minimum are sat (never "verified"); thresholds well below it (by more than the Lipschitz
    bound times the grid spacing) are unsat and must be verified, with a proof the checker
    accepts."""
    tmp_path = tmp_path_factory.mktemp("grid")
    path = mlp_onnx(tmp_path / "m.onnx", [n_in, 10, 10, 2], seed)
    net = bp.load(path)
    assert choose_mode(net) == ("input" if n_in <= 16 else "activation")
    rng = np.random.default_rng(seed)
    free = (0, 1)
    x0 = np.where(np.isin(np.arange(n_in), free), 0.0, rng.uniform(-1, 1, n_in))
    c = np.array([1.0, -1.0])
    vals = _grid_truth(path, n_in, free, x0, c)
    lip = np.prod([np.linalg.norm(n.op.materialize(), 2) for n in net.nodes[1:]
                   if n.op.has("materialize") and n.op.materialize() is not None])
    h = 2.0 / 300 * np.sqrt(2)
    for t, expect in ((float(vals.min()) + 1e-3, "falsified"),
                      (float(vals.min()) - 2 * lip * h - 1e-3, "verified")):
        spec = tmp_path / f"p{t}.vnnlib"
        spec.write_text(_property(n_in, 2, free, x0, c, t))
        v = bp.verify(net, spec, timeout=30)
        if expect == "falsified":
            assert v.status != "verified"
        assert v.status == expect, (t, v.status, v.note)
        if v.status == "verified":
            assert v.proof is not None
            assert check_proof(v.proof, net, path, spec).valid
        else:
            x, y = v.counterexample
            assert float(np.asarray(y).reshape(-1) @ c) <= t


# -- proofs: accepted, and rejected when tampered --------------------------------------------

@pytest.fixture(scope="module")
def proved(tmp_path_factory):
    """A property verified by input splitting, with its proof."""
    d = tmp_path_factory.mktemp("proof")
    path = mlp_onnx(d / "m.onnx", [2, 12, 12, 2], 5)
    net = bp.load(path)
    c = np.array([1.0, -1.0])
    vals = _grid_truth(path, 2, (0, 1), np.zeros(2), c)
    spec = d / "p.vnnlib"
    spec.write_text(_property(2, 2, (0, 1), np.zeros(2), c, float(vals.min()) - 0.05))
    v = bp.verify(net, spec, timeout=30)
    assert v.status == "verified" and v.proof["stats"]["mode"] == "input"
    tree = v.proof["cases"][0]["conjunctions"][0]
    assert "tree" in tree and len(tree["tree"]) > 1, "the root bound alone proved it"
    return net, path, spec, v.proof


def _tree(proof):
    return proof["cases"][0]["conjunctions"][0]["tree"]


def test_proof_is_accepted_and_not_by_reading_it(proved):
    net, path, spec, proof = proved
    assert check_proof(proof, net, path, spec).valid
    json.dumps(proof, allow_nan=False)  # plain JSON


def _leaf_removed(p):
    t = _tree(p)
    del t[next(i for i, n in enumerate(t) if n[0] == "leaf")]


def _bound_raised(p):
    t = _tree(p)
    t[next(i for i, n in enumerate(t) if n[0] == "leaf")][2] += 1e-3


def _split_dropped(p):
    del _tree(p)[0]


def _split_moved(p):
    t = _tree(p)
    t[0][2] = t[0][2] + 0.25  # the halves no longer match the leaves' claims


def _leaf_claims_empty(p):
    t = _tree(p)
    t[next(i for i, n in enumerate(t) if n[0] == "leaf")] = ["empty"]


def _root_claimed(p):
    p["cases"][0]["conjunctions"][0] = {"root": True}


def _other_model(p):
    p["model"]["sha256"] = "0" * 64


@pytest.mark.parametrize("tamper", [_leaf_removed, _bound_raised, _split_dropped, _split_moved,
                                    _leaf_claims_empty, _root_claimed, _other_model])
def test_tampered_proofs_are_rejected(proved, tamper):
    net, path, spec, proof = proved
    bad = copy.deepcopy(proof)
    tamper(bad)
    r = check_proof(bad, net, path, spec)
    assert not r.valid and r.reason


def test_check_command_on_proofs(proved, tmp_path, capsys):
    net, path, spec, proof = proved
    good = tmp_path / "proof.json"
    good.write_text(json.dumps(proof))
    assert cli(["check", str(good), str(path), str(spec)]) == 0
    assert "valid proof" in capsys.readouterr().out
    bad = copy.deepcopy(proof)
    _bound_raised(bad)
    tampered = tmp_path / "bad.json"
    tampered.write_text(json.dumps(bad))
    assert cli(["check", str(tampered), str(path), str(spec)]) == 1
    assert "INVALID" in capsys.readouterr().out
    assert cli(["check", str(good), str(path)]) == 2  # a proof needs its property
    assert "give the VNN-LIB property" in capsys.readouterr().err


def test_refutation_rows_average_only_several_rows():
    a, b = refutation_rows(np.array([[1.0, 0.0]]), np.array([2.0]))
    assert a.shape == (1, 2)
    a, b = refutation_rows(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([2.0, 4.0]))
    np.testing.assert_array_equal(a[-1], [0.5, 0.5])
    assert b[-1] == 3.0


# -- the competition instances branch and bound decides -------------------------------------

@needs_vnncomp()
@pytest.mark.parametrize("model,spec", [
    ("acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/prop_1.vnnlib"),
    ("acasxu/ACASXU_run2a_1_2_batch_2000.onnx", "acasxu/prop_4.vnnlib"),
    ("mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_0_0.03.vnnlib")])
def test_competition_unsat_instances_with_proofs(model, spec):
    """Open after the bounds, decided by branching; the proof checks in less time."""
    net = bp.load(VNNCOMP / model)
    v = bp.verify(net, VNNCOMP / spec, timeout=60)
    assert v.status == "verified" and v.proof["stats"]["mode"] != "root"
    r = check_proof(v.proof, net, VNNCOMP / model, VNNCOMP / spec)
    assert r.valid, r.reason
    assert r.elapsed_s < v.elapsed_s


# lenet takes 34 s: the batched engine back-substitutes conv nodes with whole arrays (no crops)
SHIPPED = [pytest.param("lenet", marks=pytest.mark.slow), "resnet_block", "ops_coverage_a",
           "ops_coverage_b", "mlp_prelu", "mlp_clip", "torch_cnn_dynamo", "layernorm_mlp",
           "softmax_head"]


@pytest.mark.parametrize("name", SHIPPED)
def test_domain_bounds_hold_on_shipped_models(name):
    """Every op's rules with many domains on the leading axis: sub-boxes of each model's own
    input set and phase constraints where it has kinks to split, attacked by onnxruntime
    samples (float32 execution)."""
    path = MODELS / f"{name}.onnx"
    net = bp.load(path)
    root = default_input_set(net).fit(net.input_shape)
    layers = output_bounds(net, root, "linear", "float32").layers
    rng = np.random.default_rng(0)
    d, lo0, hi0 = 3, root.lower, root.upper
    a, b = (lo0 + (hi0 - lo0) * rng.random((d, *lo0.shape)) for _ in range(2))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    kinks = [(k, t) for k, _, pts in splittable_nodes(net) for t in pts]
    splits = [tuple(Split(k, int(rng.integers(np.prod(net.nodes[k].shape))), int(s), t)
                    for (k, t), s in zip([kinks[i] for i in rng.integers(len(kinks), size=2)],
                                         rng.choice([-1, 1], 2))) if kinks else ()
              for _ in range(d)]
    n_out = int(np.prod(net.output_shape))
    c = rng.standard_normal((3, n_out))
    batch = DomainBatch(net, layers, lo, hi, splits, "float32")
    low = batch.spec_lower(c)
    ort = OrtModel(path, net.input_name, net.output_name)
    for i in range(d):
        xs = (lo[i] + (hi[i] - lo[i]) * rng.random((400, *lo0.shape))).astype(np.float32)
        xs = np.clip(xs, lo[i], hi[i]).astype(np.float32)
        vals = net.evaluate_all(xs.astype(np.float64))
        keep = np.ones(len(xs), dtype=bool)
        for s in splits[i]:
            z = vals[s.node].reshape(len(xs), -1)[:, s.index]
            keep &= (z >= s.point) if s.side > 0 else (z <= s.point)
        if batch.infeasible[i] or not keep.any():
            assert not (batch.infeasible[i] and keep.any())
            continue
        y = ort(xs[keep]).reshape(int(keep.sum()), -1)
        assert np.all(y @ c.T >= low[i]), (name, i, (y @ c.T - low[i]).min())
