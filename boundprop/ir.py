"""The intermediate representation: a DAG of primitive nodes with static shapes.

``Network`` holds the nodes in topological order; node 0 is the network input. Evaluation is one
op-agnostic pass: each node's primitive maps its inputs' arrays to its own.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from boundprop.errors import BoundpropError, InputShapeError
from boundprop.ops.base import Primitive, Shape

MEMORY_ENV = "BOUNDPROP_MAX_MEMORY_BYTES"
# float64 copies of one node's values any analysis holds at once (its lower and upper bounds,
# plus the temporaries of one rule): a node needing more than the budget this way is refused
# at import, before anything that big is allocated.
NODE_COPIES = 4


def _available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 16 * 2**30


def memory_budget() -> int:
    """Bytes boundprop may use: ``BOUNDPROP_MAX_MEMORY_BYTES`` if set, else 80% of the
    available memory."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise BoundpropError(f"{MEMORY_ENV}={env!r} is not a positive number of bytes; "
                                 "set it to e.g. 4e9 or unset it")
        return int(value)
    return int(0.8 * _available_memory_bytes())


def format_bytes(n: float) -> str:
    """e.g. 1.5 GiB, 640 MiB, 12 KiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} bytes"


def check_node_memory(name: str, op: str, shape: Shape, budget: int, where: str = "") -> None:
    """Refuse a node whose float64 bounds alone (NODE_COPIES copies) exceed the budget
    (``where``: a prefix for the message, e.g. the model's path)."""
    n = float(np.prod([float(d) for d in shape])) if shape else 1.0
    need = n * 8 * NODE_COPIES
    if need > budget:
        raise BoundpropError(
            f"{where}node '{name}' ({op}) has {n:.4g} values (shape {'x'.join(map(str, shape))}); "
            f"analysing it needs about {format_bytes(need)}, over the "
            f"{format_bytes(budget)} memory budget; use a smaller model or input shape, "
            f"free memory or raise {MEMORY_ENV}")


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
    # Where the model computes in float16/bfloat16 ("" if nowhere): float32 execution bounds
    # do not apply to it.
    low_precision: str = ""

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

    def analysis_bytes(self, method: str = "interval") -> float:
        """Estimated peak bytes of an analysis: every node's float64 lower and upper bounds
        (kept for the whole pass; twice for ``"linear"``, which also keeps the interval pass's)
        plus ~10 temporaries of the largest node; ``"linear"`` adds its relaxations (4 arrays
        per node) and its back-substitution rows (chunks of at most 256 MiB, ~3 alive).
        Measured: certify (linear bounds and constants) on a 2²⁴-entry Relu layer peaks at
        ~32 copies of the input; this gives 32."""
        sizes = [float(np.prod([float(d) for d in n.shape])) for n in self.nodes]
        total, top = sum(sizes), max(sizes)
        need = 8 * (2 * total + 10 * top)
        if method == "linear":
            rows = min(256 * 2**20, 2 * top * top * 8)
            need += 8 * (2 * total + 4 * total) + 3 * rows
        return need

    def check_memory(self, method: str = "interval") -> None:
        """Refuse, before allocating, an analysis whose estimated peak memory
        (:meth:`analysis_bytes`) exceeds :func:`memory_budget`."""
        need, budget = self.analysis_bytes(method), memory_budget()
        if need > budget:
            big = max(range(len(self.nodes)), key=lambda k: np.prod(self.nodes[k].shape))
            node = self.nodes[big]
            raise BoundpropError(
                f"{self.source or 'network'}: {method} bounds need about {format_bytes(need)} "
                f"({len(self.nodes)} nodes; largest '{node.name}' with "
                f"{float(np.prod(node.shape)):.4g} values), over the {format_bytes(budget)} "
                f"memory budget; use a smaller input shape, free memory or raise {MEMORY_ENV}")

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
