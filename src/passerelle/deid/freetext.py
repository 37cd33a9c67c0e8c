"""Free text kept by the profile must still prove itself clean, field by field."""

from __future__ import annotations

from pydicom.dataset import Dataset

from passerelle.deid.gate import Watchlist, scan_text
from passerelle.deid.text import person_word_hits

FREE_TEXT_VRS = {"LO", "LT", "ST", "UT", "SH", "UC"}
# Values the pseudonymisation itself wrote: keyed labels and the de-identification marks.
_OURS = {"PatientID", "PatientName", "AccessionNumber", "StudyID", "DeidentificationMethod"}


def screen(ds: Dataset, watch: Watchlist) -> list[tuple[int, str]]:
    """Remove every free-text element (any depth) naming a person or an identifier.

    Returns (tag, keyword) of what was removed. Private elements are left to the gate, which
    withholds the whole session on a hit rather than editing bytes it cannot parse.
    """
    removed: list[tuple[int, str]] = []

    def visit(d: Dataset) -> None:
        for elem in list(d):
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
                continue
            ours = elem.keyword in _OURS
            if elem.tag.is_private or elem.VR not in FREE_TEXT_VRS or ours:
                continue
            values = elem.value if isinstance(elem.value, list) else [elem.value]
            text = "\\".join(str(v) for v in values if v is not None)
            if text and (person_word_hits(text) or scan_text(text, watch)):
                del d[elem.tag]
                removed.append((int(elem.tag), elem.keyword or str(elem.tag)))

    visit(ds)
    return removed
