"""Certificates outside layer-wise bound propagation: a certified radius per sample.

* :mod:`~lpbench.certificates.region` -- the activation region of a ReLU network (Singla &
  Feizi 2019, Algorithm 1);
* :mod:`~lpbench.certificates.simplex` -- the simplex certificate (Theorem 3) and the exact
  distance inside the region;
* :mod:`~lpbench.certificates.boundary` -- the decision-boundary certificate (Theorem 4);
* :mod:`~lpbench.certificates.lipschitz` -- Op-norm and LMT (global Lipschitz constants);
* :mod:`~lpbench.certificates.fastlip` -- Fast-Lip (interval Jacobian, integrated over eps);
* :mod:`~lpbench.certificates.bcp` -- BCP (ball and box propagated together);
* :mod:`~lpbench.certificates.methods` -- all of them as registered verifiers and as
  ``RADIUS[name](net, x, label, norm) -> float``.
"""

from lpbench.certificates.methods import RADIUS, certified_radius
from lpbench.certificates.region import Region, activation_region
from lpbench.certificates.simplex import SimplexResult, region_distance, simplex_certificate

__all__ = ["RADIUS", "Region", "SimplexResult", "activation_region", "certified_radius",
           "region_distance", "simplex_certificate"]
