"""CROWN's bounding lines for S-shaped activations: tanh, sigmoid, arctan (Zhang et al. 2018,
Section 3.2, Tables 2-3).

Each of these is convex on (-inf, 0], concave on [0, inf), with a derivative that increases on
(-inf, 0] and decreases on [0, inf). On [l, u]:

* 0 <= l (concave): upper = the tangent at d = (l + u) / 2, lower = the chord;
* u <= 0 (convex): upper = the chord, lower = the tangent at the midpoint;
* l < 0 < u: the upper line passes through (l, sigma(l)) and touches sigma at the d* >= 0 solving
  (sigma(d) - sigma(l)) / (d - l) = sigma'(d); if d* >= u the chord l -> u is used. The lower
  line is the mirror image (through (u, sigma(u)), d* <= 0).

Soundness of the tangent search. The released CROWN code stops the bisection early and takes the
chord to a point that is not the tangent point, a line that is too flat, then patches it with an
ad-hoc offset. Here the bisection keeps a bracket [d_lo, d_hi] with d_lo provably below d*: it only
moves d_lo to m when F(m) = sigma'(m) (m - l) - (sigma(m) - sigma(l)) exceeds its own rounding
error bound (F > 0 exactly on [0, d*)); d_lo starts at 0, where F > 0 by convexity. The slope is
sigma'(d_lo) >= sigma'(d*) (sigma' decreases on [0, inf)): a line through (l, sigma(l)) at least
as steep as the tangent one lies above sigma on [l, inf). The chord is taken only when F(u)
exceeds its error bound (then d* > u). Every line's intercept is moved outwards by a relative
allowance of 64 ulps of its terms, covering the rounding of slopes, intercepts and sigma itself.
"""

from __future__ import annotations

import torch

from lpbench.activations import Activation
from lpbench.bounds.relaxations import RELAXATIONS, Lines, parse_strategy

EPS = 2.0 ** -52
#: Relative allowance on intercepts (in units of the size of the line's terms).
S_SLACK = 64 * EPS
#: Bisection steps of the tangent search (the bracket shrinks to u / 2^ITERS).
ITERS = 48


def _dtanh(z):
    return 1.0 / torch.cosh(z) ** 2  # accurate where 1 - tanh(z)^2 would cancel


def _dsigmoid(z):
    return torch.sigmoid(z) * torch.sigmoid(-z)


def _datan(z):
    return 1.0 / (1.0 + z * z)


FUNCTIONS = {"tanh": (torch.tanh, _dtanh), "sigmoid": (torch.sigmoid, _dsigmoid),
             "arctan": (torch.atan, _datan)}


def upper_line(f, df, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(slope, intercept) of a sound upper line of an S-shaped f on [l, u] (elementwise)."""
    one = torch.ones_like(u)
    fl, fu = f(l), f(u)
    w = u - l
    chord = torch.where(w > 0, (fu - fl) / torch.where(w > 0, w, one), df(l))
    mid = l + w / 2
    k_tan, f_mid = df(mid), f(mid)
    cross = (l < 0) & (u > 0)

    def surely_before_tangent(d):  # F(d) > its error bound  =>  d < d*
        g = df(d) * (d - l)
        return g - (f(d) - fl) > 4 * S_SLACK * (g.abs() + f(d).abs() + fl.abs())

    chord_ok = surely_before_tangent(u)
    d_lo, d_hi = torch.zeros_like(u), torch.where(cross, u, one)
    for _ in range(ITERS):
        m = (d_lo + d_hi) / 2
        ok = surely_before_tangent(m)
        d_lo, d_hi = torch.where(ok, m, d_lo), torch.where(ok, d_hi, m)
    k_cross = df(d_lo)
    use_chord = (u <= 0) | (cross & chord_ok)
    slope = torch.where(l >= 0, k_tan, torch.where(use_chord, chord, k_cross))
    icpt = torch.where(l >= 0, f_mid - k_tan * mid, fl - slope * l)
    anchor = torch.where(l >= 0, f_mid.abs(), fl.abs() + fu.abs())
    icpt = icpt + S_SLACK * (slope.abs() * torch.maximum(l.abs(), u.abs()) + icpt.abs() + anchor)
    return slope, icpt


def sshape_lines(act: Activation, l: torch.Tensor, u: torch.Tensor, strategy: str) -> Lines:
    parse_strategy(strategy)  # every strategy but constant (handled upstream) means these lines
    f, df = FUNCTIONS[act.name]
    us, ui = upper_line(f, df, l, u)
    # lower line of f on [l, u] = mirror of the upper line of g(w) = -f(-w) on [-u, -l]
    ls, li = upper_line(lambda w: -f(-w), lambda w: df(-w), -u, -l)
    return Lines(ls, -li, us, ui)


for _name in FUNCTIONS:
    RELAXATIONS[_name] = sshape_lines
