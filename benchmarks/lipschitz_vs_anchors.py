"""Local Lipschitz constants on the anchors' instances (issue 15; anchors §5.4): certified upper
bounds (boundprop.lipschitz.local_lipschitz, and the old ``bp.certify(...).lipschitz``) against
the best lower bound found (boundprop.audit.jacobian_search) and auto_LiRPA's Jacobian bound.

    python benchmarks/lipschitz_vs_anchors.py [--no-lirpa] [--rerun-lirpa] [--eran-dir DIR]
                                              [--budget S] [--lirpa-python PATH] [--timeout S]

Instances (the ℓ∞ Lipschitz constant here is max_i sup_{x∈box} ‖∇f_i(x)‖₁, i.e. the ℓ∞→ℓ∞
operator norm of the Clarke Jacobian; ℓ2: sup_{x∈box} ‖J(x)‖₂):

* mnist-net_256x2, prop_0 at ε = 0.03 and 0.05; ACAS Xu 1_1, prop_1 box (../shared/vnncomp2021);
* ERAN ffnnSIGMOID__Point_6x200, spec 7167 ε = 0.012, from ``--eran-dir`` (else $BOUNDPROP_ERAN_DIR,
  else /tmp/eran); skipped when its files are absent. Its smoothness L (sup ‖∇²f‖ over the box,
  ℓ2) is reported too: the certified value from ``bp.certify`` and a lower bound from second
  differences of the float64 IR at the search's points.

Columns: the best lower bound (a value ‖J(x)‖ with J the exact Jacobian of the float64 IR at a
point x of the box, re-checked by a central difference quotient) and its search time; the
certified value of ``local_lipschitz`` ("n/a" until that engine is on this branch) and its
time; certified / lower; auto_LiRPA's value and time (ℓ∞ only; auto_LiRPA has no ℓ2 Jacobian
norm); the old boundprop value ``bp.certify(net, box, norm=...).lipschitz``.

auto_LiRPA is benchmark-only: it runs in its own venv (``--lirpa-python``, else
$BOUNDPROP_LIRPA_PYTHON, else /work/lirpa-venv/bin/python; how to build it: the docstring of
benchmarks/vs_auto_lirpa.py) through benchmarks/_lirpa_jacobian_side.py, one subprocess per
instance. The network is handed over as its chain of dense layers (extracted from boundprop's IR,
input normalisation folded into the first layer), in float64, with 2 torch threads. Its results
are cached in benchmarks/results/lipschitz_vs_anchors_lirpa.json (keyed by instance and a hash of
the layers and box): a rerun reuses them unless ``--rerun-lirpa``; ``--no-lirpa`` leaves its
columns to the cache only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's boundprop

import boundprop as bp  # noqa: E402
from boundprop.audit.jacobian_search import (  # noqa: E402
    jacobian_norm_lower,
    pair_quotient,
    smoothness_lower,
)
from boundprop.vnnlib import load_vnnlib  # noqa: E402

try:
    from boundprop.lipschitz import local_lipschitz  # the certified engine (issue 15)
except ImportError:
    local_lipschitz = None

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"
HERE = Path(__file__).resolve().parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "lipschitz_vs_anchors"
CACHE = RESULTS / "lipschitz_vs_anchors_lirpa.json"
DEFAULT_VENV = "/work/lirpa-venv/bin/python"
DEFAULT_ERAN = "/tmp/eran"
# (name, onnx, vnnlib, where): where = "vnn" (the shared folder) or "eran" (--eran-dir)
INSTANCES = [
    ("mnist-net_256x2 prop_0 eps=0.03", "mnistfc/mnist-net_256x2.onnx",
     "mnistfc/prop_0_0.03.vnnlib", "vnn"),
    ("mnist-net_256x2 prop_0 eps=0.05", "mnistfc/mnist-net_256x2.onnx",
     "mnistfc/prop_0_0.05.vnnlib", "vnn"),
    ("ACAS Xu 1_1 prop_1", "acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/prop_1.vnnlib",
     "vnn"),
    ("ERAN sigmoid 6x200 spec 7167 eps=0.012", "ffnnSIGMOID__Point_6x200.onnx",
     "mnist_spec_idx_7167_eps_0.01200.vnnlib", "eran"),
]
# anchors §5.4: sampled lower bound and auto_LiRPA (0.7.1, float64) as measured there
ANCHORS = {
    "mnist-net_256x2 prop_0 eps=0.03": dict(sampled=7.08, lirpa=384.8, lirpa_s=9.1, old=413.9),
    "mnist-net_256x2 prop_0 eps=0.05": dict(sampled=20.84, lirpa=781.3, lirpa_s=10.3, old=785.7),
    "ACAS Xu 1_1 prop_1": dict(sampled=1.26, lirpa=277154.0, lirpa_s=9.3, old=2362844.0),
    "ERAN sigmoid 6x200 spec 7167 eps=0.012": dict(sampled=91.1, lirpa=563482.0, lirpa_s=156.8,
                                                   old=2134250.0),
}
ACTS = {"Relu", "Sigmoid", "Tanh"}


def load_instance(onnx_path: Path, vnnlib_path: Path):
    """(net, box shaped as the net's input)."""
    net = bp.load(onnx_path)
    shape = tuple(net.input_shape)
    n_in, n_out = int(np.prod(shape)), int(np.prod(net.output_shape))
    b = load_vnnlib(vnnlib_path, n_in, n_out).boxes[0]
    lo = np.asarray(b.lower, float).reshape(shape)
    hi = np.asarray(b.upper, float).reshape(shape)
    return net, bp.Box(lo, hi)


def dense_chain(net):
    """The network as [(W, b, activation after it or None)], each affine stretch of the IR
    (scale-shift, reshape, dense…) collapsed into one (W, b) by evaluating it at 0 and at the
    unit vectors. Raises ValueError on a graph that is not a chain of affine ops and
    ReLU/sigmoid/tanh."""
    nodes = net.nodes
    for k, n in enumerate(nodes[1:], 1):
        if list(n.inputs) != [k - 1]:
            raise ValueError("not a chain")
    out, seg, shape = [], [], tuple(nodes[0].shape)

    def close(act):
        n_in = int(np.prod(shape))
        X = np.concatenate([np.zeros((1, n_in)), np.eye(n_in)]).reshape(n_in + 1, *shape)
        for op in seg:
            X = op.evaluate(X)
        Y = X.reshape(n_in + 1, -1)
        out.append((np.ascontiguousarray((Y[1:] - Y[0]).T), Y[0].copy(), act))

    for n in nodes[1:]:
        if n.op.kind in ACTS:
            close(n.op.kind)
            seg, shape = [], tuple(n.shape)
        elif getattr(n.op, "family", "") == "activation":
            raise ValueError(f"activation {n.op.kind} not handled")
        else:
            seg.append(n.op)
    close(None)
    return out


def lirpa_case(tmp: Path, net, box) -> tuple[Path, str]:
    """The npz for _lirpa_jacobian_side.py and the cache key (sha256 of layers and box)."""
    chain = dense_chain(net)
    lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
    x0 = (lo + hi) / 2
    arrs = dict(lo=lo, hi=hi, x0=x0, y0=net(x0.reshape(net.input_shape)).reshape(-1),
                acts=np.array([a for _, _, a in chain[:-1]]), dtype=np.array("float64"))
    h = hashlib.sha256()
    for k, (W, b, _) in enumerate(chain):
        arrs[f"W{k}"], arrs[f"b{k}"] = W, b
        h.update(W.tobytes() + b.tobytes())
    h.update(lo.tobytes() + hi.tobytes())
    path = tmp / "case.npz"
    np.savez(path, **arrs)
    return path, h.hexdigest()[:16]


def run_lirpa(py: str, case: Path, timeout: float) -> dict:
    out = case.with_suffix(".json")
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    try:
        p = subprocess.run([py, str(HERE / "_lirpa_jacobian_side.py"), str(case), str(out)],
                           capture_output=True, text=True, timeout=timeout)
        err = (p.stderr.strip().splitlines() or ["?"])[-1][:200] if p.returncode else None
    except subprocess.TimeoutExpired:
        err = f"timeout ({timeout:g} s)"
    res = json.loads(out.read_text()) if out.exists() else {}
    res["wall_s"] = time.perf_counter() - t
    if err:
        res["error"] = err
    return res


def cached_lirpa(args, name: str, net, box, cache: dict) -> dict | None:
    """auto_LiRPA's ℓ∞ result for one instance: from the cache when its key matches (and no
    --rerun-lirpa), else measured (unless --no-lirpa or no venv) and cached."""
    with tempfile.TemporaryDirectory() as td:
        try:
            case, key = lirpa_case(Path(td), net, box)
        except ValueError as e:
            return {"error": f"not a dense chain: {e}"}
        hit = cache.get(name)
        if hit and hit.get("key") == key and (hit.get("complete") or args.no_lirpa) \
                and not args.rerun_lirpa:
            return dict(hit, cached=True)
        if args.no_lirpa or not Path(args.lirpa_python).exists():
            return {"key": key, "error": "not run (--no-lirpa or no venv), not cached"}
        print(f"  auto_LiRPA on {name} …", file=sys.stderr, flush=True)
        res = dict(run_lirpa(args.lirpa_python, case, args.timeout), key=key)
    if "lipschitz" in res:  # a partial run (killed or timed out) is cached as such
        cache[name] = res
        CACHE.write_text(json.dumps(cache, indent=1) + "\n")
    return res


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def certified(net, box, norm: str, budget: float) -> dict:
    """The certified engine's value (n/a until boundprop.lipschitz is on this branch)."""
    if local_lipschitz is None:
        return {"value": None, "note": "n/a: boundprop.lipschitz.local_lipschitz not on this "
                "branch"}
    try:
        r, dt = timed(lambda: local_lipschitz(net, box, norm=norm, time_budget=budget))
    except Exception as e:  # noqa: BLE001 - reported in the table
        return {"value": None, "note": f"error: {type(e).__name__}: {e}"[:200]}
    return {"value": float(r.upper), "lower": float(r.lower), "seconds": dt,
            "elapsed_s": float(r.elapsed_s), "domains": int(r.domains)}


def fill_lirpa(r: dict, lirpa: dict) -> None:
    """auto_LiRPA's columns of a row (ℓ∞ Lipschitz) from its result or cache entry."""
    r["lirpa_key"] = lirpa.get("key")
    if "lipschitz" in lirpa:
        r["auto_LiRPA"] = {k: lirpa.get(k) for k in (
            "lipschitz", "seconds", "per_output", "build_s", "versions", "dtype",
            "complete", "cached", "rebuild_max_abs_diff", "error", "note")}
        r["ratio_lirpa_lower"] = lirpa["lipschitz"] / r["lower"]
    else:
        r["auto_LiRPA"] = {"error": lirpa.get("error", "?")}


def instance_rows(args, name, net, box, cache) -> list[dict]:
    rows = []
    anchor = ANCHORS.get(name, {})
    smooth = not any(n.op.kind == "Relu" for n in net.nodes)
    lirpa = cached_lirpa(args, name, net, box, cache)
    for norm in ("inf", "2"):
        (val, x, row), search_s = timed(lambda norm=norm: jacobian_norm_lower(
            net, box, norm, args.budget, seed=0))
        pair = pair_quotient(net, box, x.reshape(-1), norm, row)
        cert = certified(net, box, norm, args.cert_budget)
        c, old_s = timed(lambda norm=norm: bp.certify(net, box, norm=norm))
        r = {"instance": name, "quantity": "lipschitz", "norm": norm,
             "lower": val, "lower_row": row, "lower_pair_quotient": pair,
             "lower_search_s": search_s, "certified": cert,
             "ratio_certified_lower": (cert["value"] / val if cert.get("value") else None),
             "old_boundprop": float(c.lipschitz), "old_boundprop_s": old_s,
             "ratio_old_lower": float(c.lipschitz) / val,
             "anchor_sampled_lower": anchor.get("sampled") if norm == "inf" else None}
        if norm == "inf" and lirpa:
            fill_lirpa(r, lirpa)
        rows.append(r)
        print(f"  {name} ℓ{norm}: lower {val:.4g} ({search_s:.0f} s), old {c.lipschitz:.4g}",
              file=sys.stderr, flush=True)
        if smooth:
            lo_L = smoothness_lower(net, box, norm, args.budget / 3, seed=0,
                                    points=[x.reshape(-1)])
            rows.append({"instance": name, "quantity": "smoothness", "norm": norm,
                         "lower": lo_L, "certified": {"value": None, "note": "n/a"},
                         "old_boundprop": float(c.smoothness),
                         "ratio_old_lower": float(c.smoothness) / lo_L if lo_L else None})
    return rows


def fmt(x, digits=4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:,.{digits}g}" if abs(x) < 1e5 else f"{x:.3e}"


def markdown(rows, st) -> list[str]:
    lines = [
        "Local Lipschitz constants on the anchors' instances (issue 15). ℓ∞: max_i sup_{x∈box} "
        "‖∇f_i(x)‖₁; ℓ2: sup_{x∈box} ‖J(x)‖₂; smoothness L: Lipschitz constant of J on the box "
        "(same norm).", "",
        "*lower*: best ‖J(x)‖ found by boundprop.audit.jacobian_search at a point x of the box "
        "(exact Jacobian of the float64 IR; the pair quotient column is the same value as a "
        "difference quotient of two points of the box) — every value is a true lower bound. "
        "*certified*: boundprop.lipschitz.local_lipschitz. *old*: bp.certify(net, box, "
        "norm).lipschitz / .smoothness. auto_LiRPA: its Jacobian bound (JacobianOP + GradNorm(1), "
        f"one compute_jacobian_bounds per output row, time summed: the anchors' single times "
        f"are one row's), {st.get('lirpa')}; see the JSON's auto_LiRPA "
        "entries for per-row values and whether the run had the machine to itself.", "",
        "| instance | quantity | norm | lower (search s) | pair quotient | anchors' sampled | "
        "certified (s) | certified/lower | auto_LiRPA (s) | auto_LiRPA/lower | old boundprop (s) "
        "| old/lower |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["certified"]
        cert = fmt(c.get("value")) + (f" ({c['seconds']:.1f})" if c.get("seconds") else "")
        lr = r.get("auto_LiRPA") or {}
        if "lipschitz" in lr:
            lir = f"{fmt(lr['lipschitz'])} ({lr['seconds']:.1f})"
            if not lr.get("complete"):
                lir = f"≥ {lir}, {len(lr['per_output'])} rows only"
        else:
            lir = lr.get("error", "—") if lr else "—"
        low = fmt(r["lower"]) + (f" ({r['lower_search_s']:.0f})" if "lower_search_s" in r
                                 else "")
        old = fmt(r["old_boundprop"]) + (f" ({r['old_boundprop_s']:.1f})"
                                        if "old_boundprop_s" in r else "")
        lines.append(
            f"| {r['instance']} | {r['quantity']} | {r['norm']} | {low} | "
            f"{fmt(r.get('lower_pair_quotient'))} | {fmt(r.get('anchor_sampled_lower'))} | "
            f"{cert} | {fmt(r.get('ratio_certified_lower'), 3)} | {lir} | "
            f"{fmt(r.get('ratio_lirpa_lower'), 3)} | {old} | {fmt(r.get('ratio_old_lower'), 3)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lirpa-python", default=os.environ.get("BOUNDPROP_LIRPA_PYTHON",
                                                             DEFAULT_VENV))
    ap.add_argument("--no-lirpa", action="store_true",
                    help="never run auto_LiRPA (its columns come from the cache only)")
    ap.add_argument("--rerun-lirpa", action="store_true", help="ignore the cache")
    ap.add_argument("--eran-dir", default=os.environ.get("BOUNDPROP_ERAN_DIR", DEFAULT_ERAN))
    ap.add_argument("--budget", type=float, default=30.0,
                    help="seconds of lower-bound search per instance and norm")
    ap.add_argument("--cert-budget", type=float, default=0.0,
                    help="time_budget passed to local_lipschitz")
    ap.add_argument("--timeout", type=float, default=3600.0,
                    help="seconds for auto_LiRPA on one instance (all output rows)")
    ap.add_argument("--only", nargs="+", help="instances whose name contains any of these")
    ap.add_argument("--out", default=str(OUT), help="writes OUT.json and OUT.md")
    ap.add_argument("--refresh-lirpa", action="store_true",
                    help="only refill auto_LiRPA's columns of OUT.json from the cache (rows "
                         "whose key matches) and rewrite OUT.json/.md; nothing is measured")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    if args.refresh_lirpa:
        doc = json.loads(Path(args.out + ".json").read_text())
        for r in doc["rows"]:
            hit = cache.get(r["instance"])
            if r["quantity"] == "lipschitz" and r["norm"] == "inf" and hit \
                    and hit.get("key") == r.get("lirpa_key"):
                fill_lirpa(r, dict(hit, cached=True))
        write(args, doc["rows"], doc["settings"], doc["wall_s"], doc["command"])
        return
    rows = []
    for name, onnx_rel, vnn_rel, where in INSTANCES:
        if args.only and not any(s.lower() in name.lower() for s in args.only):
            continue
        base = VNN if where == "vnn" else Path(args.eran_dir)
        onnx_path, vnn_path = base / onnx_rel, base / vnn_rel
        if not (onnx_path.exists() and vnn_path.exists()):
            print(f"skipped {name}: {onnx_path} or {vnn_path} absent", file=sys.stderr)
            continue
        net, box = load_instance(onnx_path, vnn_path)
        rows += instance_rows(args, name, net, box, cache)
    lv = next((r["auto_LiRPA"]["versions"] for r in rows
               if "versions" in (r.get("auto_LiRPA") or {})), None)
    st = {"lirpa": (f"auto_LiRPA {lv['auto_LiRPA']}, torch {lv['torch']}, float64, CPU, 2 threads"
                    if lv else "auto_LiRPA not run"),
          "search_budget_s": args.budget, "certified_engine": local_lipschitz is not None,
          "boundprop_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True,
                                             cwd=ROOT).stdout.strip() or None,
          "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    wall = time.perf_counter() - t0
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)]
                               + sys.argv[1:])
    write(args, rows, st, wall, cmd)


def write(args, rows, st, wall, cmd) -> None:
    md = markdown(rows, st) + ["", f"Command: `{cmd}`. Total wall time of this run: {wall:.0f} "
                                   "s (auto_LiRPA's times are from its own run, cached)."]
    print("\n".join(md))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(
        {"command": cmd, "wall_s": wall, "settings": st, "anchors": ANCHORS, "rows": rows},
        indent=1) + "\n")
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {os.path.relpath(args.out, ROOT)}.json and .md", file=sys.stderr)


if __name__ == "__main__":
    main()
