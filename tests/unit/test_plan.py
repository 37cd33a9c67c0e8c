"""plan.prepare: one disposition per file, duplicates, mixed patients, incremental runs."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from passerelle.config import Settings, settings_from
from passerelle.finalize import close_run
from passerelle.keys import SecretKey
from passerelle.plan import PENDING, QUARANTINED, SOURCE_ONLY, prepare, spec_path
from passerelle.state import State

from .dicom_copies import (
    GE_EPI,
    GE_README,
    SI_MOSAIC_AP,
    XA30,
    copy,
    dicoms,
    load,
    plant,
)

REPO = Path(__file__).resolve().parents[2]
STATES = {PENDING, SOURCE_ONLY, QUARANTINED}
IDENTICAL = "identical duplicate of another file in the delivery"
CONFLICT = "duplicate SOPInstanceUID with different content"


def make_settings(tmp_path: Path, inbox: Path) -> Settings:
    raw = {
        "inbox": str(inbox),
        "output": str(tmp_path / "out"),
        "key_file": str(tmp_path / "unused.key"),
        "bids_map": str(REPO / "config" / "bids_map.yaml"),
        "dataset": {"name": "x"},
    }
    return settings_from(raw, "test", tmp_path)


def dispositions(settings: Settings) -> dict[str, tuple]:
    state = State(settings.work / "state.sqlite")
    try:
        rows = state.dispositions()
    finally:
        state.close()
    assert len({r[0] for r in rows}) == len(rows)
    return {r[0]: r[1:] for r in rows}


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def assert_one_disposition_each(settings: Settings) -> dict[str, tuple]:
    disp = dispositions(settings)
    assert set(disp) == files_in(settings.inbox)
    for rel, (state, reason, *_rest, present) in disp.items():
        assert state in STATES, (rel, state)
        assert reason, rel
        assert present == 1
    return disp


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


# --- duplicates ------------------------------------------------------------------------


def test_identical_duplicate_is_kept_once(testdata, tmp_path, inbox, secret_key):
    files = dicoms(testdata, GE_EPI, 3)
    for src in files:
        copy(src, inbox / "a" / src.name)
    copy(files[0], inbox / "b" / "again.dcm")
    settings = make_settings(tmp_path, inbox)
    plan = prepare(settings, secret_key)
    disp = assert_one_disposition_each(settings)
    duplicates = [rel for rel, d in disp.items() if d[1] == IDENTICAL]
    assert duplicates == ["b/again.dcm"]
    assert disp["b/again.dcm"][0] == SOURCE_ONLY
    assert disp[f"a/{files[0].name}"][0] == PENDING  # the first copy is converted as usual
    assert plan.counts == dict(Counter(d[0] for d in disp.values()))
    # The spec lists the kept copy only.
    (sub, ses) = plan.pending[0]
    spec = json.loads(spec_path(settings.work, sub, ses).read_text())
    listed = [f[0] for s in spec["series"] for f in s["files"]]
    assert "b/again.dcm" not in listed and f"a/{files[0].name}" in listed


def test_conflicting_duplicate_is_quarantined(testdata, tmp_path, inbox, secret_key):
    files = dicoms(testdata, GE_EPI, 3)
    for src in files:
        copy(src, inbox / src.name)
    plant(files[1], inbox / "changed.dcm", ImageComments="edited after export")
    assert load(inbox / "changed.dcm").SOPInstanceUID == load(files[1]).SOPInstanceUID
    settings = make_settings(tmp_path, inbox)
    prepare(settings, secret_key)
    disp = assert_one_disposition_each(settings)
    quarantined = {rel for rel, d in disp.items() if d[:2] == (QUARANTINED, CONFLICT)}
    assert quarantined == {files[1].name, "changed.dcm"}
    assert disp[files[0].name][0] == PENDING
    assert disp[files[2].name][0] == PENDING


# --- mixed patients --------------------------------------------------------------------


def test_mixed_patients_in_one_series(testdata, tmp_path, inbox, secret_key):
    ge = dicoms(testdata, GE_EPI, 2)
    plant(ge[0], inbox / "ge" / "one.dcm", PatientID="SYNTH-A-1001")
    plant(ge[1], inbox / "ge" / "two.dcm", PatientID="SYNTH-B-2002")
    for src in dicoms(testdata, SI_MOSAIC_AP):  # another study, one patient: unaffected
        copy(src, inbox / "si" / src.name)
    settings = make_settings(tmp_path, inbox)
    plan = prepare(settings, secret_key)
    disp = assert_one_disposition_each(settings)
    for rel in ("ge/one.dcm", "ge/two.dcm"):
        assert disp[rel][:2] == (QUARANTINED, "mixed patients in one series")
        assert disp[rel][2] is None  # no subject is named for quarantined files
    assert all(d[0] == PENDING for rel, d in disp.items() if rel.startswith("si/"))
    assert len(plan.pending) == 1


def test_mixed_patients_in_one_study(testdata, tmp_path, inbox, secret_key):
    bold = dicoms(testdata, f"{XA30}/7_func-bold_task-fa_run-1", 2)
    fmap = dicoms(testdata, f"{XA30}/9_gre_field_mapping", 1)
    plant(bold[0], inbox / "bold1.dcm", PatientID="SYNTH-A-1001")
    plant(bold[1], inbox / "bold2.dcm", PatientID="SYNTH-A-1001")
    plant(fmap[0], inbox / "fmap.dcm", PatientID="SYNTH-B-2002")
    settings = make_settings(tmp_path, inbox)
    prepare(settings, secret_key)
    disp = assert_one_disposition_each(settings)
    assert {d[:2] for d in disp.values()} == {(QUARANTINED, "mixed patients in one study")}


# --- a whole delivery ------------------------------------------------------------------


def test_every_file_gets_one_disposition(testdata, tmp_path, inbox, secret_key):
    # Copies get neutral names: the real ones carry UIDs, and the private spec lists paths.
    for folder in ("5_anat-T1w_acq-tfl", "6_anat-T1w_acq-tfl", "11_DWI_dir80_PA"):
        for i, src in enumerate(dicoms(testdata, f"{XA30}/{folder}")):
            copy(src, inbox / "xa30" / folder / f"{i:04d}.dcm")
    for i, src in enumerate(dicoms(testdata, f"{XA30}/99_Phoenix_Document", 2)):
        copy(src, inbox / "xa30" / "99" / f"{i:04d}.dcm")
    for src in dicoms(testdata, SI_MOSAIC_AP):
        copy(src, inbox / "si" / src.name)
    ge = dicoms(testdata, GE_EPI, 4)
    for src in ge:
        copy(src, inbox / "ge" / src.name)
    copy(testdata / GE_README, inbox / "ge" / "README.txt")
    (inbox / "empty").write_bytes(b"")
    cut = ge[0].read_bytes()
    (inbox / "ge" / "cut.dcm").write_bytes(cut[: len(cut) - 100])
    settings = make_settings(tmp_path, inbox)

    plan = prepare(settings, secret_key)
    disp = assert_one_disposition_each(settings)
    assert plan.files_read == len(disp)
    assert sum(plan.counts.values()) == len(disp)
    assert plan.counts == dict(Counter(d[0] for d in disp.values()))

    assert disp["ge/README.txt"][0] == QUARANTINED
    assert disp["ge/README.txt"][1].startswith("not DICOM")
    assert disp["empty"][:2] == (QUARANTINED, "not DICOM: empty file")
    assert disp["ge/cut.dcm"][0] == QUARANTINED and disp["ge/cut.dcm"][1].startswith("truncated")
    for rel, d in disp.items():
        if rel.startswith("xa30/99/"):
            assert d[:2] == (SOURCE_ONLY, "non-image object (sr)")
        elif rel.startswith("xa30/11_"):
            assert d[0] == SOURCE_ONLY and d[1].startswith("derived image")
        elif rel.startswith(("xa30/5_", "xa30/6_")):
            assert d[:2] == (PENDING, "rule t1w")

    # One pending session per study (XA30, GE, Siemens); repeated T1w series get runs.
    assert len(plan.pending) == len({(d[2], d[3]) for d in disp.values() if d[0] == PENDING})
    xa30_session = next(d[2:4] for rel, d in disp.items() if rel.startswith("xa30/5_"))
    spec = json.loads(spec_path(settings.work, *xa30_session).read_text())
    t1 = [s for s in spec["series"] if s["target"] and s["target"]["suffix"] == "T1w"]
    assert [s["number"] for s in t1] == [5, 6]
    assert [s["target"]["entities"] for s in t1] == [
        {"acq": "tfl", "run": "1"},
        {"acq": "tfl", "run": "2"},
    ]
    # Specs hold keyed labels, never the identifiers from the headers.
    text = spec_path(settings.work, *xa30_session).read_text()
    ds = load(dicoms(testdata, f"{XA30}/5_anat-T1w_acq-tfl")[0], stop_before_pixels=True)
    for value in (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert str(value) not in text


# --- incremental runs ------------------------------------------------------------------


def test_second_prepare_after_close_has_nothing_to_do(testdata, tmp_path, inbox, secret_key):
    for src in dicoms(testdata, GE_EPI, 3):
        copy(src, inbox / "ge" / src.name)
    for src in dicoms(testdata, SI_MOSAIC_AP):
        copy(src, inbox / "si" / src.name)
    copy(testdata / GE_README, inbox / "README.txt")
    settings = make_settings(tmp_path, inbox)

    first = prepare(settings, secret_key)
    assert first.run_id is not None
    assert len(first.pending) == 2
    before = dispositions(settings)

    # Not closed yet: the same work is planned again, under the same run id.
    again = prepare(settings, secret_key)
    assert again.run_id == first.run_id
    assert again.files_read == 0

    close_run(settings, first.run_id)
    idle = prepare(settings, secret_key)
    assert idle.run_id is None
    assert idle.pending == []
    assert idle.files_read == 0
    assert dispositions(settings) == before

    # A touched file puts its session (and only that one) back in the plan.
    target = sorted((inbox / "ge").iterdir())[0]
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
    changed = prepare(settings, secret_key)
    assert changed.run_id not in (None, first.run_id)
    assert changed.files_read == 1
    ge_session = before[f"ge/{target.name}"][2:4]
    assert changed.pending == [tuple(ge_session)]


def test_new_key_replans_everything(testdata, tmp_path, inbox, secret_key):
    for src in dicoms(testdata, GE_EPI, 2):
        copy(src, inbox / src.name)
    settings = make_settings(tmp_path, inbox)
    first = prepare(settings, secret_key)
    close_run(settings, first.run_id)
    assert prepare(settings, secret_key).run_id is None
    other = SecretKey(b"a different key, also 32 bytes!!")
    replanned = prepare(settings, other)
    assert replanned.run_id is not None
    assert replanned.files_read == 2
    assert replanned.pending and replanned.pending != first.pending
