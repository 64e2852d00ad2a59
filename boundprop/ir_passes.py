"""IR clean-up passes run by the importer once the ONNX graph is converted: fuse a ``+ shift``
into the affine node before it (W·x + b + c = W·x + (b + c)), merge chained scale-shifts
(s₂·(s₁·x + b₁) + b₂ = (s₁s₂)·x + (b₁s₂ + b₂)), drop nodes the output does not depend on, and
refuse non-finite parameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from boundprop.errors import ModelLoadError
from boundprop.ir import Node
from boundprop.ops.affine import ElementwiseAffine
from boundprop.ops.base import AffinePrimitive, Primitive


def simplify(nodes: list[Node], output: int) -> tuple[list[Node], int]:
    """Fuse ``+ shift`` into the affine node before it, merge chained scale-shifts, drop dead
    nodes. Both fusions only apply where the earlier node has no other consumer."""
    nodes = list(nodes)
    users: dict[int, int] = {}
    for n in nodes:
        for i in n.inputs:
            users[i] = users.get(i, 0) + 1
    for k, n in enumerate(nodes):
        if not isinstance(n.op, ElementwiseAffine) or not n.inputs:
            continue
        j = n.inputs[0]
        prev = nodes[j]
        if users.get(j, 0) != 1 or j == output or j == 0:
            continue
        fused: Primitive | None = None
        if n.op.scale_raw is None and isinstance(prev.op, AffinePrimitive):
            fused = prev.op.with_extra_offset(n.op.shift_raw)
        elif isinstance(prev.op, ElementwiseAffine) and prev.op.out_shape == prev.op.in_shapes[0] \
                and n.op.out_shape == n.op.in_shapes[0]:
            fused = _compose_scale_shift(prev.op, n.op)
        if fused is not None and fused.out_shape == n.op.out_shape:
            nodes[k] = Node(prev.name, fused, prev.inputs, f"{prev.onnx_op}+{n.onnx_op}",
                            n.onnx_output)
            nodes[j] = Node(prev.name + "#dead", prev.op, (), prev.onnx_op)
    return prune(nodes, output)


def _compose_scale_shift(first: ElementwiseAffine, second: ElementwiseAffine) -> ElementwiseAffine:
    s1 = 1.0 if first.scale_raw is None else first.scale_raw
    b1 = 0.0 if first.shift_raw is None else first.shift_raw
    s2 = 1.0 if second.scale_raw is None else second.scale_raw
    b2 = 0.0 if second.shift_raw is None else second.shift_raw
    scale = None if first.scale_raw is None and second.scale_raw is None else np.asarray(s1 * s2)
    shift = None if first.shift_raw is None and second.shift_raw is None else np.asarray(
        b1 * s2 + b2)
    label = first.label or second.label
    return ElementwiseAffine(first.in_shapes[0], scale, shift, label)


def prune(nodes: list[Node], output: int) -> tuple[list[Node], int]:
    """The nodes ``output`` depends on (and the input node 0), renumbered in order."""
    live = {output}
    for k in range(output, -1, -1):
        if k in live:
            live.update(nodes[k].inputs)
    live.add(0)
    keep = sorted(live)
    index = {old: new for new, old in enumerate(keep)}
    out = [Node(nodes[k].name, nodes[k].op, tuple(index[i] for i in nodes[k].inputs),
                nodes[k].onnx_op, nodes[k].onnx_output) for k in keep]
    return out, index[output]


def check_finite(nodes: list[Node], path: Path) -> None:
    """Refuse NaN/Inf parameters (corrupt or overflowed weights) with a one-line error."""
    for n in nodes:
        for pname, p in n.op.parameters().items():
            bad = int(np.size(p) - np.count_nonzero(np.isfinite(p)))
            if bad:
                raise ModelLoadError(f"{path}: node '{n.name}' ({n.onnx_op or n.op.kind}) has "
                                     f"{bad} NaN/Inf value(s) in its {pname}; the weights are "
                                     "corrupt or overflowed")
