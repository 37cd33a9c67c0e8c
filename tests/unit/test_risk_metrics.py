"""Risk figures against pycanon on the same tables; ARX risks against their definitions."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from pycanon import anonymity

from passerelle.risk.metrics import assess, classes, distinct_l, entropy_l, t_closeness

QIS = ["sex", "age", "model"]


def _table(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    models = ["Prisma", "Skyra", "Achieva", "Signa", "Vida"]
    return [
        {
            "subject": f"s{i:03d}",
            "sex": rng.choice("MF"),
            "age": rng.choice(["18-29", "30-39", "40-49", "90+"]),
            "model": rng.choices(models, weights=[8, 5, 4, 2, 1])[0],
            "diagnosis": rng.choice(["glioma", "stroke", "ms", "healthy"]),
            "volume": rng.choice([900, 1000, 1100, 1200, 1300]),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(("seed", "n"), [(1, 40), (2, 120), (3, 300)])
def test_figures_match_pycanon(seed, n):
    records = _table(seed, n)
    df = pd.DataFrame(records)
    assert min(classes(records, QIS).values()) == anonymity.k_anonymity(df, QIS)
    assert distinct_l(records, QIS, "diagnosis") == anonymity.l_diversity(df, QIS, ["diagnosis"])
    # pycanon reports entropy l truncated to an integer.
    assert int(entropy_l(records, QIS, "diagnosis")) == anonymity.entropy_l_diversity(
        df, QIS, ["diagnosis"]
    )
    ours_cat = t_closeness(records, QIS, "diagnosis", ordered=False)
    assert ours_cat == pytest.approx(anonymity.t_closeness(df, QIS, ["diagnosis"]))
    ours_num = t_closeness(records, QIS, "volume", ordered=True)
    assert ours_num == pytest.approx(anonymity.t_closeness(df, QIS, ["volume"]))
    risk = assess(records, QIS, 5, ["diagnosis", "volume"], ["volume"])
    assert risk.k == anonymity.k_anonymity(df, QIS)
    assert risk.t_closeness["volume"] == pytest.approx(ours_num, abs=1e-6)


def test_arx_risks_follow_their_definitions():
    # Classes of sizes 1, 2 and 5: prosecutor highest 1/1, average = classes / records.
    records = [{"q": "a"}] + [{"q": "b"}] * 2 + [{"q": "c"}] * 5
    risk = assess(records, ["q"], 2)
    assert risk.k == 1
    assert risk.below_k == 1
    assert risk.prosecutor["highest"] == 1.0
    assert risk.prosecutor["average"] == pytest.approx(3 / 8)
    assert risk.prosecutor["records_at_risk"] == pytest.approx(1 / 8)
    assert risk.marketer == pytest.approx(3 / 8)
    assert risk.class_sizes == {1: 1, 2: 1, 5: 1}
    # A population ten times larger per class lowers the journalist's odds, not the prosecutor's.
    population = {("a",): 10, ("b",): 20, ("c",): 50}
    risk = assess(records, ["q"], 2, population=population)
    assert risk.journalist["highest"] == pytest.approx(0.1)
    assert risk.prosecutor["highest"] == 1.0
    assert not risk.meets_target


def test_numeric_values_read_as_text_keep_their_order():
    records = [{"q": "a", "v": v} for v in ("100", "20", "3")] + [{"q": "b", "v": "20"}] * 3
    as_numbers = [{**r, "v": int(r["v"])} for r in records]
    assert t_closeness(records, ["q"], "v", ordered=True) == pytest.approx(
        t_closeness(as_numbers, ["q"], "v", ordered=True)
    )
