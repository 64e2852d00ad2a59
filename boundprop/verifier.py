"""Deciding a VNN-LIB property: certified bounds to prove it, a search to refute it.

A property is a list of cases ``(box, unsafe)``; ``unsafe`` is a disjunction of conjunctions
``A·y ≤ b``. An unsafe conjunction is *refuted* on a box when some row k has a certified lower
bound ``min_x A_k·y(x) > b_k`` (strictly: this refutes both ``≤`` and ``<``). The property is
verified iff every conjunction is refuted on every box — and only then. Boxes are widened by one
ulp before bounding, so the file's decimal bounds are covered however parsing rounded them.

Otherwise the unrefuted conjunctions are attacked. First a projected-gradient attack
(:func:`boundprop.attack.pgd`, APGD on the float64 IR) from PGD_RESTARTS points — the box
centre (first round only), the best points met so far and uniform random points —, steered by
smoothed ReLU gradients (τ from PGD_SMOOTHINGS, by round), then by exact gradients (the IR's
reverse rules) from each restart's best point; restarts minimise the score or, with few
conjunctions, one conjunction's margin.
Then random points of the box (uniform and vertices) evaluated as one stack by the float64 IR,
a few projected ascent steps on a finite-difference gradient of the violation score from the
best samples (the only gradient when an op has no reverse rule), (inputs of ≤ 64 values) a
local random search with shrinking radius, and Gauss-Newton on the hinge residual
max(0, A·y − b + δ) of each open conjunction (``boundprop.gn.uses.MarginProblem``; random-
subspace GN for inputs of more than 256 values). Without a timeout this runs once; with one
it restarts (PGD from fresh random points, fresh samples) until the deadline. A candidate
becomes a counterexample only when onnxruntime, run on the candidate rounded to float32 (what
the model computes on), gives an output satisfying every row of one unsafe conjunction *with
no tolerance* (``A_k·y ≤ b_k`` evaluated in float64 on ORT's float32 outputs — exact for the
±1-coefficient rows of the competition files) and the float32 input lies in the box.

Margins (``Verdict``): for a conjunction, ``max_k (A_k·y − b_k)`` is > 0 exactly when y is outside
it; the property's safety margin at x is the min of that over the conjunctions. ``margin`` is a
certified lower bound of its min over the boxes (``max_k min_x``, > 0 iff verified);
``search_margin`` the smallest value the search met (≤ 0 and confirmed: falsified). The true
minimum lies between the two (up to the float64-vs-float32 evaluation difference).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from boundprop.analysis import linear_function_bounds
from boundprop.attack import NoJacobian, pgd, smoothed_network, targets_for
from boundprop.bab.proof import build_proof
from boundprop.bab.run import DEFAULT_MAX_DOMAINS, branch_open_conjunctions
from boundprop.domains.alpha import SlopeOptions
from boundprop.errors import BoundpropError
from boundprop.gn.uses import margin_search
from boundprop.ir import Network
from boundprop.rounding import round_down
from boundprop.runtime import OrtModel
from boundprop.sets import Box
from boundprop.vnnlib import Conjunction, Property, load_vnnlib, progress

STATUSES = ("verified", "falsified", "unknown")
DEFAULT_METHOD = "linear"
# A box the method leaves open is bounded again by the tighter one before the search.
ESCALATION = {"linear": "alpha"}
DEFAULT_SAMPLES = 1024
ASCENT_STEPS = 16  # projected ascent steps per start point (fewer if no progress)
REFINE_ROUNDS = 8  # rounds of local random search after the ascent
STEP_SIZES = 10  # step sizes tried per ascent step: 0.5·0.4^k of the box width
ASCENT_STARTS = 4  # best samples the ascent starts from
FD_DIRECTIONS = 32  # random directions for the gradient estimate when the input is large
ORT_CHECKS = 8  # best candidates confirmed by onnxruntime per round
GN_MAX_ITER = 12  # Gauss-Newton iterations on the margin residual per start
GN_MAX_CONJUNCTIONS = 16  # per start, GN fits the conjunctions closest to being met
GN_FULL_INPUTS = 256  # above this input size, random-subspace GN with GN_SUBSPACE directions
GN_SUBSPACE = 64
PGD_RESTARTS = 32  # start points of the projected-gradient attack per round
# τ of the attack's smoothed ReLU directions (fraction of a layer's mean |z|), by round
PGD_SMOOTHINGS = (0.01, 0.03, 0.1)
ELITE = 8  # best points met so far, kept as PGD start points


@dataclass
class Verdict:
    """The outcome of :func:`verify`.

    ``counterexample``: ``(x, y)`` when falsified — ``x`` (float32, the model input shape) is in
    the box and ``y`` is onnxruntime's output for it (float32 values as float64, the model
    output shape), inside the unsafe region. ``timed_out``: "unknown" because the deadline
    passed (the search, or the bounding of some box, was cut short).
    """

    status: str
    margin: float
    search_margin: float = np.inf
    counterexample: tuple[np.ndarray, np.ndarray] | None = None
    elapsed_s: float = 0.0
    method: str = DEFAULT_METHOD
    # per case: the certified margin of each unsafe conjunction (max_k lower(A_k·y) − b_k)
    conjunction_margins: list[np.ndarray] = field(default_factory=list, repr=False)
    note: str = ""
    # "verified" by branch and bound or at the root: the ``boundprop.proof/1`` document
    # (:mod:`boundprop.bab.proof`) that ``boundprop check`` re-verifies
    proof: dict | None = field(default=None, repr=False)
    timed_out: bool = False

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status

    def to_json(self) -> dict:
        d = {"status": self.status, "margin": self.margin, "search_margin": self.search_margin,
             "method": self.method, "elapsed_s": self.elapsed_s, "note": self.note,
             "timed_out": self.timed_out}
        if self.counterexample is not None:
            x, y = self.counterexample
            d["counterexample"] = {"input": np.asarray(x).reshape(-1).tolist(),
                                   "output": np.asarray(y).reshape(-1).tolist()}
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in d.items()}


def _as_property(net: Network, property_or_path) -> Property:
    n_in, n_out = int(np.prod(net.input_shape)), int(np.prod(net.output_shape))
    if isinstance(property_or_path, Property):
        prop = property_or_path
        if (prop.n_inputs, prop.n_outputs) != (n_in, n_out):
            raise BoundpropError(f"{prop.path}: the property is for a model with {prop.n_inputs} "
                                 f"inputs and {prop.n_outputs} outputs, this one has {n_in} and "
                                 f"{n_out}")
        return prop
    if isinstance(property_or_path, str | os.PathLike):
        return load_vnnlib(Path(property_or_path), n_in, n_out)
    raise BoundpropError(f"verify() needs a Property or a VNN-LIB path, got "
                         f"{type(property_or_path).__name__}")


class _Unsafe:
    """The unsafe region ∪_j {y : A_j y ≤ b_j} of a box's open conjunctions, with every row
    stacked into one matrix so that a margin costs one product, not a Python loop per
    conjunction (a property with thousands of disjuncts made the search quadratic)."""

    def __init__(self, conjs: list[Conjunction]) -> None:
        self.always = any(len(b) == 0 for _, b in conjs)  # an empty conjunction: every y
        rows = [(a, b) for a, b in conjs if len(b)]
        self.rows = rows
        self.a = np.vstack([a for a, _ in rows]) if rows else np.zeros((0, 0))
        self.b = np.concatenate([b for _, b in rows]) if rows else np.zeros(0)
        self.starts = np.cumsum([0] + [len(b) for _, b in rows[:-1]]) if rows else None

    def scores(self, y: np.ndarray) -> np.ndarray:
        """Safety margin of each output row of y (S, n_out): min over conjunctions of
        max_k (A_k·y − b_k); ≤ 0 iff y is in the unsafe region."""
        if self.always:
            return np.full(y.shape[0], -np.inf)
        if self.starts is None:
            return np.full(y.shape[0], np.inf)
        per_row = y @ self.a.T - self.b
        return np.maximum.reduceat(per_row, self.starts, axis=1).min(axis=1)

    def closest(self, y: np.ndarray, k: int) -> list[Conjunction]:
        """The k non-empty conjunctions whose margin at the output y (flat) is smallest."""
        if self.starts is None or len(self.rows) <= k:
            return self.rows
        margins = np.maximum.reduceat(self.a @ y - self.b, self.starts)
        return [self.rows[i] for i in np.argsort(margins, kind="stable")[:k]]

    def contains(self, y: np.ndarray) -> bool:
        """y (flat, float64 holding ORT's float32 values) satisfies every row of some
        conjunction."""
        if self.always:
            return True
        if self.starts is None:
            return False
        # Σ_k a_k y_k over the nonzero coefficients only (0·∞ is no term, not NaN); a NaN
        # output satisfies no row.
        with np.errstate(invalid="ignore", over="ignore"):
            lhs = np.where(self.a != 0, self.a * y[None, :], 0.0).sum(axis=1)
        violated = np.logical_or.reduceat(~(lhs <= self.b), self.starts)
        return bool(not np.all(violated))


def _to_float32_in_box(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """x rounded to float32, stepped back into [lo, hi] where rounding left it; None if some
    coordinate has no float32 value in the box."""
    x32 = x.astype(np.float32)
    x32 = np.where(x32 > hi, np.nextafter(x32, np.float32(-np.inf)), x32)
    x32 = np.where(x32 < lo, np.nextafter(x32, np.float32(np.inf)), x32)
    if np.any(x32 < lo) or np.any(x32 > hi):
        return None
    return x32


class _Search:
    """The counterexample search on one box against its unrefuted conjunctions."""

    def __init__(self, net: Network, ort_model, box: Box, conjs: list[Conjunction],
                 rng: np.random.Generator, deadline: float, batch: int) -> None:
        self.net, self.ort, self.conjs, self.rng = net, ort_model, conjs, rng
        self.unsafe = _Unsafe(conjs)
        self.lo, self.hi = box.lower.reshape(-1), box.upper.reshape(-1)
        self.deadline, self.batch = deadline, batch
        self.best = np.inf
        self.found: tuple[np.ndarray, np.ndarray] | None = None
        self.rejected = 0  # IR said unsafe, onnxruntime did not confirm
        self.rounds = 0  # calls of run()
        self.exact_gradients = True  # False once an op without a reverse rule was met
        self.elite_x = np.empty((0, len(self.lo)))  # the ELITE best points scored so far
        self.elite_s = np.empty(0)

    def expired(self) -> bool:
        return time.perf_counter() > self.deadline

    def score(self, xs: np.ndarray) -> np.ndarray:
        """Float64 IR safety margin of flat points xs (S, n_in), evaluated in batches."""
        out = np.empty(len(xs))
        for i in range(0, len(xs), self.batch):
            chunk = xs[i:i + self.batch]
            y = self.net(chunk.reshape(len(chunk), *self.net.input_shape))
            out[i:i + self.batch] = self.unsafe.scores(y.reshape(len(chunk), -1))
        if len(out):
            self.best = min(self.best, float(out.min()))
            self.remember(xs, out)
        return out

    def remember(self, xs: np.ndarray, s: np.ndarray) -> None:
        """Keep the ELITE lowest-scoring points among the elite and xs (finite scores only)."""
        keep = np.isfinite(s)
        if not np.any(keep):
            return
        pool_x = np.vstack([self.elite_x, xs[keep]])
        pool_s = np.concatenate([self.elite_s, s[keep]])
        order = np.argsort(pool_s, kind="stable")[:ELITE]
        self.elite_x, self.elite_s = pool_x[order], pool_s[order]

    def confirm(self, xs: np.ndarray, s: np.ndarray) -> bool:
        """Run onnxruntime on the most promising candidates; keep the first confirmed one."""
        if self.ort is None:
            return False
        order = np.argsort(s)[:ORT_CHECKS]
        # the best candidate always; the next ones if the IR puts them in the unsafe region or
        # near it (float32 evaluation can flip a near-boundary point either way)
        tol = 1e-4 * (1.0 + abs(float(s[order[0]])))
        for i in order:
            if i != order[0] and s[i] > tol:
                break
            x32 = _to_float32_in_box(xs[i], self.lo, self.hi)
            if x32 is None:
                continue
            x_model = x32.reshape(self.net.input_shape)
            y = np.asarray(self.ort(x_model), dtype=np.float64)
            if self.unsafe.contains(y.reshape(-1)):
                self.found = (x_model, y)
                self.best = min(self.best, float(self.unsafe.scores(y.reshape(1, -1))[0]))
                return True
            if s[i] <= 0:
                self.rejected += 1
        return False

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        d = len(self.lo)
        width = self.hi - self.lo
        n_vert = n // 2
        u = self.rng.random((n - n_vert, d))
        verts = (self.rng.random((n_vert, d)) < 0.5).astype(np.float64)
        xs = self.lo + width * np.vstack([u, verts, 0.5 * np.ones((1, d))])
        return xs, self.score(xs)

    def gradient(self, x: np.ndarray, s0: float) -> np.ndarray:
        """Forward-difference gradient estimate of the score at x: coordinate differences for
        small inputs, random Rademacher directions (SPSA-like) for large ones."""
        d = len(x)
        h = np.maximum(1e-3 * (self.hi - self.lo), 1e-7)
        if d <= 2 * FD_DIRECTIONS:
            # coordinate steps, backwards where a forward step would leave the box
            dirs = np.diag(np.where(x + h <= self.hi, h, -h))
        else:
            dirs = self.rng.choice([-1.0, 1.0], size=(FD_DIRECTIONS, d)) * h
        steps = np.clip(x + dirs, self.lo, self.hi) - x
        diff = self.score(x + steps) - s0
        if d <= 2 * FD_DIRECTIONS:
            st = np.diag(steps)
            return np.where(st != 0, diff / np.where(st != 0, st, 1.0), 0.0)
        # diff_j ≈ Σ_i g_i·steps_ji, steps_ji ≈ ±h_i: E[diff_j·steps_ji] ∝ g_i·h_i²
        return (diff[:, None] * steps).mean(axis=0) / h**2

    def ascend(self, x: np.ndarray, s: float) -> tuple[np.ndarray, float]:
        """Projected descent of the score (ascent of the violation) along the sign of the
        finite-difference gradient and along the gradient itself (scaled to the box), with a
        vectorised line search over a geometric range of step sizes."""
        width = self.hi - self.lo
        fracs = 0.5 * 0.4 ** np.arange(STEP_SIZES)
        for _ in range(ASCENT_STEPS):
            if s < 0 or self.expired():
                break
            g = self.gradient(x, s)
            gw = g * width
            if not np.any(gw):
                break
            dirs = np.vstack([np.sign(g) * width, gw * width / np.max(np.abs(gw))])
            cand = np.clip(x - (fracs[:, None, None] * dirs).reshape(-1, len(x)), self.lo,
                           self.hi)
            cs = self.score(cand)
            k = int(np.argmin(cs))
            if cs[k] >= s:
                break
            x, s = cand[k], float(cs[k])
        return x, s

    def refine(self, x: np.ndarray, s: float, n: int) -> tuple[np.ndarray, float]:
        """Local random search: n points in a box of shrinking radius around x per round;
        handles the kinks (max over rows, ReLU) where finite-difference gradients stall."""
        width = self.hi - self.lo
        for r in 0.1 * 0.3 ** np.arange(REFINE_ROUNDS):
            if s < 0 or self.expired():
                break
            cand = np.clip(x + r * width * (2 * self.rng.random((n, len(x))) - 1), self.lo,
                           self.hi)
            cs = self.score(cand)
            k = int(np.argmin(cs))
            if cs[k] < s:
                x, s = cand[k], float(cs[k])
        return x, s

    def pgd_starts(self, n: int) -> np.ndarray:
        """PGD start points: the box centre (first round), the best points met so far, and
        uniform random points of the box up to n."""
        fixed = [self.elite_x]
        if self.rounds == 0:
            fixed.insert(0, 0.5 * (self.lo + self.hi)[None])
        fixed_x = np.vstack(fixed)[:n]
        u = self.rng.random((n - len(fixed_x), len(self.lo)))
        return np.vstack([fixed_x, self.lo + (self.hi - self.lo) * u])

    def attack(self) -> bool:
        """The projected-gradient attack (``boundprop.attack.pgd``) from PGD_RESTARTS points:
        steered by smoothed ReLU gradients (τ from PGD_SMOOTHINGS by round: they see the
        neurons that are off), then by exact gradients from each restart's best point (which
        also pushes points found unsafe past the boundary). The best points are scored and
        confirmed like any candidate. Skipped (for good) once an op without a reverse rule is
        met, and when no conjunction has rows."""
        if not self.exact_gradients or self.unsafe.starts is None or self.unsafe.always:
            return False
        starts = self.pgd_starts(PGD_RESTARTS)
        targets = targets_for(len(starts), len(self.unsafe.rows))
        smooth = smoothed_network(self.net, PGD_SMOOTHINGS[self.rounds % len(PGD_SMOOTHINGS)])
        try:
            steered = pgd(self.net, self.unsafe, self.lo, self.hi, starts, targets,
                          deadline=self.deadline, batch=self.batch, reverse_net=smooth)
            result = pgd(self.net, self.unsafe, self.lo, self.hi, steered.x, targets,
                         deadline=self.deadline, batch=self.batch)
        except NoJacobian:
            self.exact_gradients = False
            return False
        return self.confirm(result.x, self.score(result.x))

    def run(self, n_samples: int) -> bool:
        found = self.attack()
        self.rounds += 1
        if found or self.expired():
            return found
        xs, s = self.sample(n_samples)
        if self.confirm(xs, s):
            return True
        starts = np.argsort(s)[:ASCENT_STARTS]
        for i in starts:
            if self.expired():
                break
            x, sx = self.ascend(xs[i], float(s[i]))
            if len(x) <= 2 * FD_DIRECTIONS:  # random local search only pays in few dimensions
                x, sx = self.refine(x, sx, max(16, n_samples // (ASCENT_STARTS * REFINE_ROUNDS)))
                x, sx = self.ascend(x, sx)
            if self.confirm(x[None], np.array([sx])):
                return True
            if self.gauss_newton(x, sx):
                return True
        return False

    def gauss_newton(self, x: np.ndarray, s: float) -> bool:
        """Gauss-Newton on the hinge residual of each open conjunction (``MarginProblem``),
        from x: fits all rows of the conjunction at once where the ascent follows one score."""
        n = len(x)
        y = self.net(x.reshape(self.net.input_shape)).reshape(-1)
        for a, b in self.unsafe.closest(y, GN_MAX_CONJUNCTIONS):
            if self.expired():
                break
            xg, _ = margin_search(self.net, self.lo, self.hi, a, b, x, max_iter=GN_MAX_ITER,
                                  subspace_dim=None if n <= GN_FULL_INPUTS else GN_SUBSPACE)
            sg = self.score(xg[None])
            if self.confirm(xg[None], sg):
                return True
        return False


def verify(net: Network, property_or_path, method: str = DEFAULT_METHOD,
           timeout: float | None = None, seed: int = 0, n_samples: int = DEFAULT_SAMPLES,
           ort_model=None, batch: int = 256, execution: str = "float32",
           slopes: SlopeOptions | None = None, branching: bool = True,
           progress: Callable[[dict], None] | None = None) -> Verdict:
    """Decide a VNN-LIB property on ``net``: "verified" (the certified bounds prove that no
    input of the boxes reaches the unsafe region), "falsified" (a counterexample confirmed by
    onnxruntime), or "unknown".

    ``method`` and ``execution`` are passed to
    :func:`~boundprop.analysis.linear_function_bounds`; a box that ``linear`` (the default)
    leaves open is bounded again with ``alpha`` (optimised slopes) before the search, each row
    keeping its best bound (``ESCALATION``); ``slopes`` sets its budget (iterations, time).
    The default ``execution="float32"``
    makes "verified" hold for onnxruntime's float32 evaluation too. ``timeout``
    (seconds) bounds the search; the bound computation of a box is not interrupted, and a
    timeout before every box is bounded gives "unknown". ``ort_model`` defaults to an
    :class:`~boundprop.runtime.OrtModel` of ``net.source`` (without one, nothing is falsified).

    What the bounds leave open is attacked once, then (``branching``) searched by branch and
    bound (:mod:`boundprop.bab`: input splitting for inputs of ≤ 16 values, activation
    splitting otherwise) until the deadline — or, without a timeout, for at most
    ``DEFAULT_MAX_DOMAINS`` domains per conjunction —, then attacked again until the deadline.
    A "verified" carries ``proof`` (``boundprop.proof/1``, when the model and property are
    files) for ``boundprop check``. ``progress`` receives status dicts (phase, domains_left,
    best_bound, elapsed) during long runs.
    """
    t0 = time.perf_counter()
    deadline = t0 + (np.inf if timeout is None else float(timeout))
    prop = _as_property(net, property_or_path)
    margin, per_case, open_cases, timed_out = _certified_margins(net, prop, method, execution,
                                                                 deadline, slopes)
    t_bounds = time.perf_counter() - t0
    say = progress or (lambda info: None)
    say({"phase": "bounds", "domains_left": len(open_cases), "best_bound": margin,
         "elapsed": time.perf_counter() - t0})

    def done(status: str, **kw) -> Verdict:
        elapsed = time.perf_counter() - t0
        if kw.get("proof") is not None:
            kw["proof"]["stats"]["seconds"] = elapsed  # what finding it took, in all
        return Verdict(status=status, margin=kw.pop("margin", margin), method=method,
                       conjunction_margins=per_case, elapsed_s=elapsed, **kw)

    if not timed_out and not open_cases:
        return done("verified", proof=_root_proof(net, prop, method, execution, per_case))
    if ort_model is None and net.source:
        ort_model = OrtModel(net.source, net.input_name, net.output_name)
    rng = np.random.default_rng(seed)
    searches = [_Search(net, ort_model, box, conjs, rng, deadline, batch)
                for box, conjs in open_cases]
    hit, best = _search_counterexamples(searches, n_samples, deadline, one_round=True)
    if hit is not None:
        return done("falsified", search_margin=best, counterexample=hit.found)
    note = ""
    # a branch-and-bound round costs about what the root's bounds did: none that cannot end
    # before the deadline
    if branching and not timed_out and time.perf_counter() + 2 * t_bounds < deadline:
        outcome, found = _branch(net, prop, per_case, searches, method, execution, deadline,
                                 say, None if timeout is not None else DEFAULT_MAX_DOMAINS)
        if outcome.status == "verified":
            return done("verified", margin=outcome.margin, proof=outcome.proof)
        if found is not None:
            return done("falsified", search_margin=min(best, found.best),
                        counterexample=found.found)
        note = f"branch and bound: {outcome.note}"
    if timeout is not None and time.perf_counter() < deadline:
        hit, best2 = _search_counterexamples(searches, n_samples, deadline, one_round=False)
        best = min(best, best2)
        if hit is not None:
            return done("falsified", search_margin=best, counterexample=hit.found)
    rejected = sum(s.rejected for s in searches)
    late = time.perf_counter() > deadline or timed_out
    if ort_model is None:
        note = "no onnxruntime model to confirm counterexamples with"
    elif rejected:
        note = f"{rejected} IR candidate(s) not confirmed by onnxruntime"
    elif late:
        note = "timed out"
    return done("unknown", search_margin=best, note=note, timed_out=late)


def _branch(net: Network, prop: Property, per_case: list[np.ndarray],
            searches: list[_Search], method: str, execution: str, deadline: float,
            progress, max_domains: int | None):
    """Branch and bound on the open conjunctions (:mod:`boundprop.bab.run`); its attack
    candidates go through the case's search (IR score, then onnxruntime). Returns the
    outcome and the search that confirmed a counterexample (or None)."""
    by_case = iter(searches)
    confirm, owner = {}, {}
    for c, m in enumerate(per_case):
        if np.all(m > 0):
            continue
        search = next(by_case)
        owner[c] = search
        confirm[c] = (lambda s: lambda xs: s.confirm(xs, s.score(xs)))(search)
    outcome = branch_open_conjunctions(
        net, prop, per_case, method, ESCALATION.get(method, method), execution, deadline,
        confirm, progress, max_domains)
    found = next((s for s in owner.values() if s.found is not None), None)
    return outcome, found


def _root_proof(net: Network, prop: Property, method: str, execution: str,
                per_case: list[np.ndarray]) -> dict | None:
    """The proof of a property every conjunction of which the certified bounds refute."""
    if not (net.source and Path(prop.path).is_file()):
        return None
    return build_proof(net.source, prop.path, method, ESCALATION.get(method, method),
                       execution, [[None] * len(m) for m in per_case], {"mode": "root"})


def _certified_margins(net: Network, prop: Property, method: str, execution: str,
                       deadline: float, slopes: SlopeOptions | None = None
                       ) -> tuple[float, list[np.ndarray], list[tuple[Box, list[Conjunction]]],
                                  bool]:
    """Step 1, certified bounds: one call per box, every row of every conjunction at once.
    Returns the property's margin (min over conjunctions; −∞ if a box was never bounded), the
    per-box conjunction margins, the boxes with conjunctions left open, and whether the
    deadline passed before every box was bounded."""
    margin = np.inf
    per_case: list[np.ndarray] = []
    open_cases: list[tuple[Box, list[Conjunction]]] = []
    for box, unsafe in progress(prop.cases, "bounding"):
        if time.perf_counter() > deadline:
            return -np.inf, per_case, open_cases, True  # nothing is certified
        rows = [a for a, _ in unsafe if len(a)]
        lower = np.empty(0)
        if rows:
            # one ulp outwards: covers the file's decimal bounds however they were rounded
            wide = Box(np.nextafter(box.lower, -np.inf), np.nextafter(box.upper, np.inf))
            lower, _ = linear_function_bounds(net, wide.fit(net.input_shape), np.vstack(rows),
                                              method=method, execution=execution, slopes=slopes)
            if method in ESCALATION and not np.all(
                    [np.any(lo_k > b) for lo_k, b in _split_rows(lower, unsafe)]):
                # before giving up on the box: the tighter method, each row its best bound
                tighter, _ = linear_function_bounds(
                    net, wide.fit(net.input_shape), np.vstack(rows),
                    method=ESCALATION[method], execution=execution, slopes=slopes)
                lower = np.maximum(lower, tighter)
        conj_margin, still_open = _conjunction_margins(lower, unsafe)
        per_case.append(conj_margin)
        if len(conj_margin):
            margin = min(margin, float(conj_margin.min()))
        if still_open:
            open_cases.append((box, still_open))
    return margin, per_case, open_cases, False


def _split_rows(lower: np.ndarray, unsafe: list[Conjunction]) -> list[tuple[np.ndarray,
                                                                             np.ndarray]]:
    """The stacked lower bounds cut per conjunction: [(lower bounds of A_k·y, b_k)]."""
    out, k0 = [], 0
    for _a, b in unsafe:
        out.append((lower[k0:k0 + len(b)], b))
        k0 += len(b)
    return out


def _conjunction_margins(lower: np.ndarray, unsafe: list[Conjunction]
                         ) -> tuple[np.ndarray, list[Conjunction]]:
    """Per conjunction A_k·y ≤ b_k of one box, given certified lower bounds ``lower`` of all
    rows A·y stacked: its margin max_k(lo_k − b_k) rounded down (> 0: refuted on the box,
    at least the smallest positive float; else ≤ 0), and the conjunctions not refuted."""
    conj_margin = np.empty(len(unsafe))
    still_open = []
    for j, ((a, b), (lo_k, _)) in enumerate(zip(unsafe, _split_rows(lower, unsafe))):
        refuted = bool(np.any(lo_k > b))  # certified: A_k·y ≥ lo_k > b_k on the box
        conj_margin[j] = float(np.max(round_down(lo_k - b))) if len(b) else -np.inf
        if refuted:
            conj_margin[j] = max(conj_margin[j], np.nextafter(0.0, 1.0))
        else:
            conj_margin[j] = min(conj_margin[j], 0.0)
            still_open.append((a, b))
    return conj_margin, still_open


def _search_counterexamples(searches: list[_Search], n_samples: int, deadline: float,
                            one_round: bool) -> tuple[_Search | None, float]:
    """Step 2, counterexample search on what the bounds left open: the search that found a
    confirmed counterexample (or None) and the best score seen. One round without a timeout;
    rounds until the deadline with one."""
    best = np.inf
    while True:
        for search in searches:
            if time.perf_counter() > deadline:
                break
            hit = search.run(n_samples)
            best = min(best, search.best)
            if hit:
                return search, best
        if one_round or time.perf_counter() > deadline:
            return None, best
