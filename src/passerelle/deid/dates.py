"""Keyed per-patient date shifting for DICOM DA, TM, DT and ISO 8601 strings, and age bands.

Every instant of one patient moves by the same timedelta (whole days plus whole seconds), so
intervals survive exactly to the second while calendar dates and times of day do not.
A date without a time is taken at midnight: it moves by the whole days of the shift only.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Final

from passerelle.keys import SecretKey

DAY: Final = 86400

_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")  # the dotted form is ACR-NEMA
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?")
_DT = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?",
)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:([T ])(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?"
)


def patient_shift(key: SecretKey, patient: str, min_days: int, max_days: int) -> timedelta:
    """Whole days in [min_days, max_days] plus whole seconds in [0, 86399], keyed."""
    if min_days > max_days:
        raise ValueError(f"empty date shift range [{min_days}, {max_days}]")
    digest = key.digest("dateshift", patient)
    days = min_days + int.from_bytes(digest[:8], "big") % (max_days - min_days + 1)
    seconds = int.from_bytes(digest[8:16], "big") % DAY
    return timedelta(days=days, seconds=seconds)


def _match(pattern: re.Pattern[str], value: str, what: str) -> re.Match[str]:
    m = pattern.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"not a DICOM {what} value")
    return m


def _parse_da(value: str) -> date:
    y, mo, d = _match(_DA, value, "DA").groups()
    return date(int(y), int(mo), int(d))


def _format_da(value: str, day: date) -> str:
    text = f"{day.year:04d}{day.month:02d}{day.day:02d}"
    return f"{text[:4]}.{text[4:6]}.{text[6:]}" if "." in value else text


def _seconds_of_day(tm: str) -> int:
    h, mi, s, _ = _match(_TM, tm, "TM").groups()
    # Integer arithmetic (not datetime.time) so a leap second "60" still shifts.
    return int(h) * 3600 + int(mi or 0) * 60 + int(s or 0)


def _at(day: date, seconds: int, shift: timedelta) -> datetime:
    try:
        return datetime(day.year, day.month, day.day) + timedelta(seconds=seconds) + shift
    except OverflowError:
        raise ValueError("shifted date out of range") from None


def shift_da(value: str, shift: timedelta, paired_tm: str | None = None) -> str:
    """Shift a DA; with its paired TM the two move as one instant (midnight crossings)."""
    seconds = 0
    if paired_tm and paired_tm.strip():
        try:
            seconds = _seconds_of_day(paired_tm)
        except ValueError:
            seconds = 0
    return _format_da(value, _at(_parse_da(value), seconds, shift).date())


def shift_tm(value: str, shift: timedelta) -> str:
    """Shift a TM modulo 24 h, keeping its precision, fraction and separators."""
    _, mi, s, frac = _match(_TM, value, "TM").groups()
    t = (_seconds_of_day(value) + int(shift.total_seconds())) % DAY
    colon = ":" if ":" in value else ""
    out = f"{t // 3600:02d}"
    if mi is not None:
        out += f"{colon}{t // 60 % 60:02d}"
    if s is not None:
        out += f"{colon}{t % 60:02d}{frac or ''}"
    return out


def shift_pair(da: str, tm: str, shift: timedelta) -> tuple[str, str]:
    return shift_da(da, shift, tm), shift_tm(tm, shift)


def shift_dt(value: str, shift: timedelta) -> str:
    """Shift a DT at its own precision; fraction and UTC offset suffix are kept as they are."""
    y, mo, d, h, mi, s, frac, tz = _match(_DT, value, "DT").groups()
    if frac and s is None:
        raise ValueError("not a DICOM DT value")
    seconds = int(h or 0) * 3600 + int(mi or 0) * 60 + int(s or 0)
    try:
        start = date(int(y), int(mo or 1), int(d or 1))
    except ValueError:
        raise ValueError("not a DICOM DT value") from None
    t = _at(start, seconds, shift)
    parts = [f"{t.year:04d}"]
    for present, number in ((mo, t.month), (d, t.day), (h, t.hour), (mi, t.minute), (s, t.second)):
        if present is None:
            break
        parts.append(f"{number:02d}")
    return "".join(parts) + (frac or "") + (tz or "")


def shift_iso(value: str, shift: timedelta) -> str:
    """Shift an ISO 8601 date or date-time as used in JSON and TSV, in the same layout."""
    m = _match(_ISO, value, "ISO 8601")
    y, mo, d, sep, h, mi, s, frac, tz = m.groups()
    seconds = int(h or 0) * 3600 + int(mi or 0) * 60 + int(s or 0)
    try:
        start = date(int(y), int(mo), int(d))
    except ValueError:
        raise ValueError("not an ISO 8601 date") from None
    t = _at(start, seconds, shift)
    out = f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    if sep is not None:
        out += f"{sep}{t.hour:02d}:{t.minute:02d}"
        if s is not None:
            out += f":{t.second:02d}{frac or ''}"
    return out + (tz or "")


def age_years(patient_age: str | None, birth_date: str | None, on_date: str | None) -> int | None:
    """Age in whole years from an AS value, else from birth date and the study date."""
    age = (patient_age or "").strip().upper()
    if len(age) == 4 and age[:3].isdigit() and age[3] in "YMWD":
        n = int(age[:3])
        return {"Y": n, "M": n // 12, "W": n // 52, "D": n // 365}[age[3]]
    try:
        born, then = _parse_da(birth_date or ""), _parse_da(on_date or "")
    except ValueError:
        return None
    years = then.year - born.year - ((then.month, then.day) < (born.month, born.day))
    return years if years >= 0 else None


def age_band(age: int, width: int = 10, top: int = 90, bottom: int = 18) -> tuple[str, int]:
    """(label, lower bound). Below `bottom` is one band ("0-17"); the first adult band runs
    to the end of the next whole decade ("18-29") so no band is two years wide; `top` and
    over merge ("90+") because few people are that old and they are easy to single out."""
    if age >= top:
        return f"{top}+", top
    if age < bottom:
        return f"0-{bottom - 1}", 0
    first_high = -(-bottom // width) * width + width - 1
    if age <= first_high:
        low, high = bottom, first_high
    else:
        low = age // width * width
        high = low + width - 1
    return f"{low}-{min(high, top - 1)}", low


# Dates as they appear inside free text or binary blobs (the forms the PHI gate looks for).
_TEXT_DATES: Final = (
    (re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)"), "{y}{m}{d}"),
    (re.compile(r"(?<!\d)((?:19|20)\d{2})-(\d{2})-(\d{2})(?!\d)"), "{y}-{m}-{d}"),
    (re.compile(r"(?<!\d)(\d{2})/(\d{2})/((?:19|20)\d{2})(?!\d)"), "{d}/{m}/{y}"),
    (re.compile(r"(?<!\d)(\d{2})\.(\d{2})\.((?:19|20)\d{2})(?!\d)"), "{d}.{m}.{y}"),
)


def shift_dates_in_text(text: str, shift: timedelta, only: Collection[str] | None = None) -> str:
    """Shift the calendar dates embedded in text, keeping each one's length and layout
    (binary containers around the text keep their length fields valid). With `only`
    (YYYYMMDD values), other dates such as software build dates are left alone."""
    for pattern, layout in _TEXT_DATES:
        day_first = layout.startswith("{d}")

        def replace(m: re.Match[str], day_first: bool = day_first, layout: str = layout) -> str:
            a, b, c = m.groups()
            y, mo, d = (c, b, a) if day_first else (a, b, c)
            if only is not None and f"{y}{mo}{d}" not in only:
                return m.group()
            try:
                t = _at(date(int(y), int(mo), int(d)), 0, shift)
            except ValueError:
                return m.group()  # not a date (e.g. a number that only looks like one)
            return layout.format(y=f"{t.year:04d}", m=f"{t.month:02d}", d=f"{t.day:02d}")

        text = pattern.sub(replace, text)
    return text
