"""A VNNLIB property on an ONNX network as an lpbench problem (network, centre, label, ball).

Input box. When the box is an l_inf ball clipped to a range -- ``[max(a, x - eps), min(b,
x + eps)]`` for one x, eps, a, b, as in every robustness benchmark -- the problem is
``Perturbation(eps, "linf", box=(a, b))`` around a float32 centre x, with eps the shortest
decimal for which the ball contains the whole box in exact arithmetic (checked with error-free
sums). The ball may exceed the box by a rounding (bounds written as ``x - eps`` in float64 are
rounded, and the centre is a float32 number): a verified answer on the larger set is sound,
and a counterexample is clipped into the exact box and re-checked. For a box written by
:func:`~lpbench.interop.vnnlib.robustness_property` the centre is the image itself and eps
the written one or a few ulps above it. Any other box is reparametrised:
``X = lower + width * u`` with u in [0, 1]^n by a diagonal dense layer put in front of the
network (its first layer must then be dense: conv networks need a ball). The layer is not folded
into the first one, so no weight is rounded: the methods see the network exactly.

Output region. When it is the robustness region ``Y_j >= Y_y for some j != y`` (every j), the
network is used as it is with label y, and the margins are lpbench's. Otherwise a dense layer
is appended whose output 0 is the constant 0 and output r is ``c_r . Y - d_r`` for every row of
every disjunct; with label 0 the margin of class r is ``d_r - c_r . Y``, so a margin proved
positive means that row can never hold. The region is unreachable (UNSAT) when every disjunct
has a row proved never to hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpbench.errors import LpbenchError
from lpbench.interop.vnnlib import Property
from lpbench.network import Dense, Flatten, Network
from lpbench.problem import Perturbation

#: A box counts as a clipped l_inf ball when the ball exceeds it by at most this (times max(1, |range|)).
BALL_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class Encoded:
    net: Network
    x: np.ndarray  # (*net.input_shape,) float32 centre
    label: int
    pset: Perturbation
    groups: tuple[tuple[int, ...], ...]  # per disjunct, the classes whose margins are its rows
    lower: np.ndarray  # the property's box, flat float64
    upper: np.ndarray
    reparam: bool  # inputs are u in [0,1]^n with X = lower + (upper - lower) * u
    how: str

    def to_input(self, point: np.ndarray) -> np.ndarray:
        """A point of ``net``'s input space as the flat ONNX input X (float64), clipped into the box."""
        p = np.asarray(point, np.float64).ravel()
        if self.reparam:
            p = self.lower + np.nextafter(self.upper - self.lower, np.inf) * p
        return np.clip(p, self.lower, self.upper)

    def single_row(self, j: int) -> Network:
        """The network whose only margin (label 0 against class 1) is row ``j`` of the region
        (spec-layer encodings only): a method verifying it proves that row never holds."""
        last = self.net.layers[-1]
        keep = [0, j]
        return Network(self.net.layers[:-1] + (Dense(last.weight[keep], last.bias[keep]),),
                       self.net.input_shape, self.net.name)

    def unsat(self, margin_lower: np.ndarray | None) -> bool:
        """True if sound margin lower bounds rule out every disjunct."""
        if margin_lower is None:
            return False
        ml = np.asarray(margin_lower, np.float64)
        return all(any(bool(ml[j] > 0) for j in g) for g in self.groups)


def encode(net: Network, prop: Property) -> Encoded:
    n_in = int(np.prod(net.input_shape))
    if prop.lower.size != n_in:
        raise LpbenchError(f"the property has {prop.lower.size} inputs, the network {n_in}")
    if prop.n_outputs != net.n_classes:
        raise LpbenchError(f"the property has {prop.n_outputs} outputs, the network {net.n_classes}")
    ball = clipped_ball(prop.lower, prop.upper)
    if ball is not None:
        x, eps, a, b = ball
        inner, centre, reparam = net, x.reshape(net.input_shape), False
        pset, how = Perturbation(eps, "linf", (a, b)), f"linf ball eps={eps:.17g} in [{a:g}, {b:g}]"
    else:
        inner, reparam = _reparametrise(net, prop.lower, prop.upper), True
        centre = np.full(n_in, 0.5, np.float32)
        pset, how = Perturbation(0.5, "linf", (0.0, 1.0)), "general box, reparametrised to [0,1]^n"
    label = robustness_label(prop)
    if label is not None:
        groups = tuple((int(np.flatnonzero(c[0] > 0)[0]),) for c in prop.rows)
        return Encoded(inner, centre, label, pset, groups, prop.lower, prop.upper, reparam, how)
    c = np.vstack([np.zeros((1, prop.n_outputs))] + list(prop.rows))
    d = np.concatenate([[0.0]] + list(prop.rhs))
    layers = inner.layers + ((Flatten(),) if len(inner.shapes[-1]) != 1 else ()) + (Dense(c, -d),)
    spec_net = Network(layers, inner.input_shape, inner.name)
    groups, k = [], 1
    for rows in prop.rows:
        groups.append(tuple(range(k, k + len(rows))))
        k += len(rows)
    return Encoded(spec_net, centre, 0, pset, tuple(groups), prop.lower, prop.upper, reparam,
                   how + f"; {len(d) - 1} output rows in {len(groups)} disjunct(s)")


def robustness_label(prop: Property) -> int | None:
    """y if the region is exactly ``Y_j >= Y_y`` for some j != y (every j once), else None."""
    targets, labels = [], set()
    for c, d in zip(prop.rows, prop.rhs):
        if c.shape[0] != 1 or d[0] != 0:
            return None
        nz = np.flatnonzero(c[0])
        if len(nz) != 2 or sorted(c[0, nz]) != [-1.0, 1.0]:
            return None
        targets.append(int(nz[c[0, nz] > 0][0]))
        labels.add(int(nz[c[0, nz] < 0][0]))
    if len(labels) != 1:
        return None
    y = labels.pop()
    return y if sorted(targets) == [j for j in range(prop.n_outputs) if j != y] else None


def clipped_ball(lower: np.ndarray, upper: np.ndarray):
    """(float32 centre x, eps, a, b) such that the ball ``[max(a, x - eps), min(b, x + eps)]``
    contains ``[lower, upper]`` in exact arithmetic and exceeds it by at most BALL_TOL; None if
    there is none. eps is the shortest decimal that works (0.02 for a box written with 0.02)."""
    lo, hi = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    a, b = float(lo.min()), float(hi.max())
    half = float((hi - lo).max()) / 2
    ulp = float(np.spacing(max(abs(a), abs(b), half)))  # the rounding of x +- eps
    guess = next((g for g in (float(f"{half:.{p}g}") for p in range(1, 18)) if abs(g - half) <= ulp), half)
    at_a, at_b = lo <= a, hi >= b
    c = np.where(at_a & ~at_b, hi - guess, np.where(at_b & ~at_a, lo + guess, (lo + hi) / 2))
    x = np.clip(c, lo, hi).astype(np.float32)
    x64 = x.astype(np.float64)
    need = float(max(np.max(x64 - lo), np.max(hi - x64), 0.0))
    eps = next((e for e in sorted({guess, float(f"{need:.12g}")}) if _contains(x64, e, lo, hi)), need)
    for _ in range(64):  # need is exact up to rounding: a few ulps more always suffice
        if _contains(x64, eps, lo, hi):
            break
        eps = float(np.nextafter(eps, np.inf))
    else:
        return None
    tol = BALL_TOL * max(1.0, abs(a), abs(b))
    if np.max(lo - np.maximum(a, x64 - eps)) > tol or np.max(np.minimum(b, x64 + eps) - hi) > tol:
        return None
    return x, eps, a, b


def _two_sum(p: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """s = fl(p + q) and the exact error e: p + q = s + e (Knuth's TwoSum)."""
    s = p + q
    bb = s - p
    return s, (p - (s - bb)) + (q - bb)


def _contains(x: np.ndarray, eps: float, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Exactly: x - eps <= lo and x + eps >= hi everywhere (then the clipped ball holds the box)."""
    s, e = _two_sum(x, -eps)
    t, f = _two_sum(x, eps)
    return bool(np.all((s < lo) | ((s == lo) & (e <= 0))) and np.all((t > hi) | ((t == hi) & (f >= 0))))


def _reparametrise(net: Network, lower: np.ndarray, upper: np.ndarray) -> Network:
    """``net(lower + width * u)`` as a network of u in [0, 1]^n (flat): a diagonal dense layer in
    front, kept apart from the first layer so that no weight is rounded (every method treats
    affine layers exactly); ``width`` is rounded up, so the image of [0, 1]^n covers the box."""
    k = 0
    while k < len(net.layers) and isinstance(net.layers[k], Flatten):
        k += 1
    if k < len(net.layers) and not isinstance(net.layers[k], Dense):
        raise LpbenchError("the input box is not a (clipped) l_inf ball, and such boxes are supported "
                           "only for networks whose first layer is dense")
    width = np.nextafter(upper - lower, np.inf)  # lower + width * [0, 1] covers the whole box
    scale = Dense(np.diag(width), np.asarray(lower, np.float64))
    return Network((scale,) + net.layers[k:], (lower.size,), net.name)
