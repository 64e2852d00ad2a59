"""ONNX graph edits of the Gauss-Newton oracle (``../shared/refs/gn.md`` §4): the model loaded
through the importer's safety checks, a float64 copy of a float32 graph, a copy whose batch
axis is symbolic (so that K points run as one batch of K·N rows), initializers exposed as
overridable graph inputs, and the op an onnxruntime error names. Each edit returns a new
ModelProto; the oracle verifies every rewritten graph against per-point runs before using it.
The weight-batching rewrite is in :mod:`boundprop.gn.weight_batching`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from boundprop.errors import BoundpropError
from boundprop.importer import check_external_data, read_model

__all__ = ["BATCH_DIM", "NAME_OF_NP", "NP_OF_ELEM", "dims_of", "expose_initializers",
           "free_batch", "load_model", "one_line", "op_of_error", "subgraphs", "to_float64"]

_FLOAT, _FLOAT16, _DOUBLE = 1, 10, 11  # onnx.TensorProto elem types
NP_OF_ELEM = {_FLOAT: np.float32, _DOUBLE: np.float64, _FLOAT16: np.float16}
NAME_OF_NP = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
              np.dtype(np.float16): "float16"}
BATCH_DIM = "gn_batch"


def load_model(path: Path):
    """The ModelProto with its external data, through the importer's safety checks."""
    model = read_model(path)
    if check_external_data(model, path):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as e:
            raise BoundpropError(f"{path}: could not read its external data ({e})") from None
    return model


def dims_of(vi) -> list:
    """Dims of a value info: int for a fixed dim, the dim_param string (or None) otherwise."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in t.shape.dim]


def subgraphs(graph):
    """The graph and all its subgraphs (If/Loop/Scan bodies)."""
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == a.GRAPH:
                yield from subgraphs(a.g)
            elif a.type == a.GRAPHS:
                for g in a.graphs:
                    yield from subgraphs(g)


def _to_double_tensor(t):
    """Rewrite a float32 TensorProto in place as float64."""
    if t.data_type == _FLOAT:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))


def to_float64(model):
    """A copy of ``model`` computing in float64: float initializers, Constant values, graph
    inputs/outputs/value infos, Cast targets and dtype attributes become double."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for g in subgraphs(m.graph):
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
                            "value", numpy_helper.from_array(value)))
    return m


def free_batch(model, data_names: list[str], output_name: str):
    """A copy of ``model`` whose data inputs and output have a symbolic leading dim (value
    infos dropped: onnxruntime re-infers them), or None when the dims do not allow it.
    Reshapes to a constant shape starting with the fixed batch (PyTorch's ``view(1, -1)``)
    get ``[-1, *inferred dims]`` instead. The caller must verify the result."""
    g = model.graph
    ins = [vi for vi in g.input if vi.name in data_names]
    out = [vi for vi in g.output if vi.name == output_name]
    dims = [dims_of(vi) for vi in ins + out]
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
            vi.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    for vi in m.graph.output:
        if vi.type.tensor_type.HasField("shape") and len(vi.type.tensor_type.shape.dim):
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM if vi.name == output_name \
                else "gn_other_" + vi.name
    del m.graph.value_info[:]
    if isinstance(n0, int) and any(n.op_type == "Reshape" for n in g.node):
        _free_reshape_targets(model, m, n0)
    return m


def _free_reshape_targets(model, m, n0: int) -> None:
    """In ``m`` (the copy of ``model`` being freed), each Reshape to a constant target that
    starts with the fixed batch ``n0`` and whose inferred output dims are all known gets the
    target ``[-1, *inferred dims[1:]]`` instead (a new initializer)."""
    g = model.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        shapes = {vi.name: dims_of(vi) for vi in inferred.graph.value_info}
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


def expose_initializers(model, names: list[str]):
    """A copy where the initializers ``names`` are also graph inputs (overridable; IR ≥ 4)."""
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


def op_of_error(message: str) -> str:
    """The op onnxruntime complains about, from its error message."""
    for pattern in (r"implementation for (\w+)\(", r"of operator \((\w+)\)", r"Op \((\w+)\)",
                    r"node (?:with name )?'?([\w/.:-]+)'?"):
        hit = re.search(pattern, message)
        if hit:
            return hit.group(1)
    return ""


def one_line(e: BaseException, limit: int = 200) -> str:
    """The error's text on one line, cut at ``limit`` characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"

