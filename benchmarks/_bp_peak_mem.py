"""Peak memory of one boundprop bound computation, in a fresh process (for
benchmarks/vs_auto_lirpa.py).

    python _bp_peak_mem.py CASE.npz METHOD

CASE.npz as for _lirpa_side.py (``onnx``, ``lo``/``hi``, optionally ``C``). Prints one JSON
line: the process's peak resident set (``ru_maxrss``) after importing boundprop and loading the
model (``base_mb``), after the bound computation (``peak_mb``), their difference (``delta_mb``:
what the bound computation added on top) and the computation's ``seconds``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    case_path, method = sys.argv[1], sys.argv[2]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's boundprop
    import boundprop as bp
    from boundprop.analysis import linear_function_bounds, output_bounds
    from boundprop.sets import Box

    case = np.load(case_path, allow_pickle=False)
    net = bp.load(str(case["onnx"]))
    box = Box(case["lo"].astype(float), case["hi"].astype(float))
    base = peak_mb()
    t = time.perf_counter()
    if "C" in case.files:
        linear_function_bounds(net, box, case["C"], method=method)
    else:
        output_bounds(net, box, method=method)
    dt = time.perf_counter() - t
    peak = peak_mb()
    print(json.dumps({"method": method, "base_mb": base, "peak_mb": peak,
                      "delta_mb": peak - base, "seconds": dt}))


if __name__ == "__main__":
    main()
