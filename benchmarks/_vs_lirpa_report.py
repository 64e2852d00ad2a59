"""The markdown table of benchmarks/vs_auto_lirpa.py: cells, width ratios, their geometric
means, and the list of bounds where boundprop is looser than auto_LiRPA."""

from __future__ import annotations

import math

import numpy as np

BP_METHODS = ("interval", "linear", "alpha")
LIRPA_METHODS = ("IBP", "CROWN", "alpha-CROWN")
# (column title, boundprop method, auto_LiRPA method): width ratios boundprop / auto_LiRPA
RATIOS = (("int/IBP", "interval", "IBP"), ("lin/CROWN", "linear", "CROWN"),
          ("lin/α-CROWN", "linear", "alpha-CROWN"), ("α/α-CROWN", "alpha", "alpha-CROWN"))
# (boundprop method, auto_LiRPA method) pairs checked bound by bound for "boundprop looser"
LOOSER = (("linear", "CROWN"), ("alpha", "alpha-CROWN"), ("interval", "IBP"))
REL_TOL = 1e-6


def ms(s: float) -> str:
    return f"{1e3 * s:.3g} ms" if s < 1 else f"{s:.3g} s"


def cell(r, vnn: bool) -> str:
    """'w 1.5 · m −0.62 (5/9) · 13 ms' (width, lowest margin and rows proven, seconds)."""
    if r is None:
        return "—"
    if not isinstance(r, dict):
        return str(r)
    if "error" in r:
        return f"error: {r['error'][:60]}"
    q = f"w {r['mean_width']:.4g}"
    if vnn:
        q += f" · m {r['lowest_margin']:+.4g} ({r['proven']}/{r['rows']})"
    return f"{q} · {ms(r['seconds'])}"


def ok(r) -> bool:
    return isinstance(r, dict) and "mean_width" in r and math.isfinite(r["mean_width"])


def ratio(a, b) -> float | None:
    if not (ok(a) and ok(b)) or b["mean_width"] <= 0:
        return None
    return a["mean_width"] / b["mean_width"]


def ratios(row: dict) -> dict:
    bp, lr = row["boundprop"], row.get("auto_LiRPA") or {}
    return {t: ratio(bp.get(m), lr.get(p)) for t, m, p in RATIOS}


def geomeans(rows: list[dict]) -> dict:
    """Per ratio column: geometric mean over the rows that have it, and how many."""
    out = {}
    for t, _, _ in RATIOS:
        v = [r["ratios"][t] for r in rows if r["ratios"].get(t)]
        out[t] = {"geomean": float(np.exp(np.mean(np.log(v)))) if v else None, "n": len(v)}
    return out


def looser(bp_r, l_r) -> dict | None:
    """Bounds (lower and upper of every output / C·y row) where boundprop's is looser than
    auto_LiRPA's beyond a relative 1e-6: how many, of how many, and the largest gap."""
    if not (ok(bp_r) and ok(l_r)):
        return None
    lu, ll = np.asarray(l_r["upper"], float), np.asarray(l_r["lower"], float)
    gap = np.concatenate([np.asarray(bp_r["upper"], float) - lu,
                          ll - np.asarray(bp_r["lower"], float)])
    scale = np.concatenate([1 + np.abs(lu), 1 + np.abs(ll)])
    bad = gap > REL_TOL * scale
    return {"looser": int(bad.sum()), "of": len(gap),
            "max_gap": float(gap[bad].max()) if bad.any() else 0.0}


def suspicious(rows: list[dict]) -> list[dict]:
    """Rows where a boundprop method's mean width exceeds its auto_LiRPA counterpart's or some
    bound of it is looser, with the figures."""
    out = []
    for r in rows:
        lr = r.get("auto_LiRPA") or {}
        for m, p in LOOSER:
            lo = looser(r["boundprop"].get(m), lr.get(p))
            rt = ratio(r["boundprop"].get(m), lr.get(p))
            if lo and (lo["looser"] or (rt and rt > 1 + REL_TOL)):
                nb = r.get("linear_unlimited_budget") if m == "linear" else None
                out.append({"case": r["case"], "boundprop": m, "auto_LiRPA": p,
                            "width_ratio": rt, **lo, "unlimited_budget": nb and {
                                k: nb.get(k) for k in ("ratio_vs_CROWN", "seconds", "error",
                                                       "lowest_margin", "proven")}})
    return out


def fmt_ratio(v) -> str:
    return "—" if v is None else f"{v:.3g}"


def table(rows: list[dict], bp_methods: list[str]) -> list[str]:
    head = (["model", "set"] + [f"bp {m}" for m in bp_methods] + list(LIRPA_METHODS)
            + [t for t, m, _ in RATIOS if m in bp_methods] + ["bp load · LiRPA conversion"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vnn = r["vnnlib"] is not None
        lr = r.get("auto_LiRPA") or {}
        cells = [r["case"], r["set"]] + [cell(r["boundprop"].get(m), vnn) for m in bp_methods]
        conv = lr.get("conversion")
        if conv is None or not conv.startswith("ok"):
            cells += [conv or "not run", "", ""]
        else:
            cells += [cell(lr.get(m), vnn) for m in LIRPA_METHODS]
        cells += [fmt_ratio(r["ratios"][t]) for t, m, _ in RATIOS if m in bp_methods]
        conv_s = lr.get("onnx2torch_s", 0) + lr.get("bounded_module_s", 0)
        cells.append(f"{ms(r['load_s'])} · " + (ms(conv_s) if conv_s else "—"))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    g = geomeans(rows)
    foot = (["**geometric mean**", ""] + [""] * (len(bp_methods) + 3)
            + [f"**{fmt_ratio(g[t]['geomean'])}** (n={g[t]['n']})"
               for t, m, _ in RATIOS if m in bp_methods] + [""])
    lines.append("| " + " | ".join(foot) + " |")
    return lines


def suspicious_lines(sus: list[dict]) -> list[str]:
    if not sus:
        return ["No bound of boundprop is looser than its auto_LiRPA counterpart."]
    lines = ["| model | boundprop | auto_LiRPA | width ratio | bounds looser | max gap "
             "| linear without work budget: ratio to CROWN · time |", "|" + "---|" * 7]
    for s in sus:
        nb = s.get("unlimited_budget")
        nb_cell = "" if not nb else (nb["error"] if nb.get("error") else
                                     f"{fmt_ratio(nb['ratio_vs_CROWN'])} · {ms(nb['seconds'])}")
        lines.append(f"| {s['case']} | {s['boundprop']} | {s['auto_LiRPA']} | "
                     f"{fmt_ratio(s['width_ratio'])} | {s['looser']}/{s['of']} | "
                     f"{s['max_gap']:.3g} | {nb_cell} |")
    return lines


def memory_lines(mem: list[dict]) -> list[str]:
    if not mem:
        return []
    lines = ["| model | tool · method | seconds | process peak RSS MB | bound computation MB |",
             "|---|---|---|---|---|"]
    for m in mem:
        if "error" in m:
            lines.append(f"| {m['case']} | {m['tool']} · {m['method']} | {m['error']} | | |")
            continue
        lines.append(f"| {m['case']} | {m['tool']} · {m['method']} | {m['seconds']:.3g} | "
                     f"{m['peak_mb']:.0f} | {m['delta_mb']:+.0f} |")
    return lines
