"""Chord vs tangent relaxations of the smooth activations: relaxation areas and output widths.

    python benchmarks/smooth_relaxations.py [--json OUT.json] [--quick]

Relaxations (``Activation.relaxation_candidates``): "chord" is today's ``relaxation()`` (chord
slope for both lines, exact offsets); "tangent" is CROWN's tangent-based choice
(``tangent_relaxation_slopes``, same exact offsets). Areas are ∫_l^u (upper − lower) per
neuron; "best" is the smaller of the two per neuron, "best lines" the tighter lower line and
the tighter upper line per neuron, possibly from different candidates (each line is valid on
its own, so the pair is sound).

1. Random boxes on Sigmoid, Tanh, Softplus, GELU, ELU: area ratios to the chord (mean of the
   per-neuron ratios, ratio of the summed areas), split by where [l, u] lies (one convex or
   concave piece / across one inflection / across two).
2. Shipped smooth MLPs (declared input sets) and a seeded 784-200×6-10 sigmoid MLP (ℓ∞ ball
   ε = 0.015 as in vs_auto_lirpa.py): the same areas on each activation's input
   enclosures from today's linear pass, and the mean output width of
   ``output_bounds(method="linear")`` with each relaxation, obtained by monkeypatching
   ``Activation.relaxation_slopes`` (tangent), ``Activation.relaxation`` (best lines) or
   ``BackSubstitution.lower``/``_relaxation`` (max per bound) in
   this process; "max per bound" is the planned integration (every bound, intermediate ones
   too, the max of one back-substitution per candidate: all chord, all tangent), "max3" adds
   a third candidate (the best lines per neuron); "best of runs" intersects the chord and
   tangent output bounds. Every run is
   checked against 2000 sampled inputs (an honest sample beating a bound is a bug).

Results go to benchmarks/results/smooth_relaxations.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boundprop as bp  # noqa: E402
from boundprop.analysis import output_bounds  # noqa: E402
from boundprop.domains.backsub import BackSubstitution  # noqa: E402
from boundprop.ops.activation import Activation  # noqa: E402
from boundprop.ops.smooth import Elu, Gelu, Sigmoid, Softplus, Tanh  # noqa: E402
from boundprop.ops.tangent import tangent_slopes  # noqa: E402
from boundprop.sets import LinfBall, default_input_set  # noqa: E402

MODELS = ["mlp_sigmoid", "mlp_tanh", "mlp_softplus", "mlp_elu", "mlp_gelu", "mlp_gelu_erf",
          "torch_mlp_gelu_dynamo", "torch_mlp_gelu_torchscript"]
OUT = ROOT / "benchmarks" / "results" / "smooth_relaxations.json"
KINDS = ("chord", "tangent", "best_lines", "max_per_bound", "max3_per_bound")
_ORIG_SLOPES = Activation.relaxation_slopes
_ORIG_RELAX = Activation.relaxation
_ORIG_LOWER = BackSubstitution.lower
_ORIG_NODE_RELAX = BackSubstitution._relaxation


def line_integrals(relax, lo, hi):
    """(∫ lower, ∫ upper) over [lo, hi]: (u − l)·(a·m + b), m the midpoint."""
    a_l, b_l, a_u, b_u = relax
    w, m = hi - lo, 0.5 * lo + 0.5 * hi
    return w * (a_l * m + b_l), w * (a_u * m + b_u)


def best_lines(cands, lo, hi):
    """Per neuron, the candidate lower line of largest integral and upper line of smallest."""
    ints = [line_integrals(c, lo, hi) for c in cands]
    il = np.argmax(np.stack([i[0] for i in ints]), axis=0)
    iu = np.argmin(np.stack([i[1] for i in ints]), axis=0)
    pick = lambda k, idx: np.choose(idx, [np.broadcast_to(c[k], lo.shape) for c in cands])  # noqa: E731
    return pick(0, il), pick(1, il), pick(2, iu), pick(3, iu)


def areas(act: Activation, lo, hi) -> dict[str, np.ndarray]:
    cands = act.relaxation_candidates(lo, hi)
    out = {}
    for name, r in zip(("chord", "tangent"), cands + cands[:1] * (2 - len(cands))):
        low, up = line_integrals(r, lo, hi)
        out[name] = up - low
    low, up = line_integrals(best_lines(cands, lo, hi), lo, hi)
    out["best"] = np.minimum(out["chord"], out["tangent"])
    out["best_lines"] = up - low
    return out


def summarize_areas(ar: dict[str, np.ndarray], mask=None) -> dict:
    c = ar["chord"].reshape(-1)
    keep = (c > 0) & np.isfinite(c)
    if mask is not None:
        keep &= mask.reshape(-1)
    if not np.any(keep):
        return {"neurons": 0}
    out = {"neurons": int(np.count_nonzero(keep))}
    for k in ("tangent", "best", "best_lines"):
        v = ar[k].reshape(-1)[keep]
        r = v / c[keep]
        out[k] = {"mean_ratio": float(np.mean(r)), "median_ratio": float(np.median(r)),
                  "sum_ratio": float(v.sum() / c[keep].sum()),
                  "better_share": float(np.mean(r < 1 - 1e-9)),
                  "worse_share": float(np.mean(r > 1 + 1e-9))}
    return out


def where(act: Activation, lo, hi) -> np.ndarray:
    pts, _ = act.inflections()
    return sum((((lo < p) & (p < hi)).astype(int) for p in pts), np.zeros(lo.shape, int))


def random_boxes(n: int) -> dict:
    rng = np.random.default_rng(0)
    acts = {"Sigmoid": Sigmoid((n,)), "Tanh": Tanh((n,)), "Softplus": Softplus((n,)),
            "Gelu": Gelu((n,)), "Elu": Elu((n,), alpha=1.0)}
    c = rng.choice([0.5, 2.0, 8.0], n) * rng.standard_normal(n)
    w = np.exp(rng.uniform(np.log(0.01), np.log(20.0), n))
    lo, hi = (c - w / 2)[None], (c + w / 2)[None]
    out = {"boxes": "centre N(0, s²), s ∈ {0.5, 2, 8}; width log-uniform in [0.01, 20]",
           "n": n}
    for name, act in acts.items():
        ar = areas(act, lo, hi)
        k = where(act, lo, hi)
        out[name] = {"all": summarize_areas(ar), "one_piece": summarize_areas(ar, k == 0),
                     "one_inflection": summarize_areas(ar, k == 1),
                     "two_inflections": summarize_areas(ar, k >= 2)}
    return out


def _tangent_slopes(self, lo, hi):
    chord = _ORIG_SLOPES(self, lo, hi)
    shape = self.inflections()
    if shape is None:
        return chord
    return tangent_slopes(self.fn, self._slope_at, lo, hi, shape[0], shape[1], chord)


def _best_lines_relaxation(self, lo, hi):
    chord = _ORIG_RELAX(self, lo, hi)
    if self.inflections() is None:
        return chord
    tangent = self.relaxation_with_slopes(lo, hi, *_tangent_slopes(self, lo, hi))
    return best_lines([chord, tangent], lo, hi)


def _candidate_relaxation(self, n):
    """Node n's relaxation number ``self._pick`` among its candidates (the last if fewer)."""
    cache = self.__dict__.setdefault("_cands", {})
    if n not in cache:
        cache[n] = self.net.nodes[n].op.linear_relaxation_candidates(*self._boxes(n))
        if _EXTRA["best_lines"] and len(cache[n]) == 2:
            cache[n].append(best_lines(cache[n], *self._boxes(n)[0]))
    c = cache[n]
    return c[min(self.__dict__.get("_pick", 0), len(c) - 1)]


_EXTRA = {"best_lines": False}


def _lower_max(self, target, lam):
    """The integration the lead plans: each bound (intermediate ones too) is the max of the
    back-substitutions through each candidate relaxation (all chord, all tangent; with
    "max3_per_bound" also all best lines)."""
    outs = []
    for k in range(3 if _EXTRA["best_lines"] else 2):
        self._pick = k
        outs.append(_ORIG_LOWER(self, target, lam))
    return np.maximum.reduce(outs)


@contextlib.contextmanager
def patched(kind: str):
    """Activation.relaxation_slopes → tangent (kind "tangent"), Activation.relaxation →
    per-neuron best lines ("best_lines"), or BackSubstitution.lower → max over the candidate
    relaxations ("max_per_bound"); restored on exit."""
    try:
        if kind == "tangent":
            Activation.relaxation_slopes = _tangent_slopes
        elif kind == "best_lines":
            Activation.relaxation = _best_lines_relaxation
        elif kind in ("max_per_bound", "max3_per_bound"):
            BackSubstitution._relaxation = _candidate_relaxation
            BackSubstitution.lower = _lower_max
            _EXTRA["best_lines"] = kind == "max3_per_bound"
        yield
    finally:
        _EXTRA["best_lines"] = False
        Activation.relaxation_slopes = _ORIG_SLOPES
        Activation.relaxation = _ORIG_RELAX
        BackSubstitution._relaxation = _ORIG_NODE_RELAX
        BackSubstitution.lower = _ORIG_LOWER


def random_mlp_net(path: Path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from vs_auto_lirpa import random_mlp

    random_mlp(path, "Sigmoid", seed=0)
    net = bp.load(path)
    x0 = np.random.default_rng(0).uniform(0, 1, net.input_shape)
    return net, LinfBall(x0, 0.015, clip=(0, 1)).fit(net.input_shape)


def samples(s, n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    lo, hi = np.asarray(s.lower, float), np.asarray(s.upper, float)
    t = rng.random((n, *lo.shape))
    t[: n // 4] = np.round(t[: n // 4])  # corners
    return lo + t * (hi - lo)


def model_row(name: str, net, s) -> dict:
    row: dict = {"model": name}
    ys = net(samples(s, 2000))
    runs = {}
    for kind in KINDS:
        with patched(kind):
            t0 = time.perf_counter()
            ob = output_bounds(net, s, method="linear")
            secs = time.perf_counter() - t0
        lo, hi = np.asarray(ob.lower).reshape(-1), np.asarray(ob.upper).reshape(-1)
        y = ys.reshape(len(ys), -1)
        sound = bool(np.all(y >= lo) and np.all(y <= hi))
        if not sound:
            print(f"UNSOUND: {name} {kind}: a sample beats a bound", file=sys.stderr)
        runs[kind] = (lo, hi, ob)
        row[kind] = {"mean_width": float(np.mean(hi - lo)), "seconds": secs,
                     "samples_inside": sound}
    lo = np.maximum(runs["chord"][0], runs["tangent"][0])
    hi = np.minimum(runs["chord"][1], runs["tangent"][1])
    row["best_of_runs"] = {"mean_width": float(np.mean(hi - lo))}
    base = row["chord"]["mean_width"]
    row["width_ratio"] = {k: row[k]["mean_width"] / base
                          for k in KINDS[1:] + ("best_of_runs",)}
    # areas on today's (chord) enclosures of each activation's input
    layers = runs["chord"][2].layers
    per: dict[str, list] = {}
    for node in net.nodes:
        if isinstance(node.op, Activation) and node.op.inflections() is not None:
            lo_i, hi_i = layers[node.inputs[0]]
            ar = areas(node.op, np.asarray(lo_i, float), np.asarray(hi_i, float))
            per.setdefault(node.op.kind, []).append(ar)
    row["areas"] = {k: summarize_areas({n: np.concatenate([a[n].reshape(-1) for a in v])
                                        for n in v[0]}) for k, v in per.items()}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=OUT)
    ap.add_argument("--quick", action="store_true", help="skip the 6×200 MLP")
    args = ap.parse_args()
    res = {"random_boxes": random_boxes(20000), "models": []}
    for name, r in res["random_boxes"].items():
        if isinstance(r, dict):
            a = r["all"]
            print(f"{name:9s} area ratio to chord (mean / sum): tangent "
                  f"{a['tangent']['mean_ratio']:.3f} / {a['tangent']['sum_ratio']:.3f}, best "
                  f"{a['best']['mean_ratio']:.3f} / {a['best']['sum_ratio']:.3f}, best lines "
                  f"{a['best_lines']['mean_ratio']:.3f}")
    cases = [(m, lambda m=m: (lambda n: (n, default_input_set(n).fit(n.input_shape)))(
        bp.load(ROOT / "models" / f"{m}.onnx"))) for m in MODELS]
    if not args.quick:
        cases.append(("random 784-200×6-10 sigmoid ε=0.015",
                      lambda: random_mlp_net(ROOT / "benchmarks" / "_work" /
                                             "smooth_mlp_sigmoid_6x200.onnx")))
    for name, make in cases:
        net, s = make()
        row = model_row(name, net, s)
        res["models"].append(row)
        wr = row["width_ratio"]
        print(f"{name:36s} width chord {row['chord']['mean_width']:.6g}; ratio tangent "
              f"{wr['tangent']:.4f}, best lines {wr['best_lines']:.4f}, max per bound "
              f"{wr['max_per_bound']:.4f}, max3 {wr['max3_per_bound']:.4f}, best of runs "
              f"{wr['best_of_runs']:.4f}; sound "
              f"{all(row[k]['samples_inside'] for k in KINDS)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
