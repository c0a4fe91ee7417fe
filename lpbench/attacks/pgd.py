"""Projected gradient descent (Madry et al. 2018) for l_inf, l_2 and l_1 balls within the box.

Batched in torch on CPU or CUDA in float32. The best point of every sample (lowest margin seen
over all steps and restarts) is returned; :func:`recheck` then decides in float64 whether it is a
genuine counterexample: inside the perturbation set and misclassified.

The random start of restart ``r`` of a sample is drawn from its own stream, seeded by
(``seed``, the sample's id, ``r``) on the CPU: a sample meets the same starts whatever batch,
order or device it runs in, so two runs that chunk a test set differently attack each image alike
(up to the last bits of batched float32 arithmetic).
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
               cfg: PGDConfig = PGDConfig(), ids: np.ndarray | None = None) -> torch.Tensor:
    """Best adversarial candidate per sample, shape of ``x`` (float32, on x's device); ``ids``
    name the samples' random streams (default their positions in the batch)."""
    ids = np.arange(x.shape[0]) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids.shape != (x.shape[0],):
        raise ValueError(f"pgd_attack: {ids.shape[0]} ids for {x.shape[0]} samples")
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
        seeds = [(cfg.seed, int(i), r) for i in ids[idx.cpu().numpy()]]
        start = xs if r == 0 else xs + _random_delta(xs, pset, seeds)
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


def _random_delta(x: torch.Tensor, pset: Perturbation, seeds: list[tuple[int, int, int]]) -> torch.Tensor:
    """A random start offset per row of ``x``, row k drawn from the stream ``seeds[k]``:
    uniform in the l_inf ball; for l_2 / l_1 a uniform direction's point scaled by a uniform radius."""
    n = int(np.prod(x.shape[1:]))
    draws = np.stack([np.random.default_rng(list(s)).random(n + 1) for s in seeds])
    u = torch.as_tensor(draws[:, :n] * 2 - 1, dtype=x.dtype).reshape(x.shape).to(x.device)
    if pset.norm == "linf":
        return pset.eps * u
    flat = u.reshape(x.shape[0], -1)
    p = 2 if pset.norm == "l2" else 1
    radius = torch.as_tensor(draws[:, n], dtype=x.dtype).reshape((-1,) + (1,) * (x.dim() - 1)).to(x.device)
    return (pset.eps * flat / flat.norm(p=p, dim=1, keepdim=True).clamp_min(1e-12)).reshape(x.shape) * radius


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
           cfg: PGDConfig = PGDConfig(), device: str = "cpu", ids: np.ndarray | None = None
           ) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """PGD on a batch of float32 images (``ids``: see :func:`pgd_attack`), then :func:`recheck`
    of every candidate: one (point, margins, is_counterexample) per sample."""
    x = torch.as_tensor(images, dtype=torch.float32, device=device)
    y = torch.as_tensor(labels, device=device)
    cand = pgd_attack(net, x, y, pset, cfg, ids).cpu().numpy()
    return [recheck(net, cand[k], images[k], int(labels[k]), pset) for k in range(len(labels))]
