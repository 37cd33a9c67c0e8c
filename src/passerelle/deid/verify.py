"""Verify mode: a delivery that claims to be pseudonymised is checked, not rewritten."""

from __future__ import annotations

from pydicom.dataset import Dataset

from passerelle.deid.profile import Profile, is_safe_private

# The export's own pseudonyms live here: the profile would empty them, a pseudonymised
# export legitimately fills them. The gate and the free-text screen still check them.
PSEUDONYM_SLOTS = {"PatientID", "PatientName", "AccessionNumber", "StudyID"}


def noncompliance(ds: Dataset, profile: Profile) -> list[str]:
    """Attributes (keywords, never values) that the profile would have removed or emptied."""
    problems: list[str] = []
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        problems.append("PatientIdentityRemoved is not YES")

    def creator_of(d: Dataset, group: int, element: int) -> str:
        owner = d.get((group, (element >> 8) & 0xFF))
        return str(owner.value) if owner is not None else ""

    def visit(d: Dataset) -> None:
        for elem in d:
            name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
            if elem.tag.is_private:
                if elem.tag.is_private_creator:
                    continue
                creator = creator_of(d, elem.tag.group, elem.tag.element)
                safe = profile.options.retain_safe_private and is_safe_private(
                    elem.tag.group, creator, elem.tag.element & 0xFF
                )
                if not safe:
                    problems.append(f"private {name}")
                continue
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            filled = elem.value not in (None, "", b"", [])
            removable = profile.action(int(elem.tag)) in ("X", "Z")
            if removable and filled and elem.keyword not in PSEUDONYM_SLOTS:
                problems.append(name)

    visit(ds)
    return problems
