"""Local ℓ2 Lipschitz constants of the shipped MLPs on their declared input sets (issue 15's
target: certified / found ≤ 3): ``bp.local_lipschitz(net, set, norm="2", time_budget=B)`` for
each budget B, its certified upper bound, where it came from, the domains it bounded, and the
best ‖J(x)‖₂ it found at points of the set (its own search: a true lower bound).

    python benchmarks/local_l2_shipped.py [--budgets 2 10] [--models mlp_relu ...]
Writes benchmarks/results/local_l2_shipped.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import boundprop as bp
from boundprop.sets import default_input_set

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "local_l2_shipped.json"
MODELS = ["mlp_relu", "mlp_sigmoid", "mlp_tanh", "mlp_gelu", "mlp_gelu_erf", "mlp_elu",
          "mlp_leakyrelu", "mlp_prelu", "mlp_clip", "mlp_hardsigmoid", "mlp_softplus",
          "sklearn_mlp_regressor", "torch_mlp_gelu_dynamo", "torch_mlp_gelu_torchscript",
          "mlp_784_100_100_10_relu"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[2.0, 10.0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    args = ap.parse_args()
    rows = []
    t_all = time.perf_counter()
    for name in args.models:
        net = bp.load(ROOT / "models" / f"{name}.onnx")
        s = default_input_set(net)
        for budget in args.budgets:
            res = bp.local_lipschitz(net, s, norm="2", time_budget=budget)
            rows.append({"model": name, "budget_s": budget, "upper": res.upper,
                         "lower": res.lower, "ratio": res.ratio,
                         "source": res.upper_source, "domain_lmi": res.domain_lmi,
                         "domains": res.domains, "elapsed_s": round(res.elapsed_s, 3)})
            print(f"{name:28s} {budget:5g} s  upper {res.upper:.4g}  lower {res.lower:.4g}  "
                  f"ratio {res.ratio:.3g}  ({res.upper_source}, {res.domains} domains)",
                  flush=True)
    doc = {"command": "python benchmarks/local_l2_shipped.py " + " ".join(
        ["--budgets", *map(str, args.budgets)]), "cpu_count": os.cpu_count(),
        "total_s": round(time.perf_counter() - t_all, 1), "rows": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print("\n| model | " + " | ".join(f"ratio at {b:g} s" for b in args.budgets) + " |")
    print("|---|" + "---|" * len(args.budgets))
    for name in args.models:
        cells = [f"{r['ratio']:.2f} ({r['upper']:.3g} / {r['lower']:.3g})"
                 for r in rows if r["model"] == name]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
