"""Elementwise activation functions: a small registry the rest of lpbench dispatches on.

An activation is named by a spec string as it appears in architecture lists, ``"relu"`` or
``"leaky_relu(0.1)"``. Each entry knows its forward pass (torch, any dtype/device) and whether it
is monotone non-decreasing, which is what interval bound propagation needs. How an activation is
*relaxed* (its bounding lines) lives in :mod:`lpbench.bounds.relaxations`, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from lpbench.errors import ModelError


@dataclass(frozen=True)
class Activation:
    """One elementwise activation: ``name`` plus numeric parameters, e.g. leaky_relu(0.01)."""

    name: str
    params: tuple[float, ...] = ()

    @property
    def spec(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({','.join(repr(p) for p in self.params)})"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _KINDS[self.name].forward(z, *self.params)

    @property
    def monotone(self) -> bool:
        return _KINDS[self.name].monotone

    @property
    def piecewise_linear(self) -> bool:
        return _KINDS[self.name].piecewise_linear


@dataclass(frozen=True)
class _Kind:
    forward: Callable[..., torch.Tensor]
    n_params: int
    monotone: bool
    piecewise_linear: bool


_KINDS: dict[str, _Kind] = {}


def register_activation(name: str, forward: Callable[..., torch.Tensor], *, n_params: int = 0,
                        monotone: bool = True, piecewise_linear: bool = False) -> None:
    """Add an activation kind; ``forward(z, *params)`` must work on any torch dtype/device."""
    _KINDS[name] = _Kind(forward, n_params, monotone, piecewise_linear)


def known_activations() -> list[str]:
    return sorted(_KINDS)


_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\(([^)]*)\))?\s*$")


def parse_activation(spec: str) -> Activation:
    """``"relu"`` -> Activation("relu"); ``"leaky_relu(0.1)"`` -> Activation("leaky_relu", (0.1,))."""
    m = _SPEC.match(spec)
    if m is None or m.group(1) not in _KINDS:
        raise ModelError(f"unknown activation {spec!r}; known: {', '.join(known_activations())}")
    name = m.group(1)
    params = tuple(float(p) for p in m.group(2).split(",")) if m.group(2) else ()
    if len(params) != _KINDS[name].n_params:
        raise ModelError(f"activation {name} takes {_KINDS[name].n_params} parameter(s), got {spec!r}")
    return Activation(name, params)


register_activation("relu", lambda z: torch.relu(z), piecewise_linear=True)
