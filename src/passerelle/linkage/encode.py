"""Keyed per-field encodings: what leaves the warehouse instead of identities.

Both sides apply the same transform with the project key: HMAC-SHA256 of each normalised
field (exact agreement, and blocking), and for names and addresses a keyed Bloom filter of the
character bigrams (Schnell's cryptographic long-term key style, one filter per field) so a typo
changes a few bits instead of the whole value. Without the key neither can be recomputed from a
guessed identity. Only the standard library and passerelle.keys: the warehouse needs no more.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from passerelle.keys import SecretKey

BLOOM_BITS = 1024
BLOOM_HASHES = 20
EXACT_CHARS = 16


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "name" (Bloom + HMAC), "date" (HMAC of the whole and of each part), "exact"
    block: bool = True  # its keyed value is a blocking key (not for coarse ones such as sex)


# The identifiers a clinical warehouse and a DICOM header both hold.
CLINICAL_FIELDS = (
    Field("family", "name"),
    Field("given", "name"),
    Field("birth_date", "date"),
    Field("sex", "exact", block=False),
)


def normalise(value: str | None, kind: str) -> str:
    """Upper case, no accents, letters (and digits for non-names) only; dates as YYYYMMDD."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKD", str(value))
    text = "".join(c for c in text if not unicodedata.combining(c)).upper()
    if kind == "name":
        return re.sub(r"[^A-Z]+", " ", text).strip()
    if kind == "date":
        digits = re.sub(r"\D", "", text)
        return digits if len(digits) == 8 else ""
    return re.sub(r"[^A-Z0-9]+", "", text)


def exact(key: SecretKey, field: str, value: str) -> str:
    return key.digest(f"link:{field}", value).hex()[:EXACT_CHARS] if value else ""


def bigrams(text: str) -> set[str]:
    padded = f"_{text}_"
    return {padded[i : i + 2] for i in range(len(padded) - 1)}


def bloom(key: SecretKey, field: str, value: str) -> int:
    """A keyed Bloom filter of the value's bigrams (double hashing from one HMAC per bigram)."""
    bits = 0
    if not value:
        return bits
    for gram in bigrams(value):
        d = key.digest(f"bloom:{field}", gram)
        h1, h2 = int.from_bytes(d[:16], "big"), int.from_bytes(d[16:], "big") | 1
        for i in range(BLOOM_HASHES):
            bits |= 1 << ((h1 + i * h2) % BLOOM_BITS)
    return bits


def soundex(name: str) -> str:
    """American Soundex of the first word: a keyed blocking key tolerant to spelling."""
    word = name.split(" ")[0] if name else ""
    if not word:
        return ""
    codes = {c: d for d, letters in
             (("1", "BFPV"), ("2", "CGJKQSXZ"), ("3", "DT"), ("4", "L"), ("5", "MN"), ("6", "R"))
             for c in letters}  # fmt: skip
    out, last = word[0], codes.get(word[0], "")
    for c in word[1:]:
        code = codes.get(c, "")
        if code and code != last:
            out += code
        if c not in "HW":
            last = code
    return (out + "000")[:4]


def encode_record(
    key: SecretKey, record: Mapping[str, str | None], fields: tuple[Field, ...]
) -> dict[str, str]:
    """Encodings of one record: <field> (HMAC), <field>_bf (hex Bloom filter), date parts,
    and keyed blocking keys. Nothing here is reversible without the key."""
    out: dict[str, str] = {}
    for f in fields:
        value = normalise(record.get(f.name), f.kind)
        out[f.name] = exact(key, f.name, value)
        if f.kind == "name":
            out[f"{f.name}_bf"] = format(bloom(key, f.name, value), "x") if value else ""
            out[f"{f.name}_sdx"] = exact(key, f"{f.name}:soundex", soundex(value))
        elif f.kind == "date":
            for part, (a, b) in (("y", (0, 4)), ("m", (4, 6)), ("d", (6, 8))):
                out[f"{f.name}_{part}"] = exact(key, f"{f.name}:{part}", value[a:b])
    return out


def dice(a: str, b: str) -> float | None:
    """Dice similarity of two hex Bloom filters; None when either is missing."""
    if not a or not b:
        return None
    x, y = int(a, 16), int(b, 16)
    total = x.bit_count() + y.bit_count()
    return 2 * (x & y).bit_count() / total if total else None
