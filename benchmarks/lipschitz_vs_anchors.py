"""Local Lipschitz constants on the anchors' instances (issue 15; anchors §5.4): certified upper
bounds (boundprop.lipschitz.local_lipschitz, and the old ``bp.certify(...).lipschitz``) against
the best lower bound found (boundprop.audit.jacobian_search) and auto_LiRPA's Jacobian bound.

    python benchmarks/lipschitz_vs_anchors.py [--no-lirpa] [--rerun-lirpa] [--eran-dir DIR]
                                              [--budget S] [--lirpa-python PATH] [--timeout S]

Instances (the ℓ∞ Lipschitz constant here is max_i sup_{x∈box} ‖∇f_i(x)‖₁, i.e. the ℓ∞→ℓ∞
operator norm of the Clarke Jacobian; ℓ2: sup_{x∈box} ‖J(x)‖₂):

* mnist-net_256x2, prop_0 at ε = 0.03 and 0.05; ACAS Xu 1_1, prop_1 box (../shared/vnncomp2021);
* ERAN ffnnSIGMOID__Point_6x200, spec 7167 ε = 0.012, from ``--eran-dir`` (else $BOUNDPROP_ERAN_DIR,
  else /tmp/eran); skipped when its files are absent. Its smoothness L (sup ‖∇²f‖ over the box,
  ℓ2) is reported too: the certified value from ``bp.certify`` and a lower bound from second
  differences of the float64 IR at the search's points.

Columns: the best lower bound (a value ‖J(x)‖ with J the exact Jacobian of the float64 IR at a
point x of the box, re-checked by a central difference quotient) and its search time; the
certified value of ``local_lipschitz`` ("n/a" until that engine is on this branch) and its
time; certified / lower; auto_LiRPA's value and time (ℓ∞ only; auto_LiRPA has no ℓ2 Jacobian
norm); the old boundprop value ``bp.certify(net, box, norm=...).lipschitz``.

auto_LiRPA is benchmark-only: it runs in its own venv (``--lirpa-python``, else
$BOUNDPROP_LIRPA_PYTHON, else /work/lirpa-venv/bin/python; how to build it: the docstring of
benchmarks/vs_auto_lirpa.py) through benchmarks/_lirpa_jacobian_side.py, one subprocess per
instance. The network is handed over as its chain of dense layers (extracted from boundprop's IR,
input normalisation folded into the first layer), in float64, with 2 torch threads. Its results
are cached in benchmarks/results/lipschitz_vs_anchors_lirpa.json (keyed by instance and a hash of
the layers and box): a rerun reuses them unless ``--rerun-lirpa``; ``--no-lirpa`` leaves its
columns to the cache only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's boundprop

import boundprop as bp  # noqa: E402
from boundprop.audit.jacobian_search import jacobian_norm_lower  # noqa: E402
from boundprop.vnnlib import load_vnnlib  # noqa: E402

try:
    from boundprop.lipschitz import local_lipschitz  # the certified engine (issue 15)
except ImportError:
    local_lipschitz = None

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"
HERE = Path(__file__).resolve().parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "lipschitz_vs_anchors"
CACHE = RESULTS / "lipschitz_vs_anchors_lirpa.json"
DEFAULT_VENV = "/work/lirpa-venv/bin/python"
DEFAULT_ERAN = "/tmp/eran"
# (name, onnx, vnnlib, where): where = "vnn" (the shared folder) or "eran" (--eran-dir)
INSTANCES = [
    ("mnist-net_256x2 prop_0 eps=0.03", "mnistfc/mnist-net_256x2.onnx",
     "mnistfc/prop_0_0.03.vnnlib", "vnn"),
    ("mnist-net_256x2 prop_0 eps=0.05", "mnistfc/mnist-net_256x2.onnx",
     "mnistfc/prop_0_0.05.vnnlib", "vnn"),
    ("ACAS Xu 1_1 prop_1", "acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/prop_1.vnnlib",
     "vnn"),
    ("ERAN sigmoid 6x200 spec 7167 eps=0.012", "ffnnSIGMOID__Point_6x200.onnx",
     "mnist_spec_idx_7167_eps_0.01200.vnnlib", "eran"),
]
# anchors §5.4: sampled lower bound and auto_LiRPA (0.7.1, float64) as measured there
ANCHORS = {
    "mnist-net_256x2 prop_0 eps=0.03": dict(sampled=7.08, lirpa=384.8, lirpa_s=9.1, old=413.9),
    "mnist-net_256x2 prop_0 eps=0.05": dict(sampled=20.84, lirpa=781.3, lirpa_s=10.3, old=785.7),
    "ACAS Xu 1_1 prop_1": dict(sampled=1.26, lirpa=277154.0, lirpa_s=9.3, old=2362844.0),
    "ERAN sigmoid 6x200 spec 7167 eps=0.012": dict(sampled=91.1, lirpa=563482.0, lirpa_s=156.8,
                                                   old=2134250.0),
}
ACTS = {"Relu", "Sigmoid", "Tanh"}


def load_instance(onnx_path: Path, vnnlib_path: Path):
    """(net, box shaped as the net's input)."""
    net = bp.load(onnx_path)
    shape = tuple(net.input_shape)
    n_in, n_out = int(np.prod(shape)), int(np.prod(net.output_shape))
    b = load_vnnlib(vnnlib_path, n_in, n_out).boxes[0]
    lo = np.asarray(b.lower, float).reshape(shape)
    hi = np.asarray(b.upper, float).reshape(shape)
    return net, bp.Box(lo, hi)


def dense_chain(net):
    """The network as [(W, b, activation after it or None)], each affine stretch of the IR
    (scale-shift, reshape, dense…) collapsed into one (W, b) by evaluating it at 0 and at the
    unit vectors. Raises ValueError on a graph that is not a chain of affine ops and
    ReLU/sigmoid/tanh."""
    nodes = net.nodes
    for k, n in enumerate(nodes[1:], 1):
        if list(n.inputs) != [k - 1]:
            raise ValueError("not a chain")
    out, seg, shape = [], [], tuple(nodes[0].shape)

    def close(act):
        n_in = int(np.prod(shape))
        X = np.concatenate([np.zeros((1, n_in)), np.eye(n_in)]).reshape(n_in + 1, *shape)
        for op in seg:
            X = op.evaluate(X)
        Y = X.reshape(n_in + 1, -1)
        out.append((np.ascontiguousarray((Y[1:] - Y[0]).T), Y[0].copy(), act))

    for n in nodes[1:]:
        if n.op.kind in ACTS:
            close(n.op.kind)
            seg, shape = [], tuple(n.shape)
        elif getattr(n.op, "family", "") == "activation":
            raise ValueError(f"activation {n.op.kind} not handled")
        else:
            seg.append(n.op)
    close(None)
    return out


def lirpa_case(tmp: Path, net, box) -> tuple[Path, str]:
    """The npz for _lirpa_jacobian_side.py and the cache key (sha256 of layers and box)."""
    chain = dense_chain(net)
    lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
    x0 = (lo + hi) / 2
    arrs = dict(lo=lo, hi=hi, x0=x0, y0=net(x0.reshape(net.input_shape)).reshape(-1),
                acts=np.array([a for _, _, a in chain[:-1]]), dtype=np.array("float64"))
    h = hashlib.sha256()
    for k, (W, b, _) in enumerate(chain):
        arrs[f"W{k}"], arrs[f"b{k}"] = W, b
        h.update(W.tobytes() + b.tobytes())
    h.update(lo.tobytes() + hi.tobytes())
    path = tmp / "case.npz"
    np.savez(path, **arrs)
    return path, h.hexdigest()[:16]


def run_lirpa(py: str, case: Path, timeout: float) -> dict:
    out = case.with_suffix(".json")
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    try:
        p = subprocess.run([py, str(HERE / "_lirpa_jacobian_side.py"), str(case), str(out)],
                           capture_output=True, text=True, timeout=timeout)
        err = (p.stderr.strip().splitlines() or ["?"])[-1][:200] if p.returncode else None
    except subprocess.TimeoutExpired:
        err = f"timeout ({timeout:g} s)"
    res = json.loads(out.read_text()) if out.exists() else {}
    res["wall_s"] = time.perf_counter() - t
    if err:
        res["error"] = err
    return res
