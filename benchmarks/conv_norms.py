"""Certified ℓ2 norms of convolutions: tightness and speed.

    python benchmarks/conv_norms.py [--parts random,vnncomp,vgg16] [--json OUT.json]

(a) random 3×3 kernels (Gaussian, c 16–64, spatial 8–32, pad 1, stride 1 or 2): the ratio of
    the certified upper bound to the power-iteration lower bound (and to the exact σ₁ from an SVD
    of the explicit matrix when it has ≤ 3e7 entries), for the Fourier route and for ``auto``;
(b) every Conv of the VNN-COMP 2021 networks present under ../shared/vnncomp2021: certified
    bounds, power-iteration lower bound, exact σ₁ (explicit matrix ≤ 3e7 entries), seconds;
(c) the 13 convolutions of VGG16 (3×3, pad 1, stride 1, Kaiming-scaled Gaussian kernels at the
    real input sizes): seconds of the certified bound and its ratio to a power-iteration lower
    bound (``--vgg-iterations`` iterations: the lower bound is slow on these sizes).

Timings are wall-clock seconds on this machine (2 cores; check ``load_before`` in the JSON: other
processes sharing the cores slow every number down).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.conv_norms import (
    _check_conv_args,
    _fourier_upper,
    conv_matrix,
    conv_spectral_norm_lower,
    conv_spectral_norm_upper,
)
from boundprop.ops.conv import Conv

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"
VNN_NETS = ["oval21/cifar_base_kw.onnx", "oval21/cifar_wide_kw.onnx", "oval21/cifar_deep_kw.onnx",
            "cifar10_resnet/resnet_2b.onnx"]
VGG16 = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
         (256, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28),
         (512, 512, 14), (512, 512, 14), (512, 512, 14)]
EXACT_MAX_ENTRIES = 3e7


def conv_of(w, n, s, pb, pe, d, g) -> Conv:
    return Conv(in_shape=(1, w.shape[1] * g, *n), weight=w, bias=None, strides=s,
                pads_begin=pb, pads_end=pe, dilations=d, group=g)


def exact_sigma(args) -> float | None:
    """σ₁ from a dense SVD of the explicit matrix (≤ 3e7 entries, smaller side ≤ 4000)."""
    a = conv_matrix(*args)
    if a.shape[0] * a.shape[1] > EXACT_MAX_ENTRIES or min(a.shape) > 4000:
        return None
    return float(np.linalg.svd(a.toarray(), compute_uv=False)[0])


def timed(fn, cpu: list | None = None):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if cpu is not None:
        cpu.append(time.process_time() - c)
    return out, time.perf_counter() - t


def summary(v) -> dict:
    v = [x for x in v if x is not None]
    if not v:
        return {}
    return {"min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v)),
            "count": len(v)}


def part_random(count: int) -> dict:
    rng = np.random.default_rng(2024)
    rows = []
    print("\n(a) random 3x3 kernels: upper / lower (power iteration, 50 its) and / exact")
    print("| c_in | c_out | n | stride | fourier | auto | lower | exact | fourier/lower "
          "| auto/lower | fourier/exact | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i in range(count):
        cin, cout = (int(x) for x in rng.integers(16, 65, size=2))
        n = int(rng.integers(8, 33))
        stride = 1 + i % 2
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin))
        args = (w, (n, n), (stride, stride), (1, 1), (1, 1), (1, 1), 1)
        fourier, t = timed(lambda args=args: conv_spectral_norm_upper(*args, method="fourier"))
        auto = conv_spectral_norm_upper(*args)
        low = conv_spectral_norm_lower(conv_of(*args))
        ex = exact_sigma(args) if min(cin * n * n, cout * (n // stride) ** 2) <= 3000 else None
        assert fourier >= low and auto >= low and (ex is None or min(fourier, auto) >= ex)
        row = dict(c_in=cin, c_out=cout, n=n, stride=stride, fourier=fourier, auto=auto,
                   lower=low, exact=ex, seconds=t)
        rows.append(row)
        print(f"| {cin} | {cout} | {n} | {stride} | {fourier:.5f} | {auto:.5f} | {low:.5f} | "
              + (f"{ex:.5f}" if ex else "-") + f" | {fourier / low:.4f} | {auto / low:.4f} | "
              + (f"{fourier / ex:.4f}" if ex else "-") + f" | {t:.2f} |")
    dist = {
        "fourier/lower": summary([r["fourier"] / r["lower"] for r in rows]),
        "auto/lower": summary([r["auto"] / r["lower"] for r in rows]),
        "fourier/exact": summary([r["fourier"] / r["exact"] for r in rows if r["exact"]]),
        "auto/exact": summary([r["auto"] / r["exact"] for r in rows if r["exact"]]),
        "lower/exact": summary([r["lower"] / r["exact"] for r in rows if r["exact"]]),
    }
    for k, v in dist.items():
        print(f"{k}: min {v['min']:.4f}  median {v['median']:.4f}  max {v['max']:.4f}  "
              f"(n={v['count']})")
    return {"rows": rows, "distribution": dist}


def part_vnncomp() -> list[dict]:
    rows = []
    print("\n(b) VNN-COMP 2021 convolutions")
    print("| network | node | kernel | in | stride | pads | fourier | auto | lower | exact "
          "| fourier/exact | auto/exact | s (fourier) | s (auto) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rel in VNN_NETS:
        path = VNN / rel
        if not path.exists():
            path = VNN / "benchmarks" / rel
        if not path.exists():
            print(f"| {rel} | absent |")
            continue
        net = bp.load(path)
        for node in net.nodes:
            op = getattr(node, "op", None)
            if not isinstance(op, Conv):
                continue
            n = tuple(op.in_shapes[0][2:])
            args = (op.weight, n, op.strides, op.pads_begin, op.pads_end, op.dilations,
                    op.group)
            fourier, tf = timed(lambda a=args: conv_spectral_norm_upper(*a, method="fourier"))
            auto, ta = timed(lambda a=args: conv_spectral_norm_upper(*a))
            low = conv_spectral_norm_lower(op, iterations=100)
            ex = exact_sigma(args)
            assert min(fourier, auto) >= (ex if ex is not None else low)
            name = getattr(node, "name", "?")
            row = dict(network=rel, node=name, kernel=list(op.weight.shape), input=list(n),
                       strides=list(op.strides), pads=list(op.pads_begin) + list(op.pads_end),
                       fourier=fourier, auto=auto, lower=low, exact=ex, seconds_fourier=tf,
                       seconds_auto=ta)
            rows.append(row)
            print(f"| {rel} | {name} | {'x'.join(map(str, op.weight.shape))} | "
                  f"{'x'.join(map(str, n))} | {op.strides[0]} | {row['pads']} | {fourier:.5f} | "
                  f"{auto:.5f} | {low:.5f} | " + (f"{ex:.5f}" if ex else "-") + " | "
                  + (f"{fourier / ex:.4f} | {auto / ex:.4f}" if ex else "- | -")
                  + f" | {tf:.2f} | {ta:.2f} |")
    return rows


def part_vgg(iterations: int) -> dict:
    rng = np.random.default_rng(16)
    rows = []
    print(f"\n(c) VGG16 convolutions (3x3, pad 1, stride 1), lower = power iteration "
          f"({iterations} its)")
    print("| layer | c_in→c_out @ n | upper | lower | upper/lower | s | CPU s | frequencies | "
          "Cholesky s | assembly s | estimates s | prepare s | failures |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    total = total_cpu = 0.0
    for i, (cin, cout, n) in enumerate(VGG16):
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin))
        args = (w, (n, n), (1, 1), (1, 1), (1, 1), (1, 1), 1)
        # = conv_spectral_norm_upper(*args) (the dense route is off at these sizes), timed in
        # its two parts to report the breakdown of the Fourier route
        cpu: list[float] = []
        (up, info), t = timed(lambda a=args: _fourier_upper(*_check_conv_args(*a),
                                                           rel_tol=1e-3), cpu)
        n1inf, t1 = timed(lambda a=args: conv_spectral_norm_upper(*a, method="norm1inf"), cpu)
        up, t = min(up, n1inf), t + t1
        total += t
        total_cpu += sum(cpu)
        low = conv_spectral_norm_lower(conv_of(*args), iterations=iterations)
        rows.append(dict(layer=i + 1, c_in=cin, c_out=cout, n=n, upper=up, lower=low,
                         seconds=t, cpu_seconds=sum(cpu), info=info))
        print(f"| {i + 1} | {cin}→{cout} @ {n} | {up:.5f} | {low:.5f} | {up / low:.4f} | "
              f"{t:.2f} | {sum(cpu):.2f} | {info['frequencies']} | {info['t_cholesky']:.2f} | "
              f"{info['t_assemble']:.2f} | {info['t_estimate']:.2f} | {info['t_prepare']:.2f} | "
              f"{info['failures']} |")
    print(f"total (13 layers): {total:.1f} s wall, {total_cpu:.1f} s CPU")
    return {"rows": rows, "total_seconds": total, "total_cpu_seconds": total_cpu,
            "lower_iterations": iterations}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="random,vnncomp,vgg16")
    ap.add_argument("--random-count", type=int, default=50)
    ap.add_argument("--vgg-iterations", type=int, default=20)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/conv_norms.json"))
    args = ap.parse_args()
    parts = args.parts.split(",")
    out: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    if "random" in parts:
        out["random_3x3"] = part_random(args.random_count)
    if "vnncomp" in parts:
        out["vnncomp"] = part_vnncomp()
    if "vgg16" in parts:
        out["vgg16"] = part_vgg(args.vgg_iterations)
    out["load_after"] = os.getloadavg()
    path = Path(args.json)
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(out)  # running one part keeps the others' results
    path.write_text(json.dumps(old, indent=1))
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
