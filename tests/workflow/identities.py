"""Plant synthetic identities into temporary copies of real scanner DICOM.

Two patients, three studies on different days; identities in standard tags, nested
sequences, a private block, SeriesDescription and ImageComments.
"""

from __future__ import annotations

import gzip
import io
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


@dataclass(frozen=True)
class Identity:
    family: str
    given: str
    patient_id: str
    birth: str
    other_id: str
    phone: str
    address: str
    physician: str
    operator: str

    @property
    def caret(self) -> str:
        return f"{self.family}^{self.given}"


PATIENTS = (
    Identity("DUPONT", "Jeanne-Hélène", "IPP77001234", "19610312", "NIP2610375123456",
             "04 72 11 22 33", "12 rue des Lilas^Lyon^69003", "MARTIN^Paul", "BERNARD^Claire"),
    Identity("LÉVÊQUE", "Théodore", "IPP77005678", "19480907", "NIP1480975654321",
             "04 91 55 66 77", "3 boulevard Longchamp^Marseille^13001", "FAURE^Agnès",
             "ROUSSEL^Hugo"),
)  # fmt: skip
INSTITUTION = "Hôpital Saint-Exupéry"
INSTITUTION_ADDRESS = "8 avenue Rockefeller, 69008 Lyon"
STATION = "IRM3SAINTEX"
SERIAL = "SN998877"
# (patient index, study day, accession): patient 0 comes back 98 days later.
STUDIES = ((0, date(2023, 5, 17), "ACC23051701"), (0, date(2023, 8, 23), "ACC23082302"),
           (1, date(2023, 6, 2), "ACC23060203"))  # fmt: skip


def _read(path: Path) -> Dataset:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return pydicom.dcmread(io.BytesIO(data))


def _uid(old: str, salt: str) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{salt}/{old}').int}"


def stamp(ds: Dataset, who: Identity, day: date, accession: str, study: int, when: str) -> None:
    d = day.strftime("%Y%m%d")
    ds.PatientName = who.caret
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth
    ds.OtherPatientIDs = who.other_id
    ds.PatientTelephoneNumbers = who.phone
    ds.PatientAddress = who.address
    ds.ReferringPhysicianName = who.physician
    ds.OperatorsName = who.operator
    ds.AccessionNumber = accession
    ds.StudyID = f"E{accession[-5:]}"
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = INSTITUTION_ADDRESS
    ds.StationName = STATION
    ds.DeviceSerialNumber = SERIAL
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, kw, d)
    for kw in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
        setattr(ds, kw, when)
    if "AcquisitionDateTime" in ds:
        ds.AcquisitionDateTime = d + when
    request = Dataset()
    request.RequestedProcedureID = accession
    request.ScheduledProcedureStepID = who.patient_id
    request.ReasonForTheRequestedProcedure = f"Contrôle {who.family} {who.given}"
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0011, "HOSPITAL RIS 1.0", create=True)
    block.add_new(0x10, "LO", who.caret)
    block.add_new(0x11, "LO", who.patient_id)
    ds.ImageComments = f"Patiente Mme {who.family} {who.given}, née le 12/03/1961"
    if ds.get("SeriesDescription"):
        ds.SeriesDescription = f"{ds.SeriesDescription} {who.family}"
    # Distinct UIDs per study so three copies of the same real data are three studies.
    salt = f"{who.patient_id}-{study}"
    ds.StudyInstanceUID = _uid("study", salt)
    for kw in ("SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        if kw in ds:
            setattr(ds, kw, _uid(str(getattr(ds, kw)), salt))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def build(testdata: Path, inbox: Path) -> dict[str, list[str]]:
    """An inbox of three stamped studies; returns the identifying strings planted."""
    xa30 = testdata / "siemens_xa30_exam" / "In"
    series = [
        sorted((xa30 / "5_anat-T1w_acq-tfl").iterdir()),
        sorted((xa30 / "8_gre_field_mapping").iterdir()),
        sorted((xa30 / "9_gre_field_mapping").iterdir()),
        sorted((testdata / "ge_siemens_epi" / "In" / "20180918Si" / "mr_0003").glob("*.dcm")),
    ]
    for study, (who_i, day, accession) in enumerate(STUDIES):
        who = PATIENTS[who_i]
        when = f"{9 + study:02d}1504.250000"
        for s, files in enumerate(series):
            for n, src in enumerate(files):
                ds = _read(src)
                stamp(ds, who, day, accession, study, when)
                dst = inbox / f"export{study}" / f"s{s}" / f"IM{n:04d}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(dst)
    planted = {
        "names": [p.family for p in PATIENTS] + [p.given for p in PATIENTS]
        + [p.physician.split("^")[0] for p in PATIENTS]
        + [p.operator.split("^")[0] for p in PATIENTS],
        "ids": [p.patient_id for p in PATIENTS] + [p.other_id for p in PATIENTS]
        + [a for _, _, a in STUDIES] + [SERIAL, STATION],
        "texts": [INSTITUTION, "Saint-Exupery", "Rockefeller", "rue des Lilas", "Longchamp"]
        + [p.phone for p in PATIENTS],
        "dates": [p.birth for p in PATIENTS] + [d.strftime("%Y%m%d") for _, d, _ in STUDIES],
    }  # fmt: skip
    return planted


def study_datetimes() -> list[datetime]:
    return [
        datetime.combine(day, datetime.strptime(f"{9 + i:02d}1504", "%H%M%S").time())
        for i, (_, day, _) in enumerate(STUDIES)
    ]
