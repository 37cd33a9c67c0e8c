"""A release below target k fails closed before anything is published; a stated acceptance
lets it through and is recorded in the audit and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from .helpers import REPO, read_tsv, run_workflow, work
from .identities import build

pytestmark = pytest.mark.slow
REASON = "pilot release to the steering committee, reviewed by the data protection officer"


def test_below_k_is_refused_then_accepted_with_a_reason(testdata: Path, key_file: Path, tmp_path):
    build(testdata, tmp_path / "inbox")
    out = tmp_path / "out"
    refuse = tmp_path / "refuse.yaml"
    refuse.write_text("risk:\n  target_k: 2\n  accept: null\n")
    proc = run_workflow(tmp_path / "inbox", out, key_file, "--configfile", str(refuse), check=False)
    assert proc.returncode != 0
    assert "release refused: k=1 is below the target k=2" in proc.stdout + proc.stderr
    # Fails closed: not one session published, no run summary, no report.
    assert not list((out / "bids").glob("sub-*"))
    assert not list((work(out) / "runs").glob("*.summary.json"))
    assert not (out / "reports" / "run_report.html").exists()

    accept = tmp_path / "accept.yaml"
    accept.write_text(f"risk:\n  target_k: 2\n  accept:\n    reason: {REASON}\n")
    run_workflow(tmp_path / "inbox", out, key_file, "--configfile", str(accept))
    assert len(list((out / "bids").glob("sub-*"))) == 2
    risk = json.loads((out / "reports" / "risk.json").read_text())
    assert risk["verdict"] == "accepted below target"
    assert risk["after"]["k"] == 1 and risk["target_k"] == 2
    assert "released" not in risk and "suppressed" not in risk  # no per-subject rows
    audit = read_tsv(out / "reports" / "risk_audit.tsv")
    assert any(r["attribute"] == "(accepted below k)" and r["remedy"] == REASON for r in audit)
    page = (out / "reports" / "run_report.html").read_text()
    assert REASON in page and "Re-identification risk" in page
    for name in ("age_pyramid", "sites", "frequencies", "class_sizes"):
        png = out / "reports" / "risk" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="risk/{name}.png"' in page

    # Both subjects' scanner models are rare (fewer than 3 subjects): Other in every header.
    sidecars = sorted((out / "bids").glob("sub-*/ses-*/*/*.json"))
    assert sidecars and all(
        json.loads(p.read_text()).get("ManufacturersModelName") in ("Other", None) for p in sidecars
    )
    dicom = sorted((out / "bids" / "sourcedata").rglob("*.dcm"))
    assert {str(pydicom.dcmread(p, stop_before_pixels=True).get("ManufacturerModelName"))
            for p in dicom} == {"Other"}  # fmt: skip
    # A policy change alone is a new release: lowering the remedy restores the recorded names.
    lower = tmp_path / "lower.yaml"
    lower.write_text(accept.read_text() + "  remedies: {model: 0, software: 0}\n")
    run_workflow(tmp_path / "inbox", out, key_file, "--configfile", str(lower))
    models = {json.loads(p.read_text()).get("ManufacturersModelName") for p in sidecars}
    assert "Other" not in models and models - {None}
    assert "Other" not in {
        str(pydicom.dcmread(p, stop_before_pixels=True).get("ManufacturerModelName")) for p in dicom
    }

    # By hand: the same figures, and a plan that says why the target cannot be reached.
    cmd = [sys.executable, "-m", "passerelle", "risk", "--config", "config/config.yaml",
           "--set", f"inbox={tmp_path / 'inbox'}", "--set", f"output={out}",
           "--set", f"key_file={key_file}", "--set", "risk.target_k=2",
           "--plan", "--json"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    by_hand = json.loads(proc.stdout)
    assert by_hand["after"]["k"] == 1 and by_hand["target_k"] == 2
    assert by_hand["plan"]["steps"][0] == "start: k=1, 2 of 2 records in classes below k=2"
    assert not by_hand["plan"]["reached"]  # two subjects with 2 and 1 sessions: never k=2
