"""`passerelle link`: a warehouse table joined to the imaging subjects, into phenotype/.

Deterministic: the warehouse replaced its patient identifier by the subject label with the
project key (`passerelle pseudonym patient` or scripts/warehouse_encode.py); rows join
participants.tsv on it. Probabilistic: the warehouse sent keyed encodings of names, birth date
and sex instead; the imaging side encodes the same fields from the inbox headers (clinical
side, never written out) and Fellegi-Sunter decides. Either way no identity in clear crosses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passerelle.config import Settings
from passerelle.errors import PasserelleError
from passerelle.fsutil import write_tsv
from passerelle.keys import SecretKey
from passerelle.linkage.encode import CLINICAL_FIELDS, Field, encode_record
from passerelle.linkage.fs import compare, link
from passerelle.linkage.tables import read_table, screen_columns, write_phenotype
from passerelle.risk.quasi import read_tsv


def encoded_columns(fields: Sequence[Field]) -> list[str]:
    cols = []
    for f in fields:
        cols.append(f.name)
        if f.kind == "name":
            cols += [f"{f.name}_bf", f"{f.name}_sdx"]
        elif f.kind == "date":
            cols += [f"{f.name}_{p}" for p in "ymd"]
    return cols


@dataclass
class Outcome:
    mode: str
    rows: int
    matched_rows: int = 0
    subjects: int = 0
    undecided: int = 0
    unmatched: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    blanked: dict[str, int] = field(default_factory=dict)
    phenotype: str | None = None

    def lines(self) -> list[str]:
        out = [
            f"{self.mode}: {self.matched_rows} of {self.rows} row(s) linked to {self.subjects} "
            f"subject(s); {self.undecided} undecided pair(s) to review; {self.unmatched} row(s) "
            "unmatched"
        ]
        out += [f"rejected column {c!r}: {why}" for c, why in sorted(self.rejected.items())]
        out += [
            f"column {c!r}: {n} cell(s) blanked (person named)"
            for c, n in self.blanked.items()
            if n
        ]
        if self.phenotype:
            out.append(f"wrote {self.phenotype}")
        return out


def released_subjects(settings: Settings) -> list[str]:
    return [
        r["participant_id"].removeprefix("sub-")
        for r in read_tsv(settings.bids_dir / "participants.tsv")
    ]


def imaging_identities(settings: Settings, subjects: Sequence[str]) -> dict[str, dict[str, str]]:
    """Name, birth date and sex of each subject from one inbox header (clinical side only)."""
    import json

    from passerelle.dicom.reader import read_identifying_part

    out = {}
    for sub in subjects:
        for spec_path in sorted((settings.work / "specs" / f"sub-{sub}").glob("ses-*.json")):
            spec = json.loads(spec_path.read_text())
            files = [f[0] for s in spec["series"] for f in s["files"]]
            if not files:
                continue
            try:
                ds = read_identifying_part(settings.inbox / files[0])
            except OSError:
                continue
            name = ds.get("PatientName")
            out[sub] = {
                "family": str(name.family_name) if name else "",
                "given": str(name.given_name) if name else "",
                "birth_date": str(ds.get("PatientBirthDate") or ""),
                "sex": str(ds.get("PatientSex") or ""),
            }
            break
    return out


def link_rows(
    rows: list[dict[str, str]],
    imaging: dict[str, dict[str, str]],
    fields: Sequence[Field],
    upper: float,
    lower: float,
) -> tuple[dict[int, str], list[list[Any]]]:
    """Row index -> subject for matches, and review rows for undecided pairs."""
    subjects = sorted(imaging)
    right = [imaging[s] for s in subjects]
    decisions, _model = link(rows, right, fields, upper, lower)
    matches = {d.left: subjects[d.right] for d in decisions if d.status == "match"}
    review = []
    for d in decisions:
        if d.status != "undecided":
            continue
        pattern = compare(rows[d.left], right[d.right], fields)
        agreement = " ".join(
            f"{f.name}={'-' if lv is None else lv}" for f, lv in zip(fields, pattern, strict=True)
        )
        review.append(
            [d.left + 2, f"sub-{subjects[d.right]}", f"{d.probability:.4f}", f"{d.weight:.2f}",
             agreement, d.why]
        )  # fmt: skip
    return matches, review


def run_link(
    settings: Settings, key: SecretKey, table: Path, mode: str, review_path: Path
) -> Outcome:
    cfg = settings.raw["linkage"]
    header, rows = read_table(table)
    subjects = set(released_subjects(settings))
    if not subjects:
        raise PasserelleError(f"{settings.bids_dir}: no participants.tsv to link to (run first)")
    outcome = Outcome(mode, len(rows))
    review: list[list[Any]] = []
    if mode == "deterministic":
        id_col = cfg["id_column"]
        if id_col not in header:
            raise PasserelleError(f"{table}: no column {id_col!r} (linkage.id_column)")
        # Encodings a warehouse may send along are not data either.
        reserved = [id_col, *encoded_columns(CLINICAL_FIELDS)]
        matches = {
            i: label
            for i, r in enumerate(rows)
            if (label := r[id_col].removeprefix("sub-")) in subjects
        }
    else:
        needed = encoded_columns(CLINICAL_FIELDS)
        missing = [c for c in needed if c not in header]
        if missing:
            raise PasserelleError(
                f"{table}: keyed encodings missing ({', '.join(missing)}); encode the table "
                "with scripts/warehouse_encode.py"
            )
        reserved = [*needed, cfg["id_column"]]
        identities = imaging_identities(settings, sorted(subjects))
        imaging = {s: encode_record(key, v, CLINICAL_FIELDS) for s, v in identities.items()}
        matches, review = link_rows(rows, imaging, CLINICAL_FIELDS, cfg["match"], cfg["non_match"])
    write_tsv(
        review_path,
        ["table_line", "candidate", "probability", "weight", "agreement", "why"],
        review,
    )
    screened = screen_columns(header, rows, cfg["columns"], reserved)
    outcome.rejected, outcome.blanked = screened.rejected, screened.blanked
    outcome.undecided = len(review)
    outcome.matched_rows = len(matches)
    outcome.subjects = len(set(matches.values()))
    outcome.unmatched = len(rows) - len(matches)
    if screened.columns and matches:
        path = write_phenotype(
            settings.bids_dir,
            cfg["name"],
            [(sub, rows[i]) for i, sub in sorted(matches.items())],
            screened,
            cfg["columns"],
        )
        outcome.phenotype = str(path.relative_to(settings.output))
    return outcome
