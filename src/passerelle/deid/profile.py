"""PS3.15 Annex E Basic Application Level Confidentiality Profile, resolved for options.

The vendored Table E.1-1 gives, per attribute, the Basic Profile action and the action of
each option. load_profile() turns it into exactly one action per tag among
D (dummy), Z (empty), X (remove), K (keep), C (clean) and U (keyed UID).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any, Final

EDITION: Final = "2024b"
_TABLE: Final = f"dicom_ps3.15_annex_e_{EDITION}"

# Code values of PS3.16 CID 7050 "De-identification Method" (scheme DCM).
BASIC_PROFILE_CODE: Final = ("113100", "Basic Application Confidentiality Profile")
CODES: Final = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}

# Options field -> (Table E.1-1 column, CID 7050 code). Not offered: Full Dates (never kept),
# Clean Pixel Data (another module screens pixels), Clean Graphics and Clean Structured
# Content (overlays, curves and SR content are removed or emptied instead).
_OPTION_COLUMNS: Final = {
    "clean_descriptors": ("cleanDescOpt", "113105"),
    "retain_long_modified_dates": ("rtnLongModifDatesOpt", "113107"),
    "retain_patient_chars": ("rtnPatCharsOpt", "113108"),
    "retain_device_identity": ("rtnDevIdOpt", "113109"),
    "retain_uids": ("rtnUIDsOpt", "113110"),
    "retain_safe_private": ("rtnSafePrivOpt", "113111"),
    "retain_institution_identity": ("rtnInstIdOpt", "113112"),
}

# E.1.1 defines each combination as "the first action unless a later one is needed for IOD
# conformance" (Type 3 / 2 / 1). Without per-IOD module tables we cannot know the Type, so
# we take the action that is conformant for the strictest Type: the last one. None of them
# keeps an original value (Z empties, D substitutes a dummy, U re-keys the contained UIDs),
# and enhanced IODs keep their Type 1 attributes (Acquisition DateTime, Content Date/Time).
COMBINED: Final = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}

# Project rules on top of the table, each stricter than the table and its options.
_ALWAYS_REMOVED: Final = (
    0x00181000,  # Device Serial Number: singles out a scanner, hence a site
    0x00081010,  # Station Name, and the station's name in other roles: same
    0x00400242,  # Performed Station Name
    0x00400010,  # Scheduled Station Name
    0x00404028,  # Performed Station Name Code Sequence
    0x00404025,  # Scheduled Station Name Code Sequence
    0x00100030,  # Patient's Birth Date: age is kept as a band instead
)
_INSTITUTION: Final = (0x00080080, 0x00080081, 0x00081040, 0x00080082, 0x00081041)
# Content Sequence is D, and a dummy sequence would be kept with its items de-identified one
# attribute at a time. But an SR's items are the document's own text and person names: with
# Clean Structured Content not offered nothing vouches for them, so the sequence is emptied.
_EMPTIED: Final = (0x0040A730,)
_OVERLAY_DATA: Final = 0x60003000

# Retain Safe Private: (group, private creator) -> element offsets kept (None: the whole
# block). Only what dcm2niix reads for geometry, timing, diffusion and its BIDS sidecar;
# every kept value is still cleaned (apply.PrivateCleaner) and scanned by the PHI gate.
SAFE_PRIVATE: Final[dict[tuple[int, str], frozenset[int] | None]] = {
    # CSA image and series headers: mosaic layout, slice times, diffusion, phase encoding.
    (0x0029, "SIEMENS CSA HEADER"): frozenset({0x08, 0x09, 0x10, 0x18, 0x19, 0x20}),
    # NumberOfImagesInMosaic, SliceMeasurementDuration, BValue, DiffusionDirectionality,
    # DiffusionGradientDirection, RealDwellTime, BMatrix, BandwidthPerPixelPhaseEncode,
    # MosaicRefAcqTimes.
    (0x0019, "SIEMENS MR HEADER"): frozenset(
        {0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x18, 0x27, 0x28, 0x29}
    ),
    # Acquisition matrix, orientation, parallel imaging (PAT) and image type texts.
    (0x0051, "SIEMENS MR HEADER"): frozenset({0x0B, 0x0E, 0x11, 0x16}),
    # XA enhanced: dcm2niix reads many elements of these functional-group blocks.
    (0x0021, "SIEMENS MR SDS 01"): None,
    (0x0021, "SIEMENS MR SDI 02"): None,
    # GE acquisition and parameter blocks (b-values, directions, echo spacing) and the
    # RTIA timer that gives slice timing; GEMS_IDEN_01 and GEMS_PATI_01 (identities) go.
    (0x0019, "GEMS_ACQU_01"): None,
    (0x0043, "GEMS_PARM_01"): None,
    (0x0021, "GEMS_RELA_01"): frozenset({0x5E}),
    # Philips scaling, diffusion and slice fields, and the MR sequence (2005,140F) of
    # standard attributes (parallel imaging, spoiling, sequence name) that classic files
    # carry privately: its items go through the profile like any dataset.
    (0x2001, "Philips Imaging DD 001"): None,
    (0x2005, "Philips MR Imaging DD 001"): None,
    (0x2005, "Philips MR Imaging DD 005"): frozenset({0x0F}),
}


def is_safe_private(group: int, creator: str, offset: int) -> bool:
    if (group, creator) not in SAFE_PRIVATE:
        return False
    offsets = SAFE_PRIVATE[(group, creator)]
    return offsets is None or offset in offsets


@dataclass(frozen=True)
class Options:
    """The profile options in use (PS3.15 E.3) and the project's parameters for them.

    Ages are kept as bands of `age_band_width` years: everything below `age_band_bottom`
    is one band (minors), the first adult band runs to the end of the next decade
    ("18-29"), and `age_band_top` and over merge ("90+"). Dates move by a keyed
    per-patient shift of [date_shift_min_days, date_shift_max_days] days plus seconds.
    """

    retain_long_modified_dates: bool = True
    clean_descriptors: bool = True
    retain_patient_chars: bool = True
    retain_device_identity: bool = True
    retain_institution_identity: bool = False
    retain_safe_private: bool = True
    retain_uids: bool = False
    age_band_width: int = 10
    age_band_top: int = 90
    age_band_bottom: int = 18
    date_shift_min_days: int = -730
    date_shift_max_days: int = -30

    def __post_init__(self) -> None:
        if self.age_band_width < 1 or not 0 <= self.age_band_bottom < self.age_band_top:
            raise ValueError("age bands need width >= 1 and 0 <= bottom < top")
        if self.date_shift_min_days > self.date_shift_max_days:
            raise ValueError("date shift range is empty")

    def enabled(self) -> tuple[str, ...]:
        """Names of the PS3.15 options switched on, in a stable order."""
        names = (f.name for f in fields(self) if f.name in _OPTION_COLUMNS)
        return tuple(n for n in names if getattr(self, n))


@dataclass(frozen=True, eq=False)
class Profile:
    edition: str
    options: Options
    options_used: tuple[str, ...]
    _exact: dict[int, str] = field(repr=False)
    # (mask, value, action) for the rows with XX wildcards, e.g. (60XX,3000).
    _patterns: tuple[tuple[int, int, str], ...] = field(repr=False)
    _private: str = field(repr=False)

    def action(self, tag: int) -> str | None:
        """The effective action for a tag, or None when the table does not list it."""
        found = self._exact.get(tag)
        if found is not None:
            return found
        group = tag >> 16
        if group & 1:
            # Groups 0001-0007 and FFFF cannot hold private data: never keep them.
            return "X" if group < 0x0009 or group == 0xFFFF else self._private
        if 0x5000 <= group <= 0x60FF:  # only curves and overlays repeat: skip the scan otherwise
            for mask, value, act in self._patterns:
                if tag & mask == value:
                    return act
            # Without its Overlay Data an overlay group is a broken module that may still
            # carry a description or label: it goes as a whole.
            if 0x6000 <= group <= 0x601E and self.action(_OVERLAY_DATA) == "X":
                return "X"
        return None

    def method_codes(self) -> list[tuple[str, str]]:
        """(code value, code meaning) for DeidentificationMethodCodeSequence."""
        codes = [BASIC_PROFILE_CODE]
        codes += [(c, CODES[c]) for c in (_OPTION_COLUMNS[n][1] for n in self.options_used)]
        return codes

    def method_text(self) -> list[str]:
        """DeidentificationMethod values (LO, each at most 64 characters)."""
        return [f"PS3.15 {self.edition} Basic Profile (passerelle)"] + [
            meaning.removesuffix(" Option")[:64] for _, meaning in self.method_codes()[1:]
        ]


def _table() -> list[dict[str, Any]]:
    data = resources.files("passerelle") / "data"
    rows: list[dict[str, Any]] = json.loads((data / f"{_TABLE}.json").read_text("utf-8"))
    source = json.loads((data / f"{_TABLE}.source.json").read_text("utf-8"))
    if source["edition"] != EDITION or len(rows) != source["rows"]:
        raise RuntimeError(f"vendored {_TABLE}.json does not match its source record")
    return rows


def _resolve(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    # An enabled option overrides the Basic Profile (E.3). When two enabled options disagree
    # (K for device identity, C for dates on Date of Last Detector Calibration) the
    # cleaning wins: retaining one thing must not re-open another in clear.
    chosen = {row[c] for c in columns if row.get(c)}
    if chosen:
        return "C" if "C" in chosen else "K"
    basic = row["basicProfile"]
    return COMBINED.get(basic, basic)


def _pattern(tag: str) -> tuple[int, int]:
    digits = tag.strip("()").replace(",", "")
    mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
    return mask, int(digits.replace("X", "0"), 16)


def load_profile(options: Options | None = None) -> Profile:
    return _load(options or Options())


@cache
def _load(options: Options) -> Profile:
    columns = tuple(_OPTION_COLUMNS[n][0] for n in options.enabled())
    exact: dict[int, str] = {}
    patterns: list[tuple[int, int, str]] = []
    private = "X"
    for row in _table():
        action = _resolve(row, columns)
        tag = row["tag"]
        if "GGGG" in tag:  # "(GGGG,EEEE) WHERE GGGG IS ODD": private attributes
            private = action
        elif "X" in tag:
            patterns.append((*_pattern(tag), action))
        else:
            exact[int(row["id"], 16)] = action
    for tag in _ALWAYS_REMOVED:
        exact[tag] = "X"
    for tag in _EMPTIED:
        exact[tag] = "Z"
    if not options.retain_institution_identity:
        for tag in _INSTITUTION:
            exact[tag] = "X"
    return Profile(EDITION, options, options.enabled(), exact, tuple(patterns), private)
