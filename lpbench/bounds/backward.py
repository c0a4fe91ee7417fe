"""One backward linear-bound engine (the dual / back-substitution view shared by Fast-Lin,
CROWN and the greedy dual of Wong & Kolter; Salman et al. 2019, Section 4).

Given linear specifications ``Lambda`` on the output of layer ``k-1`` it walks the layers back to
the input, replacing every activation by the bounding line the sign of its coefficient asks for,
and concretises the resulting linear function of the input over the perturbation set. The lower
bound it returns is valid for every input in the set; an upper bound is the lower bound of
``-Lambda``. Arithmetic is float64; see :data:`REL_SLACK` for the floating-point allowance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lpbench.bounds.relaxations import Lines
from lpbench.network import Act, Conv2d, Dense, Flatten, Network
from lpbench.problem import Perturbation

#: Every bound is widened by REL_SLACK * (sum of the magnitudes of the terms it adds) + ABS_SLACK.
#: float64 rounding error of these sums is at most ~ n * depth * 2^-53 ~ 1e-12 relative for the
#: networks here (n <= 1e4 terms per dot product), so the slack is a thousandfold margin.
REL_SLACK = 1e-9
ABS_SLACK = 1e-12

#: Upper limit on the size of one coefficient block (bytes); spec rows are processed in chunks.
BLOCK_BYTES = 256 * 2**20


def backward_bounds(net: Network, params, k: int, lam: torch.Tensor, lines: dict[int, Lines],
                    x: torch.Tensor, pset: Perturbation, upper: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sound bounds of ``lam . h_k(x')`` over the perturbation set around ``x``.

    ``h_k`` is the tensor after layers [0, k), of shape ``net.shapes[k]``; ``lam`` has shape
    (B, m, *net.shapes[k]); ``lines[i]`` are the bounding lines of activation layer i < k.
    Returns (lower, upper), each (B, m); upper is None unless asked for.

    When every relaxation uses one slope for both lines (Fast-Lin, the greedy dual) the upper
    bound shares the coefficients of the lower one and costs only a second bias; otherwise it is
    the lower bound of ``-lam``, computed in the same pass."""
    symmetric = all(ln.symmetric for i, ln in lines.items() if i < k)
    if upper and not symmetric:
        if lam.shape[0] > 1 and lam.stride(0) == 0:  # keep a shared spec shared
            both = torch.cat([lam[:1], -lam[:1]], dim=1).expand(lam.shape[0], -1, *lam.shape[2:])
        else:
            both = torch.cat([lam, -lam], dim=1)
        lo, _ = backward_bounds(net, params, k, both, lines, x, pset, upper=False)
        m = lam.shape[1]
        return lo[:, :m], -lo[:, m:]
    per_row = 8 * max(math.prod(s) for s in net.shapes[: k + 1]) * lam.shape[0]
    chunk = max(1, BLOCK_BYTES // per_row)
    parts = [_backward_chunk(net, params, k, lam[:, s:s + chunk], lines, x, pset, upper)
             for s in range(0, lam.shape[1], chunk)]
    lower = torch.cat([p[0] for p in parts], dim=1)
    return lower, (torch.cat([p[1] for p in parts], dim=1) if upper else None)


def _backward_chunk(net, params, k, lam, lines, x, pset, upper):
    lam, bias_lo, bias_up, mag = backward_walk(net, params, k, lam, lines, upper=upper)
    lam = lam.expand(x.shape[0], *lam.shape[1:])
    lo, up, mag_in = concretize(lam.flatten(2), x.flatten(1), pset)
    slack = REL_SLACK * (mag + mag_in) + ABS_SLACK
    return lo + bias_lo - slack, (up + bias_up + slack) if upper else None


def backward_walk(net: Network, params, k: int, lam: torch.Tensor, lines: dict[int, Lines],
                  stop: int = 0, upper: bool = False):
    """Walk ``lam . h_k`` back through layers k-1, ..., ``stop``: returns (lam, bias_lo, bias_up,
    mag) with ``lam . h_k >= lam' . h_stop + bias_lo`` (and ``<= lam' . h_stop + bias_up`` when
    ``upper``, valid only for symmetric lines); ``mag`` bounds the size of the summed terms.
    ``lam'`` keeps batch size 1 when ``lam`` is one spec shared by the batch (stride 0)."""
    if lam.shape[0] > 1 and lam.stride(0) == 0:
        # the same coefficients for every sample (an expanded identity): walk the affine layers
        # once, and let the first activation's per-sample lines broadcast them to the batch
        lam = lam[:1]
    m = lam.shape[1]
    bias_lo = torch.zeros(1, m, dtype=lam.dtype, device=lam.device)
    bias_up = torch.zeros_like(bias_lo)
    mag = torch.zeros_like(bias_lo)
    for i in range(k - 1, stop - 1, -1):
        layer, in_shape = net.layers[i], net.shapes[i]
        if isinstance(layer, Dense):
            w, bb = params[i]
            term = lam @ bb
            bias_lo, bias_up = bias_lo + term, bias_up + term
            mag = mag + lam.abs() @ bb.abs()
            lam = lam @ w
        elif isinstance(layer, Conv2d):
            w, bb = params[i]
            term = lam.sum(dim=(-1, -2)) @ bb
            bias_lo, bias_up = bias_lo + term, bias_up + term
            mag = mag + lam.abs().sum(dim=(-1, -2)) @ bb.abs()
            c_out, h, wd = lam.shape[2:]
            pad = [in_shape[1 + d] - ((n - 1) * layer.stride - 2 * layer.padding + w.shape[2 + d])
                   for d, n in enumerate((h, wd))]
            b = lam.shape[0]
            lam = F.conv_transpose2d(lam.reshape(b * m, c_out, h, wd), w, stride=layer.stride,
                                     padding=layer.padding, output_padding=tuple(pad))
            lam = lam.reshape(b, m, *in_shape)
        elif isinstance(layer, Flatten):
            lam = lam.reshape(lam.shape[0], m, *in_shape)
        elif isinstance(layer, Act):
            ln = lines[i]
            lo_i, up_i = ln.lower_icpt.unsqueeze(1), ln.upper_icpt.unsqueeze(1)
            pos, neg = lam.clamp(min=0), lam.clamp(max=0)
            term = (pos * lo_i + neg * up_i).flatten(2).sum(-1)
            bias_lo = bias_lo + term
            if upper:  # the upper bound takes the upper line where the coefficient is positive
                term_u = (pos * up_i + neg * lo_i).flatten(2).sum(-1)
                bias_up = bias_up + term_u
                term = torch.maximum(term.abs(), term_u.abs())
            mag = mag + term.abs()
            if ln.symmetric:
                lam = lam * ln.lower_slope.unsqueeze(1)
            else:
                lam = pos * ln.lower_slope.unsqueeze(1) + neg * ln.upper_slope.unsqueeze(1)
        else:  # pragma: no cover - the IR has no other layer kinds
            raise TypeError(f"unsupported layer {layer!r}")
    return lam, bias_lo, bias_up, mag


def concretize(lam: torch.Tensor, x: torch.Tensor, pset: Perturbation
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """min and max of ``lam @ x'`` over the set around ``x``: lam (B, m, n), x (B, n) ->
    (lower, upper, magnitude), each (B, m); magnitude bounds the size of the summed terms."""
    lo, hi = pset.enclosing_box(x)
    mid = ((hi + lo) / 2).unsqueeze(-1)
    rad_mag = torch.stack([(hi - lo) / 2, torch.maximum(lo.abs(), hi.abs())], dim=-1)
    centre = torch.bmm(lam, mid)[..., 0]
    rm = torch.bmm(lam.abs(), rad_mag)
    rad, mag = rm[..., 0], rm[..., 1]
    lower, upper = centre - rad, centre + rad
    if pset.norm != "linf":
        # l2 / l1 ball: lam.x -+ eps * ||lam||_q (dual norm). The enclosing box bound is valid
        # too (the set lies inside it), so keep the tighter of the two on each side.
        c = torch.bmm(lam, x.unsqueeze(-1))[..., 0]
        r = pset.eps * torch.linalg.vector_norm(lam, ord=pset.q, dim=-1)
        lower, upper = torch.maximum(lower, c - r), torch.minimum(upper, c + r)
    return lower, upper, mag
