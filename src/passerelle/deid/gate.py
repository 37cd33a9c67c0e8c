"""The PHI gate: prove that no output carries an identifier from the source headers.

Identifying values are collected from the source headers of a session and kept in memory
only; every output (DICOM elements at any depth including private bytes, NIfTI header text,
JSON, TSV and any text file, and every file and folder name) is scanned for them. A hit
names the file and the field, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from passerelle.deid.text import alnum, tokens
from passerelle.dicom.classify import FUNCTIONAL_GROUP_TAGS

NAME_KEYWORDS = (
    "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
    "NameOfPhysiciansReadingStudy", "RequestingPhysician", "PhysiciansOfRecord",
    "ScheduledPerformingPhysicianName", "ResponsiblePerson", "ContentCreatorName",
)  # fmt: skip
ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "DeviceSerialNumber",
    "StationName", "RequestedProcedureID", "ScheduledProcedureStepID", "AdmissionID",
    "MedicalRecordLocator", "PerformedProcedureStepID", "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest", "IssuerOfPatientID",
)  # fmt: skip
DATE_KEYWORDS = (
    "PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "InstanceCreationDate", "PerformedProcedureStepStartDate",
)  # fmt: skip
TEXT_KEYWORDS = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "PatientAddress",
    "PatientTelephoneNumbers", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
)  # fmt: skip
# Below these lengths a value is too common to search as a substring (e.g. PatientID "DEV"
# inside "device"): it is matched as a whole token instead.
MIN_SUBSTRING = 6
MIN_NAME_TOKEN = 3
_DATE_FORMS = (
    (re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"), (1, 2, 3)),
    (re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"), (1, 2, 3)),
    (re.compile(r"(?<!\d)(\d{2})/(\d{2})/(\d{4})(?!\d)"), (3, 2, 1)),
    (re.compile(r"(?<!\d)(\d{2})\.(\d{2})\.(\d{4})(?!\d)"), (3, 2, 1)),
)
# Pixel and waveform payloads are binary images, not text: OCR screens images separately.
_SKIP_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54000100, 0x54001010}
# Numbers cannot spell a name, and an identifier stored as a number is not a realistic leak;
# skipping them keeps the gate fast on enhanced multi-frame objects (mostly per-frame numbers).
_NUMERIC_VRS = {"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"}
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
KEYED_UID_ROOT = "2.25."
_TEXT_SUFFIXES = {".json", ".tsv", ".txt", ".log", ".html", ".csv", ".md", ".bval", ".bvec"}


@dataclass
class Watchlist:
    names: list[tuple[str, ...]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    texts: set[str] = field(default_factory=set)
    # Clear values, in memory only, for the text cleaners that must find them in any spelling.
    raw_names: set[str] = field(default_factory=set)
    raw_ids: set[str] = field(default_factory=set)
    raw_texts: set[str] = field(default_factory=set)

    def raw_values(self) -> frozenset[str]:
        return frozenset(self.raw_names | self.raw_ids | self.raw_texts)

    def __repr__(self) -> str:  # never print what is watched for
        return (
            f"Watchlist({len(self.names)} names, {len(self.ids)} ids, {len(self.dates)} dates, "
            f"{len(self.texts)} texts)"
        )

    def __bool__(self) -> bool:
        return bool(self.names or self.ids or self.dates or self.texts)

    def add_name(self, value: str) -> None:
        self.raw_names.add(value)
        parts = tuple(t for t in tokens(value) if len(t) >= 2)
        if parts and parts not in self.names:
            self.names.append(parts)

    def add_id(self, value: str) -> None:
        self.raw_ids.add(value)
        norm = alnum(value)
        if len(norm) >= 2:
            self.ids.add(norm)

    def add_date(self, value: str) -> None:
        digits = re.sub(r"\D", "", value)[:8]
        if len(digits) == 8:
            self.dates.add(digits)

    def add_text(self, value: str) -> None:
        self.raw_texts.add(value)
        norm = " ".join(tokens(value))
        if len(norm) >= MIN_SUBSTRING:
            self.texts.add(norm)
        for line in re.split(r"[\^\n\r,;]", value):  # address parts: street, city...
            part = " ".join(tokens(line))
            if len(part) >= 8:
                self.texts.add(part)

    def merge(self, other: Watchlist) -> None:
        for n in other.names:
            if n not in self.names:
                self.names.append(n)
        self.ids |= other.ids
        self.dates |= other.dates
        self.texts |= other.texts
        self.raw_names |= other.raw_names
        self.raw_ids |= other.raw_ids
        self.raw_texts |= other.raw_texts


def _tags(keywords: tuple[str, ...]) -> tuple[BaseTag, ...]:
    return tuple(BaseTag(tag_for_keyword(k)) for k in keywords)


# Looked up by tag in the dataset's keys: a keyword lookup costs a dictionary search each.
_WATCHED = (
    (_tags(NAME_KEYWORDS), Watchlist.add_name),
    (_tags(ID_KEYWORDS), Watchlist.add_id),
    (_tags(DATE_KEYWORDS), Watchlist.add_date),
    (_tags(TEXT_KEYWORDS), Watchlist.add_text),
)


def collect(ds: Dataset, watch: Watchlist | None = None) -> Watchlist:
    """Identifying values of one source header, nested sequences included."""
    watch = watch if watch is not None else Watchlist()
    present = ds.keys()
    for tags, add in _WATCHED:
        for tag in tags:
            if tag not in present:
                continue
            value = ds[tag].value
            for v in value if isinstance(value, list | pydicom.multival.MultiValue) else [value]:
                if v not in (None, ""):
                    add(watch, str(v))
    for tag in list(present):
        # keep_deferred: large values (private blobs) read lazily stay unread.
        if tag not in FUNCTIONAL_GROUP_TAGS and ds.get_item(tag, keep_deferred=True).VR == "SQ":
            for item in ds[tag].value or []:
                collect(item, watch)
    return watch


def dates_in(text: str) -> set[str]:
    """Every date written in one of the watched forms, as YYYYMMDD."""
    found = set()
    for pattern, (y, m, d) in _DATE_FORMS:
        for match in pattern.finditer(text):
            found.add(match.group(y) + match.group(m) + match.group(d))
    return found


def scan_text(text: str, watch: Watchlist) -> list[str]:
    """Kinds of identifier found in one text value ('name', 'id', 'date', 'text')."""
    if not text:
        return []
    kinds = []
    toks = tokens(text)
    tokset = set(toks)
    for name in watch.names:
        family = name[0]
        if all(t in tokset for t in name) or (len(family) >= MIN_NAME_TOKEN and family in tokset):
            kinds.append("name")
            break
    squashed = "".join(toks)
    for ident in watch.ids:
        # Digits-only IDs must stand alone: as substrings they would hit random numbers.
        loose = len(ident) >= MIN_SUBSTRING and not ident.isdigit()
        if ident in tokset or (loose and ident in squashed):
            kinds.append("id")
            break
    if watch.dates and dates_in(text) & watch.dates:
        kinds.append("date")
    if watch.texts:
        spaced = " ".join(toks)
        if any(t in spaced for t in watch.texts):
            kinds.append("text")
    return kinds


@dataclass(frozen=True)
class Hit:
    file: str
    field: str
    kind: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field} ({self.kind})"


def _element_texts(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, str]]:
    for elem in ds:
        if elem.tag in _SKIP_TAGS or (elem.VR in _NUMERIC_VRS and not elem.tag.is_private):
            continue
        label = f"{prefix}{elem.keyword or f'({elem.tag.group:04X},{elem.tag.element:04X})'}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from _element_texts(item, f"{label}[{i}].")
            continue
        value = elem.value
        if value is None or (elem.VR == "UI" and str(value).startswith(KEYED_UID_ROOT)):
            continue  # keyed UIDs are digits made by us: scanning them only invites chance hits
        if isinstance(value, bytes):
            if not elem.tag.is_private and elem.VR in _BINARY_VRS:
                continue
            # Private blocks (Siemens CSA, Phoenix protocol) carry text inside binary.
            yield label, value.decode("latin-1")
        elif isinstance(value, list | pydicom.multival.MultiValue):
            yield label, "\\".join(str(v) for v in value)
        else:
            yield label, str(value)


def scan_dicom(path: Path, rel: str, watch: Watchlist) -> list[Hit]:
    return scan_dataset(pydicom.dcmread(path, force=True), rel, watch)


def scan_dataset(ds: Dataset, rel: str, watch: Watchlist) -> list[Hit]:
    """Every element at any depth, private blocks and file meta included."""
    hits = []
    meta = getattr(ds, "file_meta", None)
    sources = [("", ds)] + ([("file_meta.", meta)] if meta is not None else [])
    for prefix, block in sources:
        for label, text in _element_texts(block, prefix):
            for kind in scan_text(text, watch):
                hits.append(Hit(rel, label, kind))
    return hits


def scan_nifti(path: Path, rel: str, watch: Watchlist) -> list[Hit]:
    import nibabel as nib

    img = nib.load(path)
    hits = []
    for name in ("descrip", "aux_file", "intent_name", "db_name"):
        if name in img.header:
            text = img.header[name].tobytes().split(b"\0", 1)[0].decode("latin-1")
            hits += [Hit(rel, f"header.{name}", k) for k in scan_text(text, watch)]
    for i, ext in enumerate(img.header.extensions):
        content = ext.get_content()
        if isinstance(content, Dataset):
            texts = list(_element_texts(content, f"extension[{i}]."))
        else:
            raw = content if isinstance(content, bytes) else str(content).encode()
            texts = [(f"extension[{i}]", raw.decode("latin-1"))]
        for label, text in texts:
            hits += [Hit(rel, label, k) for k in scan_text(text, watch)]
    return hits


def _json_texts(obj: object, label: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{label}{k}(key)", str(k)
            yield from _json_texts(v, f"{label}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_texts(v, f"{label}{i}.")
    elif obj is not None:
        yield label.rstrip("."), str(obj)


def scan_text_file(path: Path, rel: str, watch: Watchlist) -> list[Hit]:
    text = path.read_text(encoding="utf-8", errors="replace")
    hits = []
    if path.suffix == ".json":
        try:
            for label, value in _json_texts(json.loads(text)):
                hits += [Hit(rel, label, k) for k in scan_text(value, watch)]
            return hits
        except json.JSONDecodeError:
            pass
    if path.suffix == ".tsv":
        lines = text.splitlines()
        header = lines[0].split("\t") if lines else []
        for n, line in enumerate(lines):
            for col, value in zip(header, line.split("\t"), strict=False):
                hits += [Hit(rel, f"line {n + 1} column {col}", k) for k in scan_text(value, watch)]
        return hits
    for n, line in enumerate(text.splitlines()):
        hits += [Hit(rel, f"line {n + 1}", k) for k in scan_text(line, watch)]
    return hits


def scan_file(path: Path, rel: str, watch: Watchlist) -> list[Hit]:
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        return scan_nifti(path, rel, watch)
    if name.endswith(".dcm") or _is_dicom(path):
        return scan_dicom(path, rel, watch)
    if path.suffix in _TEXT_SUFFIXES or name in ("README", "CHANGES", ".bidsignore"):
        return scan_text_file(path, rel, watch)
    # Unknown kinds are scanned as text: an unexpected file must still prove itself clean.
    return [Hit(rel, "content", k) for k in scan_text(path.read_bytes().decode("latin-1"), watch)]


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


def scan_tree(root: Path, watch: Watchlist, files: Iterable[Path] | None = None) -> list[Hit]:
    """Scan every file under root, and every file and folder name, for watched identifiers."""
    hits: list[Hit] = []
    paths = sorted(files) if files is not None else sorted(root.rglob("*"))
    for path in paths:
        rel = path.relative_to(root).as_posix()
        hits += [Hit(rel, "path", k) for k in scan_text(rel, watch)]
        if path.is_file():
            hits += scan_file(path, rel, watch)
    return hits
