"""The ledger: which session is in which dataset of the archive, since which version.

One row per (dataset, subject, session), in git (``.passerelle/ledger.tsv``), so "since
when, made by what, kept until when" is answered without walking history. Rows removed by
retention stay, with the version that removed them, so a later run does not bring them back.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from passerelle.archive.layout import LEDGER


@dataclass
class Row:
    dataset: str  # "." (raw), "sourcedata/dicom", "derivatives/<name>"
    subject: str
    session: str
    since: str
    updated: str
    generated_by: str
    delivery: str = ""
    retention_until: str = ""
    removed: str = ""  # version that removed it (retention), else empty

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.subject, self.session)


COLUMNS = [f.name for f in fields(Row)]


def load(archive: Path) -> dict[tuple[str, str, str], Row]:
    path = archive / LEDGER
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = [
            Row(**{k: ("" if v == "n/a" else v) for k, v in r.items()})
            for r in csv.DictReader(fh, delimiter="\t")
        ]
    return {r.key: r for r in rows}


def dump(rows: dict[tuple[str, str, str], Row]) -> bytes:
    buf = io.StringIO()
    buf.write("\t".join(COLUMNS) + "\n")
    for key in sorted(rows):
        buf.write("\t".join(asdict(rows[key])[c] or "n/a" for c in COLUMNS) + "\n")
    return buf.getvalue().encode()


def removed_sessions(rows: dict[tuple[str, str, str], Row]) -> set[tuple[str, str]]:
    return {(r.subject, r.session) for r in rows.values() if r.dataset == "." and r.removed}


def gone_subjects(rows: dict[tuple[str, str, str], Row]) -> set[str]:
    """Subjects whose every raw session was removed by retention."""
    raw = [r for r in rows.values() if r.dataset == "."]
    return {r.subject for r in raw if r.removed} - {r.subject for r in raw if not r.removed}
