"""Where the Dask workers come from: a running scheduler, a LocalCluster or a SLURMCluster."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import psutil
from distributed import Client, Event, Future, LocalCluster

__all__ = ["Engine", "start_engine"]

# Seconds Ctrl-C waits for running jobs to stop before their tasks are dropped.
CANCEL_WAIT = 15
CLOSE_TIMEOUT = 30


@dataclass
class Engine:
    client: Client
    kind: str
    worker_resources: dict[str, float]
    cluster: Any = None
    cancel_event: str = field(default_factory=lambda: f"snakemake-cancel-{uuid.uuid4().hex}")

    def describe(self) -> str:
        where = self.client.scheduler.address if self.client.scheduler else "?"
        return f"{self.kind} (scheduler {where}; worker resources {self.worker_resources})"

    def unsatisfiable(self, wanted: dict[str, float]) -> dict[str, float]:
        """The part of a request no worker can hold (empty when nothing is known yet)."""
        offered = self.worker_resources or self._live_resources()
        if not offered:
            return {}
        return {k: v for k, v in wanted.items() if v > offered.get(k, 0)}

    def _live_resources(self) -> dict[str, float]:
        best: dict[str, float] = {}
        for worker in self.client.scheduler_info(n_workers=-1).get("workers", {}).values():
            for k, v in (worker.get("resources") or {}).items():
                best[k] = max(best.get(k, 0), v)
        return best

    def cancel(self, futures: list[Future]) -> None:
        Event(self.cancel_event, client=self.client).set()
        deadline = time.monotonic() + CANCEL_WAIT
        while any(not f.done() for f in futures):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.client.cancel(futures, force=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=CLOSE_TIMEOUT)
        if self.cluster is not None:
            # SLURMCluster.close() scancels its worker jobs.
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=CLOSE_TIMEOUT)


def _resources(cores: int, memory_mb: int, gpus: int) -> dict[str, float]:
    out: dict[str, float] = {"cpus": cores, "mem_mb": memory_mb}
    if gpus:
        out["gpu"] = gpus
    return out


def start_engine(settings: Any, cores: int | None, jobs: int | None, logdir: Path) -> Engine:
    """Connect to or start the cluster the settings name."""
    if settings.scheduler:
        client = Client(settings.scheduler, timeout="30s")
        return Engine(client, "scheduler", {})
    # A worker lost mid-job fails that job at once: Snakemake, not Dask, decides on a retry
    # (and asks for more memory and time), and the job is never run twice concurrently.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    if settings.cluster == "local":
        return _local(settings, cores)
    if settings.cluster == "slurm":
        return _slurm(settings, jobs, logdir)
    raise ValueError(f"--dask-cluster must be 'local' or 'slurm', not {settings.cluster!r}")


def _local(settings: Any, cores: int | None) -> Engine:
    workers = settings.workers or 1
    total = cores if cores and cores < sys.maxsize else (os.cpu_count() or 1)
    per_worker = settings.worker_cores or max(1, total // workers)
    memory = settings.worker_memory_mb or psutil.virtual_memory().total // 2**20 // workers
    resources = _resources(per_worker, memory, settings.worker_gpus)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=per_worker,
        processes=True,
        memory_limit=f"{memory}MB",
        resources=resources,
        dashboard_address=None,
        silence_logs=40,
    )
    return Engine(Client(cluster), f"LocalCluster of {workers} worker(s)", resources, cluster)


def _slurm(settings: Any, jobs: int | None, logdir: Path) -> Engine:
    from dask_jobqueue import SLURMCluster

    per_worker = settings.worker_cores or 1
    memory = settings.worker_memory_mb or 4000
    resources = _resources(per_worker, memory, settings.worker_gpus)
    spec = ",".join(f"{k}={v}" for k, v in resources.items())
    extra = [f"--gres=gpu:{settings.worker_gpus}"] if settings.worker_gpus else []
    slurm_logs = logdir / "slurm"
    slurm_logs.mkdir(parents=True, exist_ok=True)
    cluster = SLURMCluster(
        cores=per_worker,
        processes=1,
        memory=f"{memory}MB",
        queue=settings.slurm_queue,
        account=settings.slurm_account,
        walltime=settings.slurm_walltime,
        job_name="snakemake-dask",
        log_directory=str(slurm_logs),
        python=sys.executable,
        worker_extra_args=["--resources", spec],
        job_extra_directives=extra,
        dashboard_address=None,
    )
    maximum = settings.workers or jobs or 1
    cluster.adapt(minimum=settings.slurm_minimum, maximum=maximum)
    kind = f"SLURMCluster, adaptive {settings.slurm_minimum}-{maximum} job(s)"
    return Engine(Client(cluster), kind, resources, cluster)
