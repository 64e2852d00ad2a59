"""The Jacobian oracle of the Gauss-Newton solver: an ONNX model run by onnxruntime as a black
box, with Jacobians from batched finite differences (``../shared/refs/gn.md`` §2, §4).

``Problem`` fixes what is fitted (the model's input, or chosen initializers made overridable
graph inputs), the targets and the loss, and offers point evaluations (``outputs``,
``residuals``), directional derivatives (``jvp``) and the full Jacobian (``jacobian``) with
every perturbed point of one call evaluated in as few onnxruntime runs as possible:

- the batch axis of a copy of the graph is made symbolic so that K points run as one batch
  of K·N rows, and this is *verified* once on distinct points against per-point runs (a
  training-mode batch norm, or a Reshape with a hard-coded batch, makes the check fail and the
  oracle falls back to one run per point instead of computing wrong values);
- steps follow refs §2: central ``h = ε^(1/3)(1+‖w‖)/‖v‖``, forward ``h = √ε(1+‖w‖)/‖v‖`` with ε
  the machine epsilon of the graph's dtype, and the *realized* perturbation (the dtype-rounded
  point minus the dtype-rounded base) divides the differences;
- ``dtype="auto"`` runs a float64 copy of the graph when onnxruntime has double kernels for
  all its ops (the derivatives are then 1e4–1e5 times more accurate), else the float32 graph;
- initializer variables of Gemm/MatMul layers (2-D weights, their biases) are batched too
  (refs §4 "Weights as inputs"): a rewritten copy takes each variable as a graph input
  [K, *shape], Gemm becomes MatMul (+ Add), which broadcasts x [N, d] @ W [K, d, h] →
  [K, N, h], and the axes of downstream ops move one axis right. It is kept only if K = 3
  distinct points give the per-point outputs (1e-6 relative in float32, 1e-12 in float64);
  otherwise (a Conv weight, an op that does not broadcast) one run per point, with a note.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from boundprop.errors import BoundpropError

_FLOAT, _FLOAT16, _DOUBLE = 1, 10, 11  # onnx.TensorProto elem types
_NP_OF_ELEM = {_FLOAT: np.float32, _DOUBLE: np.float64, _FLOAT16: np.float16}
_NAME_OF_NP = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
               np.dtype(np.float16): "float16"}
_BATCH_DIM = "gn_batch"


# ------------------------------------------------------------------------------ graph edits
def _load_model(path: Path):
    """The ModelProto with its external data, through the importer's safety checks."""
    import onnx

    from boundprop.importer import _check_external_data, _read_model

    model = _read_model(path)
    if _check_external_data(model, path):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as e:
            raise BoundpropError(f"{path}: could not read its external data ({e})") from None
    return model


def _dims(vi) -> list:
    """Dims of a value info: int for a fixed dim, the dim_param string (or None) otherwise."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in t.shape.dim]


def _graphs(graph):
    """The graph and all its subgraphs (If/Loop/Scan bodies)."""
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == a.GRAPH:
                yield from _graphs(a.g)
            elif a.type == a.GRAPHS:
                for g in a.graphs:
                    yield from _graphs(g)


def _to_double_tensor(t):
    from onnx import numpy_helper

    if t.data_type == _FLOAT:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))


def _to_float64(model):
    """A copy of ``model`` computing in float64: float initializers, Constant values, graph
    inputs/outputs/value infos, Cast targets and dtype attributes become double."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for g in _graphs(m.graph):
        for t in g.initializer:
            _to_double_tensor(t)
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            tt = vi.type.tensor_type
            if tt.elem_type == _FLOAT:
                tt.elem_type = _DOUBLE
        for node in g.node:
            for a in list(node.attribute):
                if a.type == a.TENSOR:
                    _to_double_tensor(a.t)
                elif a.type == a.TENSORS:
                    for t in a.tensors:
                        _to_double_tensor(t)
                elif a.name in ("to", "dtype") and a.type == a.INT and a.i == _FLOAT:
                    a.i = _DOUBLE
            if node.op_type == "Constant":
                for a in list(node.attribute):
                    if a.name in ("value_float", "value_floats"):
                        value = np.asarray(a.f if a.name == "value_float" else list(a.floats),
                                           dtype=np.float64)
                        node.attribute.remove(a)
                        node.attribute.append(helper.make_attribute(
                            "value", onnx.numpy_helper.from_array(value)))
    return m


def _free_batch(model, data_names: list[str], output_name: str):
    """A copy of ``model`` whose data inputs and output have a symbolic leading dim (value
    infos dropped: onnxruntime re-infers them), or None when the dims do not allow it.
    Reshapes to a constant shape starting with the fixed batch (PyTorch's ``view(1, -1)``)
    get ``[-1, *inferred dims]`` instead. The caller must verify the result."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    ins = [vi for vi in g.input if vi.name in data_names]
    out = [vi for vi in g.output if vi.name == output_name]
    dims = [_dims(vi) for vi in ins + out]
    if not ins or not out or any(len(d) == 0 for d in dims):
        return None
    lead = {d[0] for d in dims}
    if len(lead) > 1 and all(isinstance(d, int) and d > 0 for d in lead):
        return None  # the output's fixed leading dim is not the batch of the inputs
    n0 = dims[0][0]
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name in data_names:
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_param = _BATCH_DIM
    for vi in m.graph.output:
        if vi.type.tensor_type.HasField("shape") and len(vi.type.tensor_type.shape.dim):
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_param = _BATCH_DIM if vi.name == output_name \
                else "gn_other_" + vi.name
    del m.graph.value_info[:]
    if isinstance(n0, int) and any(n.op_type == "Reshape" for n in g.node):
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            shapes = {vi.name: _dims(vi) for vi in inferred.graph.value_info}
        except Exception:
            shapes = {}
        consts = {t.name: t for t in g.initializer}
        consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant"
                       for a in n.attribute if a.name == "value"})
        for k, node in enumerate(m.graph.node):
            if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in consts:
                continue
            target = numpy_helper.to_array(consts[node.input[1]])
            after = shapes.get(node.output[0], [])
            if (target.ndim == 1 and target.size and target[0] == n0 and after
                    and after[0] == n0 and all(isinstance(d, int) for d in after)):
                name = f"{node.output[0]}__gn_batch_shape_{k}"
                m.graph.initializer.append(numpy_helper.from_array(
                    np.array([-1, *after[1:]], dtype=np.int64), name))
                node.input[1] = name
    return m


def _expose_initializers(model, names: list[str]):
    """A copy where the initializers ``names`` are also graph inputs (overridable; IR ≥ 4)."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    if m.ir_version < 4:
        m.ir_version = 4
    present = {vi.name for vi in m.graph.input}
    inits = {t.name: t for t in m.graph.initializer}
    for name in names:
        if name not in present:
            t = inits[name]
            m.graph.input.append(helper.make_tensor_value_info(name, t.data_type, list(t.dims)))
    return m


_WEIGHT_DIM = "gn_weights"
_BIAS_OPS = ("Add", "Sub", "Mul", "Div")  # elementwise consumers of a variable (bias, scale)


def _tensor_ranks(model) -> dict[str, int]:
    """Rank of every tensor of the main graph whose shape inference knows it."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    g = inferred.graph
    ranks = {t.name: len(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    return ranks


_AXIS_OPS = ("Concat", "Split", "Gather", "Flatten", "Softmax", "LogSoftmax", "Hardmax",
             "LayerNormalization", "ArgMax", "ArgMin")
_AXES_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
             "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Squeeze",
             "Unsqueeze")


def _shift_axes(node, opset: int, rank, consts: dict, const):
    """``node`` (its first input gained a leading K axis) with its non-negative axes moved
    one axis right: ``axis``/``axes`` attributes, constant ``axes`` inputs (Reduce*, Squeeze,
    Unsqueeze, Slice), Transpose's ``perm``, a constant Reshape target (K prepended as 0,
    "copy this dim"). Softmax-like ops of opset < 13 get the default axis 1 written out.
    Other nodes are returned as they are."""
    import onnx
    from onnx import helper, numpy_helper

    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return node
    new = onnx.NodeProto()
    new.CopyFrom(node)
    attrs = {a.name: a for a in new.attribute}

    def set_attr(name, value):
        if name in attrs:
            new.attribute.remove(attrs[name])
        new.attribute.append(helper.make_attribute(name, value))

    def shifted(values):
        return [int(v) + 1 if int(v) >= 0 else int(v) for v in values]

    def const_input(k):
        name = new.input[k] if len(new.input) > k else ""
        return numpy_helper.to_array(consts[name]) if name in consts else None

    if op in _AXIS_OPS:
        default = {"Flatten": 1, "LayerNormalization": -1}.get(op, 0)
        if op in ("Softmax", "LogSoftmax", "Hardmax"):
            default = 1 if opset < 13 else -1
        axis = attrs["axis"].i if "axis" in attrs else default
        if axis >= 0:
            set_attr("axis", axis + 1)
    elif op == "Slice" and opset < 10:
        if "axes" in attrs:
            set_attr("axes", shifted(attrs["axes"].ints))
        elif "starts" in attrs:
            set_attr("axes", list(range(1, len(attrs["starts"].ints) + 1)))
    elif op in _AXES_OPS:
        if "axes" in attrs:
            set_attr("axes", shifted(attrs["axes"].ints))
        elif len(new.input) > 1 and new.input[1]:
            axes = const_input(1)
            if axes is not None:
                new.input[1] = const(np.array(shifted(axes.reshape(-1)), np.int64), "axes")
    elif op == "Slice" and opset >= 10:
        axes = const_input(3)
        starts = const_input(1)
        if axes is not None:
            new.input[3] = const(np.array(shifted(axes.reshape(-1)), axes.dtype), "axes")
        elif (len(new.input) < 4 or not new.input[3]) and starts is not None:
            while len(new.input) < 4:
                new.input.append("")
            new.input[3] = const(np.arange(1, starts.size + 1, dtype=starts.dtype), "axes")
    elif op == "Transpose":
        if "perm" in attrs:
            set_attr("perm", [0] + [int(p) + 1 for p in attrs["perm"].ints])
        elif rank is not None:
            set_attr("perm", [0] + list(range(rank, 0, -1)))
    elif op == "Reshape" and len(new.input) > 1:
        target = const_input(1)
        allowzero = attrs["allowzero"].i if "allowzero" in attrs else 0
        if target is not None and not allowzero:
            new.input[1] = const(np.concatenate([[0], target.reshape(-1)]).astype(np.int64),
                                 "shape")
    return new


def _batch_weights(model, names: list[str], shapes: list[tuple], output_name: str, dtype):
    """A copy of ``model`` (initializers ``names`` exposed as graph inputs) evaluating K weight
    points in one run: each variable becomes a graph input of shape [K, *shape] (its
    initializer removed), every Gemm with a batched input becomes MatMul (+ Mul by α, β
    when ≠ 1, + Add of C) with Transposes for transA/transB, since Gemm does not broadcast,
    while MatMul(x, W[K, d, h]) broadcasts to [K, N, h] (W padded to [K, 1, …, d, h] when x
    has rank > 2); a variable bias of an elementwise op is reshaped to [K, 1, …, *shape] of
    the op's output rank + 1. Downstream ops are kept (elementwise ops broadcast over the
    leading K) with their axes moved right (``_shift_axes``). A variable feeding any other
    op (Conv…) is refused. Returns (model, batched tensor names, None) or (None, None,
    reason). The caller must verify the result against per-point runs: an op with a
    batch-mixing axis the rewrite does not know (CumSum over axis 0, LpNormalization…) may
    accept the extra axis and compute something else."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 7:
        return None, None, f"opset {opset} < 7 (Add does not broadcast)"
    var_shape = dict(zip(names, (tuple(int(d) for d in s) for s in shapes)))
    for sub in list(_graphs(g))[1:]:
        used = {i for n in sub.node for i in n.input} & set(names)
        if used:
            return None, None, f"'{sorted(used)[0]}' is used inside a subgraph"
    ranks = _tensor_ranks(model)
    consts = {t.name: t for t in g.initializer if t.name not in var_shape}
    consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    taken = {t.name for t in g.initializer} | {vi.name for vi in g.input}
    taken |= {o for n in g.node for o in n.output}
    extra_inits, counter = [], [0]

    def fresh(stem: str) -> str:
        while True:
            counter[0] += 1
            name = f"{stem}__gn_wb_{counter[0]}"
            if name not in taken:
                taken.add(name)
                return name

    def const(value, stem: str) -> str:
        name = fresh(stem)
        extra_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def bias_of_rank(var: str, rank: int, nodes: list) -> str:
        """[K, *shape] → [K, 1, …, 1, *shape] of rank + 1 (so it aligns with a rank-``rank``
        operand that gained the leading K)."""
        s = var_shape[var]
        if len(s) > rank:
            raise ValueError(f"'{var}' has rank {len(s)} > {rank}")
        shape = const(np.array([-1] + [1] * (rank - len(s)) + list(s), np.int64), var)
        out = fresh(var)
        nodes.append(helper.make_node("Reshape", [var, shape], [out]))
        return out

    batched = set(names)
    nodes: list = []
    try:
        for node in g.node:
            ins = list(node.input)
            if not any(i in batched for i in ins):
                nodes.append(node)
                continue
            op = node.op_type
            vars_in = [i for i in ins if i in var_shape]
            if op == "Gemm" and node.domain in ("", "ai.onnx"):
                a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
                A, B = ins[0], ins[1]
                C = ins[2] if len(ins) > 2 and ins[2] else None
                if A in var_shape:
                    return None, None, f"'{A}' is the A input of Gemm '{node.name}'"
                if B in var_shape and len(var_shape[B]) != 2:
                    return None, None, f"'{B}' is not a 2-D Gemm weight"
                if a.get("transA", 0):
                    t = fresh(A)
                    nodes.append(helper.make_node("Transpose", [A], [t],
                                                  perm=[0, 2, 1] if A in batched else [1, 0]))
                    A = t
                if a.get("transB", 0):
                    t = fresh(B)
                    nodes.append(helper.make_node("Transpose", [B], [t],
                                                  perm=[0, 2, 1] if B in batched else [1, 0]))
                    B = t
                alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
                y = node.output[0]
                prod = fresh(y) if (C is not None or alpha != 1.0) else y
                nodes.append(helper.make_node("MatMul", [A, B], [prod]))
                if alpha != 1.0:
                    scaled = fresh(y) if C is not None else y
                    nodes.append(helper.make_node(
                        "Mul", [prod, const(np.array(alpha, dtype), "alpha")], [scaled]))
                    prod = scaled
                if C is not None:
                    if C in var_shape:
                        C = bias_of_rank(C, 2, nodes)
                    elif C in batched and ranks.get(C) != 2:
                        return None, None, f"the batched C input of Gemm '{node.name}' " \
                                           "is not 2-D"
                    if beta != 1.0:
                        t = fresh(y)
                        nodes.append(helper.make_node(
                            "Mul", [C, const(np.array(beta, dtype), "beta")], [t]))
                        C = t
                    nodes.append(helper.make_node("Add", [prod, C], [y]))
            elif op == "MatMul" and node.domain in ("", "ai.onnx"):
                for k, v in enumerate(ins):
                    if v in var_shape and (k != 1 or len(var_shape[v]) != 2):
                        return None, None, f"'{v}' is not the 2-D weight (second input) " \
                                           f"of MatMul '{node.name}'"
                W = ins[1]
                r = ranks.get(ins[0])
                if W in var_shape and (r is None or r > 2):
                    # x [*lead, m, d] @ W [K, d, h] would pair K with lead[-1]: pad W to
                    # [K, 1, …, 1, d, h] so the batch dims broadcast to [K, *lead]
                    if r is None:
                        return None, None, f"the rank of the input of MatMul '{node.name}' " \
                                           "is unknown"
                    new = onnx.NodeProto()
                    new.CopyFrom(node)
                    new.input[1] = bias_of_rank(W, r, nodes)
                    node = new
                nodes.append(node)
            elif vars_in and op in _BIAS_OPS and node.domain in ("", "ai.onnx"):
                rank = ranks.get(node.output[0])
                if rank is None:
                    return None, None, f"the rank of the output of {op} '{node.name}' is " \
                                       "unknown"
                new = onnx.NodeProto()
                new.CopyFrom(node)
                for k, v in enumerate(ins):
                    if v in var_shape:
                        new.input[k] = bias_of_rank(v, rank, nodes)
                nodes.append(new)
            elif vars_in:
                return None, None, f"'{vars_in[0]}' feeds {op} '{node.name}' (only Gemm, " \
                                   "MatMul and elementwise biases batch over weights)"
            elif ins[0] in batched:  # downstream op: verification judges it
                nodes.append(_shift_axes(node, opset, ranks.get(ins[0]), consts, const))
            else:
                nodes.append(node)
            batched.update(o for o in node.output if o)
    except ValueError as e:
        return None, None, str(e)
    if output_name not in batched:
        return None, None, "the output does not depend on the variables"

    m = onnx.ModelProto()
    m.CopyFrom(model)
    mg = m.graph
    del mg.node[:]
    mg.node.extend(nodes)
    keep = [t for t in mg.initializer if t.name not in var_shape]
    elem = {t.name: t.data_type for t in mg.initializer if t.name in var_shape}
    del mg.initializer[:]
    mg.initializer.extend(keep + extra_inits)
    inputs = [vi for vi in mg.input if vi.name not in var_shape]
    inputs += [helper.make_tensor_value_info(n, elem[n], [_WEIGHT_DIM, *var_shape[n]])
               for n in names]
    del mg.input[:]
    mg.input.extend(inputs)
    for vi in mg.output:
        vi.type.tensor_type.ClearField("shape")
    del mg.value_info[:]
    return m, batched, None


def _op_of_error(message: str) -> str:
    """The op onnxruntime complains about, from its error message."""
    for pattern in (r"implementation for (\w+)\(", r"of operator \((\w+)\)", r"Op \((\w+)\)",
                    r"node (?:with name )?'?([\w/.:-]+)'?"):
        hit = re.search(pattern, message)
        if hit:
            return hit.group(1)
    return ""


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _norms(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", v, v))


# ---------------------------------------------------------------------------------- Problem
class Problem:
    """A least-squares / classification fit through onnxruntime: variables w (flattened,
    float64, size p) are either the model's input ("input") or chosen initializers (names),
    the rest fixed.

    - ``variables="input"``: w is the model's (single float) graph input; ``x0`` its start
      (default ``inputs`` if given, else zeros).
    - ``variables=[names]``: those initializers become overridable graph inputs of one
      session; ``inputs`` is the fixed data batch (an array for the single data input, or a
      dict name → array); w0 = the initializers' values concatenated in the given order.
      A data batch of N rows on a graph with a fixed batch N0 runs as one batch of N rows when
      the batch axis can be freed (verified), else in runs of N0 rows.
    - ``targets``: squared loss → array broadcastable to (or of the size of) the output;
      cross_entropy → integer class per output row (logits over the last axis).
    - ``regularization``: ridge weight λ on ‖w − w0‖²/2 (stored for the solver).
    - ``dtype``: "float32" runs the graph as exported; "float64" a float64 copy (error naming
      the op when onnxruntime lacks a double kernel); "auto" the float64 copy when it loads,
      runs and agrees with the exported graph, else the exported graph.
    - ``difference``: "central" (default) or "forward" finite differences.

    Counters: ``forward_passes`` (point evaluations) and ``ort_calls`` (``session.run``
    calls; a batched run of K points counts once) start at 0 after construction; the
    construction's own runs (dtype and batching checks) are in ``setup_ort_calls``.
    ``notes`` says which fallbacks were taken; ``batched`` whether several points share one
    run; ``batched_weights`` whether initializer variables run K points at once through the
    rewritten graph (``_batch_weights``; chunked to ``memory_budget``). ``step_scale``
    (default 1) multiplies the finite-difference steps of refs §2 (for ReLU/MaxPool graphs in
    float32 a smaller step crosses fewer kinks).
    """

    def __init__(self, model: str | os.PathLike, variables: str | list[str] = "input",
                 targets=None, inputs=None, loss: str = "squared",
                 regularization: float = 0.0, x0=None, dtype: str = "auto",
                 difference: str = "central", memory_budget: int = 512 * 2**20,
                 threads: int | None = None) -> None:
        self.model = os.fspath(model)
        path = Path(self.model)
        if loss not in ("squared", "cross_entropy"):
            raise BoundpropError(f"unknown loss '{loss}'; use 'squared' or 'cross_entropy'")
        if difference not in ("central", "forward"):
            raise BoundpropError(f"unknown difference '{difference}'; use 'central' or "
                                 "'forward'")
        if dtype not in ("auto", "float32", "float64"):
            raise BoundpropError(f"unknown dtype '{dtype}'; use 'auto', 'float32' or 'float64'")
        if not (np.isfinite(regularization) and regularization >= 0):
            raise BoundpropError(f"regularization must be a finite number ≥ 0, got "
                                 f"{regularization}")
        if not int(memory_budget) > 0:
            raise BoundpropError(f"memory_budget must be positive, got {memory_budget}")
        self.loss = loss
        self.regularization = float(regularization)
        self.difference = difference
        self.memory_budget = int(memory_budget)
        self.threads = int(threads) if threads else min(2, os.cpu_count() or 1)
        self.forward_passes = 0
        self.ort_calls = 0
        self.setup_ort_calls = 0
        self.step_scale = 1.0
        self.notes: list[str] = []
        self._net = None

        proto = _load_model(path)
        g = proto.graph
        inits = {t.name: t for t in g.initializer}
        data_inputs = [vi for vi in g.input if vi.name not in inits]
        if not g.output:
            raise BoundpropError(f"{path}: the graph has no output")
        out = g.output[0]
        self.output_name = out.name
        if out.type.tensor_type.elem_type not in _NP_OF_ELEM:
            raise BoundpropError(
                f"{path}: output '{out.name}' is not a float tensor (elem type "
                f"{out.type.tensor_type.elem_type}), so it is not differentiable; "
                "fit a float output (e.g. the logits before an ArgMax)")

        if isinstance(variables, str) and variables == "input":
            self.variables: str | list[str] = "input"
            proto, native = self._setup_input(path, proto, data_inputs, inputs, x0)
        else:
            names = [variables] if isinstance(variables, str) else list(variables)
            self.variables = names
            proto, native = self._setup_initializers(path, proto, inits, data_inputs, inputs)
        self.p = int(self.w0.size)
        if self.p == 0:
            raise BoundpropError(f"{path}: no variables to fit (size 0)")

        self._choose_dtype(path, proto, native, dtype)
        self._set_targets(path, targets)
        self.ort_calls, self.forward_passes = 0, 0

    # ---------------------------------------------------------------- construction helpers
    def _setup_input(self, path, proto, data_inputs, inputs, x0):
        if len(data_inputs) != 1:
            names = ", ".join(f"'{vi.name}'" for vi in data_inputs) or "none"
            raise BoundpropError(f"{path}: variables='input' needs a single graph input; the "
                                 f"model has {len(data_inputs)} ({names}); fit initializers "
                                 "instead, with inputs={name: array}")
        vi = data_inputs[0]
        elem = vi.type.tensor_type.elem_type
        if elem not in _NP_OF_ELEM:
            raise BoundpropError(f"{path}: input '{vi.name}' is not a float tensor, so it cannot "
                                 "be fitted; choose initializer variables")
        start = x0 if x0 is not None else inputs
        dims = _dims(vi)
        fixed = all(isinstance(d, int) and d > 0 for d in dims)
        if start is None:
            if not fixed:
                raise BoundpropError(f"{path}: input '{vi.name}' has a dynamic shape "
                                     f"{[d if isinstance(d, int) else '?' for d in dims]}; give "
                                     "x0 (the start point) of the shape to fit")
            start = np.zeros(dims)
        start = np.asarray(start, dtype=np.float64)
        if fixed and start.size == int(np.prod(dims)):
            shape = tuple(dims)
        elif start.ndim == len(dims) and all(not isinstance(d, int) or d <= 0 or d == s
                                              for d, s in zip(dims, start.shape)):
            shape = start.shape
        else:
            raise BoundpropError(f"{path}: x0 of shape {list(start.shape)} does not fit input "
                                 f"'{vi.name}' of shape "
                                 f"{[d if isinstance(d, int) and d > 0 else '?' for d in dims]}")
        if not np.all(np.isfinite(start)):
            raise BoundpropError("x0 has NaN or infinite entries")
        self.input_name = vi.name
        self.input_shape = tuple(int(s) for s in shape)
        self.inputs = inputs
        self.w0 = start.reshape(-1).copy()
        self._data_names = [vi.name]
        return proto, _NP_OF_ELEM[elem]

    def _setup_initializers(self, path, proto, inits, data_inputs, inputs):
        from onnx import numpy_helper

        names = self.variables
        float_names = [n for n, t in inits.items() if t.data_type in _NP_OF_ELEM]
        if not names:
            raise BoundpropError("no variables given: pass 'input' or initializer names")
        if len(set(names)) != len(names):
            raise BoundpropError(f"variables listed twice: {names}")
        for name in names:
            if name not in inits:
                if any(vi.name == name for vi in data_inputs):
                    raise BoundpropError(f"'{name}' is a graph input, not an initializer; use "
                                         "variables='input' to fit it")
                some = ", ".join(float_names[:8]) + (", …" if len(float_names) > 8 else "")
                raise BoundpropError(f"{path}: no initializer named '{name}'; use 'input' or "
                                     f"initializer names such as {some or '(none)'}")
            if inits[name].data_type not in _NP_OF_ELEM:
                raise BoundpropError(f"{path}: initializer '{name}' is not a float tensor (elem "
                                     f"type {inits[name].data_type}); only float weights can "
                                     "be fitted")
        values = [numpy_helper.to_array(inits[n]) for n in names]
        natives = {v.dtype for v in values}
        if len(natives) != 1:
            raise BoundpropError(f"variables {names} mix dtypes {sorted(map(str, natives))}")
        self.w0 = np.concatenate([v.astype(np.float64).reshape(-1) for v in values])
        self._var_shapes = [v.shape for v in values]
        offs = np.cumsum([0] + [v.size for v in values])
        self._var_slices = [slice(int(a), int(b)) for a, b in zip(offs[:-1], offs[1:])]
        if not np.all(np.isfinite(self.w0)):
            raise BoundpropError(f"{path}: the chosen initializers have NaN/Inf entries")

        # the fixed data batch
        self._data_names = [vi.name for vi in data_inputs]
        if data_inputs and inputs is None:
            raise BoundpropError("fitting initializers needs the data batch: pass inputs= (an "
                                 "array for the graph input "
                                 f"'{data_inputs[0].name}')")
        if isinstance(inputs, dict):
            feed = dict(inputs)
        elif len(data_inputs) == 1:
            feed = {data_inputs[0].name: inputs}
        elif data_inputs:
            raise BoundpropError(f"{path}: the model has {len(data_inputs)} graph inputs; pass "
                                 "inputs as a dict name → array")
        else:
            feed = {}
        wanted = {vi.name for vi in data_inputs}
        if set(feed) != wanted:
            raise BoundpropError(f"inputs given for {sorted(feed)} but the graph inputs are "
                                 f"{sorted(wanted)}")
        self._data = {}
        self._data_dims = {}
        for vi in data_inputs:
            arr = np.asarray(feed[vi.name])
            dims = _dims(vi)
            if arr.ndim != len(dims) or any(isinstance(d, int) and d > 0 and d != s
                                            for d, s in zip(dims[1:], arr.shape[1:])):
                raise BoundpropError(
                    f"inputs['{vi.name}'] has shape {list(arr.shape)}; the graph input has "
                    f"shape {[d if isinstance(d, int) and d > 0 else '?' for d in dims]}")
            self._data[vi.name] = arr
            self._data_dims[vi.name] = dims
            elem = vi.type.tensor_type.elem_type
            if elem in _NP_OF_ELEM and not np.all(np.isfinite(arr.astype(np.float64))):
                raise BoundpropError(f"inputs['{vi.name}'] has NaN or infinite entries")
        self.inputs = inputs
        self.input_name = data_inputs[0].name if data_inputs else None
        self.input_shape = tuple(self._data[self.input_name].shape) if data_inputs else ()
        return _expose_initializers(proto, names), np.dtype(natives.pop()).type

    def _session(self, proto):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 4
        return ort.InferenceSession(proto.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])

    def _run(self, sess, feed) -> np.ndarray:
        self.ort_calls += 1
        return sess.run([self.output_name], feed)[0]

    def _choose_dtype(self, path, proto, native, dtype) -> None:
        """Pick the graph (float64 copy or as exported), build its session, find the output
        shape and whether points can be batched."""
        try:
            sess = self._session(proto)
        except Exception as e:
            raise BoundpropError(f"{path}: onnxruntime cannot load the model: "
                                 f"{_one_line(e)}") from None
        self._use(proto, sess, native)
        try:
            y32 = self._point_output(self.w0)
        except BoundpropError:
            raise
        except Exception as e:
            raise BoundpropError(f"{path}: onnxruntime cannot run the model on the start "
                                 f"point: {_one_line(e)}") from None
        if not np.issubdtype(y32.dtype, np.floating):
            raise BoundpropError(f"{path}: output '{self.output_name}' is {y32.dtype}, so it is "
                                 "not differentiable")
        self.output_shape = tuple(y32.shape)
        if dtype != "float32" and native != np.float64:
            proto64 = _to_float64(proto)
            why = None
            try:
                sess64 = self._session(proto64)
            except Exception as e:
                op = _op_of_error(str(e))
                why = (f"onnxruntime has no float64 kernel for {op}" if op else
                       f"onnxruntime cannot load the float64 copy ({_one_line(e, 120)})")
            if why is None:
                self._use(proto64, sess64, np.float64)
                try:
                    y64 = self._point_output(self.w0)
                except Exception as e:
                    op = _op_of_error(str(e))
                    why = f"the float64 copy does not run ({op or _one_line(e, 120)})"
                else:
                    scale = 1.0 + float(np.max(np.abs(y32), initial=0.0))
                    if y64.shape != y32.shape or not np.all(
                            np.abs(y64 - y32) <= 1e-3 * scale):
                        why = "the float64 copy disagrees with the exported graph"
            if why is not None:
                if dtype == "float64":
                    raise BoundpropError(f"{path}: no float64 graph: {why}; use dtype='float32'"
                                         " (or 'auto')")
                self.notes.append(f"float32 graph: {why}")
                self._use(proto, sess, native)
            else:
                proto, sess, native = proto64, sess64, np.float64
        elif dtype == "float64" and native != np.float64:
            raise BoundpropError(f"{path}: no float64 graph for a {np.dtype(native)} model")
        self._setup_batching(proto)
        self.setup_ort_calls = self.ort_calls

    @property
    def batched(self) -> bool:
        return self._batched

    def _use(self, proto, sess, native) -> None:
        self._sess = sess
        self._np_dtype = np.dtype(native)
        self.dtype = _NAME_OF_NP[self._np_dtype]
        self.eps = float(np.finfo(self._np_dtype).eps)
        self._batched = False
        self.batched_weights = False
        self._wsess = None
        self._data_chunks = None
        if self.variables != "input":
            self._fixed = {n: a.astype(self._feed_dtype(proto, n)) for n, a in self._data.items()}
            self._plan_data_chunks(proto)

    def _feed_dtype(self, proto, name):
        for vi in proto.graph.input:
            if vi.name == name:
                elem = vi.type.tensor_type.elem_type
                if elem in _NP_OF_ELEM:
                    return _NP_OF_ELEM[elem]
                import onnx

                return onnx.helper.tensor_dtype_to_np_dtype(elem)
        return None

    def _plan_data_chunks(self, proto) -> None:
        """Initializer variables: the data batch as one feed when it has the graph's shape,
        else in runs of the graph's fixed batch N0 (``_setup_batching`` may free the axis)."""
        chunks = None
        for name, arr in self._fixed.items():
            d0 = self._data_dims[name][0] if self._data_dims[name] else None
            if isinstance(d0, int) and d0 > 0 and arr.shape[0] != d0:
                if arr.shape[0] % d0:
                    raise BoundpropError(
                        f"inputs['{name}'] has {arr.shape[0]} rows but the graph's batch is "
                        f"fixed at {d0}: give a multiple of {d0} rows")
                n = arr.shape[0] // d0
                if chunks not in (None, n):
                    raise BoundpropError("the data inputs have inconsistent batch sizes")
                chunks = n
        self._data_chunks = chunks
        if chunks:
            self._fixed_feeds = [{n: np.ascontiguousarray(np.split(a, chunks)[c])
                                  for n, a in self._fixed.items()} for c in range(chunks)]
        else:
            self._fixed_feeds = [self._fixed]

    # ----------------------------------------------------------------------------- batching
    def _verification_points(self) -> np.ndarray:
        rng = np.random.default_rng(20240611)
        scale = 0.5 * (1.0 + float(np.sqrt(np.mean(self.w0 ** 2))))
        pts = [self.w0] + [self.w0 + scale * rng.standard_normal(self.p) for _ in range(2)]
        return np.asarray(pts)

    def _agree(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.shape != b.shape:
            return False
        tol = self.eps ** (2 / 3) * (1.0 + float(np.max(np.abs(b), initial=0.0)))
        return bool(np.all(np.abs(a - b) <= tol))

    def _setup_batching(self, proto) -> None:
        """Free the batch axis in a copy of the graph and keep it only if batched runs equal
        per-point runs on distinct points (batch-mixing ops fail this check)."""
        if self.variables == "input":
            if len(self.input_shape) == 0:
                self._chunk = 1
                return
            pts = self._verification_points()
            ref = np.stack([self._point_output(w) for w in pts])
            free = _free_batch(proto, self._data_names, self.output_name)
            reason = "the graph's batch axis cannot be made symbolic"
            if free is not None:
                single = self._sess
                try:
                    self._sess, self._batched = self._session(free), True
                    got = self._batched_outputs(pts.astype(self._np_dtype))
                except Exception as e:
                    got = None
                    reason = f"a batched run failed ({_one_line(e, 100)})"
                if got is not None and self._agree(got, ref):
                    self._chunk = self._points_per_run(proto)
                    return
                if got is not None:
                    reason = "batched outputs differ from per-point outputs (the batch mixes)"
                self._sess, self._batched = single, False
            self.notes.append(f"one onnxruntime run per point: {reason}")
            self._chunk = max(1, min(256, self._points_per_run(proto)))
        else:
            item = self._np_dtype.itemsize
            self._chunk = max(1, min(256, self.memory_budget // (4 * item * self.p)))
            base = proto
            if self._data_chunks:
                ref = self._point_output(self.w0)
                free = _free_batch(proto, self._data_names, self.output_name)
                if free is None:
                    self.notes.append(f"data batch in {self._data_chunks} runs per point: the "
                                      "graph's batch axis cannot be made symbolic")
                else:
                    saved = (self._sess, self._fixed_feeds, self._data_chunks)
                    try:
                        self._sess = self._session(free)
                        self._fixed_feeds, self._data_chunks = [self._fixed], None
                        got = self._point_output(self.w0)
                        ok = self._agree(got, ref)
                    except Exception:
                        ok = False
                    if ok:
                        base = free
                    else:
                        self._sess, self._fixed_feeds, self._data_chunks = saved
                        self.notes.append(f"data batch in {self._data_chunks} runs per point: "
                                          "one batch of all rows differs from runs of the "
                                          "graph's batch")
            self._setup_weight_batching(base)

    def _setup_weight_batching(self, proto) -> None:
        """Initializer variables: K weight points in one run of a rewritten graph
        (``_batch_weights``), kept only if its outputs on 3 distinct points equal per-point
        runs (1e-6 relative in float32, 1e-12 in float64), else one run per point."""
        try:
            rewritten, batched, why = _batch_weights(
                proto, self.variables, self._var_shapes, self.output_name, self._np_dtype)
        except Exception as e:  # a graph the rewrite does not understand
            rewritten, why = None, f"the rewrite failed ({_one_line(e, 100)})"
        if why is None:
            pts = self._verification_points()
            ref = np.stack([self._point_output(w) for w in pts])
            try:
                self._wsess = self._session(rewritten)
                got = self._weight_batch_outputs(pts.astype(self._np_dtype))
            except Exception as e:
                got, why = None, f"a batched run failed ({_one_line(e, 100)})"
            if got is not None:
                tol = {8: 1e-12, 4: 1e-6}.get(self._np_dtype.itemsize, 8 * self.eps)
                scale = float(np.max(np.abs(ref), initial=0.0))
                if got.shape == ref.shape and np.all(np.abs(got - ref) <= tol * scale):
                    self.batched_weights = self._batched = True
                    self._chunk = self._weight_points_per_run(proto, batched)
                    return
                why = "batched outputs differ from per-point runs (an op downstream of " \
                      "the weights does not broadcast over the extra leading axis)"
            self._wsess = None
        self.notes.append(f"one onnxruntime run per weight point: {why}")

    def _weight_points_per_run(self, proto, batched: set) -> int:
        """Weight points per batched run within ``memory_budget``: per point, the variables
        (twice: the feed and its copy) and every tensor that gains the leading K axis, plus
        the unbatched operands of the ops producing them (inferred shapes; unknown dims
        count as the data rows)."""
        import onnx

        rows = max([a.shape[0] for a in self._fixed_feeds[0].values() if a.ndim] or [1])
        try:
            g = onnx.shape_inference.infer_shapes(proto).graph
            infos = list(g.value_info) + list(g.output) + list(g.input)
        except Exception:
            infos = []
        size = {vi.name: int(np.prod([d if isinstance(d, int) and d > 0 else rows
                                      for d in _dims(vi)])) for vi in infos}
        total = 2 * self.p + sum(size.get(n, rows) for n in batched if n not in self.variables)
        for node in proto.graph.node:
            if any(o in batched for o in node.output):
                total += sum(size.get(i, 0) for i in node.input if i and i not in batched)
        item = self._np_dtype.itemsize
        return max(1, self.memory_budget // (item * max(total, 1)))

    def _points_per_run(self, proto) -> int:
        """Points per run within ``memory_budget``: every tensor of one point's evaluation
        (inferred shapes; unknown dims count as the input's batch) held at once."""
        import onnx

        item = self._np_dtype.itemsize
        n0 = self.input_shape[0] if self.input_shape else 1
        try:
            inferred = onnx.shape_inference.infer_shapes(proto)
            infos = list(inferred.graph.value_info) + list(inferred.graph.output)
        except Exception:
            infos = []
        total = 2 * int(np.prod(self.input_shape)) + 2 * int(np.prod(self.output_shape))
        for vi in infos:
            dims = _dims(vi)
            total += int(np.prod([d if isinstance(d, int) and d > 0 else n0 for d in dims]))
        return max(1, self.memory_budget // (item * max(total, 1)))

    # ------------------------------------------------------------------------- evaluation
    def _point_output(self, w: np.ndarray) -> np.ndarray:
        """One point, unbatched: the output as computed by the current session."""
        w = np.asarray(w).astype(self._np_dtype)
        if self.variables == "input":
            return self._run(self._sess, {self.input_name: w.reshape(self.input_shape)})
        outs = []
        for fixed in self._fixed_feeds:
            feed = dict(fixed)
            for name, sl, shape in zip(self.variables, self._var_slices, self._var_shapes):
                feed[name] = w[sl].reshape(shape)
            outs.append(self._run(self._sess, feed))
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)

    def _batched_outputs(self, rows: np.ndarray) -> np.ndarray:
        """Input variables, batched session: n points (rows in the graph dtype) in one run."""
        n = rows.shape[0]
        x = rows.reshape(n * self.input_shape[0], *self.input_shape[1:])
        y = self._run(self._sess, {self.input_name: x})
        return y.reshape(n, *self.output_shape) if y.size == n * int(
            np.prod(self.output_shape)) else y.reshape(n, -1)

    def _weight_batch_outputs(self, rows: np.ndarray) -> np.ndarray:
        """Initializer variables, rewritten graph: n weight points (rows in the graph dtype)
        in one run; the output [n, *output_shape]."""
        n = rows.shape[0]
        weights = {name: np.ascontiguousarray(rows[:, sl]).reshape(n, *shape)
                   for name, sl, shape in zip(self.variables, self._var_slices,
                                              self._var_shapes)}
        outs = [self._run(self._wsess, {**fixed, **weights}) for fixed in self._fixed_feeds]
        per_run = int(np.prod(self.output_shape)) // len(outs)
        if any(y.size != n * per_run for y in outs):
            raise BoundpropError(f"a batched weight run gave an output of shape "
                                 f"{list(outs[0].shape)} for {n} points of shape "
                                 f"{list(self.output_shape)}")
        if len(outs) == 1:
            return outs[0].reshape(n, *self.output_shape)
        # runs of the graph's fixed batch: [n, rows of one run, …] side by side
        return np.concatenate([y.reshape(n, -1, *self.output_shape[1:]) for y in outs],
                              axis=1)

    def _evaluate(self, make, count: int) -> np.ndarray:
        """Outputs of ``count`` points; ``make(a, b)`` gives rows a..b-1 in the graph dtype."""
        out = np.empty((count, *self.output_shape))
        step = max(1, self._chunk)
        for a in range(0, count, step):
            b = min(count, a + step)
            rows = make(a, b)
            if self.batched_weights:
                out[a:b] = self._weight_batch_outputs(rows)
            elif self._batched:
                out[a:b] = self._batched_outputs(rows)
            else:
                for i in range(b - a):
                    out[a + i] = self._point_output(rows[i])
        self.forward_passes += count
        return out

    def _as_points(self, W) -> np.ndarray:
        W = np.asarray(W, dtype=np.float64)
        if W.ndim == 1:
            W = W[None]
        if W.ndim != 2 or W.shape[1] != self.p:
            raise BoundpropError(f"points must have shape (K, {self.p}), got {list(W.shape)}")
        return W

    def outputs(self, W) -> np.ndarray:
        """W (K, p) → the model outputs (K, *output_shape) as float64 (W rounded to the graph
        dtype), in as few onnxruntime runs as possible."""
        W = self._as_points(W)
        return self._evaluate(lambda a, b: W[a:b].astype(self._np_dtype), W.shape[0])

    def _residuals_of(self, Y: np.ndarray) -> np.ndarray:
        Y = Y.reshape(Y.shape[0], -1)
        return Y - self._target_flat if self.loss == "squared" else Y

    def residuals(self, W) -> np.ndarray:
        """(K, q): squared loss: outputs − targets, flattened; cross_entropy: the logits."""
        return self._residuals_of(self.outputs(W))

    # --------------------------------------------------------------------- derivatives
    def _base(self, w) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if w.size != self.p:
            raise BoundpropError(f"w must have {self.p} entries, got {w.size}")
        return w.astype(self._np_dtype).astype(np.float64)

    def _scale(self, wb: np.ndarray) -> float:
        power = 1 / 3 if self.difference == "central" else 1 / 2
        return self.step_scale * self.eps ** power * (1.0 + float(np.linalg.norm(wb)))

    def jvp(self, w, V, return_directions: bool = False):
        """V (k, p) → (k, q): the residual map's directional derivatives at w along the rows
        of V, from 2k (central) or k+1 (forward) points in one batched evaluation.

        The step along v is h = ε^(1/3)(1+‖w‖)/‖v‖ (central) or √ε(1+‖w‖)/‖v‖ (forward).
        The points are rounded to the graph dtype; the differences are divided by the
        component along v of the realized perturbation. With ``return_directions=True`` also
        returns the realized directions D (k, p) (D ≈ V; the result is the difference
        quotient along D exactly, which keeps J·D consistent for subspace methods)."""
        wb = self._base(w)
        V = np.asarray(V, dtype=np.float64)
        single = V.ndim == 1
        V = V[None] if single else V
        if V.ndim != 2 or V.shape[1] != self.p:
            raise BoundpropError(f"directions must have shape (k, {self.p}), got "
                                 f"{list(V.shape)}")
        k = V.shape[0]
        nv = _norms(V)
        nv_safe = np.where(nv > 0, nv, 1.0)
        h = self._scale(wb) / nv_safe
        dt = self._np_dtype
        plus = (wb + h[:, None] * V).astype(dt)
        if self.difference == "central":
            minus = (wb - h[:, None] * V).astype(dt)
            delta = plus.astype(np.float64) - minus.astype(np.float64)
            pts = np.concatenate([plus, minus])
            Y = self._evaluate(lambda a, b: pts[a:b], 2 * k)
            R = Y.reshape(2 * k, -1)
            diff = R[:k] - R[k:]
        else:
            delta = plus.astype(np.float64) - wb
            base = wb.astype(dt)[None]
            pts = np.concatenate([base, plus])
            Y = self._evaluate(lambda a, b: pts[a:b], k + 1)
            R = Y.reshape(k + 1, -1)
            diff = R[1:] - R[:1]
        along = np.einsum("ij,ij->i", delta, V) / nv_safe ** 2  # δ = along·v + (⊥ part)
        along = np.where(nv > 0, along, 1.0)
        if np.any(along == 0):
            raise BoundpropError("a finite-difference step vanished in the graph dtype")
        JV = diff / along[:, None]
        JV[nv == 0] = 0.0
        if return_directions:
            D = delta / along[:, None]
            return (JV[0], D[0]) if single else (JV, D)
        return JV[0] if single else JV

    def jacobian(self, w) -> tuple[np.ndarray, np.ndarray]:
        """(J (q, p), r (q,)): the residual map's Jacobian at w by coordinate differences
        (central: 2p+1 points, forward: p+1, the base point in the same batch), each column
        divided by its realized step δ_j; r = the residuals at w (rounded to the dtype)."""
        wb = self._base(w)
        p, dt = self.p, self._np_dtype
        h = self._scale(wb)
        base = wb.astype(dt)
        up = (wb + h).astype(dt)
        d_up = up.astype(np.float64) - wb
        if self.difference == "central":
            down = (wb - h).astype(dt)
            d_down = down.astype(np.float64) - wb
            count, sides = 2 * p + 1, ((1, up), (p + 1, down))
        else:
            count, sides = p + 1, ((1, up),)

        def make(a: int, b: int) -> np.ndarray:
            rows = np.broadcast_to(base, (b - a, p)).copy()
            idx = np.arange(a, b)
            for lo, vals in sides:
                sel = (idx >= lo) & (idx < lo + p)
                j = idx[sel] - lo
                rows[np.nonzero(sel)[0], j] = vals[j]
            return rows

        Y = self._evaluate(make, count)
        R = self._residuals_of(Y)
        r = R[0]
        if self.difference == "central":
            J = (R[1:p + 1] - R[p + 1:]).T / (d_up - d_down)[None]
        else:
            J = (R[1:] - r[None]).T / d_up[None]
        return J, r.copy()

    # ------------------------------------------------------------------------ reference
    def exact_jacobian(self, w) -> np.ndarray:
        """(q, p) Jacobian of the residual map at w from boundprop's float64 IR (a backward
        pass of each node's Jacobian rule on the degenerate box at w; a Clarke element at
        kinks). Input variables only."""
        if self.variables != "input":
            raise NotImplementedError("exact_jacobian is available for variables='input' only")
        if self._net is None:
            import boundprop as bp

            self._net = bp.load(self.model, input_shape=self.input_shape)
        net = self._net
        x = np.asarray(w, dtype=np.float64)
        if x.size != self.p:
            raise BoundpropError(f"w must have {self.p} entries, got {x.size}")
        x = x.reshape(net.input_shape)
        values = net.evaluate_all(x)
        k = int(np.prod(net.output_shape))
        acc = {net.output: np.eye(k).reshape(k, *net.output_shape)}
        for i in range(len(net.nodes) - 1, 0, -1):
            if i not in acc:
                continue
            node = net.nodes[i]
            c = acc.pop(i)
            boxes = [(values[j], values[j]) for j in node.inputs]
            with np.errstate(invalid="ignore", over="ignore"):
                parts = node.op.jacobian_backward(c, np.zeros_like(c), boxes)
            if parts is None:
                raise NotImplementedError(f"no Jacobian rule for {node.op.kind} in the IR")
            for j, (cj, _) in zip(node.inputs, parts):
                acc[j] = acc[j] + cj if j in acc else cj
        if 0 not in acc:
            return np.zeros((k, self.p))
        return acc[0].reshape(k, -1)

    # ------------------------------------------------------------------------ targets
    def _set_targets(self, path, targets) -> None:
        shape = self.output_shape
        self.q = int(np.prod(shape))
        if self.loss == "squared":
            if targets is None:
                t = np.zeros(shape)
            else:
                t = np.asarray(targets, dtype=np.float64)
                if t.shape != shape:
                    try:
                        t = np.broadcast_to(t, shape)
                    except ValueError:
                        if t.size != self.q:
                            raise BoundpropError(
                                f"targets of shape {list(t.shape)} do not fit the output "
                                f"'{self.output_name}' of shape {list(shape)}") from None
                        t = t.reshape(shape)
            if not np.all(np.isfinite(t)):
                raise BoundpropError("targets have NaN or infinite entries")
            self.targets = np.array(t, dtype=np.float64)
            self._target_flat = self.targets.reshape(-1)
        else:
            if targets is None:
                raise BoundpropError("cross_entropy needs targets: a class index per output row")
            if len(shape) == 0:
                raise BoundpropError(f"cross_entropy needs logits over a last axis; the output "
                                     f"'{self.output_name}' is a scalar")
            t = np.asarray(targets)
            rows = shape[:-1]
            if t.size != int(np.prod(rows)):
                raise BoundpropError(f"cross_entropy targets must hold one class per output row:"
                                     f" {int(np.prod(rows))} for the output of shape "
                                     f"{list(shape)}, got shape {list(t.shape)}")
            if not (np.issubdtype(t.dtype, np.integer) or (
                    np.issubdtype(t.dtype, np.floating) and np.all(t == np.round(t)))):
                raise BoundpropError("cross_entropy targets must be integer class indices")
            t = t.astype(np.int64).reshape(rows)
            if t.size and (t.min() < 0 or t.max() >= shape[-1]):
                raise BoundpropError(f"cross_entropy targets must lie in [0, {shape[-1] - 1}]")
            self.targets = t
            self._target_flat = None

    def __repr__(self) -> str:
        what = "input" if self.variables == "input" else ", ".join(self.variables)
        return (f"Problem({self.model!r}, variables={what}, p={self.p}, q={self.q}, "
                f"{self.loss}, {self.dtype}, {'batched' if self._batched else 'looped'})")
