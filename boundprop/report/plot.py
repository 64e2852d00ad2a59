"""Plots of a report (B, ℓ, L of every node across depth) and of a comparison (ℓ, L, B per
model), as PNG bytes: log scale, with ∞ and 0 drawn in bands at the top and bottom edges.

matplotlib is the optional extra ``boundprop[plot]``; it is imported when a plot is drawn
(lazily: it is heavy and may be missing), with the Agg canvas and no pyplot, so its global
state is never touched."""

from __future__ import annotations

import io
import math
import os

from boundprop.report.data import cert_number, fmt_number, layer_entries, load_certificate

PLOT_NOTE = "plot unavailable: pip install 'boundprop[plot]'"

# (certificate key, symbol, meaning, colour, marker) of the plotted series.
SERIES = (("bound", "B", "bound on ‖node output‖", "#1f77b4", "s"),
          ("lipschitz", "ℓ", "Lipschitz constant", "#ff7f0e", "o"),
          ("smoothness", "L", "smoothness constant", "#2ca02c", "D"))


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (the optional extra ``boundprop[plot]``)."""


def figure_classes():
    """matplotlib's Figure and Agg canvas, without pyplot (no global backend change)."""
    try:  # lazy: matplotlib is heavy and optional (see the module docstring)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(PLOT_NOTE) from None
    return Figure, FigureCanvasAgg


def _png(fig, canvas_cls) -> bytes:
    """The figure drawn on the Agg canvas, as PNG bytes (no timestamp or software tag)."""
    canvas_cls(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight",
                metadata={"Software": None})
    return buf.getvalue()


def _log_limits(values: list[float]) -> tuple[float, float]:
    """y limits (log scale) leaving bands at the top (∞) and bottom (0) of the axes: finite
    positive data occupy [8 %, 92 %] of the height."""
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not pos:
        return 0.1, 10.0
    lo, hi = math.log10(min(pos)), math.log10(max(pos))
    span = max(hi - lo, 1.0)
    mid = (lo + hi) / 2
    lo, hi = mid - span / 2, mid + span / 2
    total = span / 0.84
    return 10 ** (lo - 0.08 * total), 10 ** (hi + 0.08 * total)


def _edge_bands(ax, has_inf: bool, has_zero: bool) -> None:
    """Shade the top (∞) and bottom (0) bands, label them on the right, and keep the y ticks
    (decades) out of them so no tick value sits where a marker means ∞ or 0."""
    # lazy: matplotlib is heavy and optional (see the module docstring)
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullLocator

    if has_inf:
        ax.add_patch(Rectangle((0, 0.94), 1, 0.06, transform=ax.transAxes, color="#f6e0e0",
                               zorder=0, lw=0))
        ax.text(1.006, 0.97, "∞", transform=ax.transAxes, ha="left", va="center",
                fontsize=12, color="#a00")
    if has_zero:
        ax.add_patch(Rectangle((0, 0), 1, 0.06, transform=ax.transAxes, color="#e8e8e8",
                               zorder=0, lw=0))
        ax.text(1.006, 0.03, "0", transform=ax.transAxes, ha="left", va="center",
                fontsize=10, color="#444")
    lo, hi = (math.log10(v) for v in ax.get_ylim())
    decades = [d for d in range(math.floor(lo), math.ceil(hi) + 1)
               if 0.07 <= (d - lo) / (hi - lo) <= 0.93]
    step = max(1, math.ceil(len(decades) / 12))
    ax.yaxis.set_major_locator(FixedLocator([10.0 ** d for d in decades[::step]]))
    ax.yaxis.set_major_formatter(LogFormatterSciNotation())
    if step > 1 or len(decades) > 8:
        ax.yaxis.set_minor_locator(NullLocator())


def layer_plot_png(cert: str | os.PathLike | dict) -> bytes:
    """PNG of B, ℓ, L of every node across depth (log scale; ∞ and 0 drawn as markers in bands
    at the top and bottom edges). Raises :class:`PlotUnavailable` without matplotlib."""
    Figure, Canvas = figure_classes()
    # lazy: matplotlib is heavy and optional (see the module docstring)
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    doc = load_certificate(cert)
    layers = layer_entries(doc)
    n = len(layers)
    names = [str(lc.get("node", k)) for k, lc in enumerate(layers)]
    fig = Figure(figsize=(max(7.0, min(18.0, 2.5 + 0.32 * n)), 4.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_yscale("log")
    every = [cert_number(lc.get(key)) for lc in layers for key, *_ in SERIES]
    ax.set_ylim(*_log_limits(every))
    ax.set_xlim(-0.6, max(n - 1, 0) + 0.6)
    band = blended_transform_factory(ax.transData, ax.transAxes)
    handles, has_inf, has_zero, has_missing = [], False, False, False
    for j, (key, sym, meaning, color, marker) in enumerate(SERIES):
        vals = [cert_number(lc.get(key)) for lc in layers]
        ys = [v if v is not None and math.isfinite(v) and v > 0 else math.nan for v in vals]
        ax.plot(range(n), ys, color=color, marker=marker, ms=4.5, lw=1.6, zorder=3)
        dx = (j - 1) * 0.18
        infs = [k for k, v in enumerate(vals) if v is not None and math.isinf(v)]
        zeros = [k for k, v in enumerate(vals) if v == 0]
        has_missing |= any(v is None for v in vals)
        if infs:
            has_inf = True
            ax.plot([k + dx for k in infs], [0.97] * len(infs), transform=band, ls="none",
                    marker="^", ms=6, color=color, clip_on=False, zorder=4)
        if zeros:
            has_zero = True
            ax.plot([k + dx for k in zeros], [0.03] * len(zeros), transform=band, ls="none",
                    marker="v", ms=6, color=color, clip_on=False, zorder=4)
        handles.append(Line2D([], [], color=color, marker=marker, lw=1.6,
                              label=f"{sym}: {meaning}"))
    _edge_bands(ax, has_inf, has_zero)
    if has_inf:
        handles.append(Line2D([], [], ls="none", marker="^", color="#666",
                              label="in the top band: infinite"))
    if has_zero:
        handles.append(Line2D([], [], ls="none", marker="v", color="#666",
                              label="in the bottom band: exactly 0"))
    if has_missing:
        handles.append(Line2D([], [], ls="none", label="(missing values omitted)"))
    step = max(1, math.ceil(n / 60))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{k} {names[k]}" for k in ticks], rotation=60, ha="right",
                       rotation_mode="anchor", fontsize=8 if n <= 40 else 6.5)
    ax.set_xlabel("node (topological index)")
    ax.set_ylabel("value (log scale)")
    ax.grid(True, which="major", axis="y", alpha=0.35)
    ax.grid(True, which="major", axis="x", alpha=0.12)
    model = (doc.get("model") or {}).get("path", "model")
    scope = "local" if doc.get("local") else "global"
    norm = {"inf": "∞"}.get(str(doc.get("norm")), str(doc.get("norm", "?")))
    ax.set_title(f"{os.path.basename(str(model))}: B, ℓ, L per node — ℓ{norm} norm, "
                 f"w.r.t. {'parameters' if doc.get('wrt') == 'params' else 'input'}, {scope}",
                 fontsize=10.5)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 0.9), fontsize=8.5,
              frameon=False)
    return _png(fig, Canvas)


def comparison_plot_png(rows: list[dict]) -> bytes:
    """Grouped bar chart (log scale) of ℓ, L, B per model; ∞ bars reach the top band, hatched."""
    Figure, Canvas = figure_classes()
    # lazy: matplotlib is heavy and optional (see the module docstring)
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    n = len(rows)
    fig = Figure(figsize=(max(6.0, min(16.0, 2.0 + 1.6 * n)), 4.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_yscale("log")
    keys = (("lipschitz", "ℓ (Lipschitz)", "#ff7f0e"), ("smoothness", "L (smoothness)",
                                                        "#2ca02c"),
            ("bound", "B (bound)", "#1f77b4"))
    lo, hi = _log_limits([cert_number(r.get(k)) for r in rows for k, *_ in keys])
    ax.set_ylim(lo, hi)
    band = blended_transform_factory(ax.transData, ax.transAxes)
    width = 0.26
    has_inf = has_zero = False
    for j, (key, _label, color) in enumerate(keys):
        for i, r in enumerate(rows):
            x = i + (j - 1) * width
            v = cert_number(r.get(key))
            if v is None:
                ax.text(x, 0.03, "n/a", transform=band, ha="center", fontsize=7)
            elif math.isinf(v):
                has_inf = True
                top = 10 ** (math.log10(lo) + 0.94 * (math.log10(hi) - math.log10(lo)))
                ax.bar(x, top - lo, bottom=lo, width=width, color=color, alpha=0.45,
                       hatch="//", edgecolor=color)
                ax.text(x, 0.97, "∞", transform=band, ha="center", va="center", fontsize=11)
            elif v <= 0:
                has_zero = True
                ax.text(x, 0.03, "0", transform=band, ha="center", va="center", fontsize=9)
            else:
                ax.bar(x, v - lo, bottom=lo, width=width, color=color)
                ax.text(x, v * (hi / lo) ** 0.012, fmt_number(v, 3), ha="center", va="bottom",
                        fontsize=7, rotation=90 if n > 4 else 0)
    _edge_bands(ax, has_inf, has_zero)
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(r.get("model", "?")) for r in rows], rotation=20 if n > 2 else 0,
                       ha="right" if n > 2 else "center", fontsize=8.5)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylabel("value (log scale)")
    ax.grid(True, axis="y", alpha=0.35)
    first = rows[0] if rows else {}
    ax.set_title(f"ℓ, L, B per model — {first.get('norm_text', '')}, {first.get('scope', '')}",
                 fontsize=10.5)
    handles = [Patch(color=c, label=lab) for _, lab, c in keys]
    if has_inf:
        handles.append(Patch(facecolor="white", edgecolor="#666", hatch="//",
                             label="hatched to the top band: infinite"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 0.9), fontsize=8.5,
              frameon=False)
    return _png(fig, Canvas)
