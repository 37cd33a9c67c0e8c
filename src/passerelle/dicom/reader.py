"""Read one file's DICOM header without loading pixel data.

Returns either the attributes the pipeline needs (identifiers already keyed) or a
reason why the file cannot be used. Never raises for bad input.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial, read_sequence_item
from pydicom.tag import BaseTag

from passerelle.deid.apply import clean_text
from passerelle.deid.dates import age_years
from passerelle.deid.gate import collect
from passerelle.dicom.classify import object_class
from passerelle.keys import SecretKey
from passerelle.labels import opaque_id, patient_key, session_label, subject_label

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
UNDEFINED_LENGTH = 0xFFFFFFFF
GZIP_MAGIC = b"\x1f\x8b"
# pydicom only warns when a file ends inside encapsulated pixel data or a sequence.
EOF_BEFORE_DELIMITER = "End of file reached before delimiter"

# Plain attributes copied for classification and mapping (no identifiers among them).
_PLAIN = (
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "ProtocolName",
    "Manufacturer",
    "ManufacturerModelName",
    "MRAcquisitionType",
    "ScanningSequence",
    "SequenceVariant",
    "ImageType",
    "EchoTime",
    "EchoNumbers",
    "RepetitionTime",
    "InversionTime",
    "FlipAngle",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "InstanceNumber",
    "BodyPartExamined",
    "PatientSex",
    "BurnedInAnnotation",
)


@dataclass
class Header:
    # Identifiers are keyed before they leave this module: the index cache holds no
    # PatientID or UID in clear. Long opaque ids group files; labels name them in BIDS.
    object_class: str
    patient: str
    subject: str
    study: str
    session: str
    series: str
    sop: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Unusable:
    reason: str


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pydicom.valuerep.PersonName):
        return None
    if isinstance(value, int | float | str):
        return (
            value
            if not isinstance(value, pydicom.valuerep.DSfloat | pydicom.valuerep.IS)
            else (float(value) if isinstance(value, pydicom.valuerep.DSfloat) else int(value))
        )
    return str(value)


def _open(path: Path) -> tuple[BinaryIO, int]:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:
        data = gzip.decompress(path.read_bytes())
        return io.BytesIO(data), len(data)
    return path.open("rb"), path.stat().st_size


_PER_FRAME = 0x52009230
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _at_per_frame_groups(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) == _PER_FRAME


def _read_quickly(fh: BinaryIO, size: int) -> tuple[Dataset | None, bool]:
    """(header, pixels proven whole). A classic object is read whole in one pass (pixel data
    deferred). An enhanced multi-frame one is read up to the per-frame groups (thousands of
    items the index never needs), and the end of the file must prove that whole pixel data
    follow: (None, False) whenever that cannot be proven; the caller then reads it all.
    """
    ds = read_partial(fh, stop_when=_at_per_frame_groups, defer_size=1024)
    position = fh.tell()
    if position >= size:
        return ds, False
    ds = _proven_enhanced(ds, fh, size, position)
    return ds, ds is not None


def _proven_enhanced(ds: Dataset, fh: BinaryIO, size: int, position: int) -> Dataset | None:
    syntax = getattr(ds.get("file_meta"), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_implicit_VR or not syntax.is_little_endian:
        return None
    if "EchoTime" not in ds and _enhanced_echo_time(ds) is None:
        # The echo time lives in the per-frame groups: read their first item only.
        fh.seek(position)
        if fh.read(8)[4:6] != b"SQ":
            return None
        fh.seek(position + 12)
        first = read_sequence_item(fh, False, True, default_encoding)  # numbers only
        echo = first.get("MREchoSequence") if first is not None else None
        if echo and "EffectiveEchoTime" in echo[0]:
            ds.EchoTime = float(echo[0].EffectiveEchoTime)
    if syntax.is_encapsulated:
        fh.seek(size - len(_SEQUENCE_DELIMITER))
        return ds if fh.read(len(_SEQUENCE_DELIMITER)) == _SEQUENCE_DELIMITER else None
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
        expected = int(ds.Rows) * int(ds.Columns) * frames * samples * int(ds.BitsAllocated) // 8
    except (AttributeError, TypeError, ValueError):
        return None
    start = size - (expected + expected % 2) - 12  # explicit VR OB/OW header is 12 bytes
    if start < position:
        return None
    fh.seek(start)
    return ds if fh.read(4) == _PIXEL_DATA_TAG else None


def read_dataset(path: Path, headers_only: bool = False) -> Dataset:
    """A whole DICOM file, plain or gzipped (told by its magic bytes, not its name).

    Files without the Part 10 preamble, as some exports write them, are read as bare datasets.
    """
    fh, _ = _open(path)
    with fh:
        try:
            return pydicom.dcmread(fh, stop_before_pixels=headers_only)
        except InvalidDicomError:
            fh.seek(0)
            return pydicom.dcmread(fh, stop_before_pixels=headers_only, force=True)


def _before_frames(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) == _PER_FRAME or int(tag) >= 0x7FE00008


def read_identifying_part(path: Path) -> Dataset:
    """The header up to the per-frame groups and pixel data: every attribute that can name a
    person or a study, at a fraction of the cost of a full read of an enhanced object."""
    fh, _ = _open(path)
    with fh:
        return read_partial(fh, stop_when=_before_frames, force=True)


def _age_years(ds: Dataset) -> int | None:
    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "")

    return age_years(text("PatientAge"), text("PatientBirthDate"), text("StudyDate"))


def _enhanced_echo_time(ds: Dataset) -> float | None:
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(group)
        if not seq:
            continue
        echo = seq[0].get("MREchoSequence")
        if echo and "EffectiveEchoTime" in echo[0]:
            return float(echo[0].EffectiveEchoTime)
    return None


def _clean_descriptions(ds: Dataset, attrs: dict[str, Any]) -> None:
    """Descriptions drive the BIDS mapping, so they are kept, minus this header's identifiers
    (a name typed into SeriesDescription must not reach the index or the specs)."""
    identifiers = collect(ds).raw_values()
    for keyword in ("SeriesDescription", "ProtocolName"):
        if attrs.get(keyword):
            attrs[keyword] = clean_text(str(attrs[keyword]), identifiers)


def _pixel_problem(ds: Dataset, size: int) -> str | None:
    for tag in PIXEL_TAGS:
        if tag in ds:
            # keep_deferred: never read the pixel bytes (the handle is closed by now).
            raw = ds.get_item(tag, keep_deferred=True)
            tell = getattr(raw, "value_tell", None)
            length = getattr(raw, "length", 0)
            if tell is not None and length != UNDEFINED_LENGTH and tell + length > size:
                short = tell + length - size
                return (
                    f"truncated: pixel data declares {length} bytes, file ends {short} bytes short"
                )
            return None
    return "no pixel data in an image object"


def read_header(path: Path, key: SecretKey) -> Header | Unusable:
    try:
        fh, size = _open(path)
    except (OSError, EOFError, zlib.error) as exc:
        return Unusable(f"unreadable: {type(exc).__name__}")
    if size == 0:
        return Unusable("not DICOM: empty file")
    try:
        with fh, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds, pixels_checked = _read_quickly(fh, size)
            except InvalidDicomError:
                ds, pixels_checked = None, False
            if ds is None:
                fh.seek(0)
                try:
                    ds = pydicom.dcmread(fh, defer_size=1024)
                except InvalidDicomError:
                    fh.seek(0)
                    ds = pydicom.dcmread(fh, defer_size=1024, force=True)
                    if "SOPClassUID" not in ds:
                        return Unusable("not DICOM: no DICOM preamble or SOP Class")
    except Exception as exc:  # pydicom raises many types on corrupt headers
        return Unusable(f"unreadable: corrupt or truncated header ({type(exc).__name__})")
    if any(EOF_BEFORE_DELIMITER in str(w.message) for w in caught):
        return Unusable("truncated: file ends inside an undefined-length element")

    sop_class = ds.get("SOPClassUID") or getattr(
        ds.get("file_meta"), "MediaStorageSOPClassUID", None
    )
    cls = object_class(str(sop_class) if sop_class else None)
    if cls == "directory":
        return Header(cls, "", "", "", "", "", "", {"ObjectClass": cls})
    try:
        study = str(ds.get("StudyInstanceUID", "") or "").strip()
        series = str(ds.get("SeriesInstanceUID", "") or "").strip()
        sop = str(ds.get("SOPInstanceUID", "") or "").strip()
        pid = str(ds.get("PatientID", "") or "").strip()
        issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
        missing = [
            n
            for n, v in (
                ("PatientID", pid),
                ("StudyInstanceUID", study),
                ("SeriesInstanceUID", series),
                ("SOPInstanceUID", sop),
            )
            if not v
        ]
        if missing:
            return Unusable(f"missing required attribute {missing[0]}")
        attrs: dict[str, Any] = {k: _plain(ds.get(k)) for k in _PLAIN if k in ds}
        if isinstance(attrs.get("ImageType"), str):
            attrs["ImageType"] = [attrs["ImageType"]]
        if "EchoTime" not in attrs and (te := _enhanced_echo_time(ds)) is not None:
            attrs["EchoTime"] = te
        _clean_descriptions(ds, attrs)
        attrs["ObjectClass"] = cls
        attrs["SOPClassUID"] = str(sop_class)
        attrs["Age"] = _age_years(ds)
        if cls == "image" and not pixels_checked and (problem := _pixel_problem(ds, size)):
            return Unusable(problem)
    except Exception as exc:
        return Unusable(f"unreadable: corrupt attribute ({type(exc).__name__})")
    patient = patient_key(issuer, pid)
    return Header(
        object_class=cls,
        patient=opaque_id(key, "patient", patient, 24),
        subject=subject_label(key, patient),
        study=opaque_id(key, "study", study, 24),
        session=session_label(key, study),
        series=opaque_id(key, "series", series, 24),
        sop=opaque_id(key, "sop", sop, 24),
        attrs=attrs,
    )
