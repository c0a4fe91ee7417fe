"""Interval arithmetic through one layer (the building block of IBP, Gowal et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lpbench.network import Act, Dense, Flatten, Layer


def interval_layer(layer: Layer, params, lo: torch.Tensor, hi: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bounds of one layer's output given elementwise input bounds.

    Returns (lo, hi, magnitude): ``magnitude`` bounds the absolute size of the terms summed, so the
    caller can widen the result by a floating-point error allowance."""
    if isinstance(layer, Flatten):
        n = lo.shape[0]
        return lo.reshape(n, -1), hi.reshape(n, -1), torch.zeros_like(lo.reshape(n, -1))
    if isinstance(layer, Act):
        if not layer.activation.monotone:
            raise ValueError(f"interval propagation needs a monotone activation, got {layer.activation.spec}")
        return layer.activation.forward(lo), layer.activation.forward(hi), torch.zeros_like(lo)
    w, b = params
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    mag_in = torch.maximum(lo.abs(), hi.abs())
    if isinstance(layer, Dense):
        c, r, m = F.linear(mid, w, b), F.linear(rad, w.abs()), F.linear(mag_in, w.abs(), b.abs())
    else:
        conv = dict(stride=layer.stride, padding=layer.padding)
        c = F.conv2d(mid, w, b, **conv)
        r = F.conv2d(rad, w.abs(), **conv)
        m = F.conv2d(mag_in, w.abs(), b.abs(), **conv)
    return c - r, c + r, m
