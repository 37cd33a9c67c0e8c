"""`make run` twice gives one version; a new study gives a second version holding only it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from passerelle.archive import ledger
from passerelle.archive.layout import annex_key_sha256
from passerelle.fsutil import sha256_file

from .conftest import ENV, git, tags

pytestmark = pytest.mark.slow


def test_first_run_makes_one_tagged_version(history):
    archive = history.archive
    (v1, *_rest) = tags(archive)
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d{2}", v1)
    assert (archive / ".datalad" / "config").is_file()
    # The second run had nothing new: no commit, no tag.
    assert "Nothing to be done" in history.runs[1].stdout + history.runs[1].stderr
    assert len(tags(archive)) == 2
    assert git(history.snapshot_v1, "rev-parse", "HEAD") == git(
        archive, "rev-parse", f"{v1}^{{commit}}"
    )


def test_second_study_is_a_second_version_with_only_that_study(history):
    v1, v2 = tags(history.archive)
    assert v2 == f"{v1}.2"  # same day: a suffix
    rows = ledger.load(history.archive)
    raw = sorted((r.since, r.subject, r.session) for r in rows.values() if r.dataset == ".")
    assert [since for since, *_ in raw] == [v1, v2]
    new_sub, new_ses = raw[1][1], raw[1][2]
    changed = git(history.archive, "diff", "--name-only", v1, v2).split()
    in_sessions = [p for p in changed if "/ses-" in p]
    assert in_sessions, changed
    assert all(f"sub-{new_sub}/ses-{new_ses}/" in p for p in in_sessions), in_sessions
    record = json.loads((history.archive / ".passerelle" / "versions" / f"{v2}.json").read_text())
    assert record["sessions"] == {
        "added": [f"sub-{new_sub}/ses-{new_ses}"],
        "updated": [],
        "removed": [],
    }
    message = git(history.archive, "log", "-1", "--format=%B", v2)
    assert "sessions added: 1" in message and f"config: {record['config']}" in message
    changes = (history.archive / "CHANGES").read_text()
    assert changes.index(f"{v2} ") < changes.index(f"\n{v1} ")  # newest first, both kept


def test_imaging_is_annexed_and_text_in_git(history):
    archive = history.archive
    niftis = list(archive.glob("sub-*/ses-*/*/*.nii.gz"))
    dicoms = list(archive.glob("sourcedata/dicom/sub-*/ses-*/**/*.dcm"))
    sidecars = list(archive.glob("sub-*/ses-*/*/*.json"))
    assert niftis and dicoms and sidecars
    for path in niftis + dicoms:
        sha = annex_key_sha256(path)
        assert sha is not None, path
        assert sha == sha256_file(path.resolve())  # content present and matching its key
    small_text = [*sidecars, archive / "participants.tsv", archive / "CHANGES", archive / "README"]
    assert all(p.is_file() and not p.is_symlink() for p in small_text)
    # Nothing private: no absolute path of this machine, nor the inbox's folder names.
    grep = subprocess.run(
        ["git", "-C", str(archive), "grep", "-I", "-l", "-e", str(history.base), "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    assert grep.returncode == 1 and grep.stdout == "", grep.stdout
    annex_log = git(archive, "show", "git-annex:uuid.log")
    assert str(history.base) not in annex_log and "@" not in annex_log


def test_version_records_pipeline_config_and_command(history):
    archive = history.archive
    v2 = tags(archive)[-1]
    record = json.loads((archive / ".passerelle" / "versions" / f"{v2}.json").read_text())
    assert record["passerelle"] and record["command"].startswith("python -m passerelle archive")
    config = json.loads((archive / record["config_file"]).read_text())
    assert config["config"]["inbox"] == "<inbox>" and config["config"]["key_file"] == "<key file>"
    assert config["bids_map"]["rules"]
    text = (archive / record["config_file"]).read_text()
    assert str(history.base) not in text
    register = [
        json.loads(line)
        for line in (archive / ".passerelle" / "contributions.jsonl").read_text().splitlines()
    ]
    assert [e["version"] for e in register] == tags(archive)
    assert register[-1]["on"] == record["sessions"]["added"]
