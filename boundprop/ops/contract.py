"""The op contract: the optional rules a primitive may implement, and which ones each declares.

Every primitive class declares ``rules`` (a frozenset of names from :data:`RULES`); drivers ask
``op.has(rule)`` instead of probing for methods, so the matrix primitive × rule printed by
``boundprop ops --rules`` is the whole truth about what each op supports. A rule is declared
exactly when the class provides it (``tests/test_op_conformance.py`` checks this, and checks
each declared rule's soundness on sampled points).
"""

from __future__ import annotations

from boundprop.ops.base import Primitive

# name -> what declaring it promises (the methods in parentheses).
RULES: dict[str, str] = {
    "interval": "sound enclosure of the output on input boxes (interval)",
    "backward_linear": "linear lower bounds rewritten through the op (linear_relaxation, "
                       "linear_relaxation_candidates, backward_linear)",
    "constants": "Lipschitz, smoothness and output-bound rule (constants_rule)",
    "jacobian": "interval enclosure of row·Jacobian on input boxes (jacobian_backward)",
    "ort_interval": "interval rule emitted as onnxruntime nodes (emit_interval_onnx)",
    "vjp": "exact reverse-mode product cotangent·Jacobian at points (vjp)",
    "parametric": "learned weight and bias with the parameter-ball rule (param_structure, "
                  "weight_and_bias, param_vjp)",
    "materialize": "the (out, in) matrix of a linear map when small (materialize)",
    "entry_selection": "each output entry is a copy of a distinct input entry",
    "row_norms": "the squared-entry map A∘A for ℓ2 row norms (sq_linear)",
    "needs_tighter": "which inputs a tighter enclosure would help (needs_tighter)",
    "relaxed_forward": "the linear bound backward_linear used, evaluated at points "
                       "(relaxed_forward: gradients of a bound for the slope optimiser)",
    "curvature": "elementwise y = σ(x) on one input with per-entry Lipschitz constants of σ' "
                 "(|σ''| bounds) on input boxes (smoothness_on)",
    "slope_parameters": "free slopes of the lower and upper lines per entry, any value in "
                        "their ranges sound (slope_ranges, with_slopes)",
    "slope_restriction": "global per-entry bounds α ≤ (σ(a) − σ(b))/(a − b) ≤ β over all "
                         "a ≠ b (slope_restriction: the LipSDP-Neuron chain)",
}

# Short column labels of the matrix.
COLUMN: dict[str, str] = {
    "interval": "int", "backward_linear": "back", "constants": "const", "jacobian": "jac",
    "ort_interval": "ort", "vjp": "vjp", "parametric": "param", "materialize": "mat",
    "entry_selection": "sel", "row_norms": "rows", "needs_tighter": "tight",
    "relaxed_forward": "fwd", "slope_parameters": "slope", "curvature": "curv",
    "slope_restriction": "sr",
}


def declared_rules(cls: type[Primitive]) -> frozenset[str]:
    """The rules ``cls`` declares (unknown names raise: the vocabulary is closed)."""
    unknown = cls.rules - RULES.keys()
    if unknown:
        raise ValueError(f"{cls.__name__} declares unknown rules {sorted(unknown)}")
    return cls.rules


def primitive_classes() -> list[type[Primitive]]:
    """Every concrete primitive class of the registry (the leaves of the Primitive class tree;
    importing ``boundprop.ops`` imports every ops module), sorted by family then name."""
    leaves, todo = [], [Primitive]
    while todo:
        cls = todo.pop()
        subs = cls.__subclasses__()
        if subs:
            todo.extend(subs)
        elif cls.__module__.startswith("boundprop.ops."):
            leaves.append(cls)
    return sorted(set(leaves), key=lambda c: (c.family, c.__name__))


def rules_matrix_rows() -> list[dict]:
    """One dict per primitive class: ``{"primitive", "family", "module", "rules": {rule:
    bool}}`` (the JSON form of :func:`rules_matrix`)."""
    return [{"primitive": cls.__name__, "family": cls.family,
             "module": cls.__module__.rsplit(".", 1)[-1],
             "rules": {r: r in declared_rules(cls) for r in RULES}}
            for cls in primitive_classes()]


def rules_matrix() -> str:
    """A text table: one row per primitive class, one column per rule (headed by its
    :data:`COLUMN` label), ``x`` where declared, ``.`` where not; a legend follows."""
    rows = rules_matrix_rows()
    names = list(RULES)
    short = [COLUMN[n] for n in names]
    first = max(len("primitive"), *(len(r["primitive"]) for r in rows))
    fam = max(len("family"), *(len(r["family"]) for r in rows))
    head = f"{'primitive':<{first}}  {'family':<{fam}}  " + " ".join(short)
    lines = [head, "-" * len(head)]
    for r in rows:
        marks = " ".join(f"{'x' if r['rules'][n] else '.':^{len(s)}}" for n, s in zip(names, short))
        lines.append(f"{r['primitive']:<{first}}  {r['family']:<{fam}}  {marks}")
    lines.append("")
    lines.extend(f"{s:>5}  {n}: {RULES[n]}" for s, n in zip(short, names))
    return "\n".join(lines)
