#!/usr/bin/env python3
"""Warehouse side of `passerelle link`: replace identities by keyed encodings, locally.

Run it where the clinical table lives, with the project key file (given to the warehouse by
the same secure channel as to the imaging side). It writes a copy of the table in which the
identifying columns are replaced:

* ``--ipp`` (and ``--issuer``): the patient identifier becomes ``participant_id`` = the subject
  label Passerelle gives the same patient (``sub-`` + 12 hex digits of HMAC-SHA256), for
  ``passerelle link --mode deterministic``;
* ``--family``, ``--given``, ``--birth-date``, ``--sex``: become keyed per-field encodings
  (HMAC of the normalised value, keyed Bloom filters of the name bigrams, keyed Soundex, keyed
  date parts) for ``passerelle link --mode probabilistic``.

The identifying columns are dropped; every other column is copied as is (only those the
project whitelists will enter the dataset). Nothing identifying is written, and the encodings
cannot be recomputed from a guessed identity without the key.

Example::

    python scripts/warehouse_encode.py --key /secure/passerelle.key --in dwh_export.csv \\
        --out dwh_keyed.csv --ipp IPP --family NOM --given PRENOM --birth-date DDN --sex SEXE

Needs only the Python standard library and this checkout's ``src/`` (or passerelle installed).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from passerelle.errors import PasserelleError
from passerelle.keys import load_key
from passerelle.labels import patient_key, subject_label
from passerelle.linkage.encode import CLINICAL_FIELDS, encode_record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key", required=True, help="the project key file")
    ap.add_argument("--in", dest="src", required=True, help="CSV or TSV export")
    ap.add_argument("--out", required=True, help="keyed copy (CSV or TSV, by extension)")
    ap.add_argument("--ipp", help="column of the patient identifier (PatientID)")
    ap.add_argument("--issuer", default="", help="IssuerOfPatientID the PACS uses, if any")
    ap.add_argument("--family", help="column of the family name")
    ap.add_argument("--given", help="column of the given name")
    ap.add_argument("--birth-date", help="column of the birth date (any order of Y, M, D digits"
                    " is read as YYYYMMDD once separators are removed)")  # fmt: skip
    ap.add_argument("--sex", help="column of the sex (M, F, O)")
    args = ap.parse_args(argv)
    try:
        key = load_key(Path(args.key))
    except PasserelleError as exc:
        print(f"warehouse_encode: error: {exc}", file=sys.stderr)
        return 2
    src, out = Path(args.src), Path(args.out)
    sep_in = "\t" if src.suffix.lower() == ".tsv" else ","
    sep_out = "\t" if out.suffix.lower() == ".tsv" else ","
    with src.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=sep_in)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    identity = {"family": args.family, "given": args.given, "birth_date": args.birth_date,
                "sex": args.sex}  # fmt: skip
    used = [c for c in (args.ipp, *identity.values()) if c]
    missing = [c for c in used if c not in header]
    if missing:
        print(f"warehouse_encode: error: {src}: no column {missing[0]!r}", file=sys.stderr)
        return 2
    encode_names = any(identity.values())
    kept = [c for c in header if c not in used]
    out_rows = []
    for row in rows:
        new: dict[str, str] = {}
        if args.ipp:
            pid = (row[args.ipp] or "").strip()
            new["participant_id"] = f"sub-{subject_label(key, patient_key(args.issuer, pid))}"
        if encode_names:
            record = {f: (row[c] if c else None) for f, c in identity.items()}
            new.update(encode_record(key, record, CLINICAL_FIELDS))
        new.update({c: row[c] for c in kept})
        out_rows.append(new)
    fields = list(out_rows[0]) if out_rows else kept
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, delimiter=sep_out, lineterminator="\n")
        writer.writeheader()
        writer.writerows(out_rows)
    print(f"wrote {len(out_rows)} keyed row(s) to {out}; dropped {', '.join(used) or 'nothing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
