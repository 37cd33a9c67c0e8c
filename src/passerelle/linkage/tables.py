"""Clinical tables into phenotype/: a column whitelist, free text screened, nothing silent.

Only the columns the config lists enter `phenotype/<name>.tsv`; every other column is rejected
and named in the outcome. A column that looks like free text (long values, several words) is
refused unless the whitelist declares it `free_text`; declared free text is screened for
person-introducing words (the same list the DICOM free-text screen uses) and a cell that hits
is blanked and counted.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passerelle.deid.text import person_word_hits
from passerelle.errors import PasserelleError
from passerelle.fsutil import write_json, write_tsv

FREE_TEXT_WORDS = 4
FREE_TEXT_CHARS = 40


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV or TSV (by extension, or sniffed); a malformed one is one clear line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PasserelleError(f"{path}: cannot read the table ({exc})") from None
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    elif path.suffix.lower() == ".csv":
        delimiter = (
            ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
        )
    else:
        delimiter = csv.Sniffer().sniff(text.split("\n", 1)[0]).delimiter
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = list(reader.fieldnames or [])
    if not header or len(set(header)) != len(header):
        raise PasserelleError(f"{path}: the table needs one header row of distinct column names")
    rows = []
    for n, row in enumerate(reader, start=2):
        if None in row:
            raise PasserelleError(f"{path}: line {n} has more cells than the header")
        rows.append({k: (v or "").strip() for k, v in row.items()})
    return header, rows


def looks_free_text(values: Sequence[str]) -> bool:
    return any(len(v) > FREE_TEXT_CHARS or len(v.split()) >= FREE_TEXT_WORDS for v in values)


@dataclass
class Screened:
    columns: list[str]
    rejected: dict[str, str] = field(default_factory=dict)  # column -> why
    blanked: dict[str, int] = field(default_factory=dict)  # column -> cells blanked


def screen_columns(
    header: Sequence[str],
    rows: list[dict[str, str]],
    whitelist: dict[str, dict[str, Any]],
    reserved: Sequence[str],
) -> Screened:
    """Keep whitelisted columns; blank person-naming cells of declared free text (in place)."""
    out = Screened([])
    for col in header:
        if col in reserved:
            continue
        spec = whitelist.get(col)
        values = [r[col] for r in rows if r[col]]
        if spec is None:
            out.rejected[col] = "not in linkage.columns"
        elif looks_free_text(values) and not spec.get("free_text"):
            out.rejected[col] = "free text, not declared free_text in linkage.columns"
        else:
            out.columns.append(col)
            if spec.get("free_text"):
                hits = 0
                for r in rows:
                    if r[col] and person_word_hits(r[col]):
                        r[col] = ""
                        hits += 1
                out.blanked[col] = hits
    return out


def write_phenotype(
    bids: Path,
    name: str,
    rows: list[tuple[str, dict[str, str]]],
    screened: Screened,
    whitelist: dict[str, dict[str, Any]],
) -> Path:
    """phenotype/<name>.tsv (rows sorted by participant) and its JSON data dictionary."""
    cols = screened.columns
    ordered = sorted(rows, key=lambda r: (r[0], [r[1][c] for c in cols]))
    path = bids / "phenotype" / f"{name}.tsv"
    write_tsv(
        path, ["participant_id", *cols], ([f"sub-{s}", *(r[c] for c in cols)] for s, r in ordered)
    )
    sidecar: dict[str, Any] = {}
    for c in cols:
        spec = whitelist[c]
        entry = {"Description": spec["description"]}
        for key, bids_key in (("units", "Units"), ("levels", "Levels")):
            if spec.get(key):
                entry[bids_key] = spec[key]
        sidecar[c] = entry
    write_json(path.with_suffix(".json"), sidecar)
    return path
