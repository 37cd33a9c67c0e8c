"""Dataset-level BIDS files, regenerated from the session ledger on every finalize."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from passerelle import __version__
from passerelle.deid.dates import age_band
from passerelle.fsutil import write_json, write_text, write_tsv

BIDS_VERSION = "1.10.0"
CODE_URL = "https://example.org/passerelle"


def write_dataset_files(
    bids: Path,
    dataset: dict[str, Any],
    sessions: list[tuple[str, str, str | None, int | None, str | None]],
    bands: dict[str, int],
) -> None:
    """sessions: (subject, session, sex, age, shifted acq_time) of every session present."""
    description: dict[str, Any] = {
        "Name": dataset["name"],
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "GeneratedBy": [{"Name": "passerelle", "Version": __version__, "CodeURL": CODE_URL}],
    }
    for key, field in (
        ("license", "License"),
        ("authors", "Authors"),
        ("acknowledgements", "Acknowledgements"),
        ("funding", "Funding"),
    ):
        if dataset.get(key):
            description[field] = dataset[key]
    write_json(bids / "dataset_description.json", description)
    write_text(bids / ".bidsignore", "**/*.log\n")
    subjects: dict[str, list[tuple[str, str | None, int | None, str | None]]] = defaultdict(list)
    for sub, ses, sex, age, acq_time in sessions:
        subjects[sub].append((ses, sex, age, acq_time))
    write_text(
        bids / "README",
        f"# {dataset['name']}\n\n"
        f"Converted from DICOM with passerelle {__version__}: {len(subjects)} subjects, "
        f"{len(sessions)} sessions.\nSubject and session labels are keyed pseudonyms; "
        "names and identifiers are removed and every date is shifted by a keyed per-subject "
        "offset that keeps intervals.\n",
    )
    # CHANGES belongs to the archive, which adds one entry per version (archive/records.py).
    write_tsv(
        bids / "participants.tsv",
        ["participant_id", "sex", "age_band"],
        (
            [f"sub-{sub}", _sex(rows[0][1]), _band(rows, bands)]
            for sub, rows in sorted(subjects.items())
        ),
    )
    write_json(
        bids / "participants.json",
        {
            "sex": {
                "Description": "sex as recorded at acquisition",
                "Levels": {"M": "male", "F": "female", "O": "other"},
            },
            "age_band": {
                "Description": f"age in years at the first session, in {bands['width']}-year "
                f"bands; under {bands['bottom']} and {bands['top']} and over are merged"
            },
        },
    )
    for sub, rows in subjects.items():
        if (bids / f"sub-{sub}").is_dir():
            write_tsv(
                bids / f"sub-{sub}" / f"sub-{sub}_sessions.tsv",
                ["session_id", "acq_time"],
                ([f"ses-{ses}", acq_time] for ses, _, _, acq_time in sorted(rows)),
            )


def _band(
    rows: list[tuple[str, str | None, int | None, str | None]], bands: dict[str, int]
) -> str | None:
    ages = [age for _, _, age, _ in rows if age is not None]
    if not ages:
        return None
    return age_band(min(ages), bands["width"], bands["top"], bands["bottom"])[0]


def _sex(value: str | None) -> str | None:
    value = (value or "").strip().upper()
    return value if value in ("M", "F", "O") else None
