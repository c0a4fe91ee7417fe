"""Targeted PGD: one attack per (sample, class j) on the single margin f_y - f_j.

An untargeted attack on min_j (f_y - f_j) follows whichever class is closest, and can stall on it
while another class is reachable. On NOR-MLP-2-100 at eps = 0.0499, image 5845's margin to class
9 stops at 0.001 under the table's PGD (5 restarts, 100 steps), while this attack drives the
margin to class 8 to -1.24 in a tenth of a second; the MILP had needed 1,655 CPU-s to find such a
point. The MILP method runs it on every sample its cheap bounds leave open, before the solver.

Every target gets ``restarts`` runs of ``steps`` steps at once (one batch of
``targets x restarts`` rows): restart 0 starts at x, the others at random points of the ball
drawn from the stream seeded by (``seed``, the sample's id, the target, the restart). The step
decays from eps / 4 to eps / 1000 on a cosine schedule, along the norm's steepest descent
direction (:func:`lpbench.attacks.pgd._ascent`), projected back into the set. Each target's best
point is then re-checked in float64 by :func:`lpbench.attacks.pgd.recheck`; only a point that
passes counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lpbench.attacks.pgd import _ascent, _random_delta, recheck
from lpbench.network import Network
from lpbench.problem import Perturbation


@dataclass(frozen=True)
class TargetedConfig:
    steps: int = 200
    restarts: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 1:
            raise ValueError("targeted PGD needs steps >= 1 and restarts >= 1")


@dataclass(frozen=True)
class TargetedResult:
    """The re-checked best point of the attack on ``target``: its float64 margins f_y - f_j
    (NaN at the label) and whether it is a counterexample."""

    target: int
    point: np.ndarray
    margins: np.ndarray
    found: bool


def targeted_attack(net: Network, x: np.ndarray, label: int, pset: Perturbation, targets: Sequence[int],
                    cfg: TargetedConfig = TargetedConfig(), device: str = "cpu", sample_id: int = 0
                    ) -> list[TargetedResult]:
    """One :class:`TargetedResult` per target of ``targets`` (classes other than ``label``), in
    that order."""
    targets = [int(j) for j in targets]
    if not targets:
        return []
    if any(j == label or not 0 <= j < net.n_classes for j in targets):
        raise ValueError(f"targets must be classes other than the label {label}, got {targets}")
    xt = torch.as_tensor(np.asarray(x, np.float32), device=device)
    rows, r = len(targets) * cfg.restarts, cfg.restarts
    base = xt[None].expand(rows, *xt.shape)
    seeds = [(cfg.seed, int(sample_id), j, k) for j in targets for k in range(r)]
    start = base + _random_delta(base, pset, seeds)
    start[::r] = base[::r]  # restart 0 of every target starts at x
    tj = torch.as_tensor(np.repeat(targets, r), device=device)
    best_m = torch.full((rows,), math.inf, device=device)
    x_adv = pset.project(start, base)
    best = x_adv.clone()
    for k in range(cfg.steps + 1):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = net.forward(x_adv)
        m = logits[:, label] - logits.gather(1, tj[:, None])[:, 0]
        with torch.no_grad():
            better = m < best_m
            best[better], best_m[better] = x_adv[better], m[better]
        if k == cfg.steps:
            break
        (grad,) = torch.autograd.grad(-m.sum(), x_adv)
        alpha = pset.eps * (0.125 * (1 + math.cos(math.pi * k / cfg.steps)) + 1e-3)
        with torch.no_grad():
            x_adv = pset.project(x_adv + alpha * _ascent(grad, x_adv, pset), base)
    pick = best_m.reshape(len(targets), r).argmin(1) + torch.arange(len(targets), device=device) * r
    points = best[pick].detach().cpu().numpy()
    out = []
    for j, p in zip(targets, points):
        pt, marg, ok = recheck(net, p, x, label, pset)
        out.append(TargetedResult(j, pt, marg, ok))
    return out
