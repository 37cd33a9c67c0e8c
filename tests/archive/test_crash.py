"""SIGKILL at any moment of a save: after `passerelle recover` the archive is at its previous
version (or at the finished new one), clean, and the next run completes the version."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from .conftest import ENV, git, tags
from .steps import archive_step, passerelle, start

pytestmark = pytest.mark.slow

# (progress line to wait for, seconds after it): before the work tree is touched, while
# files move in, inside `datalad save`, and late in the save.
POINTS = [("staged", 0.0), ("moving", 0.0), ("saving version", 0.2), ("saving version", 0.5)]


def _kill_at(proc: subprocess.Popen[str], marker: str, delay: float) -> list[str]:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            # Already finished? Then the archive must hold the new version.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    return seen


def _annexed_session_files(archive) -> dict[str, str]:
    out = git(archive, "ls-tree", "-r", "HEAD", "--", "sub-*", "sourcedata")
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


@pytest.mark.parametrize(("marker", "delay"), POINTS)
def test_kill_then_recover(history, fresh_copy, tmp_path, marker, delay):
    archive = fresh_copy()
    (v1,) = tags(archive)
    v1_commit = git(archive, "rev-parse", f"{v1}^{{commit}}")
    proc = start(archive_step(history, archive, tmp_path / "done"))
    seen = _kill_at(proc, marker, delay)
    assert proc.returncode in (-signal.SIGKILL, 0), "".join(seen)

    recovered = passerelle("recover", "--archive", str(archive))
    assert recovered.returncode == 0, recovered.stderr
    assert git(archive, "status", "--porcelain") == ""
    if tags(archive) == [v1]:
        assert git(archive, "rev-parse", "HEAD") == v1_commit
        assert "rolled back" in recovered.stdout or "nothing to recover" in recovered.stdout
    else:
        assert len(tags(archive)) == 2  # it had finished just before the kill
    fsck = subprocess.run(
        ["git", "-C", str(archive), "annex", "fsck", "--fast", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr

    # The next run makes the version, with the same content as the uninterrupted archive.
    again = subprocess.run(
        archive_step(history, archive, tmp_path / "done"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(tags(archive)) == 2
    assert _annexed_session_files(archive) == _annexed_session_files(history.archive)


def test_next_run_recovers_by_itself(history, fresh_copy, tmp_path):
    archive = fresh_copy()
    proc = start(archive_step(history, archive, tmp_path / "done"))
    _kill_at(proc, "moving", 0.0)
    assert (archive / ".git" / "passerelle" / "transaction.json").is_file()  # left unfinished
    again = subprocess.run(
        archive_step(history, archive, tmp_path / "done"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rolled back to the previous version" in again.stdout
    assert len(tags(archive)) == 2 and git(archive, "status", "--porcelain") == ""
