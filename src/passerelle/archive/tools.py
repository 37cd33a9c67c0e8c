"""git, git-annex and DataLad, found beside this interpreter (the PyPI wheels), never guessed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from passerelle.errors import PasserelleError

_READY = False


def ensure_tools() -> None:
    """Put the git-annex wheel (installed beside python) first on PATH and check git is there.

    Every process that touches the archive calls this before DataLad is imported, so the
    same git-annex is used from a shell, a Snakemake job or a cron entry.
    """
    global _READY
    if _READY:
        return
    here = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if here not in parts:
        os.environ["PATH"] = os.pathsep.join([here, *parts])
    if shutil.which("git") is None:
        raise PasserelleError("git not found on PATH: install it (Debian package git)")
    if shutil.which("git-annex") is None:
        raise PasserelleError(
            "git-annex not found beside this python: install the git-annex wheel into this "
            "environment (it is a dependency of passerelle)"
        )
    # DataLad and git-annex must not ask anything on a terminal at night.
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
    _READY = True


def datalad_api() -> ModuleType:
    ensure_tools()
    import datalad.api as dl  # slow import (~0.5 s): only where the archive is touched

    return dl


def identity_env(name: str, email: str) -> None:
    """Commits carry the configured site identity, not whatever user runs the job."""
    for role in ("AUTHOR", "COMMITTER"):
        os.environ[f"GIT_{role}_NAME"] = name
        os.environ[f"GIT_{role}_EMAIL"] = email


def git(repo: Path, *args: str, check: bool = True, text: bool = True) -> Any:
    """Run git in repo and return stdout (str, or bytes with text=False)."""
    ensure_tools()
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=text, check=False
    )
    if check and proc.returncode != 0:
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise PasserelleError(f"git {args[0]} failed in {repo.name}: {err.strip()[:300]}")
    return proc.stdout


def annex(repo: Path, *args: str, check: bool = True) -> str:
    ensure_tools()
    proc = subprocess.run(
        ["git", "-C", str(repo), "annex", *args], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise PasserelleError(
            f"git annex {args[0]} failed in {repo.name}: {proc.stderr.strip()[:300]}"
        )
    return proc.stdout


def head(repo: Path) -> str | None:
    out = git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False).strip()
    return out or None
