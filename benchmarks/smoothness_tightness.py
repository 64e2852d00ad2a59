"""Tightness of the certified smoothness constant L: the composed bound (layer by layer) and
the curvature method (per-neuron second-order chain rule, ``smoothness_curvature``) against
empirical lower bounds: the audit's (second and mixed differences of the IR, ``boundprop
audit``) and, for inputs of at most 16 entries, the sup over directions of finite-difference
Hessians of the IR at 400 points (uniform and corners: ``hessian``); the ratio uses the larger.
Models: the smooth MLPs of models/ (each on its declared input set) and, if present, the ERAN
sigmoid 6×200 net on the ε = 0.012 box of spec 7167 (vector output, and the margin y₁ − y₀ of
anchors §4.5).

    python benchmarks/smoothness_tightness.py [--norm 2] [--samples 2000] [--eran DIR]
Writes benchmarks/results/smoothness_tightness_<norm>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.audit import audit
from boundprop.sets import default_input_set
from boundprop.vnnlib import load_vnnlib

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mlp_sigmoid", "mlp_tanh", "mlp_softplus", "mlp_gelu", "mlp_gelu_erf", "mlp_elu",
          "torch_mlp_gelu_dynamo", "sklearn_mlp_regressor"]
ERAN_NET = "ffnnSIGMOID__Point_6x200.onnx"
ERAN_SPEC = "mnist_spec_idx_7167_eps_0.01200.vnnlib"


def margin_model(src: Path, dst: Path, label: int = 1, other: int = 0) -> Path:
    """The ONNX model with y_label − y_other as its single output (a MatMul appended)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(src))
    out = m.graph.output[0]
    k = out.type.tensor_type.shape.dim[-1].dim_value
    c = np.zeros((k, 1), np.float32)
    c[label, 0], c[other, 0] = 1.0, -1.0
    m.graph.initializer.append(numpy_helper.from_array(c, "margin_c"))
    m.graph.node.append(helper.make_node("MatMul", [out.name, "margin_c"], ["margin"]))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("margin", TensorProto.FLOAT, [1, 1]))
    onnx.save(m, str(dst))
    return dst


def hessian_lower(net, s, norm: str, rng, n: int = 200, h: float = 1e-3) -> float | None:
    """max over sampled x (uniform and box corners) of sup ‖D²y(x)[u, v]‖_p over unit u, v
    (exact for p = 1, ∞ from the Hessians; p = 2 by an ascent over the output weights), the
    Hessians by central second differences of the IR; None for inputs over 16 entries."""
    shape = net.input_shape
    m = int(np.prod(shape))
    if m > 16 or not hasattr(s, "lower"):
        return None
    xs = np.concatenate([s.sample(n, rng), np.where(rng.random((n, *shape)) < 0.5, s.lower,
                                                    s.upper)])
    eye = np.eye(m).reshape(m, *shape) * h
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * m)).reshape(m, -1).T
    best = 0.0
    for x in xs:
        pts = np.concatenate([x + eye[:, None] + sg * eye[None] for sg in (1, -1)] +
                             [x - eye[:, None] + sg * eye[None] for sg in (1, -1)])
        f = net(pts.reshape(-1, *shape)).reshape(4, m, m, -1)
        hk = np.moveaxis((f[0] - f[1] - f[2] + f[3]) / (4 * h * h), 2, 0)
        hk = 0.5 * (hk + hk.transpose(0, 2, 1))
        if norm == "1":
            best = max(best, float(np.abs(hk).sum(axis=0).max()))
        elif norm == "inf":
            best = max(best, float(np.abs(np.einsum("kij,sj->ksi", hk, signs)).sum(2).max()))
        else:
            for w in np.eye(len(hk)):
                for _ in range(10):
                    u, sv, vt = np.linalg.svd(np.einsum("k,kij->ij", w, hk))
                    best = max(best, float(sv[0]))
                    z = np.einsum("i,kij,j->k", u[:, 0], hk, vt[0])
                    if not np.linalg.norm(z):
                        break
                    w = z / np.linalg.norm(z)
    return best


def row(name: str, path: Path, s, norm: str, samples: int) -> dict:
    net = bp.load(path)
    t0 = time.perf_counter()
    cert = bp.certify(net, s, norm=norm)
    dt = time.perf_counter() - t0
    c = cert.constants
    emp_audit = audit(cert, path, samples=samples).row("smoothness").empirical
    emp_hess = hessian_lower(net, s, norm, np.random.default_rng(0))
    emp = max(emp_audit, emp_hess or 0.0)
    composed = c.layers[net.output].smoothness
    curv = c.smoothness_curvature
    return {"model": name, "norm": norm, "composed": composed, "curvature": curv,
            "certified": c.smoothness, "empirical": emp, "audit": emp_audit,
            "hessian": emp_hess, "seconds": dt,
            "composed_ratio": composed / emp if emp else None,
            "curvature_ratio": curv / emp if emp and curv is not None else None,
            "note": c.curvature_note}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--norm", default="2", choices=["2", "inf", "1"])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--eran", default="/tmp/eran", help="folder with the ERAN sigmoid net")
    args = ap.parse_args()
    rows = []
    for name in MODELS:
        path = ROOT / "models" / f"{name}.onnx"
        rows.append(row(name, path, default_input_set(bp.load(path)), args.norm, args.samples))
        print(rows[-1], flush=True)
    eran = Path(args.eran)
    if (eran / ERAN_NET).exists() and (eran / ERAN_SPEC).exists():
        box = load_vnnlib(eran / ERAN_SPEC, 784, 10).boxes[0]
        s = bp.Box(box.lower.reshape(1, 1, 28, 28), box.upper.reshape(1, 1, 28, 28))
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(row("eran_sigmoid_6x200", eran / ERAN_NET, s, args.norm, 200))
            m = margin_model(eran / ERAN_NET, Path(tmp) / "margin.onnx")
            rows.append(row("eran_sigmoid_6x200 margin y1-y0", m, s, args.norm, 200))
    print(f"{'model':<34} {'composed':>10} {'curvature':>10} {'empirical':>10} "
          f"{'comp/emp':>9} {'curv/emp':>9} {'s':>5}")
    for r in rows:
        cr = "-" if r["curvature_ratio"] is None else f"{r['curvature_ratio']:9.3g}"
        cv = "-" if r["curvature"] is None else f"{r['curvature']:10.4g}"
        print(f"{r['model']:<34} {r['composed']:>10.4g} {cv:>10} {r['empirical']:>10.4g} "
              f"{r['composed_ratio']:>9.3g} {cr:>9} {r['seconds']:>5.1f}")
    out = ROOT / "benchmarks" / "results" / f"smoothness_tightness_{args.norm}.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
