"""An independent leak check for end-to-end tests: it shares no code with the PHI gate."""

from __future__ import annotations

import gzip
import re
import struct
import unicodedata
from pathlib import Path


def fold(text: str) -> str:
    """Lower case without accents or ligatures, written here again on purpose."""
    text = text.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def date_forms(yyyymmdd: str) -> list[str]:
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:]
    return [yyyymmdd, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}"]


def without_pixels(path: Path) -> bytes:
    """Image payloads are pixels, screened by OCR, not text: random bytes spell short words."""
    raw = path.read_bytes()
    if path.name.endswith(".nii.gz"):
        raw = gzip.decompress(raw)
    if path.name.endswith((".nii", ".nii.gz")):
        return raw[: int(struct.unpack("<f", raw[108:112])[0])]  # header up to vox_offset
    if raw[128:132] == b"DICM" and (cut := raw.rfind(b"\xe0\x7f\x10\x00")) > 0:
        return raw[:cut]
    return raw


def grep(root: Path, needles: list[str]) -> list[str]:
    """An independent check, sharing no code with the gate: raw bytes, folded text, each
    value as a whole word ('petit' must not match inside 'repetition')."""
    patterns = {n: re.compile(_word(n)) for n in needles}
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        texts = [fold(rel)]
        if path.is_file():
            raw = without_pixels(path)
            texts += [fold(raw.decode("utf-8", "replace")), fold(raw.decode("latin-1"))]
        for needle, pattern in patterns.items():
            if any(pattern.search(t) for t in texts):
                found.append(f"{rel}: {needle}")
    return found


def leaks(output: Path, work: Path, console: str, needles: list[str]) -> list[str]:
    """Planted values found in the output tree, the run's logs or its console output."""
    found = grep(output, needles) + grep(work / "logs", needles)
    text = fold(console)
    found += [f"console: {n}" for n in needles if re.search(_word(n), text)]
    return found


def _word(needle: str) -> str:
    return rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])"
