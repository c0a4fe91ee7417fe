"""Elementwise activation functions: a small registry the rest of lpbench dispatches on.

An activation is named by a spec string as it appears in architecture lists, ``"relu"`` or
``"leaky_relu(0.1)"``. Each entry knows its forward pass (torch, any dtype/device) and whether it
is monotone non-decreasing, which is what interval bound propagation needs. How an activation is
*relaxed* (its bounding lines) lives in :mod:`lpbench.bounds.relaxations`, not here.

Built in: ``relu``, ``leaky_relu(eta)`` (0 <= eta <= 1), ``tanh``, ``sigmoid``, ``arctan`` and
``param_ramp(eta,r)``, the ParamRamp of Lyu et al. 2021 (eq. 139 of their appendix):
eta*z for z < 0, z on [0, r], eta*z + (1 - eta)*r for z > r. Its threshold r > 0 may be one number
(the spec) or one per neuron: :meth:`Activation.with_r` attaches an array of the layer's shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from lpbench.errors import ModelError


@dataclass(frozen=True)
class Activation:
    """One elementwise activation: ``name`` plus numeric parameters, e.g. leaky_relu(0.01).

    ``r`` (ParamRamp only): a per-neuron threshold array of the layer's shape (without batch)
    that replaces the scalar r of the spec; it takes no part in equality."""

    name: str
    params: tuple[float, ...] = ()
    r: np.ndarray | None = field(default=None, compare=False, repr=False)

    def with_r(self, r: np.ndarray) -> "Activation":
        """This ParamRamp with a per-neuron threshold ``r`` (all entries > 0)."""
        if self.name != "param_ramp":
            raise ModelError(f"only param_ramp has a per-neuron threshold r, not {self.spec}")
        r = np.asarray(r, dtype=np.float64)
        if not (np.isfinite(r).all() and (r > 0).all()):
            raise ModelError("param_ramp thresholds r must be finite and > 0")
        return Activation(self.name, self.params, r)

    def threshold(self, like: torch.Tensor) -> torch.Tensor:
        """ParamRamp's r as a tensor broadcasting against a batch ``like`` (B, *shape)."""
        if self.r is None:
            return torch.tensor(self.params[1], dtype=like.dtype, device=like.device)
        return torch.as_tensor(self.r, dtype=like.dtype, device=like.device)

    @property
    def spec(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({','.join(repr(p) for p in self.params)})"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.name == "param_ramp":
            return param_ramp(z, self.params[0], self.threshold(z))
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
    check: Callable[[tuple[float, ...]], str | None] | None = None


_KINDS: dict[str, _Kind] = {}


def register_activation(name: str, forward: Callable[..., torch.Tensor], *, n_params: int = 0,
                        monotone: bool = True, piecewise_linear: bool = False,
                        check: Callable[[tuple[float, ...]], str | None] | None = None) -> None:
    """Add an activation kind; ``forward(z, *params)`` must work on any torch dtype/device.
    ``check(params)`` returns a message when the parameters are out of range (else None)."""
    _KINDS[name] = _Kind(forward, n_params, monotone, piecewise_linear, check)


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
    check = _KINDS[name].check
    problem = check(params) if check is not None else None
    if problem:
        raise ModelError(f"activation {spec!r}: {problem}")
    return Activation(name, params)


def param_ramp(z: torch.Tensor, eta: float, r: torch.Tensor | float) -> torch.Tensor:
    """ParamRamp (Lyu et al. 2021): eta z (z < 0), z (0 <= z <= r), eta z + (1 - eta) r (z > r)."""
    return torch.minimum(torch.maximum(eta * z, z), eta * z + (1 - eta) * r)


def _eta_ok(params: tuple[float, ...]) -> str | None:
    eta = params[0]
    if not 0.0 <= eta <= 1.0:  # monotone and convex-then-linear: what the bounding lines assume
        return f"slope eta must lie in [0, 1], got {eta!r}"
    if len(params) > 1 and not (params[1] > 0 and params[1] < float("inf")):
        return f"threshold r must be a finite number > 0, got {params[1]!r}"
    return None


class ParamRamp(torch.nn.Module):
    """ParamRamp as a torch module with a learnable per-neuron threshold ``r`` (shape of one
    sample's layer, e.g. (n,) or (C, H, W)); :meth:`lpbench.network.Network.from_torch` reads it."""

    def __init__(self, eta: float, r: torch.Tensor):
        super().__init__()
        self.eta = float(eta)
        self.r = torch.nn.Parameter(torch.as_tensor(r, dtype=torch.float32).clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return param_ramp(z, self.eta, self.r.clamp_min(1e-4))


register_activation("relu", lambda z: torch.relu(z), piecewise_linear=True)
register_activation("leaky_relu", lambda z, eta: torch.maximum(eta * z, z), n_params=1,
                    piecewise_linear=True, check=_eta_ok)
register_activation("param_ramp", lambda z, eta, r: param_ramp(z, eta, r), n_params=2,
                    piecewise_linear=True, check=_eta_ok)
register_activation("tanh", torch.tanh)
register_activation("sigmoid", torch.sigmoid)
register_activation("arctan", torch.atan)
