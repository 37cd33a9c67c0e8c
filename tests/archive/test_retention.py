"""Retention: expired deliveries are listed, and removed as a new version when asked."""

from __future__ import annotations

import subprocess

import pytest

from passerelle.archive import ledger

from .conftest import copy_archive, effective_config, git, tags
from .steps import archive_step, passerelle

pytestmark = pytest.mark.slow


def _retention(history, archive, *args):
    return passerelle(
        "retention",
        "--config",
        str(effective_config(history)),
        "--set",
        f"archive={archive}",
        *args,
    )


def test_expired_delivery_is_listed_then_removed(history, contributed, tmp_path):
    archive = copy_archive(contributed, tmp_path / "archive")
    rows = ledger.load(archive)
    cohort = {(r.subject, r.session) for r in rows.values() if r.delivery == "cohort-a"}
    assert len(cohort) == 1
    (sub, ses) = cohort.pop()

    assert _retention(history, archive, "--today", "2029-12-31").stdout.strip() == (
        "0 expired on 2029-12-31"
    )
    listing = _retention(history, archive, "--today", "2030-06-01")
    assert listing.returncode == 0, listing.stderr
    expired = [line for line in listing.stdout.splitlines() if line.startswith("expired:")]
    # The raw session, its DICOM and the outside work made from it.
    assert sorted(line.split("\t")[0] for line in expired) == [
        "expired: .",
        "expired: derivatives/lab-lesion-masks",
        "expired: sourcedata/dicom",
    ]
    before = tags(archive)
    assert len(tags(archive)) == len(before)  # listing changes nothing

    applied = _retention(history, archive, "--today", "2030-06-01", "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert len(tags(archive)) == len(before) + 1
    head = git(archive, "ls-files")
    assert (
        f"sub-{sub}/" not in head
        and f"sub-{sub}\t" not in (archive / "participants.tsv").read_text()
    )
    # History keeps the record; the annexed content is gone.
    old = git(archive, "ls-tree", "-r", "--name-only", before[-1])
    mine = [
        p
        for p in old.splitlines()
        if f"sub-{sub}/ses-{ses}/" in p and p.endswith((".nii.gz", ".dcm"))
    ]
    keys = {git(archive, "show", f"{before[-1]}:{p}").strip().rsplit("/", 1)[-1] for p in mine}
    kept = set(git(archive, "annex", "find", "--format=${key}\\n").split())
    # Content identical to a file that stays (same voxels in another session) is kept.
    dropped = keys - kept
    assert dropped and all(k.startswith("SHA256E-") for k in keys)
    objects = archive / ".git" / "annex" / "objects"
    assert not [p for k in dropped for p in objects.rglob(k) if p.is_file()]
    removed = [r for r in ledger.load(archive).values() if r.removed]
    assert {r.dataset for r in removed} == {".", "sourcedata/dicom", "derivatives/lab-lesion-masks"}

    # A later run over the same outputs does not bring the session back.
    again = subprocess.run(
        archive_step(history, archive, tmp_path / "done"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no new version" in again.stdout
    assert f"sub-{sub}/" not in git(archive, "ls-files")
