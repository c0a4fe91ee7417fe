"""Linear bounding lines of activations: WHAT is relaxed, independent of how bounds travel.

For an activation sigma on an interval [l, u] a relaxation is a pair of lines

    lower_slope * z + lower_icpt  <=  sigma(z)  <=  upper_slope * z + upper_icpt   for z in [l, u].

A *strategy* chooses them (Lyu et al. 2021, appendix A.7; Zhang et al. 2018, Tables 2-3):

* ``"constant"`` -- slope 0, the lines sigma(l) and sigma(u): the backward engine then reproduces
  interval bound propagation (IBP) for every monotone activation;
* ``"tight"`` (alias ``"zero"``) -- for ReLU the triangle with lower slope 0 (leaky ReLU: eta;
  ParamRamp: the tight column of Lyu et al.'s table): every line is pointwise at least as tight as
  the constant one, which is what the ordering theorem of Lyu et al. (Theorem 2) needs;
* ``"adaptive"`` -- CROWN-Ada: lower slope 1 if u >= -l else 0 (the smaller-area choice);
* ``"same-slope"`` -- Fast-Lin: the lower line parallel to the upper chord, u / (u - l) for ReLU
  (the greedy dual of Wong & Kolter 2018, Salman et al. 2019 Section 4);
* ``"one-lb"`` (alias ``"one"``) -- lower slope 1;
* ``"fixed(a)"`` -- a user-fixed lower slope a in [0, 1] for unstable ReLU / leaky ReLU neurons
  (leaky ReLU: max(a, eta)).

For ReLU every strategy but ``constant`` keeps the chord ``u (z - l) / (u - l)`` as the upper line
of an unstable neuron. The S-shaped activations (tanh, sigmoid, arctan) have one relaxation, the
tangent / chord lines of CROWN (:mod:`lpbench.bounds.sshape`), under every strategy but
``constant``. New activations register a function ``(activation, l, u, strategy) -> Lines`` in
``RELAXATIONS``; :func:`activation_lines` resolves aliases and handles ``constant`` for all.
"""

from __future__ import annotations

import re
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
STRATEGIES = ("constant", "tight", "adaptive", "same-slope", "one-lb")
ALIASES = {"zero": "tight", "one": "one-lb"}
_FIXED = re.compile(r"^fixed\(\s*([-+0-9.eE]+)\s*\)$")


def parse_strategy(strategy: str) -> tuple[str, float | None]:
    """``"tight"`` -> ("tight", None); ``"fixed(0.3)"`` -> ("fixed", 0.3); aliases resolved.
    ValueError for anything else."""
    m = _FIXED.match(strategy) if isinstance(strategy, str) else None
    if m is not None:
        a = float(m.group(1))
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"a fixed lower slope must lie in [0, 1], got {a!r}")
        return "fixed", a
    name = ALIASES.get(strategy, strategy)
    if name not in STRATEGIES:
        raise ValueError(f"unknown bounding-line strategy {strategy!r}; choose from "
                         f"{', '.join(STRATEGIES)}, fixed(a) (aliases: {', '.join(ALIASES)})")
    return name, None


def relu_lines(act: Activation, l: torch.Tensor, u: torch.Tensor, policy: str) -> Lines:
    name, fixed = parse_strategy(policy)
    active = l >= 0
    unstable = (l < 0) & (u > 0)
    width = torch.where(unstable, u - l, torch.ones_like(u))
    chord = torch.where(unstable, u / width, active.to(u.dtype))
    upper_icpt = torch.where(unstable, -chord * l, torch.zeros_like(u))
    if name == "same-slope":
        return Lines(chord, torch.zeros_like(u), chord, upper_icpt)
    elif name == "adaptive":
        alpha = (u >= -l).to(u.dtype)
    elif name == "fixed":
        alpha = torch.full_like(u, fixed)
    else:
        alpha = torch.full_like(u, 0.0 if name == "tight" else 1.0)
    lower_slope = torch.where(unstable, alpha, active.to(u.dtype))
    return Lines(lower_slope, torch.zeros_like(u), chord, upper_icpt)


def constant_lines(act: Activation, l: torch.Tensor, u: torch.Tensor) -> Lines:
    """sigma(l) <= sigma(z) <= sigma(u): slope 0 (monotone activations; IBP as lines)."""
    zero = torch.zeros_like(u)
    return Lines(zero, act.forward(l), zero, act.forward(u))


RELAXATIONS: dict[str, Callable[[Activation, torch.Tensor, torch.Tensor, str], Lines]] = {
    "relu": relu_lines,
}


def activation_lines(act: Activation, l: torch.Tensor, u: torch.Tensor, policy: str) -> Lines:
    name, _ = parse_strategy(policy)
    try:
        fn = RELAXATIONS[act.name]
    except KeyError:
        raise ValueError(f"no linear relaxation registered for activation {act.name!r}") from None
    if name == "constant":
        if not act.monotone:
            raise ValueError(f"the constant strategy needs a monotone activation, got {act.spec}")
        return constant_lines(act, l, u)
    return fn(act, l, u, policy)


def supported_activations() -> tuple[str, ...]:
    return tuple(sorted(RELAXATIONS))


def _register_builtin() -> None:
    # the other built-in relaxations live in their own modules and register here
    from lpbench.bounds import piecewise, sshape  # noqa: F401


_register_builtin()
