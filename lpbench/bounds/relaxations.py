"""Linear bounding lines of activations: WHAT is relaxed, independent of how bounds travel.

For an activation sigma on an interval [l, u] a relaxation is a pair of lines

    lower_slope * z + lower_icpt  <=  sigma(z)  <=  upper_slope * z + upper_icpt   for z in [l, u].

A *policy* chooses them. For ReLU every policy uses the chord ``u (z - l) / (u - l)`` as the upper
line of an unstable neuron (the triangle relaxation) and differs in the lower slope alpha in [0, 1]:

* ``"same-slope"`` -- alpha = u / (u - l), the Fast-Lin choice; with it the backward pass is the
  greedy dual of Wong & Kolter 2018 (Salman et al. 2019, Section 4);
* ``"adaptive"`` -- alpha = 1 if u >= -l else 0, CROWN's adaptive choice (Zhang et al. 2018);
* ``"zero"`` / ``"one"`` -- alpha = 0 / 1.

New activations register a function ``(activation, l, u, policy) -> Lines`` in ``RELAXATIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lpbench.activations import Activation


@dataclass(frozen=True)
class Lines:
    lower_slope: torch.Tensor
    lower_icpt: torch.Tensor
    upper_slope: torch.Tensor
    upper_icpt: torch.Tensor

    @property
    def symmetric(self) -> bool:
        """True when both lines share one slope tensor (the backward pass then needs one set
        of coefficients for lower and upper bounds)."""
        return self.lower_slope is self.upper_slope


RELU_POLICIES = ("same-slope", "adaptive", "zero", "one")


def relu_lines(act: Activation, l: torch.Tensor, u: torch.Tensor, policy: str) -> Lines:
    if policy not in RELU_POLICIES:
        raise ValueError(f"unknown ReLU lower-slope policy {policy!r}; choose from {RELU_POLICIES}")
    active = l >= 0
    unstable = (l < 0) & (u > 0)
    width = torch.where(unstable, u - l, torch.ones_like(u))
    chord = torch.where(unstable, u / width, active.to(u.dtype))
    upper_icpt = torch.where(unstable, -chord * l, torch.zeros_like(u))
    if policy == "same-slope":
        return Lines(chord, torch.zeros_like(u), chord, upper_icpt)
    elif policy == "adaptive":
        alpha = (u >= -l).to(u.dtype)
    else:
        alpha = torch.full_like(u, 0.0 if policy == "zero" else 1.0)
    lower_slope = torch.where(unstable, alpha, active.to(u.dtype))
    return Lines(lower_slope, torch.zeros_like(u), chord, upper_icpt)


RELAXATIONS: dict[str, Callable[[Activation, torch.Tensor, torch.Tensor, str], Lines]] = {
    "relu": relu_lines,
}


def activation_lines(act: Activation, l: torch.Tensor, u: torch.Tensor, policy: str) -> Lines:
    try:
        fn = RELAXATIONS[act.name]
    except KeyError:
        raise ValueError(f"no linear relaxation registered for activation {act.name!r}") from None
    return fn(act, l, u, policy)
