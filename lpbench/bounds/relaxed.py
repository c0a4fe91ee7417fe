"""Relaxed CROWN-v and linear bound propagation (LBP) (Lyu et al. 2021, Section 3, eq. 15-18).

Every pre-activation z_j gets two linear functions of the input, ``A_L x + c_L <= z_j <= A_U x +
c_U`` on the perturbation set, and its bounds [l_j, u_j] by concretising them. Relaxed CROWN-v
computes those of a layer by walking the backward engine back over ``v`` activation layers only and
then substituting the stored linear functions of the pre-activation it reached (the whole way to
the input where fewer than v activations lie below). v = 1 is LBP, which the paper shows equals
forward-mode linear propagation; v >= depth is CROWN.

Floating point: the stored intercepts already include the engine's allowance (REL_SLACK times the
size of the summed terms, including the input term), so each stored pair is a sound linear bound
in float64; substitutions count the intercepts' magnitudes into the next allowance.
"""

from __future__ import annotations

import math

import torch

from lpbench.bounds.backward import ABS_SLACK, BLOCK_BYTES, REL_SLACK, backward_walk, concretize
from lpbench.bounds.relaxations import Lines
from lpbench.network import Network
from lpbench.problem import Perturbation

#: per activation layer index j: (A_L, c_L, A_U, c_U) with A of shape (B, n_j, n_in), c (B, n_j)
LinearBounds = dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def stop_layer(net: Network, k: int, v: int) -> int:
    """Where relaxed CROWN-v stops walking back from h_k: the input of the v-th activation layer
    below k, or 0 (the input) when there are fewer."""
    below = [a for a in net.activation_indices if a < k]
    return below[-v] if len(below) >= v else 0


def linear_in_x(net: Network, params, k: int, lam: torch.Tensor, lines: dict[int, Lines],
                lin: LinearBounds, v: int, x: torch.Tensor, pset: Perturbation
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A sound linear lower bound ``L x' + c <= lam . h_k(x')`` on the set: (L (B, m, n_in),
    c (B, m)); the intercept includes the floating-point allowance."""
    per_row = 8 * max(math.prod(s) for s in net.shapes[: k + 1]) * x.shape[0]
    chunk = max(1, BLOCK_BYTES // per_row)
    parts = [_linear_chunk(net, params, k, lam[:, s:s + chunk], lines, lin, v, x, pset)
             for s in range(0, lam.shape[1], chunk)]
    return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)


def _linear_chunk(net, params, k, lam, lines, lin, v, x, pset):
    stop = stop_layer(net, k, v)
    lam, bias, _, mag = backward_walk(net, params, k, lam, lines, stop=stop)
    b = x.shape[0]
    lam = lam.expand(b, *lam.shape[1:]).flatten(2)
    bias, mag = bias.expand(b, -1), mag.expand(b, -1)
    if stop > 0:
        a_lo, c_lo, a_up, c_up = lin[stop]
        pos, neg = lam.clamp(min=0), lam.clamp(max=0)
        bias = bias + torch.einsum("bmn,bn->bm", pos, c_lo) + torch.einsum("bmn,bn->bm", neg, c_up)
        mag = mag + torch.einsum("bmn,bn->bm", pos, c_lo.abs()) - torch.einsum("bmn,bn->bm", neg, c_up.abs())
        lam = torch.bmm(pos, a_lo) + torch.bmm(neg, a_up)
    lo, hi = pset.enclosing_box(x.flatten(1))
    mag_in = torch.bmm(lam.abs(), torch.maximum(lo.abs(), hi.abs()).unsqueeze(-1))[..., 0]
    return lam, bias - (REL_SLACK * (mag + mag_in) + ABS_SLACK)


def relaxed_bounds_of(net: Network, params, k: int, lam: torch.Tensor, lines, lin, v, x, pset,
                      keep: bool = False):
    """Lower and upper bounds (B, m) of ``lam . h_k`` by relaxed CROWN-v; with ``keep`` also the
    linear functions (A_L, c_L, A_U, c_U) of every row."""
    m = lam.shape[1]
    if lam.shape[0] > 1 and lam.stride(0) == 0:
        both = torch.cat([lam[:1], -lam[:1]], dim=1).expand(lam.shape[0], -1, *lam.shape[2:])
    else:
        both = torch.cat([lam, -lam], dim=1)
    a, c = linear_in_x(net, params, k, both, lines, lin, v, x, pset)
    lower, _, mag = concretize(a, x.flatten(1), pset)
    lower = lower + c - REL_SLACK * mag  # the input term's rounding is in c already; this is the sum's
    lo, up = lower[:, :m], -lower[:, m:]
    if not keep:
        return lo, up, None
    return lo, up, (a[:, :m], c[:, :m], -a[:, m:], -c[:, m:])
