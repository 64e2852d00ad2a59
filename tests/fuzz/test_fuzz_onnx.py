"""Fuzzing ONNX models: structure-aware mutations of the tiny MLPs, the small shipped models
and the small shared VNN-COMP networks — nodes (drop, duplicate, reorder, op_type, inputs),
initializers (NaN/∞/huge values, raw_data of the wrong length, dtypes, dims 0/negative/2^31),
graph inputs, attributes, opsets (0, 100…), IR versions, metadata (the default input set),
external-data paths (absolute, ../../etc/passwd, devices, symlinks out), truncation and byte
flips of the file.

Targets:

- ``onnx_certify`` (in-process): ``boundprop certify M --box -1 1 --json`` / ``inspect`` /
  ``certify M`` (the model's declared set): exit 0/1/2, one-line error; when it certifies and
  onnxruntime runs the model, no onnxruntime output on the box beats the certified bounds;
  external data outside the model's folder is always refused (exit 2);
- ``onnx_subprocess``: the same on a share of the inputs in a child process with an
  address-space limit and a wall-clock timeout (what a crash or a memory blow-up looks like).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from tests.fuzz import corpus
from tests.fuzz.harness import MODES, contract_violation, fuzz, run_cli, run_cli_subprocess

OPS = ["Relu", "Tanh", "Sigmoid", "MatMul", "Add", "Sub", "Mul", "Div", "Gemm", "Conv",
       "Reshape", "Flatten", "Softmax", "Identity", "Constant", "Cast", "Pow", "Sqrt", "Log",
       "Exp", "MaxPool", "Concat", "Transpose", "If", "Loop", "Foo", "", "relu", "LSTM"]
BAD_FLOATS = [math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-45, 0.0, -0.0, 1e30]
BAD_DIMS = [0, -1, -(2**31), 2**31, 2**31 - 1, 2**62, 7]
DTYPES = [0, TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64, TensorProto.STRING,
          TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16, TensorProto.BOOL, 999]
ATTRS = ["axis", "transA", "transB", "alpha", "beta", "perm", "kernel_shape", "pads", "strides",
         "to", "value", "allowzero", "group", "dilations", "auto_pad"]
ATTR_VALUES = [0, -1, 2**62, -(2**62), math.nan, math.inf, 1e300, [], [0], [-1, 2**40],
               [1.5, math.nan], "SAME_UPPER", "", b"\xff" * 3]
OPSETS = [0, 1, 6, 7, 9, 13, 21, 100, 2**31 - 1]
IR_VERSIONS = [0, 1, 3, 8, 100, 2**40]
# ../outside.fifo and link_fifo (→ it) are FIFOs without a writer: opening one to read blocks,
# so a tool that reads external data outside the folder hangs (the time limit reports it)
OUTSIDE = ["/etc/passwd", "../../etc/passwd", "../outside.bin", "/dev/zero", "link_out",
           "../outside.fifo", "link_fifo",
           "sub/../../outside.bin", "/proc/self/environ", "\u0000x"]
INSIDE = ["data.bin", "./data.bin", "", ".", "sub", "in.fifo"]
META = ['{"kind":"box","lower":-1.0,"upper":1.0}', '{"kind":"box","lower":NaN,"upper":1}',
        '{"kind":"box","lower":1,"upper":-1}', '{"kind":"linf","center":0,"eps":-1}',
        '{"kind":"l2","center":0,"radius":1e309}', '{"kind":"box","lower":[0,0],"upper":[1]}',
        '{"kind":"linf","center":0,"eps":0.1,"clip":[1,0]}', '[', '{}', '"box"', '1e999',
        '{"kind":"box","lower":-1,"upper":1,"shape":[2147483648]}', '{"kind":"zzz"}']


def _seeds() -> list[tuple[str, bytes]]:
    seeds = [("tiny_relu", corpus.tiny(0, "Relu").proto().SerializeToString()),
             ("tiny_tanh", corpus.tiny(1, "Tanh").proto().SerializeToString())]
    for p in corpus.shipped_small_models() + corpus.vnncomp_small_models():
        if _activation_entries(p) <= SEED_ENTRIES:
            seeds.append((p.name, p.read_bytes()))
    return seeds


# Seeds whose default analysis (CROWN on every node) stays well under the harness's hang
# limit (TIME_LIMIT_S): the small VGGs (65k–94k entries) take ~20 s of linear bounds on two
# loaded cores, which the harness would report as a hang. The CNNs and ResNets kept (up to
# 26k entries) exercise the same ops.
SEED_ENTRIES = 30_000


def _activation_entries(path) -> int:
    try:
        return sum(int(np.prod(n.shape)) for n in bp.load(path).nodes)
    except bp.BoundpropError:
        return 0


SEEDS = _seeds()


@st.composite
def onnx_inputs(draw, seeds=tuple(SEEDS)):
    """(seed name, mutation log, model bytes, outside): a seed after 1–3 mutations;
    ``outside`` when the model points at external data outside its folder."""
    # the tiny models most of the time: they are fast, and every mutation reaches the analysis
    name, data = draw(st.sampled_from(seeds[:2]) if draw(st.integers(0, 3)) else
                      st.sampled_from(seeds))
    m = onnx.ModelProto()
    m.ParseFromString(data)
    log, outside = [], False
    # a third of the inputs only change numbers and activations: valid models that reach the
    # analysis, for the onnxruntime soundness oracle
    kinds = sorted(BENIGN) if draw(st.integers(0, 2)) == 0 else sorted(MUTATIONS)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(kinds))
        log.append(what + ": " + str(MUTATIONS[what](draw, m)))
        outside |= what == "external" and log[-1].split(": ", 1)[1].startswith("out")
    out = m.SerializeToString()
    cut = draw(st.sampled_from(["", "", "", "", "", "truncate", "flip"]))
    if cut == "truncate":
        out = out[:draw(st.integers(0, len(out)))]
        log.append(f"truncate to {len(out)}")
    elif cut == "flip":
        i = draw(st.integers(0, max(len(out) - 1, 0)))
        out = out[:i] + bytes([out[i] ^ draw(st.integers(1, 255))]) + out[i + 1:] if out else out
        log.append(f"flip byte {i}")
    return name, log, out, outside


def _node(draw, m):
    g = m.graph
    if not g.node:
        return "no node"
    k = draw(st.integers(0, len(g.node) - 1))
    how = draw(st.sampled_from(["drop", "dup", "swap", "op", "input", "output", "arity"]))
    n = g.node[k]
    if how == "drop":
        del g.node[k]
    elif how == "dup":
        g.node.insert(k, n)
    elif how == "swap":
        j = draw(st.integers(0, len(g.node) - 1))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(g.node[k])
        b.CopyFrom(g.node[j])
        g.node[k].CopyFrom(b)
        g.node[j].CopyFrom(a)
    elif how == "op":
        n.op_type = draw(st.sampled_from(OPS))
    elif how in ("input", "output"):
        names = [v for nd in g.node for v in nd.output] + [i.name for i in g.input] + \
            ["", "nonexistent", g.output[0].name if g.output else "y"]
        field = n.input if how == "input" else n.output
        if field:
            field[draw(st.integers(0, len(field) - 1))] = draw(st.sampled_from(names))
    elif draw(st.booleans()) and n.input:
        del n.input[-1]
    else:
        n.input.append(draw(st.sampled_from([n.input[0] if n.input else "x", "", "zz"])))
    return f"{how} node {k} ({n.op_type})"


def _initializer(draw, m):
    g = m.graph
    if not g.initializer:
        return "no initializer"
    k = draw(st.integers(0, len(g.initializer) - 1))
    t = g.initializer[k]
    how = draw(st.sampled_from(["value", "raw_len", "dtype", "dims", "clear", "dup", "input"]))
    if how == "value":
        a = _array(t)
        if a is not None and a.size and a.dtype.kind == "f":
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(BAD_FLOATS))
            if draw(st.booleans()):
                a[...] = draw(st.sampled_from(BAD_FLOATS))
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    elif how == "raw_len":
        raw = t.raw_data or (a.tobytes() if (a := _array(t)) is not None else b"")
        t.ClearField("float_data")
        t.raw_data = raw[:draw(st.integers(0, len(raw)))] + b"\0" * draw(st.sampled_from([0, 1,
                                                                                           4]))
    elif how == "dtype":
        t.data_type = draw(st.sampled_from(DTYPES))
    elif how == "dims":
        i = draw(st.integers(0, max(len(t.dims) - 1, 0)))
        if t.dims and draw(st.booleans()):
            t.dims[i] = draw(st.sampled_from(BAD_DIMS))
        elif draw(st.booleans()):
            t.dims.append(draw(st.sampled_from(BAD_DIMS)))
        elif t.dims:
            del t.dims[i]
    elif how == "clear":
        t.ClearField("raw_data")
        t.ClearField("float_data")
    elif how == "dup":
        g.initializer.append(t)
    else:
        g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return f"{how} initializer {t.name}"


def _array(t: onnx.TensorProto) -> np.ndarray | None:
    """The values of an (already mutated) initializer, or None; never reads external data."""
    if t.data_location == TensorProto.EXTERNAL:
        return None
    try:
        return numpy_helper.to_array(t).copy()
    except Exception:  # noqa: BLE001 - a tensor earlier mutations broke
        return None


def _graph_input(draw, m):
    g = m.graph
    if not g.input:
        g.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]))
        return "added input"
    vi = g.input[0]
    how = draw(st.sampled_from(["dim", "param", "noshape", "dtype", "remove", "second"]))
    dims = vi.type.tensor_type.shape.dim
    if how == "dim" and dims:
        dims[draw(st.integers(0, len(dims) - 1))].dim_value = draw(st.sampled_from(BAD_DIMS))
    elif how == "param" and dims:
        dims[draw(st.integers(0, len(dims) - 1))].dim_param = "N"
    elif how == "noshape":
        vi.type.tensor_type.ClearField("shape")
    elif how == "dtype":
        vi.type.tensor_type.elem_type = draw(st.sampled_from(DTYPES))
    elif how == "remove":
        del g.input[0]
    else:
        g.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 3]))
    return f"{how} graph input"


def _attribute(draw, m):
    if not m.graph.node:
        return "no node"
    n = m.graph.node[draw(st.integers(0, len(m.graph.node) - 1))]
    name, value = draw(st.sampled_from(ATTRS)), draw(st.sampled_from(ATTR_VALUES))
    try:
        a = helper.make_attribute(name, value)
    except (ValueError, TypeError):
        return f"attribute {name}={value!r} not representable"
    for i, old in enumerate(n.attribute):
        if old.name == name:
            del n.attribute[i]
            break
    n.attribute.append(a)
    return f"{n.op_type}.{name}={value!r}"


def _opset(draw, m):
    how = draw(st.sampled_from(["version", "domain", "remove", "ir"]))
    if how == "version":
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = draw(st.sampled_from(OPSETS))
                return f"opset {o.version}"
    if how == "domain":
        m.opset_import.append(helper.make_opsetid(draw(st.sampled_from(
            ["ai.onnx.ml", "com.microsoft", "zz"])), draw(st.sampled_from(OPSETS))))
        return "extra domain"
    if how == "remove":
        del m.opset_import[:]
        return "no opset_import"
    m.ir_version = draw(st.sampled_from(IR_VERSIONS))
    return f"ir_version {m.ir_version}"


def _metadata(draw, m):
    for p in m.metadata_props:
        if p.key == "boundprop.input_set":
            p.value = draw(st.sampled_from(META))
            return p.value
    p = m.metadata_props.add()
    p.key, p.value = "boundprop.input_set", draw(st.sampled_from(META))
    return p.value


def _external(draw, m):
    """Point one initializer at external data, inside the folder (data.bin holds enough
    bytes) or outside it."""
    inits = list(m.graph.initializer)
    if not inits:
        return "inside: no initializer"
    t = m.graph.initializer[draw(st.integers(0, len(inits) - 1))]
    outside = draw(st.booleans())
    loc = draw(st.sampled_from(OUTSIDE if outside else INSIDE))
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for key, value in (("location", loc),
                       ("offset", str(draw(st.sampled_from([0, 0, 4, -1, 2**62])))),
                       ("length", str(draw(st.sampled_from([None, 0, 4 * _numel(t), -5,
                                                            2**62])))),
                       ("checksum", "0")):
        if value != "None":
            e = t.external_data.add()
            e.key, e.value = key, value
    return f"{'outside' if outside else 'inside'} {loc!r} {t.name}"


def _numel(t) -> int:
    n = 1
    for d in t.dims:
        n *= max(int(d), 0)
    return n


def _weights(draw, m):
    """Every float initializer redrawn: normal values at a scale from 1e-3 to 1e3."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 0.1, 1.0, 3.0, 30.0, 1e3]))
    for t in m.graph.initializer:
        a = _array(t)
        if a is not None and a.dtype == np.float32:
            t.CopyFrom(numpy_helper.from_array(
                (rng.standard_normal(a.shape) * scale).astype(np.float32), t.name))
    return f"weights ×{scale:g}"


SMOOTH = ["Relu", "Tanh", "Sigmoid", "Softplus", "Elu", "LeakyRelu", "Selu", "Softsign",
          "HardSigmoid", "Gelu", "Erf", "Abs", "Neg", "Identity", "Exp", "Sin"]


def _activation(draw, m):
    acts = [n for n in m.graph.node if n.op_type in SMOOTH]
    if not acts:
        return "no activation"
    n = acts[draw(st.integers(0, len(acts) - 1))]
    n.op_type = draw(st.sampled_from(SMOOTH))
    del n.attribute[:]
    if n.op_type == "Gelu" and draw(st.booleans()):
        n.attribute.append(helper.make_attribute("approximate", "tanh"))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx") and n.op_type == "Gelu":
            o.version = max(o.version, 20)
    return n.op_type


BENIGN = {"weights": _weights, "activation": _activation}
MUTATIONS = {**BENIGN, "node": _node, "initializer": _initializer, "graph_input": _graph_input,
             "attribute": _attribute, "opset": _opset, "metadata": _metadata,
             "external": _external}


def _prepare(folder: Path, data: bytes) -> Path:
    """A fresh model folder: model.onnx, a 64 KiB data.bin beside it, a sub folder, symlinks
    link_out → ../outside.bin and link_fifo → ../outside.fifo (outside the folder)."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "sub").mkdir(parents=True)
    (folder / "data.bin").write_bytes(np.arange(16384, dtype=np.float32).tobytes())
    outside = folder.parent / "outside.bin"
    outside.write_bytes(b"\1" * 65536)
    os.symlink(outside, folder / "link_out")
    fifo = folder.parent / "outside.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    os.symlink(fifo, folder / "link_fifo")
    os.mkfifo(folder / "in.fifo")
    path = folder / "model.onnx"
    path.write_bytes(data)
    return path


def _argv(which: int, path: Path) -> list[str]:
    return [["certify", str(path), "--box", "-1", "1", "--json"],
            ["certify", str(path), "--box", "-1", "1", "--method", "interval", "--quiet"],
            ["inspect", str(path), "--json"],
            ["certify", str(path), "--norm", "inf", "--json"]][which % 4]


def _onnxruntime_beats(path: Path, cert: dict, rng) -> str | None:
    """An onnxruntime output on the box [-1, 1] outside the certified bounds (beyond float32
    rounding), or None (also when onnxruntime cannot run the model)."""
    import onnxruntime as ort

    ob = cert.get("output_bounds")
    if not ob or cert.get("input_set", {}).get("kind") != "box":
        return None
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = cert["model"]["input_shape"]
        lo = np.asarray(cert["input_set"]["lower"], float).reshape(shape)
        hi = np.asarray(cert["input_set"]["upper"], float).reshape(shape)
        for _ in range(8):
            u = rng.uniform(0, 1, lo.shape)
            x = (lo + u * (hi - lo)).astype(np.float32)
            y = np.asarray(sess.run(None, {inp.name: x})[0], float).ravel()
            low, up = np.asarray(ob["lower"], float), np.asarray(ob["upper"], float)
            if y.shape != low.shape or not np.all(np.isfinite(y)):
                return None
            tol = 1e-4 * (1 + np.abs(y)) + 1e-5 * float(np.max(np.abs(np.r_[low, up]),
                                                              initial=0.0))
            if np.any(y > up + tol) or np.any(y < low - tol):
                i = int(np.argmax(np.maximum(y - up, low - y)))
                return f"output {i} = {y[i]!r} outside [{low[i]!r}, {up[i]!r}] at x={x.tolist()}"
    except Exception:  # noqa: BLE001 - onnxruntime refusing a hostile model is not our concern
        return None
    return None


def _check_outcome(x, path: Path, which: int, o) -> tuple[str | None, str]:
    name, log, data, outside = x
    kind = contract_violation(o)
    if kind:
        return kind, o.exception or o.err[-800:]
    if outside and o.code == 0:
        return "external data outside the folder accepted", o.out[-400:]
    if o.code == 0 and which in (0, 3) and o.out.strip():
        try:
            cert = json.loads(o.out)
        except ValueError:
            return "certify --json printed invalid JSON", o.out[-400:]
        beat = _onnxruntime_beats(path, cert, np.random.default_rng(len(data)))
        if beat:
            return "UNSOUND: onnxruntime output beats the certified bounds", beat
    return None, ""


@pytest.mark.parametrize("mode", MODES)
def test_onnx_mutations(mode, tmp_path):
    def prop(x):
        path = _prepare(tmp_path / "m", x[2])
        which = len(x[1]) + len(x[2])
        o = run_cli(_argv(which, path))
        return _check_outcome(x, path, which, o)

    fuzz("onnx_certify", mode, onnx_inputs(), prop, smoke=60)


@pytest.mark.parametrize("mode", MODES)
def test_onnx_mutations_subprocess(mode, tmp_path):
    def prop(x):
        path = _prepare(tmp_path / "m", x[2])
        which = len(x[1]) + len(x[2])
        o = run_cli_subprocess(_argv(which, path))
        return _check_outcome(x, path, which, o)

    # a child process costs ~3 s (Python + onnxruntime start-up): 1/50 of the campaign
    fuzz("onnx_subprocess", mode, onnx_inputs(), prop, smoke=3, scale=50)


def test_onnxruntime_oracle_can_fail(tmp_path):
    """The soundness oracle: a genuine certificate passes it; the same certificate with an
    upper bound below an attained output does not."""
    path = corpus.save_model(corpus.tiny(0).proto(), tmp_path / "m.onnx")
    cert = corpus.genuine_certificate(path)
    assert _onnxruntime_beats(path, cert, np.random.default_rng(0)) is None
    x = np.zeros((1, corpus.N_IN))
    y = corpus.tiny(0).forward(x).ravel()
    cert["input_set"]["lower"] = cert["input_set"]["upper"] = x.ravel().tolist()
    cert["output_bounds"]["upper"][0] = float(y[0]) - 1.0
    assert _onnxruntime_beats(path, cert, np.random.default_rng(0))
