"""Reproducibility: the same inbox into a fresh archive gives identical annex keys, and
`passerelle rerun VERSION` says so (or names what differs)."""

from __future__ import annotations

import json

import pytest

from passerelle.archive.rerun import compare, tree

from .conftest import effective_config, git, tags
from .steps import passerelle

pytestmark = pytest.mark.slow


def test_rerun_gives_identical_annex_keys(history):
    v1 = tags(history.archive)[0]
    proc = passerelle(
        "rerun",
        v1,
        "--json",
        "--config",
        str(effective_config(history)),
        "--set",
        f"archive={history.archive}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["different"] == [] and report["missing"] == []
    original = tree(history.archive, v1)
    sessions = [p for p in original if "/ses-" in p]
    assert report["identical"] >= len(sessions) > 0
    # The inbox has grown since v1: the second patient is regenerated too, and named.
    assert len(report["extra_sessions"]) == 1
    # Every annexed output has the very same key in the fresh archive.
    fresh = tree(history.work.parent / "out.work" / "rerun" / v1 / "archive", "HEAD")
    annexed = [p for p in sessions if p.endswith((".nii.gz", ".dcm"))]
    assert annexed and all(fresh[p] == original[p] for p in annexed)


def test_compare_names_a_difference(history, fresh_copy):
    archive = fresh_copy()
    (v1,) = tags(archive)
    side = sorted(archive.glob("sub-*/ses-*/*/*.json"))[0]
    side.write_text(side.read_text().replace("{", '{"Edited": true, ', 1))
    git(archive, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "edit")
    result = compare(tree(archive, v1), tree(archive, "HEAD"))
    assert result.different == [side.relative_to(archive).as_posix()]
    assert not result.ok and result.missing == []
