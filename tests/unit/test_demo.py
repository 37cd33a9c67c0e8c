"""The synthetic demo inbox: identities, layout, determinism and T1w geometry."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import warnings
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from passerelle import demo
from passerelle.demo import DEMO_IDENTITIES, DemoSourceError, build_demo_inbox

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "demo-sources"
IN_CI = os.environ.get("CI", "").lower() == "true"
FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z
T1W_MEMBER = "pydeface-2.1.0/tests/data/ds000031_sub-01_ses-006_run-001_T1w.nii.gz"
T1W_DESCRIPTION = "t1_mprage_sag_p2_iso"

# Everything in the tree that is deliberately not a readable DICOM instance.
JUNK = {
    ".passerelle-demo",
    "README.txt",
    ".DS_Store",
    "EXPORT24/.DS_Store",
    "EXPORT24/PAT0001/20240304/SER002/Thumbs.db",
    "EXPORT24/PAT0001/20240304/SER006/IM00002",  # first 300 bytes of IM00001
    "EXPORT24/PAT0002/20240611/MR000193.dcm",  # empty
}
STANDARD_UID_KEYWORDS = {"ImplementationClassUID", "TransferSyntaxUID", "CodingSchemeUID"}
# A Siemens source file has an over-long private SH value; pydicom warns on every access.
pytestmark = pytest.mark.filterwarnings("ignore:The value length:UserWarning")


def _build(dest: Path) -> Path:
    try:
        return build_demo_inbox(dest, CACHE)
    except DemoSourceError as exc:
        if IN_CI:
            raise
        pytest.skip(f"demo sources cannot be fetched (offline, empty cache?): {exc}")


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _walk(ds: Dataset):
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)
        else:
            yield elem


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        _rel(root, p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("demo-a") / "inbox")


@pytest.fixture(scope="module")
def instances(inbox: Path) -> dict[str, Dataset]:
    """Every readable DICOM instance (pixels skipped), keyed by relative path."""
    found: dict[str, Dataset] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vendor quirks in the Siemens source files
        for path in sorted(inbox.rglob("*")):
            if not path.is_file() or path.name == "DICOMDIR":
                continue
            try:
                ds = pydicom.dcmread(io.BytesIO(_read_bytes(path)), stop_before_pixels=True)
            except Exception:  # junk is checked separately
                continue
            if "SOPClassUID" in ds:
                found[_rel(inbox, path)] = ds
    return found


def test_only_known_junk_is_unreadable(inbox: Path, instances: dict[str, Dataset]) -> None:
    files = {_rel(inbox, p) for p in inbox.rglob("*") if p.is_file()}
    assert files - set(instances) - {"DICOMDIR"} == JUNK
    assert (inbox / "EXPORT24/PAT0001/20240304/SER002/Thumbs.db").read_bytes()[:4] == (
        b"\xd0\xcf\x11\xe0"
    )
    assert (inbox / "EXPORT24/PAT0002/20240611/MR000193.dcm").stat().st_size == 0
    truncated = (inbox / "EXPORT24/PAT0001/20240304/SER006/IM00002").read_bytes()
    full = (inbox / "EXPORT24/PAT0001/20240304/SER006/IM00001").read_bytes()
    assert len(truncated) == 300 and full.startswith(truncated) and truncated[128:132] == b"DICM"


def test_two_patients_and_their_studies(instances: dict[str, Dataset]) -> None:
    studies: dict[str, dict[str, str]] = defaultdict(dict)
    for ds in instances.values():
        studies[ds.PatientID][ds.StudyInstanceUID] = ds.StudyDate
    assert set(studies) == {ident["patient_id"] for ident in DEMO_IDENTITIES}
    p1, p2 = (studies[ident["patient_id"]] for ident in DEMO_IDENTITIES)
    assert len(p1) == 2 and sorted(p1.values()) == ["20240304", "20240916"]
    assert len(p2) == 1


def test_every_instance_carries_the_synthetic_identity(instances: dict[str, Dataset]) -> None:
    by_id = {ident["patient_id"]: ident for ident in DEMO_IDENTITIES}
    assert len(instances) > 500
    for rel, ds in instances.items():
        ident = by_id[ds.PatientID]
        assert str(ds.PatientName) == ident["patient_name"], rel
        assert ds.PatientBirthDate == ident["birth_date"], rel
        assert ds.AccessionNumber in ident["accession_numbers"].split(","), rel
        assert ds.OtherPatientIDs == ident["other_patient_ids"], rel
        assert ds.PatientAddress == ident["address"], rel
        assert ds.InstitutionName == ident["institution"], rel
        assert str(ds.OperatorsName) == ident["operator"], rel
        assert ds.StudyDate == ds.SeriesDate == ds.ContentDate == ds.AcquisitionDate, rel
        assert ds.StudyDate in ident["study_dates"].split(","), rel


def test_identity_is_planted_where_deidentification_must_look(
    inbox: Path, instances: dict[str, Dataset]
) -> None:
    t1w = [ds for ds in instances.values() if ds.SeriesDescription == T1W_DESCRIPTION]
    assert len(t1w) == 3 * 192
    commented = [ds for ds in t1w if "ImageComments" in ds]
    assert commented and all(str(ds.PatientName) in ds.ImageComments for ds in commented)
    for ds in t1w:
        item = ds.RequestAttributesSequence[0]
        assert str(ds.PatientName) in item.ReasonForTheRequestedProcedure
        assert item.RequestedProcedureID == ds.AccessionNumber
        assert ds.private_block(0x0011, "DEMO_RIS 1.0")[0x10].value == str(ds.PatientName)
    # Folder names never reveal who the patient is, but one file is named by accession.
    secrets = [ident["patient_id"] for ident in DEMO_IDENTITIES]
    secrets += [part for i in DEMO_IDENTITIES for part in i["patient_name"].split("^")]
    for path in inbox.rglob("*"):
        assert not any(s.lower() in path.name.lower() for s in secrets), path
    accessions = {a for i in DEMO_IDENTITIES for a in i["accession_numbers"].split(",")}
    assert any(Path(rel).stem in accessions for rel in instances)


def test_uids_are_regenerated_and_consistent(instances: dict[str, Dataset]) -> None:
    sops = [ds.SOPInstanceUID for ds in instances.values()]
    assert len(set(sops)) == len(sops)
    study_uids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rel, ds in instances.items():
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID, rel
        study_uids[(ds.PatientID, ds.StudyDate)].add(ds.StudyInstanceUID)
        for elem in [*_walk(ds.file_meta), *_walk(ds)]:
            if elem.VR != "UI" or not elem.value or elem.keyword in STANDARD_UID_KEYWORDS:
                continue
            if elem.keyword.endswith("ClassUID"):
                continue
            values = elem.value if isinstance(elem.value, list) else [elem.value]
            for value in values:
                assert str(value).startswith(("2.25.", "1.2.840.10008.")), (rel, elem)
    assert all(len(uids) == 1 for uids in study_uids.values())


def test_dicomdir_indexes_files_that_exist(inbox: Path, instances: dict[str, Dataset]) -> None:
    fs = FileSet(inbox / "DICOMDIR")
    assert len(fs) > 192
    assert {i.PatientID for i in fs} == {ident["patient_id"] for ident in DEMO_IDENTITIES}
    for instance in fs:
        rel = _rel(inbox, Path(instance.path))
        assert instances[rel].SOPInstanceUID == instance.SOPInstanceUID


def test_build_is_deterministic_and_idempotent(inbox: Path, tmp_path: Path) -> None:
    other = _build(tmp_path / "inbox")
    assert _tree_digest(other) == _tree_digest(inbox)
    for path in [inbox, *inbox.rglob("*")]:
        assert path.lstat().st_mtime == FIXED_MTIME, path
    # A second call sees the marker and leaves the existing tree untouched.
    probe = inbox / "README.txt"
    inode = probe.stat().st_ino
    assert build_demo_inbox(inbox, CACHE) == inbox
    assert probe.stat().st_ino == inode


def test_size_stays_modest(inbox: Path) -> None:
    files = [p for p in inbox.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60_000_000
    assert sum(len(_read_bytes(p)) for p in files) < 60_000_000


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_demo_inbox(tmp_path, tmp_path / "cache")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_download_failure_names_package_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "network unreachable")

    monkeypatch.setattr(demo.subprocess, "run", offline)
    cache = tmp_path / "empty-cache"
    with pytest.raises(DemoSourceError, match=re.escape("pydeface==2.1.0")) as err:
        build_demo_inbox(tmp_path / "inbox", cache)
    assert str(cache) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "inbox").exists()


def test_cli_prints_one_line_without_identities(
    inbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main([str(inbox), "--cache", str(CACHE)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "2 patients" in out and "3 studies" in out
    for ident in DEMO_IDENTITIES:
        assert ident["patient_id"] not in out
        assert ident["patient_name"].split("^")[0] not in out


def _dcm2niix() -> str:
    candidate = Path(sys.executable).parent / "dcm2niix"
    found = str(candidate) if candidate.exists() else shutil.which("dcm2niix")
    if found is None:
        if IN_CI:
            pytest.fail("dcm2niix is required in CI")
        pytest.skip("dcm2niix not installed")
    return found


@pytest.fixture(scope="module")
def source_t1w(inbox: Path) -> nib.Nifti1Image:
    with tarfile.open(CACHE / "pydeface-2.1.0.tar.gz", mode="r:gz") as tar:
        member = tar.extractfile(T1W_MEMBER)
        assert member is not None
        return nib.Nifti1Image.from_bytes(gzip.decompress(member.read()))


@pytest.mark.parametrize(
    "series_dir",
    [
        "EXPORT24/PAT0001/20240304/SER002",  # explicit VR, extensionless
        "EXPORT24/PAT0001/20240916/SER002",  # RLE inside .dcm.gz
        "EXPORT24/PAT0002/20240611",  # RLE, flat .dcm next to other series
    ],
)
def test_t1w_reconstructs_like_the_source_nifti(
    series_dir: str,
    inbox: Path,
    instances: dict[str, Dataset],
    source_t1w: nib.Nifti1Image,
    tmp_path: Path,
) -> None:
    # dcm2niix recurses and cannot read .gz, so hand it exactly this T1w series, unzipped.
    staged = tmp_path / "in"
    staged.mkdir()
    for rel, ds in instances.items():
        if rel.rsplit("/", 1)[0] == series_dir and ds.SeriesDescription == T1W_DESCRIPTION:
            (staged / Path(rel).name.removesuffix(".gz")).write_bytes(_read_bytes(inbox / rel))
    assert len(list(staged.iterdir())) == 192
    out = tmp_path / "out"
    out.mkdir()
    cmd = [_dcm2niix(), "-b", "y", "-z", "n", "-f", "x", "-o", str(out), str(staged)]
    subprocess.run(cmd, check=True, capture_output=True)
    (nifti,) = out.glob("*.nii")

    # Canonical (RAS) reorientation undoes dcm2niix's axis permutation and flips.
    got = nib.as_closest_canonical(nib.load(nifti))
    want = nib.as_closest_canonical(source_t1w)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.affine, want.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(want.dataobj))
