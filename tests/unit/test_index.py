"""The header index: only new or changed files are read again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from passerelle.dicom.index import record_to_header, update_index, walk
from passerelle.dicom.reader import Header, Unusable
from passerelle.keys import SecretKey
from passerelle.state import State

from .dicom_copies import GE_EPI, GE_README, PHILIPS, SI_MOSAIC_AP, copy, dicoms, plant

FAKE_ID = "SYNTH-INDEX-0815"


@pytest.fixture
def inbox(testdata: Path, tmp_path: Path) -> Path:
    root = tmp_path / "inbox"
    for src in dicoms(testdata, GE_EPI, 3):
        copy(src, root / "ge" / src.name)
    for src in dicoms(testdata, SI_MOSAIC_AP):
        plant(src, root / "si" / "deep" / src.name, PatientID=FAKE_ID)
    for src in dicoms(testdata, PHILIPS, 2):
        copy(src, root / src.name)
    copy(testdata / GE_README, root / "ge" / "README.txt")
    return root


@pytest.fixture
def state(tmp_path: Path):
    st = State(tmp_path / "work" / "state.sqlite")
    yield st
    st.close()


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def bump_mtime(path: Path, seconds: int = 5) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_walk_lists_every_regular_file(inbox):
    listed = list(walk(inbox))
    assert {rel for rel, _, _ in listed} == files_in(inbox)
    for rel, size, mtime in listed:
        st = (inbox / rel).stat()
        assert (size, mtime) == (st.st_size, st.st_mtime_ns)


def test_first_call_reads_all_then_none(inbox, state, secret_key):
    records, n_read = update_index(inbox, secret_key, state)
    assert set(records) == files_in(inbox)
    assert n_read == len(files_in(inbox))
    assert isinstance(record_to_header(records["ge/README.txt"].record), Unusable)
    for rel, item in records.items():
        if rel != "ge/README.txt":
            assert isinstance(record_to_header(item.record), Header)
    again, n_again = update_index(inbox, secret_key, state)
    assert n_again == 0
    assert {k: v.record for k, v in again.items()} == {k: v.record for k, v in records.items()}


def test_touched_file_is_read_again(inbox, state, secret_key):
    update_index(inbox, secret_key, state)
    target = next(iter(sorted((inbox / "ge").glob("*.dcm"))))
    bump_mtime(target)
    records, n_read = update_index(inbox, secret_key, state)
    assert n_read == 1
    rel = target.relative_to(inbox).as_posix()
    assert records[rel].mtime_ns == target.stat().st_mtime_ns
    assert update_index(inbox, secret_key, state)[1] == 0


def test_rewritten_file_is_read_again(inbox, state, secret_key, testdata):
    before, _ = update_index(inbox, secret_key, state)
    # The junk file is replaced by a DICOM object: the new content must be indexed.
    readme = inbox / "ge" / "README.txt"
    readme.write_bytes(dicoms(testdata, GE_EPI)[5].read_bytes())
    bump_mtime(readme)
    after, n_read = update_index(inbox, secret_key, state)
    assert n_read == 1
    assert "unusable" in before["ge/README.txt"].record
    assert record_to_header(after["ge/README.txt"].record).object_class == "image"


def test_same_size_rewrite_is_read_again(inbox, state, secret_key):
    update_index(inbox, secret_key, state)
    readme = inbox / "ge" / "README.txt"
    data = readme.read_bytes()
    readme.write_bytes(data[::-1])
    bump_mtime(readme)
    records, n_read = update_index(inbox, secret_key, state)
    assert n_read == 1
    assert records["ge/README.txt"].size == len(data)


def test_removed_file_is_marked_absent(inbox, state, secret_key):
    update_index(inbox, secret_key, state)
    gone = sorted((inbox / "si" / "deep").iterdir())[0]
    rel = gone.relative_to(inbox).as_posix()
    gone.unlink()
    records, n_read = update_index(inbox, secret_key, state)
    assert n_read == 0
    assert rel not in records
    present = {path: flag for path, *_rest, flag in state.dispositions()}
    assert present[rel] == 0
    assert all(flag == 1 for path, flag in present.items() if path != rel)
    assert rel not in state.cached_files()


def test_restored_file_is_read_again(inbox, state, secret_key, tmp_path):
    update_index(inbox, secret_key, state)
    target = sorted((inbox / "ge").glob("*.dcm"))[0]
    rel = target.relative_to(inbox).as_posix()
    parked = tmp_path / "parked.dcm"
    os.replace(target, parked)
    update_index(inbox, secret_key, state)
    os.replace(parked, target)
    records, n_read = update_index(inbox, secret_key, state)
    assert n_read == 1
    assert rel in records


def test_key_change_forces_full_reread(inbox, state, secret_key):
    first, _ = update_index(inbox, secret_key, state)
    other = SecretKey(b"a different key, also 32 bytes!!")
    second, n_read = update_index(inbox, other, state)
    assert n_read == len(files_in(inbox))
    rel = "si/deep/" + sorted(p.name for p in (inbox / "si" / "deep").iterdir())[0]
    assert first[rel].record["subject"] != second[rel].record["subject"]
    assert update_index(inbox, other, state)[1] == 0
    # Going back to the first key is a change too.
    assert update_index(inbox, secret_key, state)[1] == len(files_in(inbox))


def test_index_cache_holds_no_identifier_in_clear(inbox, secret_key, tmp_path):
    work = tmp_path / "private"
    state = State(work / "state.sqlite")
    try:
        records, _ = update_index(inbox, secret_key, state)
    finally:
        state.close()
    assert any(rel.startswith("si/") for rel in records)  # the planted files were indexed
    blob = b"".join(p.read_bytes() for p in work.iterdir() if p.is_file())
    assert FAKE_ID.encode() not in blob


def test_parallel_and_serial_reads_agree(inbox, tmp_path, secret_key, monkeypatch):
    import passerelle.dicom.index as index

    serial_state = State(tmp_path / "s.sqlite")
    parallel_state = State(tmp_path / "p.sqlite")
    try:
        serial, _ = update_index(inbox, secret_key, serial_state, workers=1)
        monkeypatch.setattr(index, "PARALLEL_THRESHOLD", 1)
        parallel, n = update_index(inbox, secret_key, parallel_state, workers=2)
    finally:
        serial_state.close()
        parallel_state.close()
    assert n == len(serial)
    assert {k: v.record for k, v in parallel.items()} == {k: v.record for k, v in serial.items()}
