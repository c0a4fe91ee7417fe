"""A branch and bound on ReLU splits with batched bound propagation (alpha/beta-CROWN style) for
the targets of one sample that the LP relaxation leaves open, on dense ReLU networks.

A *domain* is one target ``j`` and a set of ReLU splits (``z_k >= 0`` or ``z_k <= 0``), with the
pre-activation bounds of its root (the bounds the MILP was built on, or bounds conditioned on the
target's counterexample region, :mod:`lpbench.milp.conditional`) and each split neuron's bound
on its side set to 0. The lower bound of the margin ``f_y - f_j`` over a domain is the backward
linear bound of :mod:`lpbench.bounds.backward` with two kinds of free multipliers (Xu et al.
2021, "alpha-CROWN"; Wang et al. 2021, "Beta-CROWN"):

* ``alpha`` in [0, 1], the slope of the lower line ``alpha z`` of each unstable ReLU;
* ``beta >= 0`` per split: the term ``- beta s z_k`` (``s = +1`` for ``z_k >= 0``, ``-1`` for
  ``z_k <= 0``), which is <= 0 on the domain, added to the objective.

Every choice of them gives a valid lower bound over the domain (weak duality), so they are tuned
by a few projected Adam steps, warm-started from the parent's, and a domain keeps the best bound
it reached. The arithmetic is float64; every bound is lowered by
:data:`lpbench.bounds.backward.REL_SLACK` times the magnitudes of the terms it sums (plus
``ABS_SLACK``), and the chord slopes are rounded up, as in the LP. A domain whose bound is > 0 is
closed. Otherwise the input that minimises its linear bound is re-checked as a counterexample
(float64 forward pass, :func:`lpbench.attacks.pgd.recheck`), and the domain is split on the
unstable neuron whose chord costs its bound most (the intercept score of BaBSR, Bunel et al.
2020). The split constraints reach the earlier layers only through ``beta``: later layers' bounds
are not recomputed (on NOR-MLP-B that recomputation made the search slower, not faster). A domain
with no unstable neuron left and a bound <= 0 gets one exact LP (:func:`_leaf`: the network is
affine there): a certified bound > 0 closes it, a minimiser that re-checks is a counterexample,
anything else (a tie at 0) leaves its target open for the caller's MILP. On ADV-MLP-2-100, test
image 8491 at epsilon 0.1436 (0.0001 above its verified radius), such domains had sent target 3
to the MILP, which timed out at 60 s; with their LPs the search falsifies it in 1.1 s. A
target is verified when every domain of it closed; the domains of a target cover its whole root.

A search still open after ``TRIGGER_S`` seconds asks for the sample's implied bounds of single
splits (:mod:`lpbench.milp.implications`, computed once per sample) and starts again with them:
each split also takes the bounds it implies for the other neurons (a domain where one passes
another is empty and closed), and the branching score is weighted by how many neurons a split
makes stable. On NOR-MLP-B at 0.02 this cut the domains of the hardest targets 6 to 10 times
(image 40, target 8: 3.07 million domains without, 0.29 million with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import scipy.sparse as sp
import torch

from lpbench.attacks.pgd import recheck
from lpbench.bounds.backward import ABS_SLACK, REL_SLACK
from lpbench.lp.drivers import PreBounds
from lpbench.network import Act, Dense, Flatten, Network
from lpbench.problem import Perturbation
from lpbench.solvers import get_backend
from lpbench.solvers.base import LinearProgram, LPStatus

if TYPE_CHECKING:
    from lpbench.milp.implications import Implications, SampleImplications

#: Domains bounded together, gradient steps per batch, and the step size of Adam.
#: NOR-MLP-B at 0.02 (test images 244, 251, 191): batches of 128 to 1024 domains and 1 to 20 steps
#: were tried at step size 0.1, and 3 steps on 512 domains took the least CPU time. A larger step
#: makes 2 enough (sample CPU-s, 3 steps at 0.1 -> 2 at 0.4): NOR-MLP-2-100, image 5845 at 0.0433,
#: 116 -> 78 (2 at 0.2: 83, 3 at 0.3: 90, 2 at 0.8: 95; 8 at 0.1: 190); image 4432 at 0.0425, a
#: timeout at 400 -> verified in 318; NOR-MLP-B, image 40 at 0.02, 34 -> 23.
BATCH, STEPS, LR = 512, 2, 0.4
#: The most domains x hidden neurons held at once (8 float64 each, five times: ~400 MB); a search
#: that would hold more stops there, its targets open.
MAX_HELD = 10_000_000
#: Seconds a search runs before it asks for the sample's implied bounds
#: (:mod:`lpbench.milp.implications`) and starts again with them; the weight of the neurons a
#: split makes stable in the branching score. NOR-MLP-B at 0.02, image 357, target 3: LAM 0, 0.03,
#: 0.1, 0.3, 1 and 3 took 76k, 69k, 50k, 39k, 43k and 56k domains.
TRIGGER_S, LAM = 1.0, 0.3


@dataclass(frozen=True, eq=False)
class BabResult:
    """Targets ``verified`` (every domain closed) with ``bound`` (target: the least bound of its
    closed domains, a lower bound of its margin > 0) and ``open``; a re-checked counterexample
    ``point`` found for ``target`` (``margin``: its ``f_y - f_target``; some class beats the label
    there) if one came up; ``domains`` bounded in ``batches``, ``empty`` closed as empty by implied
    bounds (``implied``: the tables the search split with, or None); ``time_s`` on the caller's
    clock."""

    verified: tuple[int, ...]
    bound: dict
    open: tuple[int, ...]
    point: np.ndarray | None
    target: int | None
    margin: float
    domains: int
    batches: int
    time_s: float
    empty: int = 0
    implied: Implications | None = None
    leaves: int = 0

    def describe(self) -> str:
        note = f"; {self.empty} empty" if self.empty else ""
        note += f"; {self.leaves} closed by their exact LP" if self.leaves else ""
        note += f"; with {self.implied.describe()}" if self.implied is not None else ""
        return (f"beta-CROWN branch and bound: {self.domains} domains in {self.batches} batches, "
                f"{self.time_s:.1f} s{note}")


def dense_relu(net: Network) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(W, b) of each dense layer (float64) if ``net`` is Flatten, then dense layers with a ReLU
    between each two, else None."""
    layers = [ly for ly in net.layers if not isinstance(ly, Flatten)]
    if not layers or any(isinstance(ly, Flatten) for ly in net.layers[1:]):
        return None
    if not all(isinstance(ly, Dense) if k % 2 == 0 else (isinstance(ly, Act) and ly.activation.name == "relu")
               for k, ly in enumerate(layers)) or len(layers) % 2 == 0:
        return None
    return [(torch.as_tensor(ly.weight, dtype=torch.float64), torch.as_tensor(ly.bias, dtype=torch.float64))
            for ly in layers[::2]]


def root_bounds(net: Network, x64: np.ndarray, pset: Perturbation, pre: PreBounds):
    """(lower, upper) bounds of each hidden layer's pre-activations from ``pre`` as flat float64
    tensors, and the set's enclosing box (flat lower, upper) around ``x64``."""
    lo = [torch.as_tensor(np.ravel(pre[i][0]), dtype=torch.float64) for i in net.activation_indices]
    hi = [torch.as_tensor(np.ravel(pre[i][1]), dtype=torch.float64) for i in net.activation_indices]
    return lo, hi, tuple(t.reshape(-1) for t in pset.enclosing_box(torch.as_tensor(x64)))


@dataclass(eq=False)
class _Domains:
    """A batch of domains: ``target`` (D,), ``lo``/``hi``/``split`` per hidden layer (D, n_i),
    ``split`` in {-1, 0, 1} (0: not split; float64 like the rest); ``alpha``/``beta`` per hidden
    layer (D, n_i): the multipliers the domain's parent ended with (a warm start)."""

    target: torch.Tensor
    lo: list[torch.Tensor]
    hi: list[torch.Tensor]
    split: list[torch.Tensor]
    alpha: list[torch.Tensor]
    beta: list[torch.Tensor]

    _FIELDS = ("lo", "hi", "split", "alpha", "beta")

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def take(self, idx: torch.Tensor) -> "_Domains":
        return _Domains(self.target[idx], *([t[idx] for t in getattr(self, f)] for f in self._FIELDS))

    @staticmethod
    def cat(parts: list["_Domains"]) -> "_Domains":
        return _Domains(torch.cat([p.target for p in parts]),
                        *([torch.cat([getattr(p, f)[i] for p in parts]) for i in range(len(parts[0].lo))]
                          for f in _Domains._FIELDS))


def _chord(lo: torch.Tensor, hi: torch.Tensor, unstable: torch.Tensor) -> torch.Tensor:
    """The chord slope u / (u - l), rounded up twice (0 where not unstable)."""
    s = torch.where(unstable, hi / torch.where(unstable, hi - lo, 1.0), 0.0)
    inf = torch.tensor(float("inf"), dtype=s.dtype)
    return torch.where(unstable, torch.nextafter(torch.nextafter(s, inf), inf), 0.0)


def _backward(wb, dom: _Domains, spec: torch.Tensor, box, alpha: list[torch.Tensor], beta: list[torch.Tensor]):
    """Sound lower bounds of ``spec . f`` over each domain (``spec`` (D, n_out), ``alpha`` and
    ``beta`` per hidden layer (D, n_i)). Returns (bound (D,), input coefficients (D, n_in),
    {layer: coefficient on its ReLU outputs (D, n_i)})."""
    xl, xu = box
    w, b = wb[-1]
    bias = spec @ b
    mag = spec.abs() @ b.abs()
    a = spec @ w
    coef = {}
    for i in reversed(range(len(dom.lo))):
        l, u = dom.lo[i], dom.hi[i]
        unstable, active = (l < 0) & (u > 0), l >= 0
        su = _chord(l, u, unstable)
        coef[i] = a
        g = torch.where(active, a, torch.where(unstable, a.clamp(min=0) * alpha[i] + a.clamp(max=0) * su, 0.0))
        icpt = torch.where(unstable, a.clamp(max=0) * su * (-l), 0.0)
        bias = bias + icpt.sum(-1)
        mag = mag + icpt.abs().sum(-1)
        g = g - beta[i] * dom.split[i]
        w, b = wb[i]
        bias = bias + g @ b
        mag = mag + g.abs() @ b.abs()
        a = g @ w
    return _over_box(bias, mag, a, box), a, coef


def _over_box(bias: torch.Tensor, mag: torch.Tensor, a: torch.Tensor, box) -> torch.Tensor:
    """Sound lower bounds of ``a x + bias`` over the box, lowered by ``REL_SLACK`` times the
    magnitudes summed (``mag``: those of the terms in ``bias``) plus ``ABS_SLACK``."""
    xl, xu = box
    a_abs = a.abs()
    bound = bias + a @ ((xl + xu) / 2) - a_abs @ ((xu - xl) / 2)
    mag = mag + a_abs @ torch.maximum(xl.abs(), xu.abs())
    return bound - (REL_SLACK * mag + ABS_SLACK)


def _pruned(wb, dom: _Domains) -> tuple[list, _Domains, list[torch.Tensor]]:
    """``wb`` and a view of ``dom`` without the hidden neurons that are inactive and unsplit in
    every domain of ``dom``: their ReLU outputs are 0 and they carry no split term, so they add
    exactly nothing to any bound (the first layer's matrix product is most of a bound's cost).
    Returns (layers, view, the kept neurons per hidden layer)."""
    keep = [((u > 0) | (s != 0)).any(dim=0) for u, s in zip(dom.hi, dom.split)]
    layers = []
    for i, (w, b) in enumerate(wb):
        if i < len(keep):
            w, b = w[keep[i]], b[keep[i]]
        if i > 0:
            w = w[:, keep[i - 1]]
        layers.append((w, b))
    view = _Domains(dom.target, *([t[:, k] for t, k in zip(getattr(dom, f), keep)] for f in _Domains._FIELDS))
    return layers, view, keep


def _ascend(opt: torch.optim.Optimizer, bound: torch.Tensor, alpha: list[torch.Tensor],
            nonnegative: list[torch.Tensor]) -> None:
    """One step of ``opt`` up the summed ``bound``, then back onto the multipliers' domain:
    ``alpha`` in [0, 1], the ``nonnegative`` ones (beta) >= 0."""
    opt.zero_grad()
    (-bound.sum()).backward()
    opt.step()
    with torch.no_grad():
        for t in alpha:
            t.clamp_(0.0, 1.0)
        for t in nonnegative:
            t.clamp_(min=0.0)


def _optimise(wb, dom: _Domains, label: int, n_out: int, box, steps: int):
    """Best bound per domain over ``steps`` Adam steps on alpha and beta, with the input
    coefficients and ReLU-output coefficients of the last step (on the neurons that can add to
    a bound, :func:`_pruned`; 0 elsewhere)."""
    spec = torch.zeros(len(dom), n_out, dtype=torch.float64)
    spec[:, label] = 1.0
    spec[torch.arange(len(dom)), dom.target] = -1.0
    layers, view, keep = _pruned(wb, dom)
    alpha = [t.clone().requires_grad_(True) for t in view.alpha]
    beta = [t.clone().requires_grad_(True) for t in view.beta]
    opt = torch.optim.Adam(alpha + beta, lr=LR)
    best = torch.full((len(dom),), -float("inf"), dtype=torch.float64)
    for step in range(steps + 1):
        bound, a_in, coef = _backward(layers, view, spec, box, alpha, beta)
        best = torch.maximum(best, bound.detach())
        if step == steps:
            break
        _ascend(opt, bound, alpha, beta)
    full = {}
    for i, k in enumerate(keep):
        dom.alpha[i], dom.beta[i] = dom.alpha[i].clone(), dom.beta[i].clone()
        dom.alpha[i][:, k], dom.beta[i][:, k] = alpha[i].detach(), beta[i].detach()
        full[i] = torch.zeros_like(dom.lo[i])
        full[i][:, k] = coef[i].detach()
    return best, a_in.detach(), full


def _with_split(dom: _Domains, layer: torch.Tensor, neuron: torch.Tensor, side: int,
                tables: Implications | None = None) -> _Domains:
    """Copies of ``dom`` with neuron ``neuron[d]`` of hidden layer ``layer[d]`` split to ``side``,
    with the bounds that split implies (``tables``, :mod:`lpbench.milp.implications`)."""
    ch = _Domains(dom.target, *([t.clone() for t in getattr(dom, f)] for f in _Domains._FIELDS))
    sd = 0 if side > 0 else 1
    for i in range(len(ch.lo)):
        rows = torch.nonzero(layer == i).flatten()
        if len(rows):
            ch.split[i][rows, neuron[rows]] = side
            (ch.lo if side > 0 else ch.hi)[i][rows, neuron[rows]] = 0.0
            if tables is not None:
                for j in range(len(ch.lo)):
                    ch.lo[j][rows] = torch.maximum(ch.lo[j][rows], tables.lo[i][sd][j][neuron[rows]])
                    ch.hi[j][rows] = torch.minimum(ch.hi[j][rows], tables.hi[i][sd][j][neuron[rows]])
    return ch


def _empty(dom: _Domains) -> torch.Tensor:
    """Domains where a neuron's lower bound passed its upper bound (no point is in them)."""
    return torch.stack([(l > u).any(dim=1) for l, u in zip(dom.lo, dom.hi)]).any(dim=0)


def _branch(dom: _Domains, coef: dict[int, torch.Tensor], tables: Implications | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(layer, neuron) per domain: the unstable neuron with the largest intercept score
    ``-min(a, 0) s (-l)`` (the bound its chord costs; ``a`` its output's coefficient), ties to the
    widest, times ``1 + LAM n`` with ``n`` the neurons unstable in the domain that its two sides
    make stable (``tables``); layer -1 where no unstable neuron is left."""
    best = torch.full((len(dom),), -1.0, dtype=torch.float64)
    layer = torch.full((len(dom),), -1, dtype=torch.long)
    neuron = torch.zeros(len(dom), dtype=torch.long)
    unstable = [(l < 0) & (u > 0) for l, u in zip(dom.lo, dom.hi)]
    for i in range(len(dom.lo)):
        l, u = dom.lo[i], dom.hi[i]
        score = -coef[i].clamp(max=0) * _chord(l, u, unstable[i]) * (-l) + 1e-6 * torch.where(unstable[i], u - l, 0.0)
        if tables is not None:
            implied = sum(unstable[j].to(torch.float64) @ tables.stab[i][j].T for j in range(len(dom.lo)))
            score = score * (1 + LAM * implied)
        s, k = torch.where(unstable[i], score, -1.0).max(dim=1)
        better = s > best
        best, layer, neuron = torch.where(better, s, best), torch.where(better, i, layer), torch.where(better, k, neuron)
    return torch.where(best < 0, -1, layer), neuron


def _leaf(wb, dom: _Domains, d: int, label: int, box) -> tuple[str, float | np.ndarray | None]:
    """Decide domain ``d``, which has no unstable neuron left, by one LP. On the domain every
    neuron's phase is known (its bounds, valid there, or its split), so the network is the affine
    map ``x -> A x + c`` of that pattern, and the domain is the box cut by the split rows
    ``s z_k(x) >= 0``: the minimum of the margin over the box and those rows is its exact minimum
    over the domain. The rows are widened, and the LP's certified bound (from its duals,
    :mod:`lpbench.solvers.certify`) lowered, by ``REL_SLACK`` times the magnitudes of the float64
    products that built them plus ``ABS_SLACK``, so the LP's set holds the domain and its bound
    holds for the exact map. Returns ("closed", bound > 0), ("empty", None) (proved infeasible,
    :meth:`lpbench.solvers.base.Backend.proves_infeasible`), ("point", the LP's minimiser, for the
    caller to re-check) or ("open", None): a tie at 0, or an LP not solved."""
    xl, xu = (t.numpy() for t in box)
    reach = np.maximum(np.abs(xl), np.abs(xu))
    w, b = (t.numpy() for t in wb[0])
    a, c, a_mag, c_mag = w, b, np.abs(w), np.abs(b)
    rows, lo_rows = [], []
    for i in range(len(dom.lo)):
        split = dom.split[i][d].numpy()
        for k in np.nonzero(split)[0]:
            slack = REL_SLACK * (a_mag[k] @ reach + c_mag[k]) + ABS_SLACK
            rows.append(split[k] * a[k])
            lo_rows.append(-split[k] * c[k] - slack)
        on = (dom.lo[i][d].numpy() >= 0) | (split > 0)
        w, b = (t.numpy() for t in wb[i + 1])
        a, c = w @ (a * on[:, None]), w @ (c * on) + b
        a_mag, c_mag = np.abs(w) @ (a_mag * on[:, None]), np.abs(w) @ (c_mag * on) + np.abs(b)
    j = int(dom.target[d])
    g, g0 = a[label] - a[j], float(c[label] - c[j])
    err = REL_SLACK * ((a_mag[label] + a_mag[j]) @ reach + c_mag[label] + c_mag[j]) + ABS_SLACK
    n_in = len(xl)
    lp = LinearProgram(sp.csr_matrix(np.array(rows).reshape(len(rows), n_in)), np.array(lo_rows, np.float64),
                       np.full(len(rows), np.inf), xl.astype(np.float64), xu.astype(np.float64))
    backend = get_backend("highs")
    with backend.open(lp) as session:
        res = session.minimize(g, g0)
    if res.status is LPStatus.OPTIMAL:
        bound = res.certified_bound - err
        if bound > 0:
            return "closed", float(bound)
        return ("point", res.primal) if res.primal is not None else ("open", None)
    if res.status is LPStatus.INFEASIBLE and backend.proves_infeasible(lp):
        return "empty", None
    return "open", None


def bab_search(net: Network, x: np.ndarray, label: int, targets: list[int], pset: Perturbation,
               pre: PreBounds, deadline: float, now: Callable[[], float],
               implied: SampleImplications | None = None, until: float | None = None) -> BabResult | None:
    """Decide ``targets`` of ``x`` (module doc) from bounds ``pre`` valid on the whole set, until
    ``deadline`` (a reading of ``now``); None if ``net`` is not a dense ReLU network. With
    ``implied`` (the sample's implied bounds, valid on a set that holds ``pre``'s), a search still
    open after ``TRIGGER_S`` seconds, or any search once they are known, splits with them
    (:func:`_with_split`, :func:`_branch`); a search that was already running starts again, and
    with them in hand it goes on until ``until`` (when given) instead of ``deadline``."""
    wb = dense_relu(net)
    if wb is None:
        return None
    t0 = now()
    x64 = np.asarray(x, np.float64)
    lo, hi, box = root_bounds(net, x64, pset, pre)
    xl, xu = box
    lo = [t[None].repeat(len(targets), 1) for t in lo]
    hi = [t[None].repeat(len(targets), 1) for t in hi]
    roots = _Domains(torch.as_tensor(targets, dtype=torch.long), lo, hi, [torch.zeros_like(t) for t in lo],
                     [(u > -l).to(torch.float64) for l, u in zip(lo, hi)], [torch.zeros_like(t) for t in lo])
    pool, stuck, least = [roots], set(), {}  # pool: chunks of domains, the newest first
    held = len(roots)
    domains = batches = empty = leaves = 0
    tables = implied.tables if implied is not None else None
    if tables is not None and until is not None:
        deadline = until
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the caller's clock counts this thread
    try:
        while pool and now() <= deadline and held <= MAX_HELD // max(1, sum(t.shape[1] for t in lo)):
            if implied is not None and tables is None and now() - t0 >= TRIGGER_S:
                tables = implied.get()
                pool, stuck, least, held = [roots], set(), {}, len(roots)
                deadline = until if until is not None else deadline
                continue
            taken = []
            while pool and sum(map(len, taken)) < BATCH:
                taken.append(pool.pop(0))
            batch = _Domains.cat(taken) if len(taken) > 1 else taken[0]
            if len(batch) > BATCH:
                pool.insert(0, batch.take(torch.arange(BATCH, len(batch))))
                batch = batch.take(torch.arange(BATCH))
            held -= len(batch)
            with torch.enable_grad():
                bound, a_in, coef = _optimise(wb, batch, label, net.n_classes, box, STEPS)
            domains, batches = domains + len(batch), batches + 1
            alive = bound <= 0
            for t, b in zip(batch.target[~alive].tolist(), bound[~alive].tolist()):
                least[t] = min(least.get(t, b), b)
            if not alive.any():
                continue
            live = batch.take(torch.nonzero(alive).flatten())
            cand = torch.where(a_in[alive] > 0, xl, xu).numpy()
            margins = net.logits64(cand.reshape(-1, *net.input_shape))
            m = margins[:, label] - margins[np.arange(len(live)), live.target.numpy()]
            for k in np.argsort(m)[:4]:
                if m[k] < 0:
                    point, margins, ok = recheck(net, cand[k].reshape(net.input_shape), x64, label, pset)
                    if ok:
                        j = int(live.target[k])
                        return BabResult((), {}, tuple(targets), point, j, float(margins[j]), domains, batches,
                                         now() - t0, empty, tables)
            layer, neuron = _branch(live, {i: c[alive] for i, c in coef.items()}, tables)
            done = layer < 0
            for d in torch.nonzero(done).flatten().tolist():
                j = int(live.target[d])
                if now() > deadline:  # out of time: the domain stays open
                    stuck.add(j)
                    continue
                verdict, value = _leaf(wb, live, d, label, box)
                if verdict == "closed":
                    least[j] = min(least.get(j, value), value)
                    leaves += 1
                    continue
                if verdict == "empty":
                    empty += 1
                    continue
                if verdict == "point":
                    point, margins, ok = recheck(net, value.reshape(net.input_shape), x64, label, pset)
                    if ok:
                        return BabResult((), {}, tuple(targets), point, j, float(margins[j]), domains, batches,
                                         now() - t0, empty, tables, leaves)
                stuck.add(j)
            keep = torch.nonzero(~done).flatten()
            if len(keep):
                live, layer, neuron = live.take(keep), layer[keep], neuron[keep]
                for side in (-1, 1):  # depth first, the z >= 0 side on top
                    child = _with_split(live, layer, neuron, side, tables)
                    gone = _empty(child)
                    if gone.any():
                        empty += int(gone.sum())
                        child = child.take(torch.nonzero(~gone).flatten())
                    if len(child):
                        pool.insert(0, child)
                        held += len(child)
    finally:
        torch.set_num_threads(threads)
    left = {int(t) for p in pool for t in p.target} | stuck
    # a target all of whose domains were empty is left open: its root set holds x (or is a
    # conditioned region the caller's LPs did not find empty), so that is not taken as a proof
    verified = tuple(t for t in targets if t not in left and t in least)
    return BabResult(verified, {t: least[t] for t in verified}, tuple(t for t in targets if t not in verified),
                     None, None, float("nan"), domains, batches, now() - t0, empty, tables, leaves)
