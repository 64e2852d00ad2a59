"""Verdicts of ``bp.verify`` on the VNN-COMP 2021 instances in ../shared/vnncomp2021/.

    python benchmarks/vnncomp_verdicts.py [--method linear|interval] [--timeout 30]

Every "falsified" carries a counterexample confirmed by onnxruntime; every "verified" is also
checked here against 2,000 onnxruntime samples of the box (a violation would be a soundness bug).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.runtime import OrtModel

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"

INSTANCES = [
    ("test/test_nano.onnx", "test/test_nano.vnnlib"),
    ("test/test_tiny.onnx", "test/test_tiny.vnnlib"),
    ("test/test_small.onnx", "test/test_small.vnnlib"),
    ("test/test_sat.onnx", "test/test_prop.vnnlib"),
    ("test/test_unsat.onnx", "test/test_prop.vnnlib"),
] + [(f"acasxu/ACASXU_run2a_{n}_batch_2000.onnx", f"acasxu/prop_{p}.vnnlib")
     for n in ("1_1", "1_2", "2_1") for p in (1, 2, 3, 4)] + [
    ("mnistfc/mnist-net_256x2.onnx", f"mnistfc/{v}") for v in
    ("prop_0_0.03.vnnlib", "prop_0_0.05.vnnlib", "prop_10_0.03.vnnlib")] + [
    ("verivital/Convnet_maxpool.onnx", f"verivital/specs/maxpool_specs/{v}") for v in
    ("prop_0_0.004.vnnlib", "prop_10_0.004.vnnlib")] + [
    ("oval21/cifar_base_kw.onnx", f"oval21/{v.name}") for v in sorted(
        (VNN / "oval21").glob("*.vnnlib"))] + [
    ("cifar10_resnet/resnet_2b.onnx", f"cifar10_resnet/{v.name}") for v in sorted(
        (VNN / "cifar10_resnet").glob("*.vnnlib"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="linear", choices=["linear", "interval"])
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/vnncomp_verdicts.json"))
    args = ap.parse_args()
    if not VNN.is_dir():
        raise SystemExit("../shared/vnncomp2021 is absent")
    rows, counts = [], {"verified": 0, "falsified": 0, "unknown": 0}
    t_all = time.perf_counter()
    print("| network | property | verdict | certified margin | seconds |")
    print("|---|---|---|---|---|")
    for onnx_path, prop in INSTANCES:
        net = bp.load(VNN / onnx_path)
        v = bp.verify(net, VNN / prop, method=args.method, timeout=args.timeout)
        if v.status == "verified":  # try to break it
            from boundprop.vnnlib import load_vnnlib

            p = load_vnnlib(VNN / prop, int(np.prod(net.input_shape)),
                            int(np.prod(net.output_shape)))
            ort = OrtModel(VNN / onnx_path)
            for box, unsafe in p.cases:
                xs = box.sample(2000, np.random.default_rng(0)).astype(np.float32)
                ys = ort(xs.reshape((-1, *net.input_shape))).reshape(len(xs), -1)
                for a, b in unsafe:
                    assert not np.any(np.all(ys @ a.T <= b, axis=1)), "SOUNDNESS BUG"
        counts[v.status] += 1
        rows.append({"network": onnx_path, "property": prop, "status": v.status,
                     "margin": v.margin, "seconds": v.elapsed_s})
        print(f"| {onnx_path} | {prop.split('/')[-1]} | {v.status} | {v.margin:.4g} | "
              f"{v.elapsed_s:.2f} |", flush=True)
    total = time.perf_counter() - t_all
    print(f"\n{counts} of {len(rows)} instances, {total:.1f} s in all ({args.method})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"method": args.method, "counts": counts,
                                           "seconds": total, "instances": rows}, indent=1))


if __name__ == "__main__":
    main()
