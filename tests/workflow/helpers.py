"""Run the real workflow (Snakemake, dcm2niix, BIDS validator) from tests."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_workflow(
    inbox: Path, output: Path, key_file: Path, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # No archive unless a test asks for one (archive=PATH): most tests look at the output only.
    archive = [] if any(e.startswith("archive=") for e in extra) else ["archive="]
    # No defacing or segmentation either unless asked (derivatives=...): each costs ~10-30 s
    # per T1w, and the derivative tests run them on their own.
    if not any(e.startswith("derivatives=") for e in extra):
        archive.append("derivatives={suffixes: [], segment_suffixes: []}")
    cmd = [
        sys.executable, "-m", "snakemake", "--cores", "2", "--config",
        f"inbox={inbox}", f"output={output}", f"key_file={key_file}", *archive, *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"workflow failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def work(output: Path) -> Path:
    """The private work area of a run writing to output (beside it, not inside)."""
    from passerelle.config import default_work

    return default_work(output)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def jobs_run(proc: subprocess.CompletedProcess[str], rule: str) -> int:
    """How many jobs of a rule Snakemake started, from its log."""
    return sum(
        1
        for line in proc.stderr.splitlines()
        if line.strip() == f"rule {rule}:" or line.strip() == f"localrule {rule}:"
    )
