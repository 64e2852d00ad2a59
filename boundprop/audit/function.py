"""The audited function: z (the input, or a perturbation of every parameter layer) ↦ the value
of every IR node, evaluated by boundprop's float64 evaluator; and its Jacobians, which only
guide the searches (an IR reverse pass, or central differences when an op has no reverse rule).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

FD_MAX_DIM = 512  # finite-difference Jacobians (when an op has no reverse rule) up to this


class NoJacobian(Exception):
    """An op on the path has no reverse rule (its kind is the message)."""


class AuditedFunction:
    """z ↦ every node's value. ``wrt="input"``: z is the flattened input. ``wrt="params"``:
    z stacks, for each parameter node k of ``param_nodes``, (ΔW_k, Δb_k) flattened; the
    network is evaluated with W_k + ΔW_k, b_k + Δb_k at the inputs ``ctx`` ((n_ctx, *in))."""

    def __init__(self, net, wrt: str, ctx=None, param_nodes=()):
        self.net, self.wrt = net, wrt
        self.ctx = ctx  # params: (n_ctx, *input_shape) inputs; input: None
        self.n_ctx = 1 if ctx is None else len(ctx)
        self.layers = []  # params: (node index, start, W0 shape, bias length)
        start = 0
        for k in param_nodes:
            w, b = net.nodes[k].op.weight_and_bias()
            nb = w.shape[0] if b is not None else 0
            self.layers.append((k, start, w.shape, nb))
            start += w.size + nb
        self.dim = int(np.prod(net.input_shape)) if wrt == "input" else start
        self.shapes = [n.shape for n in net.nodes]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.has_jac = True
        self.use_fd = False
        self.fd_reason = ""

    # -- parameter perturbation
    def blocks(self):
        """(start, end) of each parameter layer's (ΔW, Δb) in z."""
        out = []
        for _, a, wshape, nb in self.layers:
            size = int(math.prod(wshape)) + nb
            out.append((a, a + size))
        return out

    def patched(self, z):
        """The network with every parameter layer's (W, b) moved by z's blocks."""
        nodes = list(self.net.nodes)
        for k, a, wshape, nb in self.layers:
            nw = int(np.prod(wshape))
            dw = z[a:a + nw].reshape(wshape)
            db = z[a + nw:a + nw + nb] if nb else None
            nodes[k] = dataclasses.replace(nodes[k], op=nodes[k].op.perturbed(dw, db))
        return dataclasses.replace(self.net, nodes=nodes)

    # -- evaluation
    def values(self, Z):
        """Every node's value at each z: arrays (n, n_ctx, *shape)."""
        if self.wrt == "input":
            xs = Z.reshape(len(Z), *self.net.input_shape)
            return [v[:, None] for v in self.net.evaluate_all(xs)]
        per = [self.patched(z).evaluate_all(self.ctx) for z in Z]
        return [np.stack([p[k] for p in per]) for k in range(len(self.net.nodes))]

    def values_out(self, Z):
        """The output node's value at each z: (n, n_ctx, *out_shape)."""
        if self.wrt == "input":
            return self.net(Z.reshape(len(Z), *self.net.input_shape))[:, None]
        return np.stack([self.patched(z)(self.ctx) for z in Z])

    # -- Jacobians (guides only)
    def jacobians(self, Z, js, rows):
        """Gradients of the output functionals ``rows[t]`` ((R, *out_shape), the same R for
        every point) at each point (z_t, ctx j_t): array (n, R, dim). Central differences
        once an op without reverse rule is met, if dim · n_ctx ≤ FD_MAX_DIM; NoJacobian
        otherwise."""
        if not self.has_jac:
            raise NoJacobian
        if self.use_fd:
            return self._fd_jacobians(Z, js, rows)
        try:
            return self._ir_jacobians(Z, js, rows)
        except NoJacobian as e:
            if self.dim * max(self.n_ctx, 1) > FD_MAX_DIM:
                raise
            self.use_fd = True
            self.fd_reason = str(e)
            return self._fd_jacobians(Z, js, rows)

    def _fd_jacobians(self, Z, js, rows):
        """Central differences (step 1e-6 of each coordinate's magnitude, at least 1e-6)."""
        n, R, d = len(Z), rows.shape[1], self.dim
        out = np.zeros((n, R, d))
        eye = np.eye(d)
        for t in range(n):
            h = 1e-6 * np.maximum(1.0, np.abs(Z[t]))
            P = np.concatenate([Z[t] + eye * h, Z[t] - eye * h])
            y = self.values_out(P)[:, js[t]].reshape(2 * d, -1)
            J = ((y[:d] - y[d:]) / (2 * h[:, None])).T  # (K, d)
            out[t] = rows[t].reshape(R, -1) @ J
        return out

    def _ir_jacobians(self, Z, js, rows):
        n, R = len(Z), rows.shape[1]
        if self.wrt == "input":
            xs = Z.reshape(n, *self.net.input_shape)
            vals = self.net.evaluate_all(xs)
            g0, _ = reverse_pass(self.net, vals, rows.reshape(n * R, *rows.shape[2:]), n, ())
            if g0 is None:
                return np.zeros((n, R, self.dim))
            return g0.reshape(n, R, self.dim)
        out = np.zeros((n, R, self.dim))
        want = {k for k, *_ in self.layers}
        for t in range(n):
            net = self.patched(Z[t])
            j = js[t]
            vals = net.evaluate_all(self.ctx[j:j + 1])
            _, got = reverse_pass(net, vals, rows[t], 1, want)
            for k, a, wshape, nb in self.layers:
                c = got.get(k)
                if c is None:
                    continue
                u = vals[net.nodes[k].inputs[0]]
                gw, gb = net.nodes[k].op.param_vjp(c, u, R)
                nw = int(np.prod(wshape))
                if gw is not None:
                    out[t, :, a:a + nw] = gw.reshape(R, nw)
                if nb and gb is not None:
                    out[t, :, a + nw:a + nw + nb] = gb.reshape(R, nb)
        return out


def reverse_pass(net, vals, rows, S: int, want):
    """Reverse pass of the output functionals ``rows`` ((S·R, *out_shape), R rows per point)
    through the IR at the S points whose node values are ``vals`` (lead axis S), by each op's
    ``vjp``. Returns (rows w.r.t. the input (S·R, *in), {node in want: rows w.r.t. that
    node's output}). Raises NoJacobian at an op without a reverse rule."""
    R = rows.shape[0] // S
    acc = {net.output: rows}
    got = {}
    for i in range(len(net.nodes) - 1, 0, -1):
        c = acc.pop(i, None)
        if c is None:
            continue
        if i in want:
            got[i] = c
        node = net.nodes[i]
        try:
            parts = node.op.vjp(c, [vals[j] for j in node.inputs], R)
        except NotImplementedError:
            raise NoJacobian(node.op.kind) from None
        for j, cj in zip(node.inputs, parts):
            cj = np.nan_to_num(np.asarray(cj, float))
            acc[j] = acc[j] + cj if j in acc else cj
    return acc.get(0), got
