"""verify(): verdicts on the VNN-COMP 2021 instances and on small synthetic models.

Every verdict is checked against onnxruntime, the ground truth: a "falsified" verdict's
counterexample lies in its box and onnxruntime's output for it satisfies every row of an unsafe
conjunction (no tolerance); a "verified" verdict is cross-checked by running onnxruntime on
2,000 points of each box (half uniform, half vertices) and finding none in the unsafe region.
"unknown" is always acceptable, except where a test names the expected answer.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.errors import BoundpropError
from boundprop.runtime import OrtModel
from boundprop.verifier import DEFAULT_METHOD, Verdict
from boundprop.vnnlib import Property, load_vnnlib, parse_vnnlib
from tests.conftest import VNNCOMP, needs_vnncomp

CROSS_CHECK_SAMPLES = 2000


def _unsafe(y: np.ndarray, conjs) -> bool:
    return any(bool(np.all(a @ y <= b)) for a, b in conjs)


def check_verdict(net, prop: Property, v: Verdict, ort: OrtModel) -> None:
    """The verdict agrees with onnxruntime (see the module docstring)."""
    assert v.status in ("verified", "falsified", "unknown")
    if v.status == "falsified":
        x, y = v.counterexample
        assert x.shape == net.input_shape and y.shape == net.output_shape
        y_ort = ort(x)
        np.testing.assert_array_equal(y_ort, y)
        flat = x.reshape(-1).astype(np.float64)
        assert any(np.all(box.lower <= flat) and np.all(flat <= box.upper)
                   and _unsafe(y_ort.reshape(-1), unsafe) for box, unsafe in prop.cases)
        assert v.search_margin <= 0 and v.margin <= 0
    elif v.status == "verified":
        assert v.margin > 0 and v.counterexample is None
        rng = np.random.default_rng(1)
        for box, unsafe in prop.cases:
            n = CROSS_CHECK_SAMPLES // 2
            pts = np.vstack([box.sample(n, rng), np.where(
                rng.random((n, box.lower.size)) < 0.5, box.lower, box.upper)])
            pts32 = pts.astype(np.float32)
            inside = np.all((pts32 >= box.lower) & (pts32 <= box.upper), axis=1)
            ys = ort(pts32[inside].reshape(-1, *net.input_shape)).reshape(int(inside.sum()), -1)
            hits = [i for i, y in enumerate(ys) if _unsafe(y, unsafe)]
            assert not hits, f"'verified' but onnxruntime reaches the unsafe region at {hits[:3]}"
    else:
        assert v.counterexample is None and v.margin <= 0


def run_instance(onnx_path, vnnlib_path, **kw) -> tuple[Verdict, Property]:
    net = bp.load(onnx_path)
    ort = OrtModel(onnx_path, net.input_name, net.output_name)
    prop = load_vnnlib(vnnlib_path, int(np.prod(net.input_shape)),
                       int(np.prod(net.output_shape)))
    v = bp.verify(net, prop, ort_model=ort, **kw)
    check_verdict(net, prop, v, ort)
    return v, prop


# -- the competition's test instances --------------------------------------------------------

def _test_instances():
    csv = VNNCOMP / "test" / "test_instances.csv"
    if not csv.is_file():
        return []
    rows = [line.split(",") for line in csv.read_text().split() if line.strip()]
    return [pytest.param(m, p, id=m.removesuffix(".onnx")) for m, p, *_ in rows]


@needs_vnncomp()
@pytest.mark.parametrize("model,spec", _test_instances())
def test_competition_test_instances(model, spec):
    v, _ = run_instance(VNNCOMP / "test" / model, VNNCOMP / "test" / spec)
    if model == "test_sat.onnx":
        assert v.status == "falsified"
    elif model == "test_unsat.onnx":
        assert v.status != "falsified"
    else:  # nano/tiny/small: the unsafe value is far from the output range
        assert v.status == "verified"


# -- ACAS Xu ---------------------------------------------------------------------------------

ACAS_NETS = ["1_1", "1_2", "2_1"]


@needs_vnncomp()
@pytest.mark.parametrize("prop", [1, 2, 3, 4])
@pytest.mark.parametrize("net_id", ACAS_NETS)
def test_acasxu(net_id, prop):
    v, _ = run_instance(VNNCOMP / f"acasxu/ACASXU_run2a_{net_id}_batch_2000.onnx",
                        VNNCOMP / f"acasxu/prop_{prop}.vnnlib")
    if (net_id, prop) == ("2_1", 2):  # a known violation, found by the default search
        assert v.status == "falsified"


@pytest.mark.slow
@needs_vnncomp()
def test_acasxu_1_2_prop_2_is_falsified_with_restarts():
    """Its unsafe pocket is small (margin ≈ −1e-5): found by the restarts a timeout allows."""
    v, _ = run_instance(VNNCOMP / "acasxu/ACASXU_run2a_1_2_batch_2000.onnx",
                        VNNCOMP / "acasxu/prop_2.vnnlib", timeout=20.0)
    assert v.status == "falsified"


# -- ℓ∞ robustness specs -------------------------------------------------------------------

def _robustness_instances():
    if not VNNCOMP.is_dir():
        return []
    pairs = [("mnistfc/mnist-net_256x2.onnx", "mnistfc/*.vnnlib"),
             ("verivital/Convnet_maxpool.onnx", "verivital/specs/maxpool_specs/*.vnnlib"),
             ("oval21/cifar_base_kw.onnx", "oval21/*.vnnlib"),
             ("cifar10_resnet/resnet_2b.onnx", "cifar10_resnet/*.vnnlib")]
    # resnet_2b: ~18 s each (bounds, attack and search stay undecided without a timeout)
    return [pytest.param(VNNCOMP / m, p, id=str(p.relative_to(VNNCOMP)),
                         marks=[pytest.mark.slow] if "resnet" in m else [])
            for m, pattern in pairs for p in sorted(VNNCOMP.glob(pattern))]


@needs_vnncomp()
@pytest.mark.parametrize("model,spec", _robustness_instances())
def test_robustness_specs(model, spec):
    v, prop = run_instance(model, spec)
    assert len(v.conjunction_margins) == 1 and v.conjunction_margins[0].shape == (9,)
    if "verivital" in str(spec):  # small eps on a small CNN: interval bounds suffice
        assert v.status == "verified"


@pytest.mark.slow
@needs_vnncomp()
@pytest.mark.parametrize("method", ["interval", "linear", "alpha"])
def test_every_instance_with_each_method(method):
    if method == "linear":
        pytest.importorskip("boundprop.domains.backsub")
    instances = [(VNNCOMP / "test" / p.values[0], VNNCOMP / "test" / p.values[1])
                 for p in _test_instances()]
    instances += [(VNNCOMP / f"acasxu/ACASXU_run2a_{n}_batch_2000.onnx",
                   VNNCOMP / f"acasxu/prop_{k}.vnnlib") for n in ACAS_NETS for k in range(1, 5)]
    instances += [tuple(p.values) for p in _robustness_instances()]
    for model, spec in instances:
        for seed in (1, 2):
            run_instance(model, spec, method=method, seed=seed, n_samples=4096)


# -- synthetic models (no competition files needed) --------------------------------------------

def _affine_relu_model(path, w: np.ndarray, c: np.ndarray, relu: bool = True):
    """y = relu(W x + c) (or W x + c), x of shape (1, n)."""
    n_out, n_in = w.shape
    nodes = [helper.make_node("Gemm", ["x", "W", "c"], ["h"], transB=1)]
    nodes.append(helper.make_node("Relu", ["h"], ["y"]) if relu else
                 helper.make_node("Identity", ["h"], ["y"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [1, n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
                          [numpy_helper.from_array(w.astype(np.float32), "W"),
                           numpy_helper.from_array(c.astype(np.float32), "c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _spec(n_in: int, n_out: int, box: str, output: str) -> str:
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
    head += "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))
    return head + box + output


BOX2 = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n"


@pytest.fixture
def model2(tmp_path):
    """y0 = relu(x0 + x1), y1 = relu(x0 − x1) on x ∈ [−1, 1]²: y ∈ [0, 2]²."""
    return _affine_relu_model(tmp_path / "m.onnx", np.array([[1.0, 1.0], [1.0, -1.0]]),
                              np.zeros(2))


def _run_text(model_path, text: str, tmp_path, **kw) -> Verdict:
    spec = tmp_path / "p.vnnlib"
    spec.write_text(text)
    v, _ = run_instance(model_path, spec, **kw)
    return v


def test_synthetic_verified(model2, tmp_path):
    v = _run_text(model2, _spec(2, 2, BOX2, "(assert (>= Y_0 2.5))\n"), tmp_path)
    assert v.status == "verified" and v.margin > 0 and v.method == DEFAULT_METHOD
    # y0 ≤ 2 exactly; the default float32-execution bounds give up a few float32 ulps of it.
    np.testing.assert_allclose(v.margin, 0.5, rtol=1e-5)
    assert v.margin <= 0.5


def test_synthetic_falsified_at_a_vertex(model2, tmp_path):
    """The only counterexamples are near the vertex (1, 1): y0 = 2 ≥ 1.99."""
    v = _run_text(model2, _spec(2, 2, BOX2, "(assert (>= Y_0 1.99))\n"), tmp_path)
    assert v.status == "falsified"
    assert v.counterexample[0].dtype == np.float32


def test_synthetic_falsified_in_the_interior(tmp_path):
    """Unsafe pocket |x0 − 0.3| ≤ 0.01, |x1 + 0.2| ≤ 0.01 (y0 + y1 ≤ 0.02, y = |…|) around an
    interior point: reached by the ascent, not by chance."""
    w = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    path = _affine_relu_model(tmp_path / "abs.onnx", w, np.array([-0.3, 0.3, 0.2, -0.2]))
    out = "(assert (<= (+ Y_0 Y_1 Y_2 Y_3) 0.01))\n"
    v = _run_text(path, _spec(2, 4, BOX2, out), tmp_path, n_samples=64)
    assert v.status == "falsified"


def test_synthetic_disjunction_of_boxes_and_conjunctions(model2, tmp_path):
    box = ("(assert (or (and (>= X_0 -1) (<= X_0 -0.5) (>= X_1 -1) (<= X_1 1))\n"
           "            (and (>= X_0 0.5) (<= X_0 1) (>= X_1 -1) (<= X_1 1))))\n")
    safe = "(assert (or (and (>= Y_0 3)) (and (>= Y_1 2.5) (<= Y_0 1))))\n"
    v = _run_text(model2, _spec(2, 2, box, safe), tmp_path)
    assert v.status == "verified" and len(v.conjunction_margins) == 2
    unsafe = "(assert (or (and (>= Y_0 3)) (and (>= Y_1 1.2) (<= Y_0 0.1))))\n"
    v = _run_text(model2, _spec(2, 2, box, unsafe), tmp_path)
    assert v.status == "falsified"


def test_conjunction_without_output_rows_is_falsified(model2, tmp_path):
    """Every input of the box is a counterexample when the unsafe region is all outputs."""
    v = _run_text(model2, _spec(2, 2, BOX2, ""), tmp_path)
    assert v.status == "falsified" and v.margin == -np.inf


def test_boundary_counterexample_is_not_verified(tmp_path):
    """y = x on [0, 1] and unsafe y ≥ 1: the single counterexample x = 1 is a vertex."""
    path = _affine_relu_model(tmp_path / "id.onnx", np.ones((1, 1)), np.zeros(1), relu=False)
    text = _spec(1, 1, "(assert (>= X_0 0))\n(assert (<= X_0 1))\n", "(assert (>= Y_0 1))\n")
    v = _run_text(path, text, tmp_path)
    assert v.status == "falsified"
    assert v.counterexample[0].item() == 1.0


def test_timeout_zero_is_unknown(model2, tmp_path):
    v = _run_text(model2, _spec(2, 2, BOX2, "(assert (>= Y_0 2.5))\n"), tmp_path, timeout=0.0)
    assert v.status == "unknown" and v.margin == -np.inf and "timed out" in v.note


def test_path_and_property_give_the_same_verdict(model2, tmp_path):
    spec = tmp_path / "p.vnnlib"
    spec.write_text(_spec(2, 2, BOX2, "(assert (>= Y_0 1.5))\n(assert (>= Y_1 1.5))\n"))
    net = bp.load(model2)
    a = bp.verify(net, spec)
    b = bp.verify(net, load_vnnlib(spec, 2, 2))
    # y0, y1 ≥ 1.5 needs x0 ≥ 1.5: no counterexample; the bounds (y ∈ [0, 2]²) miss it, input
    # splitting finds it
    assert a.status == b.status == "verified"
    assert a.margin == b.margin and a.search_margin == b.search_margin
    assert a.proof is not None and b.proof is not None  # the Property keeps its file path


def test_property_for_another_model_is_rejected(model2):
    prop = parse_vnnlib(_spec(3, 2, BOX2 + "(assert (>= X_2 0))\n(assert (<= X_2 1))\n", ""),
                        3, 2)
    with pytest.raises(BoundpropError, match="3 inputs and 2 outputs"):
        bp.verify(bp.load(model2), prop)
    with pytest.raises(BoundpropError, match="needs a Property"):
        bp.verify(bp.load(model2), 42)


def test_without_onnxruntime_model_nothing_is_falsified(model2, tmp_path):
    spec = tmp_path / "p.vnnlib"
    spec.write_text(_spec(2, 2, BOX2, "(assert (>= Y_0 1.99))\n"))
    net = bp.load(model2)
    net.source = ""
    v = bp.verify(net, spec)
    assert v.status == "unknown" and "onnxruntime" in v.note and v.search_margin < 0


def _unsafe_reference(y, conjs):
    """The plain reading: y satisfies every row of some conjunction (a NaN satisfies none)."""
    for a, b in conjs:
        rows = [sum(a[k, j] * y[j] for j in range(len(y)) if a[k, j] != 0)
                for k in range(len(b))]
        if all(r <= bk for r, bk in zip(rows, b)):
            return True
    return False


def test_stacked_unsafe_region_matches_the_plain_reading():
    """verifier._Unsafe stacks every conjunction's rows into one matrix; its margins and its
    membership test must agree with one conjunction at a time, ±inf and NaN outputs included."""
    from boundprop.verifier import _Unsafe

    rng = np.random.default_rng(0)
    for _ in range(200):
        n_out = int(rng.integers(1, 4))
        conjs = [(rng.integers(-1, 2, (k, n_out)).astype(float), rng.normal(size=k))
                 for k in rng.integers(1, 4, int(rng.integers(1, 6)))]
        u = _Unsafe(conjs)
        ys = rng.normal(size=(8, n_out)) * 3
        ys[0, 0] = -np.inf
        ys[1, -1] = np.nan
        ys[2, 0] = np.inf
        for y in ys:
            assert u.contains(y) == _unsafe_reference(y, conjs), (y, conjs)
        finite = ys[3:]
        naive = np.min([np.max(finite @ a.T - b, axis=1) for a, b in conjs], axis=0)
        np.testing.assert_allclose(u.scores(finite), naive)
