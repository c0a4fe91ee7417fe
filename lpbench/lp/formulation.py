"""WHAT is relaxed: the triangle relaxation of a ReLU network prefix as a plain sparse LP.

Problem (C) of Salman et al. 2019 with the ReLU relaxation (4), for the layers ``[0, upto)`` of a
network around one input ``x``:

* input variables in the enclosing box of the perturbation set (l_inf ball ∩ [0, 1]);
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

from lpbench.network import Act, Conv2d, Dense, Flatten, Network
from lpbench.problem import Perturbation
from lpbench.solvers.base import LinearProgram

#: Relative allowance of interval bounds on affine blocks that feed no activation (rare: two affine
#: layers in a row); the same order as the bound engine's slack.
_AFFINE_SLACK = 1e-9


@dataclass(frozen=True)
class Block:
    """Variables ``[start, stop)`` of the LP: the input (``layer = -1``, kind ``"input"``), the
    input of activation layer ``layer`` (``"pre"``), its output (``"post"``), or the output of an
    affine layer that feeds no activation (``"affine"``). ``shape`` is the tensor shape."""

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

    def objective(self, spec: np.ndarray) -> tuple[np.ndarray, float]:
        """(c, c0) of the linear function ``spec . h_upto`` of the variables (spec: (n_out,))."""
        spec = np.asarray(spec, np.float64).ravel()
        return np.asarray(self.out_map.T @ spec).ravel(), float(spec @ self.out_offset)


def relaxation(net: Network, x: np.ndarray, pset: Perturbation,
               pre: dict[int, tuple[np.ndarray, np.ndarray]], upto: int | None = None) -> Relaxation:
    """The triangle-relaxation LP of layers ``[0, upto)`` around one input ``x``.

    ``pre[i] = (l, u)`` are sound bounds of the input of every activation layer ``i < upto``
    (arrays of shape ``net.shapes[i]``). Only ReLU activations and l_inf perturbations are
    supported (an l2/l1 ball is not a box; raise ValueError)."""
    if pset.norm != "linf":
        raise ValueError(f"the LP relaxation supports l_inf perturbations only, got {pset.norm}")
    upto = len(net.layers) if upto is None else upto
    lo, hi = _input_box(np.asarray(x, np.float64), pset)
    b = _Builder(lo, hi, tuple(net.input_shape))
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


def _input_box(x: np.ndarray, pset: Perturbation) -> tuple[np.ndarray, np.ndarray]:
    """The enclosing box of the l_inf ball ∩ box, rounded outwards (as Perturbation.enclosing_box)."""
    lo = np.nextafter(x - pset.eps, -np.inf).ravel()
    hi = np.nextafter(x + pset.eps, np.inf).ravel()
    if pset.box is not None:
        lo, hi = np.maximum(lo, pset.box[0]), np.minimum(hi, pset.box[1])
    return lo, hi


class _Builder:
    """Accumulates variable blocks and constraint rows (COO triplets) layer by layer; the affine
    layer since the last block is kept pending as (matrix over the variables, offset)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...]) -> None:
        self.var_lo, self.var_hi = [lo], [hi]
        self.n = lo.size
        self.blocks = [Block(-1, "input", 0, self.n, shape)]
        self.trip: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.row_lo: list[np.ndarray] = []
        self.row_hi: list[np.ndarray] = []
        self.m = 0
        self.pending: tuple[sp.csr_matrix, np.ndarray, int, tuple] | None = None  # map, offset, layer, shape
        self.last = self.blocks[0]

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
        lo, hi = self.var_lo[-1], self.var_hi[-1]  # the bounds of the last block
        mid, rad = (lo + hi) / 2, (hi - lo) / 2
        c, r = m @ mid + d, abs(m) @ rad
        slack = _AFFINE_SLACK * (abs(m) @ np.maximum(abs(lo), abs(hi)) + abs(d)) + 1e-12
        return c - r - slack, c + r + slack

    def _materialize(self, layer: int, kind: str, lo: np.ndarray, hi: np.ndarray, shape) -> Block:
        """New variables v_new = M v_last + d (equality rows -M v_last + v_new = d)."""
        m, d = self._current()
        blk = self._new_block(layer, kind, lo, hi, shape)
        mc = m.tocoo()
        k = lo.size
        rows = np.concatenate([mc.row, np.arange(k)])
        cols = np.concatenate([mc.col + self.last.start, np.arange(blk.start, blk.stop)])
        vals = np.concatenate([-mc.data, np.ones(k)])
        self._add_rows(rows, cols, vals, d, d)
        self.pending = None
        self.last = blk
        return blk

    def relu(self, layer: int, l: np.ndarray, u: np.ndarray, shape) -> None:
        z = self._materialize(layer, "pre", l, u, shape)
        xb = self._new_block(layer, "post", np.maximum(l, 0.0), np.maximum(u, 0.0), shape)
        zi, xi = np.arange(z.start, z.stop), np.arange(xb.start, xb.stop)
        active = l >= 0
        unstable = (l < 0) & (u > 0)
        # stable active: x - z = 0; unstable: x - z >= 0 and x - s z <= -s l
        ia, iu = np.flatnonzero(active), np.flatnonzero(unstable)
        na, nu = ia.size, iu.size
        s, icpt = _chord(l[iu], u[iu])
        r = np.concatenate([np.arange(na), np.arange(na), na + np.arange(nu), na + np.arange(nu),
                            na + nu + np.arange(nu), na + nu + np.arange(nu)])
        c = np.concatenate([xi[ia], zi[ia], xi[iu], zi[iu], xi[iu], zi[iu]])
        v = np.concatenate([np.ones(na), -np.ones(na), np.ones(nu), -np.ones(nu), np.ones(nu), -s])
        lo = np.concatenate([np.zeros(na), np.zeros(nu), np.full(nu, -np.inf)])
        hi = np.concatenate([np.zeros(na), np.full(nu, np.inf), icpt])
        self._add_rows(r, c, v, lo, hi)
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
