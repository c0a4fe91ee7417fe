"""An example lpbench verifier plugin: the elementwise best of IBP and CROWN margin bounds.

Both are sound lower bounds on every margin f_y - f_j over the perturbation set, so their maximum
is one too. It is a layer-wise convex relaxation, so it can never beat LP-ALL: `lpbench compare
best-of-ibp-crown` shows how much of the LP-GREEDY-to-LP-ALL gap it closes.

Install it (`pip install examples/plugin`) and it is registered through the entry point group
``lpbench.verifiers`` (see pyproject.toml); or register it by hand:

    import lpbench
    from lpbench_example_plugin import best_of_ibp_crown
    lpbench.register_verifier("best-of-ibp-crown", best_of_ibp_crown)
"""

import numpy as np
import torch

from lpbench.bounds.propagate import interval_bounds, linear_bounds
from lpbench.methods import margin_spec


def best_of_ibp_crown(net, images, labels, pset):
    """Elementwise best of IBP and CROWN margin lower bounds (example plugin)."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels))
    spec = margin_spec(y, net.n_classes, x.dtype, x.device)
    with torch.no_grad():
        ibp = interval_bounds(net, x, pset, spec).lower
        crown = linear_bounds(net, x, pset, spec, "adaptive").lower
    return torch.maximum(ibp, crown).numpy()
