"""Deliveries arrive over time: only new studies run, and no existing label moves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers import jobs_run, run_workflow, tree_digest

pytestmark = pytest.mark.slow


def test_new_study_of_same_patient_runs_alone(testdata: Path, key_file: Path, tmp_path: Path):
    epi = testdata / "ge_siemens_epi" / "In"
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    os.symlink(epi / "20180918GE", inbox / "delivery-1")
    first = run_workflow(inbox, out, key_file)
    assert jobs_run(first, "convert_session") == 1
    subjects = sorted(p.name for p in (out / "bids").glob("sub-*"))
    sessions_before = sorted(p.name for p in (out / "bids").glob("sub-*/ses-*"))
    before = tree_digest(out / "bids" / subjects[0] / sessions_before[0].split("/")[-1])
    stamp = {p: p.stat().st_mtime_ns for p in (out / "bids").rglob("*.nii.gz")}

    # A month later the same patient (PatientID DEV) comes back for another study.
    os.symlink(epi / "20180918Si", inbox / "delivery-2")
    second = run_workflow(inbox, out, key_file)
    assert jobs_run(second, "convert_session") == 1
    n_new = sum(1 for p in (epi / "20180918Si").rglob("*") if p.is_file())
    assert f"{n_new} new or changed file(s) read" in second.stderr
    assert sorted(p.name for p in (out / "bids").glob("sub-*")) == subjects
    sessions_after = sorted(p.name for p in (out / "bids").glob("sub-*/ses-*"))
    assert len(sessions_after) == 2 and set(sessions_before) < set(sessions_after)
    assert tree_digest(out / "bids" / subjects[0] / sessions_before[0]) == before
    assert all(p.stat().st_mtime_ns == m for p, m in stamp.items())

    third = run_workflow(inbox, out, key_file)
    assert jobs_run(third, "convert_session") == 0
    assert "Nothing to be done" in third.stdout + third.stderr
