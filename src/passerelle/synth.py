"""Build large synthetic inboxes from small real series, for load tests and benchmarks.

Every DICOM file found under the sources is copied once per (patient, study) into
``DEST/P{i:05d}/S{j:02d}/<path relative to its source>``, with a synthetic identity,
dates shifted onto the synthetic study day, and every instance UID remapped. All sources
of one copy land in the same synthetic study, so N patients x M studies give exactly
N x M sessions whatever the number of sources.

UIDs are ``2.25.<uuid5>`` of (seed, patient, study, old UID): a pure function, so every
file (and every worker process) maps a given source UID to the same new one and
references stay consistent without shared state. The output depends only on the
arguments, so two builds give byte-identical trees.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydicom
from isal import igzip
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

__all__ = ["build_synthetic_inbox", "main"]

GZIP_MAGIC = b"\x1f\x8b"
# Well-known UIDs (transfer syntaxes, SOP classes, coding schemes) are not instance data.
STANDARD_UID_ROOT = "1.2.840.10008."
# UI attributes naming a class, syntax or scheme; vendor classes (e.g. Siemens CSA
# non-image storage) live outside the standard root but must survive too.
_KEEP_UID_KEYWORDS = frozenset(
    {
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "PrivateInformationCreatorUID",
    }
)
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:passerelle:synthetic-inbox")
# Below this many output files, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 200
WORKERS = 2
_FIRST = ("Alice", "Bruno", "Chloe", "Denis", "Emma", "Felix", "Gaelle", "Hugo", "Ines", "Jules")
_LAST = (
    "ARNAUD",
    "BERTIN",
    "CARON",
    "DELMAS",
    "ESNAULT",
    "FAURE",
    "GIRAUD",
    "HAMON",
    "IMBERT",
    "JOLY",
    "KLEIN",
    "LEROUX",
)
_EPOCH = date(2010, 1, 4)


def _uuid_int(*parts: object) -> int:
    return uuid.uuid5(_NAMESPACE, "\x1f".join(str(p) for p in parts)).int


def _uid(*parts: object) -> str:
    # ISO/IEC 9834-8 / PS3.5 B.2. pydicom 3's generate_uid ignores entropy_srcs (it
    # returns a random uuid4 with prefix=None), so it cannot give stable UIDs.
    return f"2.25.{_uuid_int(*parts)}"


@dataclass(frozen=True)
class Identity:
    """The synthetic patient and study one copy of the sources is given."""

    seed: int
    patient: int
    study: int

    @property
    def name(self) -> str:
        # k is injective in the index, so names stay distinct past the list sizes
        # (a generation number goes into the PN suffix component).
        k = self.patient + self.seed * len(_LAST)
        last = _LAST[k % len(_LAST)]
        first = _FIRST[(k // len(_LAST)) % len(_FIRST)]
        generation = k // (len(_LAST) * len(_FIRST))
        return f"{last}^{first}" + (f"^^^{generation + 1}" if generation else "")

    @property
    def patient_id(self) -> str:
        return f"SYN{self.seed}-{self.patient:05d}"

    @property
    def birth_date(self) -> date:
        # Born 1940-1999, so every study day below falls in adulthood.
        days = _uuid_int(self.seed, "birth", self.patient) % (60 * 365)
        return date(1940, 1, 1) + timedelta(days=days)

    @property
    def accession(self) -> str:
        return f"A{self.seed % 1000}{self.patient:05d}{self.study:02d}"  # SH: 16 chars max

    @property
    def study_date(self) -> date:
        # Studies of one patient ~4 months apart, patients spread over ~10 years.
        offset = _uuid_int(self.seed, "day", self.patient) % 3650
        return _EPOCH + timedelta(days=offset + 120 * self.study)

    @property
    def study_uid(self) -> str:
        return _uid(self.seed, self.patient, self.study, "study")

    def remap_uid(self, old: str) -> str:
        return _uid(self.seed, self.patient, self.study, "uid", old)


def _vr(ds: Dataset, tag: BaseTag) -> str | None:
    elem = ds.get_item(tag)
    if elem.VR:
        return elem.VR
    # Implicit VR: only public tags have a known VR (private ones read as UN).
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _slots(ds: Dataset) -> Iterator[tuple[Dataset, BaseTag, str]]:
    """(container, tag, VR) of every UI, DA and DT element at any depth.

    Only these and sequences are decoded: the rest stays raw and is written back as
    read, which is what makes copying large headers (and pixel data) cheap.
    """
    for tag in sorted(ds.keys()):
        vr = _vr(ds, tag)
        if vr == "SQ":
            for item in ds[tag].value:
                yield from _slots(item)
        elif vr in ("UI", "DA", "DT"):
            yield ds, tag, vr


def _parse_da(value: str) -> date | None:
    if len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def _shift(value: str, delta: timedelta) -> str:
    day = _parse_da(value)
    return value if day is None else (day + delta).strftime("%Y%m%d") + value[8:]


def _age(birth: date, on: date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


def _study_day(ds: Dataset) -> date | None:
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        day = _parse_da(str(ds.get(kw) or ""))
        if day is not None:
            return day
    return None


_PATIENT_BIRTH_DATE = BaseTag(0x00100030)


class _Template:
    """One parsed source file, rewritten in place for each identity in turn.

    Every rewritten value is computed from the value kept at load time, so the same
    dataset can serve all copies without re-parsing or deep-copying it.
    """

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.meta: Dataset | None = getattr(ds, "file_meta", None)
        self.day = _study_day(ds)
        self.study_uid = str(ds.get("StudyInstanceUID") or "")
        self.has_age = "PatientAge" in ds
        self.uids: list[tuple[Dataset, BaseTag, str | list[str]]] = []
        self.dates: list[tuple[Dataset, BaseTag, str | list[str]]] = []
        containers = [self.meta, ds] if self.meta is not None else [ds]
        for container in containers:
            for item, tag, vr in _slots(container):
                elem = item[tag]
                if not elem.value:
                    continue
                value = _original(elem.value)
                if vr == "UI":
                    kw = elem.keyword
                    if not (kw.endswith("ClassUID") or kw in _KEEP_UID_KEYWORDS):
                        self.uids.append((item, tag, value))
                elif tag != _PATIENT_BIRTH_DATE:
                    self.dates.append((item, tag, value))

    def apply(self, ident: Identity) -> Dataset:
        ds = self.ds
        pinned = {self.study_uid: ident.study_uid} if self.study_uid else {}

        def uid(old: str) -> str:
            if not old or old.startswith(STANDARD_UID_ROOT):
                return old
            return pinned.get(old) or ident.remap_uid(old)

        for item, tag, value in self.uids:
            item[tag].value = [uid(v) for v in value] if isinstance(value, list) else uid(value)
        new_day = ident.study_date
        # One delta per file keeps all its dates (per-frame DT included) in step.
        delta = new_day - self.day if self.day else timedelta(0)
        for item, tag, value in self.dates:
            item[tag].value = (
                [_shift(v, delta) for v in value]
                if isinstance(value, list)
                else _shift(value, delta)
            )
        ds.PatientName = ident.name
        ds.PatientID = ident.patient_id
        ds.PatientBirthDate = ident.birth_date.strftime("%Y%m%d")
        ds.AccessionNumber = ident.accession
        ds.StudyInstanceUID = ident.study_uid
        # Already shifted when it was the reference day; set here when it was missing.
        ds.StudyDate = new_day.strftime("%Y%m%d")
        if self.has_age:
            ds.PatientAge = _age(ident.birth_date, new_day)
        if self.meta is not None and "SOPInstanceUID" in ds:
            self.meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return ds


def _original(value: Any) -> str | list[str]:
    if isinstance(value, MultiValue | list):
        return [str(v) for v in value]
    return str(value)


def _load(raw: bytes) -> Dataset | None:
    """Parse raw bytes as DICOM; None when they are not (README, thumbnails...)."""
    try:
        return pydicom.dcmread(io.BytesIO(raw))
    except InvalidDicomError:
        pass
    except Exception:
        return None
    # Some exports drop the preamble and file meta; accept those if they name a class.
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
    except Exception:
        return None
    return ds if "SOPClassUID" in ds else None


def _encode(ds: Dataset, gz: bool) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)  # as read: same transfer syntax, preamble and meta (or lack of them)
    data = buf.getvalue()
    # ISA-L is several times faster than zlib; mtime=0 keeps the bytes stable.
    return igzip.compress(data, compresslevel=1, mtime=0) if gz else data


@dataclass(frozen=True)
class _Job:
    source: Path
    rel: str
    dest: Path
    seed: int
    copies: tuple[tuple[int, int], ...]


def _copy_file(job: _Job) -> int:
    """Write every (patient, study) copy of one source file; return how many (0 if skipped)."""
    raw = job.source.read_bytes()
    gz = raw[:2] == GZIP_MAGIC
    if gz:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return 0
    # Vendor files carry quirks (over-long SH values...) that pydicom warns about on access.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _load(raw)
        if ds is None:
            return 0
        try:
            template = _Template(ds)
            for patient, study in job.copies:
                data = _encode(template.apply(Identity(job.seed, patient, study)), gz)
                out = job.dest / f"P{patient:05d}" / f"S{study:02d}" / job.rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
        except Exception as exc:  # name the file: pool tracebacks lose it
            raise ValueError(f"cannot rewrite {job.source}: {exc!r}") from exc
    return len(job.copies)


def _source_files(sources: list[Path]) -> list[tuple[Path, str]]:
    """(file, relative path) of every regular file under the sources, sorted, checked unique."""
    found: dict[str, Path] = {}
    for source in sources:
        if not source.is_dir():
            raise NotADirectoryError(f"source {source} is not a folder")
        for folder, dirs, names in os.walk(source, followlinks=True):
            dirs.sort()
            for name in sorted(names):
                path = Path(folder) / name
                if not path.is_file():
                    continue
                rel = path.relative_to(source).as_posix()
                if rel in found:
                    raise ValueError(f"{rel} exists in two sources ({found[rel]} and {path})")
                found[rel] = path
    return [(path, rel) for rel, path in sorted(found.items())]


def build_synthetic_inbox(
    sources: list[Path], dest: Path, patients: int, studies: int, seed: int = 0
) -> dict[str, int]:
    """Copy the sources' DICOM files into patients x studies synthetic sessions under dest."""
    if patients < 1 or studies < 1 or seed < 0:
        raise ValueError("patients and studies must be at least 1, seed at least 0")
    if dest.exists() and any(dest.iterdir()):
        # Leftovers from a bigger build would silently join this one.
        raise FileExistsError(f"{dest} is not empty")
    files = _source_files([Path(s) for s in sources])
    copies = tuple((i, j) for i in range(1, patients + 1) for j in range(1, studies + 1))
    jobs = [_Job(path, rel, dest, seed, copies) for path, rel in files]
    dest.mkdir(parents=True, exist_ok=True)
    if len(jobs) * len(copies) >= PARALLEL_THRESHOLD and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=WORKERS) as pool:
            written = list(pool.map(_copy_file, jobs, chunksize=4))
    else:
        written = [_copy_file(job) for job in jobs]
    dicoms = sum(1 for n in written if n)
    return {
        "patients": patients,
        "studies": studies,
        "sessions": patients * studies,
        "source_files": dicoms,
        "skipped": len(jobs) - dicoms,
        "files": sum(written),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m passerelle.synth",
        description="Copy real DICOM series into N patients x M studies of synthetic identity.",
    )
    parser.add_argument(
        "--source",
        action="append",
        required=True,
        type=Path,
        help="folder holding one study or series (repeatable; all join one synthetic study)",
    )
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--studies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("dest", type=Path, help="new or empty folder to write the inbox into")
    args = parser.parse_args(argv)
    try:
        counts = build_synthetic_inbox(
            args.source, args.dest, args.patients, args.studies, args.seed
        )
    except (OSError, ValueError) as exc:
        print(f"passerelle.synth: error: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
