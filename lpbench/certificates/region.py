"""The activation region of a ReLU network at x: Singla & Feizi 2019, Algorithm 1.

On the polyhedron ``S = {x' : P x' + q >= 0}`` every ReLU keeps the sign it has at x, so the
network is the affine map ``C x' + d`` there. Row r of (P, q) is ``s_r z_r(x')`` for hidden
neuron r with ``s_r = +1`` if ``z_r(x) > 0`` (active) and ``-1`` otherwise (Algorithm 1's
``z > 0``; a neuron at exactly 0 is inactive and its row is 0 at x, so x is on that face).
Rows with zero norm (neurons constant in x'; every path to them dead) are dropped: they define no
face. Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpbench.certificates.chain import affine_chain
from lpbench.errors import LpbenchError
from lpbench.network import Network


@dataclass(frozen=True, eq=False)
class Region:
    """``P`` (faces, D), ``q`` (faces,): the region; ``C`` (K, D), ``d`` (K,): the local map;
    ``pattern``: per hidden layer the bool activation pattern; ``layer``/``neuron``: for each kept
    row of P, the hidden layer and neuron it came from; ``dropped``: zero-norm rows removed."""

    P: np.ndarray
    q: np.ndarray
    C: np.ndarray
    d: np.ndarray
    pattern: tuple[np.ndarray, ...]
    layer: np.ndarray
    neuron: np.ndarray
    dropped: int
    C_mag: np.ndarray  # |W_K| diag(theta) ... |W_1|: bounds the rounding error of C x + d with d_mag
    d_mag: np.ndarray
    P_mag: np.ndarray  # the same for the rows of (P, q)
    q_mag: np.ndarray

    def value_error(self, x: np.ndarray, rel: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
        """Allowances for the float64 rounding of ``C x + d`` and ``P x + q``: ``rel`` times the
        same expressions with every weight and input in absolute value (the error of a sum of n
        products is below n 2^-53 of that, and n * layers < 1e5 here)."""
        ax = np.abs(np.ravel(x))
        return rel * (self.C_mag @ ax + self.d_mag), rel * (self.P_mag @ ax + self.q_mag)

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        return bool(np.all(self.P @ np.ravel(x) + self.q >= -tol))


def activation_region(net: Network, x: np.ndarray, method: str = "activation region") -> Region:
    """Algorithm 1 of Singla & Feizi 2019 at the sample ``x`` (any shape with net's input size)."""
    chain = affine_chain(net, method)
    a = np.asarray(x, np.float64).ravel()
    if a.size != chain[0].weight.shape[1]:
        raise LpbenchError(f"{method}: input has {a.size} entries, the network expects "
                           f"{chain[0].weight.shape[1]}")
    C, d = chain[0].weight.copy(), chain[0].bias.copy()
    Cm, dm = np.abs(C), np.abs(d)
    rows_p, rows_q, layers, neurons, pattern, mags_p, mags_q = [], [], [], [], [], [], []
    for k, nxt in enumerate(chain[1:]):
        z = C @ a + d  # = W_k a_{k-1} + b_k, computed from the affine map of x
        theta = z > 0
        s = np.where(theta, 1.0, -1.0)
        rows_p.append(s[:, None] * C)
        rows_q.append(s * d)
        layers.append(np.full(z.size, k))
        neurons.append(np.arange(z.size))
        pattern.append(theta)
        mags_p.append(Cm)
        mags_q.append(dm)
        C = nxt.weight @ (theta[:, None] * C)
        d = nxt.weight @ (theta * d) + nxt.bias
        aw = np.abs(nxt.weight)
        Cm = aw @ (theta[:, None] * Cm)
        dm = aw @ (theta * dm) + np.abs(nxt.bias)
    D = a.size
    P = np.concatenate(rows_p) if rows_p else np.zeros((0, D))
    q = np.concatenate(rows_q) if rows_q else np.zeros(0)
    lay = np.concatenate(layers) if layers else np.zeros(0, int)
    neu = np.concatenate(neurons) if neurons else np.zeros(0, int)
    Pm = np.concatenate(mags_p) if mags_p else np.zeros((0, D))
    qm = np.concatenate(mags_q) if mags_q else np.zeros(0)
    keep = np.abs(P).sum(1) > 0
    return Region(P[keep], q[keep], C, d, tuple(pattern), lay[keep], neu[keep], int((~keep).sum()),
                  Cm, dm, Pm[keep], qm[keep])
