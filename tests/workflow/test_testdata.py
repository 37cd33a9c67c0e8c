"""End-to-end on real scanner data: names, voxels and affines against dcm2niix's reference."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from passerelle.dicom.index import walk

from .helpers import read_tsv, run_workflow, tree_digest, work

pytestmark = pytest.mark.slow

LABEL = re.compile(r"(sub|ses)-[0-9a-f]+")


def _link_inbox(inbox: Path, testdata: Path, names: list[str]) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(testdata / name / "In", inbox / name)


@pytest.fixture(scope="module")
def converted(testdata: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("e2e")
    inbox = base / "inbox"
    _link_inbox(inbox, testdata, ["siemens_xa30_exam", "philips_mprage_classic", "ge_siemens_epi"])
    proc = run_workflow(inbox, base / "out", key_file)
    return inbox, base / "out", proc


def _images(bids: Path) -> dict[str, Path]:
    """BIDS images keyed by their name with the keyed labels blanked out."""
    return {LABEL.sub(r"\1-X", p.relative_to(bids).as_posix()): p for p in bids.rglob("*.nii.gz")}


XA, NIH = "siemens_xa30_exam/Ref/", "ge_siemens_epi/Ref/"
ANAT = "sub-X/ses-X/anat/sub-X_ses-X_"
FMAP = "sub-X/ses-X/fmap/sub-X_ses-X_"
FUNC = "sub-X/ses-X/func/sub-X_ses-X_"
EXPECTED = {
    # Siemens XA30, enhanced multi-frame
    ANAT + "acq-tfl_run-1_T1w.nii.gz": XA + "5_anat-T1w_acq-tfl.nii",
    ANAT + "acq-tfl_run-2_T1w.nii.gz": XA + "6_anat-T1w_acq-tfl.nii",
    FMAP + "magnitude1.nii.gz": XA + "8_gre_field_mapping_e1.nii",
    FMAP + "magnitude2.nii.gz": XA + "8_gre_field_mapping_e2.nii",
    FMAP + "phasediff.nii.gz": XA + "9_gre_field_mapping_e2_ph.nii",
    FUNC + "task-fa_run-1_bold.nii.gz": None,
    "sub-X/ses-X/dwi/sub-X_ses-X_dir-AP_dwi.nii.gz": None,
    "sub-X/ses-X/dwi/sub-X_ses-X_dir-PA_dwi.nii.gz": None,
    # GE classic single-frame EPI, four runs named by slice order
    FUNC + "task-rest_acq-InterleavedItoS_bold.nii.gz": NIH + "DCM2NIIX_regression_test_4.nii",
    FUNC + "task-rest_acq-SequentialItoS_bold.nii.gz": NIH + "DCM2NIIX_regression_test_5.nii",
    FUNC + "task-rest_acq-InterleavedStoI_bold.nii.gz": NIH + "DCM2NIIX_regression_test_6.nii",
    FUNC + "task-rest_acq-SequentialStoI_bold.nii.gz": NIH + "DCM2NIIX_regression_test_7.nii",
    # Siemens mosaics, phase-encoding direction from the description
    FMAP + "dir-AP_epi.nii.gz": NIH + "EPI_PE=AP_3.nii",
    FMAP + "dir-PA_epi.nii.gz": NIH + "EPI_PE=PA_4.nii",
    FMAP + "dir-RL_epi.nii.gz": NIH + "EPI_PE=RL_5.nii",
    FMAP + "dir-LR_epi.nii.gz": NIH + "EPI_PE=LR_6.nii",
    # Philips classic MPRAGE, gzipped DICOM
    ANAT + "T1w.nii.gz": None,
}  # fmt: skip


def test_bids_names(converted) -> None:
    _, out, _ = converted
    assert sorted(_images(out / "bids")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", [k for k, v in EXPECTED.items() if v])
def test_voxels_and_affine_match_dcm2niix_reference(converted, testdata: Path, name: str) -> None:
    _, out, _ = converted
    ours = nib.load(_images(out / "bids")[name])
    ref = nib.load(testdata / EXPECTED[name])
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-4)
    assert np.array_equal(np.asanyarray(ours.dataobj), np.asanyarray(ref.dataobj))


def test_philips_sidecar_matches_reference(converted, testdata: Path) -> None:
    _, out, _ = converted
    nii = _images(out / "bids")[ANAT + "T1w.nii.gz"]
    ours = json.loads(nii.with_name(nii.name.replace(".nii.gz", ".json")).read_text())
    ref = json.loads(
        (testdata / "philips_mprage_classic/Ref/1301_WIP_ADNI_Sag3D_MPRAGE_cl.json").read_text()
    )
    for key in (
        "EchoTime",
        "RepetitionTime",
        "FlipAngle",
        "SliceThickness",
        "PhilipsRescaleSlope",
        "MRAcquisitionType",
        "Manufacturer",
        "ImageType",
    ):
        assert ours[key] == ref[key], key
    img = nib.load(nii)
    assert img.shape[:3] == (170, 256, 256) or sorted(img.shape[:3]) == [170, 256, 256]


def test_sidecars_and_headers_carry_no_time_or_institution(converted) -> None:
    _, out, _ = converted
    forbidden = {
        "AcquisitionDateTime",
        "InstitutionName",
        "InstitutionAddress",
        "DeviceSerialNumber",
        "StationName",
        "StudyDescription",
        "ProcedureStepDescription",
        "PatientName",
        "PatientID",
        "ImageComments",
        "SeriesDate",
        "StudyDate",
    }
    sidecars = list((out / "bids").rglob("sub-*/**/*.json"))
    assert sidecars
    for side in sidecars:
        assert not forbidden & set(json.loads(side.read_text())), side.name
    for nii in (out / "bids").rglob("*.nii.gz"):
        hdr = nib.load(nii).header
        assert b"Time=" not in hdr["descrip"].tobytes()
        assert hdr["aux_file"].tobytes().strip(b"\0") == b""


def _seconds(hhmmss: str) -> float:
    h, m, sec = hhmmss.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def test_times_are_shifted_and_intervals_kept(converted, testdata: Path) -> None:
    """Sidecar times come from the pseudonymised copy: all moved by one per-patient offset."""
    _, out, _ = converted
    images = _images(out / "bids")
    offsets = set()
    for name, ref in EXPECTED.items():
        if not ref or not ref.startswith(XA):
            continue
        ours = json.loads(images[name].with_name(images[name].name[:-7] + ".json").read_text())
        theirs = json.loads((testdata / ref).with_suffix(".json").read_text())
        offset = (_seconds(ours["AcquisitionTime"]) - _seconds(theirs["AcquisitionTime"])) % 86400
        offsets.add(round(offset, 3))
    assert len(offsets) == 1 and offsets != {0.0}, offsets
    scans = next((out / "bids").rglob("*_scans.tsv"))
    rows = read_tsv(scans)
    assert all(r["acq_time"] not in ("", "n/a") for r in rows)
    assert not any(r["acq_time"].startswith("2022-07-11") for r in rows)  # the real exam day


def test_fieldmaps_name_their_targets(converted) -> None:
    _, out, _ = converted
    bids = out / "bids"
    phasediff = next(bids.rglob("*_phasediff.json"))
    data = json.loads(phasediff.read_text())
    assert data["EchoTime1"] < data["EchoTime2"]
    assert data["IntendedFor"], "GRE fieldmap must point at the session's BOLD and DWI"
    for uri in data["IntendedFor"]:
        assert uri.startswith("bids::sub-")
        assert (bids / uri.removeprefix("bids::")).is_file()
    dwi = next(bids.rglob("*_dir-AP_dwi.nii.gz"))
    assert dwi.with_name(dwi.name.replace(".nii.gz", ".bval")).is_file()
    assert dwi.with_name(dwi.name.replace(".nii.gz", ".bvec")).is_file()
    bold = json.loads(next(bids.rglob("*_task-fa_run-1_bold.json")).read_text())
    assert bold["TaskName"] == "fa"


def test_validator_and_pybids(converted) -> None:
    _, out, _ = converted
    report = json.loads((out / "reports" / "bids_validation.json").read_text())
    assert report["errors"] == 0, report["issues"]
    assert report["pybids"]["subjects"] == 3
    assert report["pybids"]["sessions"] == 4
    assert set(report["pybids"]["datatypes"]) == {"anat", "dwi", "fmap", "func"}


def test_manifest_accounts_for_every_file(converted) -> None:
    inbox, out, _ = converted
    files = {rel for rel, _, _ in walk(inbox)}
    rows = read_tsv(work(out) / "manifest.tsv")
    assert sorted(r["path"] for r in rows) == sorted(files)
    assert {r["state"] for r in rows} <= {"converted", "source_only", "quarantined"}
    assert all(r["reason"] not in ("", "n/a") for r in rows)
    by_reason = {r["reason"] for r in rows if r["state"] != "converted"}
    assert "non-image object (sr)" in by_reason  # Phoenix document
    assert "no bids_map rule matched" in by_reason  # ASL
    assert any(r.startswith("derived image") for r in by_reason)  # ADC, FA, TRACEW
    assert any(r.startswith("not DICOM") for r in by_reason)  # README-Series.txt
    public = read_tsv(out / "reports" / "manifest.tsv")
    assert len(public) == len(rows)
    assert "path" not in public[0]
    text = (out / "reports" / "manifest.tsv").read_text()
    assert "README" not in text and "hucheng" not in text


def test_rerun_does_nothing_and_changes_no_byte(converted, key_file: Path) -> None:
    inbox, out, _ = converted
    before = tree_digest(out / "bids")
    proc = run_workflow(inbox, out, key_file)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert tree_digest(out / "bids") == before


def test_fresh_run_is_byte_identical(converted, key_file: Path, tmp_path: Path) -> None:
    inbox, out, _ = converted
    run_workflow(inbox, tmp_path / "again", key_file)
    assert tree_digest(tmp_path / "again" / "bids") == tree_digest(out / "bids")
    assert (tmp_path / "again" / "reports" / "manifest.tsv").read_bytes() == (
        out / "reports" / "manifest.tsv"
    ).read_bytes()
