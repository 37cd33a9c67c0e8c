"""`passerelle risk --plan`: the least generalisation that reaches the target k, explained.

A greedy search over the hierarchies: from the release as it stands, each step raises one
attribute by one level, the one leaving the fewest records in classes below k (ties: the one
changing the fewest released values, then the order of the quasi-identifiers). It stops as soon
as the target is met, or as soon as local suppression within its limit can finish the job.
Then, since a greedy climb can take steps a later one made useless, each raised attribute is
lowered again, last raised first, wherever the target still holds without it. Greedy is not
optimal, but every step is stated, so a reviewer can judge or undo it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from passerelle.risk.metrics import Record, assess
from passerelle.risk.remedies import STRUCTURAL, Level, Remedy, apply_remedy


@dataclass
class Plan:
    remedy: Remedy
    steps: list[str] = field(default_factory=list)
    reached: bool = False


def _score(
    raw: Sequence[Record],
    qis: Sequence[str],
    hier: dict[str, list[Level]],
    remedy: Remedy,
    target_k: int,
    limit: float,
) -> tuple[int, int, int]:
    applied = apply_remedy(raw, qis, hier, remedy, target_k, limit)
    risk = assess(applied.records, qis, target_k)
    below = 0 if remedy.suppress and applied.suppressed else risk.below_k
    return below, sum(applied.changed.values()), risk.k


def plan(
    raw: Sequence[Record],
    qis: Sequence[str],
    hier: dict[str, list[Level]],
    target_k: int,
    limit: float,
    start: Remedy | None = None,
) -> Plan:
    remedy = Remedy(dict((start or Remedy()).levels), suppress=False)
    n = len(raw)
    out = Plan(remedy)
    below, _loss, k = _score(raw, qis, hier, remedy, target_k, limit)
    out.steps.append(f"start: k={k}, {below} of {n} records in classes below k={target_k}")
    step = 0
    order: list[str] = []
    while True:
        if below == 0 or below <= limit * n:
            out.reached = True
            _prune(raw, qis, hier, remedy, target_k, limit, order, out.steps)
            below, _loss, k = _score(raw, qis, hier, remedy, target_k, limit)
            if below == 0:
                out.steps.append(f"target reached: k={k} >= {target_k}")
                return out
            remedy.suppress = True
            out.steps.append(
                f"local suppression of the {below} remaining record(s) "
                f"({below / n:.1%} <= limit {limit:.1%}): their quasi-identifiers are removed"
            )
            return out
        candidates = []
        for i, q in enumerate(qis):
            level = remedy.levels.get(q, 0)
            if q in STRUCTURAL or level + 1 >= len(hier[q]):
                continue
            trial = Remedy({**remedy.levels, q: level + 1})
            b, loss, kk = _score(raw, qis, hier, trial, target_k, limit)
            candidates.append((b, loss, i, q, kk))
        if not candidates:
            out.steps.append(
                f"no generalisation left: {below} record(s) stay below k; raise the "
                "suppression limit, or accept the release with a stated reason"
            )
            return out
        b, loss, _i, q, kk = min(candidates)
        order.append(q)
        step += 1
        frm = hier[q][remedy.levels.get(q, 0)].name
        remedy.levels[q] = remedy.levels.get(q, 0) + 1
        out.steps.append(
            f"step {step}: {q}: {frm} -> {hier[q][remedy.levels[q]].name}; records below "
            f"k {below} -> {b}, k={kk} ({loss} released value(s) changed in all)"
        )
        below, k = b, kk


def _prune(
    raw: Sequence[Record],
    qis: Sequence[str],
    hier: dict[str, list[Level]],
    remedy: Remedy,
    target_k: int,
    limit: float,
    order: list[str],
    steps: list[str],
) -> None:
    """Lower what the climb raised, last first, while the target (with suppression) holds."""
    for q in reversed(order):
        level = remedy.levels.get(q, 0)
        if level == 0:
            continue
        trial = Remedy({**remedy.levels, q: level - 1}, suppress=True)
        below, _loss, k = _score(raw, qis, hier, trial, target_k, limit)
        if below == 0:
            steps.append(
                f"undo: {q}: back to {hier[q][level - 1].name}; the target still holds (k={k})"
            )
            remedy.levels[q] = level - 1
