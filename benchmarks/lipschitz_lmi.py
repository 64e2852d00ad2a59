"""Global ℓ2 Lipschitz constants of MLP chains: the layer product ∏‖W_l‖₂ sup|σ'| against the
verified LipSDP-Neuron bound (``boundprop.domains.lipsdp``; ECLipsE-Fast's closed form shown
as an unverified reference — it takes α = 0, so for GELU, α < 0, it is no bound at all), with
a sampled lower bound (max ‖J(x)‖₂ of exact IR Jacobians at standard normal points scaled by
0.1 … 1000).

Models: the shipped MLPs, mnist-net_256x2 and ACAS Xu 1_1 of VNN-COMP 2021 (when
../shared/vnncomp2021 exists) and, with ``--lipsdp DIR``, the example weights of the LipSDP
repository (``DIR/random_weights.mat``, ``DIR/mnist_weights.mat`` from
github.com/arobey1/LipSDP, LipSDP/examples/saved_weights; ReLU between the layers).

    python benchmarks/lipschitz_lmi.py [--lipsdp DIR] [--quick]
Writes benchmarks/results/lipschitz_lmi.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.audit.function import AuditedFunction
from boundprop.domains.lipsdp import lipschitz_lmi, mlp_chain
from boundprop.domains.lipsdp_search import eclipse_candidate
from boundprop.ir import InputPrimitive, Network, Node
from boundprop.norms import spectral_norm_upper
from boundprop.ops.affine import Dense
from boundprop.ops.piecewise import Relu

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"
SHIPPED = ["mlp_relu", "mlp_sigmoid", "mlp_tanh", "mlp_softplus", "mlp_elu", "mlp_leakyrelu",
           "mlp_prelu", "mlp_clip", "mlp_hardsigmoid", "mlp_gelu", "mlp_784_100_100_10_relu"]


def relu_chain(ws: list[np.ndarray]) -> Network:
    nodes = [Node("input", InputPrimitive((1, ws[0].shape[1])), ())]
    for i, w in enumerate(ws):
        nodes.append(Node(f"d{i}", Dense((1, w.shape[1]), w), (len(nodes) - 1,)))
        if i < len(ws) - 1:
            nodes.append(Node(f"a{i}", Relu((1, w.shape[0])), (len(nodes) - 1,)))
    return Network(nodes=nodes, output=len(nodes) - 1)


def sampled_lower(net: Network, n: int = 2000, seed: int = 0) -> float:
    """max ‖J(x)‖₂ over n points (exact IR Jacobians): a lower bound of the global ℓ2."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(net.input_shape))
    xs = rng.standard_normal((n, d)) * rng.choice([0.1, 1.0, 10.0, 100.0, 1000.0], (n, 1))
    k = int(np.prod(net.output_shape))
    rows = np.broadcast_to(np.eye(k).reshape(1, k, *net.output_shape), (n, k, *net.output_shape))
    jac = AuditedFunction(net, "input").jacobians(xs, np.zeros(n, dtype=int), rows)
    return float(np.max(np.linalg.norm(jac, ord=2, axis=(1, 2))))


def row(name: str, net: Network, product: float) -> dict:
    t0 = time.perf_counter()
    r = lipschitz_lmi(net)
    dt = time.perf_counter() - t0
    chain, _ = mlp_chain(net)
    fast = float(np.sqrt(eclipse_candidate(chain, [1.0] * len(chain.slopes))[0])) \
        if chain else None
    out = {"model": name, "product": product, "eclipse_fast_unverified": fast,
           "lmi": r.value, "note": r.note, "lmi_seconds": round(dt, 2),
           "sampled_lower": sampled_lower(net, 300 if "mnist" in name else 2000)}
    print(f"{name:<34} product {product:>12.6g}  ECLipsE-Fast {fast or float('nan'):>12.6g}  "
          f"LMI {r.value or float('nan'):>12.6g}  lower {out['sampled_lower']:>10.4g}  "
          f"{dt:6.1f}s  {r.note or ''}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lipsdp", help="folder with LipSDP's random_weights.mat, mnist_weights.mat")
    ap.add_argument("--quick", action="store_true", help="shipped models only")
    args = ap.parse_args()
    rows = []
    paths = [ROOT / "models" / f"{m}.onnx" for m in SHIPPED]
    if not args.quick and VNN.is_dir():
        paths += [VNN / "mnistfc" / "mnist-net_256x2.onnx",
                  VNN / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx"]
    for p in paths:
        net = bp.load(p)
        rows.append(row(p.stem, net, bp.constants(net, None, norm="2",
                                                  symbolic=False).lipschitz_product))
    if args.lipsdp:
        import scipy.io  # the .mat reader

        for name in ("random", "mnist"):
            d = scipy.io.loadmat(str(Path(args.lipsdp) / f"{name}_weights.mat"))
            ws = [np.asarray(w, dtype=np.float64) for w in d["weights"].reshape(-1)]
            prod = float(np.prod([spectral_norm_upper(w) for w in ws]))
            rows.append(row(f"LipSDP {name} {[ws[0].shape[1]] + [w.shape[0] for w in ws]}",
                            relu_chain(ws), prod))
    out = ROOT / "benchmarks" / "results" / "lipschitz_lmi.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
