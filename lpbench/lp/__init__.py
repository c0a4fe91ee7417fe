"""Per-neuron LP bounds: the optimal layer-wise convex relaxation of Salman et al. 2019.

* :mod:`lpbench.lp.formulation` -- WHAT is relaxed: the triangle relaxation of a network prefix
  as a plain sparse LP (problem (C) with the ReLU relaxation (4));
* :mod:`lpbench.lp.drivers` -- HOW LP bounds travel: LP-ALL (step A per layer, then step B) and
  LP-LAST as one per-neuron routine with a layer policy;
* :mod:`lpbench.lp.methods` -- the registered methods ``lp-all`` and ``lp-last``.

WHO solves lives in :mod:`lpbench.solvers`. Importing :mod:`lpbench.lp.methods` registers the
methods in :data:`lpbench.methods.REGISTRY`.
"""

from lpbench.lp.drivers import CheapBounds, SampleResult, Sessions, cheap_bounds, lp_layers, solve_sample
from lpbench.lp.formulation import Block, Relaxation, relaxation

__all__ = ["Block", "CheapBounds", "Relaxation", "SampleResult", "Sessions", "cheap_bounds",
           "lp_layers", "relaxation", "solve_sample"]
