"""Private locations (inbox, work area, key, checkout) never reach a research-facing text file
such as Snakemake's HTML report: each becomes its placeholder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from passerelle.archive.records import redact_paths
from passerelle.config import settings_from

REPO = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path):
    inbox = tmp_path / "DOE_JOHN_export"
    inbox.mkdir()
    raw = {
        "inbox": str(inbox),
        "output": str(tmp_path / "out"),
        "key_file": str(tmp_path / "secret" / "k.key"),
        "bids_map": str(REPO / "config" / "bids_map.yaml"),
        "dataset": {"name": "x"},
    }
    return settings_from(raw, "site/config.yaml", tmp_path), inbox


def test_every_private_location_becomes_a_placeholder(tmp_path: Path) -> None:
    settings, inbox = _settings(tmp_path)
    text = (
        f'"{inbox}/IM0001" "{tmp_path}/out.work/qc/sub-1_ses-1_deface.png" '
        f'"{tmp_path}/out/bids/dataset_description.json" "{tmp_path}/secret/k.key" '
        f'"{tmp_path}/workflow/rules/convert.smk"'
    )
    got = redact_paths(text, settings, tmp_path)
    assert str(tmp_path) not in got and "DOE_JOHN" not in got
    # The work area lies beside the output: the longer path wins.
    assert got == (
        '"<inbox>/IM0001" "<work>/qc/sub-1_ses-1_deface.png" '
        '"<output>/bids/dataset_description.json" "<key file>" '
        '"<workflow>/workflow/rules/convert.smk"'
    )


def test_command_rewrites_the_file_in_place(tmp_path: Path) -> None:
    _, inbox = _settings(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"inbox: {inbox}\noutput: {tmp_path / 'out'}\nkey_file: {tmp_path / 'k.key'}\n"
        f"bids_map: {REPO / 'config' / 'bids_map.yaml'}\ndataset: {{name: x}}\n"
    )
    report = tmp_path / "report.html"
    report.write_text(f"<p>{inbox}/a.dcm</p>")
    subprocess.run(
        [sys.executable, "-m", "passerelle", "redact-paths", "--config", str(config), str(report)],
        check=True, cwd=REPO,
    )  # fmt: skip
    assert report.read_text() == "<p><inbox>/a.dcm</p>"
