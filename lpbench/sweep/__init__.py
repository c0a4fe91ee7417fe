"""Benchmark sweeps on dask.distributed (one machine or a cluster) into the results store.

* :mod:`lpbench.sweep.spec` -- WHAT: the sweep file (TOML), validated before any work starts;
* :mod:`lpbench.sweep.tasks` -- the task functions workers run;
* :mod:`lpbench.sweep.runner` -- HOW: the task graph, the dask client, resume and rerun policies.
"""

from lpbench.sweep.runner import SweepReport, experiment, run_sweep
from lpbench.sweep.spec import SweepSpec, load_spec, parse_spec

__all__ = ["SweepReport", "SweepSpec", "experiment", "load_spec", "parse_spec", "run_sweep"]
