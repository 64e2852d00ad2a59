"""Constant folding for the importer: a node whose inputs are all known at import time
(initializers, Constant nodes, Shape of a static tensor, and what is computed from those, e.g.
the Shape→Gather→Unsqueeze→Concat→Reshape chains exporters emit) is evaluated by the ONNX
reference evaluator; constants that would exceed ``MAX_FOLDED_ELEMENTS`` are refused first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from boundprop.errors import UnsupportedModelError
from boundprop.ops.base import Const

MAX_FOLDED_ELEMENTS = 50_000_000  # a folded constant larger than this is refused (memory)


def fold(node: onnx.NodeProto, args: list[Any], opset: int) -> list[Const]:
    """The outputs of a node whose inputs are all known (Const, or None where omitted),
    evaluated by the ONNX reference evaluator at the model's opset."""
    vals = [None if a is None else a.value for a in args]
    _guard_fold_size(node, vals)
    feeds = {name: np.asarray(v) for name, v in zip(node.input, vals) if name}
    try:
        # A one-node model, so that the evaluator uses the op version of the model's opset.
        g = onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(
                n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in feeds.items()],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in node.output if o])
        m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", opset)])
        outs = ReferenceEvaluator(m).run(None, feeds)
    except Exception as e:
        raise UnsupportedModelError(
            f"node '{node.name or node.output[0]}' ({node.op_type}): could not fold its constant "
            f"inputs ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from None
    return [Const(np.asarray(o)) for o in outs]


def _guard_fold_size(node: onnx.NodeProto, vals: list[Any]) -> None:
    n = None
    if node.op_type == "ConstantOfShape" and vals and vals[0] is not None:
        n = float(np.prod(vals[0].astype(np.float64)))
    elif node.op_type == "Expand" and len(vals) > 1:
        n = float(np.prod(np.maximum(vals[1], 1).astype(np.float64))) * max(1, np.size(vals[0]))
    elif node.op_type == "Tile" and len(vals) > 1:
        n = float(np.size(vals[0])) * float(np.prod(vals[1].astype(np.float64)))
    elif node.op_type == "Range" and len(vals) > 2:
        n = abs(float(vals[1]) - float(vals[0])) / max(abs(float(vals[2])), 1e-300)
    if n is not None and n > MAX_FOLDED_ELEMENTS:
        raise UnsupportedModelError(
            f"node '{node.name or node.output[0]}' ({node.op_type}) would build a constant of "
            f"{n:.3g} elements; refused (limit {MAX_FOLDED_ELEMENTS:,})")
