"""Snakemake executor plugin for Dask distributed: ``snakemake --executor dask``.

Each Snakemake job (a group job included) becomes one Dask task that runs the job's own
``snakemake`` command in a subprocess on a worker. Where the workers come from is a
setting: a running scheduler (``--dask-scheduler tcp://host:8786``), a ``LocalCluster``
started here (the default), or a dask-jobqueue ``SLURMCluster`` that scales adaptively
(``--dask-cluster slurm``).

Tasks ask for the job's threads, memory and gpus as Dask worker resources (``cpus``,
``mem_mb``, ``gpu``), so a worker never runs more than it has. A job no worker can hold
fails at once with a message instead of waiting forever. A worker lost mid-job fails the
job (Snakemake's ``--retries`` may resubmit it, with more memory and time); its
subprocess dies with it, so nothing keeps writing outputs that Snakemake has removed.
Ctrl-C cancels the tasks and stops their subprocesses.
"""

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import (
    CommonSettings,
    ExecutorSettingsBase,
)

from .cluster import Engine, start_engine
from .task import LOG_TAIL, run_job_command, tail

__all__ = ["Executor", "ExecutorSettings", "common_settings"]


def _help(text: str) -> dict[str, Any]:
    return {"help": text, "env_var": False, "required": False}


# Real (not postponed) annotations: Snakemake builds the --dask-* options from them.
@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    """Command-line settings, all prefixed ``--dask-``."""

    scheduler: Optional[str] = field(
        default=None,
        metadata=_help("Address of a running scheduler (tcp://host:8786); no cluster is started."),
    )
    cluster: str = field(
        default="local",
        metadata=_help("Cluster to start when no scheduler is given: 'local' or 'slurm'."),
    )
    workers: Optional[int] = field(
        default=None,
        metadata=_help(
            "local: number of workers (default 1); slurm: the most Slurm jobs adaptive "
            "scaling may hold (default: --jobs)."
        ),
    )
    worker_cores: Optional[int] = field(
        default=None,
        metadata=_help("Cores of each worker (local default: --cores / workers)."),
    )
    worker_memory_mb: Optional[int] = field(
        default=None,
        metadata=_help("Memory of each worker in MB (local default: the machine's / workers)."),
    )
    worker_gpus: int = field(
        default=0,
        metadata=_help("GPUs of each worker, offered as the 'gpu' resource."),
    )
    slurm_queue: Optional[str] = field(
        default=None, metadata=_help("slurm: partition of the worker jobs.")
    )
    slurm_account: Optional[str] = field(
        default=None, metadata=_help("slurm: account of the worker jobs.")
    )
    slurm_walltime: str = field(
        default="01:00:00", metadata=_help("slurm: time limit of each worker job.")
    )
    slurm_minimum: int = field(
        default=0, metadata=_help("slurm: the fewest worker jobs adaptive scaling keeps.")
    )
    logdir: Path = field(
        default=Path(".snakemake/dask_logs"),
        metadata=_help("Folder of the per-job logs (and of SLURMCluster's job logs)."),
    )


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
    # Status lives in this process (futures), so checking it costs nothing.
    init_seconds_before_status_checks=0,
)


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        settings: ExecutorSettings = self.workflow.executor_settings
        self.run_id = uuid.uuid4().hex[:12]
        self._job_cores: Optional[int] = None
        self.logdir = Path(settings.logdir).resolve()
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = start_engine(
            settings,
            cores=self.workflow.resource_settings.cores,
            jobs=self.workflow.resource_settings.nodes,
            logdir=self.logdir,
        )
        self.logger.info(f"Dask: {self.engine.describe()}; run {self.run_id}")

    @property
    def cores(self) -> int | str:
        # While a job's command is formatted: the cores its task reserves on the worker,
        # not the worker's whole size.
        return self._job_cores or super().cores

    def format_job_exec(self, job: JobExecutorInterface) -> str:
        self._job_cores = max(1, int(job.threads))
        try:
            return super().format_job_exec(job)
        finally:
            self._job_cores = None

    def _task_resources(self, job: JobExecutorInterface) -> dict[str, float]:
        wanted = {
            "cpus": max(1, int(job.threads)),
            "mem_mb": int(job.resources.get("mem_mb", 0) or 0),
            "gpu": int(job.resources.get("gpu", 0) or 0),
        }
        wanted = {k: v for k, v in wanted.items() if v}
        too_big = self.engine.unsatisfiable(wanted)
        if too_big:
            raise WorkflowError(
                f"job {job.name} needs {too_big}, more than any Dask worker offers "
                f"({self.engine.worker_resources}); raise the worker size or lower the "
                "rule's resources"
            )
        return wanted

    def run_job(self, job: JobExecutorInterface) -> None:
        key = f"snakemake-{job.name}-{job.jobid}-a{job.attempt}-{self.run_id}"
        log = self.logdir / f"{key}.log"
        try:
            resources = self._task_resources(job)
        except WorkflowError as exc:
            self._fail(SubmittedJobInfo(job), str(exc))
            return
        future = self.engine.client.submit(
            run_job_command,
            self.format_job_exec(job),
            str(log),
            key,
            self.engine.cancel_event,
            key=key,
            resources=resources,
            pure=False,
            retries=0,  # Snakemake's --retries decides, with its own resource growth
        )
        self.logger.info(f"Job {job.jobid} submitted as Dask task {key} (log: {log})")
        self.report_job_submission(
            SubmittedJobInfo(job, external_jobid=key, aux={"future": future, "log": log})
        )

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        for info in active_jobs:
            async with self.status_rate_limiter:
                future = info.aux["future"]
                if not future.done():
                    yield info
                    continue
                log = info.aux["log"]
                if future.status == "finished":
                    code = future.result()
                    if code == 0:
                        self.report_job_success(info)
                    else:
                        self._fail(
                            info,
                            msg=f"Dask task {info.external_jobid} exited with code {code} "
                            f"(log: {log}):\n{tail(log, LOG_TAIL)}\n",
                        )
                elif future.status == "cancelled":
                    self._fail(info, msg=f"Dask task {info.external_jobid} was cancelled. ")
                else:
                    exc = future.exception()
                    self._fail(
                        info,
                        msg=f"Dask task {info.external_jobid} failed: "
                        f"{type(exc).__name__}: {exc} (log: {log}). ",
                    )

    def _fail(self, info: SubmittedJobInfo, msg: str) -> None:
        # Snakemake shows a group job's error without the message: say it here as well.
        self.logger.error(msg)
        self.report_job_error(info, msg=msg)

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        # The event stops running subprocesses; cancel() drops the ones still queued.
        self.engine.cancel([info.aux["future"] for info in active_jobs if info.aux])

    def shutdown(self) -> None:
        super().shutdown()
        self.engine.close()
