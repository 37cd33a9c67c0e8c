"""Run the official BIDS validator and check that pybids can index the dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from passerelle.errors import PasserelleError


def validator_executable() -> str:
    return shutil.which("bids-validator-deno") or str(
        Path(sys.executable).parent / "bids-validator-deno"
    )


def run_validator(bids: Path) -> dict[str, Any]:
    if not any(bids.glob("sub-*")):
        return {
            "validator": None,
            "errors": 0,
            "warnings": 0,
            "issues": [],
            "skipped": "the dataset holds no subject yet",
        }
    env = dict(os.environ, NO_COLOR="1", DENO_NO_UPDATE_CHECK="1")
    proc = subprocess.run(
        [validator_executable(), "--format", "json", str(bids)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PasserelleError(f"BIDS validator did not run: {tail[0]}") from None
    issues = report.get("issues", {}).get("issues", [])
    errors = [i for i in issues if i.get("severity") == "error"]
    warnings = [i for i in issues if i.get("severity") == "warning"]
    return {
        "validator": report.get("summary", {}).get("schemaVersion"),
        "errors": len(errors),
        "warnings": len(warnings),
        "issues": [
            {
                "severity": i.get("severity"),
                "code": i.get("code"),
                "location": i.get("location"),
                "subCode": i.get("subCode"),
            }
            for i in errors + warnings
        ],
    }


def pybids_summary(bids: Path) -> dict[str, Any]:
    if not any(bids.glob("sub-*")):
        return {"subjects": 0, "sessions": 0, "images": 0, "datatypes": []}
    from bids import BIDSLayout  # imported late: pybids is slow to import

    layout = BIDSLayout(str(bids), validate=False)
    return {
        "subjects": len(layout.get_subjects()),
        "sessions": len(layout.get_sessions()),
        "images": len(layout.get(extension=[".nii", ".nii.gz"])),
        "datatypes": sorted(layout.get_datatypes()),
    }
