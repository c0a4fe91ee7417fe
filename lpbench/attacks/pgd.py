"""Projected gradient descent (Madry et al. 2018) for l_inf, l_2 and l_1 balls within the box.

Batched in torch on CPU or CUDA in float32. The best point of every sample (lowest margin seen
over all steps and restarts) is returned; :func:`recheck` then decides in float64 whether it is a
genuine counterexample: inside the perturbation set and misclassified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lpbench.network import Network
from lpbench.problem import Perturbation

LOSSES = ("margin", "ce", "mixed")

#: A sample counts as broken (no more restarts) only once its float32 margin is below -SUCCESS;
#: a margin barely below 0 in float32 may still be >= 0 in the float64 re-check.
SUCCESS = 1e-4


@dataclass(frozen=True)
class PGDConfig:
    """``step_size`` defaults to 2.5 * eps / steps (Madry et al.); restart 0 starts at x, the
    others uniformly at random in the ball; ``"mixed"`` alternates the margin (Carlini-Wagner)
    and cross-entropy losses across restarts."""

    steps: int = 100
    restarts: int = 5
    step_size: float | None = None
    loss: str = "mixed"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown PGD loss {self.loss!r}; choose from {LOSSES}")
        if self.steps < 1 or self.restarts < 1:
            raise ValueError("PGD needs steps >= 1 and restarts >= 1")


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f_y - max_{j != y} f_j per row: negative means misclassified."""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def pgd_attack(net: Network, x: torch.Tensor, y: torch.Tensor, pset: Perturbation,
               cfg: PGDConfig = PGDConfig()) -> torch.Tensor:
    """Best adversarial candidate per sample, shape of ``x`` (float32, on x's device)."""
    gen = torch.Generator(device=x.device).manual_seed(cfg.seed)
    alpha = cfg.step_size if cfg.step_size is not None else 2.5 * pset.eps / cfg.steps
    best = x.clone()
    with torch.no_grad():
        best_m = margins(net.forward(x), y)
    active = best_m >= -SUCCESS
    for r in range(cfg.restarts):
        idx = active.nonzero()[:, 0]
        if idx.numel() == 0 or pset.eps == 0:
            break
        loss = cfg.loss if cfg.loss != "mixed" else ("margin", "ce")[r % 2]
        xs, ys = x[idx], y[idx]
        start = xs if r == 0 else xs + _random_delta(xs, pset, gen)
        cand, cand_m = _run(net, xs, ys, pset.project(start, xs), pset, alpha, cfg.steps, loss)
        better = cand_m < best_m[idx]
        best[idx[better]] = cand[better]
        best_m[idx[better]] = cand_m[better]
        active = best_m >= -SUCCESS
    return best


def _run(net, x, y, x_adv, pset, alpha, steps, loss):
    best, best_m = x_adv.clone(), torch.full((x.shape[0],), float("inf"), device=x.device)
    for _ in range(steps + 1):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = net.forward(x_adv)
        m = margins(logits, y)
        with torch.no_grad():
            better = m < best_m
            best[better], best_m[better] = x_adv[better], m[better]
            if bool((best_m < -SUCCESS).all()):
                break
        obj = -m if loss == "margin" else torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(obj.sum(), x_adv)
        with torch.no_grad():
            x_adv = pset.project(x_adv + alpha * _ascent(grad, x_adv, pset), x)
    return best.detach(), best_m


def _ascent(grad: torch.Tensor, x_adv: torch.Tensor, pset: Perturbation) -> torch.Tensor:
    if pset.norm == "linf":
        return grad.sign()
    flat = grad.reshape(grad.shape[0], -1)
    if pset.norm == "l2":
        return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).reshape(grad.shape)
    # l1: move along the largest-gradient coordinate (steepest ascent for the l1 ball), among
    # the coordinates the box lets move in that direction
    if pset.box is not None:
        pos = x_adv.reshape(flat.shape)
        blocked = ((flat > 0) & (pos >= pset.box[1])) | ((flat < 0) & (pos <= pset.box[0]))
        flat = flat.masked_fill(blocked, 0.0)
    step = torch.zeros_like(flat)
    j = flat.abs().argmax(1, keepdim=True)
    step.scatter_(1, j, flat.gather(1, j).sign())
    return step.reshape(grad.shape)


def _random_delta(x: torch.Tensor, pset: Perturbation, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
    if pset.norm == "linf":
        return pset.eps * u
    flat = u.reshape(x.shape[0], -1)
    p = 2 if pset.norm == "l2" else 1
    return (pset.eps * flat / flat.norm(p=p, dim=1, keepdim=True).clamp_min(1e-12)).reshape(x.shape) * \
        torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=gen, device=x.device, dtype=x.dtype)


def recheck(net: Network, candidate: np.ndarray, x: np.ndarray, label: int, pset: Perturbation
            ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Project ``candidate`` into the set in float64 and evaluate it there.

    Returns (point, margins f_y - f_j for every j, is_counterexample). A point counts only if it
    passes the exact membership test and some class scores strictly above the label."""
    x64 = np.asarray(x, np.float64)
    pt = pset.project(torch.as_tensor(candidate, dtype=torch.float64)[None],
                      torch.as_tensor(x64)[None])[0].numpy()
    if pset.norm == "linf":  # undo any rounding that pushed a coordinate past the ball
        over = np.abs(pt - x64) > pset.eps
        pt[over] = np.nextafter(pt[over], x64[over])
    elif not pset.contains(pt, x64):  # l2 / l1: the projection can land an ulp outside the ball
        pt = x64 + (pt - x64) * (1 - 1e-9)
    logits = net.logits64(pt)[0]
    marg = logits[label] - logits
    marg[label] = np.nan
    ok = pset.contains(pt, x64) and bool(np.nanmin(marg) < 0)
    return pt, marg, ok


def attack(net: Network, images: np.ndarray, labels: np.ndarray, pset: Perturbation,
           cfg: PGDConfig = PGDConfig(), device: str = "cpu") -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """PGD on a batch of float32 images, then :func:`recheck` of every candidate: one
    (point, margins, is_counterexample) per sample."""
    x = torch.as_tensor(images, dtype=torch.float32, device=device)
    y = torch.as_tensor(labels, device=device)
    cand = pgd_attack(net, x, y, pset, cfg).cpu().numpy()
    return [recheck(net, cand[k], images[k], int(labels[k]), pset) for k in range(len(labels))]
