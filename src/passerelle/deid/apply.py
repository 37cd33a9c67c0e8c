"""Apply the confidentiality profile to one dataset in place, with keyed pseudonyms.

The table decides per attribute (at any depth); on top of it the project writes its own
keyed values (PatientID = subject label, keyed accession and study IDs, an age band), keeps
only the private elements that converters need, and marks the dataset as de-identified.
The Audit names every element and what happened to it, never a value.
"""

from __future__ import annotations

import gzip
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

import pydicom
from pydicom import uid as pdu
from pydicom.datadict import dictionary_VR, get_entry, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from passerelle.deid.dates import (
    age_band,
    age_years,
    patient_shift,
    shift_da,
    shift_dates_in_text,
    shift_dt,
    shift_tm,
)
from passerelle.deid.profile import SAFE_PRIVATE, Options, Profile, is_safe_private, load_profile
from passerelle.deid.text import person_word_hits, strip_accents
from passerelle.deid.uids import IMPLEMENTATION_CLASS_UID, keyed_uid, scrub_embedded_uids
from passerelle.dicom.classify import FUNCTIONAL_GROUP_TAGS
from passerelle.fsutil import atomic_write_bytes
from passerelle.keys import SecretKey
from passerelle.labels import patient_key, session_label, subject_label

GZIP_MAGIC: Final = b"\x1f\x8b"
IMPLEMENTATION_VERSION_NAME: Final = "PASSERELLE"
DUMMY_TEXT: Final = "ANON"
_DUMMY: Final = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y"}
_NUMBER_STRINGS: Final = {"IS", "DS"}
_BINARY_NUMBERS: Final = {"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"}
_STRINGS: Final = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
_CLEANABLE: Final = {"AE", "LO", "LT", "SH", "ST", "UC", "UT"}
_TEMPORAL: Final = {"DA", "TM", "DT"}
_SCRUBBED: Final = {"OB", "UN", "LO", "LT", "SH", "ST", "UC", "UT"}  # may quote UIDs
_MAX_CHARS: Final = {"AE": 16, "LO": 64, "SH": 16, "ST": 1024, "LT": 10240}

PATIENT_NAME: Final = 0x00100010
PATIENT_ID: Final = 0x00100020
PATIENT_AGE: Final = 0x00101010
ACCESSION_NUMBER: Final = 0x00080050
STUDY_ID: Final = 0x00200010
# Written by _mark() after the walk; what the source had there is simply replaced.
_MARKS: Final = {
    0x00120062: "PatientIdentityRemoved",
    0x00120063: "DeidentificationMethod",
    0x00120064: "DeidentificationMethodCodeSequence",
    0x00280303: "LongitudinalTemporalInformationModified",
}

# UI attributes that name a type (SOP class, transfer syntax, coding scheme), not an
# instance: they identify no one, and readers need them verbatim (even private classes).
_CLASS_UIDS: Final = frozenset({
    "SOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile",
    "ReferencedRelatedGeneralSOPClassUIDInFile", "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID", "SOPClassesInStudy", "MediaStorageSOPClassUID",
    "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile", "ImplementationClassUID",
    "CodingSchemeUID", "MappingResourceUID", "ContextGroupExtensionCreatorUID",
    "PrivateInformationCreatorUID",
})  # fmt: skip

# Values of these attributes (and every PN) are collected before the walk and erased from
# any descriptor that is cleaned and from kept private text: free text often repeats the
# name or an ID verbatim. The lists match what the PHI gate watches for.
_ID_KEYWORDS: Final = frozenset({
    "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "StudyID",
    "AdmissionID", "MedicalRecordLocator", "RequestedProcedureID", "ScheduledProcedureStepID",
    "PerformedProcedureStepID", "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest", "PatientTelephoneNumbers",
    "ReferringPhysicianTelephoneNumbers", "StationName", "DeviceSerialNumber",
})  # fmt: skip
_TEXT_KEYWORDS: Final = frozenset(
    {"PatientAddress", "ReferringPhysicianAddress", "RegionOfResidence"}
)
_INSTITUTION_KEYWORDS: Final = frozenset(
    {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName"}
)


# ---------------------------------------------------------------------------- text cleaning

_TITLED: Final = re.compile(r"[A-Za-z]+\.?(?:[\s.^,:]+(?:[A-Za-z]\.\s*)*[A-Za-z][A-Za-z'-]*)?")
_MONTHS: Final = "jan|feb|fev|mar|apr|avr|may|mai|jun|juin|jul|juil|aug|aou|sep|oct|nov|dec"
_DATES: Final = (
    re.compile(r"(?<!\d)\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?!\d)"),
    re.compile(r"(?<!\d)\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?!\d)"),
    re.compile(
        rf"(?i)(?<![a-z0-9])\d{{1,2}}(?:er|st|nd|rd|th)?\s+(?:{_MONTHS})[a-z]*\.?,?\s+\d{{2,4}}(?!\d)"
    ),
    re.compile(
        rf"(?i)(?<![a-z0-9])(?:{_MONTHS})[a-z]*\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}(?!\d)"
    ),
    re.compile(r"(?<!\d)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?!\d)"),  # times of day
    re.compile(r"\d{6,}"),  # long digit runs: record and phone numbers, YYYYMMDD
)
_DISALLOWED: Final = re.compile(r"[^A-Za-z0-9 _+=().,:/-]+")
_EMPTY_BRACKETS: Final = re.compile(r"\(\s*\)")
_STRAY: Final = re.compile(r"(?<!\S)[^A-Za-z0-9\s()]+(?!\S)")  # punctuation left alone
_SPACES: Final = re.compile(r"\s+")


class TextCleaner:
    """Removes known identifying strings, titled names, dates and long numbers from text.

    Identifiers are split into parts so a name matches in any order and in caret form.
    Parts of 4+ characters are removed wherever they occur (also glued to other words);
    shorter ones only as whole words so that "Li" does not eat "Clinical".
    """

    def __init__(self, identifiers: Iterable[str] = ()) -> None:
        alternatives: set[str] = set()
        for raw in identifiers:
            parts = _parts(raw)
            if len(parts) > 1:
                alternatives.add(r"[^a-z0-9]*".join(map(re.escape, parts)))
            for part in parts:
                if len(part) >= 4:
                    alternatives.add(re.escape(part))
                elif len(part) >= 2 and not part.isdigit():
                    alternatives.add(rf"(?<![a-z0-9]){re.escape(part)}(?![a-z0-9])")
        ordered = sorted(alternatives, key=lambda a: (-len(a), a))
        self._known = re.compile("|".join(ordered), re.IGNORECASE) if ordered else None

    def __call__(self, text: str) -> str:
        folded = strip_accents(text)
        out = _drop_titled_names(folded)
        if self._known is not None:
            out = self._known.sub(" ", out)
        for pattern in _DATES:
            out = pattern.sub(" ", out)
        removed = out != folded
        out = _SPACES.sub(" ", _DISALLOWED.sub(" ", out)).strip()
        if removed:  # tidy what the removals left; untouched descriptors stay as they were
            out = _SPACES.sub(" ", _STRAY.sub(" ", _EMPTY_BRACKETS.sub(" ", out)))
            out = out.strip(" ,.:;/-")
        return out


def _drop_titled_names(text: str) -> str:
    # Every word the gate would take for a person-introducing word goes, with the name after.
    for start in reversed(person_word_hits(text)):
        m = _TITLED.match(text, start)
        if m is not None:
            text = f"{text[:start]} {text[m.end() :]}"
    return text


@cache
def _cleaner(identifiers: frozenset[str]) -> TextCleaner:
    return TextCleaner(identifiers)


def clean_text(value: str, identifiers: Iterable[str] = ()) -> str:
    # Only identifiers with a part present in the text can match: the rest would make every
    # header compile its own pattern (one per patient), the main cost of indexing an inbox.
    haystack = strip_accents(value).casefold()
    present = frozenset(raw for raw in identifiers if any(p in haystack for p in _parts(raw)))
    return _cleaner(present)(value)


class _OneCharFold(dict[int, str]):
    """str.translate table folding each character to exactly one (lengths never change)."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        self[code] = folded = (strip_accents(char) or char)[0] if code > 127 else char
        return folded


_ONE_CHAR_FOLD: Final = _OneCharFold()


class PrivateCleaner:
    """Cleaning of kept private text and blobs without changing their length, so that
    binary containers (Siemens CSA headers, the Phoenix protocol) stay parseable: embedded
    UIDs are re-keyed, the header's own dates shifted where they recur (a software build
    date is not the patient's), and names and IDs of the source overwritten with X as whole
    tokens, the way the PHI gate tokenises text."""

    def __init__(self, key: SecretKey, shift: timedelta, found: Identifiers) -> None:
        self.key, self.shift, self.dates = key, shift, found.dates
        words: set[str] = set()
        for name in found.names:
            words.update(re.escape(p) for p in _parts(name) if len(p) >= 3)
        for value in found.ids | found.texts:
            parts = _parts(value)
            if parts and len("".join(parts)) >= 2:
                words.add(r"[^a-z0-9]+".join(map(re.escape, parts)))
                words.add(re.escape("".join(parts)))
        ordered = sorted(words, key=lambda w: (-len(w), w))
        self._words = (
            re.compile(rf"(?<![a-z0-9])(?:{'|'.join(ordered)})(?![a-z0-9])", re.IGNORECASE)
            if ordered
            else None
        )

    def __call__(self, text: str) -> str:
        text = scrub_embedded_uids(self.key, text)
        text = shift_dates_in_text(text, self.shift, self.dates)
        if self._words is None:
            return text
        spans = [m.span() for m in self._words.finditer(text.translate(_ONE_CHAR_FOLD))]
        for start, end in reversed(spans):
            text = text[:start] + "X" * (end - start) + text[end:]
        return text


def _parts(value: str) -> list[str]:
    return [p for p in re.split(r"[^a-z0-9]+", strip_accents(value).lower()) if p]


# ---------------------------------------------------------------------------- context, audit


@dataclass(frozen=True)
class Context:
    """Everything keyed about one patient and study that the rewrite needs."""

    key: SecretKey
    profile: Profile
    patient: str  # labels.patient_key(issuer, patient_id)
    subject: str
    session: str
    shift: timedelta
    identifiers: frozenset[str] = frozenset()  # extra names and IDs to erase from text

    @property
    def options(self) -> Options:
        return self.profile.options

    @classmethod
    def create(
        cls,
        key: SecretKey,
        issuer: str,
        patient_id: str,
        study_uid: str,
        profile: Profile | None = None,
        identifiers: Iterable[str] = (),
    ) -> Context:
        profile = profile or load_profile()
        patient = patient_key(issuer, patient_id)
        o = profile.options
        return cls(
            key=key,
            profile=profile,
            patient=patient,
            subject=subject_label(key, patient),
            session=session_label(key, study_uid),
            shift=patient_shift(key, patient, o.date_shift_min_days, o.date_shift_max_days),
            identifiers=frozenset(identifiers),
        )

    @classmethod
    def for_dataset(
        cls,
        key: SecretKey,
        ds: Dataset,
        profile: Profile | None = None,
        identifiers: Iterable[str] = (),
    ) -> Context:
        def text(keyword: str) -> str:
            return str(ds.get(keyword, "") or "").strip()

        return cls.create(
            key,
            text("IssuerOfPatientID"),
            text("PatientID"),
            text("StudyInstanceUID"),
            profile,
            identifiers,
        )


@dataclass
class Audit:
    """What happened to each element: (tag, keyword, action) once per distinct triple, with
    how many elements it covers (a multi-frame file repeats the same tags thousands of
    times). Kept private elements are named by their (allow-listed) private creator, others
    as "[private]": a creator string is a value like any other. No value is ever kept."""

    seen: dict[tuple[str, str, str], int] = field(default_factory=dict)
    age_band: str | None = None

    def record(self, tag: int, keyword: str, action: str) -> None:
        key = (f"({tag >> 16:04X},{tag & 0xFFFF:04X})", keyword, action)
        self.seen[key] = self.seen.get(key, 0) + 1

    @property
    def entries(self) -> list[tuple[str, str, str]]:
        return list(self.seen)

    @property
    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for (_, _, action), n in self.seen.items():
            total[action] += n
        return dict(sorted(total.items()))

    def actions(self, keyword: str) -> set[str]:
        return {a for _, k, a in self.seen if k == keyword}

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": [
                {"tag": t, "keyword": k, "action": a, "count": n}
                for (t, k, a), n in self.seen.items()
            ],
            "counts": self.counts,
            "age_band": self.age_band,
        }


# ---------------------------------------------------------------------------- the walk


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value if value is not None else "").strip("\x00 ")


def _values(elem: DataElement) -> list[str]:
    if isinstance(elem.value, MultiValue | list | tuple):
        return [_text(v) for v in elem.value]
    return [_text(elem.value)]


def _is_empty(elem: DataElement) -> bool:
    return elem.value is None or elem.value == "" or elem.value == b"" or elem.value == []


def _set_values(elem: DataElement, values: list[str]) -> None:
    elem.value = values[0] if len(values) == 1 else values


def _known(tag: int) -> bool:
    try:
        get_entry(tag)  # also resolves repeating-group entries such as (60xx,0010)
    except KeyError:
        return False
    return True


@cache
def _time_partner(keyword: str) -> int | None:
    """StudyDate -> StudyTime, DateOfLastCalibration -> TimeOfLastCalibration, ..."""
    if "Date" not in keyword or "DateTime" in keyword:
        return None
    tag = tag_for_keyword(keyword.replace("Date", "Time"))
    return tag if tag is not None and dictionary_VR(tag) == "TM" else None


class _Walker:
    def __init__(
        self,
        ctx: Context,
        audit: Audit,
        clean: TextCleaner,
        clean_private: PrivateCleaner,
        band: tuple[str, int] | None,
    ) -> None:
        self.ctx, self.audit, self.band = ctx, audit, band
        self.clean, self.clean_private = clean, clean_private
        self.profile, self.options = ctx.profile, ctx.options

    def walk(self, ds: Dataset, top: bool = False) -> None:
        # Creators and times are read before anything changes at this level: a private
        # element needs its creator, a date its (original) paired time.
        creators: dict[tuple[int, int], str] = {}
        times: dict[int, list[str]] = {}
        for elem in ds:
            if elem.tag.is_private_creator:
                creators[(elem.tag.group, elem.tag.element)] = _text(elem.value)
            elif elem.VR == "TM" and not _is_empty(elem):
                times[elem.tag] = _values(elem)
        for elem in list(ds):
            if top and elem.tag in _MARKS:
                continue
            if elem.tag.is_private:
                self.private(ds, elem, creators, times)
            else:
                self.standard(ds, elem, times)

    def standard(self, ds: Dataset, elem: DataElement, times: dict[int, list[str]]) -> None:
        tag = elem.tag
        if tag.element == 0:  # group lengths are retired and would be wrong after edits
            action = "X"
            del ds[tag]
        elif (done := self.override(ds, elem)) is not None:
            action = done
        else:
            planned = self.profile.action(tag)
            if planned is None:
                planned = self.default(elem)
            action = self.apply(ds, elem, planned, times)
        self.audit.record(tag, elem.keyword, action)

    def default(self, elem: DataElement) -> str:
        if not _known(elem.tag):
            return "X"  # neither standard nor private: nothing says what it holds
        if elem.VR == "UI" and not self.options.retain_uids and elem.keyword not in _CLASS_UIDS:
            return "U"  # any instance UID, listed or not (references inside sequences)
        return "K"

    def override(self, ds: Dataset, elem: DataElement) -> str | None:
        tag, ctx = elem.tag, self.ctx
        if tag == PATIENT_ID:
            elem.value = ctx.subject
            return "D"
        if tag == PATIENT_NAME:
            elem.value = f"sub-{ctx.subject}"
            return "D"
        if tag in (ACCESSION_NUMBER, STUDY_ID):
            original = _text(elem.value)
            if not original:
                elem.value = elem.empty_value
                return "Z"
            purpose, size = ("accession", 16) if tag == ACCESSION_NUMBER else ("studyid", 8)
            elem.value = ctx.key.digest(purpose, original).hex()[:size]
            return "D"
        if tag == PATIENT_AGE:
            if self.band is None or self.profile.action(tag) == "X":
                del ds[tag]
                return "X"
            elem.value = f"{self.band[1]:03d}Y"  # AS cannot hold "40-49": the lower bound
            return "C"
        return None

    def private(
        self,
        ds: Dataset,
        elem: DataElement,
        creators: dict[tuple[int, int], str],
        times: dict[int, list[str]],
    ) -> None:
        tag = elem.tag
        group, number = tag.group, tag.element
        allowed = self.profile.action(tag) == "C"  # Retain Safe Private
        if tag.is_private_creator:
            creator: str | None = _text(elem.value)
            keep = allowed and (group, creator) in SAFE_PRIVATE
        else:
            creator = creators.get((group, number >> 8)) if number >= 0x1000 else None
            keep = (
                allowed and creator is not None and is_safe_private(group, creator, number & 0xFF)
            )
        known = creator is not None and (group, creator) in SAFE_PRIVATE
        keyword = f"[{creator}]" if known else "[private]"
        if not keep or tag.is_private_creator:  # a kept creator must stay byte-exact
            if not keep:
                del ds[tag]
            self.audit.record(tag, keyword, "K" if keep else "X")
            return
        # A kept block gets the same safety net as standard attributes.
        vr = elem.VR
        if vr == "PN":
            planned = "X"  # a name is never safe, whatever the vendor
        elif vr in _TEMPORAL:
            planned = "C" if self.options.retain_long_modified_dates else "X"
        elif vr == "UI":
            planned = "K" if self.options.retain_uids else "U"
        elif vr == "SQ":
            planned = "K"  # its items are walked like any others
        else:
            self.audit.record(tag, keyword, "C" if vr in _SCRUBBED and self.scrub(elem) else "K")
            return
        self.audit.record(tag, keyword, self.apply(ds, elem, planned, times))

    def scrub(self, elem: DataElement) -> bool:
        """Same-length cleaning of a kept private value; True if anything changed."""
        value = elem.value
        if isinstance(value, bytes):
            new: Any = self.clean_private(value.decode("latin-1")).encode("latin-1")
        elif isinstance(value, str):
            new = self.clean_private(value)
        else:
            return False
        if new == value:
            return False
        elem.value = new
        return True

    def apply(
        self, ds: Dataset, elem: DataElement, action: str, times: dict[int, list[str]]
    ) -> str:
        """Carry out one action; returns the action actually performed."""
        vr = elem.VR
        if action == "X":
            del ds[elem.tag]
            return "X"
        if vr == "SQ":
            if action == "Z":
                elem.value = Sequence()
                return "Z"
            # D, U, C and K keep the sequence; its items go through the same rules.
            for item in elem.value:
                self.walk(item)
            return action
        if action == "K":
            return "K"
        if action == "Z" or _is_empty(elem):
            elem.value = elem.empty_value
            return "Z"
        if action == "U" and vr == "UI":
            _set_values(elem, [keyed_uid(self.ctx.key, v) for v in _values(elem)])
            return "U"
        if vr in _TEMPORAL and (action == "C" or self.options.retain_long_modified_dates):
            return self.shift(elem, times)
        if action == "C":
            if vr in _CLEANABLE:
                limit = _MAX_CHARS.get(vr)
                _set_values(elem, [self.clean(v)[:limit] for v in _values(elem)])
                return "C"
            return "K"
        return self.dummy(elem)

    def dummy(self, elem: DataElement) -> str:
        vr = elem.VR
        if vr in _DUMMY:
            elem.value = _DUMMY[vr]
        elif vr in _NUMBER_STRINGS:
            elem.value = "0"
        elif vr in _BINARY_NUMBERS:
            elem.value = 0
        elif vr in _STRINGS:
            elem.value = DUMMY_TEXT
        elif vr == "UI":
            _set_values(elem, [keyed_uid(self.ctx.key, v) for v in _values(elem)])
            return "U"
        else:  # bytes, tags: no meaningful dummy, so empty
            elem.value = elem.empty_value
            return "Z"
        return "D"

    def shift(self, elem: DataElement, times: dict[int, list[str]]) -> str:
        values, shift = _values(elem), self.ctx.shift
        try:
            if elem.VR == "DA":
                partner = _time_partner(elem.keyword)
                paired = times.get(partner, []) if partner else []
                if len(paired) != len(values):
                    paired = [""] * len(values)
                out = [shift_da(v, shift, t) for v, t in zip(values, paired, strict=True)]
            elif elem.VR == "TM":
                out = [shift_tm(v, shift) for v in values]
            else:
                out = [shift_dt(v, shift) for v in values]
        except ValueError:
            elem.value = elem.empty_value  # an unreadable date cannot be shifted, so it goes
            return "Z"
        _set_values(elem, out)
        return "C"


# ---------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class Identifiers:
    """Identifying values of the source: names (matched part by part, in any order), IDs
    and texts such as addresses (matched as a whole)."""

    names: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    texts: frozenset[str] = frozenset()
    dates: frozenset[str] = frozenset()  # YYYYMMDD of every date the header holds

    def all(self) -> frozenset[str]:
        return self.names | self.ids | self.texts


def collect_identifiers(ds: Dataset, ctx: Context) -> Identifiers:
    """From every depth of ds, before anything is changed, plus the context's extras."""
    texts = _TEXT_KEYWORDS
    if not ctx.options.retain_institution_identity:
        texts = texts | _INSTITUTION_KEYWORDS
    names, ids, other, dates = set(ctx.identifiers), set(ctx.identifiers), set(), set()

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                if elem.tag not in FUNCTIONAL_GROUP_TAGS:
                    for item in elem.value:
                        visit(item)
                continue
            if elem.VR in ("DA", "DT") and not elem.tag.is_private:
                dates.update(v[:8] for v in _values(elem) if len(v) >= 8)
                continue
            if elem.VR == "PN":
                bucket = names
            elif elem.tag.is_private:
                continue
            elif elem.keyword in _ID_KEYWORDS:
                bucket = ids
            elif elem.keyword in texts:
                bucket = other
            else:
                continue
            bucket.update(v for v in _values(elem) if v)

    visit(ds)
    return Identifiers(frozenset(names), frozenset(ids), frozenset(other), frozenset(dates))


def _mark(ds: Dataset, profile: Profile, audit: Audit) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = (
        "MODIFIED" if profile.options.retain_long_modified_dates else "REMOVED"
    )
    ds.DeidentificationMethod = profile.method_text()
    codes = []
    for value, meaning in profile.method_codes():
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    for tag, keyword in _MARKS.items():
        audit.record(tag, keyword, "D")


def _transfer_syntax(ds: Dataset) -> str:
    implicit, little = getattr(ds, "original_encoding", (False, True))
    if implicit:
        return pdu.ImplicitVRLittleEndian
    return pdu.ExplicitVRLittleEndian if little is not False else pdu.ExplicitVRBigEndian


def _file_meta(ds: Dataset, ctx: Context, audit: Audit) -> None:
    """Rebuild the file meta from the dataset: it can carry the sending AE title, private
    information and the source instance UID, none of which may survive."""
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    kept = {"FileMetaInformationVersion", "TransferSyntaxUID", "MediaStorageSOPClassUID"}
    for elem in old:
        if elem.keyword in kept:
            action = "K"
        elif elem.keyword == "MediaStorageSOPInstanceUID":
            action = "U"
        elif elem.keyword in ("ImplementationClassUID", "ImplementationVersionName"):
            action = "D"
        else:
            action = "X"
        audit.record(elem.tag, elem.keyword, action)
    sop = _text(ds.get("SOPInstanceUID")) or keyed_uid(
        ctx.key, _text(old.get("MediaStorageSOPInstanceUID"))
    )
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = _text(ds.get("SOPClassUID")) or _text(
        old.get("MediaStorageSOPClassUID")
    )
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = _text(old.get("TransferSyntaxUID")) or _transfer_syntax(ds)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta


@cache
def _cleaners(
    key: SecretKey, shift: timedelta, found: Identifiers
) -> tuple[TextCleaner, PrivateCleaner]:
    # Compiled once per session: every file of a session shares its identifiers.
    return TextCleaner(found.all()), PrivateCleaner(key, shift, found)


def pseudonymise(ds: Dataset, ctx: Context, known: Identifiers | None = None) -> Audit:
    """De-identify ds (and ds.file_meta) in place; returns what was done, without values.

    `known`: the session's identifiers collected once beforehand, instead of from this file.
    """
    audit = Audit()
    o = ctx.options
    band = None
    if o.retain_patient_chars:
        age = age_years(
            _text(ds.get("PatientAge")),
            _text(ds.get("PatientBirthDate")),
            _text(ds.get("StudyDate")),
        )
        if age is not None:
            band = age_band(age, o.age_band_width, o.age_band_top, o.age_band_bottom)
            audit.age_band = band[0]
    found = known if known is not None else collect_identifiers(ds, ctx)
    clean, clean_private = _cleaners(ctx.key, ctx.shift, found)
    _Walker(ctx, audit, clean, clean_private, band).walk(ds, top=True)
    if band is not None and "PatientAge" not in ds:  # known only from the birth date
        ds.PatientAge = f"{band[1]:03d}Y"
        audit.record(PATIENT_AGE, "PatientAge", "C")
    _mark(ds, ctx.profile, audit)
    _file_meta(ds, ctx, audit)
    return audit


def read_dataset(path: Path) -> Dataset:
    """Read a DICOM file, gzipped or not (detected by its magic bytes, not its name)."""
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        data = gzip.decompress(data)
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:  # no preamble: a bare dataset, as some exports write
        return pydicom.dcmread(io.BytesIO(data), force=True)


def dataset_bytes(ds: Dataset) -> bytes:
    """The Part 10 bytes: zero preamble (vendors hide data there), same bytes every run."""
    ds.preamble = bytes(128)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def pseudonymise_file(src: Path, dst: Path, ctx: Context) -> Audit:
    """Read src (plain or gzipped), de-identify it and write dst uncompressed, atomically."""
    ds = read_dataset(src)
    audit = pseudonymise(ds, ctx)
    atomic_write_bytes(dst, dataset_bytes(ds))
    return audit


__all__ = [
    "SAFE_PRIVATE",
    "Audit",
    "Context",
    "Identifiers",
    "PrivateCleaner",
    "TextCleaner",
    "clean_text",
    "collect_identifiers",
    "dataset_bytes",
    "is_safe_private",
    "pseudonymise",
    "pseudonymise_file",
    "read_dataset",
    "strip_accents",
]
