"""Verification problems and their outcomes.

A problem is (network, input x, label y, perturbation set). The specification is always the set
of margins ``f_y(x') - f_j(x')`` for every ``j != y``: the sample is robust iff every margin is
positive on the whole set. An :class:`Outcome` is what one method says about one sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

import numpy as np
import torch

from lpbench.errors import LpbenchError

NORMS = ("linf", "l2", "l1")


class Status(str, Enum):
    VERIFIED = "verified"  # every margin is provably positive on the whole set
    FALSIFIED = "falsified"  # a concrete, re-checked point in the set is misclassified
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Perturbation:
    """The set ``{x' : ||x' - x||_norm <= eps}``, intersected with the box ``[lo, hi]`` of valid
    inputs when ``box`` is given (the default ``(0, 1)`` is the pixel range of the paper)."""

    eps: float
    norm: str = "linf"
    box: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not isinstance(self.eps, (int, float)) or not math.isfinite(self.eps) or self.eps < 0:
            raise LpbenchError(f"epsilon must be a finite number >= 0, got {self.eps!r}")
        if self.norm not in NORMS:
            raise LpbenchError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.box is not None and not self.box[0] <= self.box[1]:
            raise LpbenchError(f"empty input box {self.box}")

    @property
    def q(self) -> float:
        """The dual norm exponent: ||.||_q with 1/p + 1/q = 1."""
        return {"linf": 1.0, "l2": 2.0, "l1": math.inf}[self.norm]

    def enclosing_box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise bounds [lo, hi] containing the whole set around ``x`` (exact for l_inf).

        Rounded outwards by one ulp, so the box contains the set in exact arithmetic too."""
        lo = torch.nextafter(x - self.eps, torch.tensor(-math.inf, dtype=x.dtype, device=x.device))
        hi = torch.nextafter(x + self.eps, torch.tensor(math.inf, dtype=x.dtype, device=x.device))
        if self.box is not None:
            lo = lo.clamp(min=self.box[0])
            hi = hi.clamp(max=self.box[1])
        return lo, hi

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Project ``x_adv`` onto the set around ``x`` (batched)."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            p = 2 if self.norm == "l2" else 1
            flat = delta.reshape(delta.shape[0], -1)
            if p == 2:
                n = flat.norm(p=2, dim=1, keepdim=True).clamp_min(1e-30)
                flat = flat * torch.clamp(self.eps / n, max=1.0)
            else:
                flat = _project_l1(flat, self.eps)
            delta = flat.reshape(delta.shape)
        out = x + delta
        if self.box is not None:
            out = out.clamp(self.box[0], self.box[1])
        return out

    def contains(self, x_adv: np.ndarray, x: np.ndarray) -> bool:
        """Exact membership test in float64 (no tolerance)."""
        d = np.asarray(x_adv, np.float64).ravel() - np.asarray(x, np.float64).ravel()
        ord_ = {"linf": np.inf, "l2": 2, "l1": 1}[self.norm]
        if np.linalg.norm(d, ord_) > self.eps:
            return False
        if self.box is not None:
            a = np.asarray(x_adv, np.float64)
            return bool(a.min() >= self.box[0] and a.max() <= self.box[1])
        return True

    def describe(self) -> str:
        box = f" ∩ [{self.box[0]:g},{self.box[1]:g}]" if self.box is not None else ""
        return f"{self.norm} ball eps={self.eps:g}{box}"


def _project_l1(v: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` onto the l1 ball of radius eps (Duchi et al.)."""
    a = v.abs()
    inside = a.sum(1) <= eps
    s, _ = torch.sort(a, dim=1, descending=True)
    cs = s.cumsum(1)
    k = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    cond = s - (cs - eps) / k > 0
    rho = cond.to(v.dtype).cumsum(1).argmax(1, keepdim=True)
    theta = ((cs.gather(1, rho) - eps) / (rho + 1).to(v.dtype)).clamp_min(0)
    out = torch.sign(v) * (a - theta).clamp_min(0)
    return torch.where(inside[:, None], v, out)


@dataclass(frozen=True, eq=False)
class Outcome:
    """What one method says about one sample.

    ``margin_lower[j]`` / ``margin_upper[j]`` bound ``f_y(x') - f_j(x')`` over the whole set
    (NaN at ``j = y`` and where the method gives no bound)."""

    method: str
    sample: int
    label: int
    status: Status
    margin_lower: np.ndarray | None = None
    margin_upper: np.ndarray | None = None
    counterexample: np.ndarray | None = None
    time_s: float = 0.0
    stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def min_margin_lower(self) -> float:
        return _nanmin(self.margin_lower)

    @property
    def min_margin_upper(self) -> float:
        return _nanmin(self.margin_upper)

    def to_record(self) -> dict[str, Any]:
        rec = {"method": self.method, "sample": self.sample, "label": self.label,
               "status": self.status.value, "min_margin_lower": self.min_margin_lower,
               "min_margin_upper": self.min_margin_upper, "time_s": self.time_s}
        rec.update({f"stat_{k}": v for k, v in self.stats.items()})
        return rec


def _nanmin(values: np.ndarray | None) -> float:
    """The smallest non-NaN entry; NaN when there is none (e.g. a MILP without incumbents)."""
    if values is None or np.all(np.isnan(values)):
        return math.nan
    return float(np.nanmin(values))
