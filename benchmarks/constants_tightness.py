"""Tightness of the certified local Lipschitz constants: certified ℓ / empirical lower bound,
for the layer-product method and the Jacobian-enclosure method, on the MLPs and CNNs of
models/ (each on its declared input set).

Empirical lower bound (a true lower bound on the local ℓ, up to finite-difference error): the
largest ‖J(x)‖_p of central-difference Jacobians over sampled points of the set, then a
random-search ascent (accept a move of x inside the set if it increases ‖J(x)‖_p).

    python benchmarks/constants_tightness.py [--norm 2]
Writes benchmarks/results/constants_tightness_<norm>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.sets import Box, InputSetError, default_input_set

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mlp_relu", "mlp_sigmoid", "mlp_tanh", "mlp_softplus", "mlp_gelu",
          "mlp_784_100_100_10_relu", "lenet", "torch_cnn_torchscript", "vgg_small_smooth",
          "vgg_small_relu", "resnet_block"]
ORD = {"2": 2, "inf": np.inf, "1": 1}


def jac_norm(net, x, norm, h=1e-6) -> float:
    n = int(np.prod(net.input_shape))
    eye = np.eye(n).reshape(n, *net.input_shape)
    cols = []
    for k in range(0, n, 512):
        e = eye[k:k + 512]
        cols.append(((net(x[None] + h * e) - net(x[None] - h * e)) / (2 * h)).reshape(len(e),
                                                                                    -1))
    return float(np.linalg.norm(np.concatenate(cols).T, ord=ORD[norm]))


def empirical(net, s, norm, rng, samples=20, steps=20) -> float:
    xs = s.sample(samples, rng)
    vals = [jac_norm(net, x, norm) for x in xs]
    best_x, best = xs[int(np.argmax(vals))], max(vals)
    width = s.upper - s.lower
    for k in range(steps):
        step = 0.5 ** (k // 5 + 1) * width * rng.choice([-1.0, 1.0], size=width.shape)
        cand = np.clip(best_x + step * (rng.random(width.shape) < 0.3), s.lower, s.upper)
        v = jac_norm(net, cand, norm)
        if v > best:
            best, best_x = v, cand
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--norm", default="2", choices=["2", "inf", "1"])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'model':<26} {'product':>10} {'enclosure':>10} {'empirical':>10} "
          f"{'prod/emp':>9} {'encl/emp':>9} {'time s':>7}")
    for name in MODELS:
        net = bp.load(ROOT / "models" / f"{name}.onnx")
        try:
            s = default_input_set(net)
        except InputSetError:
            s = Box(np.zeros(net.input_shape), np.ones(net.input_shape))
        t0 = time.perf_counter()
        c = bp.constants(net, s, args.norm)
        dt = time.perf_counter() - t0
        emp = empirical(net, s, args.norm, rng)
        enc = c.lipschitz_enclosure
        row = {"model": name, "product": c.lipschitz_product, "enclosure": enc,
               "empirical": emp, "seconds": dt}
        rows.append(row)
        encr = "-" if enc is None else f"{enc / emp:9.3g}"
        print(f"{name:<26} {c.lipschitz_product:>10.4g} "
              f"{'-' if enc is None else f'{enc:.4g}':>10} {emp:>10.4g} "
              f"{c.lipschitz_product / emp:>9.3g} {encr:>9} {dt:>7.2f}")
    out = ROOT / "benchmarks" / "results" / f"constants_tightness_{args.norm}.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
