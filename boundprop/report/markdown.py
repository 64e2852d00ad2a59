"""The plain-text and Markdown reports (the Markdown one links its plot as a PNG file)."""

from __future__ import annotations

from boundprop.report.data import (
    LAYER_HEAD,
    audit_rows,
    formulas,
    global_facts,
    layer_entries,
    layer_rows,
    output_bound_rows,
    wrt_text,
)
from boundprop.report.verdicts import verdict_lines


def text_table(head: tuple[str, ...], rows: list[tuple[str, ...]],
               right: set[int] | None = None) -> list[str]:
    """Lines of an aligned plain-text table; columns in ``right`` right-aligned."""
    right = right or set()
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    last = len(head) - 1

    def line(cells):
        parts = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            if i == last and i not in right:
                parts.append(c)
            else:
                parts.append(c.rjust(w) if i in right else c.ljust(w))
        return "  ".join(parts).rstrip()

    return [line(head)] + [line(r) for r in rows]


def render_text(doc, check, audit, max_outputs) -> str:
    """The plain-text report of the certificate document ``doc``."""
    model = (doc.get("model") or {}).get("path", "?")
    lines = [f"boundprop certificate report: {model}", ""]
    w = max(len(k) for k, _ in global_facts(doc))
    lines += [f"  {k.ljust(w)}  {v}" for k, v in global_facts(doc)]
    verdicts = verdict_lines(check, audit)
    if verdicts:
        lines += ["", "verdicts:"] + [f"  {k}: {v}" for k, v in verdicts]
    out_rows, n_out = output_bound_rows(doc, max_outputs)
    if n_out:
        lines += ["", f"output bounds ({n_out} outputs"
                  + (f", first {len(out_rows)} shown" if n_out > len(out_rows) else "") + "):"]
        lines += ["  " + s for s in text_table(("#", "lower", "upper", "width"), out_rows,
                                               {0, 1, 2, 3})]
    lines += ["", f"per layer ({len(layer_entries(doc))} nodes; ℓφ, Lφ: the op's own constants; "
              f"ℓ, L, B: of the node's output as a function of {wrt_text(doc)}):"]
    lines += ["  " + s for s in text_table(LAYER_HEAD, layer_rows(doc),
                                           {0, 4, 5, 6, 7, 8, 9})]
    if audit is not None:
        rows, _ = audit_rows(audit)
        if rows:
            lines += ["", "audit (certified vs empirical lower bound):"]
            lines += ["  " + s for s in text_table(
                ("quantity", "certified", "empirical", "ratio", "violated"), rows, {1, 2, 3})]
    return "\n".join(lines) + "\n"


def md_cell(text: str) -> str:
    """Text safe in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(head, rows, right: set[int] | None = None) -> list[str]:
    """Lines of a Markdown table; columns in ``right`` right-aligned."""
    right = right or set()
    out = ["| " + " | ".join(md_cell(h) for h in head) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
    return out


def render_md(doc, check, audit, max_outputs, plot_link, plot_note) -> str:
    """The Markdown report; the plot linked as ``plot_link``, or ``plot_note`` without one."""
    model = (doc.get("model") or {}).get("path", "?")
    lines = [f"# boundprop certificate report: `{model}`", ""]
    lines += md_table(("", ""), [(f"**{k}**", v) for k, v in global_facts(doc)])
    verdicts = verdict_lines(check, audit)
    if verdicts:
        lines += ["", "## Verdicts", ""] + [f"- **{k}**: {v}" for k, v in verdicts]
    lines += ["", "## B, ℓ, L across depth", ""]
    lines += [f"![B, ℓ, L per node, log scale]({plot_link})" if plot_link else f"*{plot_note}*"]
    out_rows, n_out = output_bound_rows(doc, max_outputs)
    if n_out:
        lines += ["", "## Output bounds", "",
                  f"{n_out} outputs" + (f", first {len(out_rows)} shown" if n_out >
                                        len(out_rows) else "") + ".", ""]
        lines += md_table(("#", "lower", "upper", "width"), out_rows, {0, 1, 2, 3})
    lines += ["", "## Per layer", "",
              f"ℓφ, Lφ: the op's own constants; ℓ, L, B: of the node's output as a function of "
              f"{wrt_text(doc)}; width: largest interval width of the node's output.", ""]
    lines += md_table(LAYER_HEAD, layer_rows(doc), {0, 4, 5, 6, 7, 8, 9})
    if audit is not None:
        rows, _ = audit_rows(audit)
        if rows:
            lines += ["", "## Audit", ""]
            lines += md_table(("quantity", "certified", "empirical", "ratio", "violated"),
                              rows, {1, 2, 3})
    forms = formulas(doc)
    if forms:
        lines += ["", "<details><summary>Symbolic formulas</summary>", "", "```"]
        lines += [f"{k} = {v}" for k, v in forms] + ["```", "", "</details>"]
    return "\n".join(lines) + "\n"
