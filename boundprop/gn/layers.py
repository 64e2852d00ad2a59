"""The ONNX layers whose constant weights the Gauss-Newton tools treat as parameters: one table
for the weight-batching rewrite (:mod:`boundprop.gn.weight_batching`) and the layer queries
of :mod:`boundprop.gn.uses` (the last layer to fit, the parameters the certified step covers).

``LAYER_OPS`` are the ONNX op types the importer turns into parametric IR primitives
(``Dense`` from Gemm/MatMul, ``Conv``: ``op.has("parametric")``), so their weights and biases
are what ``constants(wrt="params")`` bounds; tests/test_gn.py checks the table against the
IR of the shipped models. ``DENSE_LAYER_OPS`` are those whose 2-D weight batches over K weight
points in one onnxruntime run (MatMul broadcasts x [N, d] @ W [K, d, h] → [K, N, h]).
``BIAS_OPS`` are the elementwise ops through which a variable enters as a bias or scale."""

from __future__ import annotations

import os

import onnx

from boundprop.errors import BoundpropError

__all__ = ["BIAS_OPS", "DENSE_LAYER_OPS", "LAYER_OPS", "last_layer_names",
           "parameter_initializers"]

DENSE_LAYER_OPS = ("Gemm", "MatMul")
LAYER_OPS = (*DENSE_LAYER_OPS, "Conv")
BIAS_OPS = ("Add", "Sub", "Mul", "Div")


def parameter_initializers(model_path: str | os.PathLike) -> set[str]:
    """Initializer names used as the weight or bias of a layer of ``LAYER_OPS`` (or by the
    bias Add right after one): the parameters ``constants(wrt="params")`` covers."""
    g = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    out: set[str] = set()
    producers = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type in LAYER_OPS:
            out |= {i for i in n.input if i in inits}
        elif n.op_type == "Add":
            src = [producers.get(i) for i in n.input if i not in inits]
            if len(src) == 1 and src[0] is not None and src[0].op_type in LAYER_OPS:
                out |= {i for i in n.input if i in inits}
    return out


def last_layer_names(model: str | os.PathLike) -> list[str]:
    """The weight and bias initializers of the last layer of ``LAYER_OPS`` in the graph (its
    constant inputs, and those of a bias Add right after it)."""
    g = onnx.load(str(model), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    allowed = parameter_initializers(model)
    producers = {o: n for n in g.node for o in n.output}
    last = None
    for n in g.node:
        if n.op_type in LAYER_OPS and any(i in inits for i in n.input):
            last = n
    if last is None:
        raise BoundpropError(f"{model}: no {'/'.join(LAYER_OPS)} layer with constant "
                             "weights")
    names = [i for i in last.input if i in inits]
    for n in g.node:  # a bias Add after it
        if n.op_type == "Add" and any(producers.get(i) is last for i in n.input):
            names += [i for i in n.input if i in inits and i in allowed]
    return names
