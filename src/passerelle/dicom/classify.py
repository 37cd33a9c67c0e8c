"""What kind of object a DICOM file holds, from its SOP Class UID.

Only `image` objects are candidates for conversion; everything else is kept as source
(or, for unknown classes, held back) with the class named in the manifest.
"""

from __future__ import annotations

from pydicom.uid import UID

MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
RAW_DATA = "1.2.840.10008.5.1.4.1.1.66"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
STANDARD_ROOT = "1.2.840.10008."

# Shared and Per-frame Functional Groups: per-frame geometry and timing, thousands of items
# in an enhanced multi-frame object, never a person's name or identifier (PS3.3 C.7.6.16).
FUNCTIONAL_GROUP_TAGS = frozenset({0x52009229, 0x52009230})

OBJECT_CLASSES = (
    "image",
    "sr",
    "secondary_capture",
    "rt",
    "seg",
    "pdf",
    "presentation_state",
    "raw",
    "private",
    "directory",
    "other",
)

# Name fragments from the DICOM UID registry (as pydicom names them), checked in order.
_BY_NAME: tuple[tuple[str, str], ...] = (
    ("Secondary Capture", "secondary_capture"),
    ("Presentation State", "presentation_state"),
    ("SR Storage", "sr"),
    ("Key Object Selection", "sr"),
    ("RT ", "rt"),
    ("Segmentation Storage", "seg"),
    ("Spectroscopy", "other"),
    ("Image Storage", "image"),
)


def object_class(sop_class_uid: str | None) -> str:
    if not sop_class_uid:
        return "other"
    uid = str(sop_class_uid).strip()
    if uid == MEDIA_DIRECTORY:
        return "directory"
    if uid == RAW_DATA:
        return "raw"
    if uid == SEGMENTATION:
        return "seg"
    if uid == ENCAPSULATED_PDF:
        return "pdf"
    if not uid.startswith(STANDARD_ROOT):
        return "private"
    name = UID(uid).name
    if name == uid:  # not in pydicom's registry: a retired or future class
        return "other"
    for fragment, cls in _BY_NAME:
        if fragment in name:
            return cls
    return "other"


def is_mosaic(image_type: list[str]) -> bool:
    return "MOSAIC" in (t.upper() for t in image_type)


def is_derived(image_type: list[str]) -> bool:
    return bool(image_type) and image_type[0].upper() == "DERIVED"


def is_localizer(image_type: list[str]) -> bool:
    return "LOCALIZER" in (t.upper() for t in image_type)
