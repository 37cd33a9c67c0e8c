"""The quasi-identifier table: one record per released subject, built from what is released.

Header facts come from the BIDS sidecars of a session (or, for a folder of DICOM only, from
the headers), demographics from the session ledger, the site from the configured delivery
globs over the private inbox paths. Values stay in the private work area; only aggregates and
the remedied release leave it.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pydicom

from passerelle.risk.metrics import Record

# Attribute -> (BIDS sidecar keys, DICOM keyword), first present wins.
HEADER_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "manufacturer": (("Manufacturer",), "Manufacturer"),
    "model": (("ManufacturersModelName",), "ManufacturerModelName"),
    "software": (("SoftwareVersions",), "SoftwareVersions"),
    "body_part": (("BodyPart", "BodyPartExamined"), "BodyPartExamined"),
}
MISSING = "n/a"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    value = " ".join(str(value).split())
    return value or None


def header_facts(folder: Path) -> dict[str, list[str]]:
    """Distinct header values of every sidecar (or, failing any, DICOM file) under a folder."""
    found: dict[str, set[str]] = {a: set() for a in HEADER_FIELDS}
    sidecars = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    for path in sidecars:
        data = json.loads(path.read_text())
        for attr, (keys, _kw) in HEADER_FIELDS.items():
            value = next((_text(data[k]) for k in keys if k in data), None)
            if value:
                found[attr].add(value)
    if not sidecars and folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (pydicom.errors.InvalidDicomError, OSError):
                continue
            for attr, (_keys, kw) in HEADER_FIELDS.items():
                value = _text(ds.get(kw))
                if value:
                    found[attr].add(value)
    return {a: sorted(v) for a, v in found.items()}


def site_of(paths: Iterable[str], sites: Sequence[dict[str, Any]]) -> str | None:
    """The first configured site whose glob matches one of the session's inbox paths."""
    paths = list(paths)
    for site in sites:
        if any(fnmatch.fnmatchcase(p, site["match"]) for p in paths):
            return site["name"]
    return None


def subject_records(sessions: Sequence[dict[str, Any]]) -> list[Record]:
    """Fold session facts into one record per subject, sorted by subject label.

    A session fact: subject, session, sex, age, acq_year, site, and the header lists. A subject
    seen on several scanners is the combination ("A|B"): that combination is what singles out.
    """
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for s in sorted(sessions, key=lambda s: (s["subject"], s["session"])):
        by_subject.setdefault(s["subject"], []).append(s)
    records = []
    for sub, rows in sorted(by_subject.items()):
        ages = [r["age"] for r in rows if r.get("age") is not None]
        years = [r["acq_year"] for r in rows if r.get("acq_year")]
        record: Record = {
            "subject": sub,
            "sex": (rows[0].get("sex") or MISSING),
            "age": min(ages) if ages else None,
            "acq_year": min(years) if years else MISSING,
            "site": "|".join(sorted({r["site"] for r in rows if r.get("site")})) or MISSING,
            "n_sessions": len(rows),
        }
        for attr in HEADER_FIELDS:
            values = sorted({v for r in rows for v in r.get(attr, [])})
            record[attr] = "|".join(values) or MISSING
        for key, value in rows[0].get("sensitive", {}).items():
            record[key] = value
        records.append(record)
    return records


def read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line]


def sensitive_values(bids: Path, columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """participant label -> {column: value} from participants.tsv and phenotype/*.tsv."""
    out: dict[str, dict[str, str]] = {}
    tables = [bids / "participants.tsv", *sorted((bids / "phenotype").glob("*.tsv"))]
    for table in tables:
        for row in read_tsv(table):
            sub = row.get("participant_id", "").removeprefix("sub-")
            for c in columns:
                if c in row:
                    out.setdefault(sub, {})[c] = row[c]
    return out
