"""Cost of the independent checker against the prover (issue 5: checking a certificate must
take no longer than producing it), measured in one run on the same machine.

For each case: prover = bp.load + bp.certify + save (a fresh load, so no cached norms);
checker = bp.check (it loads the model itself). Ratio = checker / prover wall time. Each row
also lists the checker's items by how they were verified and the prover functions it trusted. One
warm-up case runs first, so that one-time imports (jsonschema, for the checker) are not
charged to the first case.

    python benchmarks/check_cost.py [--vgg16]
Writes benchmarks/results/check_cost.json. ``--vgg16`` adds the global ℓ2 certificate of the
torch VGG16 at 224×224 (benchmarks/_work/vgg16_torchscript.onnx, from vgg16_import.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import boundprop as bp
from boundprop.sets import default_input_set

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("models/mlp_784_100_100_10_relu.onnx", "2", "local"),
    ("models/mlp_784_100_100_10_relu.onnx", "inf", "local"),
    ("models/mlp_tanh.onnx", "2", "params"),
    ("models/lenet.onnx", "2", "local"),
    ("models/lenet.onnx", "inf", "local"),
    ("models/resnet_block.onnx", "2", "local"),
    ("models/vgg_small_smooth_bn_train.onnx", "2", "global"),
    ("models/vgg_small_smooth_bn_train.onnx", "2", "local"),
    ("models/torch_cnn_dynamo.onnx", "1", "local"),
]


def run_case(path: Path, norm: str, kind: str, folder: Path) -> dict:
    cert = folder / "cert.json"
    t0 = time.perf_counter()
    net = bp.load(path)
    if kind == "params":
        s = default_input_set(net)
        x = 0.5 * (s.lower + s.upper)
        c = bp.certify(net, bp.Box(x, x), norm=norm, wrt="params", param_radius=0.05)
    else:
        c = bp.certify(net, None if kind == "global" else default_input_set(net), norm=norm)
    c.save(cert)
    prove = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = bp.check(cert, path, raise_on_invalid=False)
    check = time.perf_counter() - t0
    return {"model": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "norm": norm, "kind": kind, "prove_s": round(prove, 3), "check_s": round(check, 3),
            "ratio": round(check / prove, 3), "valid": r.valid,
            "items": r.counts(), "trusted": r.trusted}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vgg16", action="store_true")
    args = ap.parse_args()
    cases = [(ROOT / p, n, k) for p, n, k in CASES]
    vgg = ROOT / "benchmarks/_work/vgg16_torchscript.onnx"
    if args.vgg16 and vgg.exists():
        cases.append((vgg, "2", "global"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: imports (jsonschema) are one-time
        run_case(ROOT / "models/mlp_relu.onnx", "2", "local", Path(tmp))
    print(f"{'model':<44} {'norm':>4} {'kind':>6} {'prove s':>8} {'check s':>8} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for path, norm, kind in cases:
            row = run_case(path, norm, kind, Path(tmp))
            rows.append(row)
            print(f"{row['model']:<44} {norm:>4} {kind:>6} {row['prove_s']:>8.2f} "
                  f"{row['check_s']:>8.2f} {row['ratio']:>6.2f} "
                  f"{'valid' if row['valid'] else 'INVALID'}", flush=True)
    out = ROOT / "benchmarks/results/check_cost.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
