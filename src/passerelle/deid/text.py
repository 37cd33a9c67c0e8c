"""Text normalisation and the words that introduce a person: shared by cleaning and the gate."""

from __future__ import annotations

import re
import unicodedata

# Words that introduce a person in French and English clinical text (FIDAC's rejection list,
# extended), matched as whole tokens after accent folding.
STRONG_PERSON_WORDS: frozenset[str] = frozenset(
    {
        "monsieur", "madame", "mademoiselle", "mme", "mlle", "mrs", "docteur", "doctor",
        "professeur", "professor", "confrere", "consoeur",
    }
)  # fmt: skip
# Short or ambiguous words ("MR" is also the modality, "ms" a unit) count only when they
# introduce a capitalised word: "Dr Martin", "M. Dupont", "DR DUPONT".
WEAK_PERSON_WORDS: frozenset[str] = frozenset(
    {"mr", "ms", "m", "dr", "pr", "prof", "miss", "cher", "chere", "nee", "ne", "interne"}
)
PERSON_WORDS = STRONG_PERSON_WORDS | WEAK_PERSON_WORDS
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


_LIGATURES = str.maketrans(
    {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L"}
)


def strip_accents(text: str) -> str:
    """Accents and ligatures to plain letters, case kept ("Châtelain" → "Chatelain")."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """Lower-case and strip accents (é → e, œ → oe) so comparisons ignore both."""
    return strip_accents(text).lower()


def tokens(text: str) -> list[str]:
    """Alphanumeric tokens of folded text: 'DUPONT^Jeanne' → ['dupont', 'jeanne']."""
    return _TOKEN.findall(fold(text))


def alnum(text: str) -> str:
    return "".join(tokens(text))


def person_word_hits(text: str) -> list[int]:
    """Character offsets where a person-introducing word starts (never the words after it)."""
    hits = []
    for m in re.finditer(r"[^\W_]+", text, re.UNICODE):
        word = fold(m.group())
        if word in STRONG_PERSON_WORDS or (
            word in WEAK_PERSON_WORDS and _introduces_name(m.group(), text[m.end() :])
        ):
            hits.append(m.start())
    return hits


def _introduces_name(word: str, rest: str) -> bool:
    nxt = re.match(r"[ .]{1,3}([^\W\d_][^\W_]+)", rest, re.UNICODE)
    if not nxt or not nxt.group(1)[0].isupper():
        return False
    following = nxt.group(1)
    if word.isupper() and len(word) > 1:
        return following.isupper()  # "DR DUPONT", not "MR Brain"
    return word[0].isupper()  # "Dr Martin", "M. Dupont", not "ms Echo"
