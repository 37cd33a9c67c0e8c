"""The demo workflow on real engines: the local one-node Slurm and Dask clusters.

Two synthetic patients made from real Siemens mosaics give two sessions; a local run of
that inbox is the reference every engine run must reproduce byte for byte.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from passerelle.synth import build_synthetic_inbox
from tests.conftest import IN_CI
from tests.workflow.helpers import REPO, tree_digest

SOURCE = "ge_siemens_epi/In/20180918Si"
SESSIONS = 2
# Every subprocess has a limit: a cluster that never answers must fail the test, not hang.
RUN_TIMEOUT = 240
CMD_TIMEOUT = 30
# Status checks every second: the defaults (tens of seconds) suit big clusters, not tests.
FAST_STATUS = [
    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
]  # fmt: skip
SLURM_JOB = re.compile(r"submitted with SLURM jobid (\d+)")
SLURM_RUN = re.compile(r"SLURM run ID: (\S+)")
DASK_TASK = re.compile(r"submitted as Dask task (snakemake-\S+)")


def sessions_per_job(profile: str) -> int:
    """N of the profile's `group-components: session=N`."""
    import yaml

    spec = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    (entry,) = [g for g in spec["group-components"] if g.startswith("session=")]
    return int(entry.split("=", 1)[1])


def expected_jobs(profile: str) -> int:
    return math.ceil(SESSIONS / sessions_per_job(profile))


def command(*args: str, timeout: int = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def slurm_ready() -> str | None:
    """Why Slurm cannot be used here, or None when the local node is up."""
    if shutil.which("sbatch") is None:
        return "sbatch not found (run scripts/local_slurm.sh as root)"
    try:
        state = command("sinfo", "-h", "-o", "%T").stdout.split()
    except subprocess.TimeoutExpired:
        return "sinfo did not answer"
    if not {"idle", "mixed", "allocated"} & set(state):
        return f"no Slurm node is up (sinfo: {state or 'nothing'}; run scripts/local_slurm.sh)"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    reason = slurm_ready()
    if reason:
        if IN_CI:  # CI starts Slurm itself (.ci/run): a missing cluster is a failure there
            pytest.fail(f"Slurm unavailable under CI: {reason}")
        pytest.skip(reason)


def run_engine(
    inbox: Path, output: Path, key_file: Path, *args: str, config: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the workflow as a user would; on timeout its whole process group is killed."""
    cmd = [
        sys.executable, "-m", "snakemake", *args, "--config", f"inbox={inbox}",
        f"output={output}", f"key_file={key_file}", "archive=", *config,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"workflow ran past {RUN_TIMEOUT}s:\n{err[-4000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if proc.returncode != 0:
        raise AssertionError(f"workflow failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def cancel_slurm(*logs: str) -> None:
    """scancel every job a run submitted (by its run ID) and any Dask worker job."""
    names = {m for log in logs for m in SLURM_RUN.findall(log)} | {"snakemake-dask"}
    for name in names:
        command("scancel", f"--name={name}")


@pytest.fixture(scope="session")
def engine_inbox(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    inbox = tmp_path_factory.mktemp("engines") / "inbox"
    counts = build_synthetic_inbox([testdata / SOURCE], inbox, SESSIONS, 1)
    assert counts["sessions"] == SESSIONS
    return inbox


@pytest.fixture(scope="session")
def local_reference(engine_inbox: Path, key_file: Path) -> dict[str, str]:
    """Digest of every published file of a plain local run."""
    out = engine_inbox.parent / "local"
    ok(run_engine(engine_inbox, out, key_file, "--cores", "2"))
    digest = tree_digest(out)
    assert len([p for p in digest if p.endswith(".nii.gz")]) >= SESSIONS
    return digest


def session_results(output: Path) -> list[str]:
    """The per-session results finalize trusts as finished (work area beside the output)."""
    from tests.workflow.helpers import work

    return sorted(p.name for p in (work(output) / "results").glob("*.json"))


@pytest.fixture
def slurm_cleanup() -> Iterator[list[str]]:
    """Tests append their runs' logs; every Slurm job they named is cancelled afterwards."""
    logs: list[str] = []
    yield logs
    cancel_slurm(*logs)
