"""Tightness and speed of certified output bounds: interval vs linear, against the empirical
range (max − min over samples) of each output, on the shipped MLPs/CNNs and the VNN-COMP nets.

    python benchmarks/bounds_tightness.py [--samples 10000] [--json OUT.json]

Columns: mean certified width / mean empirical width (the ratio: 1 is exact), milliseconds per
method (median of 3 runs), and the linear/interval width ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.analysis import output_bounds
from boundprop.sets import Box, InputSetError, default_input_set

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mlp_784_100_100_10_relu", "mlp_relu", "mlp_sigmoid", "mlp_tanh", "mlp_gelu",
          "mlp_softplus", "lenet", "resnet_block", "vgg_small_relu", "vgg_small_smooth"]
VNN = ["acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "mnistfc/mnist-net_256x2.onnx",
       "oval21/cifar_base_kw.onnx", "cifar10_resnet/resnet_2b.onnx",
       "verivital/Convnet_maxpool.onnx"]


def median_time(fn, repeat=3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/bounds_tightness.json"))
    args = ap.parse_args()
    paths = [ROOT / "models" / f"{m}.onnx" for m in MODELS]
    vnn = ROOT.parent / "shared" / "vnncomp2021"
    paths += [vnn / p for p in VNN if (vnn / p).exists()]
    rows = []
    print("| model | input set | interval / empirical | linear / empirical | linear / interval "
          "| interval ms | linear ms |")
    print("|---|---|---|---|---|---|---|")
    for p in paths:
        net = bp.load(p)
        try:
            s = default_input_set(net)
        except InputSetError:
            s = Box(np.zeros(net.input_shape), np.ones(net.input_shape))
        x = s.sample(args.samples, np.random.default_rng(0))
        y = net(x).reshape(len(x), -1)
        emp = float(np.mean(y.max(0) - y.min(0)))
        t_i, bi = median_time(lambda net=net, s=s: output_bounds(net, s, "interval"))
        t_l, bl = median_time(lambda net=net, s=s: output_bounds(net, s, "linear"))
        wi, wl = float(np.mean(bi.width)), float(np.mean(bl.width))
        kind = s.to_json()["kind"]
        row = {"model": p.name, "set": kind, "empirical_width": emp, "interval_width": wi,
               "linear_width": wl, "interval_ms": 1e3 * t_i, "linear_ms": 1e3 * t_l}
        rows.append(row)
        print(f"| {p.name} | {kind} | {wi / emp:.3g} | {wl / emp:.3g} | {wl / wi:.3g} | "
              f"{1e3 * t_i:.1f} | {1e3 * t_l:.1f} |", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
