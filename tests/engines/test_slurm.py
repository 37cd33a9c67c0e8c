"""The demo workflow through the real local Slurm: same outputs, at most one job per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflow.helpers import tree_digest

from .conftest import (
    FAST_STATUS,
    SESSIONS,
    SLURM_JOB,
    command,
    expected_jobs,
    ok,
    run_engine,
    session_results,
)

pytestmark = [pytest.mark.slow, pytest.mark.engines]
PROFILE = ["--profile", "profiles/slurm", *FAST_STATUS]
# Far below what a session job really needs (~160 MB; the job's Python alone passes 50 MB
# within Slurm's first one-second poll), so the first attempt is killed however fast the
# machine; later attempts get 500 MB more each. One session per job, so that the job asks
# for exactly this (a bundle adds its sessions up).
# Every rule of the session group is starved: the group asks for the most any one needs.
SESSION_RULES = ("pseudonymise_session", "convert_session", "deface_session",
                 "segment_session", "derivatives_session")  # fmt: skip
STARVED = ["--group-components", "session=1", "--set-resources",
           *(f"{rule}:mem_mb=50+500*(attempt-1)" for rule in SESSION_RULES)]  # fmt: skip


def _jobs(proc) -> list[str]:
    return SLURM_JOB.findall(proc.stdout + proc.stderr)


def test_slurm_run_matches_local_with_at_most_one_job_per_session(
    slurm, engine_inbox: Path, key_file: Path, local_reference, tmp_path: Path, slurm_cleanup
) -> None:
    logs = tmp_path / "slurm-logs"
    out = tmp_path / "out"
    proc = run_engine(engine_inbox, out, key_file, *PROFILE, "--slurm-logdir", str(logs))
    slurm_cleanup.append(proc.stderr)
    ok(proc)
    assert tree_digest(out) == local_reference
    jobs = _jobs(proc)
    # Both rules of a session, and up to N sessions, ran inside one Slurm job.
    assert len(jobs) == expected_jobs("slurm") <= SESSIONS
    # Each job really ran under Slurm: its log is named by its ID and Slurm remembers it.
    for job in jobs:
        (log,) = logs.rglob(f"{job}.log")
        assert "Finished jobid" in log.read_text()
        state = command("squeue", "-h", "-t", "all", "-j", job, "-o", "%T").stdout.strip()
        assert state == "COMPLETED"


def test_job_killed_for_memory_leaves_nothing_then_retry_with_more_memory_completes(
    slurm, engine_inbox: Path, key_file: Path, local_reference, tmp_path: Path, slurm_cleanup
) -> None:
    out = tmp_path / "out"
    logs = tmp_path / "slurm-logs"
    starved = run_engine(
        engine_inbox, out, key_file, *PROFILE, *STARVED, "--retries", "0",
        "--slurm-logdir", str(logs),
    )  # fmt: skip
    slurm_cleanup.append(starved.stderr)
    assert starved.returncode != 0
    assert "exceeded memory limit" in starved.stderr  # the reason reaches the user
    assert session_results(out) == []  # nothing a later run could take for finished
    assert not list(out.glob("bids/sub-*"))

    # Same starved start, but retries allowed: each attempt asks for 500 MB more.
    retried = run_engine(
        engine_inbox, out, key_file, *PROFILE, *STARVED, "--retries", "2",
        "--slurm-logdir", str(logs),
    )  # fmt: skip
    slurm_cleanup.append(retried.stderr)
    ok(retried)
    assert len(_jobs(retried)) > SESSIONS  # the killed attempts were resubmitted
    assert tree_digest(out) == local_reference
