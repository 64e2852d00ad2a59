"""The model of a Gauss-Newton fit as a function of its variables, evaluated by onnxruntime
in as few runs as possible (``../shared/refs/gn.md`` §2, §4); the finite differences on top of
it are in :mod:`boundprop.gn.oracle`.

The variables w (flattened, float64, size p) are the model's input ("input") or chosen
initializers made overridable graph inputs. Every batch of points is evaluated so:

- the batch axis of a copy of the graph is made symbolic so that K points run as one batch
  of K·N rows, and this is *verified* once on distinct points against per-point runs (a
  training-mode batch norm, or a Reshape with a hard-coded batch, makes the check fail and the
  evaluator falls back to one run per point instead of computing wrong values);
- ``dtype="auto"`` runs a float64 copy of the graph when onnxruntime has double kernels for
  all its ops (the derivatives are then 1e4–1e5 times more accurate), else the float32 graph;
- initializer variables of Gemm/MatMul layers (2-D weights, their biases) are batched too
  (refs §4 "Weights as inputs", :mod:`boundprop.gn.weight_batching`): a rewritten copy takes
  each variable as a graph input [K, *shape], Gemm becomes MatMul (+ Add), which broadcasts
  x [N, d] @ W [K, d, h] → [K, N, h], and the axes of downstream ops move one axis right. It
  is kept only if K = 3 distinct points give the per-point outputs (1e-6 relative in float32,
  1e-12 in float64); otherwise (a Conv weight, an op that does not broadcast) one run per
  point, with a note.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from boundprop.errors import BoundpropError
from boundprop.gn.onnx_graph import (
    NAME_OF_NP,
    NP_OF_ELEM,
    dims_of,
    expose_initializers,
    free_batch,
    load_model,
    one_line,
    op_of_error,
    to_float64,
)
from boundprop.gn.weight_batching import batch_weights
from boundprop.runtime import ort_threads

__all__ = ["ModelEvaluator"]


class ModelEvaluator:
    """An ONNX model as a function of its variables w, run by onnxruntime: ``outputs(W)`` for
    a batch of points (see :class:`boundprop.gn.oracle.Problem` for the arguments).

    Counters: ``forward_passes`` (point evaluations) and ``ort_calls`` (``session.run``
    calls; a batched run of K points counts once); the construction's own runs (dtype and
    batching checks) are in ``setup_ort_calls``. ``notes`` says which fallbacks were taken;
    ``batched`` whether several points share one run; ``batched_weights`` whether
    initializer variables run K points at once through the rewritten graph (chunked to
    ``memory_budget``)."""

    def __init__(self, model: str | os.PathLike, variables: str | list[str] = "input",
                 inputs=None, x0=None, dtype: str = "auto", memory_budget: int = 512 * 2**20,
                 threads: int | None = None) -> None:
        self.model = os.fspath(model)
        path = Path(self.model)
        if dtype not in ("auto", "float32", "float64"):
            raise BoundpropError(f"unknown dtype '{dtype}'; use 'auto', 'float32' or 'float64'")
        if not int(memory_budget) > 0:
            raise BoundpropError(f"memory_budget must be positive, got {memory_budget}")
        self.memory_budget = int(memory_budget)
        self.threads = int(threads) if threads else min(2, os.cpu_count() or 1)
        self.forward_passes = 0
        self.ort_calls = 0
        self.setup_ort_calls = 0
        self.notes: list[str] = []
        proto = load_model(path)
        g = proto.graph
        inits = {t.name: t for t in g.initializer}
        data_inputs = [vi for vi in g.input if vi.name not in inits]
        self._choose_output(path, g)
        if isinstance(variables, str) and variables == "input":
            self.variables: str | list[str] = "input"
            proto, native = self._setup_input(path, proto, data_inputs, inputs, x0)
        else:
            names = [variables] if isinstance(variables, str) else list(variables)
            self.variables = names
            proto, native = self._setup_initializers(path, proto, inits, data_inputs, inputs)
        self.p = int(self.w0.size)
        if self.p == 0:
            raise BoundpropError(f"{path}: no variables to fit (size 0)")
        self._choose_dtype(path, proto, native, dtype)

    # ---------------------------------------------------------------- construction helpers
    def _choose_output(self, path: Path, graph) -> None:
        """The graph's first output, which must be a float tensor."""
        if not graph.output:
            raise BoundpropError(f"{path}: the graph has no output")
        out = graph.output[0]
        self.output_name = out.name
        if out.type.tensor_type.elem_type not in NP_OF_ELEM:
            raise BoundpropError(
                f"{path}: output '{out.name}' is not a float tensor (elem type "
                f"{out.type.tensor_type.elem_type}), so it is not differentiable; "
                "fit a float output (e.g. the logits before an ArgMax)")

    def _setup_input(self, path, proto, data_inputs, inputs, x0):
        """variables="input": w0 from x0 (or inputs, or zeros) of the single graph input's
        shape; returns (the graph, its input's numpy dtype)."""
        if len(data_inputs) != 1:
            names = ", ".join(f"'{vi.name}'" for vi in data_inputs) or "none"
            raise BoundpropError(f"{path}: variables='input' needs a single graph input; the "
                                 f"model has {len(data_inputs)} ({names}); fit initializers "
                                 "instead, with inputs={name: array}")
        vi = data_inputs[0]
        elem = vi.type.tensor_type.elem_type
        if elem not in NP_OF_ELEM:
            raise BoundpropError(f"{path}: input '{vi.name}' is not a float tensor, so it cannot "
                                 "be fitted; choose initializer variables")
        start = x0 if x0 is not None else inputs
        dims = dims_of(vi)
        fixed = all(isinstance(d, int) and d > 0 for d in dims)
        if start is None:
            if not fixed:
                raise BoundpropError(f"{path}: input '{vi.name}' has a dynamic shape "
                                     f"{[d if isinstance(d, int) else '?' for d in dims]}; give "
                                     "x0 (the start point) of the shape to fit")
            start = np.zeros(dims)
        start = np.asarray(start, dtype=np.float64)
        if fixed and start.size == int(np.prod(dims)):
            shape = tuple(dims)
        elif start.ndim == len(dims) and all(not isinstance(d, int) or d <= 0 or d == s
                                              for d, s in zip(dims, start.shape)):
            shape = start.shape
        else:
            raise BoundpropError(f"{path}: x0 of shape {list(start.shape)} does not fit input "
                                 f"'{vi.name}' of shape "
                                 f"{[d if isinstance(d, int) and d > 0 else '?' for d in dims]}")
        if not np.all(np.isfinite(start)):
            raise BoundpropError("x0 has NaN or infinite entries")
        self.input_name = vi.name
        self.input_shape = tuple(int(s) for s in shape)
        self.inputs = inputs
        self.w0 = start.reshape(-1).copy()
        self._data_names = [vi.name]
        return proto, NP_OF_ELEM[elem]

    def _setup_initializers(self, path, proto, inits, data_inputs, inputs):
        """Initializer variables: w0 their values concatenated, the data batch checked
        against the graph inputs; returns (the graph with the variables exposed as inputs,
        their numpy dtype)."""
        names = self.variables
        self._check_variable_names(path, inits, data_inputs)
        values = [numpy_helper.to_array(inits[n]) for n in names]
        natives = {v.dtype for v in values}
        if len(natives) != 1:
            raise BoundpropError(f"variables {names} mix dtypes {sorted(map(str, natives))}")
        self.w0 = np.concatenate([v.astype(np.float64).reshape(-1) for v in values])
        self._var_shapes = [v.shape for v in values]
        offs = np.cumsum([0] + [v.size for v in values])
        self._var_slices = [slice(int(a), int(b)) for a, b in zip(offs[:-1], offs[1:])]
        if not np.all(np.isfinite(self.w0)):
            raise BoundpropError(f"{path}: the chosen initializers have NaN/Inf entries")
        self._set_data_batch(path, data_inputs, inputs)
        return expose_initializers(proto, names), np.dtype(natives.pop()).type

    def _check_variable_names(self, path, inits, data_inputs) -> None:
        """Each variable names a float initializer, once."""
        names = self.variables
        float_names = [n for n, t in inits.items() if t.data_type in NP_OF_ELEM]
        if not names:
            raise BoundpropError("no variables given: pass 'input' or initializer names")
        if len(set(names)) != len(names):
            raise BoundpropError(f"variables listed twice: {names}")
        for name in names:
            if name not in inits:
                if any(vi.name == name for vi in data_inputs):
                    raise BoundpropError(f"'{name}' is a graph input, not an initializer; use "
                                         "variables='input' to fit it")
                some = ", ".join(float_names[:8]) + (", …" if len(float_names) > 8 else "")
                raise BoundpropError(f"{path}: no initializer named '{name}'; use 'input' or "
                                     f"initializer names such as {some or '(none)'}")
            if inits[name].data_type not in NP_OF_ELEM:
                raise BoundpropError(f"{path}: initializer '{name}' is not a float tensor (elem "
                                     f"type {inits[name].data_type}); only float weights can "
                                     "be fitted")

    def _set_data_batch(self, path, data_inputs, inputs) -> None:
        """The fixed data batch: one finite array per graph input, of its shape (any batch)."""
        self._data_names = [vi.name for vi in data_inputs]
        if data_inputs and inputs is None:
            raise BoundpropError("fitting initializers needs the data batch: pass inputs= (an "
                                 "array for the graph input "
                                 f"'{data_inputs[0].name}')")
        if isinstance(inputs, dict):
            feed = dict(inputs)
        elif len(data_inputs) == 1:
            feed = {data_inputs[0].name: inputs}
        elif data_inputs:
            raise BoundpropError(f"{path}: the model has {len(data_inputs)} graph inputs; pass "
                                 "inputs as a dict name → array")
        else:
            feed = {}
        wanted = {vi.name for vi in data_inputs}
        if set(feed) != wanted:
            raise BoundpropError(f"inputs given for {sorted(feed)} but the graph inputs are "
                                 f"{sorted(wanted)}")
        self._data = {}
        self._data_dims = {}
        for vi in data_inputs:
            arr = np.asarray(feed[vi.name])
            dims = dims_of(vi)
            if arr.ndim != len(dims) or any(isinstance(d, int) and d > 0 and d != s
                                            for d, s in zip(dims[1:], arr.shape[1:])):
                raise BoundpropError(
                    f"inputs['{vi.name}'] has shape {list(arr.shape)}; the graph input has "
                    f"shape {[d if isinstance(d, int) and d > 0 else '?' for d in dims]}")
            self._data[vi.name] = arr
            self._data_dims[vi.name] = dims
            elem = vi.type.tensor_type.elem_type
            if elem in NP_OF_ELEM and not np.all(np.isfinite(arr.astype(np.float64))):
                raise BoundpropError(f"inputs['{vi.name}'] has NaN or infinite entries")
        self.inputs = inputs
        self.input_name = data_inputs[0].name if data_inputs else None
        self.input_shape = tuple(self._data[self.input_name].shape) if data_inputs else ()

    def _session(self, proto):
        """An onnxruntime session of ``proto`` on the CPU with ``threads`` threads."""
        import onnxruntime as ort  # heavy (~0.3 s): loaded by the first session, not on import

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = ort_threads(self.threads)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 4
        return ort.InferenceSession(proto.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])

    def _run(self, sess, feed) -> np.ndarray:
        """The output of one ``session.run`` (counted in ``ort_calls``)."""
        self.ort_calls += 1
        return sess.run([self.output_name], feed)[0]

    def _choose_dtype(self, path, proto, native, dtype) -> None:
        """Pick the graph (float64 copy or as exported), build its session, find the output
        shape and whether points can be batched."""
        try:
            sess = self._session(proto)
        except Exception as e:
            raise BoundpropError(f"{path}: onnxruntime cannot load the model: "
                                 f"{one_line(e)}") from None
        self._use(proto, sess, native)
        try:
            y32 = self._point_output(self.w0)
        except BoundpropError:
            raise
        except Exception as e:
            raise BoundpropError(f"{path}: onnxruntime cannot run the model on the start "
                                 f"point: {one_line(e)}") from None
        if not np.issubdtype(y32.dtype, np.floating):
            raise BoundpropError(f"{path}: output '{self.output_name}' is {y32.dtype}, so it is "
                                 "not differentiable")
        self.output_shape = tuple(y32.shape)
        if dtype != "float32" and native != np.float64:
            proto64 = to_float64(proto)
            why = None
            try:
                sess64 = self._session(proto64)
            except Exception as e:
                op = op_of_error(str(e))
                why = (f"onnxruntime has no float64 kernel for {op}" if op else
                       f"onnxruntime cannot load the float64 copy ({one_line(e, 120)})")
            if why is None:
                self._use(proto64, sess64, np.float64)
                try:
                    y64 = self._point_output(self.w0)
                except Exception as e:
                    op = op_of_error(str(e))
                    why = f"the float64 copy does not run ({op or one_line(e, 120)})"
                else:
                    scale = 1.0 + float(np.max(np.abs(y32), initial=0.0))
                    if y64.shape != y32.shape or not np.all(
                            np.abs(y64 - y32) <= 1e-3 * scale):
                        why = "the float64 copy disagrees with the exported graph"
            if why is not None:
                if dtype == "float64":
                    raise BoundpropError(f"{path}: no float64 graph: {why}; use dtype='float32'"
                                         " (or 'auto')")
                self.notes.append(f"float32 graph: {why}")
                self._use(proto, sess, native)
            else:
                proto, sess, native = proto64, sess64, np.float64
        elif dtype == "float64" and native != np.float64:
            raise BoundpropError(f"{path}: no float64 graph for a {np.dtype(native)} model")
        self._setup_batching(proto)
        self.setup_ort_calls = self.ort_calls

    @property
    def batched(self) -> bool:
        """Whether several points share one onnxruntime run."""
        return self._batched

    def _use(self, proto, sess, native) -> None:
        """Make ``proto``/``sess`` the current graph and session, of numpy dtype ``native``
        (batching off until ``_setup_batching`` verifies it)."""
        self._sess = sess
        self._np_dtype = np.dtype(native)
        self.dtype = NAME_OF_NP[self._np_dtype]
        self.eps = float(np.finfo(self._np_dtype).eps)
        self._batched = False
        self.batched_weights = False
        self._wsess = None
        self._data_chunks = None
        if self.variables != "input":
            self._fixed = {n: a.astype(self._feed_dtype(proto, n)) for n, a in self._data.items()}
            self._plan_data_chunks(proto)

    def _feed_dtype(self, proto, name):
        """The numpy dtype of the graph input ``name`` (None if there is no such input)."""
        for vi in proto.graph.input:
            if vi.name == name:
                elem = vi.type.tensor_type.elem_type
                if elem in NP_OF_ELEM:
                    return NP_OF_ELEM[elem]
                return onnx.helper.tensor_dtype_to_np_dtype(elem)
        return None

    def _plan_data_chunks(self, proto) -> None:
        """Initializer variables: the data batch as one feed when it has the graph's shape,
        else in runs of the graph's fixed batch N0 (``_setup_batching`` may free the axis)."""
        chunks = None
        for name, arr in self._fixed.items():
            d0 = self._data_dims[name][0] if self._data_dims[name] else None
            if isinstance(d0, int) and d0 > 0 and arr.shape[0] != d0:
                if arr.shape[0] % d0:
                    raise BoundpropError(
                        f"inputs['{name}'] has {arr.shape[0]} rows but the graph's batch is "
                        f"fixed at {d0}: give a multiple of {d0} rows")
                n = arr.shape[0] // d0
                if chunks not in (None, n):
                    raise BoundpropError("the data inputs have inconsistent batch sizes")
                chunks = n
        self._data_chunks = chunks
        if chunks:
            self._fixed_feeds = [{n: np.ascontiguousarray(np.split(a, chunks)[c])
                                  for n, a in self._fixed.items()} for c in range(chunks)]
        else:
            self._fixed_feeds = [self._fixed]

    # ----------------------------------------------------------------------------- batching
    def _verification_points(self) -> np.ndarray:
        """w0 and two random points around it (fixed seed): distinct points for the checks."""
        rng = np.random.default_rng(20240611)
        scale = 0.5 * (1.0 + float(np.sqrt(np.mean(self.w0 ** 2))))
        pts = [self.w0] + [self.w0 + scale * rng.standard_normal(self.p) for _ in range(2)]
        return np.asarray(pts)

    def _agree(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Equal shapes and entries within ε^(2/3)(1 + max|b|)."""
        if a.shape != b.shape:
            return False
        tol = self.eps ** (2 / 3) * (1.0 + float(np.max(np.abs(b), initial=0.0)))
        return bool(np.all(np.abs(a - b) <= tol))

    def _setup_batching(self, proto) -> None:
        """Free the batch axis in a copy of the graph and keep it only if batched runs equal
        per-point runs on distinct points (batch-mixing ops fail this check)."""
        if self.variables == "input":
            if len(self.input_shape) == 0:
                self._chunk = 1
                return
            pts = self._verification_points()
            ref = np.stack([self._point_output(w) for w in pts])
            free = free_batch(proto, self._data_names, self.output_name)
            reason = "the graph's batch axis cannot be made symbolic"
            if free is not None:
                single = self._sess
                try:
                    self._sess, self._batched = self._session(free), True
                    got = self._batched_outputs(pts.astype(self._np_dtype))
                except Exception as e:
                    got = None
                    reason = f"a batched run failed ({one_line(e, 100)})"
                if got is not None and self._agree(got, ref):
                    self._chunk = self._points_per_run(proto)
                    return
                if got is not None:
                    reason = "batched outputs differ from per-point outputs (the batch mixes)"
                self._sess, self._batched = single, False
            self.notes.append(f"one onnxruntime run per point: {reason}")
            self._chunk = max(1, min(256, self._points_per_run(proto)))
        else:
            item = self._np_dtype.itemsize
            self._chunk = max(1, min(256, self.memory_budget // (4 * item * self.p)))
            base = proto
            if self._data_chunks:
                ref = self._point_output(self.w0)
                free = free_batch(proto, self._data_names, self.output_name)
                if free is None:
                    self.notes.append(f"data batch in {self._data_chunks} runs per point: the "
                                      "graph's batch axis cannot be made symbolic")
                else:
                    saved = (self._sess, self._fixed_feeds, self._data_chunks)
                    try:
                        self._sess = self._session(free)
                        self._fixed_feeds, self._data_chunks = [self._fixed], None
                        got = self._point_output(self.w0)
                        ok = self._agree(got, ref)
                    except Exception:
                        ok = False
                    if ok:
                        base = free
                    else:
                        self._sess, self._fixed_feeds, self._data_chunks = saved
                        self.notes.append(f"data batch in {self._data_chunks} runs per point: "
                                          "one batch of all rows differs from runs of the "
                                          "graph's batch")
            self._setup_weight_batching(base)

    def _setup_weight_batching(self, proto) -> None:
        """Initializer variables: K weight points in one run of a rewritten graph
        (``batch_weights``), kept only if its outputs on 3 distinct points equal per-point
        runs (1e-6 relative in float32, 1e-12 in float64), else one run per point."""
        try:
            rewritten, batched, why = batch_weights(
                proto, self.variables, self._var_shapes, self.output_name, self._np_dtype)
        except Exception as e:  # a graph the rewrite does not understand
            rewritten, why = None, f"the rewrite failed ({one_line(e, 100)})"
        if why is None:
            pts = self._verification_points()
            ref = np.stack([self._point_output(w) for w in pts])
            try:
                self._wsess = self._session(rewritten)
                got = self._weight_batch_outputs(pts.astype(self._np_dtype))
            except Exception as e:
                got, why = None, f"a batched run failed ({one_line(e, 100)})"
            if got is not None:
                tol = {8: 1e-12, 4: 1e-6}.get(self._np_dtype.itemsize, 8 * self.eps)
                scale = float(np.max(np.abs(ref), initial=0.0))
                if got.shape == ref.shape and np.all(np.abs(got - ref) <= tol * scale):
                    self.batched_weights = self._batched = True
                    self._chunk = self._weight_points_per_run(proto, batched)
                    return
                why = "batched outputs differ from per-point runs (an op downstream of " \
                      "the weights does not broadcast over the extra leading axis)"
            self._wsess = None
        self.notes.append(f"one onnxruntime run per weight point: {why}")

    def _weight_points_per_run(self, proto, batched: set) -> int:
        """Weight points per batched run within ``memory_budget``: per point, the variables
        (twice: the feed and its copy) and every tensor that gains the leading K axis, plus
        the unbatched operands of the ops producing them (inferred shapes; unknown dims
        count as the data rows)."""

        rows = max([a.shape[0] for a in self._fixed_feeds[0].values() if a.ndim] or [1])
        try:
            g = onnx.shape_inference.infer_shapes(proto).graph
            infos = list(g.value_info) + list(g.output) + list(g.input)
        except Exception:
            infos = []
        size = {vi.name: int(np.prod([d if isinstance(d, int) and d > 0 else rows
                                      for d in dims_of(vi)])) for vi in infos}
        total = 2 * self.p + sum(size.get(n, rows) for n in batched if n not in self.variables)
        for node in proto.graph.node:
            if any(o in batched for o in node.output):
                total += sum(size.get(i, 0) for i in node.input if i and i not in batched)
        item = self._np_dtype.itemsize
        return max(1, self.memory_budget // (item * max(total, 1)))

    def _points_per_run(self, proto) -> int:
        """Points per run within ``memory_budget``: every tensor of one point's evaluation
        (inferred shapes; unknown dims count as the input's batch) held at once."""

        item = self._np_dtype.itemsize
        n0 = self.input_shape[0] if self.input_shape else 1
        try:
            inferred = onnx.shape_inference.infer_shapes(proto)
            infos = list(inferred.graph.value_info) + list(inferred.graph.output)
        except Exception:
            infos = []
        total = 2 * int(np.prod(self.input_shape)) + 2 * int(np.prod(self.output_shape))
        for vi in infos:
            dims = dims_of(vi)
            total += int(np.prod([d if isinstance(d, int) and d > 0 else n0 for d in dims]))
        return max(1, self.memory_budget // (item * max(total, 1)))

    # ------------------------------------------------------------------------- evaluation
    def _point_output(self, w: np.ndarray) -> np.ndarray:
        """One point, unbatched: the output as computed by the current session."""
        w = np.asarray(w).astype(self._np_dtype)
        if self.variables == "input":
            return self._run(self._sess, {self.input_name: w.reshape(self.input_shape)})
        outs = []
        for fixed in self._fixed_feeds:
            feed = dict(fixed)
            for name, sl, shape in zip(self.variables, self._var_slices, self._var_shapes):
                feed[name] = w[sl].reshape(shape)
            outs.append(self._run(self._sess, feed))
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)

    def _batched_outputs(self, rows: np.ndarray) -> np.ndarray:
        """Input variables, batched session: n points (rows in the graph dtype) in one run."""
        n = rows.shape[0]
        x = rows.reshape(n * self.input_shape[0], *self.input_shape[1:])
        y = self._run(self._sess, {self.input_name: x})
        return y.reshape(n, *self.output_shape) if y.size == n * int(
            np.prod(self.output_shape)) else y.reshape(n, -1)

    def _weight_batch_outputs(self, rows: np.ndarray) -> np.ndarray:
        """Initializer variables, rewritten graph: n weight points (rows in the graph dtype)
        in one run; the output [n, *output_shape]."""
        n = rows.shape[0]
        weights = {name: np.ascontiguousarray(rows[:, sl]).reshape(n, *shape)
                   for name, sl, shape in zip(self.variables, self._var_slices,
                                              self._var_shapes)}
        outs = [self._run(self._wsess, {**fixed, **weights}) for fixed in self._fixed_feeds]
        per_run = int(np.prod(self.output_shape)) // len(outs)
        if any(y.size != n * per_run for y in outs):
            raise BoundpropError(f"a batched weight run gave an output of shape "
                                 f"{list(outs[0].shape)} for {n} points of shape "
                                 f"{list(self.output_shape)}")
        if len(outs) == 1:
            return outs[0].reshape(n, *self.output_shape)
        # runs of the graph's fixed batch: [n, rows of one run, …] side by side
        return np.concatenate([y.reshape(n, -1, *self.output_shape[1:]) for y in outs],
                              axis=1)

    def _evaluate(self, make, count: int) -> np.ndarray:
        """Outputs of ``count`` points; ``make(a, b)`` gives rows a..b-1 in the graph dtype."""
        out = np.empty((count, *self.output_shape))
        step = max(1, self._chunk)
        for a in range(0, count, step):
            b = min(count, a + step)
            rows = make(a, b)
            if self.batched_weights:
                out[a:b] = self._weight_batch_outputs(rows)
            elif self._batched:
                out[a:b] = self._batched_outputs(rows)
            else:
                for i in range(b - a):
                    out[a + i] = self._point_output(rows[i])
        self.forward_passes += count
        return out

    def _as_points(self, W) -> np.ndarray:
        """W as a float64 (K, p) array (one point may be given flat)."""
        W = np.asarray(W, dtype=np.float64)
        if W.ndim == 1:
            W = W[None]
        if W.ndim != 2 or W.shape[1] != self.p:
            raise BoundpropError(f"points must have shape (K, {self.p}), got {list(W.shape)}")
        return W

    def outputs(self, W) -> np.ndarray:
        """W (K, p) → the model outputs (K, *output_shape) as float64 (W rounded to the graph
        dtype), in as few onnxruntime runs as possible."""
        W = self._as_points(W)
        return self._evaluate(lambda a, b: W[a:b].astype(self._np_dtype), W.shape[0])
