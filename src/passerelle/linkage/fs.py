"""Fellegi-Sunter on keyed encodings: blocking, comparison levels, EM, three-way decision.

Names are compared by the Dice similarity of their keyed Bloom filters, which plays the part
Jaro-Winkler plays on clear text (it measures shared bigrams, and a typo costs a few of them);
dates by their keyed whole and parts (a typo in one part still agrees on two). m and u are
estimated by EM under conditional independence, from the candidate pairs themselves; a pair's
posterior match probability then decides match, undecided (to review) or non-match, and a
one-to-one assignment keeps the best match of each record, sending the others to review.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from passerelle.linkage.encode import Field, dice

Encoded = dict[str, str]
Pattern = tuple[int | None, ...]
NAME_AGREE, NAME_PARTIAL = 0.9, 0.75
MAX_BLOCK_PAIRS = 250_000  # a block this large (a common postcode) says little: skipped


def levels(f: Field) -> int:
    return 2 if f.kind == "exact" else 3


def compare(a: Encoded, b: Encoded, fields: Sequence[Field]) -> Pattern:
    out: list[int | None] = []
    for f in fields:
        if not a.get(f.name) or not b.get(f.name):
            out.append(None)
        elif f.kind == "name":
            d = dice(a[f"{f.name}_bf"], b[f"{f.name}_bf"]) or 0.0
            out.append(2 if d >= NAME_AGREE else 1 if d >= NAME_PARTIAL else 0)
        elif f.kind == "date":
            if a[f.name] == b[f.name]:
                out.append(2)
            else:
                parts = sum(a[f"{f.name}_{p}"] == b[f"{f.name}_{p}"] for p in "ymd")
                out.append(1 if parts >= 2 else 0)
        else:
            out.append(int(a[f.name] == b[f.name]))
    return tuple(out)


def blocking_keys(e: Encoded, fields: Sequence[Field]) -> set[str]:
    keys = set()
    for f in fields:
        if not f.block:
            continue
        for col in (f.name, f"{f.name}_sdx"):
            if e.get(col):
                keys.add(f"{col}={e[col]}")
    return keys


def candidate_pairs(
    left: Sequence[Encoded], right: Sequence[Encoded], fields: Sequence[Field]
) -> list[tuple[int, int]]:
    """Pairs sharing at least one keyed blocking key, sorted."""
    index: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, e in enumerate(left):
        for k in blocking_keys(e, fields):
            index[k][0].append(i)
    for j, e in enumerate(right):
        for k in blocking_keys(e, fields):
            index[k][1].append(j)
    pairs: set[tuple[int, int]] = set()
    for a, b in index.values():
        if a and b and len(a) * len(b) <= MAX_BLOCK_PAIRS:
            pairs.update((i, j) for i in a for j in b)
    return sorted(pairs)


@dataclass
class Model:
    m: list[list[float]]  # per field, per level: P(level | match)
    u: list[list[float]]  # per field, per level: P(level | non-match)
    p: float  # share of matches among candidate pairs
    iterations: int

    def posterior(self, pattern: Pattern) -> float:
        lm, lu = math.log(self.p), math.log(1 - self.p)
        for f, level in enumerate(pattern):
            if level is not None:
                lm += math.log(self.m[f][level])
                lu += math.log(self.u[f][level])
        return 1 / (1 + math.exp(lu - lm))

    def weight(self, pattern: Pattern) -> float:
        """The Fellegi-Sunter match weight, log2 m/u summed over the fields."""
        return sum(
            math.log2(self.m[f][lv] / self.u[f][lv])
            for f, lv in enumerate(pattern)
            if lv is not None
        )


def level_shares(patterns: Counter[Pattern], fields: Sequence[Field]) -> list[list[float]]:
    """Per field, the share of each comparison level among the patterns given."""
    out = []
    for f, n in enumerate(levels(fd) for fd in fields):
        seen: Counter[int] = Counter()
        for pat, c in patterns.items():
            if pat[f] is not None:
                seen[pat[f]] += c
        s = sum(seen.values()) or 1
        out.append([max(seen[lv] / s, 1e-6) for lv in range(n)])
    return out


def estimate(
    patterns: Counter[Pattern],
    fields: Sequence[Field],
    u_prior: list[list[float]] | None = None,
    p_prior: float = 0.1,
    prior_pairs: float = 10.0,
    iterations: int = 200,
) -> Model:
    """EM over the distinct comparison patterns (weighted by their counts).

    The priors (matches agree; non-matches look like random pairs of the two tables; the share
    of matches a one-to-one link allows) weigh as `prior_pairs` pairs: nothing next to
    thousands of candidates, but they keep a small table from an unidentifiable model.
    """
    eps = 1e-6
    nlev = [levels(f) for f in fields]
    total = sum(patterns.values())
    m0 = [[0.05] * (n - 1) + [1 - 0.05 * (n - 1)] for n in nlev]
    u0 = u_prior or level_shares(patterns, fields)
    m, u, p = m0, u0, p_prior
    done = 0
    for done in range(1, iterations + 1):
        model = Model(m, u, p, done)
        resp = {pat: model.posterior(pat) for pat in patterns}
        wm = sum(resp[pat] * c for pat, c in patterns.items())
        new_p = min(max((wm + prior_pairs * p_prior) / (total + prior_pairs), eps), 1 - eps)
        new_m, new_u = [], []
        for f in range(len(nlev)):
            cm = [eps + prior_pairs * x for x in m0[f]]
            cu = [eps + prior_pairs * x for x in u0[f]]
            for pat, c in patterns.items():
                if pat[f] is not None:
                    cm[pat[f]] += resp[pat] * c
                    cu[pat[f]] += (1 - resp[pat]) * c
            new_m.append([x / sum(cm) for x in cm])
            new_u.append([x / sum(cu) for x in cu])
        change = abs(new_p - p) + max(
            abs(a - b) for fm, gm in zip(m, new_m, strict=True) for a, b in zip(fm, gm, strict=True)
        )
        m, u, p = new_m, new_u, new_p
        if change < 1e-9:
            break
    return Model(m, u, p, done)


def _random_pairs(
    left: Sequence[Encoded], right: Sequence[Encoded], fields: Sequence[Field], n: int = 20_000
) -> Counter[Pattern]:
    """Comparison patterns of random pairs (all pairs for small tables): almost all
    non-matches, so their level shares are the u prior. Seeded: same inputs, same model."""
    import random

    if len(left) * len(right) <= n:
        pairs = [(i, j) for i in range(len(left)) for j in range(len(right))]
    else:
        rng = random.Random(0)
        pairs = [(rng.randrange(len(left)), rng.randrange(len(right))) for _ in range(n)]
    return Counter(compare(left[i], right[j], fields) for i, j in pairs)


@dataclass(frozen=True)
class Decision:
    left: int
    right: int
    probability: float
    weight: float
    status: str  # match, undecided, non-match
    why: str = ""


def link(
    left: Sequence[Encoded],
    right: Sequence[Encoded],
    fields: Sequence[Field],
    upper: float = 0.95,
    lower: float = 0.05,
) -> tuple[list[Decision], Model]:
    """Every candidate pair with its decision; non-matches are returned too (for counts)."""
    pairs = candidate_pairs(left, right, fields)
    patterns = {pair: compare(left[pair[0]], right[pair[1]], fields) for pair in pairs}
    model = estimate(
        Counter(patterns.values()),
        fields,
        u_prior=level_shares(_random_pairs(left, right, fields), fields),
        p_prior=min(max(min(len(left), len(right)) / max(len(pairs), 1), 1e-4), 0.9),
    )
    scored = sorted(
        ((model.posterior(pat), model.weight(pat), pair) for pair, pat in patterns.items()),
        key=lambda t: (-t[0], -t[1], t[2]),
    )
    taken_l: set[int] = set()
    taken_r: set[int] = set()
    out = []
    for prob, weight, (i, j) in scored:
        if prob >= upper:
            if i in taken_l or j in taken_r:
                out.append(Decision(i, j, prob, weight, "undecided", "a better match exists"))
                continue
            taken_l.add(i)
            taken_r.add(j)
            out.append(Decision(i, j, prob, weight, "match"))
        elif prob > lower:
            out.append(Decision(i, j, prob, weight, "undecided", "between the thresholds"))
        else:
            out.append(Decision(i, j, prob, weight, "non-match"))
    return out, model
