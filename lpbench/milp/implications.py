"""What one ReLU split implies about the other neurons: bounds of every unstable neuron given the
side of another, computed once per sample and used by the branch and bound
(:mod:`lpbench.milp.bab`). This is the dependency analysis of Botoeva et al. 2020 ("Efficient
verification of ReLU-based neural networks via dependency analysis"), with bounds instead of
yes/no dependencies.

For an unstable neuron ``m`` of hidden layer ``i``, a side ``s`` (``s z_m >= 0``; side 0 is
``z_m >= 0``, side 1 ``z_m <= 0``) and each unstable neuron ``k`` of layer ``i`` or ``i + 1``
(``k != m``), a lower bound of ``z_k`` and of ``-z_k`` over the root set (the box and the root's
pre-activation bounds) with ``s z_m >= 0`` added:

* both neurons in the first hidden layer: ``z = W x + b`` is linear in ``x``, and the minimum of
  ``+-z_k`` over the box with one linear constraint is a continuous knapsack. Its multiplier
  ``beta`` is read off the sorted break points ``c_i / a_i``, and the bound is the Lagrangian
  ``min_x (c - beta a) x + c0 + beta d`` at it, the exact minimum;
* otherwise: the backward linear bound of a branch and bound domain with that one split (its
  neuron's bound set to 0 on its side and a ``beta`` multiplier; for a neuron of the same layer, a
  multiplier on ``s z_m`` in the objective), with ``alpha``, ``beta`` tuned by ``STEPS`` Adam steps
  in float32.

Every bound is evaluated once in float64 with the multipliers reached, by the same function as the
branch and bound's own bounds (:func:`lpbench.milp.bab._backward`, lowered by ``REL_SLACK`` times
the magnitudes it sums): weak duality makes it valid for any ``alpha`` in [0, 1] and ``beta >= 0``,
so the float32 search costs tightness, never soundness.

A domain that splits ``m`` to side ``s`` takes these bounds (the max with its own lower bounds, the
min with its upper ones): the neurons they make stable are not split, the others get tighter
relaxations, and a domain where a lower bound passes its upper bound is empty. The tables hold on
the whole root set, hence in every domain of it and in any region inside it, such as the
counterexample region of conditioned bounds (:mod:`lpbench.milp.conditional`).

Only neurons of the same or the next layer are paired, the first hidden layer's pairs first, and
within a pair the bounds of the neurons nearest to stable first; the computation stops at its
deadline and keeps the bounds it finished (any subset of the tables is sound).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from lpbench.milp.bab import _ascend, _backward, _Domains, _over_box, _pruned

#: Adam steps per bound (NOR-MLP-B at 0.02, image 40, target 8: 5, 10 and 20 steps gave 282k,
#: 252k and 230k domains after 5.6, 9.1 and 15.3 s of tables; 5 decided it soonest).
STEPS, LR = 5, 0.1
#: Bounds computed together.
CHUNK = 4096


@dataclass(eq=False)
class Implications:
    """``lo[i][s][j]`` (n_i, n_j): lower bounds of layer ``j``'s pre-activations implied by
    splitting neuron ``m`` (the row) of layer ``i`` to side ``s`` (-inf: none); ``hi`` the upper
    bounds (+inf: none); ``stab[i][j]`` (n_i, n_j): how many of ``m``'s two sides make ``k``
    stable; ``pairs`` the layer pairs (i, j) finished (a deadline can leave one part done),
    ``rows`` the bounds computed, ``time_s`` on the caller's clock."""

    lo: list
    hi: list
    stab: list
    pairs: list = field(default_factory=list)
    rows: int = 0
    time_s: float = 0.0

    def stabilising(self) -> int:
        """(split, side, neuron) triples where the split makes the neuron stable."""
        return int(sum(int(t.sum()) for row in self.stab for t in row))

    def describe(self) -> str:
        done = ", ".join(f"{i + 1}->{j + 1}" for i, j in self.pairs) or "none finished"
        return (f"implied bounds of single splits: {self.rows} bounds (layer pairs {done}), "
                f"{self.stabilising()} make a neuron stable, {self.time_s:.1f} s")


def _rows(units_i: torch.Tensor, units_j: torch.Tensor, same: bool) -> torch.Tensor:
    """(m, side, k, direction) for every unstable m, both sides, every unstable k != m, both
    directions (+1: a lower bound of z_k, -1: of -z_k)."""
    grid = torch.cartesian_prod(units_i, torch.tensor([0, 1]), units_j, torch.tensor([1, -1]))
    return grid[grid[:, 0] != grid[:, 2]] if same else grid


def _informative(w: torch.Tensor, b: torch.Tensor, box, rows: torch.Tensor) -> torch.Tensor:
    """Rows (of :func:`_rows`, first hidden layer) whose split cuts off the box minimiser of
    ``+-z_k``: for the others the constrained minimum is the box's, i.e. the root bound."""
    xl, xu = box
    at = {1: w @ torch.where(w >= 0, xl, xu).T + b[:, None], -1: w @ torch.where(w <= 0, xl, xu).T + b[:, None]}
    m, side, k, sign = rows.T
    z = torch.where(sign > 0, at[1][m, k], at[-1][m, k])  # z_m at the minimiser of sign z_k
    return torch.where(side == 0, z, -z) < 0


def _knapsack(w: torch.Tensor, b: torch.Tensor, box, m, s, k, sign) -> torch.Tensor:
    """Sound lower bounds of ``sign z_k`` over the box with ``s z_m >= 0``, ``z = w x + b``: the
    Lagrangian at the knapsack's multiplier (module doc), which is searched in float32."""
    xl, xu = box
    c = (sign[:, None] * w[k]).to(torch.float32)
    a = (s[:, None] * w[m]).to(torch.float32)
    lo32, hi32 = xl.to(torch.float32), xu.to(torch.float32)
    lack = -(a * torch.where(c >= 0, lo32, hi32)).sum(1) - (s * b[m]).to(torch.float32)  # s z_m at the box minimiser
    # raising beta past c_i / a_i moves x_i to the end where a_i x_i is larger, gaining |a_i| (xu - xl)
    moves = (a != 0) & (((c >= 0) & (a > 0)) | ((c < 0) & (a < 0)))
    ratio = torch.where(moves, c / torch.where(a != 0, a, 1.0), float("inf"))
    at, order = ratio.sort(dim=1)
    gained = torch.where(moves, a.abs() * (hi32 - lo32), 0.0).gather(1, order).cumsum(1)
    enough = gained >= lack[:, None]
    first = enough.to(torch.int8).argmax(dim=1)
    finite = torch.where(torch.isfinite(at), at, 0.0).amax(dim=1)
    beta = torch.where(lack <= 0, 0.0, torch.where(enough.any(dim=1), at.gather(1, first[:, None])[:, 0],
                                                   2 * finite + 1))  # unreachable: any beta, the side is empty
    beta = beta.to(torch.float64).clamp(min=0.0)
    # the Lagrangian sign z_k - beta s z_m, bounded over the box like every other bound
    coef = sign[:, None] * w[k] - (beta * s)[:, None] * w[m]
    return _over_box(sign * b[k] - beta * s * b[m], b[k].abs() + beta * b[m].abs(), coef, box)


def _tuned(wb, lo, hi, split, spec, same, box) -> torch.Tensor:
    """Sound lower bounds of ``spec . z`` (z: the pre-activations of ``wb``'s last layer) over
    domains ``lo``/``hi``/``split`` with ``- beta_out same`` added (``same``: ``s e_m`` for a split
    of that layer), multipliers tuned in float32, evaluated in float64 (without the neurons
    inactive and unsplit in every domain, which add nothing: :func:`lpbench.milp.bab._pruned`)."""
    wb, view, _ = _pruned(wb, _Domains(torch.zeros(len(spec), dtype=torch.long), lo, hi, split, [], []))
    lo, hi, split = view.lo, view.hi, view.split
    f32 = [t.to(torch.float32) for t in (*lo, *hi, *split)]
    n = len(lo)
    dom = _Domains(torch.zeros(len(spec), dtype=torch.long), f32[:n], f32[n:2 * n], f32[2 * n:], [], [])
    wb32 = [(w.to(torch.float32), b.to(torch.float32)) for w, b in wb]
    box32 = tuple(t.to(torch.float32) for t in box)
    spec32, same32 = spec.to(torch.float32), same.to(torch.float32)
    alpha = [(u > -l).to(torch.float32).requires_grad_(True) for l, u in zip(dom.lo, dom.hi)]
    beta = [torch.zeros_like(t).requires_grad_(True) for t in dom.lo]
    out = torch.zeros(len(spec), 1, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam(alpha + beta + [out], lr=LR)
    with torch.enable_grad():
        for _ in range(STEPS):
            _ascend(opt, _backward(wb32, dom, spec32 - out * same32, box32, alpha, beta)[0], alpha, [*beta, out])
    f64 = [t.detach().to(torch.float64) for t in (*alpha, *beta, out)]
    dom64 = _Domains(dom.target, lo, hi, split, [], [])
    return _backward(wb, dom64, spec - f64[-1] * same, box, f64[:n], f64[n:2 * n])[0]


def implied_bounds(wb, lo: list[torch.Tensor], hi: list[torch.Tensor], box, deadline: float,
                   now: Callable[[], float]) -> Implications:
    """The tables (module doc) for root bounds ``lo``/``hi`` (one (n_i,) tensor per hidden layer)
    of the dense ReLU network ``wb`` (:func:`lpbench.milp.bab.dense_relu`) over ``box``, as far as
    ``deadline`` (a reading of ``now``) lets them get."""
    t0 = now()
    n = [t.numel() for t in lo]
    depth = len(n)
    out = Implications([[[torch.full((n[i], n[j]), -torch.inf, dtype=torch.float64) for j in range(depth)]
                         for _ in (0, 1)] for i in range(depth)],
                       [[[torch.full((n[i], n[j]), torch.inf, dtype=torch.float64) for j in range(depth)]
                         for _ in (0, 1)] for i in range(depth)],
                       [[torch.zeros(n[i], n[j], dtype=torch.float64) for j in range(depth)] for i in range(depth)])
    units = [torch.nonzero((l < 0) & (u > 0)).flatten() for l, u in zip(lo, hi)]
    for j in range(depth):
        for i in (j - 1, j) if j else (0,):
            rows = _rows(units[i], units[j], i == j)
            if j == 0:
                rows = rows[_informative(*wb[0], box, rows)]
            # nearest to stable first (a lower bound of z_k must rise by -l_k, an upper one fall
            # by u_k), so that a deadline leaves the bounds most likely to make a neuron stable
            k, sign = rows[:, 2], rows[:, 3]
            rows = rows[(torch.where(sign > 0, -lo[j][k], hi[j][k]) / (hi[j][k] - lo[j][k])).argsort(stable=True)]
            for c0 in range(0, len(rows), CHUNK):
                if now() > deadline:
                    out.time_s = now() - t0
                    return out
                m, side, k, sign = rows[c0:c0 + CHUNK].T
                s = 1.0 - 2.0 * side.to(torch.float64)
                sgn = sign.to(torch.float64)
                if j == 0:
                    bound = _knapsack(*wb[0], box, m, s, k, sgn)
                else:
                    r = torch.arange(len(m))
                    spec = torch.zeros(len(m), n[j], dtype=torch.float64)
                    spec[r, k] = sgn
                    same = torch.zeros_like(spec)
                    dlo = [t[None].repeat(len(m), 1) for t in lo[:j]]
                    dhi = [t[None].repeat(len(m), 1) for t in hi[:j]]
                    split = [torch.zeros_like(t) for t in dlo]
                    if i == j:
                        same[r, m] = s
                    else:
                        split[i][r, m] = s
                        dlo[i][r, m] = torch.where(s > 0, 0.0, dlo[i][r, m])
                        dhi[i][r, m] = torch.where(s < 0, 0.0, dhi[i][r, m])
                    bound = _tuned(wb[:j + 1], dlo, dhi, split, spec, same, box)
                for sd in (0, 1):
                    up, down = (side == sd) & (sign > 0), (side == sd) & (sign < 0)
                    out.lo[i][sd][j][m[up], k[up]] = bound[up]
                    out.hi[i][sd][j][m[down], k[down]] = -bound[down]
                out.rows += len(m)
                stable = sum(((out.lo[i][sd][j] >= 0) | (out.hi[i][sd][j] <= 0)).to(torch.float64) for sd in (0, 1))
                out.stab[i][j] = stable * ((lo[j] < 0) & (hi[j] > 0))[None]
            out.pairs.append((i, j))
    out.time_s = now() - t0
    return out


class SampleImplications:
    """The tables for one sample's root bounds, computed at most once, when a search first asks
    (:func:`lpbench.milp.bab.bab_search`), within ``budget_s`` seconds of ``now`` and before
    ``deadline``."""

    def __init__(self, wb, lo: list[torch.Tensor], hi: list[torch.Tensor], box, budget_s: float,
                 deadline: float, now: Callable[[], float]):
        self._args = (wb, lo, hi, box)
        self.budget_s, self.deadline, self.now = budget_s, deadline, now
        self.tables: Implications | None = None

    def get(self) -> Implications:
        if self.tables is None:
            self.tables = implied_bounds(*self._args, min(self.deadline, self.now() + self.budget_s), self.now)
        return self.tables
