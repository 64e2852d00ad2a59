"""Throughput of batched domain bounding (branch and bound's inner loop), in domains per second.

    python benchmarks/bab_throughput.py

Domains as branch and bound makes them: on ACAS Xu 1_1 prop_3, sub-boxes of 1/8 of the box's
width around random points (input splitting, CROWN per domain); on mnist-net_256x2 prop_0
ε=0.03, random phase constraints on 8 unstable ReLUs (activation splitting, with
10 slope-optimisation iterations per domain, as the verifier runs it). Each batch size D is
timed against bounding the same domains one at a time (D = 1 calls), in the same run: the
ratio is what batching buys. Results in benchmarks/results/bab_throughput.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.analysis import output_bounds
from boundprop.bab.run import SLOPE_ITERATIONS, domain_slopes, widened
from boundprop.bab.search import refutation_rows, splittable_nodes
from boundprop.domains.batched import DomainBatch, Split
from boundprop.vnnlib import load_vnnlib

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"


def _problem(model: str, prop: str):
    net = bp.load(VNN / model)
    p = load_vnnlib(VNN / prop, int(np.prod(net.input_shape)), int(np.prod(net.output_shape)))
    box, unsafe = p.cases[0]
    wide = widened(box).fit(net.input_shape)
    layers = output_bounds(net, wide, "alpha", "float32").layers
    a, b = refutation_rows(*unsafe[-1])
    return net, wide, layers, a


def _acas_domains(wide, d: int, rng) -> tuple:
    lo, hi = wide.lower.reshape(-1), wide.upper.reshape(-1)
    c = lo + (hi - lo) * rng.random((d, lo.size))
    w = (hi - lo) / 16
    return np.maximum(c - w, lo), np.minimum(c + w, hi), [()] * d


def _mnist_domains(net, wide, layers, d: int, rng) -> tuple:
    unstable = [(k, int(i)) for k, _, _ in splittable_nodes(net) for i in np.flatnonzero(
        (layers[k][0].reshape(-1) < 0) & (layers[k][1].reshape(-1) > 0))]
    splits = [tuple(Split(*unstable[j], int(rng.choice([-1, 1])), 0.0)
                    for j in rng.choice(len(unstable), min(8, len(unstable)), replace=False))
              for _ in range(d)]
    x_lo = np.repeat(wide.lower.reshape(1, -1), d, axis=0)
    return x_lo, np.repeat(wide.upper.reshape(1, -1), d, axis=0), splits


def _rate(net, layers, a, x_lo, x_hi, splits, slopes, per_call: int) -> float:
    """Domains per second, bounding them ``per_call`` at a time."""
    shape = net.input_shape
    t0 = time.perf_counter()
    for s in range(0, len(x_lo), per_call):
        batch = DomainBatch(net, layers, x_lo[s:s + per_call].reshape(-1, *shape),
                            x_hi[s:s + per_call].reshape(-1, *shape), splits[s:s + per_call],
                            "float32")
        batch.spec_lower(a, record=True, slopes=slopes)
    return len(x_lo) / (time.perf_counter() - t0)


def main() -> None:
    if not VNN.is_dir():
        raise SystemExit("../shared/vnncomp2021 is absent")
    rng = np.random.default_rng(0)
    rows = []
    cases = [("ACAS Xu 1_1 prop_3 (input splitting)", "acasxu/ACASXU_run2a_1_1_batch_2000.onnx",
              "acasxu/prop_3.vnnlib", "input"),
             ("mnist-net_256x2 prop_0 ε=0.03 (activation splitting)",
              "mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_0_0.03.vnnlib", "activation")]
    print("| problem | batch | domains/s | one at a time | speed-up |")
    print("|---|---|---|---|---|")
    for name, model, prop, mode in cases:
        net, wide, layers, a = _problem(model, prop)
        slopes = domain_slopes(SLOPE_ITERATIONS[mode])
        n = 256
        doms = (_acas_domains(wide, n, rng) if mode == "input"
                else _mnist_domains(net, wide, layers, n, rng))
        single = _rate(net, layers, a, *doms[:2], doms[2], slopes, 1)
        for d in (16, 64, 256):
            rate = _rate(net, layers, a, *doms[:2], doms[2], slopes, d)
            rows.append({"problem": name, "batch": d, "domains_per_s": rate,
                         "one_at_a_time_per_s": single, "speedup": rate / single})
            print(f"| {name} | {d} | {rate:.0f} | {single:.0f} | {rate / single:.1f}× |",
                  flush=True)
    out = ROOT / "benchmarks/results/bab_throughput.json"
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
