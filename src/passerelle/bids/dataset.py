"""Dataset-level BIDS files, regenerated from the session ledger on every finalize."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from passerelle import __version__
from passerelle.fsutil import write_json, write_text, write_tsv

BIDS_VERSION = "1.10.0"
CODE_URL = "https://example.org/passerelle"
AGE_BAND_YEARS = 10
AGE_TOP = 90  # ages at or above merge into one band: few people, easy to single out


def age_band(age: int | None, width: int = AGE_BAND_YEARS, top: int = AGE_TOP) -> str | None:
    if age is None:
        return None
    if age >= top:
        return f"{top}+"
    low = (age // width) * width
    return f"{low}-{low + width - 1}"


def write_dataset_files(
    bids: Path, dataset: dict[str, Any], sessions: list[tuple[str, str, str | None, int | None]]
) -> None:
    """sessions: (subject, session, sex, age) for every session present in the dataset."""
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
    subjects: dict[str, list[tuple[str, str | None, int | None]]] = defaultdict(list)
    for sub, ses, sex, age in sessions:
        subjects[sub].append((ses, sex, age))
    write_text(
        bids / "README",
        f"# {dataset['name']}\n\n"
        f"Converted from DICOM with passerelle {__version__}: {len(subjects)} subjects, "
        f"{len(sessions)} sessions.\nSubject and session labels are keyed pseudonyms; "
        "no date, time of day, name or identifier from the source is kept.\n",
    )
    write_text(
        bids / "CHANGES",
        f"{__version__}\n  - {len(sessions)} sessions of {len(subjects)} subjects converted "
        "from DICOM by passerelle.\n",
    )
    write_tsv(
        bids / "participants.tsv",
        ["participant_id", "sex", "age_band"],
        (
            [f"sub-{sub}", _sex(rows[0][1]), age_band(rows[0][2])]
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
                "Description": f"age in years at the first session, in "
                f"{AGE_BAND_YEARS}-year bands with {AGE_TOP} and over merged"
            },
        },
    )
    for sub, rows in subjects.items():
        if (bids / f"sub-{sub}").is_dir():
            write_tsv(
                bids / f"sub-{sub}" / f"sub-{sub}_sessions.tsv",
                ["session_id"],
                ([f"ses-{ses}"] for ses, _, _ in sorted(rows)),
            )


def _sex(value: str | None) -> str | None:
    value = (value or "").strip().upper()
    return value if value in ("M", "F", "O") else None
