"""Peak memory of one boundprop bound computation, in a fresh process (for
benchmarks/vs_auto_lirpa.py).

    python _bp_peak_mem.py CASE.npz METHOD [WORK_BUDGET]

CASE.npz as for _lirpa_side.py (``onnx``, ``lo``/``hi``, optionally ``C``). WORK_BUDGET (method
``linear`` only) replaces the default back-substitution work budget. Prints one JSON line: the
peak of the memory numpy/Python allocate during the bound computation (``tracemalloc``,
``delta_mb``), the process's peak resident set after it (``ru_maxrss``, ``peak_mb``: includes
the imports and the ONNX loading, whose own peak is ``base_mb``), the computation's
``seconds`` (under tracemalloc), and its bounds (``lower``/``upper``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    case_path, method = sys.argv[1], sys.argv[2]
    budget = float(sys.argv[3]) if len(sys.argv) > 3 else None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's boundprop
    import boundprop as bp
    from boundprop.analysis import linear_bounds, linear_function_bounds, output_bounds
    from boundprop.sets import Box

    case = np.load(case_path, allow_pickle=False)
    net = bp.load(str(case["onnx"]))
    box = Box(case["lo"].astype(float), case["hi"].astype(float))
    C = case["C"] if "C" in case.files else None
    base = peak_mb()
    tracemalloc.start()
    t = time.perf_counter()
    if budget is not None:
        layers, spec = linear_bounds(net, box, spec=C, work_budget=budget)
        lo, hi = spec if C is not None else layers[net.output]
    elif C is not None:
        lo, hi = linear_function_bounds(net, box, C, method=method)
    else:
        ob = output_bounds(net, box, method=method)
        lo, hi = ob.lower, ob.upper
    dt = time.perf_counter() - t
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(json.dumps({"method": method, "work_budget": budget, "base_mb": base,
                      "peak_mb": peak_mb(), "delta_mb": traced, "seconds": dt,
                      "lower": np.ravel(lo).tolist(), "upper": np.ravel(hi).tolist()}))


if __name__ == "__main__":
    main()
