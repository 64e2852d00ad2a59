"""Start-up time of the CLI and of ``import boundprop``, against a bare interpreter.

    python benchmarks/cli_startup.py [--repeat 15] [--json OUT.json]

Each command runs ``--repeat`` times in a fresh process; the table gives the median and best
wall time, the ratio of the medians to ``python -c pass`` (the interpreter's own start-up, the
floor), and how many modules of the heavy dependencies (sympy, onnx, onnxruntime, scipy) the
command loaded (0: they are imported only by the commands that need them). A breakdown per
module: ``python -X importtime -c "import boundprop.cli"``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sympy", "onnxruntime", "onnx", "scipy")
COUNT_HEAVY = (f"\nimport sys\nprint(sum(m.split('.')[0] in {HEAVY!r} for m in sys.modules), "
               "file=sys.stderr)")


def commands() -> dict[str, list[str]]:
    """Label -> argv. ``boundprop --help`` is the installed console script when on PATH."""
    script = shutil.which("boundprop")
    help_argv = [script, "--help"] if script else [sys.executable, "-m", "boundprop.cli",
                                                   "--help"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import boundprop": [sys.executable, "-c", "import boundprop" + COUNT_HEAVY],
        "import boundprop.cli": [sys.executable, "-c", "import boundprop.cli" + COUNT_HEAVY],
        "boundprop --help": help_argv,
        "boundprop --help (in-process count)": [
            sys.executable, "-c", "import contextlib, io\nfrom boundprop.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])" + COUNT_HEAVY],
    }


def wall_times(argv: list[str], repeat: int) -> tuple[list[float], str]:
    """Seconds of each of ``repeat`` runs of ``argv``, and the last run's stderr."""
    times, err = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
        err = done.stderr
    return times, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/cli_startup.json"))
    args = ap.parse_args()
    rows, floor = [], None
    print("| command | median s | best s | × python -c pass | heavy modules loaded |")
    print("|---|---|---|---|---|")
    for label, argv in commands().items():
        times, err = wall_times(argv, args.repeat)
        median = statistics.median(times)
        floor = floor or median
        heavy = err.strip().splitlines()[-1] if err.strip() else "-"
        rows.append({"command": label, "median_s": median, "best_s": min(times),
                     "ratio_to_bare_python": median / floor, "heavy_modules": heavy})
        print(f"| {label} | {median:.3f} | {min(times):.3f} | {median / floor:.2f} | {heavy} |",
              flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
