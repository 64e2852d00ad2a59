"""Seed corpus, built at test time (nothing big is copied into the repository):

- tiny ONNX models made with ``onnx.helper`` (a 2-layer MLP with ReLU or tanh), whose exact
  function is known here independently of boundprop (:func:`mlp_forward`);
- the shipped models under ``models/`` (the small ones) and the shared VNN-COMP 2021 networks
  and properties, when ``../shared/vnncomp2021`` exists;
- genuine certificates made with ``bp.certify`` on the tiny models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import boundprop as bp
from tests.conftest import MODELS, VNNCOMP

N_IN, N_HIDDEN, N_OUT = 3, 4, 2
SMALL_MODEL_BYTES = 300_000
SMALL_VNNLIB_BYTES = 8_000


@dataclass
class Tiny:
    """A tiny MLP  f(x) = W2ᵀ act(W1ᵀ x + b1) + b2  for x of shape (1, N_IN)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    act: str = "Relu"

    def proto(self) -> onnx.ModelProto:
        nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
                 helper.make_node("Add", ["h", "b1"], ["h1"], name="add1"),
                 helper.make_node(self.act, ["h1"], ["a"], name="act"),
                 helper.make_node("MatMul", ["a", "W2"], ["h2"], name="mm2"),
                 helper.make_node("Add", ["h2", "b2"], ["y"], name="add2")]
        inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in
                 (("W1", self.w1), ("b1", self.b1), ("W2", self.w2), ("b2", self.b2))]
        g = helper.make_graph(
            nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N_IN])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N_OUT])], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="boundprop-fuzz")
        m.ir_version = 8
        return m

    def forward(self, x: np.ndarray) -> np.ndarray:
        """f at the rows of x (n, N_IN), in float64 with the float32 weights the file holds."""
        w1, b1, w2, b2 = (v.astype(np.float32).astype(np.float64)
                          for v in (self.w1, self.b1, self.w2, self.b2))
        h = x @ w1 + b1
        a = np.maximum(h, 0.0) if self.act == "Relu" else np.tanh(h)
        return a @ w2 + b2


def tiny(seed: int = 0, act: str = "Relu") -> Tiny:
    rng = np.random.default_rng(seed)
    return Tiny(rng.standard_normal((N_IN, N_HIDDEN)), rng.standard_normal(N_HIDDEN),
                rng.standard_normal((N_HIDDEN, N_OUT)), rng.standard_normal(N_OUT), act)


def save_model(m: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


def genuine_certificate(model_path: Path, kind: str = "box", norm: str = "2") -> dict:
    """A certificate boundprop makes for the model at ``model_path`` (tiny-MLP input shape)."""
    net = bp.load(model_path)
    if kind == "box":
        s = bp.Box(-np.ones((1, N_IN)), np.ones((1, N_IN)))
    elif kind == "linf":
        s = bp.LinfBall(np.full((1, N_IN), 0.25), 0.5)
    elif kind == "l2":
        s = bp.L2Ball(np.full((1, N_IN), -0.25), 0.75)
    else:
        s = None
    return bp.certify(net, s, norm=norm).to_json()


def shipped_small_models() -> list[Path]:
    return [p for p in sorted(MODELS.glob("*.onnx")) if p.stat().st_size <= SMALL_MODEL_BYTES]


def vnncomp_small_models() -> list[Path]:
    if not VNNCOMP.is_dir():
        return []
    return [p for p in sorted(VNNCOMP.rglob("*.onnx")) if p.stat().st_size <= SMALL_MODEL_BYTES]


def vnnlib_seed(n_in: int = N_IN, n_out: int = N_OUT) -> str:
    """A small well-formed property: the unit box and one disjunction over the outputs."""
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i in range(n_in):
        lines += [f"(assert (<= X_{i} 1.0))", f"(assert (>= X_{i} -1.0))"]
    lines.append("(assert (or (and (<= Y_0 Y_1)) (and (>= Y_0 0.5) (<= Y_1 -0.25))))")
    return "\n".join(lines) + "\n"


_DECL = re.compile(r"declare-const\s+([XY])_(\d+)")


def vnnlib_dims(text: str) -> tuple[int, int]:
    """(inputs, outputs) a property declares: one past the largest X_i / Y_j index."""
    n = {"X": 0, "Y": 0}
    for letter, idx in _DECL.findall(text):
        n[letter] = max(n[letter], int(idx) + 1)
    return n["X"], n["Y"]


def vnnlib_seeds() -> list[tuple[str, str, int, int]]:
    """(name, text, n_in, n_out): the built-in seed and the small shared VNN-LIB files."""
    seeds = [("builtin", vnnlib_seed(), N_IN, N_OUT)]
    if VNNCOMP.is_dir():
        for p in sorted(VNNCOMP.rglob("*.vnnlib")):
            if p.stat().st_size <= SMALL_VNNLIB_BYTES:
                text = p.read_text()
                seeds.append((str(p.relative_to(VNNCOMP)), text, *vnnlib_dims(text)))
    return seeds
