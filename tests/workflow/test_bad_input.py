"""Bad files get a reason in the manifest; the rest of the delivery still converts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest

from .helpers import read_tsv, run_workflow, work

pytestmark = pytest.mark.slow


def _one(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")[0]


@pytest.fixture
def bad_inbox(testdata: Path, tmp_path: Path) -> Path:
    xa30, ge = testdata / "siemens_xa30_exam" / "In", testdata / "ge_siemens_epi" / "In"
    inbox = tmp_path / "inbox"
    good = inbox / "PAT1" / "T1"
    good.mkdir(parents=True)
    shutil.copy(_one(xa30 / "5_anat-T1w_acq-tfl"), good / "IM0001")  # no extension
    junk = inbox / "misc"
    junk.mkdir()
    (junk / "README.txt").write_text("export notes\n")
    (junk / "IM9999").write_bytes(bytes(range(256)) * 8)
    (junk / "EMPTY").write_bytes(b"")
    src = _one(xa30 / "6_anat-T1w_acq-tfl").read_bytes()
    (junk / "truncated.dcm").write_bytes(src[: len(src) // 2])
    # An image object whose pixel data were lost.
    ds = pydicom.dcmread(_one(ge / "20180918GE" / "mr_0004"))
    del ds.PixelData
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["nopixels"])
    ds.save_as(junk / "nopixels.dcm")
    # Two different files claiming the same SOPInstanceUID.
    fmap = sorted((xa30 / "8_gre_field_mapping").iterdir())
    dup = inbox / "PAT1" / "FMAP"
    dup.mkdir()
    for f in fmap:
        shutil.copy(f, dup / f.name)
    ds = pydicom.dcmread(fmap[0])
    ds.ImageComments = "re-sent with a different header"
    ds.save_as(dup / "resent.dcm")
    # A series whose files disagree about the patient.
    mixed = inbox / "MIXED"
    mixed.mkdir()
    for i, f in enumerate(sorted((ge / "20180918GE" / "mr_0005").glob("*.dcm"))[:3]):
        ds = pydicom.dcmread(f)
        if i == 2:
            ds.PatientID = "SOMEONE-ELSE"
        ds.save_as(mixed / f.name)
    return inbox


def test_each_bad_file_gets_its_reason(bad_inbox: Path, key_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_workflow(bad_inbox, out, key_file)  # must complete despite the bad files
    rows = {r["path"]: r for r in read_tsv(work(out) / "manifest.tsv")}
    all_files = {p.relative_to(bad_inbox).as_posix() for p in bad_inbox.rglob("*") if p.is_file()}
    assert set(rows) == all_files

    def reason(path: str) -> str:
        return rows[path]["state"] + ": " + rows[path]["reason"]

    assert reason("misc/README.txt").startswith("quarantined: not DICOM")
    assert reason("misc/IM9999").startswith("quarantined: not DICOM")
    assert reason("misc/EMPTY") == "quarantined: not DICOM: empty file"
    assert reason("misc/truncated.dcm").startswith("quarantined: truncated: pixel data declares")
    assert reason("misc/nopixels.dcm") == "quarantined: no pixel data in an image object"
    dups = [p for p in rows if p.startswith("PAT1/FMAP/")]
    conflicting = [p for p in dups if "different content" in rows[p]["reason"]]
    assert len(conflicting) == 2
    assert all(rows[p]["state"] == "quarantined" for p in conflicting)
    assert all(
        reason(p) == "quarantined: mixed patients in one series"
        for p in rows
        if p.startswith("MIXED/")
    )
    assert rows["PAT1/T1/IM0001"]["state"] == "converted"
    # The clean part of the fieldmap series still converts.
    assert any(rows[p]["state"] == "converted" for p in dups)
    validation = json.loads((out / "reports" / "bids_validation.json").read_text())
    assert validation["errors"] == 0, validation["issues"]
    summary = json.loads((out / "reports" / "summary.json").read_text())
    assert sum(summary["files"].values()) == len(all_files)
