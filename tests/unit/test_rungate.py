"""The run-level PHI gate: a patient's shifted dates that happen to equal another patient's
real date are no leak; a real date in the wrong place, or in its own patient's files, is."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from passerelle.deid.gate import Watchlist
from passerelle.finalize import _prune_subjects
from passerelle.fsutil import write_tsv
from passerelle.rungate import merged, session_hits, subject_watchlists


def _settings(tmp: Path) -> Any:
    return SimpleNamespace(work=tmp / "work", output=tmp / "out", bids_dir=tmp / "out" / "bids")


def _session(settings: Any, sub: str, ses: str, shifted: str, scans_time: str) -> None:
    """A published session: what the pseudonymise step recorded, and its scans.tsv."""
    pseudo = settings.work / "pseudo" / f"sub-{sub}_ses-{ses}.json"
    pseudo.parent.mkdir(parents=True, exist_ok=True)
    pseudo.write_text(json.dumps({"acq_time": shifted, "series": [{"acq_time": shifted}]}))
    folder = settings.bids_dir / f"sub-{sub}" / f"ses-{ses}"
    (folder / "anat").mkdir(parents=True)
    write_tsv(
        folder / f"sub-{sub}_ses-{ses}_scans.tsv",
        ["filename", "acq_time"],
        [[f"anat/sub-{sub}_ses-{ses}_T1w.nii.gz", scans_time]],
    )


def _watch(*dates: str) -> Watchlist:
    w = Watchlist()
    w.dates |= set(dates)
    return w


def test_a_shifted_date_equal_to_another_patients_real_date_passes(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    # A was scanned on 2016-06-21 and shifted to 2015-12-19, the day B was really scanned.
    _session(settings, "a", "1", "2015-12-19T02:07:51", "2015-12-19T02:20:20")
    _session(settings, "b", "1", "2015-06-20T10:00:00", "2015-06-20T10:05:00")
    per_session = {("a", "1"): _watch("20160621", "19471202"), ("b", "1"): _watch("20151219")}
    sessions = sorted(per_session)
    # The whole run's watchlist flags A's session: the chance match this gate must tell apart.
    everyone = {s: merged(per_session.values()) for s in ("a", "b")}
    assert set(session_hits(settings, sessions, everyone)) == {("a", "1")}
    by_subject = subject_watchlists(settings, per_session, [])
    assert session_hits(settings, sessions, by_subject) == {}
    assert "20151219" in by_subject["b"].dates


@pytest.mark.parametrize(
    ("second", "shifted", "scans_time", "watches"),
    [
        # B's session holds B's own real, unshifted date (a shifting failure).
        (("b", "1"), "2015-06-20T10:00:00", "2015-12-19T10:05:00", ("20160621", "20151219")),
        # A's second study, shifted, lands on the real day of A's first study.
        (("a", "2"), "2016-06-21T09:00:00", "2016-06-21T09:10:00", ("20160621", "20161019")),
    ],
    ids=["real-date-in-place", "own-real-date"],
)
def test_a_real_date_of_the_subject_stops_a_session(
    tmp_path: Path,
    second: tuple[str, str],
    shifted: str,
    scans_time: str,
    watches: tuple[str, str],
) -> None:
    settings = _settings(tmp_path)
    _session(settings, "a", "1", "2015-12-19T02:07:51", "2015-12-19T02:20:20")
    _session(settings, *second, shifted, scans_time)
    per_session = {("a", "1"): _watch(watches[0]), second: _watch(watches[1])}
    by_subject = subject_watchlists(settings, per_session, [])
    hits = session_hits(settings, sorted(per_session), by_subject)
    assert list(hits) == [second] and hits[second].kind == "date"


def test_sessions_tsv_times_of_earlier_runs_are_the_subjects_own(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _session(settings, "a", "2", "2016-06-21T09:00:00", "2016-06-21T09:10:00")
    per_session = {("a", "2"): _watch("20170101"), ("b", "1"): _watch("20140303")}
    # A's session of an earlier run (only in the state's times) fell on B's real day.
    by_subject = subject_watchlists(
        settings, per_session, [("a", "2014-03-03T08:00:00"), ("b", None)]
    )
    assert "20140303" not in by_subject["a"].dates
    assert "20140303" in by_subject["b"].dates


def test_a_subject_left_without_sessions_leaves_the_dataset(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _session(settings, "a", "1", "2015-12-19T02:07:51", "2015-12-19T02:20:20")
    (settings.bids_dir / "sub-b").mkdir(parents=True)
    (settings.bids_dir / "sub-b" / "sub-b_sessions.tsv").write_text("session_id\n")
    (settings.bids_dir / "sourcedata" / "dicom" / "sub-b").mkdir(parents=True)
    _prune_subjects(settings.bids_dir)
    assert (settings.bids_dir / "sub-a" / "ses-1").is_dir()
    assert not (settings.bids_dir / "sub-b").exists()
    assert not (settings.bids_dir / "sourcedata" / "dicom" / "sub-b").exists()
