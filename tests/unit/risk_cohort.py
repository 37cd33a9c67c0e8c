"""A synthetic cohort for the risk tests and scripts/risk_cohort.py: copies of real scanner
DICOM from ../shared/testdata with planted identities and the rare categories real deliveries
have (a scanner model one small site uses for two people, a rare body part, a very old patient).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from passerelle.risk.quasi import header_facts, site_of

from .dicom_copies import GE_EPI, PHILIPS, SI_MOSAIC_AP, XA30_T1, dicoms, load, save

BANDS = {"width": 10, "bottom": 18, "top": 90}
SITES = [
    {"name": "lyon-north", "match": "LYON_N/*", "region": "auvergne-rhone-alpes"},
    {"name": "lyon-south", "match": "LYON_S/*", "region": "auvergne-rhone-alpes"},
    {"name": "grenoble", "match": "GRE/*", "region": "auvergne-rhone-alpes"},
    {"name": "marseille", "match": "MRS/*", "region": "provence"},
]
# (site folder, scanner source, subjects): the Philips is only at the small Grenoble site.
LAYOUT = [("LYON_N", XA30_T1, 14), ("LYON_S", SI_MOSAIC_AP, 12), ("MRS", GE_EPI, 12),
          ("GRE", PHILIPS, 2)]  # fmt: skip


def build_cohort(testdata: Path, root: Path) -> list[dict[str, Any]]:
    """Write the cohort under root (SITE/Pnnn/file.dcm); return one session fact each."""
    rng = random.Random(7)
    facts = []
    n = 0
    for site, source, count in LAYOUT:
        src = dicoms(testdata, source, 1)[0]
        for _ in range(count):
            n += 1
            ds = load(src)
            ds.PatientName = f"SYNTH^PATIENT{n:03d}"
            ds.PatientID = f"IPP{880000 + n}"
            ds.PatientSex = rng.choice("MF")
            age = 93 if n == 5 else rng.randint(25, 84)  # one very old patient
            ds.PatientAge = f"{age:03d}Y"
            ds.BodyPartExamined = "KNEE" if n == 9 else "BRAIN"  # one rare body part
            rel = f"{site}/P{n:03d}/{src.name.removesuffix('.gz')}"
            save(ds, root / rel)
            facts.append(
                {
                    "subject": f"{n:03d}",
                    "session": "01",
                    "sex": ds.PatientSex,
                    "age": age,
                    "acq_year": None,
                    "site": site_of([rel], SITES),
                    **header_facts((root / rel).parent),
                }
            )
    return facts
