"""Convolution and transposed convolution primitives (ONNX Conv, ConvTranspose), and the
window geometry (output sizes, pads, strides) they share with pooling.

Spatial sizes follow the ONNX spec; the kernel loop accumulates one matrix product per kernel
offset, so no im2col buffer k times the input size is ever built.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import ClassVar

import numpy as np

from boundprop.conv_norms import conv_spectral_norm_upper
from boundprop.ops.base import (
    AffinePrimitive,
    ConversionContext,
    ParametricAffine,
    Shape,
    Tensor,
    Value,
    as_str,
    attr,
    const_value,
    float_array,
    onnx_converter,
)
from boundprop.ops.broadcast import expand_to_rank
from boundprop.ops.geometry import Region, region_shape, window_slices
from boundprop.rounding import round_up


def _conv_output_size(n: int, k: int, s: int, d: int, pb: int, pe: int, ceil: bool = False) -> int:
    span = n + pb + pe - ((k - 1) * d + 1)
    if span < 0:
        raise ValueError("kernel larger than padded input")
    return (-(-span // s) if ceil else span // s) + 1


def check_window(ctx: ConversionContext, d: int, kernel: Shape, strides: Shape,
                 dilations: Shape, node_attr: dict, weight_spatial: Shape | None = None) -> None:
    """Refuse window attributes onnxruntime refuses: one kernel size, stride and dilation per
    spatial axis (d of them), each at least 1, and 2·d nonnegative pads; for a convolution,
    a kernel_shape equal to its weight's spatial shape ``weight_spatial``."""
    pads = list(node_attr.get("pads") or [0] * (2 * d))
    for what, v, n, least in (("kernel_shape", kernel, d, 1), ("strides", strides, d, 1),
                              ("dilations", dilations, d, 1), ("pads", pads, 2 * d, 0)):
        if len(v) != n or any(int(e) < least for e in v):
            raise ctx.fail(f"{what} {list(v)} is invalid for {d} spatial axes (need {n} "
                           f"value(s), each >= {least})")
    if weight_spatial is not None and tuple(kernel) != weight_spatial:
        raise ctx.fail(f"kernel_shape {list(kernel)} does not match the kernel's spatial shape "
                       f"{list(weight_spatial)}")


def clamp_strides(spatial: Shape, strides: Shape, pads_begin: list[int],
                  pads_end: list[int]) -> tuple[int, ...]:
    """A stride beyond the padded extent n + p_b + p_e leaves one output position (the
    first window) whatever its value: clamping it to that extent changes nothing, and keeps
    the norm computations (which tabulate residues modulo the stride) small."""
    return tuple(min(int(st), max(n + b + e, 1))
                 for st, n, b, e in zip(strides, spatial, pads_begin, pads_end))


def window_crop(region: Region, in_shape: Shape, kernel: Shape, strides: Shape,
                dilations: Shape, pads_begin: list[int]
                ) -> tuple[Region, list[int], list[int]] | None:
    """The input entries a sliding window (conv, pool) reads for the outputs in ``region``
    (full batch and channel axes), and the pads that make the same window, run on that input
    crop, give exactly those outputs. Output o reads padded position s·o + d·t (t < k), input
    position s·o + d·t − p_b: outputs [o0, o1) read [lo, hi) = [s·o0 − p_b, s·(o1−1) − p_b +
    d·(k−1) + 1), clipped to [0, n) as [i0, i1); pads p_b' = i0 − lo, p_e' = hi − i1 ≥ 0
    (the clipped part was padding), and the crop's output size (hi − lo − d(k−1) − 1)/s + 1
    is o1 − o0. None when the outputs read padding only."""
    in_region = [(0, in_shape[0]), (0, in_shape[1])]
    pb_out, pe_out = [], []
    for (o0, o1), n, k, s, d, p in zip(region[2:], in_shape[2:], kernel, strides, dilations,
                                       pads_begin):
        lo, hi = s * o0 - p, s * (o1 - 1) - p + d * (k - 1) + 1
        i0, i1 = max(0, lo), min(n, hi)
        if i1 <= i0:
            return None
        in_region.append((i0, i1))
        pb_out.append(i0 - lo)
        pe_out.append(hi - i1)
    return tuple(in_region), pb_out, pe_out


def resolve_pads(node_attr: dict, spatial: Shape, kernel: Shape, strides: Shape,
                 dilations: Shape) -> tuple[list[int], list[int]]:
    """Begin/end pads of a conv or pool node, resolving ``auto_pad`` as the ONNX spec says."""
    d = len(spatial)
    auto_pad = as_str(node_attr.get("auto_pad", "NOTSET"))
    if auto_pad in ("NOTSET", "", None):
        pads = list(node_attr.get("pads") or [0] * (2 * d))
        return pads[:d], pads[d:]
    if auto_pad == "VALID":
        return [0] * d, [0] * d
    begin, end = [], []
    for n, k, s, dl in zip(spatial, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * dl + 1 - n)
        small, big = total // 2, total - total // 2
        if auto_pad == "SAME_UPPER":
            begin.append(small)
            end.append(big)
        else:  # SAME_LOWER
            begin.append(big)
            end.append(small)
    return begin, end


def _conv_accumulate(x_cl: np.ndarray, w: np.ndarray, strides: Shape, dilations: Shape,
                     out_spatial: Shape, group: int) -> np.ndarray:
    """Cross-correlation of channels-last ``x_cl`` (B, *sp, C) with ``w`` (M, C/g, *k)."""
    b = x_cl.shape[0]
    m = w.shape[0]
    out = np.zeros((b, *out_spatial, m))
    mg, cg = m // group, w.shape[1]
    for offs, sl in window_slices(w.shape[2:], strides, dilations, out_spatial):
        patch = x_cl[(slice(None), *sl)]
        wk = w[(slice(None), slice(None), *offs)]  # (M, C/g)
        if group == 1:
            out += patch @ wk.T
        else:
            pg = patch.reshape(*patch.shape[:-1], group, cg)
            out += np.einsum("...gc,gmc->...gm", pg, wk.reshape(group, mg, cg)).reshape(out.shape)
    return out


def _conv_scatter(src_cl: np.ndarray, w: np.ndarray, strides: Shape, dilations: Shape,
                  dst_spatial: Shape, group: int) -> np.ndarray:
    """The adjoint of :func:`_conv_accumulate`: each entry of channels-last ``src_cl``
    (B, *src_sp, S) spreads through ``w`` (S, D/g, *k) into the window it indexes of a
    (B, *dst_spatial, D) buffer. Transposed convolution, and the adjoint of convolution."""
    b, s = src_cl.shape[0], w.shape[0]
    dg, sg = w.shape[1], s // group
    dst = np.zeros((b, *dst_spatial, dg * group))
    for offs, sl in window_slices(w.shape[2:], strides, dilations, src_cl.shape[1:-1]):
        wk = w[(slice(None), slice(None), *offs)]  # (S, D/g)
        if group == 1:
            dst[(slice(None), *sl)] += src_cl @ wk
        else:
            part = np.einsum("...gs,gsd->...gd", src_cl.reshape(*src_cl.shape[:-1], group, sg),
                             wk.reshape(group, sg, dg))
            dst[(slice(None), *sl)] += part.reshape(*part.shape[:-2], group * dg)
    return dst


class _KernelMap:
    """A map linear in its kernel ``weight`` (convolution, transposed convolution): ``_apply(w,
    x)`` applies it with kernel ``w``, so A = _apply(weight, ·) and |A| = _apply(|weight|, ·)."""

    weight: np.ndarray

    def _apply(self, w: np.ndarray, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @cached_property
    def abs_weight(self) -> np.ndarray:
        """|weight| entrywise (the matrix of abs_linear), computed once."""
        return np.abs(self.weight)

    def linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.weight, x)

    def abs_linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.abs_weight, x)


class Conv(_KernelMap, ParametricAffine):
    """N-d convolution (ONNX Conv: cross-correlation) with constant kernel and bias."""
    rules: ClassVar[frozenset[str]] = ParametricAffine.rules | {"ort_interval", "row_norms"}

    kind = "conv"

    def __init__(self, in_shape: Shape, weight: np.ndarray, bias: np.ndarray | None,
                 strides: Shape, pads_begin: list[int], pads_end: list[int], dilations: Shape,
                 group: int) -> None:
        self.weight = float_array(weight)
        self.bias = None if bias is None else float_array(bias)
        self.strides, self.dilations, self.group = tuple(strides), tuple(dilations), int(group)
        self.pads_begin, self.pads_end = list(pads_begin), list(pads_end)
        self.in_shapes = (tuple(in_shape),)
        n, c, *spatial = in_shape
        m, cg, *kernel = self.weight.shape
        if c != cg * group or m % group:
            raise ValueError(f"kernel {self.weight.shape} with group {group} does not fit "
                             f"{c} input channels")
        out_sp = tuple(_conv_output_size(*a) for a in zip(spatial, kernel, self.strides,
                                                          self.dilations, pads_begin, pads_end))
        self.out_shape = (n, m, *out_sp)
        self.offset = None if bias is None else self.bias.reshape(1, 1, m, *([1] * len(out_sp)))

    def _apply(self, w: np.ndarray, x: np.ndarray) -> np.ndarray:
        s, n, c, *sp = x.shape
        xb = x.reshape(s * n, c, *sp)
        pads = [(0, 0), (0, 0)] + list(zip(self.pads_begin, self.pads_end))
        if any(self.pads_begin) or any(self.pads_end):
            xb = np.pad(xb, pads)
        x_cl = np.moveaxis(xb, 1, -1)
        out = _conv_accumulate(x_cl, w, self.strides, self.dilations, self.out_shape[2:],
                               self.group)
        return np.moveaxis(out, -1, 1).reshape(s, *self.out_shape)

    def sq_linear(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.weight**2, x)

    def crop(self, region: Region) -> tuple[Conv, list[Region]] | None:
        """The same kernel on the input window of the outputs in ``region`` (every channel;
        :func:`window_crop`)."""
        if tuple(region[:2]) != ((0, self.out_shape[0]), (0, self.out_shape[1])):
            return None
        geo = window_crop(region, self.in_shapes[0], self.weight.shape[2:], self.strides,
                          self.dilations, self.pads_begin)
        if geo is None:
            return None
        in_region, pb, pe = geo
        op = Conv(region_shape(in_region), self.weight, self.bias, self.strides, pb, pe,
                  self.dilations, self.group)
        op.__dict__["abs_weight"] = self.abs_weight  # shared, not recomputed per crop
        return op, [in_region]

    def _adjoint(self, w: np.ndarray, lam: np.ndarray) -> np.ndarray:
        k, n, m, *out = lam.shape
        _, c, *sp = self.in_shapes[0]
        lam_cl = np.moveaxis(lam.reshape(k * n, m, *out), 1, -1)  # (B, *out, M)
        padded = tuple(d + b + e for d, b, e in zip(sp, self.pads_begin, self.pads_end))
        grad = _conv_scatter(lam_cl, w, self.strides, self.dilations, padded, self.group)
        crop = tuple(slice(b, b + d) for b, d in zip(self.pads_begin, sp))
        return np.moveaxis(grad[(slice(None), *crop)], -1, 1).reshape(k, *self.in_shapes[0])

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        return self._adjoint(self.weight, lam)

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        return self._adjoint(self.abs_weight, lam)

    def overlap(self) -> int:
        """Most (output position, tap) pairs reading one input entry (per axis, multiplied)."""
        total = 1
        for n, k, st, d, pb, o in zip(self.in_shapes[0][2:], self.weight.shape[2:],
                                      self.strides, self.dilations, self.pads_begin,
                                      self.out_shape[2:]):
            hits = (st * np.arange(o)[:, None] + d * np.arange(k)[None, :] - pb).reshape(-1)
            hits = hits[(hits >= 0) & (hits < n)]
            total *= int(np.bincount(hits, minlength=1).max()) if hits.size else 0
        return total

    def param_structure(self) -> tuple[float, int]:
        """(c, bias copies): ‖conv(ΔK, u)‖₂ ≤ ‖ΔK‖_F sqrt(overlap) ‖u‖₂ (Cauchy–Schwarz per
        output position; each input entry lies in at most ``overlap`` patches)."""

        copies = int(np.prod(self.out_shape)) // self.out_shape[1] if self.bias is not None \
            else 0
        return float(round_up(np.sqrt(float(self.overlap())))), copies

    def weight_and_bias(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(kernel (M, C/g, *k), per-channel bias (M,) or None)."""
        return self.weight, self.bias

    def perturbed(self, dw: np.ndarray, db: np.ndarray | None) -> Conv:
        """Kernel + dw and, given db, bias + db."""
        op = copy.copy(self)
        op.__dict__.pop("abs_weight", None)
        op.weight = self.weight + dw
        if db is not None:
            op.bias = self.bias + db
            op.offset = op.bias.reshape(1, 1, -1, *([1] * (len(op.out_shape) - 2)))
        return op

    def param_vjp(self, cot, u, rows):
        """y[m, o] = Σ_{c,k} K[m, c, k] u_pad[c, s·o + d·k] + b[m]: ∂/∂K[·, ·, k] is the
        correlation of cot with the input window at offset k (per group), ∂/∂b[m] = Σ cot[m]."""
        w = self.weight
        mo, cg, *kernel = w.shape
        g = self.group
        n_b = self.in_shapes[0][0]
        out_sp = self.out_shape[2:]
        grad_b = cot.reshape(rows, n_b, mo, -1).sum(axis=(1, 3))
        pads = [(0, 0), (0, 0)] + list(zip(self.pads_begin, self.pads_end))
        up = np.pad(u[0], pads)  # (N, C, *padded)
        grad_w = np.zeros((rows, mo, cg, *kernel))
        cr = cot.reshape(rows, n_b, g, mo // g, -1)
        for kidx in np.ndindex(*kernel):
            sl = tuple(slice(ki * d, ki * d + s * (o - 1) + 1, s) for ki, d, s, o in
                       zip(kidx, self.dilations, self.strides, out_sp))
            us = up[(slice(None), slice(None), *sl)].reshape(n_b, g, cg, -1)
            part = np.einsum("rngmp,ngcp->rgmc", cr, us)
            grad_w[(slice(None), slice(None), slice(None), *kidx)] = part.reshape(rows, mo, cg)
        return grad_w, grad_b

    def spectral_norm_upper(self) -> float:
        """Certified ‖conv‖₂ at this input size (``norms.conv_spectral_norm_upper``: circular
        embedding, polyphase strides, per-frequency Cholesky certificates), capped by the
        generic bounds."""

        bound = conv_spectral_norm_upper(self.weight, tuple(self.in_shapes[0][2:]),
                                         self.strides, self.pads_begin, self.pads_end,
                                         self.dilations, self.group)
        m_in, m_out = int(np.prod(self.in_shapes[0])), int(np.prod(self.out_shape))
        if m_in * m_out <= self.MATERIALIZE_LIMIT:
            return min(bound, super().spectral_norm_upper())
        return bound

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight.shape[1:]))

    def emit_interval_onnx(self, b, x):
        """Two ONNX Convs (centre with W, radius with |W|): see ``fast_interval.affine``."""
        attrs = dict(kernel_shape=list(self.weight.shape[2:]), strides=list(self.strides),
                     pads=list(self.pads_begin) + list(self.pads_end),
                     dilations=list(self.dilations), group=self.group)
        m = self.weight.shape[0]

        def emit(inp, w, bias):
            ins = [inp, b.const(w)] + ([] if bias is None else [b.const(bias)])
            return b.op("Conv", ins, **attrs)

        rows = float(np.abs(self.weight).reshape(m, -1).sum(axis=1).max())
        return b.affine(x, self.weight, self.bias, self.fan_in, rows, emit, self.out_shape,
                        bias_shape=(m,))

    def with_extra_offset(self, shift: np.ndarray) -> Conv | None:
        shift = float_array(shift)
        m, rank = self.out_shape[1], len(self.out_shape)
        # Only a per-channel shift (shape (.., m, 1, .., 1)) is a bias.
        full = expand_to_rank(shift, rank)
        if full.ndim != rank or full.shape[0] != 1 or any(d != 1 for d in full.shape[2:]):
            return None
        per_channel = np.broadcast_to(full.reshape(-1), (m,))
        bias = per_channel if self.bias is None else self.bias + per_channel
        return Conv(self.in_shapes[0], self.weight, bias, self.strides, self.pads_begin,
                    self.pads_end, self.dilations, self.group)

    def parameters(self) -> dict[str, np.ndarray]:
        p = {"weight": self.weight}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def describe(self) -> str:
        k = "x".join(map(str, self.weight.shape[2:]))
        extra = []
        if any(s != 1 for s in self.strides):
            extra.append(f"s{','.join(map(str, self.strides))}")
        if any(self.pads_begin) or any(self.pads_end):
            extra.append(f"p{','.join(map(str, self.pads_begin + self.pads_end))}")
        if any(d != 1 for d in self.dilations):
            extra.append(f"d{','.join(map(str, self.dilations))}")
        if self.group != 1:
            extra.append(f"g{self.group}")
        return f"{self.weight.shape[1] * self.group}->{self.weight.shape[0]} {k} " + " ".join(extra)


class ConvTranspose(_KernelMap, AffinePrimitive):
    """N-d transposed convolution (the adjoint of a strided convolution), constant kernel."""
    rules: ClassVar[frozenset[str]] = AffinePrimitive.rules | {"ort_interval"}

    kind = "conv-transpose"

    def __init__(self, in_shape: Shape, weight: np.ndarray, bias: np.ndarray | None,
                 strides: Shape, pads_begin: list[int], pads_end: list[int], dilations: Shape,
                 output_padding: Shape, group: int) -> None:
        self.weight = float_array(weight)  # (C, M/g, *k)
        self.bias = None if bias is None else float_array(bias)
        self.strides, self.dilations, self.group = tuple(strides), tuple(dilations), int(group)
        self.pads_begin, self.pads_end = list(pads_begin), list(pads_end)
        self.output_padding = tuple(output_padding)
        self.in_shapes = (tuple(in_shape),)
        n, c, *spatial = in_shape
        cw, mg, *kernel = self.weight.shape
        if cw != c or c % group:
            raise ValueError(f"kernel {self.weight.shape} does not fit {c} input channels")
        self.full = tuple(s * (i - 1) + (k - 1) * d + 1 + op for i, k, s, d, op in
                          zip(spatial, kernel, self.strides, self.dilations, self.output_padding))
        out_sp = tuple(f - pb - pe for f, pb, pe in zip(self.full, pads_begin, pads_end))
        if any(o <= 0 for o in out_sp):
            raise ValueError("pads larger than the output")
        self.out_shape = (n, mg * group, *out_sp)
        m = mg * group
        self.offset = None if bias is None else self.bias.reshape(1, 1, m, *([1] * len(out_sp)))

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[0] // self.group * np.prod(self.weight.shape[2:]))

    def _apply(self, w: np.ndarray, x: np.ndarray) -> np.ndarray:
        s, n, c, *sp = x.shape
        x_cl = np.moveaxis(x.reshape(s * n, c, *sp), 1, -1)  # (B, *sp, C)
        full = _conv_scatter(x_cl, w, self.strides, self.dilations, self.full, self.group)
        crop = tuple(slice(pb, f - pe) for pb, pe, f in zip(self.pads_begin, self.pads_end,
                                                              self.full))
        out = full[(slice(None), *crop)]
        return np.moveaxis(out, -1, 1).reshape(s, *self.out_shape)

    def _adjoint(self, w: np.ndarray, lam: np.ndarray) -> np.ndarray:
        k, n, m, *out = lam.shape
        sp = self.in_shapes[0][2:]
        full = np.zeros((k * n, m, *self.full))
        inner = tuple(slice(b, b + d) for b, d in zip(self.pads_begin, out))
        full[(slice(None), slice(None), *inner)] = lam.reshape(k * n, m, *out)
        grad = _conv_accumulate(np.moveaxis(full, 1, -1), w, self.strides,
                                self.dilations, tuple(sp), self.group)
        return np.moveaxis(grad, -1, 1).reshape(k, *self.in_shapes[0])

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        return self._adjoint(self.weight, lam)

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        return self._adjoint(self.abs_weight, lam)

    def parameters(self) -> dict[str, np.ndarray]:
        p = {"weight": self.weight}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def emit_interval_onnx(self, b, x):
        """Two ONNX ConvTransposes (centre with W, radius with |W|)."""
        attrs = dict(kernel_shape=list(self.weight.shape[2:]), strides=list(self.strides),
                     pads=list(self.pads_begin) + list(self.pads_end),
                     dilations=list(self.dilations), group=self.group,
                     output_padding=list(self.output_padding))
        c, mg = self.weight.shape[:2]
        g = self.group
        # Row sums of |A|: output channel (group j, m) sums input channels of group j over
        # (at most) every kernel offset.
        rows = np.abs(self.weight).reshape(g, c // g, mg, -1).sum(axis=(1, 3))

        def emit(inp, w, bias):
            ins = [inp, b.const(w)] + ([] if bias is None else [b.const(bias)])
            return b.op("ConvTranspose", ins, **attrs)

        return b.affine(x, self.weight, self.bias, self.fan_in, float(rows.max()), emit,
                        self.out_shape, bias_shape=(mg * g,))

    def describe(self) -> str:
        k = "x".join(map(str, self.weight.shape[2:]))
        strides = ",".join(map(str, self.strides))
        return f"{self.weight.shape[0]}->{self.out_shape[1]} {k} s{strides}"


def _window_args(ctx: ConversionContext, node, args: list[Value]):
    """What Conv and ConvTranspose nodes share: the computed input, the constant kernel and
    bias, the spatial rank, the attributes and the checked kernel/strides/dilations."""
    op = node.op_type
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail(f"{op} input must be computed from the network input")
    w = float_array(const_value(ctx, args[1], f"{op} kernel"))
    bias = None
    if len(args) > 2 and args[2] is not None:
        bias = const_value(ctx, args[2], f"{op} bias")
    d = w.ndim - 2
    a = {at.name: attr(node, at.name) for at in node.attribute}
    kernel = tuple(a.get("kernel_shape") or w.shape[2:])
    strides = tuple(a.get("strides") or [1] * d)
    dilations = tuple(a.get("dilations") or [1] * d)
    return x, w, bias, d, a, kernel, strides, dilations


@onnx_converter("Conv")
def convert_conv(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x, w, bias, d, a, kernel, strides, dilations = _window_args(ctx, node, args)
    if len(x.shape) != d + 2:
        raise ctx.fail(f"Conv kernel of rank {w.ndim} does not fit input shape {x.shape}")
    check_window(ctx, d, kernel, strides, dilations, a, weight_spatial=tuple(w.shape[2:]))
    pb, pe = resolve_pads(a, x.shape[2:], kernel, strides, dilations)
    strides = clamp_strides(x.shape[2:], strides, pb, pe)
    try:
        prim = Conv(x.shape, w, bias, strides, pb, pe, dilations, a.get("group", 1))
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    return [ctx.emit(prim, [x])]


@onnx_converter("ConvTranspose")
def convert_conv_transpose(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x, w, bias, d, a, kernel, strides, dilations = _window_args(ctx, node, args)
    check_window(ctx, d, kernel, strides, dilations, a, weight_spatial=tuple(w.shape[2:]))
    out_pad = list(a.get("output_padding") or [0] * d)
    group = a.get("group", 1)
    spatial = x.shape[2:]
    full = [s * (i - 1) + (k - 1) * dl + 1 + op
            for i, k, s, dl, op in zip(spatial, kernel, strides, dilations, out_pad)]
    auto_pad = as_str(a.get("auto_pad", "NOTSET"))
    if a.get("output_shape"):
        target = list(a["output_shape"])[-d:]
        total = [f - t for f, t in zip(full, target)]
        # The spec: only SAME_UPPER puts the smaller half at the start (NOTSET as SAME_LOWER).
        upper = auto_pad == "SAME_UPPER"
        pb = [max(t, 0) // 2 if upper else max(t, 0) - max(t, 0) // 2 for t in total]
        pe = [t - b for t, b in zip(total, pb)]
        # An output_shape beyond the full output is zero-filled at the end (onnxruntime), as
        # output_padding does.
        out_pad = [op + max(0, -e) for op, e in zip(out_pad, pe)]
        pe = [max(0, e) for e in pe]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # A negative total (stride above the dilated kernel) counts as 0, as in onnxruntime:
        # the output is then the full one, shorter than input * stride.
        total = [max(0, f - i * s) for f, i, s in zip(full, spatial, strides)]
        upper = auto_pad == "SAME_UPPER"
        pb = [t // 2 if upper else t - t // 2 for t in total]
        pe = [t - b for t, b in zip(total, pb)]
    elif auto_pad == "VALID":
        pb, pe = [0] * d, [0] * d
    else:
        pads = list(a.get("pads") or [0] * (2 * d))
        pb, pe = pads[:d], pads[d:]
    try:
        prim = ConvTranspose(x.shape, w, bias, strides, pb, pe, dilations, out_pad, group)
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    return [ctx.emit(prim, [x])]
