"""read_header and object classification on copies of real scanner files."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
from pathlib import Path

import pydicom
import pytest
from pydicom import uid
from pydicom.fileset import FileSet

from passerelle.dicom.classify import is_derived, is_localizer, is_mosaic, object_class
from passerelle.dicom.reader import Header, Unusable, read_header
from passerelle.keys import SecretKey
from passerelle.labels import opaque_id, patient_key, session_label, subject_label

from .dicom_copies import (
    GE_EPI,
    GE_README,
    PHILIPS,
    SI_MOSAIC_AP,
    XA30_BOLD,
    XA30_PHOENIX,
    XA30_T1,
    copy,
    dicoms,
    effective_echo_time,
    load,
    pixel_span,
    plant,
    raw_bytes,
    write_bytes,
)

FAKE_ID = "SYNTH-4711-QX"
FAKE_ISSUER = "SYNTHHOSPITAL"
FAKE_GIVEN, FAKE_FAMILY = "Synthia", "Testperson"

# Folders of the test data whose files are images, with a name for the test id.
IMAGE_SOURCES = {
    "xa30_enhanced": XA30_BOLD,
    "philips_gz": PHILIPS,
    "siemens_mosaic": SI_MOSAIC_AP,
    "ge_classic": GE_EPI,
}


def header(path: Path, key: SecretKey) -> Header:
    result = read_header(path, key)
    assert isinstance(result, Header), result
    return result


def unusable(path: Path, key: SecretKey) -> str:
    result = read_header(path, key)
    assert isinstance(result, Unusable), result
    assert result.reason and "\n" not in result.reason
    return result.reason


def assert_keyed_ids(h: Header, ds: pydicom.Dataset, key: SecretKey) -> None:
    """The header's ids are the keyed forms of the file's identifiers."""
    patient = patient_key(str(ds.get("IssuerOfPatientID", "") or ""), str(ds.PatientID))
    assert h.subject == subject_label(key, patient)
    assert h.patient == opaque_id(key, "patient", patient, 24)
    assert h.session == session_label(key, str(ds.StudyInstanceUID))
    assert h.study == opaque_id(key, "study", str(ds.StudyInstanceUID), 24)
    assert h.series == opaque_id(key, "series", str(ds.SeriesInstanceUID), 24)
    assert h.sop == opaque_id(key, "sop", str(ds.SOPInstanceUID), 24)


# --- readable objects ------------------------------------------------------------------


def test_enhanced_multiframe_mr(testdata, tmp_path, secret_key):
    src = dicoms(testdata, XA30_T1)[0]
    h = header(copy(src, tmp_path / "enhanced.dcm"), secret_key)
    ds = load(src, stop_before_pixels=True)
    assert h.object_class == "image"
    assert h.attrs["SOPClassUID"] == str(ds.SOPClassUID) == uid.EnhancedMRImageStorage
    assert h.attrs["NumberOfFrames"] == int(ds.NumberOfFrames) > 1
    assert h.attrs["SeriesDescription"] == ds.SeriesDescription
    assert h.attrs["SeriesNumber"] == int(ds.SeriesNumber)
    # Enhanced objects keep the echo time in the functional groups, not at top level.
    assert "EchoTime" not in ds
    assert h.attrs["EchoTime"] == pytest.approx(effective_echo_time(ds))
    assert_keyed_ids(h, ds, secret_key)


def test_classic_gzipped_philips(testdata, tmp_path, secret_key):
    src = dicoms(testdata, PHILIPS)[0]
    assert src.name.endswith(".dcm.gz")
    h = header(copy(src, tmp_path / src.name), secret_key)
    ds = load(src, stop_before_pixels=True)
    assert h.object_class == "image"
    assert h.attrs["SOPClassUID"] == uid.MRImageStorage
    assert h.attrs["SeriesDescription"] == ds.SeriesDescription
    assert h.attrs["EchoTime"] == pytest.approx(float(ds.EchoTime))
    assert h.attrs["Rows"] == ds.Rows
    assert_keyed_ids(h, ds, secret_key)
    # The same object uncompressed reads identically.
    plain = write_bytes(tmp_path / "plain.dcm", raw_bytes(src))
    assert header(plain, secret_key) == h


def test_siemens_mosaic(testdata, tmp_path, secret_key):
    src = dicoms(testdata, SI_MOSAIC_AP)[0]
    h = header(copy(src, tmp_path / "mosaic.dcm"), secret_key)
    ds = load(src, stop_before_pixels=True)
    assert h.object_class == "image"
    assert is_mosaic(h.attrs["ImageType"])
    assert h.attrs["ImageType"] == list(ds.ImageType)
    assert h.attrs["Columns"] == ds.Columns
    assert h.attrs["ScanningSequence"] == ds.ScanningSequence
    assert_keyed_ids(h, ds, secret_key)


@pytest.mark.parametrize("name", list(IMAGE_SOURCES))
def test_file_without_extension_reads_like_the_original(testdata, tmp_path, secret_key, name):
    src = dicoms(testdata, IMAGE_SOURCES[name])[0]
    with_ext = copy(src, tmp_path / "a" / src.name)
    without = write_bytes(tmp_path / "b" / "IM000001", raw_bytes(src))
    assert header(without, secret_key) == header(with_ext, secret_key)


def test_file_without_preamble_is_still_read(testdata, tmp_path, secret_key):
    src = dicoms(testdata, GE_EPI)[0]
    data = raw_bytes(src)
    assert data[128:132] == b"DICM"
    stripped = write_bytes(tmp_path / "nopreamble", data[132:])
    assert header(stripped, secret_key) == header(copy(src, tmp_path / "orig.dcm"), secret_key)


def test_phoenix_document_is_sr(testdata, tmp_path, secret_key):
    src = dicoms(testdata, XA30_PHOENIX)[0]
    h = header(copy(src, tmp_path / "phoenix.dcm"), secret_key)
    assert h.object_class == "sr"
    assert h.attrs["ObjectClass"] == "sr"
    assert h.attrs["SOPClassUID"] == str(load(src, stop_before_pixels=True).SOPClassUID)
    assert h.sop  # an SR is kept as source and still grouped like any other object


def test_age_from_birth_date_when_patient_age_missing(testdata, tmp_path, secret_key):
    src = dicoms(testdata, GE_EPI)[0]
    day_before = plant(
        src, tmp_path / "a.dcm", PatientAge=None, PatientBirthDate="19900615", StudyDate="20200614"
    )
    birthday = plant(
        src, tmp_path / "b.dcm", PatientAge=None, PatientBirthDate="19900615", StudyDate="20200615"
    )
    stated = plant(src, tmp_path / "c.dcm", PatientAge="041Y")
    assert header(day_before, secret_key).attrs["Age"] == 29
    assert header(birthday, secret_key).attrs["Age"] == 30
    assert header(stated, secret_key).attrs["Age"] == 41


# --- identities never leave the reader in clear ----------------------------------------


@pytest.mark.parametrize("name", [*IMAGE_SOURCES, "xa30_sr"])
def test_planted_identity_never_appears_in_header(testdata, tmp_path, secret_key, name):
    folder = IMAGE_SOURCES.get(name, XA30_PHOENIX)
    src = dicoms(testdata, folder)[0]
    suffix = ".dcm.gz" if src.name.endswith(".gz") else ".dcm"
    dst = plant(
        src,
        tmp_path / f"planted{suffix}",
        PatientID=FAKE_ID,
        IssuerOfPatientID=FAKE_ISSUER,
        PatientName=f"{FAKE_FAMILY}^{FAKE_GIVEN}",
        OtherPatientIDs="SYNTH-OTHER-99",
        PatientBirthDate="19800229",
    )
    ds = load(dst, stop_before_pixels=True)
    assert ds.PatientID == FAKE_ID  # the plant took
    h = header(dst, secret_key)
    text = json.dumps(dataclasses.asdict(h))
    for secret in (FAKE_ID, FAKE_ISSUER, FAKE_GIVEN, FAKE_FAMILY, "SYNTH-OTHER-99", "19800229"):
        assert secret not in text
    for uid_value in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert str(uid_value) not in text
    assert h.subject == subject_label(secret_key, patient_key(FAKE_ISSUER, FAKE_ID))


def test_issuer_separates_identical_patient_ids(testdata, tmp_path, secret_key):
    src = dicoms(testdata, GE_EPI)[0]
    a = plant(src, tmp_path / "a.dcm", PatientID=FAKE_ID, IssuerOfPatientID="HOSP-A")
    b = plant(src, tmp_path / "b.dcm", PatientID=FAKE_ID, IssuerOfPatientID="HOSP-B")
    assert header(a, secret_key).subject != header(b, secret_key).subject


# --- unusable input --------------------------------------------------------------------


def test_readme_text_is_not_dicom(testdata, tmp_path, secret_key):
    src = copy(testdata / GE_README, tmp_path / "README-Study.txt")
    assert unusable(src, secret_key).startswith("not DICOM")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [1, 131, 4096])
def test_random_bytes_are_not_dicom(tmp_path, secret_key, seed, size):
    path = write_bytes(tmp_path / "noise.bin", random.Random(seed).randbytes(size))
    assert unusable(path, secret_key).startswith("not DICOM")


def test_empty_file_is_not_dicom(tmp_path, secret_key):
    path = tmp_path / "empty.dcm"
    path.touch()
    assert unusable(path, secret_key).startswith("not DICOM")


def test_directory_and_missing_path_do_not_raise(tmp_path, secret_key):
    assert unusable(tmp_path, secret_key).startswith("unreadable")
    assert unusable(tmp_path / "gone.dcm", secret_key).startswith("unreadable")


@pytest.mark.parametrize("name", list(IMAGE_SOURCES))
def test_cut_in_pixel_data_is_truncated(testdata, tmp_path, secret_key, name):
    src = dicoms(testdata, IMAGE_SOURCES[name])[0]
    offset, length = pixel_span(src)
    data = raw_bytes(src)
    assert offset + length <= len(data)
    cut = offset + length // 2
    suffix = ".dcm.gz" if src.name.endswith(".gz") else ".dcm"
    path = write_bytes(tmp_path / f"cut{suffix}", data[:cut])
    reason = unusable(path, secret_key)
    assert reason.startswith("truncated")
    assert str(length) in reason


def test_cut_in_encapsulated_pixel_data_is_truncated(testdata, tmp_path, secret_key):
    src = dicoms(testdata, GE_EPI)[0]
    ds = load(src)
    ds.compress(uid.RLELossless, generate_instance_uid=False)
    whole = tmp_path / "rle.dcm"
    ds.save_as(whole)
    h = header(whole, secret_key)
    assert h == header(copy(src, tmp_path / "plain.dcm"), secret_key)
    offset, length = pixel_span(whole)
    assert length == 0xFFFFFFFF  # undefined length: fragments up to a delimiter
    data = whole.read_bytes()
    for n, cut in enumerate((offset + (len(data) - offset) // 2, len(data) - 8)):
        reason = unusable(write_bytes(tmp_path / f"cut{n}.dcm", data[:cut]), secret_key)
        assert reason.startswith("truncated"), reason


def test_cut_gzip_stream_is_unusable(testdata, tmp_path, secret_key):
    src = dicoms(testdata, PHILIPS)[0]
    data = src.read_bytes()
    path = tmp_path / "cut.dcm.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError):
        gzip.decompress(path.read_bytes())
    assert unusable(path, secret_key)


@pytest.mark.parametrize("name", list(IMAGE_SOURCES))
def test_removed_pixel_data(testdata, tmp_path, secret_key, name):
    src = dicoms(testdata, IMAGE_SOURCES[name])[0]
    suffix = ".dcm.gz" if src.name.endswith(".gz") else ".dcm"
    path = plant(src, tmp_path / f"nopixels{suffix}", PixelData=None)
    assert "PixelData" not in load(path)
    assert unusable(path, secret_key).startswith("no pixel data")


@pytest.mark.parametrize("name", list(IMAGE_SOURCES))
def test_truncated_header(testdata, tmp_path, secret_key, name):
    src = dicoms(testdata, IMAGE_SOURCES[name])[0]
    data = raw_bytes(src)
    offset, _ = pixel_span(src)
    for n, cut in enumerate((200, offset // 2, offset - 3)):
        unusable(write_bytes(tmp_path / f"head{n}", data[:cut]), secret_key)


# --- DICOMDIR --------------------------------------------------------------------------


def test_dicomdir_is_a_directory_object(testdata, tmp_path, secret_key):
    staged = [copy(p, tmp_path / "staged" / p.name) for p in dicoms(testdata, GE_EPI, 2)]
    fs = FileSet()
    for path in staged:
        fs.add(path)
    media = tmp_path / "media"
    fs.write(media)
    h = header(media / "DICOMDIR", secret_key)
    assert h.object_class == "directory"
    assert (h.patient, h.subject, h.study, h.series, h.sop) == ("", "", "", "", "")
    # The referenced files (written without extension) are still images in their own right.
    members = [p for p in media.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    assert len(members) == 2
    assert {header(p, secret_key).sop for p in members} == {
        header(p, secret_key).sop for p in staged
    }


# --- SOP classes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sop_class", "expected"),
    [
        (uid.SecondaryCaptureImageStorage, "secondary_capture"),
        (uid.MultiFrameTrueColorSecondaryCaptureImageStorage, "secondary_capture"),
        (uid.EncapsulatedPDFStorage, "pdf"),
        (uid.SegmentationStorage, "seg"),
        (uid.RTStructureSetStorage, "rt"),
        (uid.RTDoseStorage, "rt"),
        (uid.GrayscaleSoftcopyPresentationStateStorage, "presentation_state"),
        (uid.RawDataStorage, "raw"),
        ("1.3.12.2.1107.5.9.1", "private"),
        (uid.MRImageStorage, "image"),
        (uid.EnhancedMRImageStorage, "image"),
        (uid.CTImageStorage, "image"),
        (uid.EnhancedSRStorage, "sr"),
        (uid.KeyObjectSelectionDocumentStorage, "sr"),
        (uid.MediaStorageDirectoryStorage, "directory"),
        (uid.MRSpectroscopyStorage, "other"),
        ("1.2.840.10008.5.1.4.1.1.999999", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_object_class(sop_class, expected):
    assert object_class(sop_class) == expected


@pytest.mark.parametrize(
    ("sop_class", "expected"),
    [
        (uid.SecondaryCaptureImageStorage, "secondary_capture"),
        (uid.GrayscaleSoftcopyPresentationStateStorage, "presentation_state"),
        ("1.3.12.2.1107.5.9.1", "private"),
        (uid.RawDataStorage, "raw"),
    ],
)
def test_reader_classifies_by_sop_class(testdata, tmp_path, secret_key, sop_class, expected):
    src = dicoms(testdata, GE_EPI)[0]
    ds = load(src)
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    del ds.PixelData  # non-image objects need no pixels
    path = tmp_path / "object.dcm"
    ds.save_as(path)
    h = header(path, secret_key)
    assert h.object_class == expected
    assert h.attrs["SOPClassUID"] == sop_class


def test_image_type_helpers():
    assert is_mosaic(["ORIGINAL", "PRIMARY", "M", "mosaic"])
    assert not is_mosaic(["ORIGINAL", "PRIMARY", "M"])
    assert is_derived(["DERIVED", "PRIMARY", "DIFFUSION", "ADC"])
    assert not is_derived(["ORIGINAL", "PRIMARY", "DERIVED"])
    assert not is_derived([])
    assert is_localizer(["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert not is_localizer(["ORIGINAL", "PRIMARY"])
