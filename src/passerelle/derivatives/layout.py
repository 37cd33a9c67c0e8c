"""Names of derived files and records: the one place that spells them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFACE = "passerelle-deface"
SEG = "passerelle-seg"
RAW = "raw"  # the DatasetLinks name of the raw dataset in Sources URIs


@dataclass(frozen=True)
class Anat:
    """One converted anatomical image: staging-relative path, name prefix and suffix."""

    rel: str  # sub-X/ses-Y/anat/sub-X_ses-Y[_acq-..]_T1w.nii.gz
    suffix: str

    @property
    def folder(self) -> str:
        return self.rel.rsplit("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The file name up to the suffix (all entities, no desc)."""
        return self.rel.rsplit("/", 1)[1].removesuffix(f"_{self.suffix}.nii.gz")

    def derived(self, desc: str, suffix: str) -> str:
        return f"{self.folder}/{self.prefix}_desc-{desc}_{suffix}.nii.gz"

    @property
    def defaced(self) -> str:
        return self.derived("defaced", self.suffix)

    @property
    def face_mask(self) -> str:
        # T2w and FLAIR of the same acquisition would share the T1w's mask name otherwise.
        return self.derived("face" if self.suffix == "T1w" else f"face{self.suffix}", "mask")

    @property
    def brain_mask(self) -> str:
        return self.derived("brain", "mask")

    @property
    def dseg(self) -> str:
        return f"{self.folder}/{self.prefix}_dseg.nii.gz"

    @property
    def probseg(self) -> str:
        return f"{self.folder}/{self.prefix}_probseg.nii.gz"

    def model(self, name: str, suffix: str = "dseg") -> str:
        return f"{self.folder}/{self.prefix}_desc-{name}_{suffix}.nii.gz"


def sidecar(rel: str) -> str:
    return rel.removesuffix(".nii.gz") + ".json"


def anat_images(result: dict[str, Any], suffixes: list[str]) -> list[Anat]:
    """Converted anatomical images of a session whose suffix is listed, in path order."""
    found = []
    for series in result["series"]:
        if series["state"] != "converted":
            continue
        for rel in series["outputs"]:
            parts = rel.split("/")
            if len(parts) != 4 or parts[2] != "anat" or not rel.endswith(".nii.gz"):
                continue
            suffix = parts[3].removesuffix(".nii.gz").rsplit("_", 1)[-1]
            if suffix in suffixes:
                found.append(Anat(rel, suffix))
    return sorted(found, key=lambda a: a.rel)


def read_result(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def source_uri(rel: str) -> str:
    return f"bids:{RAW}:{rel}"
