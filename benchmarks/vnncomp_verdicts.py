"""Verdicts of ``bp.verify`` on the VNN-COMP 2021 instances in ../shared/vnncomp2021/, beside
α,β-CROWN's answers in the competition.

    python benchmarks/vnncomp_verdicts.py [--method linear|alpha|interval] [--timeout 60]
                                          [--only SUBSTRING] [--json FILE]

Per instance: our answer in the competition's words (unsat = verified, sat = falsified,
unknown, timeout), the certified margin, our time, whether the verdict carries a proof
(``Verdict.proof``, when the verifier gives one), α,β-CROWN's answer and time, and "correct?":
``yes`` when both decided the same, ``WRONG`` — printed loudly, and counted — when our decided
answer contradicts α,β-CROWN's decided one, ``-`` when either side is undecided. The default
budget, 60 s per instance, is this issue's (a 2-core machine); α,β-CROWN's times are the
competition's, measured on its own machine (an AWS instance with a GPU), so they are a
reference, not a same-hardware comparison.

Every "sat" carries a counterexample confirmed by onnxruntime; every "unsat" is also checked
here against 2,000 onnxruntime samples of the box (a violation would be a soundness bug).
The whole run takes ~25 min; ``--only test`` (the five test instances) or ``--only 1_1`` a
subset. The full run writes benchmarks/results/vnncomp_verdicts.json; a run with --only writes
only where --json says.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.checker.proof import check_proof
from boundprop.runtime import OrtModel
from boundprop.verify_command import result_word
from boundprop.vnnlib import load_vnnlib

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"
DEFAULT_JSON = ROOT / "benchmarks/results/vnncomp_verdicts.json"

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
    ("oval21/cifar_base_kw.onnx", f"oval21/{v}") for v in (
        "cifar_base_kw-img1598-eps0.0026143790849673205.vnnlib",
        "cifar_base_kw-img1697-eps0.0014379084967320263.vnnlib")] + [
    ("cifar10_resnet/resnet_2b.onnx", f"cifar10_resnet/{v}") for v in (
        "prop_0_eps_0.008.vnnlib", "prop_10_eps_0.008.vnnlib")]

# α,β-CROWN's VNN-COMP 2021 answers on these instances: the "result" and "run time" (seconds)
# columns of results_csv/a-b-CROWN.csv in github.com/stanleybak/vnncomp2021_results (commit
# a83b9da), the first row of each instance. "" is the competition's empty result (the test
# instances test_nano and test_small have none); "timeout" is an undecided answer. Keyed by
# (network file name, property file name).
AB_CROWN = {
    ("test_nano.onnx", "test_nano.vnnlib"): ("", 1.736),
    ("test_tiny.onnx", "test_tiny.vnnlib"): ("unsat", 6.263),
    ("test_small.onnx", "test_small.vnnlib"): ("", 5.730),
    ("test_sat.onnx", "test_prop.vnnlib"): ("sat", 10.008),
    ("test_unsat.onnx", "test_prop.vnnlib"): ("unsat", 6.963),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_1.vnnlib"): ("unsat", 9.187),
    ("ACASXU_run2a_1_2_batch_2000.onnx", "prop_1.vnnlib"): ("unsat", 8.655),
    ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_1.vnnlib"): ("unsat", 8.253),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_2.vnnlib"): ("unsat", 10.654),
    ("ACASXU_run2a_1_2_batch_2000.onnx", "prop_2.vnnlib"): ("sat", 11.010),
    ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_2.vnnlib"): ("sat", 6.811),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_3.vnnlib"): ("unsat", 12.000),
    ("ACASXU_run2a_1_2_batch_2000.onnx", "prop_3.vnnlib"): ("unsat", 9.051),
    ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_3.vnnlib"): ("unsat", 9.366),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_4.vnnlib"): ("unsat", 9.687),
    ("ACASXU_run2a_1_2_batch_2000.onnx", "prop_4.vnnlib"): ("unsat", 8.379),
    ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_4.vnnlib"): ("unsat", 7.290),
    ("mnist-net_256x2.onnx", "prop_0_0.03.vnnlib"): ("unsat", 15.006),
    ("mnist-net_256x2.onnx", "prop_0_0.05.vnnlib"): ("sat", 20.640),
    ("mnist-net_256x2.onnx", "prop_10_0.03.vnnlib"): ("unsat", 6.748),
    ("Convnet_maxpool.onnx", "prop_0_0.004.vnnlib"): ("unsat", 6.743),
    ("Convnet_maxpool.onnx", "prop_10_0.004.vnnlib"): ("unsat", 6.690),
    ("cifar_base_kw.onnx", "cifar_base_kw-img1598-eps0.0026143790849673205.vnnlib"):
        ("sat", 14.202),
    ("cifar_base_kw.onnx", "cifar_base_kw-img1697-eps0.0014379084967320263.vnnlib"):
        ("sat", 13.906),
    ("resnet_2b.onnx", "prop_0_eps_0.008.vnnlib"): ("timeout", 333.373),
    ("resnet_2b.onnx", "prop_10_eps_0.008.vnnlib"): ("unsat", 78.466),
}
DECIDED = ("sat", "unsat")


def reference(onnx_path: str, prop: str) -> tuple[str, float | None]:
    """α,β-CROWN's answer and time on the instance ("?" and None if not in the table)."""
    return AB_CROWN.get((Path(onnx_path).name, Path(prop).name), ("?", None))


def agreement(ours: str, theirs: str) -> str:
    """"yes" (same decided answer), "WRONG" (decided answers that contradict), or "-"."""
    if ours in DECIDED and theirs in DECIDED:
        return "yes" if ours == theirs else "WRONG"
    return "-"


def check_unsat_by_sampling(net, onnx_path: Path, prop_path: Path) -> None:
    """Try to break an "unsat": 2,000 onnxruntime samples per box must stay out of the unsafe
    region (a hit is a soundness bug: raised)."""
    p = load_vnnlib(prop_path, int(np.prod(net.input_shape)), int(np.prod(net.output_shape)))
    ort = OrtModel(onnx_path)
    for box, unsafe in p.cases:
        xs = box.sample(2000, np.random.default_rng(0)).astype(np.float32)
        ys = ort(xs.reshape((-1, *net.input_shape))).reshape(len(xs), -1)
        for a, b in unsafe:
            if np.any(np.all(ys @ a.T <= b, axis=1)):
                raise AssertionError(f"SOUNDNESS BUG: {onnx_path} {prop_path}: an onnxruntime "
                                     "sample is in the unsafe region of a verified property")


def run_instance(onnx_path: str, prop: str, method: str, timeout: float) -> dict:
    """One instance: our verdict beside α,β-CROWN's, as a row."""
    net = bp.load(VNN / onnx_path)
    v = bp.verify(net, VNN / prop, method=method, timeout=timeout)
    word = result_word(v)
    check_s = None
    if word == "unsat":
        check_unsat_by_sampling(net, VNN / onnx_path, VNN / prop)
        if v.proof is not None:  # boundprop check's work, timed (in-process: no import cost)
            r = check_proof(v.proof, net, VNN / onnx_path, VNN / prop)
            if not r.valid:
                raise AssertionError(f"PROOF REJECTED: {onnx_path} {prop}: {r.reason}")
            check_s = r.elapsed_s
    theirs, their_s = reference(onnx_path, prop)
    return {"network": onnx_path, "property": prop, "result": word, "status": v.status,
            "margin": v.margin, "seconds": v.elapsed_s,
            "proof": v.proof is not None, "check_seconds": check_s,
            "ab_crown": theirs, "ab_crown_seconds": their_s,
            "correct": agreement(word, theirs)}


def _proof_cell(r: dict) -> str:
    if not r["proof"]:
        return "no"
    return "yes" if r["check_seconds"] is None else f"yes ({r['check_seconds']:.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="linear", choices=["linear", "alpha", "interval"])
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds per instance (default 60)")
    ap.add_argument("--only", metavar="SUBSTRING",
                    help="run only the instances whose 'network property' contains it")
    ap.add_argument("--json", default=None,
                    help=f"results file (default {DEFAULT_JSON.relative_to(ROOT)} for a full "
                    "run, none with --only)")
    args = ap.parse_args()
    if not VNN.is_dir():
        raise SystemExit("../shared/vnncomp2021 is absent")
    chosen = [(n, p) for n, p in INSTANCES if not args.only or args.only in f"{n} {p}"]
    if not chosen:
        raise SystemExit(f"no instance matches --only {args.only!r}")
    rows, counts, wrong = [], {"unsat": 0, "sat": 0, "unknown": 0, "timeout": 0}, 0
    t_all = time.perf_counter()
    print("| network | property | ours | certified margin | seconds | proof (check s) | "
          "α,β-CROWN | α,β-CROWN s | correct? |")
    print("|---|---|---|---|---|---|---|---|---|")
    for onnx_path, prop in chosen:
        r = run_instance(onnx_path, prop, args.method, args.timeout)
        counts[r["result"]] += 1
        rows.append(r)
        flag = "**WRONG**" if r["correct"] == "WRONG" else r["correct"]
        their_s = "-" if r["ab_crown_seconds"] is None else f"{r['ab_crown_seconds']:.1f}"
        print(f"| {onnx_path} | {prop.split('/')[-1]} | {r['result']} | {r['margin']:.4g} | "
              f"{r['seconds']:.2f} | {_proof_cell(r)} | {r['ab_crown'] or '(none)'}"
              f" | {their_s} | {flag} |", flush=True)
        if r["correct"] == "WRONG":
            wrong += 1
            print(f"!!! WRONG VERDICT: {onnx_path} {prop}: ours {r['result']}, α,β-CROWN "
                  f"{r['ab_crown']} !!!", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_all
    print(f"\n{counts} of {len(rows)} instances, {total:.1f} s in all ({args.method}, timeout "
          f"{args.timeout:g} s); contradicting α,β-CROWN: {wrong}")
    out = args.json or (None if args.only else str(DEFAULT_JSON))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({
            "method": args.method, "timeout": args.timeout, "counts": counts, "wrong": wrong,
            "seconds": total, "instances": rows}, indent=1))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
