"""The nightly entry point: a summary of what arrived, idempotent when nothing did."""

from __future__ import annotations

import os

import pytest
import yaml

from .conftest import REPO, tags
from .steps import passerelle

pytestmark = pytest.mark.slow


def test_nightly_twice(history, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    os.symlink(history.pool / history.patients()[2], inbox / "delivery-1")
    (inbox / "delivery-1-notes.dcm").write_bytes(b"not a DICOM file at all")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        inbox=str(inbox),
        output=str(tmp_path / "out"),
        key_file=str(history.key_file),
        archive=str(tmp_path / "archive"),
    )
    (tmp_path / "nightly.yaml").write_text(yaml.safe_dump(config))

    first = passerelle("nightly", "--config", str(tmp_path / "nightly.yaml"))
    assert first.returncode == 0, first.stdout + first.stderr
    (tag,) = tags(tmp_path / "archive")
    assert f"- version created: {tag}" in first.stdout
    assert first.stdout.count("\n- sub-") == 1
    assert "## Quarantined files, with reasons\n\n- 1 file(s): not DICOM" in first.stdout
    assert "Planning: 1 session(s) to process" in first.stdout
    latest = tmp_path / "out" / "reports" / "nightly" / "latest.md"
    assert latest.read_text() in first.stdout
    assert str(tmp_path) not in latest.read_text()  # no private path in a shared report

    second = passerelle("nightly", "--config", str(tmp_path / "nightly.yaml"))
    assert second.returncode == 0, second.stderr
    assert "- none (nothing new arrived)" in second.stdout
    assert "- no new version (nothing new to archive)" in second.stdout
    assert tags(tmp_path / "archive") == [tag]
