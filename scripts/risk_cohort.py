#!/usr/bin/env python3
"""The risk step on a synthetic 40-subject cohort: figures before and after the planned
remedies, the plan's explanation, and the pictures (written to docs/risk/ for the README).

The cohort is copies of real scanner DICOM from ../shared/testdata (four scanners at four
sites) with planted identities and realistic rare categories; see tests/unit/risk_cohort.py.
Run: ``.venv/bin/python scripts/risk_cohort.py [--pictures docs/risk]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from passerelle.config import _fill_defaults, _schema
from passerelle.risk.pictures import draw_all
from passerelle.risk.planner import plan
from passerelle.risk.quasi import subject_records
from passerelle.risk.release import measure, quasi_identifiers
from passerelle.risk.remedies import hierarchies

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pictures", type=Path, default=REPO / "docs" / "risk")
    ap.add_argument("--target-k", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))  # the cohort builder lives with the tests that use it
    from tests.unit.risk_cohort import BANDS, SITES, build_cohort

    cfg = {"sites": SITES, "target_k": args.target_k}
    _fill_defaults(cfg, _schema("config")["properties"]["risk"])
    hier = hierarchies(cfg, BANDS)
    with tempfile.TemporaryDirectory() as tmp:
        records = subject_records(build_cohort(REPO.parent / "shared" / "testdata", Path(tmp)))
    qis = quasi_identifiers(cfg)
    p = plan(records, qis, hier, cfg["target_k"], cfg["suppression_limit"])
    cfg["remedies"], cfg["suppress"] = dict(p.remedy.levels), p.remedy.suppress
    result = measure(records, cfg, hier)
    before, after = result["before"], result["after"]
    print(f"{len(records)} subjects; quasi-identifiers: {', '.join(qis)}")
    print(f"as recorded:    k={before['k']}, {before['records_below_k']} below k={args.target_k}, "
          f"prosecutor highest {before['prosecutor']['highest']:.2f}, "
          f"average {before['prosecutor']['average']:.3f}")  # fmt: skip
    print(f"after the plan: k={after['k']}, {after['records_below_k']} below k, "
          f"{result['remedy']['suppressed_records']} suppressed, prosecutor highest "
          f"{after['prosecutor']['highest']:.2f}, "
          f"average {after['prosecutor']['average']:.3f}")  # fmt: skip
    print("plan:")
    for step in p.steps:
        print(f"  {step}")
    for path in draw_all(result, args.pictures):
        print(f"picture: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
