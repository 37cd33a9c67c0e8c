"""Bad configuration or a bad key stops the run before any job, with one line to act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import run_workflow


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("passerelle: error:")]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("bogus=1",), "config/config.yaml: key bogus: unknown key"),
        (("convert={threads: zero}",), "key convert.threads: expected integer"),
        (("bids_map=/nonexistent/map.yaml",), "/nonexistent/map.yaml: file not found"),
    ],
)
def test_bad_config(tmp_path: Path, key_file: Path, extra: tuple[str, ...], expected: str) -> None:
    (tmp_path / "inbox").mkdir()
    proc = run_workflow(tmp_path / "inbox", tmp_path / "out", key_file, *extra, check=False)
    assert proc.returncode != 0
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "bids").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "not found"), (b"s3cr3t-too-short", "at least 32 are required")],
    ids=["missing", "short"],
)
def test_bad_key(tmp_path: Path, content: bytes | None, expected: str) -> None:
    (tmp_path / "inbox").mkdir()
    key = tmp_path / "k"
    if content is not None:
        key.write_bytes(content)
    proc = run_workflow(tmp_path / "inbox", tmp_path / "out", key, check=False)
    assert proc.returncode != 0
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    if content:
        assert content.decode() not in proc.stderr
    assert not (tmp_path / "out").exists()
