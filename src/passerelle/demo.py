"""Build a synthetic "hospital DICOM export" (the demo inbox) from data shipped on PyPI.

The inbox mimics what lands on a research server after a PACS export: two invented
patients, three MR studies, real Siemens headers, awkward folder names, gzipped and
RLE-compressed series, a DICOMDIR that only covers part of the tree, and junk files.
Every identity in it is synthetic (see ``DEMO_IDENTITIES``) and deliberately planted in
the places de-identification has to look: standard tags, free text, a nested sequence
item, a private tag and a file name.

Sources (fetched with pip into a cache, sha256-pinned so the output is reproducible):

* ``pydeface==2.1.0`` sdist: a whole-head T1w NIfTI, re-sliced here into a classic
  single-frame MR Image Storage series.
* ``heudiconv==1.5.1`` wheel: real Siemens DICOM test files (scouts, field map, DWI
  mosaic, an Enhanced MR MPR, a Phoenix protocol SR document).

The build is deterministic: UIDs are ``2.25.<uuid5>`` derived from fixed names, gzip
headers carry no timestamp, and every file and folder gets the same mtime.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    MRImageStorage,
    RLELossless,
)
from pydicom.valuerep import format_number_as_ds

from passerelle.fsutil import sha256_file

__all__ = ["DEMO_IDENTITIES", "DemoSourceError", "build_demo_inbox", "main"]

# Bump whenever the produced bytes change, so existing inboxes get rebuilt.
BUILDER_VERSION = "passerelle-demo-inbox/1"
MARKER_NAME = ".passerelle-demo"
# 2024-01-01T00:00:00Z: a fixed mtime keeps incremental indexers quiet across rebuilds.
FIXED_MTIME = 1704067200
# Name-based UUIDs give stable 2.25 UIDs; pydicom's generate_uid(prefix=None) ignores
# entropy_srcs and returns a random uuid4, so it cannot be used here.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:passerelle:demo-inbox")
_EXPORT_ROOT = "EXPORT24"
_STANDARD_UID_ROOT = "1.2.840.10008."


class DemoSourceError(RuntimeError):
    """The PyPI archives the demo is made from could not be fetched or verified."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    package: str
    version: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...] = ()


_PYDEFACE = _Source(
    "pydeface",
    "2.1.0",
    "pydeface-2.1.0.tar.gz",
    "f3c0059e311788d6b8e196230af70584c618209068c25414b1bb83d7d051efe4",
    ("--no-binary", ":all:"),
)
_HEUDICONV = _Source(
    "heudiconv",
    "1.5.1",
    "heudiconv-1.5.1-py3-none-any.whl",
    "a8926a8b10afa9cf04c4aaddf9e3c1b846536483f9fd138ac34abb9080ec89d7",
)
_T1W_MEMBER = "pydeface-2.1.0/tests/data/ds000031_sub-01_ses-006_run-001_T1w.nii.gz"
_HEU = "heudiconv/tests/data/"
_SCOUT = _HEU + "01-anat-scout/0001.dcm"
_FMAP = _HEU + "01-fmap_acq-3mm/1.3.12.2.1107.5.2.43.66112.2016101409263663466202201.dcm"
_PHANTOM = _HEU + "phantom.dcm"
_B0DWI = _HEU + "b0dwiForFmap/b0dwi_for_fmap+00001.dcm"
_PHOENIX_SCOUT = _HEU + "Phoenix/01+AA/01+AA+00001.dcm"
_PHOENIX_SR = _HEU + "Phoenix/99+PhoenixDocument/99+PhoenixDocument+00001.dcm"
_ENHANCED_MPR = _HEU + "MRI_102TD_PHA_S.MR.Chen_Matthews_1.3.1.2022.11.16.15.50.20.357.31204541.dcm"
_MOSAIC = _HEU + "axasc35.dcm"


def _fetch(src: _Source, cache: Path) -> Path:
    """Return the cached archive, downloading it with pip only when missing."""
    path = cache / src.filename
    spec = f"{src.package}=={src.version}"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *src.pip_args,
            "--disable-pip-version-check",
            "--quiet",
            "--retries",
            "1",
            "--timeout",
            "20",
            "-d",
            str(cache),
            spec,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            rc = proc.returncode
        except OSError:
            rc = -1
        if rc != 0 or not path.is_file():
            raise DemoSourceError(
                f"could not download {spec} into {cache} (pip exit {rc}); "
                "check network access or pre-fill the cache"
            )
    if sha256_file(path) != src.sha256:
        raise DemoSourceError(f"{spec}: {path} has an unexpected sha256; delete it and retry")
    return path


@dataclass
class _Sources:
    t1w: nib.Nifti1Image
    wheel: zipfile.ZipFile

    @classmethod
    def load(cls, cache: Path) -> _Sources:
        sdist = _fetch(_PYDEFACE, cache)
        wheel = _fetch(_HEUDICONV, cache)
        with tarfile.open(sdist, mode="r:gz") as tar:
            member = tar.extractfile(_T1W_MEMBER)
            if member is None:
                raise DemoSourceError(f"{_T1W_MEMBER} missing from {sdist}")
            raw = gzip.decompress(member.read())
        return cls(t1w=nib.Nifti1Image.from_bytes(raw), wheel=zipfile.ZipFile(wheel))

    def dicom(self, member: str) -> Dataset:
        # Vendor files carry harmless quirks (over-long SH values) that pydicom warns about.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(io.BytesIO(self.wheel.read(member)))


# -------------------------------------------------------------------- identities


@dataclass(frozen=True)
class _Patient:
    folder: str
    name: str
    patient_id: str
    birth_date: str
    sex: str
    other_ids: str
    address: str
    telephone: str


@dataclass(frozen=True)
class _Study:
    key: str
    patient: _Patient
    date: str
    time: str
    t1w_time: str
    accession: str
    study_id: str
    description: str

    @property
    def uid(self) -> str:
        return _uid("study", self.key)

    @property
    def age(self) -> str:
        born = self.patient.birth_date
        years = int(self.date[:4]) - int(born[:4]) - (self.date[4:] < born[4:])
        return f"{years:03d}Y"


# Shared by every study: one (invented) hospital, one scanner, one team.
_INSTITUTION = {
    "InstitutionName": "CHU Fictif de Passerelle",
    "InstitutionAddress": "1 place de l'Exemple, 69000 Lyon, FR",
    "InstitutionalDepartmentName": "Neuroradiologie",
    "ReferringPhysicianName": "MARTIN^Claire",
    "PerformingPhysicianName": "BERNARD^Paul",
    "OperatorsName": "PETIT^Manon",
    "StationName": "MRCDEMO01",
    "DeviceSerialNumber": "DEMO-SN-4242",
}

_P1 = _Patient(
    folder="PAT0001",
    name="DUPONT^Jeanne",
    patient_id="IPP-DEMO-0001",
    birth_date="19780512",
    sex="F",
    other_ids="NIP-DEMO-77810",
    address="12 rue des Lilas, 69003 Lyon",
    telephone="01 99 00 12 34",
)
_P2 = _Patient(
    folder="PAT0002",
    name="MOREAU^Lucien",
    patient_id="IPP-DEMO-0002",
    birth_date="19610923",
    sex="M",
    other_ids="NIP-DEMO-55102",
    address="4 impasse du Moulin, 38000 Grenoble",
    telephone="04 65 71 22 33",
)
_P1_S1 = _Study(
    key="p1s1",
    patient=_P1,
    date="20240304",
    time="091204.000000",
    t1w_time="092545.500000",
    accession="ACC2403041187",
    study_id="E1187",
    description="IRM^ENCEPHALE SANS INJECTION",
)
_P1_S2 = _Study(
    key="p1s2",
    patient=_P1,
    date="20240916",
    time="113402.000000",
    t1w_time="114517.250000",
    accession="ACC2409160452",
    study_id="E0452",
    description="IRM^ENCEPHALE CONTROLE",
)
_P2_S1 = _Study(
    key="p2s1",
    patient=_P2,
    date="20240611",
    time="133815.000000",
    t1w_time="140211.750000",
    accession="ACC2406110093",
    study_id="E0093",
    description="IRM^ENCEPHALE",
)
_STUDIES = (_P1_S1, _P1_S2, _P2_S1)

DEMO_IDENTITIES: list[dict[str, str]] = [
    {
        "folder": p.folder,
        "patient_name": p.name,
        "patient_id": p.patient_id,
        "birth_date": p.birth_date,
        "sex": p.sex,
        "other_patient_ids": p.other_ids,
        "address": p.address,
        "telephone": p.telephone,
        # Multi-study values are joined with "," (one entry per study, in date order).
        "accession_numbers": ",".join(s.accession for s in _STUDIES if s.patient is p),
        "study_ids": ",".join(s.study_id for s in _STUDIES if s.patient is p),
        "study_dates": ",".join(sorted(s.date for s in _STUDIES if s.patient is p)),
        "institution": _INSTITUTION["InstitutionName"],
        "institution_address": _INSTITUTION["InstitutionAddress"],
        "referring_physician": _INSTITUTION["ReferringPhysicianName"],
        "performing_physician": _INSTITUTION["PerformingPhysicianName"],
        "operator": _INSTITUTION["OperatorsName"],
        "station_name": _INSTITUTION["StationName"],
        "device_serial_number": _INSTITUTION["DeviceSerialNumber"],
    }
    for p in (_P1, _P2)
]


def _uid(*parts: str) -> str:
    # ISO/IEC 9834-8 / PS3.5 B.2: a UUID written as one integer under the 2.25 root.
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


class _UidMap:
    """One deterministic old->new UID mapping per study, applied at every depth."""

    # UI attributes naming a class, syntax or coding scheme rather than an instance.
    _KEEP = frozenset(
        {
            "TransferSyntaxUID",
            "ReferencedTransferSyntaxUIDInFile",
            "CodingSchemeUID",
            "ContextGroupExtensionCreatorUID",
            "PrivateInformationCreatorUID",
        }
    )

    def __init__(self, study: _Study) -> None:
        self._study = study
        self._map: dict[str, str] = {}

    def pin(self, old: str, new: str) -> None:
        self._map[old] = new

    def __call__(self, old: str) -> str:
        if not old or old.startswith(_STANDARD_UID_ROOT):
            return old
        if old not in self._map:
            self._map[old] = _uid("remap", self._study.key, old)
        return self._map[old]

    def applies_to(self, elem: DataElement) -> bool:
        kw = elem.keyword
        return elem.VR == "UI" and not kw.endswith("ClassUID") and kw not in self._KEEP

    def remap(self, elem: DataElement) -> None:
        if isinstance(elem.value, MultiValue | list):
            elem.value = [self(str(v)) for v in elem.value]
        elif elem.value:
            elem.value = self(str(elem.value))


def _walk(ds: Dataset) -> Iterator[DataElement]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)
        else:
            yield elem


def _stamp(ds: Dataset, study: _Study, series_time: str | None = None) -> None:
    """Overwrite every identifying attribute with the study's synthetic identity."""
    p = study.patient
    if "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.PatientAge = study.age
    ds.OtherPatientIDs = p.other_ids
    ds.PatientAddress = p.address
    ds.PatientTelephoneNumbers = p.telephone
    ds.AccessionNumber = study.accession
    ds.StudyID = study.study_id
    ds.StudyDescription = study.description
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.date
    ds.StudyTime = study.time
    if series_time is not None:
        ds.SeriesTime = series_time
    for keyword, value in _INSTITUTION.items():
        setattr(ds, keyword, value)
    for keyword in ("PerformedProcedureStepDescription", "RequestedProcedureDescription"):
        if keyword in ds:
            setattr(ds, keyword, study.description)
    if "PerformedProcedureStepID" in ds:
        ds.PerformedProcedureStepID = f"PPS{study.study_id}"
    # Nested and private dates (e.g. per-frame DT, PPS dates) must agree with the study day.
    for elem in _walk(ds):
        if not elem.value or elem.keyword == "PatientBirthDate":
            continue
        if elem.VR == "DA":
            elem.value = study.date
        elif elem.VR == "DT":
            elem.value = study.date + str(elem.value)[8:]


def _plant_leaks(ds: Dataset, study: _Study) -> None:
    """Put identity where naive de-identification misses it: nested item and private tag."""
    p = study.patient
    item = Dataset()
    item.RequestedProcedureID = study.accession
    item.ScheduledProcedureStepID = f"SPS{study.study_id}"
    item.ScheduledProcedureStepDescription = study.description
    item.RequestedProcedureDescription = study.description
    item.ReasonForTheRequestedProcedure = f"Cephalees - {p.name}"
    ds.RequestAttributesSequence = DicomSequence([item])
    block = ds.private_block(0x0011, "DEMO_RIS 1.0", create=True)
    block.add_new(0x10, "LO", p.name)
    block.add_new(0x11, "LO", p.patient_id)


def _adopt(ds: Dataset, study: _Study, uids: _UidMap) -> Dataset:
    """Make a real vendor file belong to our study: new UIDs everywhere, our identity."""
    uids.pin(str(ds.StudyInstanceUID), study.uid)
    # Walking converts raw elements, which re-triggers the vendor-quirk warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for elem in [*_walk(ds.file_meta), *_walk(ds)]:
            if uids.applies_to(elem):
                uids.remap(elem)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        _stamp(ds, study)
    return ds


# ------------------------------------------------------------------- T1w series


@dataclass(frozen=True)
class _SliceGeometry:
    orientation: list[float]
    spacing: tuple[float, float]
    thickness: float
    normal: np.ndarray
    order: list[int]
    corner: tuple[int, int]
    flip_cols: bool
    flip_rows: bool
    lps: np.ndarray

    def position(self, index: int) -> np.ndarray:
        return (self.lps @ np.array([index, *self.corner, 1.0]))[:3]

    def pixels(self, vol: np.ndarray, index: int) -> np.ndarray:
        plane = vol[index]
        if self.flip_cols:
            plane = plane[::-1, :]
        if self.flip_rows:
            plane = plane[:, ::-1]
        return np.ascontiguousarray(plane.T)


def _slice_geometry(affine_ras: np.ndarray, shape: tuple[int, ...]) -> _SliceGeometry:
    """Slice along voxel axis 0; in-plane axes 1 (columns) and 2 (rows).

    In-plane flips make the image look scanner-native (rows run toward +LPS of their
    dominant axis, except head-foot which runs toward the feet), which is what Siemens
    writes for a sagittal MPRAGE: IOP 0\\1\\0\\0\\0\\-1.
    """
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    e0, e1, e2 = (lps[:3, i] for i in range(3))
    dom1 = int(np.argmax(np.abs(e1)))
    flip_cols = bool(e1[dom1] < 0)
    dom2 = int(np.argmax(np.abs(e2)))
    flip_rows = bool((e2[dom2] > 0) == (dom2 == 2))
    u = e1 / np.linalg.norm(e1) * (-1.0 if flip_cols else 1.0)
    v = e2 / np.linalg.norm(e2) * (-1.0 if flip_rows else 1.0)
    normal = np.cross(u, v)
    order = list(range(shape[0]))
    if float(np.dot(e0, normal)) < 0:
        order.reverse()
    return _SliceGeometry(
        orientation=[round(float(x), 8) + 0.0 for x in (*u, *v)],
        spacing=(float(np.linalg.norm(e2)), float(np.linalg.norm(e1))),
        thickness=float(np.linalg.norm(e0)),
        normal=normal,
        order=order,
        corner=(shape[1] - 1 if flip_cols else 0, shape[2] - 1 if flip_rows else 0),
        flip_cols=flip_cols,
        flip_rows=flip_rows,
        lps=lps,
    )


def _ds_list(values: Sequence[float]) -> list[str]:
    # +0.0 folds -0.0 so the text never reads "-0.0".
    return [format_number_as_ds(round(float(v), 6) + 0.0) for v in values]


@dataclass
class _T1wVolume:
    data: np.ndarray
    geometry: _SliceGeometry
    slope: float | None
    intercept: float | None
    signed: bool
    bits_stored: int

    @classmethod
    def from_nifti(cls, img: nib.Nifti1Image) -> _T1wVolume:
        raw = np.asanyarray(img.dataobj.get_unscaled())
        slope, inter = img.header.get_slope_inter()
        if not np.issubdtype(raw.dtype, np.integer):
            raise DemoSourceError("T1w source is not integer-valued; cannot store as MR int16")
        signed = bool(raw.min() < 0)
        data = raw.astype(np.int16 if signed else np.uint16)
        peak = int(np.abs(raw).max())
        bits = 16 if signed else min(16, max(12, peak.bit_length()))
        scaled = slope is not None and (slope != 1.0 or (inter or 0.0) != 0.0)
        return cls(
            data=data,
            geometry=_slice_geometry(img.affine, img.shape),
            slope=float(slope) if scaled else None,
            intercept=float(inter or 0.0) if scaled else None,
            signed=signed,
            bits_stored=bits,
        )


def _t1w_series(
    vol: _T1wVolume, study: _Study, series_number: int, comments: str | None, rle: bool
) -> Iterator[Dataset]:
    g = vol.geometry
    rows, cols = vol.data.shape[2], vol.data.shape[1]
    series_uid = _uid("t1w-series", study.key)
    base = Dataset()
    base.SpecificCharacterSet = "ISO_IR 100"
    base.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    base.InstanceCreationDate = study.date
    base.InstanceCreationTime = study.t1w_time
    base.SOPClassUID = MRImageStorage
    base.SeriesTime = base.AcquisitionTime = base.ContentTime = study.t1w_time
    base.Modality = "MR"
    base.Manufacturer = "SIEMENS"
    base.ManufacturerModelName = "Prisma_fit"
    base.SoftwareVersions = "syngo MR E11"
    base.SeriesDescription = base.ProtocolName = "t1_mprage_sag_p2_iso"
    base.BodyPartExamined = "BRAIN"
    base.ScanningSequence = ["GR", "IR"]
    base.SequenceVariant = ["SP", "MP"]
    base.ScanOptions = "IR"
    base.MRAcquisitionType = "3D"
    base.SequenceName = "*tfl3d1_16ns"
    base.AngioFlag = "N"
    base.SliceThickness = format_number_as_ds(round(g.thickness, 6))
    base.RepetitionTime = "2300"
    base.EchoTime = "2.98"
    base.InversionTime = "900"
    base.NumberOfAverages = "1"
    base.ImagingFrequency = "123.251"
    base.ImagedNucleus = "1H"
    base.EchoNumbers = "1"
    base.MagneticFieldStrength = "3"
    base.SpacingBetweenSlices = base.SliceThickness
    base.NumberOfPhaseEncodingSteps = str(cols)
    base.EchoTrainLength = "1"
    base.PercentSampling = "100"
    base.PercentPhaseFieldOfView = "100"
    base.PixelBandwidth = "240"
    base.TransmitCoilName = "Body"
    base.ReceiveCoilName = "Head_32"
    base.AcquisitionMatrix = [0, cols, rows, 0]
    base.InPlanePhaseEncodingDirection = "ROW"
    base.FlipAngle = "9"
    base.VariableFlipAngleFlag = "N"
    base.SAR = "0.0421"
    base.dBdt = "0"
    base.PatientPosition = "HFS"
    base.StudyInstanceUID = study.uid
    base.SeriesInstanceUID = series_uid
    base.SeriesNumber = series_number
    base.AcquisitionNumber = 1
    base.ImageOrientationPatient = _ds_list(g.orientation)
    base.FrameOfReferenceUID = _uid("t1w-for", study.key)
    base.PositionReferenceIndicator = ""
    base.ImagesInAcquisition = len(g.order)
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.Rows, base.Columns = rows, cols
    base.PixelSpacing = _ds_list(g.spacing)
    base.BitsAllocated = 16
    base.BitsStored = vol.bits_stored
    base.HighBit = vol.bits_stored - 1
    base.PixelRepresentation = 1 if vol.signed else 0
    peak = int(vol.data.max())
    base.WindowCenter = str(peak // 2)
    base.WindowWidth = str(peak)
    if vol.slope is not None:
        base.RescaleIntercept = format_number_as_ds(vol.intercept or 0.0)
        base.RescaleSlope = format_number_as_ds(vol.slope)
        base.RescaleType = "US"
    if comments:
        base.ImageComments = comments
    _stamp(base, study, series_time=study.t1w_time)
    _plant_leaks(base, study)

    for number, index in enumerate(g.order, start=1):
        ds = copy.deepcopy(base)
        sop_uid = _uid("t1w-sop", study.key, str(number))
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = number
        pos = g.position(index)
        ds.ImagePositionPatient = _ds_list(pos)
        ds.SliceLocation = format_number_as_ds(round(float(np.dot(pos, g.normal)), 6) + 0.0)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        pixels = g.pixels(vol.data, index)
        if rle:
            ds.compress(RLELossless, pixels, encoding_plugin="pydicom", generate_instance_uid=False)
        else:
            ds.PixelData = pixels.tobytes()
        yield ds


# ---------------------------------------------------------------- tree writing


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class _Tree:
    root: Path
    # (relative path, dataset) of every plain, uncompressed-on-disk DICOM file.
    dicoms: list[tuple[PurePosixPath, Dataset]] = field(default_factory=list)

    def write(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def dicom(self, rel: str, ds: Dataset, gz: bool = False) -> bytes:
        data = _encode(ds)
        if gz:
            # mtime=0 and no embedded filename keep gzip output byte-stable.
            self.write(rel, gzip.compress(data, compresslevel=6, mtime=0))
        else:
            self.write(rel, data)
            self.dicoms.append((PurePosixPath(rel), ds))
        return data


def _study_dir(study: _Study) -> str:
    return f"{_EXPORT_ROOT}/{study.patient.folder}/{study.date}"


def _build_into(root: Path, src: _Sources) -> None:
    tree = _Tree(root)
    vol = _T1wVolume.from_nifti(src.t1w)

    # Patient 1, first study: classic extensionless IMxxxxx files, one folder per series.
    s = _P1_S1
    uids = _UidMap(s)
    base = _study_dir(s)
    tree.dicom(f"{base}/SER001/IM00001", _adopt(src.dicom(_SCOUT), s, uids))
    comment = f"{s.patient.name}: sequence refaite (mouvement)"
    for ds in _t1w_series(vol, s, 2, comments=comment, rle=False):
        tree.dicom(f"{base}/SER002/IM{ds.InstanceNumber:05d}", ds)
    fmap = tree.dicom(f"{base}/SER006/IM00001", _adopt(src.dicom(_FMAP), s, uids))
    # An interrupted copy: the header of a real file under the next image's name.
    tree.write(f"{base}/SER006/IM00002", fmap[:300])
    tree.write(f"{base}/SER002/Thumbs.db", _THUMBS_DB)

    # Patient 1, follow-up: same layout, but the export tool gzipped every file (and the
    # PACS had stored the T1w RLE-compressed, which also keeps the inbox under 60 MB).
    s = _P1_S2
    uids = _UidMap(s)
    base = _study_dir(s)
    tree.dicom(f"{base}/SER001/IM00001.dcm.gz", _adopt(src.dicom(_PHANTOM), s, uids), gz=True)
    for ds in _t1w_series(vol, s, 2, comments=None, rle=True):
        tree.dicom(f"{base}/SER002/IM{ds.InstanceNumber:05d}.dcm.gz", ds, gz=True)
    # One b0 volume of the DWI series: all three would blow the size budget.
    tree.dicom(f"{base}/SER028/IM00001.dcm.gz", _adopt(src.dicom(_B0DWI), s, uids), gz=True)

    # Patient 2: a different export tool: RLE T1w dumped flat as MRxxxxxx.dcm next to
    # per-series folders, and the protocol SR named after the accession number.
    s = _P2_S1
    uids = _UidMap(s)
    base = _study_dir(s)
    tree.dicom(f"{base}/SER001/IM00001", _adopt(src.dicom(_PHOENIX_SCOUT), s, uids))
    for ds in _t1w_series(vol, s, 2, comments=None, rle=True):
        tree.dicom(f"{base}/MR{ds.InstanceNumber:06d}.dcm", ds)
    tree.write(f"{base}/MR{len(vol.geometry.order) + 1:06d}.dcm", b"")
    tree.dicom(f"{base}/SER003/IM00001", _adopt(src.dicom(_ENHANCED_MPR), s, uids))
    tree.dicom(f"{base}/SER006/IM00001", _adopt(src.dicom(_MOSAIC), s, uids))
    tree.dicom(f"{base}/SER099/{s.accession}.dcm", _adopt(src.dicom(_PHOENIX_SR), s, uids))

    tree.write("README.txt", _README)
    tree.write(".DS_Store", _DS_STORE)
    tree.write(f"{_EXPORT_ROOT}/.DS_Store", _DS_STORE)
    tree.write("DICOMDIR", _dicomdir(tree.dicoms))


_README = (
    "EXPORT PACS - CHU Fictif de Passerelle\r\n"
    "Donnees de demonstration entierement synthetiques.\r\n"
    "Structure: EXPORT24/<patient>/<date d'examen>/<serie>/\r\n"
    "Certaines series sont compressees (.dcm.gz). Le DICOMDIR est partiel.\r\n"
).encode("ascii")
# Just enough of the real magic numbers for file sniffers to recognise them.
_THUMBS_DB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(2040)


# -------------------------------------------------------------------- DICOMDIR


def _is_file_id(rel: PurePosixPath) -> bool:
    """PS3.10 8.5: at most 8 components of at most 8 chars from A-Z, 0-9 and _."""
    ok = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    return len(rel.parts) <= 8 and all(0 < len(c) <= 8 and set(c) <= ok for c in rel.parts)


def _record(kind: str, ds: Dataset, keywords: Sequence[str]) -> Dataset:
    rec = Dataset()
    rec.OffsetOfTheNextDirectoryRecord = 0
    rec.RecordInUseFlag = 0xFFFF
    rec.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    rec.DirectoryRecordType = kind
    for kw in keywords:
        if kw in ds:
            rec[kw] = copy.deepcopy(ds[kw])
    return rec


@dataclass
class _Node:
    record: Dataset
    children: list[_Node] = field(default_factory=list)


def _dicomdir(files: list[tuple[PurePosixPath, Dataset]]) -> bytes:
    """Encode a DICOMDIR for the files whose paths are valid File IDs.

    pydicom's FileSet always relocates files into its own PTxxxxxx/... layout, so the
    records are built here and their byte offsets computed directly; the result loads
    cleanly with ``pydicom.fileset.FileSet``.
    """
    roots: dict[str, _Node] = {}
    index: dict[tuple[str, ...], _Node] = {}
    for rel, ds in files:
        if not _is_file_id(rel):
            continue
        pkey = (str(ds.PatientID),)
        skey = (*pkey, str(ds.StudyInstanceUID))
        sekey = (*skey, str(ds.SeriesInstanceUID))
        if pkey not in index:
            index[pkey] = roots[pkey[0]] = _Node(
                _record("PATIENT", ds, ["SpecificCharacterSet", "PatientName", "PatientID"])
            )
        if skey not in index:
            keys = ["SpecificCharacterSet", "StudyDate", "StudyTime", "StudyDescription"]
            keys += ["StudyInstanceUID", "StudyID", "AccessionNumber"]
            index[skey] = _Node(_record("STUDY", ds, keys))
            index[pkey].children.append(index[skey])
        if sekey not in index:
            keys = ["SpecificCharacterSet", "Modality", "SeriesInstanceUID", "SeriesNumber"]
            index[sekey] = _Node(_record("SERIES", ds, keys))
            index[skey].children.append(index[sekey])
        image = _record("IMAGE", ds, ["SpecificCharacterSet", "InstanceNumber"])
        image.ReferencedFileID = list(rel.parts)
        image.ReferencedSOPClassUIDInFile = ds.SOPClassUID
        image.ReferencedSOPInstanceUIDInFile = ds.SOPInstanceUID
        image.ReferencedTransferSyntaxUIDInFile = ds.file_meta.TransferSyntaxUID
        index[sekey].children.append(_Node(image))

    ordered: list[_Node] = []

    def preorder(nodes: list[_Node]) -> None:
        for node in nodes:
            ordered.append(node)
            preorder(node.children)

    preorder(list(roots.values()))

    top = Dataset()
    top.FileSetID = "DEMO2024"
    top.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    top.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    top.FileSetConsistencyFlag = 0
    top.DirectoryRecordSequence = DicomSequence([n.record for n in ordered])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = _uid("dicomdir")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    top.file_meta = meta

    # Offsets are UL (fixed width), so record sizes do not depend on their values: encode
    # once with zeros, locate each item from the end of the file, then fill them in.
    sizes = []
    for node in ordered:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, node.record)
        sizes.append(8 + len(fp.getvalue()))  # item tag + length, then the record
    draft = _encode(top)
    offset = len(draft) - sum(sizes)
    offsets: dict[int, int] = {}
    for node, size in zip(ordered, sizes, strict=True):
        offsets[id(node)] = offset
        if draft[offset : offset + 4] != b"\xfe\xff\x00\xe0":
            raise AssertionError("DICOMDIR record offset mismatch")
        offset += size

    def link(nodes: list[_Node]) -> None:
        for i, node in enumerate(nodes):
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            node.record.OffsetOfTheNextDirectoryRecord = offsets[id(nxt)] if nxt else 0
            first = offsets[id(node.children[0])] if node.children else 0
            node.record.OffsetOfReferencedLowerLevelDirectoryEntity = first
            link(node.children)

    patients = list(roots.values())
    link(patients)
    if patients:
        top.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offsets[id(patients[0])]
        top.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offsets[id(patients[-1])]
    final = _encode(top)
    if len(final) != len(draft):
        raise AssertionError("DICOMDIR size changed while filling offsets")
    return final


# --------------------------------------------------------------------- public API


def _freeze_mtimes(root: Path) -> None:
    # Children before parents: touching a child never bumps a directory's mtime, but
    # creating files does, so directories are stamped last.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.utime(Path(dirpath) / name, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))
        del dirnames


def _marker_version(dest: Path) -> str | None:
    marker = dest / MARKER_NAME
    if not marker.is_file():
        return None
    return marker.read_text(encoding="utf-8").strip()


def build_demo_inbox(dest: Path, cache: Path) -> Path:
    """Build the synthetic export at ``dest`` (a no-op if this version is already there).

    Source archives are fetched into ``cache`` with pip when missing; raises
    ``DemoSourceError`` when that fails. Returns ``dest``.
    """
    dest = Path(dest)
    cache = Path(cache)
    if _marker_version(dest) == BUILDER_VERSION:
        return dest
    # Never clobber a directory we did not create (an older demo build is fair game).
    if dest.exists() and _marker_version(dest) is None and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not a demo inbox; refusing to replace it")

    sources = _Sources.load(cache)
    # A sibling (same filesystem) so the final rename is atomic; absolute so "." works.
    target = dest.absolute()
    tmp = target.with_name(f".{target.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _build_into(tmp, sources)
        (tmp / MARKER_NAME).write_text(BUILDER_VERSION + "\n", encoding="utf-8")
        _freeze_mtimes(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        sources.wheel.close()
    os.utime(dest, (FIXED_MTIME, FIXED_MTIME))
    return dest


def _summary(dest: Path) -> str:
    files = [p for p in dest.rglob("*") if p.is_file() and p.name != MARKER_NAME]
    patients = {s.patient.patient_id for s in _STUDIES}
    return (
        f"demo inbox at {dest}: {len(files)} files, "
        f"{len(patients)} patients, {len(_STUDIES)} studies"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m passerelle.demo",
        description="Build a synthetic hospital DICOM export from PyPI-shipped data.",
    )
    parser.add_argument("dest", type=Path, help="folder to create (the demo inbox)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(".cache/demo-sources"),
        help="where downloaded source archives are kept (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        dest = build_demo_inbox(args.dest, args.cache)
    except (DemoSourceError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
