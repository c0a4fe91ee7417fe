"""Bounding lines of leaky ReLU(eta) and ParamRamp(eta, r) (Lyu et al. 2021, appendix A.7).

Leaky ReLU: eta z (z < 0), z (z >= 0). Dead (u <= 0) and alive (l >= 0) neurons are exact; an
unstable one has the chord through (l, eta l) and (u, u) as upper line and a lower line alpha z
through the origin with alpha in [eta, 1] (valid as the function is convex): tight alpha = eta,
adaptive 1 if u >= -l else eta, same-slope the chord slope (Fast-Lin), one-lb 1, fixed(a) max(a, eta).

ParamRamp: eta z (z < 0), z (0 <= z <= r), eta z + b (z > r) with b = (1 - eta) r, six statuses:

===============  ==================  ==============================  ==============================
status           range               upper                           lower
===============  ==================  ==============================  ==============================
left dead        u <= 0              eta z                           eta z
right dead       l >= r              eta z + b                       eta z + b
alive            0 <= l, u <= r      z                               z
left unstable    l < 0 < u <= r      chord (l, eta l)-(u, u)         alpha z, as for leaky ReLU
right unstable   0 <= l < r < u      beta z + (1 - beta) r           chord (l, l)-(u, eta u + b)
unstable         l < 0 < r < u       eta z + b  |  k1 z + b1         eta z  |  k2 z
===============  ==================  ==============================  ==============================

beta (a line through (r, r), valid for beta in [eta, 1] as the function is concave on [0, inf)):
tight eta, adaptive eta if u - r > r - l else 1, same-slope the lower chord's slope, one-lb 1.
Unstable: k1 z + b1 is the line through (l, eta l) and (r, r), k2 z the line through the origin
and (u, eta u + b); tight and same-slope take eta z + b / eta z, one-lb k1 / k2, adaptive the
table of Lyu et al. (upper eta z + b if u - r > r - l, lower eta z if -l > u). Chords carry an
outward intercept allowance of a few ulps (:func:`outward`), so the lines hold in float64 too.
"""

from __future__ import annotations

import torch

from lpbench.activations import Activation
from lpbench.bounds.relaxations import RELAXATIONS, Lines, parse_strategy

#: Relative allowance on the intercept of lines whose coefficients are rounded (chords, tangents).
LINE_SLACK = 8 * 2.0 ** -52


def outward(slope, icpt, l, u, mask=None, scale: float = LINE_SLACK):
    """An allowance for rounding of a line ``slope z + icpt`` used on [l, u]: ``scale`` times
    the size of its terms (zero where ``mask`` is False)."""
    a = scale * (slope.abs() * torch.maximum(l.abs(), u.abs()) + icpt.abs())
    return a if mask is None else torch.where(mask, a, torch.zeros_like(a))


def _lower_alpha(name: str, fixed, l, u, eta, chord):
    if name == "tight":
        return torch.full_like(u, eta)
    if name == "adaptive":
        return torch.where(u >= -l, torch.ones_like(u), torch.full_like(u, eta))
    if name == "same-slope":
        return chord
    if name == "one-lb":
        return torch.ones_like(u)
    return torch.full_like(u, max(fixed, eta))  # fixed(a)


def leaky_relu_lines(act: Activation, l: torch.Tensor, u: torch.Tensor, strategy: str) -> Lines:
    name, fixed = parse_strategy(strategy)
    eta = act.params[0]
    unstable = (l < 0) & (u > 0)
    slope_exact = torch.where(u <= 0, torch.full_like(u, eta), torch.ones_like(u))
    width = torch.where(unstable, u - l, torch.ones_like(u))
    chord = torch.where(unstable, ((u - eta * l) / width).clamp(eta, 1.0), slope_exact)
    icpt = torch.where(unstable, (eta - 1) * l * u / width, torch.zeros_like(u))
    icpt = icpt + outward(chord, icpt, l, u, unstable)
    alpha = torch.where(unstable, _lower_alpha(name, fixed, l, u, eta, chord), slope_exact)
    if name == "same-slope":
        return Lines(chord, torch.zeros_like(u), chord, icpt)
    return Lines(alpha, torch.zeros_like(u), chord, icpt)


def param_ramp_lines(act: Activation, l: torch.Tensor, u: torch.Tensor, strategy: str) -> Lines:
    name, _ = parse_strategy(strategy)
    if name == "fixed":
        raise ValueError("fixed(a) lower slopes are defined for relu and leaky_relu, not param_ramp")
    eta = act.params[0]
    r = act.threshold(u)
    l, u, r = torch.broadcast_tensors(l, u, r)
    b = (1 - eta) * r
    one, zero, etas = torch.ones_like(u), torch.zeros_like(u), torch.full_like(u, eta)
    left_dead, right_dead = u <= 0, (l >= r) & (u > 0)
    alive = (l >= 0) & (u <= r)
    left_unst = (l < 0) & (u > 0) & (u <= r)
    right_unst = (l >= 0) & (l < r) & (u > r)
    unstable = (l < 0) & (u > r)
    w = torch.where(u > l, u - l, one)
    # left unstable: upper chord (l, eta l)-(u, u), lower alpha z
    s1 = ((u - eta * l) / w).clamp(eta, 1.0)  # slopes in [eta, 1] also after rounding
    c1 = (eta - 1) * l * u / w
    # right unstable: lower chord (l, l)-(u, eta u + b), upper beta z + (1 - beta) r
    s2 = ((eta * u + b - l) / w).clamp(eta, 1.0)
    c2 = l - s2 * l
    # unstable: k1 z + b1 through (l, eta l) and (r, r); k2 z through 0 and (u, eta u + b)
    wr = torch.where(r > l, r - l, one)
    k1 = ((r - eta * l) / wr).clamp(eta, 1.0)
    b1 = (eta - 1) * l * r / wr
    k2 = ((eta * u + b) / torch.where(u > 0, u, one)).clamp(eta, 1.0)
    if name in ("tight", "same-slope"):
        alpha = s1 if name == "same-slope" else etas
        beta = s2 if name == "same-slope" else etas
        un_up = (etas, b)
        un_lo = (etas, zero)
    elif name == "adaptive":
        alpha = torch.where(u >= -l, one, etas)
        beta = torch.where(u - r > r - l, etas, one)
        far = u - r > r - l
        un_up = (torch.where(far, etas, k1), torch.where(far, b, b1))
        left = -l > u
        un_lo = (torch.where(left, etas, k2), zero)
    else:  # one-lb
        alpha, beta = one, one
        un_up, un_lo = (k1, b1), (k2, zero)
    cases_up = [(left_dead, etas, zero), (right_dead, etas, b), (alive, one, zero), (left_unst, s1, c1),
                (right_unst, beta, (1 - beta) * r), (unstable, un_up[0], un_up[1])]
    cases_lo = [(left_dead, etas, zero), (right_dead, etas, b), (alive, one, zero), (left_unst, alpha, zero),
                (right_unst, s2, c2), (unstable, un_lo[0], un_lo[1])]
    us, ui = _select(cases_up, u)
    ls, li = _select(cases_lo, u)
    inexact = left_unst | right_unst | unstable
    ui = ui + outward(us, ui, l, u, inexact)
    li = li - outward(ls, li, l, u, inexact)
    if name == "same-slope":  # both lines share their slope everywhere: one coefficient set
        return Lines(us, li, us, ui)
    return Lines(ls, li, us, ui)


def _select(cases, like):
    slope, icpt = torch.zeros_like(like), torch.zeros_like(like)
    for mask, s, c in cases:
        slope = torch.where(mask, s, slope)
        icpt = torch.where(mask, c, icpt)
    return slope, icpt


PARAM_RAMP_STATUSES = ("left dead", "left unstable", "alive", "right unstable", "right dead", "unstable")


def param_ramp_status(l: torch.Tensor, u: torch.Tensor, r: torch.Tensor) -> list[torch.Tensor]:
    """Boolean masks of the six statuses, in the order of :data:`PARAM_RAMP_STATUSES`."""
    l, u, r = torch.broadcast_tensors(l, u, r)
    left_dead = u <= 0
    right_dead = (l >= r) & ~left_dead
    rest = ~left_dead & ~right_dead
    return [left_dead, rest & (l < 0) & (u <= r), rest & (l >= 0) & (u <= r),
            rest & (l >= 0) & (u > r), right_dead, rest & (l < 0) & (u > r)]


RELAXATIONS["leaky_relu"] = leaky_relu_lines
RELAXATIONS["param_ramp"] = param_ramp_lines
