"""A second writer while one is active waits with a message, or exits with a clear one; two
writers at once never interleave."""

from __future__ import annotations

import subprocess

import pytest

from passerelle.archive.lock import archive_lock

from .conftest import git, tags
from .steps import archive_step, start

pytestmark = pytest.mark.slow


def test_busy_archive_fails_clearly_without_waiting(history, fresh_copy, tmp_path):
    archive = fresh_copy()
    with archive_lock(archive):
        proc = subprocess.run(
            archive_step(history, archive, tmp_path / "done", "archiving.lock_wait=0"),
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "is busy: held by pid" in line and "not interleaving" in line
    assert len(tags(archive)) == 1 and not (tmp_path / "done").exists()


def test_second_writer_waits_then_saves(history, fresh_copy, tmp_path):
    archive = fresh_copy()
    with archive_lock(archive):
        proc = start(archive_step(history, archive, tmp_path / "done", "archiving.lock_wait=60"))
        first = proc.stdout.readline()
        assert "is busy" in first and "waiting up to 60 s" in first
        assert len(tags(archive)) == 1  # nothing written while the lock is held
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert len(tags(archive)) == 2


def test_two_writers_at_once_make_one_version(history, fresh_copy, tmp_path):
    archive = fresh_copy()
    procs = [start(archive_step(history, archive, tmp_path / f"done{i}")) for i in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # Same change from both: one makes the version, the other then finds nothing new.
    assert len(tags(archive)) == 2
    assert sum("no new version" in o for o in outs) == 1, outs
    assert git(archive, "status", "--porcelain") == ""
    assert len(git(archive, "log", "--format=%H", f"{tags(archive)[0]}..HEAD").split()) == 1
