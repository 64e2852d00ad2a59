"""ℓ and B of every VNN-COMP 2021 network (issue 4's table).

The set is an ℓ∞ ball around the centre of each model's declared box, of radius 1% of its
width (+1e-3): the same set tests/test_constants.py uses for soundness. Columns: local ℓ2 (min
of product and Jacobian enclosure), local ℓ∞ (and its layer-product value), B (ℓ2), global ℓ2
(layer product), local L2, seconds.

    python benchmarks/vnncomp_constants.py        # needs ../shared/vnncomp2021
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boundprop as bp  # noqa: E402
from boundprop.sets import LinfBall  # noqa: E402
from tests.conftest import model_id, vnncomp_models  # noqa: E402
from tests.test_constants import model_set  # noqa: E402


def main() -> None:
    paths = vnncomp_models()
    if not paths:
        print("../shared/vnncomp2021 not found: nothing to measure")
        return
    print("| network | local ℓ2 | local ℓ∞ (product) | B (ℓ2) | global ℓ2 | local L2 | s |")
    print("|---|---|---|---|---|---|---|")
    for p in paths:
        net = bp.load(p)
        s = model_set(net)
        s = LinfBall(0.5 * (s.lower + s.upper), 0.01 * float(np.max(s.upper - s.lower)) + 1e-3)
        t = time.perf_counter()
        c2 = bp.constants(net, s, "2")
        ci = bp.constants(net, s, "inf")
        g = bp.constants(net, None, "2", enclosure=False, symbolic=False)
        print(f"| {model_id(p)} | {c2.lipschitz:.4g} | {ci.lipschitz:.4g} "
              f"(prod {ci.lipschitz_product:.3g}) | {c2.bound:.4g} | {g.lipschitz:.4g} | "
              f"{c2.smoothness:.3g} | {time.perf_counter() - t:.1f} |", flush=True)


if __name__ == "__main__":
    main()
