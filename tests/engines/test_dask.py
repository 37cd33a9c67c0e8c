"""The demo workflow through the Dask executor plugin: LocalCluster, a scheduler, SLURMCluster."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.workflow.helpers import REPO, tree_digest

from .conftest import (
    DASK_TASK,
    RUN_TIMEOUT,
    expected_jobs,
    ok,
    run_engine,
    session_results,
)

pytestmark = [pytest.mark.slow, pytest.mark.engines]
DASK = str(Path(sys.executable).with_name("dask"))
START_TIMEOUT = 60


def _profile(logs: Path) -> list[str]:
    return ["--profile", "profiles/dask", "--dask-logdir", str(logs)]


def _tasks(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return DASK_TASK.findall(proc.stdout + proc.stderr)


def _guards() -> list[psutil.Process]:
    """Job subprocesses (their guards) still alive on this machine."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(part.endswith("snakemake_executor_plugin_dask/guard.py") for part in cmd):
            found.append(p)
    return found


def _wait_for(predicate, what: str, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _assert_task_logs(proc, logs: Path) -> None:
    tasks = _tasks(proc)
    assert len(tasks) == expected_jobs("dask")  # a session's rules ran as one task
    for key in tasks:
        text = (logs / f"{key}.log").read_text()
        assert text.startswith(f"dask task {key} on worker tcp://")
        assert "Finished jobid" in text and text.rstrip().endswith(f"{key} exit code 0")


def test_local_cluster_run_matches_local(
    engine_inbox: Path, key_file: Path, local_reference, tmp_path: Path
) -> None:
    logs = tmp_path / "dask-logs"
    proc = ok(run_engine(engine_inbox, tmp_path / "out", key_file, *_profile(logs)))
    assert "Dask: LocalCluster of 1 worker(s)" in proc.stdout + proc.stderr
    assert tree_digest(tmp_path / "out") == local_reference
    _assert_task_logs(proc, logs)
    assert _guards() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture
def scheduler() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A Dask scheduler on a free loopback port; the test starts its own workers."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    # As the plugin's own clusters do: a lost worker fails the task, Snakemake retries.
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    procs = [_spawn(DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                    "--no-dashboard", env=env)]  # fmt: skip
    yield address, procs
    for proc in procs:
        _stop(proc)


def _worker(address: str) -> subprocess.Popen[bytes]:
    return _spawn(DASK, "worker", address, "--no-nanny", "--nthreads", "2", "--no-dashboard",
                  "--resources", "cpus=2,mem_mb=8000")  # fmt: skip


def test_worker_lost_mid_job_fails_the_job_cleanly_and_a_retry_completes(
    scheduler, engine_inbox: Path, key_file: Path, local_reference, tmp_path: Path
) -> None:
    address, procs = scheduler
    first = _worker(address)
    procs.append(first)
    logs, out = tmp_path / "dask-logs", tmp_path / "out"
    cmd = [sys.executable, "-m", "snakemake", *_profile(logs), "--dask-scheduler", address,
           "--retries", "1", "--config", f"inbox={engine_inbox}", f"output={out}",
           f"key_file={key_file}", "archive="]  # fmt: skip
    run = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: bool(_guards()), "a job to start on the worker")
        victims = [p.pid for p in _guards()]
        first.kill()  # the worker is lost with the job half done
        first.wait(timeout=30)
        # The job's processes die with their worker: nothing writes on behind Snakemake.
        _wait_for(lambda: not any(psutil.pid_exists(p) for p in victims), "guards to stop", 30)
        procs.append(_worker(address))
        output, _ = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        _stop(run)
    assert run.returncode == 0, output[-6000:]
    lost = output.count("failed: KilledWorker")  # the loss is named, once per job it took
    assert lost >= 1, output[-4000:]
    assert len(DASK_TASK.findall(output)) == expected_jobs("dask") + lost  # each ran once more
    assert tree_digest(out) == local_reference


def test_ctrl_c_cancels_running_jobs_and_leaves_no_result(
    engine_inbox: Path, key_file: Path, tmp_path: Path
) -> None:
    logs, out = tmp_path / "dask-logs", tmp_path / "out"
    cmd = [sys.executable, "-m", "snakemake", *_profile(logs), "--config", f"inbox={engine_inbox}",
           f"output={out}", f"key_file={key_file}", "archive="]  # fmt: skip
    run = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: bool(_guards()), "a job to start")
        victims = [p.pid for p in _guards()]
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=START_TIMEOUT)
    finally:
        _stop(run)
    assert run.returncode != 0
    assert not any(psutil.pid_exists(p) for p in victims)
    assert session_results(out) == []
    assert "Dask task" in output


def test_slurm_cluster_run_matches_local(
    slurm, engine_inbox: Path, key_file: Path, local_reference, tmp_path: Path, slurm_cleanup
) -> None:
    logs = tmp_path / "dask-logs"
    proc = run_engine(
        engine_inbox, tmp_path / "out", key_file, *_profile(logs), "--dask-cluster", "slurm",
        "--dask-worker-cores", "2", "--dask-worker-memory-mb", "4000", "--dask-workers", "1",
        "--dask-slurm-walltime", "00:15:00",
    )  # fmt: skip
    slurm_cleanup.append(proc.stderr)
    ok(proc)
    assert "Dask: SLURMCluster, adaptive 0-1 job(s)" in proc.stdout + proc.stderr
    assert tree_digest(tmp_path / "out") == local_reference
    _assert_task_logs(proc, logs)
    # The workers were Slurm jobs: dask-jobqueue names their logs by Slurm job ID.
    worker_logs = list((logs / "slurm").glob("snakemake-dask-*.err"))
    assert worker_logs, "no Slurm worker job log"


def test_job_bigger_than_any_worker_fails_at_once_with_the_reason(
    engine_inbox: Path, key_file: Path, tmp_path: Path
) -> None:
    logs, out = tmp_path / "dask-logs", tmp_path / "out"
    # convert_session asks for 2 threads; a 1-core worker could never run it.
    proc = run_engine(engine_inbox, out, key_file, *_profile(logs), "--dask-worker-cores", "1")
    assert proc.returncode != 0
    assert "needs {'cpus': 2}, more than any Dask worker offers" in proc.stdout + proc.stderr
    assert session_results(out) == []
