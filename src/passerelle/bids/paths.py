"""The one BIDS path builder: every BIDS file name in the project comes from here."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Order from the BIDS specification's entity table (the subset raw MRI uses).
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part", "desc")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9]")


def sanitize_label(value: object) -> str:
    """BIDS labels are alphanumeric: drop everything else."""
    return _NOT_LABEL.sub("", str(value))


def bids_name(entities: Mapping[str, str | int], suffix: str, extension: str = "") -> str:
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities: {sorted(unknown)}")
    parts = [f"{k}-{entities[k]}" for k in ENTITY_ORDER if entities.get(k) not in (None, "")]
    return "_".join([*parts, suffix]) + extension


def bids_path(
    entities: Mapping[str, str | int], datatype: str, suffix: str, extension: str = ""
) -> str:
    """Dataset-relative path: sub-X/[ses-Y/]datatype/name."""
    folder = [f"sub-{entities['sub']}"]
    if entities.get("ses"):
        folder.append(f"ses-{entities['ses']}")
    return "/".join([*folder, datatype, bids_name(entities, suffix, extension)])


def session_dir(sub: str, ses: str) -> str:
    return f"sub-{sub}/ses-{ses}"


def bids_uri(relpath: str, dataset: str = "") -> str:
    """BIDS URI: 'bids::path' for the current dataset, 'bids:name:path' otherwise."""
    return f"bids:{dataset}:{relpath}"
