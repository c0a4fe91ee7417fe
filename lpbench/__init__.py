"""lpbench: exact-versus-relaxed verification benchmarks for neural networks.

The public verbs:

* :func:`load_model` -- a model of the zoo by name (Salman et al. 2019's trained networks);
* :func:`load_dataset` -- MNIST / CIFAR-10 test or training sets;
* :func:`verify` -- run registered methods (PGD, IBP, Fast-Lin, CROWN, LP-GREEDY, LP-LAST,
  LP-ALL, ...) on samples;
* :func:`register_verifier` -- add your own verifier (a function returning margin lower bounds,
  or a package entry point ``lpbench.verifiers``) so that it appears in every table and in
  ``lpbench compare`` (:mod:`lpbench.plugins`); :func:`register` for a full Method;
* :func:`table1` -- regenerate Table 1 of Salman et al. 2019 (robust-error bounds).
"""

__version__ = "0.1.0"

import lpbench.lp.methods  # noqa: E402,F401  (registers lp-all and lp-last)
import lpbench.milp.methods  # noqa: E402,F401  (registers milp)
import lpbench.certificates.methods  # noqa: E402,F401  (registers simplex, op-norm, fast-lip, lmt, bcp, ...)
from lpbench.data import load_dataset  # noqa: E402
from lpbench.experiments.api import table1  # noqa: E402
from lpbench.methods import Method, register, verify  # noqa: E402
from lpbench.plugins import load_entry_points, register_verifier  # noqa: E402
from lpbench.problem import Outcome, Perturbation, Status  # noqa: E402
from lpbench.zoo import list_models, load_model  # noqa: E402

load_entry_points()  # verifiers of installed packages (entry point group lpbench.verifiers)

__all__ = ["load_model", "list_models", "load_dataset", "verify", "register", "register_verifier", "Method", "table1",
           "Perturbation", "Outcome", "Status", "__version__"]
