"""ONNX → IR: load safely, check, upgrade old opsets, fold constants, normalise to primitives.

Steps (``load``):
1. read the file (refusing external data that points outside the model's folder, and models whose
   parameters would not fit in memory), ``onnx.checker``;
2. upgrade opsets older than 9 with ``onnx.version_converter``;
3. one pass over the nodes in topological order: values known at import time (initializers,
   Constant nodes, Shape of a static tensor, and everything computed from those: the
   Shape→Gather→Unsqueeze→Concat→Reshape chains exporters emit) are folded with the ONNX
   reference evaluator (``boundprop.constant_folding``); every other node goes to its
   registered converter, which emits IR primitives; Identity/Dropout disappear;
4. cross-check the IR shapes with ONNX shape inference, then (``boundprop.ir_passes``) refuse
   non-finite parameters, fuse biases into the affine node before them, merge chained
   scale-shifts and drop dead nodes.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from boundprop.constant_folding import fold
from boundprop.errors import (
    BoundpropError,
    BoundpropNote,
    InputShapeError,
    ModelLoadError,
    UnsupportedModelError,
)
from boundprop.ir import InputPrimitive, Network, Node, check_node_memory, memory_budget
from boundprop.ir_passes import check_finite, simplify
from boundprop.ops import CONVERTERS, supported_onnx_ops
from boundprop.ops.base import Const, ConversionContext, Primitive, Tensor

MIN_OPSET = 9  # older models are upgraded to this opset first
_FLOAT_ELEM_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                     onnx.TensorProto.BFLOAT16}


class _Unknown:
    """Marks values downstream of an unsupported node (so all unsupported ops get reported)."""


UNKNOWN = _Unknown()
_PASS_THROUGH = {"Identity", "Dropout", "Shape", "Size", "Constant"}


def _all_tensors(graph: onnx.GraphProto):
    """Every TensorProto of a graph (initializers, Constant attributes, subgraphs)."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_tensors(g)


def _tensor_nbytes(t: onnx.TensorProto) -> int:
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except Exception:
        itemsize = 8
    return int(np.prod(t.dims, dtype=np.float64)) * itemsize


def read_model(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises several types on garbage
        raise ModelLoadError(f"{path}: not a readable ONNX file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'parse error'}); "
                             "is it truncated or another format?") from None
    if not model.HasField("graph") or model.ir_version <= 0 or not model.graph.node:
        raise ModelLoadError(f"{path}: not an ONNX model (no graph, IR version or nodes); is the "
                             "file truncated or another format?")
    return model


def model_digest(path: str | Path, model: onnx.ModelProto | None = None) -> str:
    """The model's sha256: of the .onnx file's bytes, or — when tensors keep their data in
    external files — of ``"boundprop-model/1"``, the .onnx file's sha256 and, for each external
    file in name order, its name and sha256 (so swapping a weight file changes the digest)."""
    path = Path(path)
    data = path.read_bytes()
    if model is None:
        model = onnx.load_from_string(data) if b"location" in data else None
    locations = sorted({e.value for t in _all_tensors(model.graph)
                        if t.data_location == onnx.TensorProto.EXTERNAL
                        for e in t.external_data if e.key == "location"}) if model else []
    if not locations:
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256(b"boundprop-model/1\0" + hashlib.sha256(data).digest())
    for loc in locations:
        h.update(loc.encode() + b"\0")
        h.update(hashlib.sha256((path.parent / loc).read_bytes()).digest())
    return h.hexdigest()


def check_external_data(model: onnx.ModelProto, path: Path) -> bool:
    """Refuse external data outside the model's folder; True if the model has any."""
    base = path.parent.resolve()
    has_external = False
    for t in _all_tensors(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        has_external = True
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        try:
            target = (base / loc).resolve() if "\0" not in loc else None
        except (OSError, ValueError):
            target = None
        if not loc or target is None or Path(loc).is_absolute() \
                or not target.is_relative_to(base):
            raise ModelLoadError(f"{path}: tensor '{t.name}' keeps its data at '{loc}', outside "
                                 "the model's folder; refused (external data must sit beside "
                                 "the model)")
        if not target.is_file():
            raise ModelLoadError(f"{path}: tensor '{t.name}' needs external data file '{loc}', "
                                 "which is missing; copy it beside the model")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1) or -1)
        except ValueError:
            raise ModelLoadError(f"{path}: tensor '{t.name}' has a non-integer external-data "
                                 "offset or length; re-export the model") from None
        if offset < 0:
            raise ModelLoadError(f"{path}: tensor '{t.name}' has a negative external-data "
                                 "offset; re-export the model")
        need = offset + (length if length >= 0 else 0)
        if need > target.stat().st_size:
            raise ModelLoadError(f"{path}: tensor '{t.name}' reads past the end of '{loc}'; the "
                                 "external data file is truncated")
    return has_external


def _check_memory(model: onnx.ModelProto, path: Path) -> None:
    n_bytes = sum(_tensor_nbytes(t) for t in _all_tensors(model.graph))
    # Parameters are held once as loaded and once in float64 by the IR.
    need = n_bytes * 3
    budget = memory_budget()
    if need > budget:
        raise ModelLoadError(
            f"{path}: its {n_bytes / 2**30:.2f} GiB of weights need about {need / 2**30:.1f} GiB "
            f"to import, over the {budget / 2**30:.1f} GiB available; free memory or set "
            "BOUNDPROP_MAX_MEMORY_BYTES")


LARGE_TENSOR_BYTES = 1 << 20


def _structure_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without the data of its large initializers (declared as typed graph inputs
    instead): what the checker and shape inference need, without serialising the weights
    (for VGG16 that saves ~18 s). The dropped tensors are validated when converted to arrays."""
    g = model.graph
    big = [t for t in g.initializer if _tensor_nbytes(t) >= LARGE_TENSOR_BYTES]
    if not big:
        return model
    big_names = {t.name for t in big}
    light = onnx.ModelProto()
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(light, f, getattr(model, f))
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    lg = light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(vi for vi in g.input if vi.name not in big_names)
    lg.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                    for t in big)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    lg.initializer.extend(t for t in g.initializer if t.name not in big_names)
    lg.sparse_initializer.extend(g.sparse_initializer)
    if light.ir_version < 4:
        light.ir_version = 4  # initializers need not be inputs from IR 4 on
    return light


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _upgrade(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
        raise UnsupportedModelError(
            f"{path}: opset {_opset(model)} is older than {MIN_OPSET} and the ONNX version "
            f"converter could not upgrade it ({str(e).splitlines()[0][:200]}); re-export with "
            f"opset >= {MIN_OPSET}") from None


def _static_shape(vi: onnx.ValueInfoProto) -> tuple[tuple[int | None, ...], list[str]]:
    """The declared dims (None where symbolic or unset) and how to show them ('batch', 784)."""
    dims, names = [], []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
            names.append(str(d.dim_value))
        else:
            dims.append(None)
            names.append(repr(d.dim_param) if d.dim_param else "?")
    return tuple(dims), names


def _check_declarations(model: onnx.ModelProto, path: Path) -> None:
    """Refuse an opset newer than this onnx knows (onnxruntime refuses it too) and negative
    dims declared for any value or initializer (nothing has a negative size)."""
    newest = onnx.defs.onnx_opset_version()
    if _opset(model) > newest:
        raise UnsupportedModelError(
            f"{path}: default-domain opset {_opset(model)} is newer than the newest this "
            f"installation supports ({newest}); re-export with opset <= {newest}")
    g = model.graph
    for vi in [*g.input, *g.output, *g.value_info]:
        dims, _ = _static_shape(vi)
        if any(d is not None and d < 0 for d in dims):
            raise ModelLoadError(f"{path}: value '{vi.name}' is declared with a negative dim "
                                 f"{list(dims)}; the model is corrupt")
    produced = [o for n in g.node for o in n.output if o] + [t.name for t in g.initializer]
    seen: set[str] = set()
    for name in produced:
        if name in seen:
            raise ModelLoadError(f"{path}: value '{name}' is produced twice (by two nodes, or a "
                                 "node and an initializer); an ONNX graph assigns each value once")
        seen.add(name)
    for t in _all_tensors(g):
        if any(d < 0 for d in t.dims):
            raise ModelLoadError(f"{path}: tensor '{t.name}' has negative dims {list(t.dims)}; "
                                 "the model is corrupt")


class _Builder:
    """Collects IR nodes while the ONNX graph is walked."""

    def __init__(self, input_shape: tuple[int, ...], input_name: str, where: str = "") -> None:
        self.budget, self.where = memory_budget(), where
        check_node_memory(input_name, "input", input_shape, self.budget, where)
        self.nodes: list[Node] = [Node(input_name, InputPrimitive(input_shape), ())]
        self.names: set[str] = {input_name}

    def emit(self, prim: Primitive, inputs: list[Tensor], name: str, onnx_op: str) -> Tensor:
        for t, s in zip(inputs, prim.in_shapes):
            if tuple(t.shape) != tuple(s):  # converter bug guard
                raise RuntimeError(f"{name}: input shape {t.shape} != primitive's {s}")
        unique, k = name, 1
        while unique in self.names:
            k += 1
            unique = f"{name}#{k}"
        self.names.add(unique)
        self.nodes.append(Node(unique, prim, tuple(t.node for t in inputs), onnx_op))
        return Tensor(len(self.nodes) - 1, prim.out_shape)


def _convert_graph(model: onnx.ModelProto, path: Path, input_name: str,
                   input_shape: tuple[int, ...], constants: dict[str, np.ndarray],
                   output_name: str) -> tuple[list[Node], int]:
    """Step 3: the IR nodes of the graph (in its topological order) and the output's index."""
    graph = model.graph
    opset = _opset(model)
    builder = _Builder(input_shape, input_name, f"{path}: ")
    ctx = ConversionContext(opset, builder.emit)
    ctx.check_shape = lambda shape: check_node_memory(
        ctx.node.name or ctx.node.output[0], ctx.node.op_type, shape, builder.budget,
        builder.where)
    ctx.graph_nodes = builder.nodes
    values = _initial_values(graph, path, input_name, input_shape, constants)
    unsupported: list[str] = []
    for node in graph.node:
        args = [values.get(n, UNKNOWN) if n else None for n in node.input]
        missing = [n for n, a in zip(node.input, args) if a is UNKNOWN and n not in values]
        if missing and not unsupported:
            later = {o for n in graph.node for o in n.output} & set(missing)
            raise ModelLoadError(
                f"{path}: node '{node.name or node.output[0]}' ({node.op_type}) reads undefined "
                f"value(s) {missing}"
                + ("; they are computed later: the graph has a cycle or is not in topological "
                   "order" if later else ""))
        outs = _node_values(node, args, ctx, builder, path, unsupported)
        for name, v in zip(node.output, outs):
            if name:
                values[name] = UNKNOWN if v is None else v
                if isinstance(v, Tensor) and not builder.nodes[v.node].onnx_output:
                    builder.nodes[v.node].onnx_output = name
    return builder.nodes, _output_node(values, path, input_name, output_name, unsupported)


def _initial_values(graph: onnx.GraphProto, path: Path, input_name: str,
                    input_shape: tuple[int, ...], constants: dict[str, np.ndarray]
                    ) -> dict[str, Any]:
    """Value name -> what is known before the first node: initializers and the given
    constants (Const), the analysed input (the IR's node 0); "" is an omitted input."""
    values: dict[str, Any] = {"": None}
    for init in graph.initializer:
        try:
            values[init.name] = Const(numpy_helper.to_array(init))
        except Exception as e:
            raise ModelLoadError(f"{path}: initializer '{init.name}' is corrupt ({e})") from None
    for init in graph.sparse_initializer:
        values[init.values.name] = Const(numpy_helper.to_array(init))
    for name, arr in constants.items():
        values[name] = Const(np.asarray(arr))
    values[input_name] = Tensor(0, input_shape)
    return values


def _node_values(node: onnx.NodeProto, args: list[Any], ctx: ConversionContext,
                 builder: _Builder, path: Path, unsupported: list[str]) -> list[Any]:
    """The values of one ONNX node's outputs: UNKNOWN downstream of an unsupported node (which
    is added to ``unsupported``), the input itself for Identity/Dropout, Const for Shape/Size
    of a tensor and for nodes of constant inputs (folded), else the converter's IR tensors."""
    if node.domain not in ("", "ai.onnx"):
        unsupported.append(f"{node.domain}.{node.op_type} (node '{node.name}')")
        return [UNKNOWN] * len(node.output)
    if any(a is UNKNOWN for a in args):
        if node.op_type not in _PASS_THROUGH and node.op_type not in CONVERTERS:
            unsupported.append(f"{node.op_type} (node '{node.name or node.output[0]}')")
        return [UNKNOWN] * len(node.output)
    if node.op_type in ("Identity", "Dropout"):
        if node.op_type == "Dropout" and len(args) > 2 and isinstance(args[2], Const) and \
                bool(np.asarray(args[2].value)):
            raise UnsupportedModelError(f"node '{node.name}' (Dropout) runs in training mode "
                                        "(random); export the model in inference mode")
        return [args[0]] + [UNKNOWN] * (len(node.output) - 1)
    if node.op_type in ("Shape", "Size") and isinstance(args[0], Tensor):
        shape = np.array(args[0].shape, dtype=np.int64)
        if node.op_type == "Size":
            return [Const(np.array(int(np.prod(shape)), dtype=np.int64))]
        start = attr_int(node, "start", 0)
        end = attr_int(node, "end", len(shape))
        return [Const(shape[start:end])]
    if all(a is None or isinstance(a, Const) for a in args):
        return fold(node, args, ctx.opset)
    if node.op_type not in CONVERTERS:
        unsupported.append(f"{node.op_type} (node '{node.name or node.output[0]}')")
        return [UNKNOWN] * len(node.output)
    return _convert_node(node, args, ctx, builder, path)


def _convert_node(node: onnx.NodeProto, args: list[Any], ctx: ConversionContext,
                  builder: _Builder, path: Path) -> list[Any]:
    """The node's registered converter, its errors as one-line UnsupportedModelError; the IR
    nodes it emits are refused if their bounds could not fit in memory."""
    ctx.node = node
    first_new = len(builder.nodes)
    try:
        outs = CONVERTERS[node.op_type](ctx, node, args)
    except BoundpropError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, ArithmeticError,
            RuntimeError) as e:  # numpy's, on hostile attributes (e.g. rank > 32)
        raise UnsupportedModelError(
            f"node '{node.name or node.output[0]}' ({node.op_type}): cannot convert "
            f"({type(e).__name__}: {e})") from None
    except MemoryError:
        raise UnsupportedModelError(
            f"{path}: node '{node.name or node.output[0]}' ({node.op_type}) does not fit "
            "in memory; use a smaller model or input shape") from None
    for n in builder.nodes[first_new:]:  # refuse nodes whose bounds cannot fit
        check_node_memory(n.name, n.onnx_op, n.shape, builder.budget, builder.where)
    return outs


def _output_node(values: dict[str, Any], path: Path, input_name: str, output_name: str,
                 unsupported: list[str]) -> int:
    """The IR index of the analysed output, once every node is converted; the unsupported ops
    (all of them, in one message) or an output that is not a function of the input refused."""
    if unsupported:
        shown = ", ".join(unsupported[:12]) + (" ..." if len(unsupported) > 12 else "")
        raise UnsupportedModelError(
            f"{path}: unsupported op(s): {shown}; boundprop supports "
            f"{len(supported_onnx_ops())} ONNX op types, listed by `boundprop ops` "
            "(bp.supported_onnx_ops()), e.g. Conv, Gemm, Relu")
    out = values.get(output_name, UNKNOWN)
    if isinstance(out, Const):
        raise UnsupportedModelError(f"{path}: output '{output_name}' does not depend on the "
                                    f"input '{input_name}'")
    if not isinstance(out, Tensor):
        raise UnsupportedModelError(f"{path}: output '{output_name}' could not be computed "
                                    "(it comes from an unused auxiliary output of a node)")
    return out.node


def attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(onnx.helper.get_attribute_value(a))
    return default


_LOW_PRECISION = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}


def _low_precision(model: onnx.ModelProto, inferred: onnx.ModelProto | None) -> str:
    """Where the model computes in float16/bfloat16 (its input, or a node other than a Cast
    whose output ONNX type inference types so), as a phrase; "" if nowhere. The float32
    execution model does not cover such arithmetic."""
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in [*g.input, *g.output, *g.value_info,
                        *(inferred.graph.value_info if inferred is not None else [])]}
    for vi in g.input:
        if vi.type.tensor_type.elem_type in _LOW_PRECISION:
            return f"input '{vi.name}' is {_LOW_PRECISION[vi.type.tensor_type.elem_type]}"
    for node in g.node:
        if node.op_type in ("Cast", "CastLike", "Constant"):
            continue
        for o in node.output:
            if types.get(o) in _LOW_PRECISION:
                return (f"node '{node.name or o}' ({node.op_type}) computes in "
                        f"{_LOW_PRECISION[types[o]]}")
    return ""


def _check_shapes(model: onnx.ModelProto, nodes: list[Node], path: Path
                  ) -> onnx.ModelProto | None:
    """Where ONNX shape inference found a static shape for an intermediate value, ours should
    agree; a disagreement is reported as a warning (exporters do write wrong value_info, and
    onnxruntime, which the IR is tested against, ignores it). Returns the inferred model."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        return None
    known = {}
    for vi in inferred.graph.value_info:
        dims, _ = _static_shape(vi)
        if vi.type.tensor_type.HasField("shape") and all(d is not None for d in dims):
            known[vi.name] = dims
    for n in nodes[1:]:
        if not n.op.onnx_shape_inference_agrees():
            continue
        if n.onnx_output in known and known[n.onnx_output] != tuple(n.shape):
            warnings.warn(f"{path}: value '{n.onnx_output}' has shape {n.shape} in boundprop but "
                          f"{known[n.onnx_output]} by ONNX shape inference", stacklevel=3)
    return inferred


# --------------------------------------------------------------------------------------------


def load(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None,
         input_name: str | None = None, output_name: str | None = None,
         constants: dict[str, np.ndarray] | None = None) -> Network:
    """Read an ONNX model into a :class:`~boundprop.ir.Network`.

    Args:
        path: the ``.onnx`` file (external data, if any, must sit in its folder).
        input_shape: static shape of the input, required when the model's is dynamic.
        input_name: which graph input is the analysed input, when there are several.
        output_name: which graph output, when there are several (default: the first).
        constants: fixed values for other graph inputs.

    Raises:
        ModelLoadError, UnsupportedModelError, InputShapeError: with a one-line message.
    """
    path = Path(path)
    model = _read_checked(path)
    opset = _opset(model)
    if opset < MIN_OPSET:
        model = _upgrade(model, path)
        opset = _opset(model)
    constants = dict(constants or {})
    chosen = _choose_input(model.graph, path, input_name, constants)
    shape = _input_shape(chosen, path, input_shape)
    output_name = _choose_output(model.graph, path, output_name)
    nodes, out = _convert_graph(model, path, chosen.name, shape, constants, output_name)
    check_finite(nodes, path)
    structure = _structure_only(model)
    low_precision = _low_precision(structure, _check_shapes(structure, nodes, path))
    nodes, out = simplify(nodes, out)
    digest = model_digest(path)
    meta = {p.key: p.value for p in model.metadata_props}
    return Network(nodes=nodes, output=out, input_name=chosen.name, output_name=output_name,
                   source=str(path), sha256=digest, opset=opset, metadata=meta,
                   low_precision=low_precision)


def _read_checked(path: Path) -> onnx.ModelProto:
    """Step 1: the model read (external data beside it, parameters that fit in memory) and
    validated by ``onnx.checker``."""
    model = read_model(path)
    _check_declarations(model, path)
    has_external = check_external_data(model, path)
    _check_memory(model, path)
    if has_external:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as e:
            raise ModelLoadError(f"{path}: could not read its external data ({e})") from None
    structure = _structure_only(model)
    try:
        onnx.checker.check_model(str(path) if has_external and structure is model
                                 else structure)
    except Exception as e:
        msg = str(e).strip().splitlines()
        # Graph outputs declared without a shape are common in exported files and harmless:
        # boundprop computes every shape itself.
        if not msg or "Field 'shape' of 'type' is required" not in msg[0]:
            raise ModelLoadError(f"{path}: invalid ONNX model: {msg[0] if msg else e}") from None
    return model


def _choose_input(graph: onnx.GraphProto, path: Path, input_name: str | None,
                  constants: dict[str, np.ndarray]) -> onnx.ValueInfoProto:
    """The analysed graph input: the only one without an initializer or a given constant, or
    the one named ``input_name`` (the others must then have constants); a float tensor."""
    init_names = {t.name for t in graph.initializer} | {
        t.values.name for t in graph.sparse_initializer}
    inputs = [vi for vi in graph.input if vi.name not in init_names and vi.name not in constants]
    if input_name is None:
        if len(inputs) != 1:
            names = ", ".join(f"'{vi.name}'" for vi in inputs) or "none"
            raise InputShapeError(
                f"{path}: the model has {len(inputs)} inputs ({names}); choose one with "
                "input_name=... (CLI: --input NAME) and give the others with constants=...")
        chosen = inputs[0]
    else:
        match = [vi for vi in inputs if vi.name == input_name]
        if not match:
            raise InputShapeError(f"{path}: no graph input named '{input_name}'; inputs are "
                                  + ", ".join(f"'{vi.name}'" for vi in inputs))
        chosen = match[0]
        others = [vi.name for vi in inputs if vi.name != input_name]
        if others:
            raise InputShapeError(f"{path}: inputs {others} have no value; give them with "
                                  "constants={name: array}")
    if chosen.type.tensor_type.elem_type not in _FLOAT_ELEM_TYPES:
        raise UnsupportedModelError(f"{path}: input '{chosen.name}' is not a float tensor; "
                                    "boundprop analyses real-valued inputs")
    return chosen


def _input_shape(chosen: onnx.ValueInfoProto, path: Path,
                 input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The static input shape: the declared one, or ``input_shape`` where it fits the declared
    dims (required when a dim other than the leading one is dynamic). A dynamic leading (batch)
    dim alone is fixed to 1, with a :class:`~boundprop.errors.BoundpropNote` warning."""
    dims, names = _static_shape(chosen)
    if 0 in dims:
        raise InputShapeError(f"{path}: input '{chosen.name}' is declared with shape "
                              f"[{', '.join(names)}], which has no entries; nothing to analyse")
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
        if len(input_shape) != len(dims) or any(
                d is not None and d != s for d, s in zip(dims, input_shape)) or any(
                s <= 0 for s in input_shape):
            raise InputShapeError(f"{path}: input_shape {list(input_shape)} does not fit the "
                                  f"model input '{chosen.name}' of shape [{', '.join(names)}]")
        return input_shape
    if len(dims) >= 2 and dims[0] is None and None not in dims[1:]:
        # A free leading (batch) dim, as many exporters and competition models declare it:
        # one sample is analysed, and onnxruntime is fed batch-1 inputs the same way.
        warnings.warn(BoundpropNote(
            f"{path}: input '{chosen.name}' has a dynamic batch dim [{', '.join(names)}]; it is "
            f"fixed to 1 (give --input-shape, Python: input_shape=, for another size)"),
            stacklevel=3)
        return (1, *(int(d) for d in dims[1:]))
    if any(d is None for d in dims):
        guess = ", ".join("1" if d is None else str(d) for d in dims)
        raise InputShapeError(
            f"{path}: input '{chosen.name}' has dynamic dims [{', '.join(names)}]; give "
            f"--input-shape {guess.replace(' ', '')} (Python: input_shape=({guess}))")
    return tuple(int(d) for d in dims)


def _choose_output(graph: onnx.GraphProto, path: Path, output_name: str | None) -> str:
    """The analysed graph output: ``output_name``, or the first one."""
    outputs = [o.name for o in graph.output]
    if not outputs:
        raise ModelLoadError(f"{path}: the graph declares no outputs; nothing to analyse")
    if output_name is None:
        return outputs[0]
    if output_name not in outputs:
        raise InputShapeError(f"{path}: no graph output named '{output_name}'; outputs are "
                              f"{outputs}")
    return output_name


__all__ = ["load"]
