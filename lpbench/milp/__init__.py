"""Exact verification: the MILP of Tjeng, Xiao & Tedrake 2019.

* :mod:`lpbench.milp.formulation` -- WHAT is encoded: the LP relaxation plus one binary per
  unstable ReLU, with bounds from a named tightening procedure;
* :mod:`lpbench.milp.verify` -- HOW a sample is decided: per-target MILPs, early stop on the sign,
  safe dual bounds, re-checked counterexamples;
* :mod:`lpbench.milp.joint` -- one MILP for several targets of a sample (``targets="joint"``);
* :mod:`lpbench.milp.methods` -- the registered method ``milp``;
* :mod:`lpbench.milp.distortion` -- the minimum l_inf adversarial distortion (closest adversarial
  example) as a bracket from one MILP per target.

WHO solves lives in :mod:`lpbench.solvers` (``Backend.solve_milp``). Importing
:mod:`lpbench.milp.methods` registers the method in :data:`lpbench.methods.REGISTRY`.
"""

from lpbench.milp.distortion import Distortion, min_distortion
from lpbench.milp.formulation import MILP, TIGHTENINGS, check_relu, milp, tightened_bounds
from lpbench.milp.verify import SampleVerdict, TargetResult, tolerance, verify_sample

__all__ = ["Distortion", "MILP", "SampleVerdict", "TIGHTENINGS", "TargetResult", "check_relu", "milp", "tightened_bounds",
           "min_distortion", "tolerance", "verify_sample"]
