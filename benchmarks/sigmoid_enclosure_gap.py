"""Why the local Lipschitz bound of the ERAN sigmoid 6×200 net stays near 3e5 (issue 15): a
diagnostic of where the looseness sits — the intermediate enclosures, not the Jacobian
propagation.

1. The certified ℓ∞ Jacobian bound (max_i sup ‖∇f_i‖₁ by ``JacobianBounds`` at the root) on
   the CROWN enclosures of ``output_bounds(method="linear")``.
2. The same propagation on **unsound** enclosures — the ranges of N sampled points (uniform and
   corners of the box), widened by a share f of CROWN's width — to show what tighter
   enclosures would give (a diagnostic only: no value here is a bound).
3. Per layer, for K random neurons, the range a projected-gradient search reaches (max and min
   of z over the box, 3 starts, 60 sign steps: true values, so a lower bound on the range)
   against CROWN's width.

    python benchmarks/sigmoid_enclosure_gap.py [--eran-dir DIR] [--samples N] [--neurons K]
Writes benchmarks/results/sigmoid_enclosure_gap.json. Needs ffnnSIGMOID__Point_6x200.onnx and
mnist_spec_idx_7167_eps_0.01200.vnnlib in DIR (default $BOUNDPROP_ERAN_DIR, else /tmp/eran).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from lipschitz_vs_anchors import dense_chain  # run as a script: benchmarks/ is on sys.path

import boundprop as bp
from boundprop.analysis import output_bounds
from boundprop.domains.jacobian_linear import JacobianBounds, domain_norm_upper
from boundprop.sets import Box
from boundprop.vnnlib import load_vnnlib

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "sigmoid_enclosure_gap.json"
MODEL, SPEC = "ffnnSIGMOID__Point_6x200.onnx", "mnist_spec_idx_7167_eps_0.01200.vnnlib"


def jacobian_bound(net, layers) -> float:
    """max_i sup ‖∇f_i‖₁ by Jacobian back-substitution on the given enclosures."""
    rb = JacobianBounds(net, [(lo[None], hi[None]) for lo, hi in layers], "inf").output_rows()
    return float(domain_norm_upper(rb, 1, "inf")[0])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


def pgd_range(chain, layer: int, j: int, lo: np.ndarray, hi: np.ndarray, rng,
              starts: int = 3, steps: int = 60) -> tuple[float, float]:
    """(min, max) of pre-activation j of dense layer ``layer`` over the box, as reached by
    signed-gradient steps from the centre and random points (float64 forward and reverse
    passes of the dense chain: values at points of the box, so inside the true range)."""
    def forward(x):
        zs, h = [], x
        for w, b, act in chain[:layer + 1]:
            z = w @ h + b
            zs.append(z)
            h = sigmoid(z) if act else z
        return zs

    def grad(x):
        zs = forward(x)
        g = np.zeros(chain[layer][0].shape[0])
        g[j] = 1.0
        for m in range(layer, -1, -1):
            gh = chain[m][0].T @ g
            if m == 0:
                return gh
            s = sigmoid(zs[m - 1])
            g = gh * s * (1 - s)

    found = []
    for sign in (1.0, -1.0):
        vals = []
        for s in range(starts):
            x = 0.5 * (lo + hi) if s == 0 else rng.uniform(lo, hi)
            for it in range(steps):
                x = np.clip(x + sign * (hi - lo) * 0.25 * np.sign(grad(x)) * 0.95**it, lo, hi)
            vals.append(forward(x)[layer][j])
        found.append(max(vals) if sign > 0 else min(vals))
    return found[1], found[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eran-dir", default=os.environ.get("BOUNDPROP_ERAN_DIR", "/tmp/eran"))
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--neurons", type=int, default=8)
    args = ap.parse_args()
    d = Path(args.eran_dir)
    if not (d / MODEL).exists():
        raise SystemExit(f"{d / MODEL} not found: give --eran-dir")
    t0 = time.perf_counter()
    net = bp.load(d / MODEL)
    shape = tuple(net.input_shape)
    n_in, n_out = int(np.prod(shape)), int(np.prod(net.output_shape))
    b = load_vnnlib(d / SPEC, n_in, n_out).boxes[0]
    lo, hi = np.asarray(b.lower, float), np.asarray(b.upper, float)
    crown = [(np.asarray(a), np.asarray(c)) for a, c in
             output_bounds(net, Box(lo.reshape(shape), hi.reshape(shape))).layers]
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(lo, hi, (args.samples, n_in)),
                         np.where(rng.random((args.samples, n_in)) < 0.5, lo, hi)])
    vals = net.evaluate_all(xs.reshape(-1, *shape))
    doc = {"crown_jacobian_bound": jacobian_bound(net, crown), "unsound_sampled": {}}
    for f in (0.0, 0.1, 0.3):
        layers = [crown[0]] + [
            (np.maximum(a, v.min(0).reshape(a.shape) - f * (c - a)),
             np.minimum(c, v.max(0).reshape(a.shape) + f * (c - a)))
            for (a, c), v in zip(crown[1:], vals[1:])]
        doc["unsound_sampled"][str(f)] = jacobian_bound(net, layers)
        print(f"sampled ranges + {f:.0%} of CROWN's width (UNSOUND): "
              f"{doc['unsound_sampled'][str(f)]:.4g}", flush=True)
    print(f"CROWN enclosures (certified): {doc['crown_jacobian_bound']:.4g}")
    doc["pgd_range_over_crown_width"] = {}
    chain = dense_chain(net)
    dense_nodes = [k for k, n in enumerate(net.nodes) if n.op.kind == "dense"]
    for layer, k in enumerate(dense_nodes):
        a, c = (x.reshape(-1) for x in crown[k])
        ratios = []
        for j in rng.choice(a.size, min(args.neurons, a.size), replace=False):
            zmin, zmax = pgd_range(chain, layer, int(j), lo, hi, rng)
            ratios.append((zmax - zmin) / (c[j] - a[j]))
        doc["pgd_range_over_crown_width"][f"layer {layer + 1}"] = {
            "mean": float(np.mean(ratios)), "min": float(np.min(ratios)),
            "max": float(np.max(ratios))}
        print(f"layer {layer + 1}: PGD range / CROWN width mean {np.mean(ratios):.3f} "
              f"(min {np.min(ratios):.3f}, max {np.max(ratios):.3f})", flush=True)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
