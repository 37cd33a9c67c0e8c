"""De-identification engine: the resolved PS3.15 profile, keyed UIDs and date shifts, and the
pseudonymisation of copies of real scanner files into which synthetic identities are planted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydicom import uid
from pydicom.dataset import Dataset

from passerelle.deid.apply import (
    Context,
    clean_text,
    pseudonymise,
    pseudonymise_file,
    read_dataset,
)
from passerelle.deid.dates import (
    age_band,
    patient_shift,
    shift_da,
    shift_dates_in_text,
    shift_dt,
    shift_iso,
    shift_pair,
    shift_tm,
)
from passerelle.deid.profile import EDITION, Options, load_profile
from passerelle.deid.text import strip_accents
from passerelle.deid.uids import keyed_uid, scrub_embedded_uids
from passerelle.keys import SecretKey
from passerelle.labels import patient_key, subject_label

from .dicom_copies import PHILIPS, XA30, XA30_T1, dicoms, load, raw_bytes, save

# --- synthetic identities planted into copies of the real files ----------------------------

FAMILY, GIVEN = "Châtelain-Dupré", "Élodie"
PATIENT_NAME = f"{FAMILY}^{GIVEN}^Marie-Noëlle"
PATIENT_ID = "SYNTH-4711-QX"
OTHER_ID = "ALT-99812-ZK"
ISSUER = "HOPITAL-SYNTHETIQUE"
BIRTH = "19610317"
STUDY_DATE, STUDY_TIME = "20240304", "235930"
REFERRING = "Lefèvre^Hélène"
PERFORMING = "Ozturk^Baptiste"
OPERATOR = "Wójcik^Zbigniew"
INSTITUTION = "Clinique Sainte-Véronique Lyonnaise"
ADDRESS = "12 rue des Lilas, 69100 Villeurbanne"
ACCESSION = "ACC20240304X77"
STUDY_ID = "ETUDE-5521"
PLANTED = (
    PATIENT_NAME, PATIENT_ID, OTHER_ID, ISSUER, BIRTH, STUDY_DATE, REFERRING, PERFORMING,
    OPERATOR, INSTITUTION, ADDRESS, ACCESSION, STUDY_ID, "2024-03-04", "04/03/2024",
)  # fmt: skip
PLANTED_UID = "1.2.826.0.1.3680043.9999.20240304.4711"
SAFE_TEXT = re.compile(r"[A-Za-z0-9 _+=().,:/-]*")
UID_SYNTAX = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))+")
XA30_T1B = f"{XA30}/6_anat-T1w_acq-tfl"
XA30_BOLD = f"{XA30}/7_func-bold_task-fa_run-1"
XA30_GRE = f"{XA30}/8_gre_field_mapping"


def plant_identity(ds: Dataset) -> Dataset:
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.IssuerOfPatientID = ISSUER
    ds.OtherPatientIDs = OTHER_ID
    ds.PatientBirthDate = BIRTH
    ds.StudyDate, ds.StudyTime = STUDY_DATE, STUDY_TIME
    ds.AccessionNumber = ACCESSION
    ds.StudyID = STUDY_ID
    ds.ReferringPhysicianName = REFERRING
    ds.PerformingPhysicianName = PERFORMING
    ds.OperatorsName = OPERATOR
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = ADDRESS
    ds.StudyDescription = f"IRM cérébrale {FAMILY.upper()}"
    ds.SeriesDescription = f"{ds.SeriesDescription} Mme Châtelain {STUDY_DATE}"
    ds.ImageComments = (
        f"Patiente {GIVEN} {FAMILY.upper()} vue par Dr Lefèvre le 04/03/2024, dossier {PATIENT_ID}"
    )
    request = Dataset()
    request.RequestedProcedureID = ACCESSION
    request.ScheduledProcedureStepID = STUDY_ID
    request.RequestedProcedureDescription = f"IRM {FAMILY} {BIRTH}"
    ds.RequestAttributesSequence = [request]
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = PLANTED_UID
    ds.ReferencedStudySequence = [study_ref]
    ds.private_block(0x0011, "SYNTH PRIVATE", create=True).add_new(0x10, "LO", PATIENT_NAME)
    return ds


def needles(value: str) -> set[str]:
    """The value as it could leak: caret or space form, either order, accent-folded, parts."""
    forms = {value, value.replace("^", " ")}
    forms |= {" ".join(reversed(value.split("^"))), "^".join(reversed(value.split("^")))}
    forms |= {strip_accents(f) for f in forms}
    parts = {p for f in forms for p in re.split(r"[\s^,./-]+", f) if len(p) >= 4}
    return {n for n in forms | parts if not (n.isdigit() and len(n) < 5)}


def leaks(data: bytes, values: tuple[str, ...]) -> list[str]:
    low = data.lower()
    found = []
    for value in values:
        for n in needles(value):
            for form in {n, n.lower(), n.upper(), n.title()}:
                for encoding in ("utf-8", "latin-1"):
                    try:
                        b = form.encode(encoding)
                    except UnicodeEncodeError:
                        continue
                    if b in data or b.lower() in low:
                        found.append(form)
    return sorted(set(found))


def walk(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def uid_values(ds: Dataset) -> list[str]:
    values = []
    for elem in [*walk(ds), *walk(ds.file_meta)]:
        if elem.VR == "UI" and elem.value:
            items = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
            values += [str(v) for v in items]
    return values


def referenced_uids(ds: Dataset) -> set[str]:
    return {str(e.value) for e in walk(ds) if e.keyword == "ReferencedSOPInstanceUID"}


def instant(da: str, tm: str) -> datetime:
    return datetime.strptime(da + tm[:6], "%Y%m%d%H%M%S")


# --- the profile -----------------------------------------------------------------------------


def test_profile_resolves_known_rows():
    p = load_profile()
    assert p.edition == EDITION == "2024b"
    assert p.options_used == Options().enabled()
    assert "retain_long_modified_dates" in p.options_used
    assert "retain_institution_identity" not in p.options_used
    assert p.action(0x00080050) == "Z"  # Accession Number (replaced by a keyed value)
    assert p.action(0x00100030) == "X"  # Patient's Birth Date (project rule; table says Z)
    assert p.action(0x00080020) == "C"  # Study Date: shifted under Modified Dates
    assert p.action(0x00080080) == "X"  # Institution Name
    assert p.action(0x00181000) == "X"  # Device Serial Number, despite Retain Device Identity
    assert p.action(0x00081010) == "X"  # Station Name, same
    assert p.action(0x00081090) is None  # Manufacturer's Model Name: not listed, kept
    assert p.action(0x0008103E) == "C"  # Series Description: cleaned
    assert p.action(0x00100040) == "K"  # Patient's Sex: Retain Patient Characteristics
    assert p.action(0x00200052) == "U"  # Frame of Reference UID
    assert p.action(0x00291010) == "C"  # private: Retain Safe Private decides per element
    assert p.action(0x00050010) == "X"  # odd groups below 0009 cannot be private


def test_profile_combined_actions():
    p = load_profile()
    assert p.action(0x00081110) == "Z"  # Referenced Study Sequence X/Z
    assert p.action(0x00100020) == "D"  # Patient ID Z/D
    assert p.action(0x00081070) == "D"  # Operators' Name X/Z/D
    assert p.action(0x00081140) == "U"  # Referenced Image Sequence X/Z/U*
    assert p.action(0x00081111) == "D"  # Referenced Performed Procedure Step Seq. X/Z/D
    assert p.action(0x00080013) == "C"  # Instance Creation Time X/Z/D, Modified Dates C
    assert p.action(0x0040A730) == "Z"  # Content Sequence D: an SR's text is not vouched for
    # Retain Device Identity says K, Modified Dates says C: the cleaning wins.
    assert p.action(0x0018700C) == "C"
    no_dates = load_profile(Options(retain_long_modified_dates=False))
    assert no_dates.action(0x00080013) == "D"
    assert no_dates.action(0x00080020) == "Z"


def test_profile_options_override_the_basic_profile():
    default = load_profile()
    assert load_profile() is default  # resolved once per set of options
    institution = load_profile(Options(retain_institution_identity=True))
    assert institution.action(0x00080080) == "K"
    assert institution.action(0x00080081) == "K"
    assert load_profile(Options(retain_device_identity=False)).action(0x00181000) == "X"
    assert load_profile(Options(clean_descriptors=False)).action(0x0008103E) == "X"
    assert load_profile(Options(retain_uids=True)).action(0x00200052) == "K"
    assert load_profile(Options(retain_safe_private=False)).action(0x00291010) == "X"
    assert load_profile(Options(retain_patient_chars=False)).action(0x00100040) == "Z"


def test_profile_wildcard_rows():
    p = load_profile()
    assert p.action(0x60003000) == "X"  # (60XX,3000) Overlay Data
    assert p.action(0x601E3000) == "X"
    assert p.action(0x60024000) == "X"  # (60XX,4000) Overlay Comments
    assert p.action(0x50001234) == "X"  # (50XX,XXXX) Curve Data
    assert p.action(0x601E0022) == "X"  # rest of an overlay group: it goes with its data
    assert p.action(0x60200010) is None  # outside the repeating range
    assert p.action(0x70050010) == "C"  # odd: private


def test_method_codes():
    p = load_profile()
    codes = dict(p.method_codes())
    assert set(codes) == {"113100", "113105", "113107", "113108", "113109", "113111"}
    assert codes["113100"] == "Basic Application Confidentiality Profile"
    assert all(len(v) <= 64 for v in p.method_text())
    full = load_profile(Options(retain_institution_identity=True, retain_uids=True))
    assert {"113110", "113112"} <= {c for c, _ in full.method_codes()}


def test_options_are_validated():
    with pytest.raises(ValueError):
        Options(date_shift_min_days=10, date_shift_max_days=-10)
    with pytest.raises(ValueError):
        Options(age_band_bottom=95)


@pytest.mark.parametrize(
    ("age", "band"),
    [(0, ("0-17", 0)), (17, ("0-17", 0)), (18, ("18-29", 18)), (29, ("18-29", 18)),
     (30, ("30-39", 30)), (89, ("80-89", 80)), (90, ("90+", 90)), (104, ("90+", 90))],
)  # fmt: skip
def test_age_bands(age, band):
    assert age_band(age) == band


# --- text cleaning -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["anat-T1w_acq-tfl", "ep2d_diff_mddw_30_p2", "Axial EPI-FMRI (Sequential I to S)",
     "DWI b=1000", "MR Brain w/o", "TE 30 ms TR 2000", "WIP ADNI_Sag3D MPRAGE"],
)  # fmt: skip
def test_clean_text_keeps_ordinary_descriptors(text):
    assert clean_text(text, ["Dupont^Jean", "SYNTH-4711-QX"]) == text


@pytest.mark.parametrize(
    "text",
    ["IRM de JEAN DUPONT", "DUPONT^JEAN T1", "t1 Jean-Dupont", "t1_dupontjean",
     "vu par Dr. Martin", "Mme Durand flair", "M. Petit", "Pr Leroy", "courrier au Confrère Morel",
     "Madame Élodie", "ref SYNTH-4711-QX", "né le 04/03/1961", "exam 2024-03-04", "tel 0612345678"],
)  # fmt: skip
def test_clean_text_removes_identities(text):
    out = clean_text(text, ["Dupont^Jean", "SYNTH-4711-QX"])
    assert SAFE_TEXT.fullmatch(out)
    low = out.lower()
    for word in ("jean", "dupont", "martin", "durand", "petit", "leroy", "morel", "elodie", "4711"):
        assert word not in low, (text, out)
    assert not re.search(r"\d{4,}|\d+/\d+", out)


def test_clean_text_folds_accents_and_name_order():
    ids = [PATIENT_NAME]
    assert clean_text(f"{GIVEN} CHATELAIN flair", ids) == "flair"
    assert clean_text("DUPRÉ^ÉLODIE t2", ids) == "t2"
    assert clean_text("Cœur T1", []) == "Coeur T1"


# --- keyed UIDs ---------------------------------------------------------------------------------

uids = st.from_regex(r"[1-9][0-9]{0,3}(\.(0|[1-9][0-9]{0,9})){2,10}", fullmatch=True).filter(
    lambda u: len(u) <= 64 and not u.startswith("1.2.840.10008.")
)


@settings(max_examples=200)
@given(uids)
def test_keyed_uid_is_deterministic_and_valid(secret_key, source):
    new = keyed_uid(secret_key, source)
    assert new == keyed_uid(secret_key, source + "\x00")  # padding is not part of a UID
    assert new.startswith("2.25.") and len(new) <= 64 and UID_SYNTAX.fullmatch(new)
    assert new != keyed_uid(SecretKey(b"another key, another mapping!" * 2), source)


@given(st.lists(uids, min_size=2, max_size=60, unique=True))
def test_keyed_uid_is_injective(secret_key, sources):
    assert len({keyed_uid(secret_key, u) for u in sources}) == len(sources)


def test_well_known_uids_are_kept(secret_key):
    for known in (uid.EnhancedMRImageStorage, uid.ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.50"):
        assert keyed_uid(secret_key, known) == known


def test_embedded_uids_keep_their_length(secret_key):
    text = 'tReferenceImage0 = ""1.2.840.10008.5.1.4.1.1.4.1;1.3.12.2.1107.5.2.43.67093.2022071;3""'
    out = scrub_embedded_uids(secret_key, text)
    assert len(out) == len(text)
    assert "1.2.840.10008.5.1.4.1.1.4.1" in out and "67093" not in out and "2.25." in out
    assert scrub_embedded_uids(secret_key, "version 5.7.1.1 at 10.0.0.1") == (
        "version 5.7.1.1 at 10.0.0.1"
    )


# --- date shifts --------------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2099, 12, 31))
patients = st.text(min_size=1, max_size=30)
# Leap days, year ends and the range limits.
BOUNDARIES = (
    datetime(2024, 2, 28, 23, 59, 59), datetime(2024, 2, 29, 0, 0, 1),
    datetime(2023, 12, 31, 23, 59, 59), datetime(2000, 3, 1, 0, 0, 0),
    datetime(1901, 1, 1), datetime(2099, 12, 31, 23, 59, 59),
)  # fmt: skip


def as_pair(t: datetime, fraction: str = "") -> tuple[str, str]:
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S") + fraction


@given(patients)
def test_shift_is_keyed_per_patient_and_in_range(secret_key, patient):
    shift = patient_shift(secret_key, patient, -730, -30)
    assert shift == patient_shift(secret_key, patient, -730, -30)
    assert -730 <= shift.days <= -30 and 0 <= shift.seconds < 86400
    assert shift.microseconds == 0


def test_different_patients_get_different_shifts(secret_key):
    shifts = {patient_shift(secret_key, f"SITE\x00{n:06d}", -730, -30) for n in range(300)}
    assert len(shifts) == 300


@settings(max_examples=300)
@given(patients, instants, instants, st.sampled_from(["", ".5", ".042500", ".123456"]))
@example("P", BOUNDARIES[0], BOUNDARIES[1], "")
@example("P", BOUNDARIES[2], BOUNDARIES[3], ".1")
@example("Q", BOUNDARIES[4], BOUNDARIES[5], "")
def test_date_time_pairs_preserve_intervals(secret_key, patient, a, b, fraction):
    a, b = a.replace(microsecond=0), b.replace(microsecond=0)
    shift = patient_shift(secret_key, patient, -730, -30)
    a2 = instant(*shift_pair(*as_pair(a, fraction), shift))
    b2 = instant(*shift_pair(*as_pair(b, fraction), shift))
    assert a2 == a + shift and b2 - a2 == b - a
    da, tm = as_pair(a, fraction)
    assert shift_da(da, shift, tm) == a2.strftime("%Y%m%d")  # the date follows its time
    assert shift_tm(tm, shift) == a2.strftime("%H%M%S") + fraction


@settings(max_examples=300)
@given(
    patients, instants, instants,
    st.sampled_from(["", ".1", ".000001", ".999999"]), st.sampled_from(["", "+0100", "-0530"]),
)  # fmt: skip
@example("P", BOUNDARIES[0], BOUNDARIES[2], "", "+0100")
def test_datetimes_preserve_intervals(secret_key, patient, a, b, fraction, zone):
    a, b = a.replace(microsecond=0), b.replace(microsecond=0)
    shift = patient_shift(secret_key, patient, -730, -30)
    fmt = "%Y%m%d%H%M%S"
    out_a = shift_dt(a.strftime(fmt) + fraction + zone, shift)
    out_b = shift_dt(b.strftime(fmt) + fraction + zone, shift)
    assert out_a.endswith(fraction + zone) and len(out_a) == 14 + len(fraction + zone)
    a2, b2 = datetime.strptime(out_a[:14], fmt), datetime.strptime(out_b[:14], fmt)
    assert a2 == a + shift and b2 - a2 == b - a


@given(patients, instants)
def test_unpaired_time_moves_modulo_a_day(secret_key, patient, t):
    shift = patient_shift(secret_key, patient, -730, -30)
    moved = shift_tm(t.strftime("%H%M%S"), shift)
    assert moved == (t.replace(microsecond=0) + shift).strftime("%H%M%S")


@given(patients, instants)
def test_iso_strings_shift_like_dicom(secret_key, patient, t):
    t = t.replace(microsecond=0)
    shift = patient_shift(secret_key, patient, -730, -30)
    assert shift_iso(t.isoformat(), shift) == (t + shift).isoformat()
    day = t.date().isoformat()
    assert shift_iso(day, shift) == (t.date() + timedelta(shift.days)).isoformat()
    assert shift_iso(day, shift).replace("-", "") == shift_da(day.replace("-", ""), shift)


def test_partial_precision_is_kept():
    shift = timedelta(days=-40, seconds=5400)
    assert shift_tm("23", shift) == "00"
    assert shift_tm("2330", shift) == "0100"
    assert shift_tm("23:30:15.25", shift) == "01:00:15.25"  # ACR-NEMA separators survive
    assert shift_dt("2024", shift) == "2023"
    assert shift_dt("202403", shift) == "202401"
    assert shift_dt("20240304", shift) == "20240124"
    assert shift_dt("2024030423+0100", shift) == "2024012500+0100"
    assert shift_da("2024.03.04", shift) == "2024.01.24"
    assert shift_iso("2024-03-04T09:12", shift) == "2024-01-24T10:42"
    assert shift_iso("2024-03-04T09:12:04.5Z", shift) == "2024-01-24T10:42:04.5Z"
    with pytest.raises(ValueError):
        shift_da("2024-13-01", shift)
    with pytest.raises(ValueError):
        shift_dt("20241301", shift)


def test_dates_in_text_keep_their_length():
    shift = timedelta(days=-40, seconds=5400)
    text = "exam 20240304_MR61 / 2024-03-04 / 04/03/2024 / 04.03.2024 / 20241399 / 120240304"
    assert shift_dates_in_text(text, shift) == (
        "exam 20240124_MR61 / 2024-01-24 / 24/01/2024 / 24.01.2024 / 20241399 / 120240304"
    )
    # Restricted to the header's own dates, a software build date is left alone.
    build = "N4_VE11C_LATEST_20160120 scanned 20240304"
    assert shift_dates_in_text(build, shift, {"20240304"}) == (
        "N4_VE11C_LATEST_20160120 scanned 20240124"
    )


# --- pseudonymising real files with planted identities -----------------------------------------


@pytest.fixture(scope="module")
def xa30(testdata, secret_key, tmp_path_factory):
    """The enhanced XA30 T1w with planted identities, before and after pseudonymisation."""
    tmp = tmp_path_factory.mktemp("xa30")
    src = dicoms(testdata, XA30_T1)[0]
    ds = plant_identity(load(src))
    # A name and a date in kept private text (Siemens XA functional-group block).
    sds = ds.SharedFunctionalGroupsSequence[0][0x002110FE].value[0]
    sds[0x00211006].value = FAMILY
    sds[0x0021105E].value = f"Exam {STUDY_DATE}"
    planted = save(ds, tmp / "in" / "t1.dcm")
    ctx = Context.for_dataset(secret_key, read_dataset(planted))
    audit = pseudonymise_file(planted, tmp / "out" / "t1.dcm", ctx)
    return {
        "src": src, "planted": planted, "out": tmp / "out" / "t1.dcm", "ctx": ctx, "audit": audit,
        "before": load(planted), "after": pydicom.dcmread(tmp / "out" / "t1.dcm"),
    }  # fmt: skip


def test_planted_values_are_absent_from_the_source(testdata):
    # Guards the leak tests below: nothing they look for may occur in the real files.
    for src in (dicoms(testdata, XA30_T1)[0], *dicoms(testdata, PHILIPS, 2)):
        assert leaks(raw_bytes(src), PLANTED) == []


def test_no_planted_identity_in_output_bytes(xa30):
    assert leaks(xa30["planted"].read_bytes(), PLANTED)  # they were planted
    data = xa30["out"].read_bytes()
    assert leaks(data, PLANTED) == []
    assert PLANTED_UID.encode() not in data
    assert data[:128] == bytes(128) and data[128:132] == b"DICM"


def test_keyed_pseudonyms(xa30, secret_key):
    after, ctx = xa30["after"], xa30["ctx"]
    subject = subject_label(secret_key, patient_key(ISSUER, PATIENT_ID))
    assert ctx.subject == subject
    assert after.PatientID == subject and after.PatientName == f"sub-{subject}"
    assert after.AccessionNumber == secret_key.digest("accession", ACCESSION).hex()[:16]
    assert after.StudyID == secret_key.digest("studyid", STUDY_ID).hex()[:8]
    for keyword in ("PatientBirthDate", "IssuerOfPatientID", "OtherPatientIDs",
                    "InstitutionName", "InstitutionAddress", "DeviceSerialNumber", "StationName",
                    "PerformingPhysicianName"):  # fmt: skip
        assert keyword not in after, keyword
    assert after.ReferringPhysicianName == ""  # Z: emptied, Type 2 stays present
    assert after.OperatorsName == "ANON"  # X/Z/D resolved to a dummy
    assert after.PatientSex == xa30["before"].PatientSex
    assert after.PatientAge == "030Y" and xa30["audit"].age_band == "30-39"  # was 031Y


def test_dates_shift_as_instants(xa30):
    before, after, shift = xa30["before"], xa30["after"], xa30["ctx"].shift
    moved = instant(STUDY_DATE, STUDY_TIME) + shift
    assert instant(after.StudyDate, after.StudyTime) == moved
    for da, tm in (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime")):
        assert instant(after[da].value, after[tm].value) == (
            instant(before[da].value, before[tm].value) + shift
        )
    assert after.SeriesTime[6:] == before.SeriesTime[6:]  # fraction kept
    frames = zip(
        before.PerFrameFunctionalGroupsSequence, after.PerFrameFunctionalGroupsSequence, strict=True
    )
    for b, a in frames:
        old, new = (f.FrameContentSequence[0].FrameAcquisitionDateTime for f in (b, a))
        assert new == shift_dt(old, shift)
    assert after.LongitudinalTemporalInformationModified == "MODIFIED"


def test_descriptors_are_cleaned(xa30):
    after = xa30["after"]
    assert after.SeriesDescription == "anat-T1w_acq-tfl"
    assert after.StudyDescription == "IRM cerebrale"
    assert SAFE_TEXT.fullmatch(after.ImageComments)
    assert "vue par" in after.ImageComments
    request = after.RequestAttributesSequence[0]
    assert "RequestedProcedureID" not in request and "ScheduledProcedureStepID" not in request
    assert request.RequestedProcedureDescription == "IRM"
    assert len(after.ReferencedStudySequence) == 0


def test_private_elements(xa30):
    before, after = xa30["before"], xa30["after"]
    assert not any(e.tag.group == 0x0011 for e in walk(after))  # unknown creator: removed
    assert not any(e.tag.group == 0x0009 for e in walk(after))  # SYNGO INDEX SERVICE
    kept = after.SharedFunctionalGroupsSequence[0][0x002110FE].value[0]
    assert kept[0x00210010].value == "SIEMENS MR SDS 01"
    assert kept[0x00211006].value == "XXXXXXXXX-XXXXX"  # same length, parsers unaffected
    assert kept[0x0021105E].value == f"Exam {shift_dates_in_text(STUDY_DATE, xa30['ctx'].shift)}"
    old = before.SharedFunctionalGroupsSequence[0][0x002110FE].value[0][0x00211019].value
    assert len(kept[0x00211019].value) == len(old)  # Phoenix protocol: UIDs re-keyed in place
    assert b"67093" not in kept[0x00211019].value


def test_every_uid_is_keyed_and_meta_is_consistent(xa30):
    after, before = xa30["after"], xa30["before"]
    for value in uid_values(after):
        assert value.startswith(("2.25.", "1.2.840.10008.")), value
        assert len(value) <= 64 and UID_SYNTAX.fullmatch(value)
    meta = after.file_meta
    assert meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID != before.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == after.SOPClassUID == before.SOPClassUID
    assert meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert meta.ImplementationVersionName == "PASSERELLE"
    assert after.PatientIdentityRemoved == "YES"
    codes = {i.CodeValue for i in after.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113105", "113107", "113108", "113109", "113111"}
    assert all(i.CodingSchemeDesignator == "DCM" for i in after.DeidentificationMethodCodeSequence)
    assert any(EDITION in v for v in after.DeidentificationMethod)


def test_audit_names_elements_never_values(xa30):
    audit = xa30["audit"]
    text = json.dumps(audit.to_dict())
    assert leaks(text.encode(), PLANTED) == []
    assert audit.actions("PatientBirthDate") == {"X"}
    assert audit.actions("AccessionNumber") == {"D"}
    assert audit.actions("SeriesDescription") == {"C"}
    assert audit.actions("StudyInstanceUID") == {"U"}
    assert ("(0010,0030)", "PatientBirthDate", "X") in audit.entries
    assert sum(audit.counts.values()) == sum(e["count"] for e in audit.to_dict()["entries"])
    assert set(audit.counts) <= {"D", "Z", "X", "K", "C", "U"}


def test_output_is_deterministic(xa30, tmp_path):
    again = pseudonymise_file(xa30["planted"], tmp_path / "again.dcm", xa30["ctx"])
    assert (tmp_path / "again.dcm").read_bytes() == xa30["out"].read_bytes()
    assert again.to_dict() == xa30["audit"].to_dict()


def test_dcm2niix_converts_the_pseudonymised_file_identically(xa30, tmp_path):
    dcm2niix = Path(sys.executable).with_name("dcm2niix")
    if not dcm2niix.exists():
        pytest.skip("dcm2niix not installed in this environment")
    volumes = []
    for name, src in (("orig", xa30["src"]), ("pseudo", xa30["out"])):
        folder = tmp_path / name
        (folder / "in").mkdir(parents=True)
        (folder / "in" / "f.dcm").write_bytes(src.read_bytes())
        subprocess.run(
            [dcm2niix, "-b", "y", "-z", "n", "-f", "%s", "-o", folder, folder / "in"],
            check=True, capture_output=True,
        )  # fmt: skip
        (nii,) = folder.glob("*.nii")
        volumes.append(nib.load(nii))
    original, pseudo = volumes
    assert original.shape == pseudo.shape
    assert np.array_equal(np.asanyarray(original.dataobj), np.asanyarray(pseudo.dataobj))
    assert np.allclose(original.affine, pseudo.affine)


def test_references_stay_consistent_across_files(testdata, secret_key, tmp_path):
    sources = {
        "t1": dicoms(testdata, XA30_T1B)[0],
        "bold": dicoms(testdata, XA30_BOLD)[0],  # references the T1w
        "gre": dicoms(testdata, XA30_GRE)[0],  # shares the T1w's frame of reference
    }
    before = {k: load(p, stop_before_pixels=True) for k, p in sources.items()}
    assert str(before["t1"].SOPInstanceUID) in referenced_uids(before["bold"])
    assert before["t1"].FrameOfReferenceUID == before["gre"].FrameOfReferenceUID
    assert before["t1"].FrameOfReferenceUID != before["bold"].FrameOfReferenceUID
    ctx = Context.for_dataset(secret_key, before["t1"])
    after = {}
    for k, src in sources.items():
        pseudonymise_file(src, tmp_path / f"{k}.dcm", ctx)
        after[k] = pydicom.dcmread(tmp_path / f"{k}.dcm", stop_before_pixels=True)
    assert str(after["t1"].SOPInstanceUID) in referenced_uids(after["bold"])
    assert after["t1"].FrameOfReferenceUID == after["gre"].FrameOfReferenceUID
    assert after["t1"].FrameOfReferenceUID != after["bold"].FrameOfReferenceUID
    assert len({a.StudyInstanceUID for a in after.values()}) == 1
    assert len({a.SeriesInstanceUID for a in after.values()}) == 3
    assert len({a.StudyDate for a in after.values()}) == 1  # one patient, one shift


def test_philips_gz_is_pseudonymised(testdata, secret_key, tmp_path):
    outs = []
    for src in dicoms(testdata, PHILIPS, 2):
        planted = save(plant_identity(load(src)), tmp_path / "in" / src.name)
        assert raw_bytes(planted) != planted.read_bytes()  # gzipped on disk
        ctx = Context.for_dataset(secret_key, read_dataset(planted))
        dst = tmp_path / "out" / src.name.removesuffix(".gz")
        pseudonymise_file(planted, dst, ctx)
        data = dst.read_bytes()
        assert data[128:132] == b"DICM"  # written uncompressed
        assert leaks(data, PLANTED) == []
        outs.append(pydicom.dcmread(dst))
    a, b = outs
    assert "SourceApplicationEntityTitle" not in a.file_meta  # "DicomBrowser" in the source
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a[0x20010010].value == "Philips Imaging DD 001"
    assert a[0x200110C8].value.startswith(shift_da("20210902", ctx.shift))  # exam card name
    assert "InstitutionalDepartmentName" not in a
    assert a.PatientAge == "040Y"  # source 041Y
    for value in uid_values(a):
        assert value.startswith(("2.25.", "1.2.840.10008.")), value


def test_private_creators_are_never_rewritten(testdata, secret_key):
    # This Philips PatientName contains "Philips": kept blocks must still keep their owner.
    ds = read_dataset(dicoms(testdata, PHILIPS, 1)[0])
    assert "philips" in str(ds.PatientName).lower()
    pseudonymise(ds, Context.for_dataset(secret_key, ds))
    assert ds[0x20010010].value == "Philips Imaging DD 001"
    assert ds[0x20050010].value == "Philips MR Imaging DD 001"
    assert (0x2005, 0x11) not in ds  # "Philips MR Imaging DD 002" is not on the list


def test_options_change_the_result(testdata, secret_key, tmp_path):
    src = dicoms(testdata, PHILIPS, 1)[0]
    options = Options(retain_long_modified_dates=False, retain_institution_identity=True)
    ds = plant_identity(read_dataset(src))
    ctx = Context.for_dataset(secret_key, ds, load_profile(options))
    pseudonymise(ds, ctx)
    assert ds.StudyDate == "" and ds.SeriesDate == "19000101"  # Z and D, nothing shifted
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert ds.InstitutionName == INSTITUTION
    assert "DeviceSerialNumber" not in ds
    codes = {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    assert "113112" in codes and "113107" not in codes


def test_age_from_birth_date_when_patient_age_is_missing(testdata, secret_key):
    ds = read_dataset(dicoms(testdata, PHILIPS, 1)[0])
    del ds.PatientAge
    ds.PatientBirthDate, ds.StudyDate = "19500110", "20240304"  # 74 at the study
    audit = pseudonymise(ds, Context.for_dataset(secret_key, ds))
    assert ds.PatientAge == "070Y" and audit.age_band == "70-79"
    assert "PatientBirthDate" not in ds
    assert date(1900, 1, 1) < date.fromisoformat(shift_iso("2024-03-04", timedelta(days=-30)))
