"""Keyed replacement UIDs: the same source UID always maps to the same new UID.

Determinism is what keeps references valid: a ReferencedSOPInstanceUID in one file and the
SOPInstanceUID of the file it points to are replaced independently and still match, and a
Frame of Reference shared by the series of one study stays shared.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from passerelle.keys import SecretKey

UID_ROOT: Final = "2.25."
WELL_KNOWN_ROOT: Final = "1.2.840.10008."  # SOP classes, transfer syntaxes, coding schemes
MAX_UID_CHARS: Final = 64
# Names the software that wrote the file; derived from a fixed name, identical everywhere.
IMPLEMENTATION_CLASS_UID: Final = f"{UID_ROOT}{uuid.uuid5(uuid.NAMESPACE_URL, 'passerelle').int}"


def is_well_known(uid: str) -> bool:
    return uid.strip("\x00 ").startswith(WELL_KNOWN_ROOT)


def keyed_uid(key: SecretKey, uid: str) -> str:
    """'2.25.' + the integer of the first 16 bytes of the keyed digest (<= 44 characters).

    An integer has no leading zeros, so the last component is always valid. Well-known
    UIDs (SOP classes, transfer syntaxes) name types, not instances, and are kept.
    """
    uid = uid.strip("\x00 ")
    if not uid or is_well_known(uid):
        return uid
    return f"{UID_ROOT}{int.from_bytes(key.digest('uid', uid)[:16], 'big')}"


# A dotted number of 5+ components and 16+ characters inside free text or a binary blob
# (Siemens Phoenix protocol, CSA headers): a UID, which can embed a serial number and a date.
_EMBEDDED: Final = re.compile(r"(?<![0-9.])[0-9]+(?:\.[0-9]+){4,}(?![0-9.])")


def _same_length_uid(key: SecretKey, uid: str) -> str:
    digits = str(int.from_bytes(key.digest("uid", uid), "big"))  # 77 or 78 digits
    return (UID_ROOT + digits)[: len(uid)]


def scrub_embedded_uids(key: SecretKey, text: str) -> str:
    """Replace UIDs embedded in text with keyed ones of the same length, so length fields
    of binary containers (CSA headers) stay valid. Well-known UIDs are kept."""

    def replace(m: re.Match[str]) -> str:
        uid = m.group()
        return uid if len(uid) < 16 or is_well_known(uid) else _same_length_uid(key, uid)

    return _EMBEDDED.sub(replace, text)
