"""Run the workflow's archive step by hand, as a person (or a killed job) would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.workflow.helpers import REPO

from .conftest import History, effective_config, last_run_id


def archive_step(history: History, archive: Path, done: Path, *sets: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "passerelle",
        "archive",
        "--config",
        str(effective_config(history)),
        "--run-id",
        last_run_id(history),
        "--done",
        str(done),
        "--set",
        f"archive={archive}",
    ]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def start(cmd: list[str]) -> subprocess.Popen[str]:
    # A session of its own, so a kill takes git and git-annex down with it, as Slurm or the
    # OOM killer would.
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def passerelle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passerelle", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
