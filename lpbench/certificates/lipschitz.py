"""Global Lipschitz certificates: Op-norm (Szegedy et al. 2014, the baseline of Zhang et al. 2018)
and LMT (Tsuzuku et al. 2018, as compared in Lee 2021, Chapter 3.2), with the operator norms they
multiply.

For the margin ``g_t = f_y - f_t`` of a network whose activations are 1-Lipschitz elementwise
(ReLU), ``|g_t(x') - g_t(x)| <= L_t ||x' - x||_p`` with

* Op-norm: ``L_t = ||W^K_y - W^K_t||_q * prod_{k<K} ||W^k||_{p->p}`` (l_inf: largest row
  l_1 norm; l_2: spectral norm; l_1: largest column l_1 norm);
* LMT: ``L_t = sqrt(2) * prod_k ||W^k||_2`` (l_2 only), Tsuzuku et al.'s guarantee
  ``margin > sqrt(2) L eps`` with L the Lipschitz constant of the whole logit map.

(Lee 2021 writes LMT's translation as ``rho^{K-1} ||W^K_y - W^K_m||_2``, which is Op-norm l_2.)
The certified radius of target t is ``g_t(x) / L_t``. Spectral norms are computed on the dense
(conv: lowered) matrices by LAPACK and raised by 1e-9; :func:`power_iteration` is the estimate
used in certified training (Lee 2021, Algorithms 2-3, with conv / conv-transpose for conv layers),
a LOWER estimate, kept for comparison only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lpbench.certificates.boundary import spectral_norm_dense
from lpbench.certificates.chain import Affine, affine_chain, check_norm, dual_norm
from lpbench.network import Conv2d, Network

LIPSCHITZ_ACTIVATIONS = ("relu",)


def operator_norm(w: np.ndarray, norm: str) -> float:
    """An upper bound of ``||w||_{p->p}``."""
    if norm == "linf":
        return float(np.abs(w).sum(1).max()) * (1 + 1e-10) if w.size else 0.0
    if norm == "l1":
        return float(np.abs(w).sum(0).max()) * (1 + 1e-10) if w.size else 0.0
    return spectral_norm_dense(w)


def _op(a: Affine, norm: str) -> float:
    return a.spectral if norm == "l2" else operator_norm(a.weight, norm)


def op_norm_constants(net: Network, label: int, norm: str) -> np.ndarray:
    """(K,) Lipschitz constants L_t of ``f_label - f_t`` (0 at t = label): Op-norm."""
    check_norm("op-norm", norm, ("linf", "l2", "l1"))
    chain = affine_chain(net, "op-norm", LIPSCHITZ_ACTIVATIONS)
    prod = math.prod(_op(a, norm) for a in chain[:-1])
    w = chain[-1].weight
    return dual_norm(w[label][None, :] - w, norm) * prod * (1 + 1e-9)


def lmt_constants(net: Network, label: int, norm: str) -> np.ndarray:
    """(K,) the LMT constant sqrt(2) prod_k ||W^k||_2 for every t != label (0 at the label)."""
    check_norm("lmt", norm, ("l2",))
    chain = affine_chain(net, "lmt", LIPSCHITZ_ACTIVATIONS)
    L = math.sqrt(2.0) * math.prod(a.spectral for a in chain) * (1 + 1e-9)
    out = np.full(chain[-1].weight.shape[0], L)
    out[label] = 0.0
    return out


def power_iteration(layer: Affine | Conv2d, in_shape: tuple[int, ...] | None = None, iters: int = 200,
                    seed: int = 0) -> float:
    """Spectral-norm ESTIMATE by power iteration (a lower estimate of the true norm): dense
    matrices directly, conv layers through conv2d / conv_transpose2d on input-shaped vectors."""
    gen = torch.Generator().manual_seed(seed)
    conv = layer if isinstance(layer, Conv2d) else layer.conv
    if conv is None:
        w = torch.as_tensor(layer.weight, dtype=torch.float64)
        fwd, bwd, shape = (lambda v: w @ v), (lambda v: w.T @ v), (w.shape[1],)
    else:
        shape = tuple(in_shape if in_shape is not None else layer.in_shape)
        k = torch.as_tensor(conv.weight, dtype=torch.float64)
        out_h = (shape[1] + 2 * conv.padding - k.shape[2]) // conv.stride + 1
        out_w = (shape[2] + 2 * conv.padding - k.shape[3]) // conv.stride + 1
        pad_h = shape[1] - ((out_h - 1) * conv.stride - 2 * conv.padding + k.shape[2])
        pad_w = shape[2] - ((out_w - 1) * conv.stride - 2 * conv.padding + k.shape[3])

        def fwd(v):
            return F.conv2d(v[None], k, stride=conv.stride, padding=conv.padding)[0]

        def bwd(v):
            return F.conv_transpose2d(v[None], k, stride=conv.stride, padding=conv.padding,
                                      output_padding=(pad_h, pad_w))[0]
    u = torch.randn(shape, generator=gen, dtype=torch.float64)
    u /= u.norm()
    sigma = 0.0
    for _ in range(iters):
        v = fwd(u)
        sigma = float(v.norm())
        if sigma == 0.0:
            return 0.0
        u = bwd(v / sigma)
        u /= u.norm()
    return sigma
