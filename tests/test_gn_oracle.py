"""The Gauss-Newton Jacobian oracle (boundprop.gn.oracle.Problem): finite-difference Jacobians
through onnxruntime against analytic ones (refs/gn.md §2 tolerances), batching and its
verification, the float64 graph copy, counters, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from boundprop.errors import BoundpropError
from boundprop.gn.onnx_graph import free_batch as _free_batch
from boundprop.gn.oracle import Problem
from boundprop.gn.weight_batching import batch_weights as _batch_weights

MODELS = Path(__file__).resolve().parent.parent / "models"
D_IN, HID, D_OUT = 5, 7, 3


# ------------------------------------------------------------------------------ helpers
def mlp_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W1": rng.standard_normal((D_IN, HID)) / np.sqrt(D_IN),
            "b1": rng.uniform(-0.1, 0.1, HID),
            "W2": rng.standard_normal((D_OUT, HID)) / np.sqrt(HID),  # Gemm transB=1
            "b2": rng.uniform(-0.1, 0.1, D_OUT)}


def build_mlp(path: Path, act: str = "Tanh", dtype=np.float32, batch=1, seed: int = 0,
              ir_version: int = 7, opset: int = 13) -> dict[str, np.ndarray]:
    """x [batch, D_IN] → MatMul W1 → Add b1 → act → Gemm(W2ᵀ, b2) → y [batch, D_OUT]."""
    w = mlp_weights(seed)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inits = [numpy_helper.from_array(v.astype(dtype), k) for k, v in w.items()]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["z0"]),
             helper.make_node("Add", ["z0", "b1"], ["z"]),
             helper.make_node(act, ["z"], ["h"]),
             helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], transB=1)]
    inputs = [helper.make_tensor_value_info("x", elem, [batch, D_IN])]
    if ir_version < 4:  # IR 3: every initializer is also a graph input (not overridable)
        inputs += [helper.make_tensor_value_info(t.name, elem, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "mlp", inputs,
                              [helper.make_tensor_value_info("y", elem, [batch, D_OUT])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=ir_version)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {k: v.astype(dtype).astype(np.float64) for k, v in w.items()}  # as stored


def act_fns(act: str):
    if act == "Tanh":
        return np.tanh, lambda z: 1 - np.tanh(z) ** 2
    return lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)


def analytic_input_jacobian(w, x: np.ndarray, act: str) -> np.ndarray:
    """J of the flattened outputs w.r.t. the flattened input x [N, D_IN] (block diagonal)."""
    _, dsig = act_fns(act)
    z = x @ w["W1"] + w["b1"]
    n = x.shape[0]
    J = np.zeros((n * D_OUT, n * D_IN))
    for i in range(n):
        J[i * D_OUT:(i + 1) * D_OUT, i * D_IN:(i + 1) * D_IN] = \
            w["W2"] @ np.diag(dsig(z[i])) @ w["W1"].T
    return J


def away_from_kinks(w, n: int = 1, margin: float = 0.15, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        x = rng.uniform(-1, 1, (n, D_IN))
        if np.min(np.abs(x @ w["W1"] + w["b1"])) > margin:
            return x
    raise AssertionError("no point away from the kinks")


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def ort_run(path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


# ----------------------------------------------------------------- accuracy of J (refs §2)
@pytest.mark.parametrize("act", ["Tanh", "Relu"])
@pytest.mark.parametrize("graph,dtype,tol", [
    (np.float32, "float32", 1e-3),   # float32 graph as exported
    (np.float32, "auto", 1e-7),      # its float64 copy
    (np.float64, "auto", 1e-7),      # a native float64 graph
])
def test_central_jacobian_matches_analytic(tmp_path, act, graph, dtype, tol):
    path = tmp_path / "m.onnx"
    w = build_mlp(path, act, graph)
    x = away_from_kinks(w)
    P = Problem(path, dtype=dtype)
    assert P.dtype == ("float32" if dtype == "float32" else "float64")
    assert P.eps == np.finfo(P.dtype).eps
    J, r = P.jacobian(x.ravel())
    assert J.shape == (P.q, P.p) == (D_OUT, D_IN)
    assert rel(J, analytic_input_jacobian(w, x, act)) < tol
    sig, _ = act_fns(act)
    y = sig(x @ w["W1"] + w["b1"]) @ w["W2"].T + w["b2"]
    np.testing.assert_allclose(r, y.ravel(), atol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype,tol", [("float32", 5e-3), ("float64", 1e-5)])
def test_forward_jacobian_matches_analytic(tmp_path, dtype, tol):
    path = tmp_path / "m.onnx"
    w = build_mlp(path, "Tanh")
    x = away_from_kinks(w)
    P = Problem(path, dtype=dtype, difference="forward")
    J, _ = P.jacobian(x.ravel())
    err = rel(J, analytic_input_jacobian(w, x, "Tanh"))
    assert err < tol
    central = Problem(path, dtype=dtype).jacobian(x.ravel())[0]
    assert rel(central, analytic_input_jacobian(w, x, "Tanh")) < err  # central is better


def test_data_batch_input_jacobian_is_block_diagonal(tmp_path):
    """Input of shape [3, D_IN]: K perturbed copies run as 3K rows (verified), J block diag."""
    path = tmp_path / "m.onnx"
    w = build_mlp(path, "Tanh", np.float64, batch=3)
    x = away_from_kinks(w, n=3, margin=0.0)
    P = Problem(path, x0=x)
    assert P.batched and P.output_shape == (3, D_OUT) and P.p == 3 * D_IN
    J, _ = P.jacobian(P.w0)
    assert P.ort_calls == 1
    assert rel(J, analytic_input_jacobian(w, x, "Tanh")) < 1e-7


# -------------------------------------------------------------------------------- jvp
def test_batched_jacobian_equals_column_by_column_jvp(tmp_path):
    path = tmp_path / "m.onnx"
    w = build_mlp(path, "Tanh")
    x = away_from_kinks(w).ravel()
    P = Problem(path, dtype="float32")
    J, _ = P.jacobian(x)
    cols = np.stack([P.jvp(x, np.eye(P.p)[j]) for j in range(P.p)], axis=1)
    np.testing.assert_allclose(cols, J, rtol=1e-12, atol=1e-12)
    allc = P.jvp(x, np.eye(P.p))  # all columns in one batch
    np.testing.assert_allclose(allc.T, J, rtol=1e-12, atol=1e-12)
    # general directions: J v, and the realized directions stay close to v
    V = np.random.default_rng(3).standard_normal((4, P.p))
    JV, D = P.jvp(x, V, return_directions=True)
    exact = V @ analytic_input_jacobian(w, x[None], "Tanh").T
    assert rel(JV, exact) < 1e-3
    assert rel(D, V) < 1e-5 and not np.array_equal(D, V)
    assert np.all(P.jvp(x, np.zeros((2, P.p))) == 0)


def test_jacobian_wrt_last_layer_weight(tmp_path):
    """Variables W2 (Gemm transB) and b2, a data batch of 4 rows on a batch-1 graph."""
    path = tmp_path / "m.onnx"
    w = build_mlp(path, "Tanh")
    X = np.random.default_rng(5).uniform(-1, 1, (4, D_IN))
    P = Problem(path, variables=["W2", "b2"], inputs=X, targets=np.zeros((4, D_OUT)))
    assert P.dtype == "float64" and P.p == D_OUT * HID + D_OUT and P.q == 4 * D_OUT
    np.testing.assert_array_equal(P.w0, np.concatenate([w["W2"].ravel(), w["b2"]]))
    J, r = P.jacobian(P.w0)
    H = np.tanh(X @ w["W1"] + w["b1"])
    Ja = np.zeros((4 * D_OUT, P.p))
    for n in range(4):
        for k in range(D_OUT):
            Ja[n * D_OUT + k, k * HID:(k + 1) * HID] = H[n]
            Ja[n * D_OUT + k, D_OUT * HID + k] = 1.0
    assert rel(J, Ja) < 1e-7
    np.testing.assert_allclose(r, (H @ w["W2"].T + w["b2"]).ravel(), atol=1e-12)
    assert P.batched_weights and P.batched and not P.notes
    assert P.ort_calls == 1 and P.forward_passes == 2 * P.p + 1  # all points in one run
    with pytest.raises(NotImplementedError):
        P.exact_jacobian(P.w0)
    # float32 graph, an old IR (3) model: the initializer becomes an overridable input
    old = tmp_path / "old.onnx"
    build_mlp(old, "Tanh", ir_version=3, opset=8)
    P32 = Problem(old, variables="W2", inputs=X[:1], dtype="float32")
    assert P32.dtype == "float32" and P32.p == D_OUT * HID and P32.batched_weights
    assert rel(P32.jacobian(P32.w0)[0], Ja[:D_OUT, :D_OUT * HID]) < 1e-3


# ------------------------------------------------------------------- exact_jacobian (IR)
@pytest.mark.parametrize("name", ["mlp_tanh", "mlp_relu"])
def test_exact_jacobian_matches_analytic(name):
    path = MODELS / f"{name}.onnx"
    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    layers = [(init[f"mm_W_{i}"], init[f"mm_b_{i}"]) for i in range(3)]
    act, dact = (np.tanh, lambda z: 1 - np.tanh(z) ** 2) if "tanh" in name else \
        (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float))
    rng = np.random.default_rng(0)
    for _ in range(100):  # a point away from the ReLU kinks
        x = rng.uniform(-1, 1, (1, 8))
        h, J, zs = x, np.eye(8), []
        for i, (W, b) in enumerate(layers):
            z = h @ W + b
            J = J @ W
            if i < 2:
                zs.append(z)
                J = J * dact(z)
                h = act(z)
        if min(np.min(np.abs(z)) for z in zs) > 0.05:
            break
    P = Problem(path)
    E = P.exact_jacobian(x.ravel())
    np.testing.assert_allclose(E, J.T, rtol=1e-12, atol=1e-12)
    assert P.dtype == "float64" and rel(P.jacobian(x.ravel())[0], J.T) < 1e-7


# ------------------------------------------------------------------ dtype and batching
def test_float64_copy_used_for_mlp_and_refused_for_conv():
    P = Problem(MODELS / "mlp_tanh.onnx")
    assert P.dtype == "float64" and P.eps == np.finfo(np.float64).eps
    L = Problem(MODELS / "lenet.onnx")
    assert L.dtype == "float32" and any("Conv" in n for n in L.notes)
    with pytest.raises(BoundpropError, match="Conv"):
        Problem(MODELS / "lenet.onnx", dtype="float64")
    assert Problem(MODELS / "mlp_tanh.onnx", dtype="float32").dtype == "float32"


def test_lenet_batched_outputs_equal_per_point_runs():
    path = MODELS / "lenet.onnx"
    P = Problem(path)
    assert P.batched
    W = np.random.default_rng(1).uniform(0, 1, (5, P.p))
    Y = P.outputs(W)
    assert Y.shape == (5, 1, 10) and P.ort_calls == 1 and P.forward_passes == 5
    ref = np.stack([ort_run(path, w.reshape(1, 1, 28, 28).astype(np.float32)) for w in W])
    np.testing.assert_allclose(Y, ref, rtol=1e-6, atol=1e-6)
    # a small memory budget: several runs, the same values
    S = Problem(path, memory_budget=200_000)
    Ys = S.outputs(W)
    assert 1 < S.ort_calls <= 5
    np.testing.assert_allclose(Ys, ref, rtol=1e-6, atol=1e-6)


def test_training_mode_batchnorm_is_not_batched():
    """Batch statistics mix the rows: K points must not share a run."""
    path = MODELS / "vgg_small_smooth_bn_train.onnx"
    P = Problem(path)
    assert not P.batched and any("mix" in n for n in P.notes)
    W = np.random.default_rng(2).uniform(0, 1, (2, P.p))
    Y = P.outputs(W)
    assert P.ort_calls == 2
    ref = np.stack([ort_run(path, w.reshape(4, 3, 16, 16).astype(np.float32)) for w in W])
    np.testing.assert_allclose(Y, ref, rtol=1e-6, atol=1e-6)
    # what a naive batch of both points would compute is different
    free = _free_batch(onnx.load(str(path)), ["input"], "output")
    s = ort.InferenceSession(free.SerializeToString(), providers=["CPUExecutionProvider"])
    naive = s.run(None, {"input": W.reshape(8, 3, 16, 16).astype(np.float32)})[0]
    assert np.max(np.abs(naive.reshape(Y.shape) - ref)) > 1e-2


def test_counters_count(tmp_path):
    path = tmp_path / "m.onnx"
    build_mlp(path, "Tanh")
    P = Problem(path)
    assert (P.forward_passes, P.ort_calls) == (0, 0) and P.setup_ort_calls > 0
    P.jacobian(np.zeros(P.p))
    assert (P.forward_passes, P.ort_calls) == (2 * P.p + 1, 1)
    P.jvp(np.zeros(P.p), np.ones((3, P.p)))
    assert (P.forward_passes, P.ort_calls) == (2 * P.p + 1 + 6, 2)
    P.residuals(np.zeros((4, P.p)))
    assert (P.forward_passes, P.ort_calls) == (2 * P.p + 1 + 10, 3)
    F = Problem(path, difference="forward")
    F.jacobian(np.zeros(F.p))
    F.jvp(np.zeros(F.p), np.ones((3, F.p)))
    assert (F.forward_passes, F.ort_calls) == (F.p + 1 + 4, 2)


def test_residuals_and_targets(tmp_path):
    path = tmp_path / "m.onnx"
    build_mlp(path, "Tanh", batch=2)
    x = np.random.default_rng(0).uniform(-1, 1, (2, D_IN))
    t = np.arange(D_OUT, dtype=float)
    P = Problem(path, x0=x, targets=t)  # broadcast over the rows
    Y = P.outputs(P.w0[None])[0]
    np.testing.assert_allclose(P.residuals(P.w0[None])[0], (Y - t).ravel())
    C = Problem(path, x0=x, targets=[2, 0], loss="cross_entropy")
    np.testing.assert_allclose(C.residuals(C.w0[None])[0], Y.ravel(), atol=1e-12)
    assert C.q == 2 * D_OUT and list(C.targets) == [2, 0] and C.regularization == 0.0


# --------------------------------------------------------------------------- bad input
def test_bad_input(tmp_path):
    path = tmp_path / "m.onnx"
    build_mlp(path, "Tanh")
    X = np.zeros((1, D_IN))

    def fails(match, *args, **kw):
        with pytest.raises(BoundpropError, match=match) as e:
            Problem(*args, **kw)
        assert "\n" not in str(e.value)

    fails("no initializer named 'W9'.*W1", path, variables=["W9"], inputs=X)
    fails("targets of shape", path, targets=np.zeros(5))
    fails("one class per output row", path, targets=[0, 1], loss="cross_entropy")
    fails(r"lie in \[0, 2\]", path, targets=[3], loss="cross_entropy")
    fails("unknown loss", path, loss="hinge")
    fails("unknown dtype", path, dtype="float16")
    fails("data batch", path, variables=["W2"])
    fails("does not fit", path, x0=np.zeros(D_IN + 1))
    fails("no such file", tmp_path / "missing.onnx")

    # an integer output (ArgMax) is not differentiable
    g = helper.make_graph([helper.make_node("ArgMax", ["x"], ["y"], axis=1)], "argmax",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 1])])
    argmax = tmp_path / "argmax.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(argmax))
    fails("not differentiable", argmax)

    # a non-float initializer (a Reshape shape) chosen as a variable
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
                          [numpy_helper.from_array(np.array([2, 2], np.int64), "shape")])
    reshape = tmp_path / "reshape.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(reshape))
    fails("not a float tensor", reshape, variables=["shape"], inputs=np.zeros((1, 4)))
    assert Problem(reshape).output_shape == (2, 2)  # the input itself is fine


def test_hard_coded_reshape_is_freed_and_verified():
    """PyTorch's view(1, -1) becomes Reshape [-1, C]: batched, equal to per-point runs."""
    path = MODELS / "torch_cnn_torchscript.onnx"
    P = Problem(path)
    assert P.batched
    W = np.random.default_rng(4).uniform(0, 1, (3, P.p))
    Y = P.outputs(W)
    assert P.ort_calls == 1
    ref = np.stack([ort_run(path, w.reshape(P.input_shape).astype(np.float32)) for w in W])
    np.testing.assert_allclose(Y, ref, rtol=1e-6, atol=1e-6)


def test_initializer_variables_on_training_mode_batchnorm():
    """8 data rows on a graph with a fixed batch of 4 that mixes its rows: two runs of 4 rows
    per point, as the model itself would compute them."""
    path = MODELS / "vgg_small_smooth_bn_train.onnx"
    X = np.random.default_rng(6).uniform(0, 1, (8, 3, 16, 16)).astype(np.float32)
    P = Problem(path, variables=["gemm_W_1", "gemm_b_1"], inputs=X)
    assert P.output_shape == (8, 10) and P.q == 80
    Y = P.outputs(P.w0)[0]
    assert P.ort_calls == 2 and P.forward_passes == 1
    ref = np.concatenate([ort_run(path, X[:4]), ort_run(path, X[4:])])
    np.testing.assert_allclose(Y, ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(BoundpropError, match="multiple of 4"):
        Problem(path, variables=["gemm_W_1"], inputs=X[:6])


# ------------------------------------------------------- weight variables batched (refs §4)
def looped(P: Problem, W: np.ndarray) -> np.ndarray:
    """The per-point path: one run of the unbatched session per weight point."""
    return np.stack([P._point_output(w) for w in W])


def assert_batched_equals_looped(P: Problem, W: np.ndarray) -> np.ndarray:
    calls = P.ort_calls
    Y = P.outputs(W)
    assert P.ort_calls - calls == (P._data_chunks or 1)  # one run for all K points
    ref = looped(P, W)
    tol = 1e-6 if P.dtype == "float32" else 1e-12
    assert Y.shape == ref.shape == (len(W), *P.output_shape)
    assert np.max(np.abs(Y - ref)) <= tol * np.max(np.abs(ref))
    return Y


def data_for(path: Path, rows: int, seed: int = 0) -> np.ndarray:
    g = onnx.load(str(path)).graph
    inits = {t.name for t in g.initializer}
    vi = next(i for i in g.input if i.name not in inits)
    dims = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
    return np.random.default_rng(seed).uniform(-1, 1, (rows, *dims[1:]))


def mlp784_problem(**kw) -> Problem:
    import boundprop as bp
    from boundprop.gn.layers import last_layer_names
    from boundprop.sets import default_input_set

    path = MODELS / "mlp_784_100_100_10_relu.onnx"
    net = bp.load(path)
    X = default_input_set(net).sample(128, np.random.default_rng(0)).reshape(128, -1)
    return Problem(path, variables=last_layer_names(path), inputs=X,
                   targets=np.zeros((128, 10)), **kw)


@pytest.mark.parametrize("name,layer,rows", [
    ("mlp_784_100_100_10_relu", "last", 16),   # Gemm transB, float64 copy
    ("mlp_784_100_100_10_relu", "first", 4),   # Gemm, then Relu/Gemm on [K, N, h]
    ("mlp_tanh", "last", 5),                   # MatMul weight + Add bias
    ("mlp_tanh", "first", 5),
    ("mlp_relu", "last", 3),                   # opset 9 MatMul
    ("torch_mlp_gelu_dynamo", "last", 4),      # a dynamo export (Gemm, Gelu)
    ("layernorm_mlp", "first", 2),             # rank-3 data: W padded, ReduceMean axes moved
    ("mlp_opset9_softmax", "last", 3),         # Softmax (opset 9 axis) and Flatten moved
    ("logsoftmax_head_opset11", "last", 3),
    ("vgg_small_smooth_bn_train", "last", 8),  # fixed batch 4 that mixes: 2 runs per K points
])
@pytest.mark.parametrize("dtype", ["auto", "float32"])
def test_batched_weight_outputs_equal_looped(name, layer, rows, dtype):
    from boundprop.gn.layers import last_layer_names

    path = MODELS / f"{name}.onnx"
    if layer == "last":
        names = last_layer_names(path)
    else:
        g = onnx.load(str(path)).graph
        inits = {t.name for t in g.initializer}
        first = next(n for n in g.node if n.op_type in ("Gemm", "MatMul")
                     and any(i in inits for i in n.input))
        names = [i for i in first.input if i in inits]
    P = Problem(path, variables=names, inputs=data_for(path, rows), dtype=dtype)
    assert P.batched_weights and P.batched, P.notes
    W = P.w0 + 0.1 * np.random.default_rng(1).standard_normal((5, P.p))
    assert_batched_equals_looped(P, W)
    assert P.forward_passes == 5


def test_batched_weights_match_onnxruntime_on_the_exported_graph():
    """Independent of the oracle's sessions: float32 outputs with the last layer replaced."""
    P = mlp784_problem(dtype="float32")
    assert P.batched_weights and P.dtype == "float32"
    W = P.w0 + 0.05 * np.random.default_rng(2).standard_normal((3, P.p))
    Y = P.outputs(W)
    model = onnx.load(str(MODELS / "mlp_784_100_100_10_relu.onnx"))
    for y, w in zip(Y, W):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        for t in m.graph.initializer:
            if t.name == "gemm_W_2":
                t.CopyFrom(numpy_helper.from_array(w[:1000].reshape(10, 100).astype(np.float32),
                                                   t.name))
            elif t.name == "gemm_b_2":
                t.CopyFrom(numpy_helper.from_array(w[1000:].astype(np.float32), t.name))
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = np.concatenate([s.run(None, {"input": x[None].astype(np.float32)})[0]
                              for x in P.inputs])
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


def test_last_layer_jacobian_in_one_run():
    """mlp_784's last layer is linear in (W, b): J[n·10+k, k·100+j] = H[n, j], J[n·10+k,
    1000+k] = 1, with H the second hidden layer; one batched run instead of p+1."""
    P = mlp784_problem(difference="forward")
    assert P.batched_weights and P.dtype == "float64" and (P.p, P.q) == (1010, 1280)
    J, r = P.jacobian(P.w0)
    assert P.ort_calls <= 3 and P.forward_passes == P.p + 1
    init = {t.name: numpy_helper.to_array(t).astype(np.float64)
            for t in onnx.load(str(MODELS / "mlp_784_100_100_10_relu.onnx")).graph.initializer}
    H = np.asarray(P.inputs, dtype=np.float64)  # the float64 graph takes the data as is
    for i in range(2):
        H = np.maximum(H @ init[f"gemm_W_{i}"].T + init[f"gemm_b_{i}"], 0)
    Ja = np.zeros((P.q, P.p))
    for k in range(10):
        Ja[k::10, k * 100:(k + 1) * 100] = H
        Ja[k::10, 1000 + k] = 1.0
    assert rel(J, Ja) < 1e-6
    np.testing.assert_allclose(r, (H @ init["gemm_W_2"].T + init["gemm_b_2"]).ravel(),
                               atol=1e-10)
    # the looped path (one run per point) gives the same Jacobian
    P.batched_weights = P._batched = False
    calls = P.ort_calls
    Jl, rl = P.jacobian(P.w0)
    assert P.ort_calls - calls == P.p + 1
    np.testing.assert_allclose(J, Jl, rtol=0, atol=1e-6 * np.max(np.abs(Jl)))
    np.testing.assert_allclose(r, rl, rtol=0, atol=1e-12)


def test_mlp_tanh_last_layer_central_jacobian():
    path = MODELS / "mlp_tanh.onnx"
    X = data_for(path, 6, seed=3)
    P = Problem(path, variables=["mm_W_2", "mm_b_2"], inputs=X, targets=np.zeros((6, 4)))
    assert P.batched_weights and P.dtype == "float64"
    J, _ = P.jacobian(P.w0)
    assert P.ort_calls == 1 and P.forward_passes == 2 * P.p + 1
    init = {t.name: numpy_helper.to_array(t).astype(np.float64)
            for t in onnx.load(str(path)).graph.initializer}
    H = X
    for i in range(2):
        H = np.tanh(H @ init[f"mm_W_{i}"] + init[f"mm_b_{i}"])
    Ja = np.zeros((P.q, P.p))  # y = H W + b with W [16, 4]: ∂y[n,k]/∂W[j,k] = H[n,j]
    for k in range(4):
        Ja[k::4, k:64:4] = H
        Ja[k::4, 64 + k] = 1.0
    assert rel(J, Ja) < 1e-8


def test_conv_weight_falls_back_to_the_loop():
    path = MODELS / "lenet.onnx"
    g = onnx.load(str(path)).graph
    conv = next(n for n in g.node if n.op_type == "Conv")
    X = data_for(path, 2)
    P = Problem(path, variables=[conv.input[1]], inputs=X)
    assert not P.batched_weights and not P.batched
    assert any("Conv" in n and "weight point" in n for n in P.notes)
    W = P.w0 + 0.01 * np.random.default_rng(0).standard_normal((3, P.p))
    Y = P.outputs(W)
    assert P.ort_calls == 3 and P.forward_passes == 3
    np.testing.assert_array_equal(Y, looped(P, W))
    # its last layer batches
    from boundprop.gn.layers import last_layer_names

    L = Problem(path, variables=last_layer_names(path), inputs=X)
    assert L.batched_weights


def gemm_chain(path: Path, dtype=np.float32, tail: str | None = None):
    """xT [D_IN, 3] → Gemm(transA, transB, α, β, C [1, HID]) → Tanh → Transpose (no perm) →
    Gemm(transA, W2 [HID, D_OUT], C2 [D_OUT]) → y [3, D_OUT] (→ ``tail`` op)."""
    rng = np.random.default_rng(7)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    w = {"W1": rng.standard_normal((HID, D_IN)), "C1": rng.uniform(-1, 1, (1, HID)),
         "W2": rng.standard_normal((HID, D_OUT)), "C2": rng.uniform(-1, 1, D_OUT)}
    inits = [numpy_helper.from_array(v.astype(dtype), k) for k, v in w.items()]
    nodes = [helper.make_node("Gemm", ["xT", "W1", "C1"], ["z"], transA=1, transB=1,
                              alpha=0.7, beta=1.3),
             helper.make_node("Tanh", ["z"], ["h"]),
             helper.make_node("Transpose", ["h"], ["hT"]),
             helper.make_node("Gemm", ["hT", "W2", "C2"], ["y" if tail is None else "g"],
                              transA=1)]
    if tail == "CumSum":  # a cumulative sum over the data rows: axis 0 would be K batched
        inits.append(numpy_helper.from_array(np.array(0, np.int64), "axis"))
        nodes.append(helper.make_node("CumSum", ["g", "axis"], ["y"]))
    graph = helper.make_graph(nodes, "chain",
                              [helper.make_tensor_value_info("xT", elem, [D_IN, 3])],
                              [helper.make_tensor_value_info("y", elem, [3, D_OUT])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.parametrize("dtype", ["float32", "auto"])
@pytest.mark.parametrize("names", [["W1", "C1"], ["W2", "C2"], ["W1", "C1", "W2", "C2"],
                                   ["C1"], ["W2"]])
def test_gemm_rewrite_trans_alpha_beta(tmp_path, names, dtype):
    path = tmp_path / "chain.onnx"
    gemm_chain(path)
    xT = np.random.default_rng(8).uniform(-1, 1, (D_IN, 3))
    P = Problem(path, variables=names, inputs=xT, dtype=dtype)
    assert P.batched_weights, P.notes
    assert P.dtype == ("float32" if dtype == "float32" else "float64")
    W = P.w0 + 0.3 * np.random.default_rng(9).standard_normal((4, P.p))
    assert_batched_equals_looped(P, W)


def test_rewritten_graph_shapes(tmp_path):
    path = tmp_path / "chain.onnx"
    gemm_chain(path)
    model = onnx.load(str(path))
    m, batched, why = _batch_weights(model, ["W1", "C1"], [(HID, D_IN), (1, HID)], "y",
                                     np.float32)
    assert why is None and {"z", "h", "hT", "y"} <= batched
    ins = {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
           for vi in m.graph.input}
    assert ins["W1"] == ["gn_weights", HID, D_IN] and ins["C1"] == ["gn_weights", 1, HID]
    assert not {"W1", "C1"} & {t.name for t in m.graph.initializer}
    assert "Gemm" not in [n.op_type for n in m.graph.node]
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = s.run(None, {"xT": np.ones((D_IN, 3), np.float32),
                     "W1": np.ones((6, HID, D_IN), np.float32),
                     "C1": np.ones((6, 1, HID), np.float32)})[0]
    assert y.shape == (6, 3, D_OUT)
    # a variable feeding anything but Gemm/MatMul/elementwise ops is refused with a reason
    bad = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "conv",
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                           [1, 1, 4, 4])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                           [1, 1, 2, 2])],
                            [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")])
    conv = helper.make_model(bad, opset_imports=[helper.make_opsetid("", 13)])
    assert _batch_weights(conv, ["w"], [(1, 1, 3, 3)], "y", np.float32)[2].startswith(
        "'w' feeds Conv")


def test_batch_mixing_op_downstream_is_detected(tmp_path):
    """CumSum over axis 0 accepts the extra axis but sums over the K points: the verification
    rejects the batched graph and the loop gives the right values."""
    path = tmp_path / "cumsum.onnx"
    gemm_chain(path, tail="CumSum")
    xT = np.random.default_rng(8).uniform(-1, 1, (D_IN, 3))
    P = Problem(path, variables=["W2", "C2"], inputs=xT, dtype="float32")
    assert not P.batched_weights and any("differ" in n for n in P.notes)
    W = P.w0 + 0.3 * np.random.default_rng(9).standard_normal((3, P.p))
    Y = P.outputs(W)
    assert P.ort_calls == 3
    np.testing.assert_array_equal(Y, looped(P, W))
    assert np.all(np.diff(Y[:, :, 0], axis=1) != 0)


def test_weight_batches_are_chunked_to_the_memory_budget():
    path = MODELS / "mlp_tanh.onnx"
    X = data_for(path, 64)
    P = Problem(path, variables=["mm_W_2", "mm_b_2"], inputs=X, memory_budget=60_000)
    assert P.batched_weights and 1 < P._chunk < 20
    W = P.w0 + 0.1 * np.random.default_rng(5).standard_normal((20, P.p))
    Y = P.outputs(W)
    assert P.ort_calls == -(-20 // P._chunk) and P.forward_passes == 20
    np.testing.assert_allclose(Y, looped(P, W), rtol=0, atol=1e-12 * np.max(np.abs(Y)))
