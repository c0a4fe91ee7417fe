"""Neuron-status statistics per activation layer (Lyu et al. 2021, Section 6 / Fig. 4 and 6).

From sound pre-activation bounds [l, u] of every neuron (IBP by default, as in the paper, or any
bound method's intermediate bounds): the share of *dead* (u <= 0), *alive* (l >= 0) and
*unstable* (l < 0 < u) neurons, and for ParamRamp layers the six statuses of
:data:`lpbench.bounds.piecewise.PARAM_RAMP_STATUSES`. For tanh / sigmoid / arctan the same sign
partition is CROWN's S-, S+ and S+- (Zhang et al. 2018, Section 2.4).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lpbench.bounds.piecewise import PARAM_RAMP_STATUSES, param_ramp_status
from lpbench.bounds.propagate import interval_bounds, linear_bounds, relaxed_bounds
from lpbench.network import Network
from lpbench.problem import Perturbation

#: where the pre-activation bounds come from (tight lines for the LBP family, as evaluated there)
SOURCES = {
    "ibp": lambda n, x, p, c: interval_bounds(n, x, p, c),
    "fast-lin": lambda n, x, p, c: linear_bounds(n, x, p, c, "same-slope"),
    "crown": lambda n, x, p, c: linear_bounds(n, x, p, c, "adaptive"),
    "lbp": lambda n, x, p, c: relaxed_bounds(n, x, p, c, "tight", 1),
}
BASIC = ("dead", "unstable", "alive")


def neuron_status(net: Network, images: np.ndarray, pset: Perturbation, method: str = "ibp") -> list[dict]:
    """One record per activation layer: ``layer``, ``activation``, ``neurons`` and, for each
    status, the mean number of neurons per image (``dead``, ...) and its share in percent
    (``dead_pct``, ...); ParamRamp layers also carry the six ParamRamp statuses as ``"ramp left dead"``,
    ..., ``"ramp unstable"``."""
    if method not in SOURCES:
        raise ValueError(f"neuron status from {method!r}: choose one of {', '.join(SOURCES)}")
    x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    net.check_input_shape(x.shape[1:])
    spec = torch.eye(net.n_classes, dtype=x.dtype).expand(x.shape[0], -1, -1)
    with torch.no_grad():
        pre = SOURCES[method](net, x, pset, spec).pre
    rows = []
    for i in net.activation_indices:
        act = net.layers[i].activation
        lo, hi = pre[i]
        lo, hi = lo.flatten(1), hi.flatten(1)
        n = math.prod(net.shapes[i])
        masks = {"dead": hi <= 0, "unstable": (lo < 0) & (hi > 0), "alive": lo >= 0}
        if act.name == "param_ramp":
            r = act.threshold(lo).expand(net.shapes[i]).reshape(1, -1)
            masks.update(zip((f"ramp {k}" for k in PARAM_RAMP_STATUSES), param_ramp_status(lo, hi, r)))
        row = {"layer": i, "activation": act.spec, "neurons": n, "images": x.shape[0]}
        for k, m in masks.items():
            per_image = m.sum(1).to(torch.float64)
            row[k] = float(per_image.mean())
            row[f"{k}_pct"] = 100.0 * float(per_image.mean()) / n
        rows.append(row)
    return rows
