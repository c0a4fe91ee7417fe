"""HOW a sweep runs: its task graph on dask.distributed, results written by the client.

:func:`run_sweep` connects to a scheduler (``scheduler="tcp://host:8786"``) or starts an embedded
``LocalCluster`` of single-threaded worker processes, submits only the outcomes the store lacks,
and writes each finished task's outcomes to the SQLite store at once (only the client writes).
Tasks are pure functions of their arguments, so a task lost with a killed worker is simply run
again elsewhere by dask, and its outcomes are written once, when its result arrives. A task that
raises becomes an ``error`` outcome carrying the message; the rest of the sweep goes on. An
interrupted sweep resumes: run it again.

Task graph (see :mod:`lpbench.sweep.tasks`): torch methods in blocks of ``spec.block`` samples
(resource ``GPU=1`` when ``spec.device`` is cuda); the MILP one sample per task; LP-ALL per
sample as a chain start -> slices of each layer (the next layer's slices wait for the merge of
the previous layer's) -> finish; LP-LAST and user methods in blocks.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lpbench.errors import LpbenchError
from lpbench.problem import Outcome, Status
from lpbench.store import Store
from lpbench.sweep import tasks
from lpbench.sweep.spec import SweepSpec

RERUN = ("failed", "timeouts", "all")
TORCH_KINDS = ("attack", "bound")


@dataclass
class SweepReport:
    """What a run did: outcomes ``written`` (each exactly once), ``skipped`` (already stored),
    the status counts of the written ones, the task count and the wall time."""

    written: int = 0
    skipped: int = 0
    tasks: int = 0
    counts: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    dashboard: str = ""


@dataclass(frozen=True)
class _Job:
    model: str
    data: str
    eps: float
    method: str
    ids: tuple[int, ...]
    labels: tuple[int, ...]


def experiment(spec: SweepSpec, method: str) -> str:
    """The store key of a sweep's outcomes of one method."""
    return f"sweep:{spec.name}:{spec.method_key(method)}"


def run_sweep(spec: SweepSpec, store: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              rerun: str | None = None, connect_timeout: float = 10.0,
              progress: Callable[[SweepReport, int], None] | None = None,
              on_start: Callable[[str, int], None] | None = None) -> SweepReport:
    """Run (or resume) ``spec``; see the module doc. ``progress(report, total)`` after every
    written task; ``on_start(dashboard link, total outcomes to compute)`` once connected."""
    if rerun is not None and rerun not in RERUN:
        raise LpbenchError(f"--rerun must be one of {', '.join(RERUN)}, got {rerun!r}")
    t0 = time.perf_counter()
    report = SweepReport()
    with Store(store) as st:
        st.save_sweep(spec.name, spec.to_json())
        jobs = _missing(spec, st, rerun, report)
        total = sum(len(j.ids) for j in jobs)
        if not jobs:
            report.wall_s = time.perf_counter() - t0
            return report
        with _client(scheduler, workers, connect_timeout) as client:
            report.dashboard = _dashboard(client)
            gpu = _check_gpu(spec, client)
            if on_start is not None:
                on_start(report.dashboard, total)
            for job, outcomes, where in _execute(client, spec, jobs, gpu, report):
                report.written += st.add(experiment(spec, job.method), job.model, job.eps, spec.norm,
                                         outcomes, where)
                report.counts.update(o.status.value for o in outcomes)
                if progress is not None:
                    progress(report, total)
    report.wall_s = time.perf_counter() - t0
    return report


def sample_set(spec: SweepSpec, model: str) -> tuple[str, np.ndarray, np.ndarray]:
    """(data set name, sample ids, labels) of a model in the sweep."""
    from lpbench.experiments.api import sample_ids
    from lpbench.zoo import model_info
    if spec.instances:  # an instance list: its rows are the samples (lpbench.interop.sweep)
        from lpbench.interop.sweep import instance_count
        n = instance_count(spec.instances)
        return "vnncomp", sample_ids(spec.samples, n), np.full(n, -1)
    data = spec.dataset or model_info(model).dataset
    d = tasks.dataset(data)
    ids = sample_ids(spec.samples, len(d.labels))
    return data, ids, d.labels[ids]


def _missing(spec: SweepSpec, st: Store, rerun: str | None, report: SweepReport) -> list[_Job]:
    """The (model, eps, method) blocks of samples the store lacks, after applying ``rerun``."""
    jobs = []
    for model, eps, method in spec.jobs():
        key = experiment(spec, method)
        if rerun is not None:
            st.delete(key, model, eps, spec.norm, method,
                      None if rerun == "all" else ["error"] if rerun == "failed" else ["timeout"])
        data, ids, labels = sample_set(spec, model)
        have = st.done(key, model, eps, spec.norm, method)
        keep = np.array([int(i) not in have for i in ids], bool)
        report.skipped += int((~keep).sum())
        ids, labels = ids[keep], labels[keep]
        size = _task_size(spec, method)
        for s in range(0, len(ids), size):
            jobs.append(_Job(model, data, eps, method, tuple(int(i) for i in ids[s:s + size]),
                             tuple(int(y) for y in labels[s:s + size])))
    return jobs


def _task_size(spec: SweepSpec, method: str) -> int:
    from lpbench.methods import get_method
    if method == "milp" or _chained(spec, method) or spec.instances:
        return 1
    return spec.block if get_method(method).kind in TORCH_KINDS else max(1, spec.block // 10)


def _chained(spec: SweepSpec, method: str) -> bool:
    """LP-ALL runs as per-layer slice tasks unless its cascade (a per-sample pipeline) is asked."""
    return method == "lp-all" and not spec.instances and not spec.options.get("lp-all", {}).get("cascade", False)


class _client:
    """A dask Client on ``scheduler``, or on a new LocalCluster of ``workers`` processes."""

    def __init__(self, scheduler: str | None, workers: int | None, timeout: float) -> None:
        self.scheduler, self.workers, self.timeout = scheduler, workers, timeout
        self.cluster = self.client = None

    def __enter__(self):
        from distributed import Client, LocalCluster
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=f"{self.timeout}s")
            except (OSError, TimeoutError, ValueError) as e:
                raise LpbenchError(f"cannot reach the dask scheduler at {self.scheduler} "
                                   f"within {self.timeout:g} s: {e}") from None
            if not self.client.scheduler_info().get("workers"):
                self.client.wait_for_workers(1, timeout=self.timeout)
            return self.client
        n = self.workers or os.cpu_count() or 1
        one = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        # Ctrl-C reaches the whole process group: the worker processes start with SIGINT ignored
        # (a disposition that survives their exec), so only this process handles it, closing the
        # cluster, instead of every worker printing its own KeyboardInterrupt traceback. The
        # workers log only CRITICAL: a task's failure comes back as its future's exception (an
        # error outcome), and what they log at ERROR while the cluster closes (a heartbeat to a
        # scheduler already gone, on a loaded machine) is noise with a traceback
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", silence_logs=logging.CRITICAL, env=one)
        finally:
            signal.signal(signal.SIGINT, handler)
        self.client = Client(self.cluster)
        return self.client

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _dashboard(client) -> str:
    try:
        return client.dashboard_link or ""
    except Exception:  # no bokeh: no dashboard  # noqa: BLE001
        return ""


def _check_gpu(spec: SweepSpec, client) -> bool:
    """True when torch tasks must go to GPU workers (``device = "cuda"``); an error if none has one."""
    if not spec.device.startswith("cuda"):
        return False
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
        raise LpbenchError("the sweep asks for device cuda, but no dask worker declares the resource "
                           "GPU (start GPU workers with: dask worker ADDRESS --resources GPU=1)")
    return True


def _execute(client, spec: SweepSpec, jobs: list[_Job], gpu: bool, report: SweepReport
             ) -> Iterator[tuple[_Job, list[Outcome], dict]]:
    """Submit the jobs and yield (job, outcomes, worker info) as they complete. At most
    ``in_flight`` jobs are on the cluster at once (a new one for each that completes), so
    results flow to the store from the start and the scheduler never holds the whole sweep."""
    from distributed import as_completed

    layouts = _layouts(client, spec, jobs)
    in_flight = max(64, 16 * max(1, len(client.scheduler_info().get("workers", {}))))
    waiting = iter(jobs)
    running: dict[str, tuple[_Job, list]] = {}  # future key -> (job, futures its chain keeps alive)
    done = as_completed()

    def submit_next() -> list[tuple[_Job, list[Outcome], dict]]:
        """Submit the next job; jobs that fail before submission are returned as errors."""
        for job in waiting:
            layout = layouts.get((job.model, spec.lp_chunk)) if _chained(spec, job.method) else None
            if isinstance(layout, BaseException):
                return [(job, _errors(job, layout), {})]
            futures = _submit(client, spec, job, layout, gpu)
            report.tasks += len(futures)
            running[futures[0].key] = (job, futures)
            done.add(futures[0])
            return []
        return []

    for _ in range(in_flight):
        yield from submit_next()
    for fut in done:
        job, _ = running.pop(fut.key)
        if fut.status == "finished":
            outcomes, where = fut.result()
        else:
            outcomes, where = _errors(job, fut.exception()), {}
        fut.release()
        yield job, outcomes, where
        while True:  # refill; a job that fails before submission is reported at once
            failed = submit_next()
            yield from failed
            if not failed:
                break


def _submit(client, spec: SweepSpec, job: _Job, layout: list | None, gpu: bool) -> list:
    """Submit one job's tasks; the future of its outcomes first, then those it depends on."""
    from lpbench.methods import get_method
    opts = _options(spec, job.method)
    if spec.instances:
        return [client.submit(tasks.instance, spec.instances, job.ids[0], job.method, opts, pure=False)]
    if layout is not None:
        fut, chain = _submit_lp_all(client, spec, job, layout, opts.get("lp-all", {}))
        return [fut, *chain]
    torch_task = get_method(job.method).kind in TORCH_KINDS
    from lpbench.plugins import shipped
    return [client.submit(tasks.block, job.model, job.data, job.eps, spec.norm, job.method, list(job.ids), opts,
                          spec.device if torch_task else "cpu", shipped(job.method), pure=False,
                          resources={"GPU": 1} if (gpu and torch_task) else None)]


def _layouts(client, spec: SweepSpec, jobs: list[_Job]) -> dict[tuple[str, int], Any]:
    """The LP-ALL slice layout of each model with chained jobs, computed on the workers (the
    client need not load weights) before anything else is queued; an exception in place of the
    layout of a model whose task failed (e.g. a weight file failing its checksum)."""
    models = sorted({j.model for j in jobs if _chained(spec, j.method)})
    futures = {m: client.submit(tasks.lp_layout, m, spec.lp_chunk, pure=False) for m in models}
    out: dict[tuple[str, int], Any] = {}
    for m, fut in futures.items():
        try:
            out[(m, spec.lp_chunk)] = fut.result()
        except Exception as e:  # noqa: BLE001  (recorded as the error of that model's LP-ALL outcomes)
            out[(m, spec.lp_chunk)] = e
    return out


def _options(spec: SweepSpec, method: str) -> dict[str, Any]:
    """The options a method's tasks get: its own and PGD's (run first by the MILP and cascades)."""
    return {k: v for k, v in spec.options.items() if k in (method, "pgd")}


def _submit_lp_all(client, spec: SweepSpec, job: _Job, layout: list, lp_opts: dict[str, Any]):
    (sample,) = job.ids
    args = (job.model, job.data, job.eps, spec.norm, sample)
    state = client.submit(tasks.lp_start, *args, pure=False)
    chain = [state]
    for layer, spans in layout:
        slices = [client.submit(tasks.lp_slice, *args, state, layer, span, lp_opts, pure=False) for span in spans]
        state = client.submit(tasks.lp_merge, state, layer, *slices, pure=False)
        chain += [*slices, state]
    return client.submit(tasks.lp_finish, *args, state, lp_opts, pure=False), chain


def _errors(job: _Job, exc: BaseException | None) -> list[Outcome]:
    msg = f"{type(exc).__name__}: {exc}" if exc is not None else "task failed"
    return [Outcome(job.method, i, y, Status.ERROR, None, None, None, 0.0, {"error": msg})
            for i, y in zip(job.ids, job.labels)]


def cancel(client, futures) -> None:
    """Cancel ``futures`` and restart the workers that run them: a task inside compiled code (a
    MILP in the solver) stops only with its process. A worker without a nanny cannot restart and
    runs its task to the end; the result is dropped."""
    if futures:
        keys = {f.key for f in futures}
        workers = sorted({w for w, ts in client.processing().items() for t in ts if t in keys})
        client.cancel(futures)
        if workers:
            client.restart_workers(workers, raise_for_error=False)
