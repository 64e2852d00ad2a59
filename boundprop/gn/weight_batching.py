"""Weights as graph inputs, K weight points per onnxruntime run (``../shared/refs/gn.md`` §4
"Weights as inputs"): a rewritten copy of the graph takes each variable initializer as a graph
input [K, *shape] and computes the K outputs at once.

Every Gemm with a batched input becomes MatMul (+ Mul by α, β when ≠ 1, + Add of C) with
Transposes for transA/transB, since Gemm does not broadcast, while MatMul(x, W[K, d, h])
broadcasts to [K, N, h] (W padded to [K, 1, …, d, h] when x has rank > 2); a variable bias of
an elementwise op (``BIAS_OPS``) is reshaped to [K, 1, …, *shape] of the op's output rank + 1.
Downstream ops are kept (elementwise ops broadcast over the leading K) with their axes moved
one axis right (:meth:`_WeightBatchRewrite.shift_axes`). A variable feeding any other op
(Conv…) is refused. The caller must verify the result against per-point runs: an op with a
batch-mixing axis the rewrite does not know (CumSum over axis 0, LpNormalization…) may accept
the extra axis and compute something else."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from boundprop.gn.layers import BIAS_OPS, DENSE_LAYER_OPS
from boundprop.gn.onnx_graph import subgraphs

__all__ = ["WEIGHT_DIM", "batch_weights"]

WEIGHT_DIM = "gn_weights"
_ONNX_DOMAINS = ("", "ai.onnx")
# ops with one ``axis`` attribute, and ops with ``axes`` (attribute or constant input)
_AXIS_OPS = ("Concat", "Split", "Gather", "Flatten", "Softmax", "LogSoftmax", "Hardmax",
             "LayerNormalization", "ArgMax", "ArgMin")
_AXES_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
             "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Squeeze",
             "Unsqueeze")


def _tensor_ranks(model) -> dict[str, int]:
    """Rank of every tensor of the main graph whose shape inference knows it."""
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


def _shifted(values) -> list[int]:
    """Non-negative axes moved one right (negative ones count from the end: unchanged)."""
    return [int(v) + 1 if int(v) >= 0 else int(v) for v in values]


def batch_weights(model, names: list[str], shapes: list[tuple], output_name: str, dtype):
    """A copy of ``model`` (initializers ``names`` of the given shapes exposed as graph inputs)
    evaluating K weight points in one run (module docstring). Returns (model, the names of
    the tensors that gained the leading K axis, None) or (None, None, the reason it cannot)."""
    opset = next((o.version for o in model.opset_import if o.domain in _ONNX_DOMAINS), 0)
    if opset < 7:
        return None, None, f"opset {opset} < 7 (Add does not broadcast)"
    for sub in list(subgraphs(model.graph))[1:]:
        used = {i for n in sub.node for i in n.input} & set(names)
        if used:
            return None, None, f"'{sorted(used)[0]}' is used inside a subgraph"
    rewrite = _WeightBatchRewrite(model, names, shapes, opset, dtype)
    try:
        for node in model.graph.node:
            rewrite.add(node)
    except ValueError as e:
        return None, None, str(e)
    if output_name not in rewrite.batched:
        return None, None, "the output does not depend on the variables"
    return rewrite.model(), rewrite.batched, None


class _WeightBatchRewrite:
    """The rewritten node list, built node by node (:meth:`add`; a ValueError says why the
    graph cannot be batched), and the new initializers it needs."""

    def __init__(self, model, names: list[str], shapes: list[tuple], opset: int, dtype):
        g = model.graph
        self.source, self.names, self.opset, self.dtype = model, list(names), opset, dtype
        self.var_shape = dict(zip(names, (tuple(int(d) for d in s) for s in shapes)))
        self.ranks = _tensor_ranks(model)
        self.consts = {t.name: t for t in g.initializer if t.name not in self.var_shape}
        self.consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant"
                            for a in n.attribute if a.name == "value"})
        self.taken = {t.name for t in g.initializer} | {vi.name for vi in g.input}
        self.taken |= {o for n in g.node for o in n.output}
        self.extra_inits: list = []
        self.counter = 0
        self.batched = set(names)
        self.nodes: list = []

    # ---- names and constants
    def fresh(self, stem: str) -> str:
        """A tensor name not used in the graph yet."""
        while True:
            self.counter += 1
            name = f"{stem}__gn_wb_{self.counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def const(self, value, stem: str) -> str:
        """The name of a new initializer holding ``value``."""
        name = self.fresh(stem)
        self.extra_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def bias_of_rank(self, var: str, rank: int) -> str:
        """[K, *shape] → [K, 1, …, 1, *shape] of rank + 1 (so it aligns with a rank-``rank``
        operand that gained the leading K), by a new Reshape node."""
        s = self.var_shape[var]
        if len(s) > rank:
            raise ValueError(f"'{var}' has rank {len(s)} > {rank}")
        shape = self.const(np.array([-1] + [1] * (rank - len(s)) + list(s), np.int64), var)
        out = self.fresh(var)
        self.nodes.append(helper.make_node("Reshape", [var, shape], [out]))
        return out

    # ---- nodes
    def add(self, node) -> None:
        """Append ``node``, rewritten when one of its inputs is batched."""
        ins = list(node.input)
        if not any(i in self.batched for i in ins):
            self.nodes.append(node)
            return
        op = node.op_type
        onnx_op = node.domain in _ONNX_DOMAINS
        vars_in = [i for i in ins if i in self.var_shape]
        if op in DENSE_LAYER_OPS and onnx_op:
            {"Gemm": self.gemm, "MatMul": self.matmul}[op](node, ins)
        elif vars_in and op in BIAS_OPS and onnx_op:
            self.elementwise(node, ins)
        elif vars_in:
            raise ValueError(f"'{vars_in[0]}' feeds {op} '{node.name}' (only "
                             f"{', '.join(DENSE_LAYER_OPS)} and elementwise biases batch "
                             "over weights)")
        elif ins[0] in self.batched:  # downstream op: verification judges it
            self.nodes.append(self.shift_axes(node, self.ranks.get(ins[0])))
        else:
            self.nodes.append(node)
        self.batched.update(o for o in node.output if o)

    def transposed(self, name: str) -> str:
        """A Transpose of a matrix, or of each matrix of a batched [K, m, n] tensor."""
        t = self.fresh(name)
        self.nodes.append(helper.make_node(
            "Transpose", [name], [t], perm=[0, 2, 1] if name in self.batched else [1, 0]))
        return t

    def gemm(self, node, ins: list[str]) -> None:
        """Y = α·op(A)·op(B) + β·C as MatMul (+ Mul by α) (+ Mul of C by β) + Add."""
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        A, B = ins[0], ins[1]
        C = ins[2] if len(ins) > 2 and ins[2] else None
        if A in self.var_shape:
            raise ValueError(f"'{A}' is the A input of Gemm '{node.name}'")
        if B in self.var_shape and len(self.var_shape[B]) != 2:
            raise ValueError(f"'{B}' is not a 2-D Gemm weight")
        if a.get("transA", 0):
            A = self.transposed(A)
        if a.get("transB", 0):
            B = self.transposed(B)
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        y = node.output[0]
        prod = self.fresh(y) if (C is not None or alpha != 1.0) else y
        self.nodes.append(helper.make_node("MatMul", [A, B], [prod]))
        if alpha != 1.0:
            scaled = self.fresh(y) if C is not None else y
            self.nodes.append(helper.make_node(
                "Mul", [prod, self.const(np.array(alpha, self.dtype), "alpha")], [scaled]))
            prod = scaled
        if C is None:
            return
        if C in self.var_shape:
            C = self.bias_of_rank(C, 2)
        elif C in self.batched and self.ranks.get(C) != 2:
            raise ValueError(f"the batched C input of Gemm '{node.name}' is not 2-D")
        if beta != 1.0:
            t = self.fresh(y)
            self.nodes.append(helper.make_node(
                "Mul", [C, self.const(np.array(beta, self.dtype), "beta")], [t]))
            C = t
        self.nodes.append(helper.make_node("Add", [prod, C], [y]))

    def matmul(self, node, ins: list[str]) -> None:
        """x @ W with W the variable: kept, W padded to [K, 1, …, 1, d, h] when x has rank
        > 2 (x [*lead, m, d] @ W [K, d, h] would pair K with lead[-1])."""
        for k, v in enumerate(ins):
            if v in self.var_shape and (k != 1 or len(self.var_shape[v]) != 2):
                raise ValueError(f"'{v}' is not the 2-D weight (second input) of MatMul "
                                 f"'{node.name}'")
        W = ins[1]
        r = self.ranks.get(ins[0])
        if W in self.var_shape and (r is None or r > 2):
            if r is None:
                raise ValueError(f"the rank of the input of MatMul '{node.name}' is unknown")
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.input[1] = self.bias_of_rank(W, r)
            node = new
        self.nodes.append(node)

    def elementwise(self, node, ins: list[str]) -> None:
        """An elementwise op with a variable operand: the variable reshaped to broadcast
        against the op's output rank + 1."""
        rank = self.ranks.get(node.output[0])
        if rank is None:
            raise ValueError(f"the rank of the output of {node.op_type} '{node.name}' is "
                             "unknown")
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for k, v in enumerate(ins):
            if v in self.var_shape:
                new.input[k] = self.bias_of_rank(v, rank)
        self.nodes.append(new)

    def shift_axes(self, node, rank):
        """``node`` (its first input gained a leading K axis) with its non-negative axes moved
        one axis right: ``axis``/``axes`` attributes, constant ``axes`` inputs (Reduce*,
        Squeeze, Unsqueeze, Slice), Transpose's ``perm``, a constant Reshape target (K
        prepended as 0, "copy this dim"). Softmax-like ops of opset < 13 get the default axis
        1 written out. Other nodes are returned as they are."""
        if node.domain not in _ONNX_DOMAINS:
            return node
        new = onnx.NodeProto()
        new.CopyFrom(node)
        attrs = {a.name: a for a in new.attribute}

        def set_attr(name, value):
            if name in attrs:
                new.attribute.remove(attrs[name])
            new.attribute.append(helper.make_attribute(name, value))

        op, opset = node.op_type, self.opset
        if op in _AXIS_OPS:
            default = {"Flatten": 1, "LayerNormalization": -1}.get(op, 0)
            if op in ("Softmax", "LogSoftmax", "Hardmax"):
                default = 1 if opset < 13 else -1
            axis = attrs["axis"].i if "axis" in attrs else default
            if axis >= 0:
                set_attr("axis", axis + 1)
        elif op == "Slice" and opset < 10:
            if "axes" in attrs:
                set_attr("axes", _shifted(attrs["axes"].ints))
            elif "starts" in attrs:
                set_attr("axes", list(range(1, len(attrs["starts"].ints) + 1)))
        elif op in _AXES_OPS:
            if "axes" in attrs:
                set_attr("axes", _shifted(attrs["axes"].ints))
            elif len(new.input) > 1 and new.input[1]:
                self.shift_axes_input(new, 1)
        elif op == "Slice" and opset >= 10:
            self.shift_slice_axes(new)
        elif op == "Transpose":
            if "perm" in attrs:
                set_attr("perm", [0] + [int(p) + 1 for p in attrs["perm"].ints])
            elif rank is not None:
                set_attr("perm", [0] + list(range(rank, 0, -1)))
        elif op == "Reshape" and len(new.input) > 1:
            target = self.const_input(new, 1)
            allowzero = attrs["allowzero"].i if "allowzero" in attrs else 0
            if target is not None and not allowzero:
                new.input[1] = self.const(
                    np.concatenate([[0], target.reshape(-1)]).astype(np.int64), "shape")
        return new

    def const_input(self, node, k: int):
        """The value of the node's k-th input when it is a constant, else None."""
        name = node.input[k] if len(node.input) > k else ""
        return numpy_helper.to_array(self.consts[name]) if name in self.consts else None

    def shift_axes_input(self, node, k: int) -> None:
        """A constant ``axes`` input (the k-th) replaced by its shifted copy."""
        axes = self.const_input(node, k)
        if axes is not None:
            node.input[k] = self.const(np.array(_shifted(axes.reshape(-1)), np.int64), "axes")

    def shift_slice_axes(self, node) -> None:
        """Slice (opset ≥ 10): its constant axes shifted, or axes 1..n written out when it has
        none (they default to 0..n-1)."""
        axes = self.const_input(node, 3)
        starts = self.const_input(node, 1)
        if axes is not None:
            node.input[3] = self.const(np.array(_shifted(axes.reshape(-1)), axes.dtype), "axes")
        elif (len(node.input) < 4 or not node.input[3]) and starts is not None:
            while len(node.input) < 4:
                node.input.append("")
            node.input[3] = self.const(np.arange(1, starts.size + 1, dtype=starts.dtype),
                                       "axes")

    # ---- the model
    def model(self):
        """The rewritten ModelProto: variables as graph inputs [K, *shape] (their
        initializers removed), new nodes and initializers, output shapes left to onnxruntime."""
        m = onnx.ModelProto()
        m.CopyFrom(self.source)
        mg = m.graph
        del mg.node[:]
        mg.node.extend(self.nodes)
        keep = [t for t in mg.initializer if t.name not in self.var_shape]
        elem = {t.name: t.data_type for t in mg.initializer if t.name in self.var_shape}
        del mg.initializer[:]
        mg.initializer.extend(keep + self.extra_inits)
        inputs = [vi for vi in mg.input if vi.name not in self.var_shape]
        inputs += [helper.make_tensor_value_info(n, elem[n], [WEIGHT_DIM, *self.var_shape[n]])
                   for n in self.names]
        del mg.input[:]
        mg.input.extend(inputs)
        for vi in mg.output:
            vi.type.tensor_type.ClearField("shape")
        del mg.value_info[:]
        return m
