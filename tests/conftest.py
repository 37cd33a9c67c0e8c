"""Shared fixtures: the real scanner data in ../shared/testdata and a scratch key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_dir() -> Path:
    return Path(os.environ.get("PASSERELLE_SHARED", REPO.parent / "shared")).resolve()


def need(path: Path, what: str) -> Path:
    """Skip when test data are absent; in CI an absent input is a failure, not a skip."""
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{what} missing at {path} (CI must have ../shared)")
        pytest.skip(f"{what} not available at {path}")
    return path


@pytest.fixture(scope="session")
def testdata() -> Path:
    return need(shared_dir() / "testdata", "shared test data")


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "test.key"
    path.write_text("0123456789abcdef" * 4 + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def secret_key(key_file: Path):
    from passerelle.keys import load_key

    return load_key(key_file)
