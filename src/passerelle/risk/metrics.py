"""k-anonymity, l-diversity, t-closeness and the ARX re-identification risks of one table.

A record is one released subject; its equivalence class is every record sharing the same
quasi-identifier values. Definitions follow Sweeney (k), Machanavajjhala et al. (distinct and
entropy l), Li et al. (t, earth mover's distance) and ARX (prosecutor, journalist, marketer).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]


def classes(records: Sequence[Record], qis: Sequence[str]) -> Counter[tuple[Any, ...]]:
    """Class sizes keyed by the quasi-identifier values."""
    return Counter(tuple(r[q] for q in qis) for r in records)


def _members(records: Sequence[Record], qis: Sequence[str]) -> dict[tuple[Any, ...], list[Record]]:
    out: dict[tuple[Any, ...], list[Record]] = {}
    for r in records:
        out.setdefault(tuple(r[q] for q in qis), []).append(r)
    return out


def distinct_l(records: Sequence[Record], qis: Sequence[str], sensitive: str) -> int:
    return min(len({r[sensitive] for r in m}) for m in _members(records, qis).values())


def entropy_l(records: Sequence[Record], qis: Sequence[str], sensitive: str) -> float:
    """exp of the smallest class entropy of the sensitive attribute (natural log)."""
    worst = math.inf
    for members in _members(records, qis).values():
        counts = Counter(r[sensitive] for r in members)
        n = len(members)
        h = -sum(c / n * math.log(c / n) for c in counts.values())
        worst = min(worst, h)
    return math.exp(worst)


def t_closeness(
    records: Sequence[Record], qis: Sequence[str], sensitive: str, ordered: bool
) -> float:
    """The largest EMD between a class's distribution and the whole table's.

    Categorical values: equal ground distance (half the L1 distance). Numeric (ordered)
    values: ordered distance, the cumulative differences over the sorted values / (m - 1).
    """
    values = sorted({r[sensitive] for r in records}, key=_order if ordered else str)
    m, n = len(values), len(records)
    if m < 2:
        return 0.0
    whole = Counter(r[sensitive] for r in records)
    p = [whole[v] / n for v in values]
    worst = 0.0
    for members in _members(records, qis).values():
        counts = Counter(r[sensitive] for r in members)
        q = [counts[v] / len(members) for v in values]
        if ordered:
            run, emd = 0.0, 0.0
            for qi, pi in zip(q, p, strict=True):
                run += qi - pi
                emd += abs(run)
            emd /= m - 1
        else:
            emd = 0.5 * sum(abs(qi - pi) for qi, pi in zip(q, p, strict=True))
        worst = max(worst, emd)
    return worst


def _order(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order (read from a table they may be text), anything else after."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


@dataclass(frozen=True)
class Risk:
    records: int
    classes: int
    k: int
    target_k: int
    below_k: int
    class_sizes: dict[int, int]  # size -> number of classes of that size
    prosecutor: dict[str, float]
    journalist: dict[str, float]
    marketer: float
    l_diversity: dict[str, dict[str, float]]
    t_closeness: dict[str, float]

    @property
    def meets_target(self) -> bool:
        return self.records == 0 or self.k >= self.target_k

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "classes": self.classes,
            "k": self.k,
            "target_k": self.target_k,
            "meets_target": self.meets_target,
            "records_below_k": self.below_k,
            "class_sizes": {str(s): c for s, c in sorted(self.class_sizes.items())},
            "prosecutor": self.prosecutor,
            "journalist": self.journalist,
            "marketer": self.marketer,
            "l_diversity": self.l_diversity,
            "t_closeness": self.t_closeness,
        }


def _attacker(sizes: Sequence[int], n: int, threshold: float) -> dict[str, float]:
    """ARX's three figures for one attacker model, given each record's class size."""
    return {
        "highest": max(1 / s for s in sizes),
        "average": sum(1 / s for s in sizes) / n,
        "records_at_risk": sum(1 for s in sizes if 1 / s > threshold) / n,
    }


def assess(
    records: Sequence[Record],
    qis: Sequence[str],
    target_k: int,
    sensitive: Sequence[str] = (),
    numeric: Sequence[str] = (),
    population: dict[tuple[Any, ...], int] | None = None,
) -> Risk:
    """All figures of one release table.

    Journalist risk needs the class sizes in the population the sample was drawn from; with
    none given, the release is taken as its own population, so journalist = prosecutor (the
    conservative choice ARX makes without a population model). The records-at-risk share
    counts records whose risk exceeds 1/target_k.
    """
    n = len(records)
    sizes = classes(records, qis)
    if n == 0:
        zero = {"highest": 0.0, "average": 0.0, "records_at_risk": 0.0}
        return Risk(0, 0, 0, target_k, 0, {}, zero, zero, 0.0, {}, {})
    per_record = [sizes[tuple(r[q] for q in qis)] for r in records]
    pop = [
        max(population.get(tuple(r[q] for q in qis), 0), s) if population else s
        for r, s in zip(records, per_record, strict=True)
    ]
    threshold = 1 / target_k
    journalist = _attacker(pop, n, threshold)
    return Risk(
        records=n,
        classes=len(sizes),
        k=min(sizes.values()),
        target_k=target_k,
        below_k=sum(1 for s in per_record if s < target_k),
        class_sizes=dict(Counter(sizes.values())),
        prosecutor=_attacker(per_record, n, threshold),
        journalist=journalist,
        # Marketer: the expected share of records re-identified when every record is tried
        # (ARX: the journalist's average; without a population, classes / records).
        marketer=journalist["average"],
        l_diversity={
            s: {
                "distinct": distinct_l(records, qis, s),
                "entropy": round(entropy_l(records, qis, s), 6),
            }
            for s in sensitive
        },
        t_closeness={s: round(t_closeness(records, qis, s, s in numeric), 6) for s in sensitive},
    )
