"""`passerelle query` answers from the archive: datatypes, derivatives, since when, by what."""

from __future__ import annotations

import json

import pytest

from passerelle.archive import ledger

from .conftest import tags
from .steps import passerelle

pytestmark = pytest.mark.slow


def _query(archive, *args):
    proc = passerelle("query", "--archive", str(archive), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    assert "query took" in proc.stderr
    return json.loads(proc.stdout)


def test_sessions_datatypes_versions_and_totals(history, contributed):
    v1, v2, v3 = tags(contributed)
    answer = _query(contributed)
    rows = {(s["subject"], s["session"]): s for s in answer["sessions"]}
    raw = {r.key[1:]: r for r in ledger.load(contributed).values() if r.dataset == "."}
    assert set(rows) == set(raw) and len(rows) == 2
    for key, s in rows.items():
        assert s["datatypes"] == "fmap" and s["dicom"] is True
        assert s["since"] == raw[key].since and s["generated_by"].startswith("passerelle ")
    assert sorted(s["since"] for s in rows.values()) == [v1, v2]
    with_masks = [s for s in rows.values() if s["derivatives"] == "lab-lesion-masks"]
    assert len(with_masks) == 1
    totals = answer["totals"]
    assert totals["subjects"] == 2 and totals["sessions"] == 2
    assert totals["datatypes"]["fmap"]["sessions"] == 2
    assert totals["datatypes"]["fmap"]["files"] == 16  # 4 series x (NIfTI + JSON) x 2 sessions
    assert totals["derivatives"] == {
        "lab-lesion-masks": {"sessions": 1, "generated_by": "manual-lesion 1.0", "since": v3}
    }
    assert totals["versions"] == [v1, v2, v3]


def test_filters_and_sql(history, contributed):
    _, v2, _ = tags(contributed)
    assert len(_query(contributed, "--since", v2)["sessions"]) == 1
    assert len(_query(contributed, "--derivative", "lab-lesion-masks")["sessions"]) == 1
    assert _query(contributed, "--datatype", "anat")["sessions"] == []
    sql = _query(
        contributed, "--sql", "SELECT dataset, count(*) AS n FROM files GROUP BY 1 ORDER BY 1"
    )
    assert [r[0] for r in sql["rows"]] == [".", "derivatives/lab-lesion-masks", "sourcedata/dicom"]
    bad = passerelle("query", "--archive", str(contributed), "--since", "1999.01.01")
    assert bad.returncode == 2 and bad.stderr.strip().endswith(
        "no version '1999.01.01' in this archive"
    )


def test_table_on_the_terminal(contributed):
    proc = passerelle("query", "--archive", str(contributed))
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["subject", "session", "datatypes"]
    assert "archive: 2 sessions of 2 subjects, 3 version(s)" in proc.stdout
