"""Speed of the constants (issue 4 targets), measured in one run against onnxruntime forwards:

1. local ℓ, L, B (all three norms) of models/mlp_784_100_100_10_relu.onnx on its declared set
   (target: < 1 s each);
2. global ℓ2 of a torch-exported VGG16 at 224×224 (target: < 2 minutes on 2 cores), from
   benchmarks/_work/vgg16_torchscript.onnx (written by benchmarks/vgg16_import.py; skipped if
   absent).

    python benchmarks/constants_speed.py [--skip-vgg]
Writes benchmarks/results/constants_speed.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.runtime import OrtModel
from boundprop.sets import default_input_set

ROOT = Path(__file__).resolve().parent.parent


def ort_forward_s(path: Path, shape, repeat: int = 5) -> float:
    m = OrtModel(str(path))
    x = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    m(x)
    t0 = time.perf_counter()
    for _ in range(repeat):
        m(x)
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-vgg", action="store_true")
    args = ap.parse_args()
    out: dict = {}
    path = ROOT / "models" / "mlp_784_100_100_10_relu.onnx"
    net = bp.load(path)
    s = default_input_set(net)
    fwd = ort_forward_s(path, net.input_shape[1:] if net.input_shape[0] == 1 else
                        net.input_shape)
    rows = []
    for norm in ("2", "inf", "1"):
        bp.constants(net, s, norm)  # warm-up (imports)
        t0 = time.perf_counter()
        c = bp.constants(net, s, norm)
        dt = time.perf_counter() - t0
        rows.append({"norm": norm, "seconds": dt, "lipschitz": c.lipschitz,
                     "lipschitz_product": c.lipschitz_product,
                     "lipschitz_enclosure": c.lipschitz_enclosure, "bound": c.bound,
                     "ratio_to_ort_forward": dt / fwd})
        print(f"mlp_784_100_100_10 local norm {norm}: {dt:.3f} s "
              f"(ℓ {c.lipschitz:.4g}; {dt / fwd:.0f}× an ORT forward of {fwd * 1e6:.0f} µs)")
    out["mlp_local"] = rows
    vgg = ROOT / "benchmarks" / "_work" / "vgg16_torchscript.onnx"
    if not args.skip_vgg and vgg.exists():
        t0 = time.perf_counter()
        net = bp.load(vgg)
        t_load = time.perf_counter() - t0
        fwd = ort_forward_s(vgg, net.input_shape[1:] if net.input_shape[0] == 1 else
                            net.input_shape, repeat=2)
        t0 = time.perf_counter()
        c = bp.constants(net, None, "2", enclosure=False, symbolic=False)
        dt = time.perf_counter() - t0
        per_layer = [{"node": lc.node, "op": lc.op, "op_lipschitz": lc.op_lipschitz}
                     for lc in c.layers if lc.family in ("affine", "pooling")]
        out["vgg16_global_l2"] = {"load_s": t_load, "seconds": dt, "lipschitz": c.lipschitz,
                                  "ort_forward_s": fwd, "ratio_to_ort_forward": dt / fwd,
                                  "layers": per_layer}
        print(f"VGG16 global ℓ2: {dt:.1f} s (load {t_load:.1f} s; {dt / fwd:.0f}× an ORT "
              f"forward), ℓ ≤ {c.lipschitz:.4g}")
    elif not args.skip_vgg:
        print(f"VGG16 skipped: {vgg} absent (run benchmarks/vgg16_import.py first)")
    res = ROOT / "benchmarks" / "results" / "constants_speed.json"
    res.write_text(json.dumps(out, indent=1))
    print(f"wrote {res}")


if __name__ == "__main__":
    main()
