"""WHAT is encoded exactly: the MILP of Tjeng, Xiao & Tedrake 2019 (ICLR), Section 4.

The triangle-relaxation LP of :mod:`lpbench.lp.formulation` (input set, affine equalities, stable
ReLUs exact) plus, for every unstable ReLU with pre-activation bounds ``l < 0 < u``, one binary
``a`` (1 = active) and the rows ``x <= u a`` and ``x <= z - l (1 - a)``; with ``x >= 0`` and
``x >= z`` from the LP this is exactly ``x = max(z, 0)`` for ``a`` in {0, 1}. The chord row of the
LP stays (it is valid, and implied). The bounds decide the size of the big-M constants and so the
solve time: :func:`tightened_bounds` computes them by a named procedure, recorded in the result.
For one target's margin, the last layer's ReLUs that enter it with a coefficient >= 0 keep their
triangle but lose their binary (:meth:`MILP.target_lp`): a minimum never uses their upper part,
so the MILP stays exact with fewer binaries (on NOR-MLP-B at 0.02, 41% of that layer's unstable
ReLUs and 22% of all binaries, over seven test images and their targets).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch

from lpbench.bounds.propagate import interval_bounds, linear_bounds
from lpbench.errors import LpbenchError
from lpbench.lp.drivers import PreBounds, Sessions, cheap_bounds, lp_layers, solve_sample
from lpbench.lp.formulation import Block, Relaxation, relaxation
from lpbench.network import Act, Network
from lpbench.problem import Perturbation
from lpbench.solvers.base import Backend, LinearProgram

#: The bound-tightening procedures: interval arithmetic, LP-GREEDY (backward linear bounds,
#: same slope, intersected with intervals), LP-ALL (per-neuron LPs, Salman et al. 2019).
TIGHTENINGS = ("interval", "lp-greedy", "lp-all")
#: The default: LP-ALL bounds cost a fraction of a second on an MLP and leave far fewer binaries.
DEFAULT_TIGHTENING = "lp-all"


@dataclass(frozen=True, eq=False)
class MILP:
    """The exact MILP of a network around one input (picklable plain data): ``rel`` is the
    relaxation with the binaries appended (``rel.lp.integrality`` flags them, one block of kind
    ``"binary"`` per activation layer with unstable neurons); ``unstable`` counts them;
    ``tightening`` names the bound procedure and ``pre`` holds its bounds."""

    rel: Relaxation
    unstable: int
    tightening: str
    pre: PreBounds

    def objective(self, spec: np.ndarray) -> tuple[np.ndarray, float]:
        return self.rel.objective(spec)

    def target_lp(self, c: np.ndarray) -> LinearProgram:
        """The MILP for ``min c.v``: the binaries of the ReLUs that need none for it
        (:meth:`lpbench.lp.formulation.Relaxation.convex_outputs`) made continuous in [0, 1],
        which leaves each of those ReLUs its triangle, whose minimum over the output is the exact
        ``max(z, 0)``; the optimum and every dual bound stay those of the exact MILP."""
        lp = self.rel.lp
        convex = self.rel.convex_outputs(c)
        if convex is None:
            return lp
        layer, mask = convex
        try:
            block = self.rel.block(layer, "binary")
        except KeyError:
            return lp
        l, u = (np.ravel(b) for b in self.pre[layer])
        k = np.flatnonzero((l < 0) & (u > 0))  # the neurons of the block's binaries, in order
        integrality = lp.integrality.copy()
        integrality[block.start + np.flatnonzero(mask[k])] = False
        return replace(lp, integrality=integrality)

    def margin(self, label: int, j: int) -> tuple[np.ndarray, float]:
        """(c, c0) of ``f_label - f_j``."""
        return self.rel.margin(label, j)


def check_relu(net: Network) -> None:
    """LpbenchError unless every activation is a ReLU (the only one this MILP encodes)."""
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Act) and layer.activation.name != "relu":
            raise LpbenchError(f"the MILP of Tjeng et al. supports ReLU activations only (with dense "
                               f"and conv layers); layer {i} is {layer.activation.spec}")


def tightened_bounds(net: Network, x: np.ndarray, label: int, pset: Perturbation, method: str,
                     backend: Backend | None = None) -> tuple[PreBounds, float]:
    """Pre-activation bounds of every activation layer by ``method`` (see :data:`TIGHTENINGS`)
    and the seconds they took. ``backend`` solves the LPs of ``"lp-all"``."""
    if method not in TIGHTENINGS:
        raise ValueError(f"unknown bound tightening {method!r}; choose from {', '.join(TIGHTENINGS)}")
    check_relu(net)
    t0 = time.perf_counter()
    x64 = torch.as_tensor(np.asarray(x, np.float64))[None]
    n = net.n_classes
    spec = (torch.eye(n, dtype=torch.float64)[label][None, :] - torch.eye(n, dtype=torch.float64))[None]
    with torch.no_grad():
        if method == "lp-all":
            cb = cheap_bounds(net, x64, pset, spec)
            pre = {i: (lo[0], hi[0]) for i, (lo, hi) in cb.pre.items()}
            if backend is None:
                raise ValueError("LP-ALL bound tightening needs an LP backend")
            with Sessions(backend) as sessions:
                pre = solve_sample(net, np.asarray(x, np.float64), label, pset, pre,
                                   lp_layers(net, "all"), sessions).pre
        else:
            ibp = interval_bounds(net, x64, pset, spec).pre
            pre = {i: (lo[0].numpy(), hi[0].numpy()) for i, (lo, hi) in ibp.items()}
            if method == "lp-greedy":
                lin = linear_bounds(net, x64, pset, spec, "same-slope").pre
                pre = {i: (np.maximum(pre[i][0], lin[i][0][0].numpy()),
                           np.minimum(pre[i][1], lin[i][1][0].numpy())) for i in pre}
    return pre, time.perf_counter() - t0


def milp(net: Network, x: np.ndarray, pset: Perturbation, pre: PreBounds, tightening: str = "given",
         compact: bool = True) -> MILP:
    """The MILP of ``net`` around ``x`` from sound pre-activation bounds ``pre`` (dense and conv).
    ``compact=False`` keeps the rows of stable inactive neurons, so that ``u = 0`` still ties
    their pre-activation to the input (``z <= 0``): a split of a branch and bound is then part
    of the model, not only a bound on a free variable."""
    check_relu(net)
    rel = relaxation(net, x, pset, pre, compact=compact)
    lp = rel.lp
    rows, cols, vals, rhs = [], [], [], []
    blocks, count, n, m = list(rel.blocks), 0, lp.n_vars, 0
    for i in net.activation_indices:
        l, u = (np.asarray(t, np.float64).ravel() for t in pre[i])
        k = np.flatnonzero((l < 0) & (u > 0))
        if not k.size:
            continue
        z, xb = rel.block(i, "pre"), rel.block(i, "post")
        a = n + np.arange(k.size)
        r = m + np.arange(k.size)
        # x - u a <= 0
        rows += [r, r]
        cols += [xb.start + k, a]
        vals += [np.ones(k.size), -u[k]]
        rhs.append(np.zeros(k.size))
        # x - z - l a <= -l
        r2 = r + k.size
        rows += [r2, r2, r2]
        cols += [xb.start + k, z.start + k, a]
        vals += [np.ones(k.size), -np.ones(k.size), -l[k]]
        rhs.append(-l[k])
        blocks.append(Block(i, "binary", n, n + k.size, (k.size,)))
        n, m, count = n + k.size, m + 2 * k.size, count + k.size
    extra = sp.csr_matrix((np.concatenate(vals) if vals else np.zeros(0),
                           (np.concatenate(rows) if rows else np.zeros(0, int),
                            np.concatenate(cols) if cols else np.zeros(0, int))), shape=(m, n))
    a_full = sp.vstack([sp.hstack([lp.a, sp.csr_matrix((lp.n_rows, n - lp.n_vars))]), extra]).tocsr()
    integrality = np.zeros(n, bool)
    integrality[lp.n_vars:] = True
    full = LinearProgram(a_full, np.concatenate([lp.row_lo, np.full(m, -np.inf)]),
                         np.concatenate([lp.row_hi, np.concatenate(rhs) if rhs else np.zeros(0)]),
                         np.concatenate([lp.var_lo, np.zeros(n - lp.n_vars)]),
                         np.concatenate([lp.var_hi, np.ones(n - lp.n_vars)]), integrality)
    out_map = sp.hstack([rel.out_map, sp.csr_matrix((rel.out_map.shape[0], n - lp.n_vars))]).tocsr()
    return MILP(Relaxation(full, tuple(blocks), out_map, rel.out_offset, rel.upto), count, tightening,
                {i: (np.asarray(lo, np.float64), np.asarray(hi, np.float64)) for i, (lo, hi) in pre.items()})
