"""Random small ONNX graphs: the IR computes what onnxruntime computes.

Hypothesis builds graphs with ``onnx.helper`` from the supported ops (float32 weights, static
shapes, batch 1 or 2, opsets 9..21 where each op exists), saves each, checks it with
``onnx.checker`` (full check: the declared output shape must agree with ONNX shape inference, so
the generator's own shape bookkeeping is checked too), and compares ``bp.load(path)(x)`` with
onnxruntime on a few random inputs, with the tolerance of ``tests/test_differential.py``.

Every generated model must be valid and run in onnxruntime: a combination onnxruntime rejects
(or computes against the spec) is constrained out of the generator, with a comment saying why,
not skipped. The one ``assume``: an example whose mismatch is within float32 rounding of the
largest intermediate value (a cancellation to a tiny output) is discarded as ill-conditioned.
On failure Hypothesis prints the model's ops (opset, then one line per node with its attributes
and shapes) and a ``@reproduce_failure`` blob. Run the long variant with ``pytest -m slow``.

Families: ``mlp`` (Gemm with transA/transB/alpha/beta and either operand constant, MatMul with
a constant on either side plus bias, activations, residuals), ``elementwise`` (every
activation, arithmetic with broadcasting constants on either side, the Erf-GELU product),
``cnn`` (Conv/ConvTranspose/pools/batch norm/layer norm/softmax, channel concat, residuals,
flatten + Gemm head), ``shape`` (Reshape/Flatten/Transpose/Squeeze/Unsqueeze/Slice/Pad/Concat/
Split/Gather/Expand/Tile, residuals with broadcasting, reductions) and ``mixed`` (all of them).
Now and then a constant is a Constant node rather than an initializer, a Reshape target is
computed by Shape -> Gather -> Unsqueeze -> Concat, and identities (Identity, Dropout, Cast) and
variadic Sum appear, so the importer's folding and pass-through paths are exercised too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from boundprop.runtime import OrtModel
from tests.test_differential import RTOL, relative_error

MIN_OPSET, MAX_OPSET = 9, 21
MAX_NUMEL = 768  # per tensor, batch included: keeps each example a few milliseconds
MAX_RANK = 5
BIG = 2**62  # "to the end" in Slice starts/ends, as exporters write it

# First opset of each elementwise activation.
ACTIVATIONS = {"Relu": 9, "LeakyRelu": 9, "PRelu": 9, "Sigmoid": 9, "Tanh": 9, "Softplus": 9,
               "Softsign": 9, "Elu": 9, "Selu": 9, "Celu": 12, "Gelu": 20, "Erf": 9,
               "HardSigmoid": 9, "HardSwish": 14, "Clip": 9}


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Graph:
    """A graph under construction, grown one op at a time from a current tensor."""

    def __init__(self, data, opset: int, input_shape: tuple[int, ...]):
        self.data, self.opset = data, opset
        seed = data.draw(st.integers(0, 2**32 - 1), label="weight seed")
        self.rng = np.random.default_rng(seed)
        self.input_shape = tuple(input_shape)
        self.cur, self.shape = "x", self.input_shape
        self.shapes: dict[str, tuple[int, ...]] = {"x": self.input_shape}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.log: list[str] = []
        self.consts: dict[str, np.ndarray] = {}
        self.spec_shapes = True  # ONNX shape inference agrees with onnxruntime's shapes
        self.final = False  # no op may follow the last one added
        self.k = 0

    # ---- drawing
    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, seq):
        seq = list(seq)
        assert seq, "generator bug: nothing to choose from"
        return self.data.draw(st.sampled_from(seq))

    def subset(self, items, lo: int, hi: int | None = None) -> list:
        """``lo``..``hi`` (default: all) distinct items, in a random order."""
        items = list(items)
        k = self.int(lo, len(items) if hi is None else hi)
        return list(self.data.draw(st.permutations(items)))[:k]

    def pick_layer(self, layers):
        """One of the applicable ``layers``, by weight. The candidates are shuffled first, as
        Hypothesis favours the first entries of a list."""
        options = [L for L in layers for _ in range(L.weight) if L.ok(self)]
        return self.pick([options[i] for i in self.rng.permutation(len(options))])

    def coin(self) -> bool:
        return self.data.draw(st.booleans())

    def rare(self) -> bool:
        """True about one time in four."""
        return self.data.draw(st.integers(0, 3)) == 3

    def flt(self, lo: float, hi: float) -> float:
        return float(np.float32(self.data.draw(st.floats(lo, hi, allow_nan=False))))

    def axis_value(self, a: int, rank: int, negative_from: int = 11) -> int:
        """Axis ``a`` written as is, or (where the opset allows it) as a negative index."""
        return a - rank if self.opset >= negative_from and self.coin() else a

    # ---- building
    def fresh(self, prefix: str) -> str:
        self.k += 1
        return f"{prefix}{self.k}"

    def init(self, arr: np.ndarray, prefix: str = "c") -> str:
        """A constant: an initializer, or now and then a Constant node (folded on import)."""
        name = self.fresh(prefix)
        tensor = numpy_helper.from_array(np.asarray(arr), name)
        if self.data.draw(st.integers(0, 7)) == 7:
            self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        else:
            self.inits.append(tensor)
        self.consts[name] = np.asarray(arr)
        self.shapes[name] = tuple(np.shape(arr))
        return name

    def weight(self, shape, scale: float = 1.0) -> str:
        return self.init((self.rng.standard_normal(shape) * scale).astype(np.float32), "w")

    def uniform(self, shape, lo: float, hi: float, signed: bool = False) -> str:
        v = self.rng.uniform(lo, hi, size=shape)
        if signed:
            v = v * self.rng.choice([-1.0, 1.0], size=shape)
        return self.init(np.asarray(v, dtype=np.float32), "w")

    def ints(self, values) -> str:
        return self.init(np.asarray(values, dtype=np.int64).reshape(-1), "i")

    def scalar(self, v: float) -> str:
        return self.init(np.array(v, dtype=np.float32), "s")

    def at(self, name: str) -> None:
        self.cur, self.shape = name, self.shapes[name]

    def emit(self, op: str, inputs: list[str], out_shapes, n_unused: int = 0,
             **attrs) -> list[str]:
        """Add a node; its first output becomes the current tensor. ``out_shapes`` is one shape
        or a list (one per used output); ``n_unused`` extra outputs are named but never read."""
        if not out_shapes or not isinstance(out_shapes[0], (list, tuple)):
            out_shapes = [out_shapes]
        outs = [self.fresh(op[:4].lower()) for _ in out_shapes]
        unused = [self.fresh("unused") for _ in range(n_unused)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op, inputs, outs + unused, name=outs[0], **attrs))
        for o, s in zip(outs, out_shapes):
            self.shapes[o] = tuple(int(d) for d in s)
        shown = ", ".join(f"{k}={v}" for k, v in attrs.items())
        ins = ", ".join(self._show(i) for i in inputs)
        self.log.append(f"{outs[0]} = {op}({ins}{'; ' + shown if shown else ''}) -> "
                        f"{[list(s) for s in out_shapes]}")
        self.at(outs[0])
        return outs

    def _show(self, name: str) -> str:
        """A node input in the log: a computed tensor's shape, a constant's values or shape."""
        if not name:
            return "-"
        if name in self.consts:
            v = self.consts[name]
            if v.dtype.kind == "i" or v.size == 1:
                return f"const {v.tolist()}"
            return f"const{list(v.shape)}"
        return f"{name}{list(self.shapes[name])}"

    def producer(self, name: str | None = None) -> str:
        """The op type of the node computing ``name`` (default: the current tensor), looking
        through identities (onnxruntime removes them before fusing)."""
        node = next((n for n in self.nodes if (name or self.cur) in n.output), None)
        if node is None:
            return ""
        if node.op_type in ("Identity", "Dropout", "Cast", "CastLike"):
            return self.producer(node.input[0])
        return node.op_type

    def fits(self, shape) -> bool:
        return _numel(shape) <= MAX_NUMEL and len(shape) <= MAX_RANK and min(shape, default=1) > 0

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "random",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.input_shape)],
            [helper.make_tensor_value_info(self.cur, TensorProto.FLOAT,
                                           self.shape if self.spec_shapes else
                                           [f"d{i}" for i in range(len(self.shape))])],
            self.inits)
        return helper.make_model_gen_version(
            graph, opset_imports=[helper.make_opsetid("", self.opset)])

    def describe(self) -> str:
        return "\n".join([f"opset {self.opset}, input x{list(self.input_shape)}"] + self.log)


# --------------------------------------------------------------------------------------------
# Layers. Each takes the graph and grows it from its current tensor.


def broadcast_const_shape(g: Graph, shape, grow: bool) -> tuple[int, ...]:
    """A constant shape that broadcasts against ``shape`` (a suffix, some dims 1); with ``grow``
    it may also broadcast the tensor up (extra leading dims, a size where the tensor has 1)."""
    r = len(shape)
    k = g.int(0, r)
    dims = []
    for d in shape[r - k:]:
        dims.append(g.pick([1, 2, 3]) if d == 1 and grow else g.pick([d, 1]))
    if grow and k == r and g.rare() and r < MAX_RANK:
        dims = [g.int(1, 2)] + dims
    out = tuple(np.broadcast_shapes(tuple(shape), tuple(dims)))
    if not g.fits(out):
        return tuple(1 for _ in dims)
    return tuple(dims)


def activation(g: Graph, op: str | None = None) -> None:
    op = op or g.pick([a for a, v in ACTIVATIONS.items() if v <= g.opset])
    inputs, attrs = [g.cur], {}
    if op == "LeakyRelu" and g.coin():
        attrs["alpha"] = g.flt(-0.5, 1.5)
    elif op in ("Elu", "Celu") and g.coin():
        attrs["alpha"] = g.flt(0.2, 2.0)
    elif op == "Selu":
        if g.coin():
            attrs["alpha"] = g.flt(0.5, 2.0)
        if g.coin():
            attrs["gamma"] = g.flt(0.5, 2.0)
    elif op == "HardSigmoid":
        if g.coin():
            attrs["alpha"] = g.flt(0.05, 1.0)
        if g.coin():
            attrs["beta"] = g.flt(-0.5, 1.0)
    elif op == "Gelu" and g.coin():
        attrs["approximate"] = g.pick(["none", "tanh"])
    elif op == "PRelu":
        inputs.append(g.uniform(broadcast_const_shape(g, g.shape, grow=False) or (1,), -1.0, 1.0))
    elif op == "Clip":
        lo = g.flt(-2.0, 0.5) if g.coin() else None
        hi = (lo if lo is not None else -1.0) + g.flt(0.1, 3.0) if g.coin() else None
        if hi is not None and hi < 0 and g.producer() == "Relu":
            # onnxruntime fuses Relu -> Clip into a Clip with min 0, then refuses min > max.
            hi = -hi
        if g.opset < 11:
            attrs["min"], attrs["max"] = lo, hi
        else:
            inputs += ["" if lo is None else g.scalar(lo), "" if hi is None else g.scalar(hi)]
            while inputs[-1] == "":
                inputs.pop()
    g.emit(op, inputs, g.shape, **attrs)


def arithmetic(g: Graph, grow: bool = True) -> None:
    """Add/Sub/Mul/Div with a broadcasting constant on either side (Div: divisor only), Neg."""
    op = g.pick(["Add", "Sub", "Mul", "Div", "Neg"])
    if op == "Neg":
        g.emit("Neg", [g.cur], g.shape)
        return
    cshape = broadcast_const_shape(g, g.shape, grow)
    if op in ("Add", "Sub"):
        c = g.weight(cshape)
    else:
        c = g.uniform(cshape, 0.5, 2.0, signed=True)
    left = op != "Div" and g.coin()
    out = np.broadcast_shapes(g.shape, cshape)
    g.emit(op, [c, g.cur] if left else [g.cur, c], out)


def gelu_pattern(g: Graph) -> None:
    """The exact GELU as torch exports it: x * 0.5 * (1 + erf(x / sqrt 2)), in a few spellings."""
    x = g.cur
    if g.coin():
        g.emit("Div", [x, g.scalar(math.sqrt(2.0))], g.shape)
    else:
        g.emit("Mul", [x, g.scalar(1 / math.sqrt(2.0))], g.shape)
    g.emit("Erf", [g.cur], g.shape)
    g.emit("Add", [g.cur, g.scalar(1.0)], g.shape)
    if g.coin():
        g.emit("Mul", [x, g.cur], g.shape)
        g.emit("Mul", [g.cur, g.scalar(0.5)], g.shape)
    else:
        erf_side = g.cur
        g.emit("Mul", [x, g.scalar(0.5)], g.shape)
        g.emit("Mul", [erf_side, g.cur] if g.coin() else [g.cur, erf_side], g.shape)


def passthrough(g: Graph) -> None:
    """Ops that compute the identity on floats: Identity, inference Dropout, float casts."""
    choices = ["Identity", "Dropout", "Cast"] + (["CastLike"] if g.opset >= 15 else [])
    op = g.pick(choices)
    if op == "Identity":
        g.emit("Identity", [g.cur], g.shape)
    elif op == "Dropout":
        inputs, attrs = [g.cur], {}
        if g.opset >= 12:
            if g.coin():
                inputs.append(g.scalar(g.flt(0.0, 0.9)))
                if g.coin():
                    inputs.append(g.init(np.array(False), "b"))
        elif g.coin():
            attrs["ratio"] = g.flt(0.0, 0.9)
        g.emit("Dropout", inputs, g.shape, n_unused=int(g.coin()), **attrs)
    elif op == "Cast":
        if g.coin():
            g.emit("Cast", [g.cur], g.shape, to=TensorProto.DOUBLE)
        g.emit("Cast", [g.cur], g.shape, to=TensorProto.FLOAT)
    else:
        g.emit("CastLike", [g.cur, g.scalar(0.0)], g.shape)


def gemm(g: Graph) -> None:
    r0, r1 = g.shape
    n = g.int(1, 8)
    ta, tb = g.coin(), g.coin()
    if not g.rare():  # x is A
        m, k = (r1, r0) if ta else (r0, r1)
        nn = n
        inputs = [g.cur, g.weight((nn, k) if tb else (k, nn), 1 / math.sqrt(k))]
    else:  # x is B, the constant is A
        k, nn = (r1, r0) if tb else (r0, r1)
        m = n
        inputs = [g.weight((k, m) if ta else (m, k), 1 / math.sqrt(k)), g.cur]
    if g.opset < 11 or g.coin():
        cshape = g.pick([(), (1,), (nn,), (1, nn), (m, 1), (m, nn), (1, 1)])
        inputs.append(g.weight(cshape))
    attrs = {"transA": int(ta) if ta or g.coin() else None,
             "transB": int(tb) if tb or g.coin() else None,
             "alpha": g.flt(-2.0, 2.0) if g.coin() else None,
             "beta": g.flt(-2.0, 2.0) if g.coin() else None}
    g.emit("Gemm", inputs, (m, nn), **attrs)


def matmul(g: Graph, square: bool = False) -> None:
    """x @ W (W 2-D, or rarely a vector), then maybe a bias Add."""
    k = g.shape[-1]
    # onnxruntime (extended optimisations) fuses Transpose -> MatMul into a FusedMatMul that
    # gets a vector right operand wrong: not generated.
    if not square and len(g.shape) >= 2 and g.producer() != "Transpose" and g.rare():
        g.emit("MatMul", [g.cur, g.weight((k,), 1 / math.sqrt(k))], g.shape[:-1])
        return
    n = k if square else g.int(1, 8)
    out = g.shape[:-1] + (n,)
    if not g.fits(out):
        n, out = 1, g.shape[:-1] + (1,)
    g.emit("MatMul", [g.cur, g.weight((k, n), 1 / math.sqrt(k))], out)
    if g.coin():
        b = g.weight(broadcast_const_shape(g, out, grow=False))
        g.emit("Add", [g.cur, b] if g.coin() else [b, g.cur], out)


def matmul_left(g: Graph) -> None:
    """W @ x with a constant 2-D W."""
    m = g.int(1, 6)
    if len(g.shape) == 1:
        k, out = g.shape[0], (m,)
    else:
        k, out = g.shape[-2], g.shape[:-2] + (m, g.shape[-1])
    if not g.fits(out):
        m = 1
        out = (1,) if len(g.shape) == 1 else g.shape[:-2] + (1, g.shape[-1])
    g.emit("MatMul", [g.weight((m, k), 1 / math.sqrt(k)), g.cur], out)


def _conv_geometry(g: Graph, spatial, same: bool):
    """Kernel, strides, dilations and the pad attributes of a convolution, with out sizes."""
    d = len(spatial)
    mode = "same" if same else g.pick(["none", "pads", "SAME_UPPER", "SAME_LOWER", "VALID"])
    if same:
        mode = g.pick(["SAME_UPPER", "SAME_LOWER", "pads"])
    strides = [1] * d if same else [g.int(1, 2) for _ in range(d)]
    # onnxruntime refuses dilations with auto_pad SAME_* ("Dilation not supported").
    dil = [1 if mode.startswith("SAME") else g.int(1, 2) for _ in range(d)]
    kernel, pads_b, pads_e, out = [], [], [], []
    for i, n in enumerate(spatial):
        if same and mode == "pads":
            k = g.int(1, 3)
            total = (k - 1) * dil[i]
            b = g.int(0, total)
            pb, pe = b, total - b
        else:
            pb = g.int(0, 2) if mode == "pads" else 0
            pe = g.int(0, 2) if mode == "pads" else 0
            room = n + pb + pe
            if mode.startswith("SAME"):
                room = 10**6
            if (2 - 1) * dil[i] + 1 > room:
                dil[i] = 1
            k = g.int(1, min(3, (room - 1) // dil[i] + 1))
        kernel.append(k)
        pads_b.append(pb)
        pads_e.append(pe)
        if mode.startswith("SAME"):
            out.append(-(-n // strides[i]))
        else:
            out.append((n + pb + pe - (k - 1) * dil[i] - 1) // strides[i] + 1)
    attrs = {"kernel_shape": kernel if g.coin() else None,
             "strides": strides if any(s != 1 for s in strides) or g.coin() else None,
             "dilations": dil if any(v != 1 for v in dil) or g.coin() else None}
    if mode == "pads":
        if any(pads_b) or any(pads_e) or g.coin():
            attrs["pads"] = pads_b + pads_e
    elif mode != "none":
        attrs["auto_pad"] = mode
    return kernel, attrs, out


def conv(g: Graph, same: bool = False) -> None:
    n, c, *sp = g.shape
    group = g.pick(_divisors(c))
    m = c if same else group * g.int(1, max(1, 6 // group))
    kernel, attrs, out_sp = _conv_geometry(g, sp, same)
    out = (n, m, *out_sp)
    if not g.fits(out):
        m = group
        out = (n, m, *out_sp)
    w = g.weight((m, c // group, *kernel), 1 / math.sqrt(c // group * _numel(kernel)))
    inputs = [g.cur, w] + ([g.weight((m,))] if g.coin() else [])
    g.emit("Conv", inputs, out, group=group if group != 1 or g.coin() else None, **attrs)


def conv_transpose(g: Graph) -> None:
    n, c, *sp = g.shape
    d = len(sp)
    group = g.pick(_divisors(c))
    mg = g.int(1, 3)
    strides = [g.int(1, 2) for _ in range(d)]
    dil = [g.int(1, 2) for _ in range(d)]
    kernel = [g.int(1, 3) for _ in range(d)]
    out_pad = [g.int(0, s - 1) for s in strides]
    full = [s * (i - 1) + (k - 1) * dl + 1 + op
            for i, k, s, dl, op in zip(sp, kernel, strides, dil, out_pad)]
    mode = g.pick(["pads", "pads", "SAME_UPPER", "SAME_LOWER", "VALID", "output_shape"])
    attrs = {}
    if mode == "pads":
        pb = [g.int(0, min(2, (f - 1) // 2)) for f in full]
        pe = [g.int(0, min(2, f - 1 - b)) for f, b in zip(full, pb)]
        out_sp = [f - b - e for f, b, e in zip(full, pb, pe)]
        if any(pb) or any(pe) or g.coin():
            attrs["pads"] = pb + pe
    elif mode == "output_shape":
        # At most the full size (onnxruntime refuses some larger ones), at least the input's
        # (ONNX shape inference, which onnxruntime runs on load, drops smaller dims).
        out_sp = [f - g.int(0, min(2, f - i)) for f, i in zip(full, sp)]
        attrs["output_shape"] = out_sp
        if g.coin():
            attrs["auto_pad"] = g.pick(["NOTSET", "SAME_UPPER", "SAME_LOWER"])
    elif mode == "VALID":
        out_sp = full
        attrs["auto_pad"] = mode
    else:
        # input * stride, or the full size where that is smaller (a negative total pad is 0)
        out_sp = [min(i * s, f) for i, s, f in zip(sp, strides, full)]
        if any(out_pad):
            # ONNX shape inference adds output_padding again, onnxruntime does not; as
            # onnxruntime refuses shape-dependent ops after such a disagreement, the node ends
            # the graph.
            g.spec_shapes = False
            g.final = True
        attrs["auto_pad"] = mode
    out = (n, mg * group, *out_sp)
    if not g.fits(out):  # the smallest geometry instead
        strides, dil, kernel, out_pad, attrs = [1] * d, [1] * d, [1] * d, [0] * d, {}
        mg = 1
        out = (n, group, *sp)
    w = g.weight((c, mg, *kernel), 1 / math.sqrt(c // group * _numel(kernel)))
    inputs = [g.cur, w] + ([g.weight((mg * group,))] if g.coin() else [])
    g.emit("ConvTranspose", inputs, out,
           group=group if group != 1 or g.coin() else None,
           kernel_shape=kernel if g.coin() else None,
           strides=strides if any(s != 1 for s in strides) or g.coin() else None,
           dilations=dil if any(v != 1 for v in dil) or g.coin() else None,
           output_padding=out_pad if any(out_pad) or g.rare() else None, **attrs)


def pool(g: Graph, op: str | None = None) -> None:
    op = op or g.pick(["MaxPool", "AveragePool"])
    n, c, *sp = g.shape
    mode = g.pick(["none", "pads", "SAME_UPPER", "SAME_LOWER", "VALID"])
    has_dil = g.opset >= (10 if op == "MaxPool" else 19)
    ceil = g.opset >= 10 and g.coin()
    kernel, strides, dil, pb, pe, out = [], [], [], [], [], []
    for size in sp:
        k = g.int(1, min(3, size))
        # onnxruntime ignores dilations when it resolves auto_pad SAME_* for pools (so its
        # output shape disagrees with the spec's), and refuses the negative total pad that
        # SAME_* gives when a stride exceeds the kernel: neither is generated.
        same = mode.startswith("SAME")
        dl = g.int(1, 2) if has_dil and not same and (k - 1) * 2 + 1 <= size else 1
        s = g.int(1, 2)
        if same and (-(-size // s) - 1) * s + k < size:
            s = 1
        b = g.int(0, k - 1) if mode == "pads" else 0
        e = g.int(0, k - 1) if mode == "pads" else 0
        if mode.startswith("SAME"):
            o = -(-size // s)
        else:
            span = size + b + e - (k - 1) * dl - 1
            o = (-(-span // s) if ceil else span // s) + 1
            if ceil and (o - 1) * s >= size + b:
                # A last window that would start past the input and its begin pad is dropped
                # (onnxruntime, and the spec since MaxPool-22/AveragePool-22); ONNX shape
                # inference keeps it, so the strict check of shapes is off for this graph, and
                # the pool ends it (onnxruntime refuses shape-dependent weights after it).
                o -= 1
                g.spec_shapes = False
                g.final = True
        kernel.append(k)
        strides.append(s)
        dil.append(dl)
        pb.append(b)
        pe.append(e)
        out.append(o)
    attrs = {"kernel_shape": kernel,
             "strides": strides if any(s != 1 for s in strides) or g.coin() else None,
             "dilations": dil if has_dil and (any(v != 1 for v in dil) or g.rare()) else None,
             "ceil_mode": int(ceil) if ceil or (g.opset >= 10 and g.rare()) else None}
    if mode == "pads":
        attrs["pads"] = pb + pe
    elif mode != "none":
        attrs["auto_pad"] = mode
    if op == "AveragePool" and g.coin():
        attrs["count_include_pad"] = int(g.coin())
    indices = op == "MaxPool" and g.rare()
    g.emit(op, [g.cur], (n, c, *out), n_unused=int(indices), **attrs)


def global_pool(g: Graph) -> None:
    op = g.pick(["GlobalAveragePool", "GlobalMaxPool"])
    g.emit(op, [g.cur], g.shape[:2] + (1,) * (len(g.shape) - 2))


def batchnorm(g: Graph) -> None:
    c = g.shape[1]
    inputs = [g.cur, g.uniform((c,), 0.5, 1.5, signed=True), g.weight((c,)),
              g.weight((c,)), g.uniform((c,), 0.5, 2.0)]
    training = g.opset >= 14 and g.coin()
    group = _numel(g.shape) // c if training else 10**6
    eps = normaliser_epsilon(g, group) if training or g.coin() else None
    mode = 1 if training else (0 if g.opset >= 14 and g.rare() else None)
    # onnxruntime wants the running mean/var outputs of a training-mode node to be named.
    g.emit("BatchNormalization", inputs, g.shape, n_unused=2 if training else 0, epsilon=eps,
           training_mode=mode, momentum=g.flt(0.1, 0.99) if training and g.coin() else None)


def normaliser_epsilon(g: Graph, group: int) -> float | None:
    """Epsilon of a batch-statistics or layer norm over groups of ``group`` entries.

    (x - mean) / sqrt(var + eps) amplifies float32 rounding by up to eps^-1/2 when the group's
    variance is tiny (two close values; entries zeroed by a ReLU), beyond the test's tolerance
    for the default eps = 1e-5; the default (None) is kept for well-conditioned groups: at least
    4 entries of the (standard normal) graph input.
    """
    if g.cur == "x" and group >= 4 and g.coin():
        return None
    return g.pick([1e-3, 1e-2, 0.1])


def layernorm(g: Graph) -> None:
    r = len(g.shape)
    axis = g.int(-r, r - 1)
    normalised = g.shape[axis:]
    inputs = [g.cur, g.uniform(normalised, 0.5, 1.5, signed=True)]
    if g.coin():
        inputs.append(g.weight(normalised))
    g.emit("LayerNormalization", inputs, g.shape,
           axis=axis if axis != -1 or g.coin() else None,
           epsilon=normaliser_epsilon(g, _numel(normalised)))


def softmax(g: Graph) -> None:
    op = g.pick(["Softmax", "LogSoftmax"])
    r = len(g.shape)
    axis = g.int(-r, r - 1) if g.opset >= 11 else g.int(0, r - 1)
    if (g.opset >= 13 or r >= 2) and g.rare():
        axis = None  # the default: 1 before opset 13, -1 from it
    g.emit(op, [g.cur], g.shape, axis=axis)


def reshape(g: Graph) -> None:
    total, rank = _numel(g.shape), g.int(1, 4)
    dims, rest = [], total
    for _ in range(rank - 1):
        dims.append(g.pick(_divisors(rest)))
        rest //= dims[-1]
    dims.append(rest)
    target = list(dims)
    allowzero = 0 if g.opset >= 14 and g.rare() else None
    for i, dsz in enumerate(dims):
        if i < len(g.shape) and g.shape[i] == dsz and g.coin():
            target[i] = 0
    free = [i for i, t in enumerate(target) if t != 0]
    if free and g.coin():
        target[g.pick(free)] = -1
    g.emit("Reshape", [g.cur, g.ints(target)], tuple(dims), allowzero=allowzero)


def reshape_from_shape(g: Graph) -> None:
    """Reshape to (batch, -1) with the target computed as exporters write it:
    Shape -> Gather -> Unsqueeze -> Concat (all folded on import)."""
    x, r = g.cur, len(g.shape)
    g.emit("Shape", [x], (r,))
    g.emit("Gather", [g.cur, g.init(np.array(0, np.int64), "i")], ())
    inputs, attrs = [g.cur], {}
    _axes_arg(g, inputs, attrs, [0], 13)
    g.emit("Unsqueeze", inputs, (1,), **attrs)
    g.emit("Concat", [g.cur, g.ints([-1])], (2,), axis=0)
    target = g.cur
    g.at(x)
    g.emit("Reshape", [x, target], (g.shape[0], _numel(g.shape[1:])))


def flatten(g: Graph) -> None:
    r = len(g.shape)
    axis = g.int(-r, r) if g.opset >= 11 else g.int(0, r)
    a = axis + r if axis < 0 else axis
    out = (_numel(g.shape[:a]), _numel(g.shape[a:]))
    g.emit("Flatten", [g.cur], out, axis=axis if axis != 1 or g.coin() else None)


def transpose(g: Graph) -> None:
    r = len(g.shape)
    perm = list(g.data.draw(st.permutations(list(range(r)))))
    if g.rare():
        perm = None
    out = tuple(g.shape[p] for p in (perm if perm is not None else reversed(range(r))))
    g.emit("Transpose", [g.cur], out, perm=perm)


def _axes_arg(g: Graph, inputs: list[str], attrs: dict, axes, as_input_from: int) -> None:
    if g.opset < as_input_from:
        attrs["axes"] = list(axes)
    else:
        inputs.append(g.ints(axes))


def squeeze(g: Graph) -> None:
    r = len(g.shape)
    ones = [i for i, d in enumerate(g.shape) if d == 1]
    inputs, attrs = [g.cur], {}
    if len(ones) < r and g.rare():  # no axes: every unit axis
        chosen = ones
    else:
        chosen = sorted(g.subset(ones, 1))
        if len(chosen) == r:
            chosen = chosen[:-1]
        _axes_arg(g, inputs, attrs, [g.axis_value(a, r) for a in chosen], 13)
    g.emit("Squeeze", inputs, tuple(d for i, d in enumerate(g.shape) if i not in chosen),
           **attrs)


def unsqueeze(g: Graph) -> None:
    r = len(g.shape)
    new_rank = r + g.int(1, min(2, MAX_RANK - r))
    chosen = g.subset(range(new_rank), new_rank - r, new_rank - r)
    out, it = [], iter(g.shape)
    for i in range(new_rank):
        out.append(1 if i in chosen else next(it))
    inputs, attrs = [g.cur], {}
    _axes_arg(g, inputs, attrs, [g.axis_value(a, new_rank) for a in chosen], 13)
    g.emit("Unsqueeze", inputs, tuple(out), **attrs)


def _slice_len(n: int, s: int, e: int, step: int) -> int:
    s, e = s + n if s < 0 else s, e + n if e < 0 else e
    if step > 0:
        s, e = min(max(s, 0), n), min(max(e, 0), n)
    else:
        s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
    return len(range(s, e, step))


def _slice_bounds(g: Graph, n: int, step: int) -> tuple[int, int, int]:
    """Start and end (negative, past the ends, or huge) of a non-empty slice; its length."""
    def bound():
        return g.pick([-BIG, BIG]) if g.rare() else g.int(-n - 1, n + 1)
    s, e = bound(), bound()
    if _slice_len(n, s, e, step) == 0:
        s, e = (0, n) if step > 0 else (-1, -n - 1)
    return s, e, _slice_len(n, s, e, step)


def slice_op(g: Graph, axis: int | None = None) -> None:
    r = len(g.shape)
    if axis is None:
        axes = g.subset(range(r), 1)
    else:
        axes = [axis]
    out = list(g.shape)
    starts, ends, steps = [], [], []
    for a in axes:
        step = g.pick([1, 1, 2, -1, -2, 3]) if g.opset >= 10 else 1
        s, e, length = _slice_bounds(g, g.shape[a], step)
        starts.append(s)
        ends.append(e)
        steps.append(step)
        out[a] = length
    if g.opset < 10:
        starts = [min(max(v, -(2**31) + 1), 2**31 - 1) for v in starts]  # attrs: int64 too,
        ends = [min(max(v, -(2**31) + 1), 2**31 - 1) for v in ends]  # but keep it familiar
    axes_written = [g.axis_value(a, r) for a in axes]
    omit_axes = axes == list(range(len(axes))) and g.coin()
    if g.opset < 10:
        g.emit("Slice", [g.cur], tuple(out), starts=starts, ends=ends,
               axes=None if omit_axes else axes_written)
        return
    inputs = [g.cur, g.ints(starts), g.ints(ends), "" if omit_axes else g.ints(axes_written)]
    if any(s != 1 for s in steps) or g.coin():
        inputs.append(g.ints(steps))
    while inputs[-1] == "":
        inputs.pop()
    g.emit("Slice", inputs, tuple(out))


def pad(g: Graph, only_axis: int | None = None, mode: str | None = None) -> None:
    r = len(g.shape)
    modes = ["constant", "reflect", "edge"] + (["wrap"] if g.opset >= 19 else [])
    mode = mode or g.pick(modes)
    axes = list(range(r)) if only_axis is None else [only_axis]
    if g.opset >= 18 and only_axis is None and g.coin():
        axes = sorted(g.subset(range(r), 1))
    begin, end = [0] * r, [0] * r
    for a in axes:
        n = g.shape[a]
        hi = {"constant": 2, "edge": 2, "reflect": min(2, n - 1), "wrap": min(2, n)}[mode]
        lo = -1 if mode == "constant" and g.opset >= 11 and n >= 3 else 0
        begin[a], end[a] = g.int(lo, hi), g.int(lo, hi)
    out = tuple(n + b + e for n, b, e in zip(g.shape, begin, end))
    if not g.fits(out):
        begin, end, out = [0] * r, [0] * r, g.shape
    value = g.flt(-2.0, 2.0) if mode == "constant" and g.coin() else None
    if g.opset < 11:
        g.emit("Pad", [g.cur], out, pads=begin + end, mode=mode if mode != "constant" or g.coin()
               else None, value=value)
        return
    explicit_axes = g.opset >= 18 and (axes != list(range(r)) or g.rare())
    if explicit_axes:
        pads = [begin[a] for a in axes] + [end[a] for a in axes]
    else:
        pads = begin + end
    inputs = [g.cur, g.ints(pads), "" if value is None else g.scalar(value)]
    if explicit_axes:
        inputs.append(g.ints([g.axis_value(a, r) for a in axes]))
    while inputs[-1] == "":
        inputs.pop()
    g.emit("Pad", inputs, out, mode=mode if mode != "constant" or g.coin() else None)


def _resize_along(g: Graph, axis: int) -> None:
    """Change only the size of ``axis`` (or nothing): a slice, a pad or a tile along it."""
    kind = g.pick(["same", "slice", "pad", "tile"])
    if kind == "slice":
        slice_op(g, axis)
    elif kind == "pad":
        pad(g, only_axis=axis, mode=g.pick(["constant", "edge"]))
    elif kind == "tile":
        reps = [1] * len(g.shape)
        reps[axis] = 2
        out = tuple(d * t for d, t in zip(g.shape, reps))
        if g.fits(out):
            g.emit("Tile", [g.cur, g.ints(reps)], out)
    else:
        preserving_chain(g, 0, 1)


def concat(g: Graph) -> None:
    """Concat of two computed branches of the current tensor, maybe with constants at the
    ends."""
    r, start = len(g.shape), g.cur
    axis = g.int(0, r - 1)
    preserving_chain(g, 0, 1)
    a = g.cur
    g.at(start)
    _resize_along(g, axis)
    b = g.cur
    pieces = [a, b] if g.coin() else [b, a]
    if g.rare():
        pieces = [a]  # a single computed tensor between constants
    before = [g.weight(_with(g.shapes[a], axis, g.int(1, 2))) for _ in range(g.int(0, 1))]
    after = [g.weight(_with(g.shapes[a], axis, g.int(1, 2))) for _ in range(g.int(0, 1))]
    pieces = before + pieces + after
    out = _with(g.shapes[a], axis, sum(g.shapes[p][axis] for p in pieces))
    if not g.fits(out):
        g.at(a)
        return
    g.emit("Concat", pieces, out, axis=g.axis_value(axis, r))


def _with(shape, axis: int, size: int) -> tuple[int, ...]:
    s = list(shape)
    s[axis] = size
    return tuple(s)


def split(g: Graph) -> None:
    r = len(g.shape)
    axis = g.pick([a for a in range(r) if g.shape[a] >= 2])
    n = g.shape[axis]
    k = g.int(2, min(n, 4))
    inputs, attrs = [g.cur], {"axis": g.axis_value(axis, r) if axis or g.coin() else None}
    form = g.pick(["sizes", "equal"])
    if form == "equal" and g.opset >= 18:
        chunk = -(-n // k)
        k = -(-n // chunk)  # every output non-empty
        sizes = [chunk] * (k - 1) + [n - chunk * (k - 1)]
        attrs["num_outputs"] = k
    elif form == "equal" and n % k == 0:
        sizes = [n // k] * k
    else:
        cuts = sorted(g.subset(range(1, n), k - 1, k - 1))
        sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
        if g.opset < 13:
            attrs["split"] = sizes
        else:
            inputs.append(g.ints(sizes))
    outs = g.emit("Split", inputs, [_with(g.shape, axis, s) for s in sizes], **attrs)
    use = g.pick(["one", "concat", "sum"])
    same = [(i, j) for i in range(len(outs)) for j in range(len(outs))
            if i < j and sizes[i] == sizes[j]]
    if use == "concat":
        order = list(g.data.draw(st.permutations(outs)))
        g.emit("Concat", order, _with(g.shapes[outs[0]], axis, n), axis=axis)
    elif use == "sum" and same:
        i, j = g.pick(same)
        g.emit(g.pick(["Add", "Sub"]), [outs[i], outs[j]], g.shapes[outs[i]])
    else:
        g.at(g.pick(outs))


def gather(g: Graph) -> None:
    r = len(g.shape)
    axis = g.int(0, r - 1)
    n = g.shape[axis]
    shapes = [(), (g.int(1, 3),), (g.int(1, 2), g.int(1, 3))]
    ishape = g.pick([s for s in shapes if 1 <= r - 1 + len(s) <= MAX_RANK])
    idx = np.asarray(g.data.draw(st.lists(st.integers(-n, n - 1), min_size=_numel(ishape),
                                          max_size=_numel(ishape))), dtype=np.int64)
    idx = idx.reshape(ishape).astype(np.int32 if g.rare() else np.int64)
    out = g.shape[:axis] + ishape + g.shape[axis + 1:]
    if not g.fits(out):
        idx, out = np.zeros((), np.int64), g.shape[:axis] + g.shape[axis + 1:]
        if not out:
            return
    g.emit("Gather", [g.cur, g.init(idx, "i")], out,
           axis=g.axis_value(axis, r) if axis or g.coin() else None)


def expand(g: Graph) -> None:
    target = [g.pick([1, 2, 3]) if d == 1 else g.pick([d, 1]) for d in g.shape]
    if g.rare() and len(target) > 1:
        target = target[g.int(1, len(target) - 1):]  # shorter: aligned from the right
    elif g.rare() and len(target) < MAX_RANK:
        target = [g.int(1, 2)] + target
    out = tuple(np.broadcast_shapes(g.shape, tuple(target)))
    if not g.fits(out):
        target, out = [1] * len(g.shape), g.shape
    g.emit("Expand", [g.cur, g.ints(target)], out)


def tile(g: Graph) -> None:
    reps = [g.pick([1, 1, 2, 3]) for _ in g.shape]
    out = tuple(d * t for d, t in zip(g.shape, reps))
    if not g.fits(out):
        reps, out = [1] * len(g.shape), g.shape
    g.emit("Tile", [g.cur, g.ints(reps)], out)


def reduce(g: Graph, op: str | None = None, axes=None, keepdims: int | None = None) -> None:
    op = op or g.pick(["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
    r = len(g.shape)
    as_input = g.opset >= (13 if op == "ReduceSum" else 18)
    inputs, attrs = [g.cur], {}
    if axes is None:
        axes = g.subset(range(r), 1)
        if g.rare():
            axes = []  # every axis (or none, with noop_with_empty_axes)
    if keepdims is None:
        keepdims = g.pick([0, 1])
    noop = as_input and not axes and g.coin()
    reduced = set(axes) if axes else (set() if noop else set(range(r)))
    if not keepdims and len(reduced) == r:
        keepdims = 1
    if axes:
        _axes_arg(g, inputs, attrs, [g.axis_value(a, r) for a in axes],
                  13 if op == "ReduceSum" else 18)
    elif as_input and g.rare():
        inputs.append(g.ints([]))  # an empty axes input: same as none
    out = tuple(1 if i in reduced else d for i, d in enumerate(g.shape)
                if keepdims or i not in reduced)
    g.emit(op, inputs, out, keepdims=keepdims if keepdims == 0 or g.coin() else None,
           noop_with_empty_axes=1 if noop else None, **attrs)


def dense_square(g: Graph) -> None:
    matmul(g, square=True)


def conv_same(g: Graph) -> None:
    conv(g, same=True)


def preserving_chain(g: Graph, lo: int, hi: int) -> None:
    """``lo``..``hi`` shape-preserving ops on the current tensor."""
    for _ in range(g.int(lo, hi)):
        g.pick_layer(PRESERVING).fn(g)


def residual(g: Graph) -> None:
    """Add/Sub of two branches of the current tensor; one may be a reduction broadcast back."""
    start = g.cur
    preserving_chain(g, 0, 2)
    a = g.cur
    g.at(start)
    r = len(g.shape)
    if g.rare():  # x ± mean/sum over some axes, broadcast (keepdims, or leading axes dropped)
        if g.coin():
            reduce(g, op=g.pick(["ReduceMean", "ReduceSum"]), keepdims=1)
        elif r >= 2:
            reduce(g, op=g.pick(["ReduceMean", "ReduceMax"]), axes=list(range(g.int(1, r - 1))),
                   keepdims=0)
    else:
        preserving_chain(g, 0, 2)
    b = g.cur
    pair = [a, b] if g.coin() else [b, a]
    op = g.pick(["Add", "Sub", "Sum"])
    if op == "Sum" and g.coin():  # a third term: a constant or the start tensor again
        pair.append(g.weight(broadcast_const_shape(g, g.shapes[a], grow=False))
                    if g.coin() else start)
    g.emit(op, pair, np.broadcast_shapes(*(g.shapes[p] for p in pair)))


def head(g: Graph) -> None:
    """Flatten then Gemm: a classifier head."""
    g.emit("Flatten", [g.cur], (g.shape[0], _numel(g.shape[1:])))
    gemm(g)


@dataclass(frozen=True)
class Layer:
    fn: Callable[[Graph], None]
    ok: Callable[[Graph], bool] = lambda g: True
    weight: int = 1


def _rank(lo: int, hi: int = MAX_RANK) -> Callable[[Graph], bool]:
    return lambda g: lo <= len(g.shape) <= hi


def _spatial(g: Graph) -> bool:
    return len(g.shape) in (3, 4) and g.shape[1] <= 8


ACT = Layer(activation, weight=3)
ARITH = Layer(arithmetic, weight=2)
PRESERVING = [
    Layer(activation), Layer(lambda g: arithmetic(g, grow=False)),
    Layer(softmax), Layer(layernorm, lambda g: g.opset >= 17),
    Layer(batchnorm, _rank(2)), Layer(dense_square, lambda g: g.shape[-1] <= 8),
    Layer(conv_same, _spatial),
]
MLP = [ACT, ARITH, Layer(gemm, _rank(2, 2), 3), Layer(matmul, weight=2), Layer(matmul_left),
       Layer(residual), Layer(softmax)]
ELEMENTWISE = [ACT, ARITH, Layer(gelu_pattern), Layer(passthrough)]
CNN = [ACT, ARITH, Layer(conv, _spatial, 4), Layer(conv_transpose, _spatial, 2),
       Layer(pool, _spatial, 3), Layer(global_pool, _spatial),
       Layer(batchnorm, _rank(2)), Layer(layernorm, lambda g: g.opset >= 17),
       Layer(softmax), Layer(residual, weight=2), Layer(concat, _rank(2))]
SHAPE = [Layer(activation), Layer(reshape), Layer(reshape_from_shape, _rank(2)), Layer(flatten),
         Layer(transpose, _rank(2)),
         Layer(squeeze, lambda g: 1 in g.shape and len(g.shape) >= 2), Layer(unsqueeze,
                                                                             _rank(1, 4)),
         Layer(slice_op, weight=2), Layer(pad, weight=2), Layer(concat, weight=2),
         Layer(split, lambda g: max(g.shape) >= 2, 2), Layer(gather), Layer(expand),
         Layer(tile), Layer(residual), Layer(reduce, weight=2)]
FAMILIES = {"mlp": MLP, "elementwise": ELEMENTWISE, "cnn": CNN, "shape": SHAPE,
            "mixed": MLP + ELEMENTWISE + CNN + SHAPE}


def input_shape(data, family: str) -> tuple[int, ...]:
    batch = data.draw(st.integers(1, 2), label="batch")
    if family == "mlp":
        return batch, data.draw(st.integers(1, 8))
    if family == "cnn" or (family == "mixed" and data.draw(st.booleans())):
        spatial = data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=2))
        return (batch, data.draw(st.integers(1, 4)), *spatial)
    rest = data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    return (batch, *rest)


def build(data, family: str, opset: int | None = None) -> Graph:
    if opset is None:
        opset = data.draw(st.integers(MIN_OPSET, MAX_OPSET), label="opset")
    g = Graph(data, opset, input_shape(data, family))
    for _ in range(data.draw(st.integers(1, 5), label="layers")):
        if g.final:
            break
        g.pick_layer(FAMILIES[family]).fn(g)
    if family == "cnn" and len(g.shape) >= 2 and not g.final and g.rare():
        head(g)
    if not g.nodes:  # every branch was empty: x + x
        g.emit("Add", [g.cur, g.cur], g.shape)
    return g


def check(g: Graph, tmp_path, n_inputs: int = 3) -> None:
    note(g.describe())
    model = g.model()
    onnx.checker.check_model(model, full_check=g.spec_shapes)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    net = bp.load(path)
    ort_model = OrtModel(path, threads=1)
    x = g.rng.standard_normal((n_inputs, *g.input_shape)).astype(np.float32).astype(np.float64)
    ref = ort_model(x)
    ours = net(x)
    assert ours.shape == ref.shape, f"IR output shape {ours.shape} != onnxruntime {ref.shape}"
    err = relative_error(ours, ref)
    if err > RTOL:
        # A cancellation (residual difference, a ReLU of a small result...) leaves an output far
        # smaller than the values it came from; float32 cannot resolve it better than its
        # rounding at their scale. Only then is the example discarded, as ill-conditioned.
        scale = max(float(np.max(np.abs(v), initial=0.0)) for v in net.evaluate_all(x))
        abs_err = float(np.max(np.abs(ours - ref)))
        note(f"relative error {err:.3g}; absolute {abs_err:.3g}; largest IR value {scale:.3g}")
        event("ill-conditioned" if abs_err <= 1e-6 * scale else "mismatch")
        assume(abs_err > 1e-6 * scale)
    assert err <= RTOL, f"IR vs onnxruntime relative error {err:.3g}"


_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=150, **_COMMON)
@given(data=st.data())
def test_random_graph_matches_onnxruntime(family, data, tmp_path):
    check(build(data, family), tmp_path)


@pytest.mark.parametrize("op", list(ACTIVATIONS))
@settings(max_examples=12, **_COMMON)
@given(data=st.data())
def test_each_activation_matches_onnxruntime(op, data, tmp_path):
    opset = data.draw(st.integers(max(MIN_OPSET, ACTIVATIONS[op]), MAX_OPSET), label="opset")
    g = Graph(data, opset, input_shape(data, "elementwise"))
    if data.draw(st.booleans()):
        arithmetic(g)
    activation(g, op)
    check(g, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=2000, **_COMMON)
@given(data=st.data())
def test_random_graph_matches_onnxruntime_many(family, data, tmp_path):
    check(build(data, family), tmp_path)
