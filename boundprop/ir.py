"""The intermediate representation: a DAG of primitive nodes with static shapes.

``Network`` holds the nodes in topological order; node 0 is the network input. Evaluation is one
op-agnostic pass: each node's primitive maps its inputs' arrays to its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from boundprop.errors import InputShapeError
from boundprop.ops.base import Primitive, Shape


class InputPrimitive(Primitive):
    """The network input (no computation)."""

    family: ClassVar[str] = "input"
    kind = "input"

    def __init__(self, shape: Shape) -> None:
        self.in_shapes, self.out_shape = (), tuple(shape)

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:  # pragma: no cover - never called
        raise RuntimeError("the input node is not evaluated")


@dataclass
class Node:
    """One IR node: ``op`` applied to the outputs of nodes ``inputs``."""

    name: str
    op: Primitive
    inputs: tuple[int, ...]
    onnx_op: str = ""  # the ONNX op type(s) it came from, for display
    onnx_output: str = ""  # the ONNX value this node computes, if it is one

    @property
    def shape(self) -> Shape:
        return self.op.out_shape

    @property
    def family(self) -> str:
        return self.op.family


@dataclass
class Network:
    """A network as a DAG of primitives: ``net(x)`` evaluates it in float64.

    ``x`` has the model input's shape, or a leading extra axis of samples
    (``(S, *input_shape)``), evaluated all at once.
    """

    nodes: list[Node]
    output: int
    input_name: str = "input"
    output_name: str = "output"
    source: str = ""
    sha256: str = ""
    opset: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def input_shape(self) -> Shape:
        return self.nodes[0].shape

    @property
    def output_shape(self) -> Shape:
        return self.nodes[self.output].shape

    def num_parameters(self) -> int:
        return sum(n.op.num_parameters() for n in self.nodes)

    def _as_samples(self, x: Any) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        shape = self.input_shape
        if x.shape == shape:
            return x[None], True
        if x.shape[1:] == shape:
            return x, False
        raise InputShapeError(
            f"input of shape {x.shape} does not match the model input '{self.input_name}' of "
            f"shape {shape} (or a stack of them, shape (S, *{shape}))")

    def evaluate_all(self, x: Any) -> list[np.ndarray]:
        """Every node's value, each with a leading sample axis."""
        xs, _ = self._as_samples(x)
        values: list[np.ndarray] = [xs]
        for node in self.nodes[1:]:
            values.append(node.op.evaluate(*(values[i] for i in node.inputs)))
        return values

    def __call__(self, x: Any) -> np.ndarray:
        xs, single = self._as_samples(x)
        last_use = {}
        for k, node in enumerate(self.nodes):
            for i in node.inputs:
                last_use[i] = k
        values: dict[int, np.ndarray] = {0: xs}
        for k, node in enumerate(self.nodes[1:], start=1):
            values[k] = node.op.evaluate(*(values[i] for i in node.inputs))
            for i in set(node.inputs):
                if last_use.get(i) == k and i != self.output:
                    del values[i]  # free intermediates as soon as the DAG is done with them
        y = np.asarray(values[self.output])
        return y[0] if single else y

    def consumers(self) -> dict[int, list[int]]:
        users: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for k, node in enumerate(self.nodes):
            for i in node.inputs:
                users[i].append(k)
        return users

    def summary(self) -> str:
        """One line per node: index, name, family, op, input → output shape, parameters."""
        rows = [("#", "node", "family", "op", "from", "shape", "params", "detail")]
        for k, n in enumerate(self.nodes):
            rows.append((str(k), n.name, n.family, n.op.kind + (f" ({n.onnx_op})" if n.onnx_op
                                                                 and n.onnx_op != n.op.kind
                                                                 else ""),
                         ",".join(map(str, n.inputs)) or "-",
                         "x".join(map(str, n.shape)) or "scalar",
                         f"{n.op.num_parameters():,}", n.op.describe()))
        widths = [min(max(len(r[i]) for r in rows), 40) for i in range(len(rows[0]) - 1)]
        lines = ["  ".join(c[:40].ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1]
                 for r in rows]
        fam = Counter(n.family for n in self.nodes[1:])
        head = (f"{self.source or 'network'}: input '{self.input_name}' "
                f"{'x'.join(map(str, self.input_shape))} -> output '{self.output_name}' "
                f"{'x'.join(map(str, self.output_shape))}; {len(self.nodes) - 1} nodes "
                f"({', '.join(f'{v} {k}' for k, v in fam.items())}); "
                f"{self.num_parameters():,} parameters; opset {self.opset}")
        return "\n".join([head] + [ln.rstrip() for ln in lines])

    def __repr__(self) -> str:
        return (f"Network({self.source!r}, input={self.input_shape}, output={self.output_shape}, "
                f"nodes={len(self.nodes)})")
