#!/usr/bin/env python
"""Build the hand-written ONNX test/benchmark models for boundprop.

Uses only ``onnx`` (helper / numpy_helper / checker) and ``numpy``; no deep
learning framework is needed.  Every model is

* deterministic: weights come from ``np.random.default_rng(seed)`` with a fixed
  per-model seed, so running this script twice produces byte-identical files;
* float32 with static shapes;
* tagged with the lowest IR version its opset needs (so onnxruntime accepts it);
* checked with ``onnx.checker.check_model(full_check=True)``;
* run once through onnxruntime on a random point of its default input set
  (outputs must be finite and have the declared shape);
* annotated with ``metadata_props``:
    - ``boundprop.input_set``   JSON description of the default input set
      ({"kind": "box"|"linf"|"l2", ...}, scalars broadcast over the input);
    - ``boundprop.description`` one line: what the model is / what it exercises.

Usage::

    python models/build.py               # writes models/*.onnx next to this file
    python models/build.py --out DIR     # writes into DIR instead
    python models/build.py --table       # also print the markdown table for README.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, checker, helper, numpy_helper

PRODUCER = "boundprop-models"
INT64_MAX = int(np.iinfo(np.int64).max)


# --------------------------------------------------------------------------- #
# Input-set helpers
# --------------------------------------------------------------------------- #
def _r4(a) -> list[float]:
    """Flatten and round to 4 decimals (JSON-friendly, deterministic)."""
    return [round(float(v), 4) for v in np.asarray(a, dtype=np.float64).ravel()]


def box(lower, upper) -> dict:
    return {"kind": "box", "lower": lower, "upper": upper}


def linf(center, eps, clip=None) -> dict:
    d = {"kind": "linf", "center": center, "eps": float(eps)}
    if clip is not None:
        d["clip"] = [float(clip[0]), float(clip[1])]
    return d


def l2(center, radius) -> dict:
    return {"kind": "l2", "center": center, "radius": float(radius)}


def sample_from_set(spec: dict, shape, rng) -> np.ndarray:
    """A random point of the input set (used only to smoke-test with ORT)."""
    n = int(np.prod(shape))

    def vec(v):
        return np.broadcast_to(np.asarray(v, dtype=np.float64).ravel(), (n,)).copy()

    kind = spec["kind"]
    if kind == "box":
        lo, hi = vec(spec["lower"]), vec(spec["upper"])
        x = lo + (hi - lo) * rng.uniform(size=n)
    elif kind == "linf":
        c = vec(spec["center"])
        x = c + rng.uniform(-spec["eps"], spec["eps"], size=n)
        if "clip" in spec:
            x = np.clip(x, spec["clip"][0], spec["clip"][1])
    elif kind == "l2":
        c = vec(spec["center"])
        d = rng.normal(size=n)
        d /= np.linalg.norm(d)
        x = c + d * spec["radius"] * rng.uniform() ** (1.0 / n)
    else:  # pragma: no cover
        raise ValueError(kind)
    return x.reshape(shape).astype(np.float32)


def describe_set(spec: dict) -> str:
    """Short human-readable form for the README table."""

    def fmt(v):
        if isinstance(v, list):
            return f"<{len(v)} values>"
        return f"{v:g}"

    if spec["kind"] == "box":
        lo, hi = spec["lower"], spec["upper"]
        if not isinstance(lo, list) and not isinstance(hi, list):
            return f"box [{lo:g}, {hi:g}]"
        return f"box lower={fmt(lo)} upper={fmt(hi)}"
    if spec["kind"] == "linf":
        s = f"linf eps={spec['eps']:g} around random center"
        if "clip" in spec:
            s += f", clip [{spec['clip'][0]:g}, {spec['clip'][1]:g}]"
        return s
    return f"l2 radius={spec['radius']:g} around random center"


# --------------------------------------------------------------------------- #
# Graph builder
# --------------------------------------------------------------------------- #
class Builder:
    """Accumulates nodes / initializers with unique names."""

    def __init__(self, name: str, seed: int, opset: int):
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count: dict[str, int] = {}

    # -- naming -------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        k = self._count.get(hint, 0)
        self._count[hint] = k + 1
        return f"{hint}_{k}"

    # -- constants ----------------------------------------------------------
    def init(self, arr, hint: str = "const", dtype=np.float32) -> str:
        """Add an initializer and return its name."""
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def ints(self, values, hint: str = "ints") -> str:
        return self.init(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def constant_node(self, arr, hint: str = "cst", dtype=np.float32) -> str:
        """Emit a Constant node (as torch's exporter often does)."""
        out = self.fresh(hint)
        t = numpy_helper.from_array(np.asarray(arr, dtype=dtype), out + "_value")
        self.nodes.append(
            helper.make_node("Constant", [], [out], name=self.fresh("Constant"), value=t)
        )
        return out

    # -- random parameters --------------------------------------------------
    def he(self, shape, fan_in: int, hint: str = "W") -> str:
        w = self.rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
        return self.init(w, hint)

    def bias(self, n, hint: str = "b") -> str:
        return self.init(self.rng.uniform(-0.1, 0.1, size=n), hint)

    # -- nodes --------------------------------------------------------------
    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outs, name=self.fresh(op_type), **attrs)
        )
        return outs[0] if n_out == 1 else outs

    # -- layers -------------------------------------------------------------
    def gemm(self, x: str, n_in: int, n_out: int, trans_b: bool = True) -> str:
        if trans_b:
            w = self.he((n_out, n_in), n_in, "gemm_W")
            return self.op("Gemm", [x, w, self.bias(n_out, "gemm_b")], transB=1)
        w = self.he((n_in, n_out), n_in, "gemm_W")
        return self.op("Gemm", [x, w, self.bias(n_out, "gemm_b")])

    def matmul_add(self, x: str, n_in: int, n_out: int) -> str:
        w = self.he((n_in, n_out), n_in, "mm_W")
        y = self.op("MatMul", [x, w])
        return self.op("Add", [y, self.bias(n_out, "mm_b")])

    def conv(self, x: str, cin: int, cout: int, k: int, group: int = 1, **attrs) -> str:
        w = self.he((cout, cin // group, k, k), (cin // group) * k * k, "conv_W")
        if group != 1:
            attrs["group"] = group
        return self.op("Conv", [x, w, self.bias(cout, "conv_b")], kernel_shape=[k, k], **attrs)

    def bn_params(self, c: int) -> list[str]:
        scale = self.init(self.rng.uniform(0.5, 1.5, size=c), "bn_scale")
        b = self.init(self.rng.uniform(-0.1, 0.1, size=c), "bn_bias")
        mean = self.init(self.rng.normal(0.0, 0.1, size=c), "bn_mean")
        var = self.init(self.rng.uniform(0.5, 1.5, size=c), "bn_var")
        return [scale, b, mean, var]

    # -- finish -------------------------------------------------------------
    def model(self, in_shape, out_shape, out_name: str, input_set: dict, description: str,
              in_name: str = "input") -> onnx.ModelProto:
        # rename the final tensor to "output"
        for node in self.nodes:
            node.output[:] = ["output" if o == out_name else o for o in node.output]
            node.input[:] = ["output" if i == out_name else i for i in node.input]
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, list(in_shape))],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(out_shape))],
            initializer=self.inits,
            doc_string=description,
        )
        opset = [helper.make_opsetid("", self.opset)]
        m = helper.make_model(graph, producer_name=PRODUCER, opset_imports=opset)
        m.producer_version = "1"
        m.ir_version = helper.find_min_ir_version_for(opset)
        m.doc_string = description
        helper.set_model_props(
            m,
            {
                "boundprop.input_set": json.dumps(input_set, separators=(",", ":")),
                "boundprop.description": description,
            },
        )
        return m


# --------------------------------------------------------------------------- #
# Models
# --------------------------------------------------------------------------- #
MODELS = []  # list of (name, builder function)


def model(fn):
    MODELS.append((fn.__name__, fn))
    return fn


# 1 -------------------------------------------------------------------------
@model
def mlp_784_100_100_10_relu():
    b = Builder("mlp_784_100_100_10_relu", seed=1, opset=13)
    center = _r4(b.rng.uniform(0.0, 1.0, size=784))
    h = b.op("Relu", [b.gemm("input", 784, 100)])
    h = b.op("Relu", [b.gemm(h, 100, 100)])
    y = b.gemm(h, 100, 10)
    return b.model([1, 784], [1, 10], y, linf(center, 0.02, clip=(0.0, 1.0)),
                   "MNIST-sized ReLU MLP 784-100-100-10 (Gemm transB=1 + Relu); largest model")


# 2 -------------------------------------------------------------------------
def _small_mlp(name, seed, opset, act, layer="matmul", desc=""):
    """8-16-16-4 MLP; ``act(builder, x, layer_index)`` applies the activation."""
    b = Builder(name, seed=seed, opset=opset)
    lin = b.matmul_add if layer == "matmul" else b.gemm
    h = act(b, lin("input", 8, 16), 0)
    h = act(b, lin(h, 16, 16), 1)
    y = lin(h, 16, 4)
    return b.model([1, 8], [1, 4], y, box(-1.0, 1.0), desc)


@model
def mlp_relu():
    return _small_mlp("mlp_relu", 10, 9, lambda b, x, i: b.op("Relu", [x]),
                      desc="8-16-16-4 MLP, MatMul+Add+Relu at opset 9")


@model
def mlp_leakyrelu():
    return _small_mlp("mlp_leakyrelu", 11, 11, lambda b, x, i: b.op("LeakyRelu", [x], alpha=0.1),
                      layer="gemm", desc="8-16-16-4 MLP, Gemm+LeakyRelu(alpha=0.1) at opset 11")


@model
def mlp_prelu():
    def act(b, x, i):
        slope = b.init(b.rng.uniform(0.05, 0.3, size=16), "prelu_slope")
        return b.op("PRelu", [x, slope])

    return _small_mlp("mlp_prelu", 12, 12, act,
                      desc="8-16-16-4 MLP, MatMul+Add+PRelu with per-neuron slope [16] at opset 12")


@model
def mlp_sigmoid():
    return _small_mlp("mlp_sigmoid", 13, 13, lambda b, x, i: b.op("Sigmoid", [x]), layer="gemm",
                      desc="8-16-16-4 MLP, Gemm+Sigmoid at opset 13")


@model
def mlp_tanh():
    return _small_mlp("mlp_tanh", 14, 14, lambda b, x, i: b.op("Tanh", [x]),
                      desc="8-16-16-4 MLP, MatMul+Add+Tanh at opset 14")


@model
def mlp_softplus():
    return _small_mlp("mlp_softplus", 15, 15, lambda b, x, i: b.op("Softplus", [x]),
                      desc="8-16-16-4 MLP, MatMul+Add+Softplus at opset 15")


@model
def mlp_elu():
    return _small_mlp("mlp_elu", 16, 16, lambda b, x, i: b.op("Elu", [x], alpha=1.0), layer="gemm",
                      desc="8-16-16-4 MLP, Gemm+Elu(alpha=1) at opset 16")


@model
def mlp_gelu():
    return _small_mlp("mlp_gelu", 20, 20, lambda b, x, i: b.op("Gelu", [x]),
                      desc="8-16-16-4 MLP, MatMul+Add+native Gelu op (approximate=none), "
                           "opset 20")


def gelu_erf(b: Builder, x: str, constant_nodes: bool) -> str:
    """torch's exporter pattern: 0.5 * x * (1 + erf(x / sqrt(2)))."""
    mk = b.constant_node if constant_nodes else b.init
    d = b.op("Div", [x, mk(np.float32(1.4142135), "sqrt2")])
    e = b.op("Erf", [d])
    a = b.op("Add", [e, mk(np.float32(1.0), "one")])
    m = b.op("Mul", [x, a])
    return b.op("Mul", [m, mk(np.float32(0.5), "half")])


@model
def mlp_gelu_erf():
    # layer 0 uses Constant nodes, layer 1 initializers (both forms occur in the wild)
    return _small_mlp("mlp_gelu_erf", 17, 17, lambda b, x, i: gelu_erf(b, x, i == 0),
                      desc="8-16-16-4 MLP with the torch-exported GELU pattern "
                           "Div(sqrt2)->Erf->Add(1)->Mul(x)->Mul(0.5), opset 17")


@model
def mlp_hardsigmoid():
    return _small_mlp("mlp_hardsigmoid", 18, 18,
                      lambda b, x, i: b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5),
                      desc="8-16-16-4 MLP, MatMul+Add+HardSigmoid(alpha=1/6, beta=0.5) at opset 18")


@model
def mlp_clip():
    return _small_mlp("mlp_clip", 19, 10, lambda b, x, i: b.op("Clip", [x], min=0.0, max=6.0),
                      layer="gemm", desc="8-16-16-4 MLP, Gemm+Clip(0,6)=ReLU6 with min/max "
                                         "attributes at opset 10")


@model
def mlp_clip_inputs():
    def act(b, x, i):
        lo, hi = (0.0, 6.0) if i == 0 else (-1.0, 1.0)  # ReLU6, then Hardtanh
        lo_name = b.init(np.float32(lo), "clip_min")
        hi_name = b.init(np.float32(hi), "clip_max")
        return b.op("Clip", [x, lo_name, hi_name])

    return _small_mlp("mlp_clip_inputs", 21, 13, act,
                      desc="8-16-16-4 MLP, Clip with min/max as inputs (ReLU6 then Hardtanh) "
                           "at opset 13")


# 3 -------------------------------------------------------------------------
@model
def lenet():
    b = Builder("lenet", seed=30, opset=11)
    h = b.op("Relu", [b.conv("input", 1, 6, 5, pads=[2, 2, 2, 2])])          # 6x28x28
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])             # 6x14x14
    h = b.op("Relu", [b.conv(h, 6, 16, 5)])                                   # 16x10x10
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])             # 16x5x5
    # x.view(x.size(0), -1) as emitted by the torch exporter
    shp = b.op("Shape", [h])
    idx = b.constant_node(np.int64(0), "gather_idx", dtype=np.int64)
    n = b.op("Gather", [shp, idx], axis=0)
    n = b.op("Unsqueeze", [n], axes=[0])
    minus1 = b.constant_node(np.array([-1], dtype=np.int64), "minus1", dtype=np.int64)
    new_shape = b.op("Concat", [n, minus1], axis=0)
    h = b.op("Reshape", [h, new_shape])                                       # 1x400
    h = b.op("Relu", [b.gemm(h, 400, 120)])
    h = b.op("Relu", [b.gemm(h, 120, 84)])
    y = b.gemm(h, 84, 10)
    return b.model([1, 1, 28, 28], [1, 10], y, box(0.0, 1.0),
                   "LeNet-5 (Conv/Relu/MaxPool) with torch's Shape->Gather->Unsqueeze->Concat->"
                   "Reshape flatten chain, opset 11")


# 4 -------------------------------------------------------------------------
def _vgg(name, seed, opset, act, pool, bn=None, in_shape=(1, 3, 32, 32), desc=""):
    b = Builder(name, seed=seed, opset=opset)
    h, c, hw = "input", in_shape[1], in_shape[2]
    for cout in (8, 16, 32):
        for _ in range(2):
            h = b.conv(h, c, cout, 3, pads=[1, 1, 1, 1])
            c = cout
            if bn is not None:
                h = b.op("BatchNormalization", [h] + b.bn_params(c), **bn)
                if bn.get("training_mode"):
                    # ONNX shape inference (checker and ORT) demands 3 node outputs when
                    # training_mode=1, and ORT 1.32 segfaults if the extra two are given empty
                    # names, so they get real names but are left dangling: the *graph* has
                    # only the single output Y.
                    extra = [b.fresh("bn_running_mean"), b.fresh("bn_running_var")]
                    b.nodes[-1].output.extend(extra)
            h = act(b, h)
        h = b.op(pool, [h], kernel_shape=[2, 2], strides=[2, 2])
        hw //= 2
    h = b.op("Flatten", [h], axis=1)
    flat = c * hw * hw
    h = act(b, b.gemm(h, flat, 64))
    y = b.gemm(h, 64, 10)
    return b.model(list(in_shape), [in_shape[0], 10], y, box(0.0, 1.0), desc)


def _relu(b, x):
    return b.op("Relu", [x])


def _softplus(b, x):
    return b.op("Softplus", [x])


@model
def vgg_small_relu():
    return _vgg("vgg_small_relu", 40, 13, _relu, "MaxPool",
                desc="VGG-style CNN 3x32x32, 3 blocks of (Conv3x3+Relu)x2+MaxPool2, Flatten, "
                     "Gemm head")


@model
def vgg_small_smooth():
    return _vgg("vgg_small_smooth", 41, 13, _softplus, "AveragePool",
                desc="VGG-style CNN 3x32x32 with Softplus and AveragePool2 (smooth network)")


@model
def vgg_small_bn():
    return _vgg("vgg_small_bn", 42, 15, _relu, "MaxPool", bn={"epsilon": 1e-5},
                desc="VGG-style CNN 3x32x32 with inference-mode BatchNormalization after each "
                     "Conv, opset 15")


@model
def vgg_small_smooth_bn_train():
    return _vgg("vgg_small_smooth_bn_train", 43, 15, _softplus, "AveragePool",
                bn={"epsilon": 1e-2, "training_mode": 1}, in_shape=(4, 3, 16, 16),
                desc="VGG-style CNN, batch 4x3x16x16, Softplus+AveragePool, BatchNormalization "
                     "training_mode=1 (batch statistics couple the batch), only Y output")


# 5 -------------------------------------------------------------------------
@model
def resnet_block():
    b = Builder("resnet_block", seed=50, opset=13)
    center = _r4(b.rng.uniform(0.0, 1.0, size=3 * 16 * 16))
    p1 = [1, 1, 1, 1]
    h = b.op("Relu", [b.conv("input", 3, 8, 3, pads=p1)])                    # 8x16x16
    r = b.op("Relu", [b.conv(h, 8, 8, 3, pads=p1)])
    r = b.conv(r, 8, 8, 3, pads=p1)
    h = b.op("Relu", [b.op("Add", [r, h])])                                  # identity skip
    main = b.conv(h, 8, 16, 3, pads=p1, strides=[2, 2])                      # 16x8x8
    proj = b.conv(h, 8, 16, 1, strides=[2, 2])                               # 1x1 projection
    h = b.op("Relu", [b.op("Add", [main, proj])])
    h = b.op("GlobalAveragePool", [h])                                       # 16x1x1
    h = b.op("Flatten", [h], axis=1)
    y = b.gemm(h, 16, 10)
    return b.model([1, 3, 16, 16], [1, 10], y, linf(center, 0.01),
                   "ResNet-style: identity residual block + strided block with 1x1 stride-2 "
                   "projection shortcut, GlobalAveragePool, Gemm")


# 6 -------------------------------------------------------------------------
@model
def softmax_head():
    b = Builder("softmax_head", seed=60, opset=13)
    h = b.op("Relu", [b.gemm("input", 8, 16)])
    y = b.op("Softmax", [b.gemm(h, 16, 5)], axis=-1)
    return b.model([1, 8], [1, 5], y, box(-1.0, 1.0),
                   "MLP 8-16-5 with Softmax(axis=-1) output (opset 13 per-axis semantics)")


@model
def logsoftmax_head_opset11():
    b = Builder("logsoftmax_head_opset11", seed=61, opset=11)
    y = b.op("LogSoftmax", [b.gemm("input", 8, 6)], axis=1)
    return b.model([1, 8], [1, 6], y, box(-1.0, 1.0),
                   "Gemm 8->6 followed by LogSoftmax(axis=1), opset 11")


# 7 -------------------------------------------------------------------------
@model
def ops_coverage_a():
    b = Builder("ops_coverage_a", seed=70, opset=11)
    rng = b.rng
    # input normalisation
    mean = b.init(np.array([0.45, 0.55], dtype=np.float32).reshape(1, 2, 1, 1), "norm_mean")
    std = b.init(np.array([0.25, 0.3], dtype=np.float32).reshape(1, 2, 1, 1), "norm_std")
    n = b.op("Div", [b.op("Sub", ["input", mean]), std])                       # 2x12x12
    n = b.op("Identity", [n])
    # Pad, pads given as an input (opset >= 11)
    pads = b.ints([0, 0, 1, 1, 0, 0, 1, 1], "pads")
    p = b.op("Pad", [n, pads, b.init(np.float32(0.0), "pad_value")], mode="constant")  # 2x14x14
    # grouped, strided, dilated Conv
    a = b.conv(p, 2, 8, 3, group=2, strides=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])  # 8x6x6
    a = b.op("Relu", [a])
    # ConvTranspose 8->4, stride 2, pads 1, output_padding 1
    wt = b.he((8, 4, 3, 3), 8 * 9, "convT_W")
    t = b.op("ConvTranspose", [a, wt, b.bias(4, "convT_b")], kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1], output_padding=[1, 1])                         # 4x12x12
    t = b.op("Relu", [t])
    u = b.op("AveragePool", [t], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             count_include_pad=1)                                              # 4x6x6
    v = b.op("AveragePool", [n], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             count_include_pad=0)                                              # 2x6x6
    c = b.op("Concat", [u, v], axis=1)                                         # 6x6x6
    m = b.op("MaxPool", [c], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)  # 6x3x3 (floor: 2x2)
    tr = b.op("Transpose", [m], perm=[0, 2, 3, 1])                             # 3x3x6 (NHWC)
    s = b.op("Slice", [tr, b.ints([1, 0], "starts"), b.ints([INT64_MAX, 3], "ends"),
                       b.ints([3, 2], "axes"), b.ints([2, 1], "steps")])       # 1x3x3x3
    k = b.constant_node(rng.uniform(-0.5, 0.5, size=(1, 3, 3, 2)), "concat_const")
    cc = b.op("Concat", [s, k], axis=3)                                        # 1x3x3x5
    # two heads: flatten, and spatial mean -> squeeze -> unsqueeze -> flatten
    f1 = b.op("Flatten", [cc], axis=1)                                         # 1x45
    rm = b.op("ReduceMean", [cc], axes=[1, 2], keepdims=1)                     # 1x1x1x5
    sq = b.op("Squeeze", [rm], axes=[1, 2])                                    # 1x5
    us = b.op("Unsqueeze", [sq], axes=[2])                                     # 1x5x1
    f2 = b.op("Flatten", [us], axis=1)                                         # 1x5
    z = b.op("Concat", [f1, f2], axis=1)                                       # 1x50
    z = b.op("Dropout", [z], ratio=0.5)
    y = b.gemm(z, 50, 10)
    return b.model([1, 2, 12, 12], [1, 10], y, box(0.0, 1.0),
                   "op coverage at opset 11: Sub/Div normalisation, Pad(pads input), grouped+"
                   "strided+dilated Conv, ConvTranspose(output_padding), AveragePool "
                   "count_include_pad 0/1, ceil_mode MaxPool, Transpose, Slice(steps), Concat, "
                   "ReduceMean, Squeeze/Unsqueeze(attr axes), Flatten, Dropout, Identity, Constant")


# 8 -------------------------------------------------------------------------
@model
def ops_coverage_b():
    b = Builder("ops_coverage_b", seed=80, opset=18)
    center = _r4(b.rng.uniform(-1.0, 1.0, size=3 * 8 * 8))
    p1 = [1, 1, 1, 1]
    h = b.conv("input", 3, 8, 3, pads=p1)                                       # 8x8x8
    h = b.op("BatchNormalization", [h] + b.bn_params(8), epsilon=1e-5)
    h = b.op("LeakyRelu", [h], alpha=0.1)
    # Pad with pads/constant_value/axes inputs (axes input is new in opset 18)
    pd = b.op("Pad", [h, b.ints([1, 1, 1, 1], "pads"), b.init(np.float32(0.0), "pad_value"),
                      b.ints([2, 3], "pad_axes")], mode="constant")             # 8x10x10
    # Slice with negative starts/ends/axes
    sl = b.op("Slice", [pd, b.ints([-10, -9], "starts"), b.ints([-2, -1], "ends"),
                        b.ints([-2, -1], "axes")])                              # 8x8x8
    r = b.op("Tanh", [b.conv(sl, 8, 8, 3, pads=p1)])
    r = b.op("Mul", [r, b.init(np.float32(0.5), "half")])
    res = b.op("Add", [r, h])                                                  # residual
    # branch 1: HardSigmoid -> GlobalAveragePool -> Squeeze(axes input)
    g = b.op("HardSigmoid", [res], alpha=0.2, beta=0.5)
    g = b.op("GlobalAveragePool", [g])                                         # 8x1x1
    g = b.op("Squeeze", [g, b.ints([2, 3], "sq_axes")])                        # 1x8
    # branch 2: Elu -> Reshape(0, 8, -1) -> ReduceSum / ReduceMean (axes inputs)
    e = b.op("Elu", [res], alpha=1.0)
    rs = b.op("Reshape", [e, b.ints([0, 8, -1], "shape")])                     # 1x8x64
    s1 = b.op("ReduceSum", [rs, b.ints([-1], "rs_axes")], keepdims=0)          # 1x8
    s2 = b.op("ReduceMean", [rs, b.ints([1], "rm_axes")], keepdims=0)          # 1x64
    z = b.op("Concat", [g, s1, s2], axis=1)                                    # 1x80
    z = b.gemm(z, 80, 6)                                                       # 1x6
    z = b.op("Unsqueeze", [z, b.ints([0], "us_axes")])                         # 1x1x6
    y = b.op("ReduceMean", [z, b.ints([0], "rm_axes")], keepdims=0)            # 1x6
    return b.model([1, 3, 8, 8], [1, 6], y, l2(center, 0.5),
                   "op coverage at opset 18: axes-as-input Reduce*/Squeeze/Unsqueeze/Pad, Slice "
                   "with negative indices, Reshape 0/-1, BN, GlobalAveragePool, LeakyRelu, Tanh, "
                   "HardSigmoid, Elu, residual Add")


# 9 -------------------------------------------------------------------------
@model
def layernorm_mlp():
    b = Builder("layernorm_mlp", seed=90, opset=17)
    center = _r4(b.rng.normal(0.0, 1.0, size=4 * 8))
    h = b.matmul_add("input", 8, 16)                                           # 1x4x16
    scale = b.init(b.rng.uniform(0.5, 1.5, size=16), "ln_scale")
    bias = b.init(b.rng.uniform(-0.1, 0.1, size=16), "ln_bias")
    h = b.op("LayerNormalization", [h, scale, bias], axis=-1, epsilon=1e-5)
    h = gelu_erf(b, h, constant_nodes=False)
    h = b.op("MatMul", [h, b.he((16, 3), 16, "mm_W")])                         # 1x4x3
    y = b.op("ReduceMean", [h], axes=[1], keepdims=0)                          # 1x3
    return b.model([1, 4, 8], [1, 3], y, l2(center, 0.25),
                   "token-wise MatMul+Add, LayerNormalization(axis=-1), GELU-erf pattern, MatMul, "
                   "ReduceMean over the sequence axis, opset 17")


# 10 ------------------------------------------------------------------------
@model
def mlp_opset21():
    b = Builder("mlp_opset21", seed=100, opset=21)
    center = _r4(b.rng.uniform(-1.0, 1.0, size=6))
    h = b.op("Relu", [b.gemm("input", 6, 12)])
    y = b.gemm(h, 12, 3)
    return b.model([1, 6], [1, 3], y, linf(center, 0.05),
                   "6-12-3 Gemm+Relu MLP at the newest opset (21, IR 10)")


@model
def mlp_opset9_softmax():
    b = Builder("mlp_opset9_softmax", seed=101, opset=9)
    h = b.op("Relu", [b.matmul_add("input", 3, 3)])                            # 1x2x3
    h = b.matmul_add(h, 3, 3)
    h = b.op("Softmax", [h], axis=1)  # opset<13: coerced to 2-D [1, 6], softmax over all 6
    y = b.op("Flatten", [h], axis=1)                                           # 1x6
    return b.model([1, 2, 3], [1, 6], y, box(-1.0, 1.0),
                   "opset 9 Softmax(axis=1) on a [1,2,3] tensor: old coerce-to-2D semantics "
                   "(softmax over all 6 values), then Flatten")


# --------------------------------------------------------------------------- #
# Driver
# --------------------------------------------------------------------------- #
def param_count(m: onnx.ModelProto) -> int:
    """Number of float values in initializers and Constant nodes."""
    n = sum(int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type == TensorProto.FLOAT)
    for node in m.graph.node:
        if node.op_type == "Constant":
            t = node.attribute[0].t
            if t.data_type == TensorProto.FLOAT:
                n += int(np.prod(t.dims))
    return n


def shape_of(vi) -> list[int]:
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def verify(m: onnx.ModelProto, path: str, seed: int) -> np.ndarray:
    import onnxruntime as ort

    checker.check_model(m, full_check=True)
    props = {p.key: p.value for p in m.metadata_props}
    spec = json.loads(props["boundprop.input_set"])
    in_shape = shape_of(m.graph.input[0])
    out_shape = shape_of(m.graph.output[0])
    x = sample_from_set(spec, in_shape, np.random.default_rng(seed))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {m.graph.input[0].name: x})
    assert len(outs) == 1, f"{path}: expected a single output, got {len(outs)}"
    y = outs[0]
    assert list(y.shape) == out_shape, f"{path}: output shape {y.shape} != declared {out_shape}"
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y)), f"{path}: non-finite output"
    assert float(np.std(y)) > 0 or y.size == 1, f"{path}: degenerate constant output"
    return y


def check_batch_coupling(path: str) -> None:
    """Training-mode BN must make sample 0's output depend on sample 1 (batch statistics)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(4, 3, 16, 16)).astype(np.float32)
    y1 = sess.run(None, {"input": x})[0]
    x[1] = rng.uniform(size=(3, 16, 16))
    y2 = sess.run(None, {"input": x})[0]
    assert np.abs(y1[0] - y2[0]).max() > 1e-4, "BN training_mode not using batch statistics"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output directory (default: the directory of this script)")
    ap.add_argument("--table", action="store_true", help="print the README markdown table")
    ap.add_argument("--only", nargs="*", help="build only these model names")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for i, (name, fn) in enumerate(MODELS):
        if args.only and name not in args.only:
            continue
        m = fn()
        path = os.path.join(args.out, name + ".onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        y = verify(m, path, seed=1000 + i)
        if name == "mlp_opset9_softmax":  # ORT must implement the coerce-to-2D semantics
            assert abs(float(y.sum()) - 1.0) < 1e-5, y
        if name == "softmax_head":
            assert abs(float(y.sum()) - 1.0) < 1e-5, y
        if name == "vgg_small_smooth_bn_train":
            check_batch_coupling(path)
        spec = json.loads({p.key: p.value for p in m.metadata_props}["boundprop.input_set"])
        opset = m.opset_import[0].version
        ops = sorted({n.op_type for n in m.graph.node})
        rows.append((name, opset, m.ir_version, shape_of(m.graph.input[0]),
                     shape_of(m.graph.output[0]), ops, describe_set(spec), param_count(m)))
        print(f"{name:28s} opset {opset:2d} ir {m.ir_version:2d} in {shape_of(m.graph.input[0])} "
              f"out {shape_of(m.graph.output[0])} params {param_count(m)} "
              f"{os.path.getsize(path)} B  ok")

    if args.table:
        print()
        print("| model | opset (IR) | input | output | ops | default input set | params |")
        print("|---|---|---|---|---|---|---|")
        for name, opset, ir, ish, osh, ops, sdesc, pc in rows:
            cells = [f"`{name}`", f"{opset} ({ir})", ish, osh, ", ".join(ops), sdesc, pc]
            print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
