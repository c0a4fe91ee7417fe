#!/usr/bin/env python3
"""Start a dask cluster on SLURM or PBS for ``lpbench sweep run --scheduler ADDRESS``.

The scheduler runs in this process, on the host where you start it (a login or submit node);
the workers run in batch jobs described by cluster/slurm.yaml or cluster/pbs.yaml (dask-jobqueue
configuration). The script prints the scheduler address and the dashboard link and keeps the
cluster up until Ctrl-C or SIGTERM, which cancels the jobs.

    python cluster/jobqueue_cluster.py slurm --jobs 4 --gpu-jobs 2
    lpbench sweep run spec.toml --scheduler tcp://10.0.0.5:8786   # in another shell

Needs dask-jobqueue (pip install dask-jobqueue), which is not a dependency of lpbench.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLUSTER_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    summary, _, rest = (__doc__ or "").partition("\n\n")
    p = argparse.ArgumentParser(prog="jobqueue_cluster.py", description=summary,
                                epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("system", choices=sorted(CLUSTER_CLASSES), help="batch system")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML file with a `jobqueue:` section (default: slurm.yaml or pbs.yaml "
                        "beside this script)")
    p.add_argument("--profile", default=None,
                   help="config section of the CPU jobs (default: the system name)")
    p.add_argument("--gpu-profile", default=None,
                   help="config section of the GPU jobs (default: SYSTEM-gpu); keys it lacks are "
                        "taken from the CPU section")
    p.add_argument("--jobs", type=int, default=1,
                   help="CPU jobs to submit; each runs `processes` workers (default: 1)")
    p.add_argument("--gpu-jobs", type=int, default=0,
                   help="GPU jobs to submit; each runs one worker with --resources GPU=1 "
                        "(default: 0)")
    p.add_argument("--port", type=int, default=None,
                   help="scheduler port (default: scheduler-options of the config; 0: any free)")
    p.add_argument("--dashboard-port", type=int, default=None,
                   help="dashboard port (default: scheduler-options of the config)")
    p.add_argument("--interface", default=None,
                   help="network interface of scheduler and workers, e.g. ib0 (default: config)")
    p.add_argument("--python", default=None,
                   help="python on the compute nodes (default: the config's `python`, else this "
                        "python, sys.executable)")
    p.add_argument("--address-file", type=Path, default=None,
                   help="write the scheduler address to this file (one line)")
    p.add_argument("--scheduler-file", type=Path, default=None,
                   help="write scheduler information here as JSON, like `dask scheduler "
                        "--scheduler-file`, for Client(scheduler_file=...)")
    p.add_argument("--print-job-script", action="store_true",
                   help="print the job scripts of both profiles and exit without submitting")
    args = p.parse_args(argv)
    if args.jobs < 0 or args.gpu_jobs < 0:
        p.error("--jobs and --gpu-jobs must be >= 0")
    if args.jobs + args.gpu_jobs == 0 and not args.print_job_script:
        p.error("nothing to submit: --jobs 0 and --gpu-jobs 0")
    args.config = args.config or HERE / f"{args.system}.yaml"
    args.profile = args.profile or args.system
    args.gpu_profile = args.gpu_profile or f"{args.system}-gpu"
    return args


def import_jobqueue():
    """dask_jobqueue, imported only when needed; a clear message if it is missing."""
    try:
        import dask_jobqueue
    except ImportError:
        sys.exit("jobqueue_cluster.py: dask-jobqueue is not installed. Install it into the "
                 "environment that runs this script:\n    python -m pip install dask-jobqueue\n"
                 "(or start workers without a batch system: cluster/launch.sh)")
    return dask_jobqueue


def load_config(path: Path, base: str, profiles: list[str]) -> None:
    """Merge the `jobqueue:` section of ``path`` into dask's configuration (over dask-jobqueue's
    defaults, which its import has loaded), then complete every profile other than ``base``
    with the keys of ``base`` that it does not set."""
    import dask.config
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as err:
        sys.exit(f"jobqueue_cluster.py: cannot read {path}: {err}")
    section = data.get("jobqueue") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        sys.exit(f"jobqueue_cluster.py: {path} has no `jobqueue:` section")
    dask.config.update(dask.config.config, {"jobqueue": section}, priority="new")

    base_cfg = dask.config.get(f"jobqueue.{base}", default=None)
    if not isinstance(base_cfg, dict):
        sys.exit(f"jobqueue_cluster.py: no jobqueue.{base} section in {path} or the dask config")
    for name in profiles:
        if name == base:
            continue
        own = dask.config.get(f"jobqueue.{name}", default=None)
        if not isinstance(own, dict):
            sys.exit(f"jobqueue_cluster.py: no jobqueue.{name} section in {path}")
        merged = copy.deepcopy(base_cfg)
        dask.config.update(merged, own, priority="new")
        dask.config.set({f"jobqueue.{name}": merged})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dask_jobqueue = import_jobqueue()
    import dask.config

    profiles = [args.profile] + ([args.gpu_profile] if args.gpu_jobs or args.print_job_script
                                 else [])
    load_config(args.config, args.profile, profiles)

    cls = getattr(dask_jobqueue, CLUSTER_CLASSES[args.system])
    job_kwargs = {}
    if args.python:
        job_kwargs["python"] = args.python
    if args.interface:
        job_kwargs["interface"] = args.interface
    scheduler_options = dict(dask.config.get(f"jobqueue.{args.profile}.scheduler-options",
                                             default={}) or {})
    if args.port is not None:
        scheduler_options["port"] = args.port
    if args.dashboard_port is not None:
        scheduler_options["dashboard_address"] = f":{args.dashboard_port}"

    # passed explicitly so that the cluster knows the worker names of a multi-process job
    processes = dask.config.get(f"jobqueue.{args.profile}.processes", default=None)
    cpu_kwargs = dict(job_kwargs, **({"processes": processes} if processes else {}))
    cluster = cls(config_name=args.profile, scheduler_options=scheduler_options, **cpu_kwargs)
    # GPU jobs: the same job class with the GPU profile, added to the cluster's worker specs so
    # that they share its scheduler and are cancelled with it (a JobQueueCluster has a single
    # job template; worker_spec is SpecCluster's table of named worker specifications).
    gpu_spec = {"cls": cluster.job_cls, "options": {"config_name": args.gpu_profile, **job_kwargs}}
    try:
        if args.print_job_script:
            print(f"# CPU job ({args.profile}):\n{cluster.job_script()}")
            gpu_job = cluster.job_cls(cluster.scheduler_address, name="lpbench-gpu-0",
                                      **gpu_spec["options"])
            print(f"# GPU job ({args.gpu_profile}):\n{gpu_job.job_script()}")
            return 0
        for i in range(args.gpu_jobs):
            cluster.worker_spec[f"lpbench-gpu-{i}"] = copy.deepcopy(gpu_spec)
        cluster.scale(jobs=args.jobs + args.gpu_jobs)

        address = cluster.scheduler_address
        if args.address_file:
            args.address_file.write_text(address + "\n")
        if args.scheduler_file:
            args.scheduler_file.write_text(json.dumps({"address": address, "type": "Scheduler"}))
        print(f"scheduler: {address}")
        print(f"dashboard: {cluster.dashboard_link or '(none)'}")
        each = f" of {processes} workers" if processes else ""
        print(f"submitted: {args.jobs} CPU job(s){each} ({args.profile}), {args.gpu_jobs} GPU "
              f"job(s) of 1 worker ({args.gpu_profile})")
        print(f"run:       lpbench sweep run SPEC.toml --scheduler {address}")
        print("Ctrl-C stops the scheduler and cancels the jobs.", flush=True)

        # our own handlers: importing dask_jobqueue makes SIGINT call sys.exit()
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(1.0):
            pass
        print("stopping: cancelling the jobs", flush=True)
        return 0
    finally:
        cluster.close()
        if args.address_file:
            args.address_file.unlink(missing_ok=True)
        if args.scheduler_file:
            args.scheduler_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
