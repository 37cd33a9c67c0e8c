"""Remedies on a synthetic cohort: copies of real scanner DICOM with planted identities.

The cohort has what real deliveries have: a scanner model one site uses for two people, a rare
body part, a very old patient and a small site. The plan must reach the target k, and the
released headers, read back from the files, must meet it too.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from passerelle.config import _fill_defaults, _schema
from passerelle.risk.metrics import assess
from passerelle.risk.planner import plan
from passerelle.risk.quasi import header_facts, subject_records
from passerelle.risk.release import _dicom_edit, measure, quasi_identifiers, refusal
from passerelle.risk.remedies import REMOVED, Remedy, apply_remedy, hierarchies, is_suppressed

from .risk_cohort import BANDS, SITES, build_cohort

pytestmark = pytest.mark.testdata


def _config(**over) -> dict:
    cfg = {"sites": SITES, "target_k": 5, **over}
    _fill_defaults(cfg, _schema("config")["properties"]["risk"])
    return cfg


@pytest.fixture(scope="module")
def cohort(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("cohort")
    return root, build_cohort(testdata, root)


def test_cohort_has_the_rare_categories(cohort):
    _root, facts = cohort
    records = subject_records(facts)
    assert len(records) == 40
    models = {r["model"] for r in records}
    assert len(models) == 4, models  # four real scanners
    cfg = _config()
    hier = hierarchies(cfg, BANDS)
    result = measure(records, cfg, hier)
    assert result["before"]["k"] < cfg["target_k"]
    # With the configured remedies (none), the release is refused in one line.
    assert result["verdict"] == "refused"
    assert "release refused: k=" in refusal(result)
    accepted = measure(
        records, _config(accept={"reason": "pilot release, reviewed by the DPO"}), hier
    )
    assert accepted["verdict"] == "accepted below target"
    assert refusal(accepted) is None


def test_plan_reaches_the_target_and_the_released_headers_meet_it(cohort):
    root, facts = cohort
    records = subject_records(facts)
    cfg = _config()
    qis = quasi_identifiers(cfg)
    hier = hierarchies(cfg, BANDS)
    p = plan(records, qis, hier, cfg["target_k"], cfg["suppression_limit"])
    assert p.reached, p.steps
    assert p.steps[0].startswith("start: k=1")
    assert any(s.startswith("step 1: ") for s in p.steps)
    applied = apply_remedy(records, qis, hier, p.remedy, cfg["target_k"], cfg["suppression_limit"])
    kept = [r for r in applied.records if not is_suppressed(r, qis)]
    assert len(applied.suppressed) <= cfg["suppression_limit"] * len(records)
    assert assess(kept, qis, cfg["target_k"]).k >= cfg["target_k"]
    # The least generalisation: no attribute taken further than needed for k.
    for q, level in p.remedy.levels.items():
        if level:
            lower = Remedy({**p.remedy.levels, q: level - 1}, p.remedy.suppress)
            worse = apply_remedy(
                records, qis, hier, lower, cfg["target_k"], cfg["suppression_limit"]
            )
            assert assess(worse.records, qis, cfg["target_k"]).below_k > 0 or (
                len(worse.suppressed) > len(applied.suppressed)
            )

    # Write the remedies into the copies, then measure what the files now say.
    by_subject = {r["subject"]: r for r in applied.records}
    for r in facts:
        folder = next(root.glob(f"*/P{r['subject']}"))
        for f in folder.iterdir():
            _dicom_edit(f, by_subject[r["subject"]], qis)
    reread = []
    for r in facts:
        folder = next(root.glob(f"*/P{r['subject']}"))
        ds = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
        released = by_subject[r["subject"]]
        reread.append(
            {
                "subject": r["subject"],
                "sex": ds.get("PatientSex") or REMOVED,
                "age": ds.get("PatientAge") or REMOVED,
                "site": released["site"],  # published in participants.tsv, not in headers
                "n_sessions": 1,
                **{a: "|".join(v) or REMOVED for a, v in header_facts(folder).items()},
            }
        )
        assert "SYNTH" in str(ds.PatientName)  # only the risk remedies were applied here
    visible = [r for r in reread if not is_suppressed(r, qis)]
    assert len(reread) - len(visible) == len(applied.suppressed)
    headers = assess(visible, qis, cfg["target_k"])
    assert headers.k >= cfg["target_k"], headers.class_sizes


def test_bad_level_is_one_line():
    from types import SimpleNamespace

    from passerelle.errors import ConfigError
    from passerelle.risk.release import risk_config

    settings = SimpleNamespace(
        raw={"risk": _config(remedies={"model": 9})}, deid={"age_bands": BANDS}
    )
    with pytest.raises(ConfigError, match=r"risk.remedies.model: level 9 does not exist"):
        risk_config(settings)  # type: ignore[arg-type]


def test_pictures_are_byte_identical_and_show_the_release(cohort, tmp_path):
    from passerelle.risk.pictures import draw_all

    _root, facts = cohort
    records = subject_records(facts)
    cfg = _config(remedies={"model": 1}, suppress=False)
    result = measure(records, cfg, hierarchies(cfg, BANDS))
    first = draw_all(result, tmp_path / "a")
    second = draw_all(result, tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert a.read_bytes() == b.read_bytes(), a.name
    # The released view: the Philips seen at one site only is drawn as Other, not by name.
    assert {r["model"] for r in result["released"]} >= {"Other"}
    assert not any("Ingenia" in str(r["model"]) for r in result["released"])
