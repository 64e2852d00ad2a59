"""Primitives that move, copy or drop entries: Reshape (Flatten/Squeeze/Unsqueeze), Transpose,
Slice (Split), Pad, Gather with constant indices, Expand, Tile, Concat with constants.

All are affine maps whose matrix has 0/1 entries (Pad and Concat may add a constant offset).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from boundprop.domains.interval_ort import FastIntervalUnavailable, down32, up32
from boundprop.ops.base import (
    Const,
    ConversionContext,
    PermutationPrimitive,
    Shape,
    Tensor,
    Value,
    as_str,
    attr,
    const_value,
    float_array,
    normalize_axis,
    onnx_converter,
)
from boundprop.ops.broadcast import lift_input, sum_to_shape


class Reshape(PermutationPrimitive):
    """Same entries, new shape (row-major order, as ONNX Reshape)."""
    rules: ClassVar[frozenset[str]] = (
        PermutationPrimitive.rules | {"ort_interval", "entry_selection"})

    kind = "reshape"

    def __init__(self, in_shape: Shape, out_shape: Shape) -> None:
        if int(np.prod(in_shape)) != int(np.prod(out_shape)):
            raise ValueError(f"cannot reshape {in_shape} to {out_shape}")
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(int(d) for d in out_shape)

    def linear(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((x.shape[0],) + self.out_shape)

    def emit_interval_onnx(self, b, x):
        if 0 in self.out_shape:
            raise FastIntervalUnavailable("empty tensors")
        shape = b.const(np.array(self.out_shape, np.int64))
        return b.both(x, lambda n: b.op("Reshape", [n, shape]), self.out_shape)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        return lam.reshape((lam.shape[0],) + self.in_shapes[0])

    def describe(self) -> str:
        return "->".join(["x".join(map(str, s)) or "scalar" for s in (self.in_shapes[0],
                                                                      self.out_shape)])


class Transpose(PermutationPrimitive):
    rules: ClassVar[frozenset[str]] = (
        PermutationPrimitive.rules | {"ort_interval", "entry_selection"})
    kind = "transpose"

    def __init__(self, in_shape: Shape, perm: tuple[int, ...]) -> None:
        self.perm = tuple(int(p) for p in perm)
        if sorted(self.perm) != list(range(len(in_shape))):
            raise ValueError(f"perm {perm} is not a permutation of the {len(in_shape)} axes")
        self.in_shapes = (tuple(in_shape),)
        self.out_shape = tuple(in_shape[p] for p in self.perm)

    def linear(self, x: np.ndarray) -> np.ndarray:
        return x.transpose((0,) + tuple(p + 1 for p in self.perm))

    def emit_interval_onnx(self, b, x):
        return b.both(x, lambda n: b.op("Transpose", [n], perm=list(self.perm)), self.out_shape)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        inv = np.argsort(self.perm)
        return lam.transpose((0,) + tuple(int(p) + 1 for p in inv))

    def describe(self) -> str:
        return f"perm={list(self.perm)}"


class Slice(PermutationPrimitive):
    """Basic slicing, one Python slice per axis (already clamped as ONNX specifies)."""
    rules: ClassVar[frozenset[str]] = (
        PermutationPrimitive.rules | {"ort_interval", "entry_selection"})

    kind = "slice"

    def __init__(self, in_shape: Shape, slices: tuple[slice, ...]) -> None:
        self.in_shapes = (tuple(in_shape),)
        self.slices = tuple(slices)
        self.out_shape = tuple(len(range(*s.indices(n))) for s, n in zip(slices, in_shape))

    def linear(self, x: np.ndarray) -> np.ndarray:
        return x[(slice(None), *self.slices)]

    def emit_interval_onnx(self, b, x):
        starts, ends, steps = [], [], []
        for sl, n in zip(self.slices, self.in_shapes[0]):
            start, stop, step = sl.indices(n)
            starts.append(start)
            # A negative step running past index 0 ends "before 0": INT64_MIN clamps to -1.
            ends.append(stop if stop >= 0 else np.iinfo(np.int64).min)
            steps.append(step)
        args = [b.const(np.array(v, np.int64)) for v in (starts, ends,
                                                          range(len(starts)), steps)]
        return b.both(x, lambda n: b.op("Slice", [n, *args]), self.out_shape)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        out = np.zeros((lam.shape[0],) + self.in_shapes[0])
        out[(slice(None), *self.slices)] = lam
        return out

    def describe(self) -> str:
        return "x".join(map(str, self.out_shape))


class Pad(PermutationPrimitive):
    """ONNX Pad: constant (value may be nonzero: an offset), reflect, edge or wrap; negative
    pads crop."""
    rules: ClassVar[frozenset[str]] = PermutationPrimitive.rules | {"ort_interval"}

    kind = "pad"

    def __init__(self, in_shape: Shape, begin: list[int], end: list[int], mode: str,
                 value: float) -> None:
        self.in_shapes = (tuple(in_shape),)
        self.begin, self.end, self.mode, self.value = list(begin), list(end), mode, float(value)
        self.out_shape = tuple(n + b + e for n, b, e in zip(in_shape, begin, end))
        if any(d <= 0 for d in self.out_shape):
            raise ValueError("pads crop the tensor away entirely")
        self.offset = None
        if mode == "constant" and self.value != 0.0:
            mask = self.linear(np.ones((1, *in_shape)))
            self.offset = (1.0 - mask) * self.value

    def linear(self, x: np.ndarray) -> np.ndarray:
        grow = [(0, 0)] + [(max(b, 0), max(e, 0)) for b, e in zip(self.begin, self.end)]
        if any(g != (0, 0) for g in grow):
            mode = {"constant": "constant", "reflect": "reflect", "edge": "edge",
                    "wrap": "wrap"}[self.mode]
            x = np.pad(x, grow, mode=mode)
        crop = tuple(slice(-min(b, 0), x.shape[i + 1] + min(e, 0))
                     for i, (b, e) in enumerate(zip(self.begin, self.end)))
        return x[(slice(None), *crop)]

    def emit_interval_onnx(self, b, x):
        """ONNX Pad of both tensors. Zero padding (and copying modes) keep the centre/radius
        form exactly; a nonzero constant v pads lo with ↓v and hi with ↑v."""

        if self.mode == "wrap":
            raise FastIntervalUnavailable("Pad mode 'wrap' needs opset 19")
        pads = b.const(np.array(self.begin + self.end, np.int64))

        def pad(name, value):
            ins = [name, pads] + ([b.const(np.float32(value))] if self.mode == "constant"
                                  else [])
            return b.op("Pad", ins, mode=self.mode)

        if x.kind == "cr" and (self.mode != "constant" or self.value == 0.0):
            return b.both(x, lambda n: pad(n, 0.0), self.out_shape)
        v = b.lh(x)
        lo, hi = down32(self.value), up32(self.value)
        return b.monotone(v, lambda n: pad(n, lo), lambda n: pad(n, hi), shape=self.out_shape,
                          nonneg=v.nonneg and (self.mode != "constant" or lo >= 0))

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        if self.mode != "constant":
            raise NotImplementedError  # reflect/edge/wrap copy entries: not a plain crop
        crop = tuple(slice(max(b, 0), lam.shape[i + 1] - max(e, 0))
                     for i, (b, e) in enumerate(zip(self.begin, self.end)))
        inner = lam[(slice(None), *crop)]
        grow = [(0, 0)] + [(max(-b, 0), max(-e, 0)) for b, e in zip(self.begin, self.end)]
        return np.pad(inner, grow) if any(g != (0, 0) for g in grow) else inner

    def describe(self) -> str:
        return f"{self.mode} {self.begin}+{self.end}"


class Gather(PermutationPrimitive):
    """np.take along an axis with constant (already non-negative) indices."""
    rules: ClassVar[frozenset[str]] = PermutationPrimitive.rules | {"ort_interval"}

    kind = "gather"

    def __init__(self, in_shape: Shape, indices: np.ndarray, axis: int) -> None:
        self.in_shapes = (tuple(in_shape),)
        self.indices, self.axis = np.asarray(indices, dtype=np.int64), axis
        self.out_shape = tuple(in_shape[:axis]) + self.indices.shape + tuple(in_shape[axis + 1:])

    def linear(self, x: np.ndarray) -> np.ndarray:
        return np.take(x, self.indices, axis=self.axis + 1)

    def emit_interval_onnx(self, b, x):
        idx = b.const(self.indices)
        return b.both(x, lambda n: b.op("Gather", [n, idx], axis=self.axis), self.out_shape)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        out = np.zeros((lam.shape[0],) + self.in_shapes[0])
        moved = np.moveaxis(out, self.axis + 1, 0)
        src = np.moveaxis(lam, tuple(range(self.axis + 1, self.axis + 1 + self.indices.ndim)),
                          tuple(range(self.indices.ndim)))
        np.add.at(moved, self.indices, src)
        return out


class Expand(PermutationPrimitive):
    """Broadcast to a larger shape (copies entries)."""
    rules: ClassVar[frozenset[str]] = PermutationPrimitive.rules | {"ort_interval"}

    kind = "expand"

    def __init__(self, in_shape: Shape, out_shape: Shape) -> None:
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(out_shape)

    def linear(self, x: np.ndarray) -> np.ndarray:
        x = lift_input(x, len(self.out_shape))
        return np.broadcast_to(x, (x.shape[0], *self.out_shape))

    def emit_interval_onnx(self, b, x):
        shape = b.const(np.array(self.out_shape, np.int64))
        return b.both(x, lambda n: b.op("Expand", [n, shape]), self.out_shape)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        return sum_to_shape(lam, self.in_shapes[0])


class Tile(PermutationPrimitive):
    rules: ClassVar[frozenset[str]] = PermutationPrimitive.rules | {"ort_interval"}
    kind = "tile"

    def __init__(self, in_shape: Shape, repeats: tuple[int, ...]) -> None:
        self.in_shapes, self.repeats = (tuple(in_shape),), tuple(int(r) for r in repeats)
        self.out_shape = tuple(n * r for n, r in zip(in_shape, self.repeats))

    def linear(self, x: np.ndarray) -> np.ndarray:
        return np.tile(x, (1, *self.repeats))

    def emit_interval_onnx(self, b, x):
        reps = b.const(np.array(self.repeats, np.int64))
        return b.both(x, lambda n: b.op("Tile", [n, reps]), self.out_shape)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        split = [lam.shape[0]]
        for r, n in zip(self.repeats, self.in_shapes[0]):
            split += [r, n]
        y = lam.reshape(split)
        return y.sum(axis=tuple(range(1, len(split), 2)))


class ConcatConst(PermutationPrimitive):
    """Concatenation of one computed tensor with constants: embedding plus constant offset."""
    rules: ClassVar[frozenset[str]] = PermutationPrimitive.rules | {"ort_interval"}

    kind = "concat-const"

    def __init__(self, in_shape: Shape, pieces: list[np.ndarray | None], axis: int) -> None:
        """``pieces`` lists the concatenated parts in order; None marks the computed tensor."""
        self.in_shapes, self.axis = (tuple(in_shape),), axis
        self.pieces = [None if p is None else float_array(p) for p in pieces]
        parts = [np.zeros(in_shape) if p is None else p for p in self.pieces]
        off = np.concatenate(parts, axis=axis)
        self.out_shape = off.shape
        self.offset = off[None]

    def linear(self, x: np.ndarray) -> np.ndarray:
        parts = [x if p is None else np.zeros((x.shape[0], *p.shape)) for p in self.pieces]
        return np.concatenate(parts, axis=self.axis + 1)

    def emit_interval_onnx(self, b, x):
        """Concat lo with ↓constants and hi with ↑constants."""

        v = b.lh(x)

        def cat(name, rnd):
            parts = [name if p is None else b.const(rnd(p)) for p in self.pieces]
            return b.op("Concat", parts, axis=self.axis)

        nonneg = v.nonneg and all(p is None or np.all(p >= 0) for p in self.pieces)
        return b.monotone(v, lambda n: cat(n, down32), lambda n: cat(n, up32),
                          shape=self.out_shape, nonneg=nonneg)

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        start = 0
        for p in self.pieces:
            if p is None:
                break
            start += p.shape[self.axis]
        sl = [slice(None)] * lam.ndim
        sl[self.axis + 1] = slice(start, start + self.in_shapes[0][self.axis])
        return lam[tuple(sl)]

    def parameters(self) -> dict[str, np.ndarray]:
        return {f"const{i}": p for i, p in enumerate(self.pieces) if p is not None}


# --------------------------------------------------------------------------------------------
# Converters


def computed_input(ctx: ConversionContext, v: Value, op: str) -> Tensor:
    if not isinstance(v, Tensor):
        raise ctx.fail(f"{op} input must be computed from the network input")
    return v


def _axes_of(ctx: ConversionContext, node, args: list[Value], input_index: int,
             first_opset_as_input: int) -> list[int] | None:
    """Axes given as an attribute (old opsets) or as an optional constant input (new ones)."""
    if ctx.opset < first_opset_as_input:
        axes = attr(node, "axes")
        return None if axes is None else list(axes)
    if len(args) > input_index and args[input_index] is not None:
        return [int(a) for a in const_value(ctx, args[input_index], "axes").reshape(-1)]
    return None


@onnx_converter("Reshape")
def convert_reshape(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Reshape")
    if ctx.opset < 5:
        target = list(attr(node, "shape"))
    else:
        target = [int(d) for d in const_value(ctx, args[1], "Reshape shape").reshape(-1)]
    allowzero = attr(node, "allowzero", 0)
    out = []
    for i, d in enumerate(target):
        out.append(x.shape[i] if d == 0 and not allowzero else d)
    if out.count(-1) > 1:
        raise ctx.fail(f"Reshape target {target} has more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        total = int(np.prod(x.shape))
        if known == 0 or total % known:
            raise ctx.fail(f"cannot reshape {x.shape} to {target}")
        out[out.index(-1)] = total // known
    try:
        return [ctx.emit(Reshape(x.shape, tuple(out)), [x])]
    except ValueError as e:
        raise ctx.fail(str(e)) from None


@onnx_converter("Flatten")
def convert_flatten(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Flatten")
    axis = attr(node, "axis", 1)
    axis = axis + len(x.shape) if axis < 0 else axis
    out = (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))
    return [ctx.emit(Reshape(x.shape, out), [x])]


@onnx_converter("Squeeze")
def convert_squeeze(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Squeeze")
    axes = _axes_of(ctx, node, args, 1, 13)
    rank = len(x.shape)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    axes = {normalize_axis(a, rank) for a in axes}
    if any(x.shape[a] != 1 for a in axes):
        raise ctx.fail(f"cannot squeeze axes {sorted(axes)} of shape {x.shape}")
    out = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [ctx.emit(Reshape(x.shape, out), [x])]


@onnx_converter("Unsqueeze")
def convert_unsqueeze(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Unsqueeze")
    axes = _axes_of(ctx, node, args, 1, 13)
    if axes is None:
        raise ctx.fail("Unsqueeze without axes")
    rank = len(x.shape) + len(axes)
    axes = sorted(normalize_axis(a, rank) for a in axes)
    out = list(x.shape)
    for a in axes:
        out.insert(a, 1)
    return [ctx.emit(Reshape(x.shape, tuple(out)), [x])]


@onnx_converter("Transpose")
def convert_transpose(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Transpose")
    perm = attr(node, "perm")
    perm = tuple(reversed(range(len(x.shape)))) if perm is None else tuple(perm)
    try:
        return [ctx.emit(Transpose(x.shape, perm), [x])]
    except ValueError as e:
        raise ctx.fail(str(e)) from None


def onnx_slices(shape: Shape, starts, ends, axes, steps) -> tuple[slice, ...]:
    """Python slices equivalent to ONNX Slice (clamping rules of the spec)."""
    rank = len(shape)
    slices = [slice(None)] * rank
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = normalize_axis(int(a), rank)
        n = shape[a]
        s, e, st = int(s), int(e), int(st)
        if st == 0:
            raise ValueError("Slice step 0")
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
            slices[a] = slice(s, e, st)
        else:
            s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
            slices[a] = slice(s, None if e < 0 else e, st)
    return tuple(slices)


@onnx_converter("Slice")
def convert_slice(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Slice")
    if ctx.opset < 10:
        starts, ends = attr(node, "starts"), attr(node, "ends")
        axes, steps = attr(node, "axes"), None
    else:
        def opt(i):
            if len(args) > i and args[i] is not None:
                return [int(v) for v in const_value(ctx, args[i], "Slice argument").reshape(-1)]
            return None
        starts, ends, axes, steps = opt(1), opt(2), opt(3), opt(4)
    try:
        return [ctx.emit(Slice(x.shape, onnx_slices(x.shape, starts, ends, axes, steps)), [x])]
    except ValueError as e:
        raise ctx.fail(str(e)) from None


@onnx_converter("Split")
def convert_split(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Split")
    axis = normalize_axis(attr(node, "axis", 0), len(x.shape))
    n_out = len(node.output)
    if ctx.opset < 13:
        split = attr(node, "split")
    elif len(args) > 1 and args[1] is not None:
        split = [int(v) for v in const_value(ctx, args[1], "Split sizes").reshape(-1)]
    else:
        split = None
    dim = x.shape[axis]
    if split is None:
        n = attr(node, "num_outputs", n_out)
        chunk = -(-dim // n)
        split = [min(chunk, dim - i * chunk) for i in range(n)]
    outs, start = [], 0
    for i, size in enumerate(split):
        sl = [slice(None)] * len(x.shape)
        sl[axis] = slice(start, start + size, 1)
        outs.append(ctx.emit(Slice(x.shape, tuple(sl)), [x], f"/{i}"))
        start += size
    return outs


@onnx_converter("Pad")
def convert_pad(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Pad")
    rank = len(x.shape)
    mode = as_str(attr(node, "mode", "constant"))
    if ctx.opset < 11:
        pads, value = list(attr(node, "pads", attr(node, "paddings"))), attr(node, "value", 0.0)
        axes = None
    else:
        pads = [int(v) for v in const_value(ctx, args[1], "Pad pads").reshape(-1)]
        value = 0.0
        if len(args) > 2 and args[2] is not None and np.size(args[2].value if isinstance(
                args[2], Const) else 1):
            value = float(const_value(ctx, args[2], "Pad constant value").reshape(-1)[0])
        axes = None
        if len(args) > 3 and args[3] is not None:
            axes = [normalize_axis(int(a), rank)
                    for a in const_value(ctx, args[3], "Pad axes").reshape(-1)]
    if axes is None:
        axes = list(range(rank))
    k = len(axes)
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[k + i]
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.fail(f"Pad mode '{mode}' is not supported")
    ctx.check_shape(tuple(max(n + b + e, 0) for n, b, e in zip(x.shape, begin, end)))
    try:
        return [ctx.emit(Pad(x.shape, begin, end, mode, value), [x])]
    except ValueError as e:
        raise ctx.fail(str(e)) from None


@onnx_converter("Gather")
def convert_gather(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Gather data")
    idx = np.asarray(const_value(ctx, args[1], "Gather indices"), dtype=np.int64)
    axis = normalize_axis(attr(node, "axis", 0), len(x.shape))
    n = x.shape[axis]
    if np.any(idx < -n) or np.any(idx >= n):
        raise ctx.fail(f"Gather indices out of range for axis of size {n}")
    return [ctx.emit(Gather(x.shape, np.where(idx < 0, idx + n, idx), axis), [x])]


@onnx_converter("Expand")
def convert_expand(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Expand")
    shape = tuple(int(d) for d in const_value(ctx, args[1], "Expand shape").reshape(-1))
    out = tuple(np.broadcast_shapes(x.shape, shape))
    return [ctx.emit(Expand(x.shape, out), [x])]


@onnx_converter("Tile")
def convert_tile(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = computed_input(ctx, args[0], "Tile")
    reps = tuple(int(d) for d in const_value(ctx, args[1], "Tile repeats").reshape(-1))
    return [ctx.emit(Tile(x.shape, reps), [x])]
