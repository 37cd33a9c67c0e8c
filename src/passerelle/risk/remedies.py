"""Generalisation hierarchies, rare categories to `Other`, and local suppression.

Every quasi-identifier has an ordered list of levels; level 0 is the value as released today
and the last level removes it (`*`). A remedy is one level per attribute plus, optionally,
local suppression of the records still in classes below k. The same remedy is applied to the
risk table (to measure it) and to the released files (release.py), so what is measured is what
is published.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from passerelle.deid.dates import age_band
from passerelle.errors import ConfigError
from passerelle.risk.metrics import Record, classes

REMOVED = "*"
OTHER = "Other"
# Structural facts the release shows whatever its tables say (a subject's session folders).
STRUCTURAL = frozenset({"n_sessions"})


@dataclass(frozen=True)
class Level:
    name: str
    # (raw value, the raw column, for levels that count) -> released value
    apply: Callable[[Any, Sequence[Any]], Any]


def _raw(value: Any, _column: Sequence[Any]) -> Any:
    return value


def _removed(_value: Any, _column: Sequence[Any]) -> Any:
    return REMOVED


def _rare(threshold: int) -> Callable[[Any, Sequence[Any]], Any]:
    def apply(value: Any, column: Sequence[Any]) -> Any:
        if value in (None, REMOVED):
            return value
        return OTHER if Counter(column)[value] < threshold else value

    return apply


def _age(bands: dict[str, int]) -> Callable[[Any, Sequence[Any]], Any]:
    def apply(value: Any, _column: Sequence[Any]) -> Any:
        if value is None:
            return None
        return age_band(int(value), bands["width"], bands["top"], bands["bottom"])[0]

    return apply


def _mapped(mapping: dict[str, str]) -> Callable[[Any, Sequence[Any]], Any]:
    def apply(value: Any, _column: Sequence[Any]) -> Any:
        if value is None:
            return None
        return "|".join(sorted({mapping.get(v, OTHER) for v in str(value).split("|")}))

    return apply


def hierarchies(config: dict[str, Any], age_bands: dict[str, int]) -> dict[str, list[Level]]:
    """The levels of every attribute the risk section can name."""
    rare = config["rare"]
    categorical = [Level("as recorded", _raw), Level(f"fewer than {rare} -> Other", _rare(rare))]
    age_levels = [Level(_band_name(age_bands), _age(age_bands))]
    for bands in config["hierarchies"]["age"]:
        age_levels.append(Level(_band_name(bands), _age(bands)))
    regions = {s["name"]: s.get("region") or OTHER for s in config["sites"]}
    return {
        "sex": [Level("as recorded", _raw), Level("removed", _removed)],
        "age": [*age_levels, Level("removed", _removed)],
        "acq_year": [Level("shifted year", _raw), Level("removed", _removed)],
        "manufacturer": [*categorical, Level("removed", _removed)],
        "model": [*categorical, Level("removed (manufacturer only)", _removed)],
        "software": [*categorical, Level("removed", _removed)],
        "body_part": [*categorical, Level("removed", _removed)],
        "site": [
            *categorical,
            Level("region instead of site", _mapped(regions)),
            Level("removed", _removed),
        ],
        "n_sessions": [Level("exact (shown by the session folders)", _raw)],
    }


def check_config(cfg: dict[str, Any], age_bands: dict[str, int], source: str) -> None:
    """What the schema cannot say, in one line: bands in order, levels that exist."""
    for i, bands in enumerate(cfg["hierarchies"]["age"]):
        if not bands["bottom"] < bands["top"]:
            raise ConfigError(f"{source}: key risk.hierarchies.age.{i}: bottom must be below top")
    hier = hierarchies(cfg, age_bands)
    for attr, level in sorted(cfg["remedies"].items()):
        if level >= len(hier[attr]):
            raise ConfigError(
                f"{source}: key risk.remedies.{attr}: level {level} does not exist; levels are "
                f"0..{len(hier[attr]) - 1} ({', '.join(lv.name for lv in hier[attr])})"
            )


def _band_name(b: dict[str, int]) -> str:
    return f"{b['width']}-year bands, under {b['bottom']} and {b['top']}+ merged"


@dataclass
class Remedy:
    """One level per quasi-identifier, and whether to suppress what is still below k."""

    levels: dict[str, int] = field(default_factory=dict)
    suppress: bool = False

    def describe(self, hier: dict[str, list[Level]], qis: Sequence[str]) -> list[str]:
        lines = [f"{q}: {hier[q][self.levels.get(q, 0)].name}" for q in qis]
        return [*lines, "local suppression: " + ("on" if self.suppress else "off")]


@dataclass
class Applied:
    records: list[Record]  # the released view: generalised, suppressed marked
    suppressed: list[str]  # subject labels whose quasi-identifiers were all removed
    changed: dict[str, int]  # attribute -> records whose released value differs from raw


def is_suppressed(record: Record, qis: Sequence[str]) -> bool:
    """Every quasi-identifier removed: the record matches any target, so it singles no one out
    and, as in ARX, stays out of the equivalence classes."""
    return all(record[q] == REMOVED for q in qis if q not in STRUCTURAL)


def generalise(
    raw: Sequence[Record], qis: Sequence[str], hier: dict[str, list[Level]], remedy: Remedy
) -> list[Record]:
    out = [dict(r) for r in raw]
    for q in qis:
        level = hier[q][min(remedy.levels.get(q, 0), len(hier[q]) - 1)]
        column = [r[q] for r in raw]
        for r, v in zip(out, column, strict=True):
            r[q] = level.apply(v, column)
    return out


def apply_remedy(
    raw: Sequence[Record],
    qis: Sequence[str],
    hier: dict[str, list[Level]],
    remedy: Remedy,
    target_k: int,
    limit: float,
) -> Applied:
    """Generalise, then suppress (within the limit) the records still in classes below k."""
    released = generalise(raw, qis, hier, remedy)
    suppressed: list[str] = []
    if remedy.suppress:
        sizes = classes(released, qis)
        at_risk = [r for r in released if sizes[tuple(r[q] for q in qis)] < target_k]
        if at_risk and len(at_risk) <= limit * len(released):
            for r in at_risk:
                for q in qis:
                    if q not in STRUCTURAL:
                        r[q] = REMOVED
                suppressed.append(r["subject"])
    base = generalise(raw, qis, hier, Remedy())
    changed = {q: sum(1 for a, b in zip(base, released, strict=True) if a[q] != b[q]) for q in qis}
    return Applied(released, sorted(suppressed), changed)
