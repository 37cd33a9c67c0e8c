"""Synthetic identities planted in real scanner data must not survive anywhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pydicom
import pytest

from .helpers import REPO, read_tsv, run_workflow, work
from .identities import PATIENTS, build, study_datetimes
from .leaks import date_forms, fold, grep, leaks

pytestmark = pytest.mark.slow


def _needles(planted: dict[str, list[str]]) -> list[str]:
    """Every planted value, accent-folded and lower-cased, in the forms it could leak in."""
    out = set()
    for value in planted["names"] + planted["ids"] + planted["texts"]:
        out.add(fold(value))
        out.add(fold(value).replace("-", " "))
    for p in PATIENTS:
        out |= {fold(f"{p.given} {p.family}"), fold(p.caret), fold(f"{p.family} {p.given}")}
    for d in planted["dates"]:
        out |= set(date_forms(d))
    return sorted(out)


@pytest.fixture(scope="module")
def planted_run(testdata: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("privacy")
    planted = build(testdata, base / "inbox")
    proc = run_workflow(base / "inbox", base / "out", key_file)
    return base, planted, proc


def test_no_planted_identity_anywhere_in_the_output(planted_run) -> None:
    base, planted, proc = planted_run
    needles = _needles(planted)
    assert len(needles) > 40
    assert leaks(base / "out", work(base / "out"), proc.stdout + proc.stderr, needles) == []
    # The planted values are really in the inbox: the grep would have seen them.
    assert len(grep(base / "inbox", needles)) > 10


def test_sessions_pass_the_gate_and_convert(planted_run) -> None:
    base, _, _ = planted_run
    summary = json.loads((base / "out" / "reports" / "summary.json").read_text())
    assert summary["sessions_in_dataset"] == 3 and summary["subjects_in_dataset"] == 2
    assert not any("withheld" in r["reason"] for r in summary["reasons"])
    validation = json.loads((base / "out" / "reports" / "bids_validation.json").read_text())
    assert validation["errors"] == 0, validation["issues"]
    # Descriptions still drive the mapping once the name is cleaned out of them.
    assert len(list((base / "out" / "bids").glob("sub-*/ses-*/anat/*_T1w.nii.gz"))) == 3


def test_intervals_are_kept_and_dates_shifted(planted_run) -> None:
    base, _, _ = planted_run
    bids = base / "out" / "bids"
    sessions = {}
    for tsv in bids.glob("sub-*/sub-*_sessions.tsv"):
        sessions[tsv.parent.name] = [r["acq_time"] for r in read_tsv(tsv)]
    counts = sorted(len(v) for v in sessions.values())
    assert counts == [1, 2]
    two = next(
        sorted(datetime.fromisoformat(t) for t in v) for v in sessions.values() if len(v) == 2
    )
    real = study_datetimes()
    assert two[1] - two[0] == real[1] - real[0]  # to the second
    assert two[0] != real[0]
    one = datetime.fromisoformat(next(v[0] for v in sessions.values() if len(v) == 1))
    assert one != real[2]


def test_pseudonymised_dicom_is_marked_and_rekeyed(planted_run) -> None:
    base, _, _ = planted_run
    source = base / "out" / "bids" / "sourcedata" / "dicom"
    files = sorted(source.rglob("*.dcm"))
    assert files
    per_session: dict[str, set[str]] = {}
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}
        assert {"113100", "113105", "113107"} <= codes
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert str(getattr(ds, kw)).startswith("2.25.")
        assert ds.PatientID == f.parts[-4].removeprefix("sub-")
        if ds.get("Manufacturer", "").startswith("Siemens Healthineers"):
            per_session.setdefault(f.parts[-3], set()).add(str(ds.FrameOfReferenceUID))
    # One frame of reference shared by the T1w and fieldmaps of each study, distinct per study.
    assert all(len(v) == 1 for v in per_session.values())
    assert len({next(iter(v)) for v in per_session.values()}) == 3
    audits = list(source.rglob("*_desc-deid_audit.json"))
    assert len(audits) == 3
    audit = json.loads(audits[0].read_text())
    assert audit["edition"] == "2024b" and "retain_safe_private" in audit["options"]
    actions = {(e["keyword"], e["action"]) for s in audit["series"].values() for e in s}
    assert ("PatientBirthDate", "X") in actions
    assert ("StudyDate", "C") in actions


def test_leak_planted_after_pseudonymisation_withholds_the_session(
    testdata: Path, key_file: Path, tmp_path: Path
) -> None:
    build(testdata, tmp_path / "inbox")
    out = tmp_path / "out"
    run_workflow(tmp_path / "inbox", out, key_file, "--until", "pseudonymise_session")
    pseudo = work(out) / "pseudo"
    # DUPONT is the patient with two studies: plant her own name into one of her sessions.
    subjects = [p.name.split("_")[0] for p in pseudo.glob("sub-*_ses-*") if p.is_dir()]
    dupont = next(s for s in subjects if subjects.count(s) == 2)
    victims = sorted(pseudo.glob(f"{dupont}_ses-*/sourcedata/dicom/sub-*/ses-*/*-5/*.dcm"))
    assert victims
    session = victims[0].parts[-3]
    ds = pydicom.dcmread(victims[0])
    ds.SeriesDescription = f"t1 {PATIENTS[0].family}"  # reaches the sidecar through dcm2niix
    ds.save_as(victims[0])
    run_workflow(tmp_path / "inbox", out, key_file)
    assert not list((out / "bids").glob(f"sub-*/{session}"))
    assert not list((out / "bids" / "sourcedata" / "dicom").glob(f"sub-*/{session}"))
    rows = [r for r in read_tsv(work(out) / "manifest.tsv") if r["session"] == session]
    assert rows and all(r["state"] == "quarantined" for r in rows)
    assert all("withheld by the PHI gate" in r["reason"] for r in rows)
    assert any("SeriesDescription" in r["reason"] for r in rows)
    assert not any(fold(PATIENTS[0].family) in fold(r["reason"]) for r in rows)
    # The other sessions are unaffected.
    assert len(list((out / "bids").glob("sub-*/ses-*"))) == 2


def test_pseudonym_command_matches_the_dataset(planted_run, key_file: Path) -> None:
    base, _, _ = planted_run
    proc = subprocess.run(
        [sys.executable, "-m", "passerelle", "pseudonym", "patient", "-", "--set",
         f"inbox={base / 'inbox'}", "--set", f"key_file={key_file}"],
        input=PATIENTS[0].patient_id + "\n", capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    label = proc.stdout.split("\t")[0]
    assert re.fullmatch(r"sub-[0-9a-f]{12}", label)
    assert (base / "out" / "bids" / label).is_dir()
    assert PATIENTS[0].patient_id not in proc.stdout


def test_verify_mode_quarantines_what_does_not_comply(
    testdata: Path, key_file: Path, tmp_path: Path
) -> None:
    """A delivery pseudonymised elsewhere: compliant files go on, the others are named."""
    from passerelle.deid.apply import Context, dataset_bytes, pseudonymise
    from passerelle.deid.profile import load_profile
    from passerelle.dicom.reader import read_dataset
    from passerelle.keys import SecretKey

    sender = SecretKey(b"the sending hospital's own secret key, not ours" * 2)
    inbox = tmp_path / "inbox"
    sources = sorted((testdata / "siemens_xa30_exam" / "In" / "8_gre_field_mapping").iterdir())
    sources += sorted((testdata / "siemens_xa30_exam" / "In" / "5_anat-T1w_acq-tfl").iterdir())
    for n, src in enumerate(sources):
        ds = read_dataset(src)
        pseudonymise(ds, Context.for_dataset(sender, ds, load_profile()))
        ds.PatientName, ds.PatientID = "PROVIDER^0042", "PRV0042"
        if n == 0:  # the sender forgot two attributes in one file
            ds.InstitutionName = "Hopital Sud"
            ds.PatientBirthDate = "19700101"
        (inbox / f"f{n}").parent.mkdir(parents=True, exist_ok=True)
        (inbox / f"f{n}.dcm").write_bytes(dataset_bytes(ds))
    policy = tmp_path / "deid.yaml"
    policy.write_text(
        (REPO / "config" / "deid.yaml").read_text().replace("mode: enforce", "mode: verify")
    )
    out = tmp_path / "out"
    run_workflow(inbox, out, key_file, f"deid={policy}")
    rows = {r["path"]: r for r in read_tsv(work(out) / "manifest.tsv")}
    bad = rows["f0.dcm"]
    assert bad["state"] == "quarantined"
    assert bad["reason"].startswith("verify: not pseudonymised per profile")
    assert "InstitutionName" in bad["reason"] and "PatientBirthDate" in bad["reason"]
    assert "Hopital" not in bad["reason"] and "1970" not in bad["reason"]
    assert all(r["state"] == "converted" for p, r in rows.items() if p != "f0.dcm")
    audit = json.loads(next((out / "bids" / "sourcedata").rglob("*_audit.json")).read_text())
    assert audit["mode"] == "verify"
