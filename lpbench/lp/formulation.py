"""WHAT is relaxed: the triangle relaxation of a ReLU network prefix as a plain sparse LP.

Problem (C) of Salman et al. 2019 with the ReLU relaxation (4), for the layers ``[0, upto)`` of a
network around one input ``x``:

* input variables in the enclosing box of the perturbation set (l_inf ball ∩ [0, 1]); for an
  l1 ball also ``t >= |v - x|``, ``sum t <= eps``;
* for every activation layer i < upto: pre-activation variables ``z`` with the affine equalities
  ``z = W h + b`` and bounds ``l <= z <= u`` (the given pre-activation bounds), and output
  variables ``x`` in ``[relu(l), relu(u)]`` with, per neuron, stable inactive ``x = 0``, stable
  active ``x = z``, unstable ``x >= 0, x >= z, x <= u (z - l) / (u - l)``;
* an affine ``out_map``/``out_offset`` giving the tensor after layer ``upto - 1`` (the next
  pre-activation, or the logits) as a linear function of the variables, so objectives over neurons
  or logits are ``spec @ out_map`` plus ``spec @ out_offset``.

The LP is ``min c.v + c0  s.t.  row_lo <= A v <= row_hi,  var_lo <= v <= var_hi`` with finite
variable bounds everywhere (which :mod:`lpbench.solvers.certify` needs for its dual bound). Every
relaxed constraint is rounded outwards, so the LP contains every real trajectory of the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from lpbench.network import Act, Conv2d, Dense, Flatten, Network
from lpbench.problem import Perturbation
from lpbench.solvers.base import LinearProgram

#: Relative allowance of interval bounds on affine blocks that feed no activation (rare: two affine
#: layers in a row); the same order as the bound engine's slack.
_AFFINE_SLACK = 1e-9


@dataclass(frozen=True)
class Block:
    """Variables ``[start, stop)`` of the LP: the input (``layer = -1``, kind ``"input"``), the
    l1 auxiliaries ``t >= |v - x|`` (``-1``, ``"l1"``), the input of activation layer ``layer``
    (``"pre"``), its output (``"post"``), or the output of an affine layer that feeds no
    activation (``"affine"``). ``shape`` is the tensor shape."""

    layer: int
    kind: str
    start: int
    stop: int
    shape: tuple[int, ...]

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True, eq=False)
class Relaxation:
    """The LP of a network prefix with its index maps (picklable plain data)."""

    lp: LinearProgram
    blocks: tuple[Block, ...]
    out_map: sp.csr_matrix  # (n_out, n_vars)
    out_offset: np.ndarray  # (n_out,)
    upto: int

    def block(self, layer: int, kind: str) -> Block:
        for b in self.blocks:
            if b.layer == layer and b.kind == kind:
                return b
        raise KeyError(f"no {kind!r} block for layer {layer}")

    def neuron(self, j: int, sign: float = 1.0) -> tuple[np.ndarray, float]:
        """(c, c0) of ``sign * h_upto[j]`` (flat index j), e.g. a pre-activation of layer upto."""
        row = self.out_map.getrow(j)
        c = np.zeros(self.lp.n_vars)
        c[row.indices] = sign * row.data
        return c, float(sign * self.out_offset[j])

    def convex_outputs(self, c: np.ndarray) -> tuple[int, np.ndarray] | None:
        """(layer, flat mask) of the ReLUs that ``min c.v`` needs no binary and no bounds for, or
        None: the neurons of the last activation layer whose outputs enter ``c`` with a
        coefficient >= 0. Nothing after that layer has variables (the rest of the network is
        folded into ``out_map``), so each such output appears only in its own ReLU rows (and
        binary rows of a MILP) and in the objective. Lowering such an
        output to ``max(z, 0)`` keeps every row satisfied (also a row ``c.v <= t``) and does not
        raise the objective, so the epigraph ``x >= max(z, 0)`` that the relaxation already has
        is as good as the exact ReLU there: an optimum over it is an optimum of the exact
        problem, and its chord, its bounds and its binary change nothing."""
        posts = [b for b in self.blocks if b.kind == "post"]
        if not posts:
            return None
        last = max(posts, key=lambda b: b.layer)
        if any(b.layer > last.layer for b in self.blocks if b.kind in ("affine", "pre")):
            return None
        return last.layer, np.asarray(c, np.float64)[last.slice] >= 0

    def margin(self, label: int, target: int) -> tuple[np.ndarray, float]:
        """(c, c0) of the margin ``f_label - f_target`` (outputs of the relaxation)."""
        spec = np.zeros(self.out_map.shape[0])
        spec[label], spec[target] = 1.0, -1.0
        return self.objective(spec)

    def objective(self, spec: np.ndarray) -> tuple[np.ndarray, float]:
        """(c, c0) of the linear function ``spec . h_upto`` of the variables (spec: (n_out,))."""
        spec = np.asarray(spec, np.float64).ravel()
        return np.asarray(self.out_map.T @ spec).ravel(), float(spec @ self.out_offset)


def decisive(layer: int, unstable: np.ndarray, convex: tuple[int, np.ndarray] | None) -> np.ndarray:
    """The neurons of ``unstable`` (a flat mask of activation layer ``layer``) whose bounds and
    binaries an objective needs: all but those of ``convex``, its
    :meth:`Relaxation.convex_outputs`."""
    if convex is None or convex[0] != layer:
        return unstable
    return unstable & ~convex[1]


def relaxation(net: Network, x: np.ndarray, pset: Perturbation,
               pre: dict[int, tuple[np.ndarray, np.ndarray]], upto: int | None = None,
               compact: bool = False) -> Relaxation:
    """The triangle-relaxation LP of layers ``[0, upto)`` around one input ``x``.

    ``pre[i] = (l, u)`` are sound bounds of the input of every activation layer ``i < upto``
    (arrays of shape ``net.shapes[i]``). ``compact`` drops the rows that stable neurons do not
    need (see :meth:`_Builder.relu`), which changes the sparsity pattern per sample. Only ReLU
    activations; l_inf and l1 balls (an l2 ball is not a polyhedron: ValueError)."""
    if pset.norm not in ("linf", "l1"):
        raise ValueError(f"the LP relaxation supports l_inf and l1 perturbations, not {pset.norm}")
    upto = len(net.layers) if upto is None else upto
    x64 = np.asarray(x, np.float64)
    lo, hi = (t.numpy().ravel() for t in pset.enclosing_box(torch.as_tensor(x64)))
    b = _Builder(lo, hi, tuple(net.input_shape), compact)
    if pset.norm == "l1":
        b.l1_ball(x64.ravel(), pset.eps)
    for i, layer in enumerate(net.layers[:upto]):
        if isinstance(layer, Act):
            if layer.activation.name != "relu":
                raise ValueError(f"the LP relaxation supports ReLU only, got {layer.activation.spec}")
            if i not in pre:
                raise ValueError(f"no pre-activation bounds for activation layer {i}")
            l, u = (np.asarray(t, np.float64).ravel() for t in pre[i])
            if l.size != int(np.prod(net.shapes[i])) or u.size != l.size:
                raise ValueError(f"pre-activation bounds of layer {i} do not have shape {net.shapes[i]}")
            if not (np.isfinite(l).all() and np.isfinite(u).all()):
                raise ValueError(f"pre-activation bounds of layer {i} must be finite")
            b.relu(i, l, u, net.shapes[i])
        elif isinstance(layer, (Dense, Conv2d)):
            w = (sp.csr_matrix(layer.weight.astype(np.float64)) if isinstance(layer, Dense)
                 else layer.to_sparse(net.shapes[i]))
            b.affine(i, w, layer.bias.astype(np.float64).repeat(w.shape[0] // layer.bias.size),
                     net.shapes[i + 1])
        elif not isinstance(layer, Flatten):
            raise ValueError(f"unsupported layer {type(layer).__name__}")
    return b.finish(upto)


class _Builder:
    """Accumulates variable blocks and constraint rows (COO triplets) layer by layer; the affine
    layer since the last block is kept pending as (matrix over the variables, offset)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...], compact: bool) -> None:
        self.compact = compact
        self.var_lo, self.var_hi = [lo], [hi]
        self.n = lo.size
        self.blocks = [Block(-1, "input", 0, self.n, shape)]
        self.trip: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.row_lo: list[np.ndarray] = []
        self.row_hi: list[np.ndarray] = []
        self.m = 0
        self.pending: tuple[sp.csr_matrix, np.ndarray, int, tuple] | None = None  # map, offset, layer, shape
        self.last = self.blocks[0]

    def l1_ball(self, x: np.ndarray, eps: float) -> None:
        """``sum_k t_k <= eps`` with ``t_k >= |v_k - x_k|`` on the input v (t in [0, eps])."""
        n = x.size
        t = self._new_block(-1, "l1", np.zeros(n), np.full(n, float(eps)), (n,))
        ar = np.arange(n)
        self._add_rows(np.concatenate([ar, ar, n + ar, n + ar, np.full(n, 2 * n)]),
                       np.concatenate([t.start + ar, ar, t.start + ar, ar, t.start + ar]),
                       np.concatenate([np.ones(n), -np.ones(n), np.ones(n), np.ones(n), np.ones(n)]),
                       np.concatenate([-x, x, [-np.inf]]), np.concatenate([np.full(2 * n, np.inf), [eps]]))

    def _new_block(self, layer: int, kind: str, lo: np.ndarray, hi: np.ndarray, shape) -> Block:
        blk = Block(layer, kind, self.n, self.n + lo.size, tuple(shape))
        self.var_lo.append(lo)
        self.var_hi.append(hi)
        self.n += lo.size
        self.blocks.append(blk)
        return blk

    def _add_rows(self, rows, cols, vals, lo, hi) -> None:
        k = len(lo)
        self.trip.append((rows + self.m, cols, np.asarray(vals, np.float64)))
        self.row_lo.append(np.asarray(lo, np.float64))
        self.row_hi.append(np.asarray(hi, np.float64))
        self.m += k

    def _current(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The tensor after the last processed layer as (map over the last block, offset)."""
        if self.pending is not None:
            return self.pending[0], self.pending[1]
        size = self.last.stop - self.last.start
        return sp.identity(size, format="csr"), np.zeros(size)

    def affine(self, layer: int, w: sp.csr_matrix, bias: np.ndarray, shape) -> None:
        if self.pending is not None:  # two affine layers in a row: give the first its variables
            m, d, prev, prev_shape = self.pending
            self._materialize(prev, "affine", *self._interval(m, d), prev_shape)
        self.pending = (w.tocsr(), bias, layer, tuple(shape))

    def _interval(self, m: sp.csr_matrix, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.blocks.index(self.last)
        lo, hi = self.var_lo[k], self.var_hi[k]
        mid, rad = (lo + hi) / 2, (hi - lo) / 2
        c, r = m @ mid + d, abs(m) @ rad
        slack = _AFFINE_SLACK * (abs(m) @ np.maximum(abs(lo), abs(hi)) + abs(d)) + 1e-12
        return c - r - slack, c + r + slack

    def _materialize(self, layer: int, kind: str, lo: np.ndarray, hi: np.ndarray, shape,
                     keep: np.ndarray | None = None) -> Block:
        """New variables v_new = M v_last + d (equality rows -M v_last + v_new = d); without a
        row where ``keep`` is False (that variable is then tied to nothing but its bounds)."""
        m, d = self._current()
        blk = self._new_block(layer, kind, lo, hi, shape)
        mc = m.tocoo()
        k = lo.size
        rows = np.concatenate([mc.row, np.arange(k)])
        cols = np.concatenate([mc.col + self.last.start, np.arange(blk.start, blk.stop)])
        vals = np.concatenate([-mc.data, np.ones(k)])
        if keep is not None:
            sel = keep[rows]
            rows, cols, vals, d = (np.cumsum(keep) - 1)[rows[sel]], cols[sel], vals[sel], d[keep]
        self._add_rows(rows, cols, vals, d, d)
        self.pending = None
        self.last = blk
        return blk

    def relu(self, layer: int, l: np.ndarray, u: np.ndarray, shape) -> None:
        """Per neuron the rows ``x - z`` and ``x - s z``: unstable: x - z >= 0, x - s z <= -s l
        (the chord); stable active: x - z = 0; stable inactive: x in [0, 0].

        Uniform (default): both rows for every neuron, unused ones free with s = 1, so that all
        LPs of one network prefix share their sparsity pattern and a session only updates
        numbers. Compact: only the rows used, and no equality row for a stable inactive neuron
        (its z then only keeps its bounds, which are redundant when they are sound for the
        relaxation, as every bound lpbench computes is)."""
        unstable, active = (l < 0) & (u > 0), l >= 0
        z = self._materialize(layer, "pre", l, u, shape, (unstable | active) if self.compact else None)
        xb = self._new_block(layer, "post", np.maximum(l, 0.0), np.maximum(u, 0.0), shape)
        k = l.size
        s, icpt = np.ones(k), np.full(k, np.inf)
        s[unstable], icpt[unstable] = _chord(l[unstable], u[unstable])
        p = np.flatnonzero(unstable | active) if self.compact else np.arange(k)
        q = np.flatnonzero(unstable) if self.compact else np.arange(k)
        rp, rq = np.arange(p.size), p.size + np.arange(q.size)
        self._add_rows(np.concatenate([rp, rp, rq, rq]),
                       np.concatenate([xb.start + p, z.start + p, xb.start + q, z.start + q]),
                       np.concatenate([np.ones(p.size), -np.ones(p.size), np.ones(q.size), -s[q]]),
                       np.concatenate([np.where(unstable | active, 0.0, -np.inf)[p],
                                       np.full(q.size, -np.inf)]),
                       np.concatenate([np.where(active, 0.0, np.inf)[p], icpt[q]]))
        self.last = xb

    def finish(self, upto: int) -> Relaxation:
        m, d = self._current()
        mc = m.tocoo()
        out_map = sp.csr_matrix((mc.data, (mc.row, mc.col + self.last.start)), shape=(m.shape[0], self.n))
        r, c, v = (np.concatenate(p) for p in zip(*self.trip)) if self.trip else \
            (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
        a = sp.csr_matrix((v, (r, c)), shape=(self.m, self.n))
        lp = LinearProgram(a, _cat(self.row_lo), _cat(self.row_hi), _cat(self.var_lo), _cat(self.var_hi))
        return Relaxation(lp, tuple(self.blocks), out_map, np.asarray(d, np.float64), upto)


def _chord(l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope s >= u / (u - l) and intercept >= -s l of the chord, both rounded up: the row
    ``x - s z <= -s l`` then holds for every z in [l, u] and x = relu(z) in exact arithmetic."""
    s = np.nextafter(np.nextafter(u / (u - l), np.inf), np.inf)
    return s, np.nextafter(-s * l, np.inf)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
