"""Incremental planning re-derives only touched sessions and agrees with a full plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from passerelle.config import settings_from
from passerelle.finalize import close_run
from passerelle.plan import prepare
from passerelle.state import State

from .dicom_copies import GE_EPI, SI_MOSAIC_AP, XA30, copy, dicoms
from .test_plan import REPO


def _settings(tmp_path: Path, inbox: Path, name: str):
    raw = {
        "inbox": str(inbox),
        "output": str(tmp_path / name),
        "key_file": "unused",
        "bids_map": str(REPO / "config" / "bids_map.yaml"),
        "dataset": {"name": "x"},
    }
    return settings_from(raw, "test", tmp_path)


def _snapshot(settings) -> tuple[dict, dict]:
    state = State(settings.work / "state.sqlite")
    try:
        disp = {r[0]: r[1:6] for r in state.dispositions() if r[6]}
    finally:
        state.close()
    specs = {
        p.relative_to(settings.work).as_posix(): json.loads(p.read_text())
        for p in (settings.work / "specs").rglob("*.json")
    }
    return disp, specs


def test_incremental_plan_matches_a_full_one(testdata, tmp_path, secret_key):
    inbox = tmp_path / "inbox"
    for src in dicoms(testdata, GE_EPI, 3):
        copy(src, inbox / "ge" / src.name)
    for src in dicoms(testdata, SI_MOSAIC_AP):
        copy(src, inbox / "si" / src.name)
    inc = _settings(tmp_path, inbox, "inc")
    first = prepare(inc, secret_key)
    close_run(inc, first.run_id)

    # A new study arrives, one old file is deleted, another copied again, junk dropped in.
    new = dicoms(testdata, f"{XA30}/5_anat-T1w_acq-tfl", 2)
    for src in new:
        copy(src, inbox / "xa" / src.name)
    gone = sorted((inbox / "ge").iterdir())[0]
    gone.unlink()
    shutil.copy(sorted((inbox / "si").iterdir())[0], inbox / "si-again.dcm")
    (inbox / "notes.txt").write_text("call back Monday\n")
    plan = prepare(inc, secret_key)
    assert plan.files_read == len(new) + 2  # the new files only, never the untouched ones
    # GE lost a file, XA is new, SI has a duplicate now: three sessions; nothing else.
    assert len(plan.pending) == 3

    full = _settings(tmp_path, inbox, "full")
    reference = prepare(full, secret_key, full=True)
    assert reference.pending == plan.pending
    assert _snapshot(inc) == _snapshot(full)


def test_nothing_new_reads_nothing_and_plans_nothing(testdata, tmp_path, secret_key):
    inbox = tmp_path / "inbox"
    for src in dicoms(testdata, SI_MOSAIC_AP):
        copy(src, inbox / "si" / src.name)
    settings = _settings(tmp_path, inbox, "out")
    close_run(settings, prepare(settings, secret_key).run_id)
    idle = prepare(settings, secret_key)
    assert (idle.run_id, idle.files_read) == (None, 0)


def test_changed_rules_replan_every_session(testdata, tmp_path, secret_key):
    inbox = tmp_path / "inbox"
    for src in dicoms(testdata, SI_MOSAIC_AP):
        copy(src, inbox / "si" / src.name)
    settings = _settings(tmp_path, inbox, "out")
    close_run(settings, prepare(settings, secret_key).run_id)
    settings.raw["convert"]["compress"] = False
    again = prepare(settings, secret_key)
    assert len(again.pending) == 1 and again.files_read == 0


def test_state_of_the_previous_format_gains_label_columns(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER "
        "NOT NULL, record TEXT NOT NULL, present INTEGER NOT NULL DEFAULT 1, state TEXT, "
        "reason TEXT, subject TEXT, session TEXT, series INTEGER);"
        "CREATE TABLE sessions (subject TEXT NOT NULL, session TEXT NOT NULL, spec_hash TEXT "
        "NOT NULL, done_hash TEXT, sex TEXT, age INTEGER, n_files INTEGER, acq_time TEXT, "
        "PRIMARY KEY (subject, session));"
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, summary TEXT NOT NULL);"
        "PRAGMA user_version=2;"
    )
    record = {"subject": "s1", "session": "e1", "sop": "o1", "patient": "p1"}
    db.execute(
        "INSERT INTO files (path, size, mtime_ns, record) VALUES ('a', 1, 2, ?)",
        (json.dumps(record),),
    )
    db.execute(
        "INSERT INTO sessions (subject, session, spec_hash, done_hash) "
        "VALUES ('s1', 'e1', 'h', 'h')"
    )
    db.commit()
    db.close()
    state = State(tmp_path / "state.sqlite")
    try:
        assert state.records_in_sessions(["e1"]) == {"a": (1, 2, record)}
        assert state.done_hashes() == {("s1", "e1"): "h"}  # the ledger survives
    finally:
        state.close()


def _with_derivatives(tmp_path: Path, inbox: Path, **derivatives):
    raw = {
        "inbox": str(inbox),
        "output": str(tmp_path / "out"),
        "key_file": "unused",
        "bids_map": str(REPO / "config" / "bids_map.yaml"),
        "dataset": {"name": "x"},
        "derivatives": derivatives,
    }
    return settings_from(raw, "test", tmp_path)


def test_derivation_settings_rederive_job_sizes_do_not(testdata, tmp_path, secret_key):
    inbox = tmp_path / "inbox"
    for src in dicoms(testdata, SI_MOSAIC_AP):
        copy(src, inbox / "si" / src.name)
    first = prepare(_with_derivatives(tmp_path, inbox), secret_key)
    assert first.pending
    close_run(_with_derivatives(tmp_path, inbox), first.run_id)

    # A bigger job changes no derived byte: nothing to do.
    bigger = _with_derivatives(tmp_path, inbox, deface={"threads": 1, "mem_mb": 9000})
    assert prepare(bigger, secret_key).run_id is None
    # A new registration setting changes the derivatives: every session is due again.
    seeded = _with_derivatives(tmp_path, inbox, registration={"seed": 7})
    again = prepare(seeded, secret_key)
    assert again.pending == first.pending
    close_run(seeded, again.run_id)
    # A new release level re-publishes the dataset without re-deriving any session.
    public = _with_derivatives(tmp_path, inbox, registration={"seed": 7}, release="public")
    release = prepare(public, secret_key)
    assert release.run_id is not None
    assert release.pending == []
