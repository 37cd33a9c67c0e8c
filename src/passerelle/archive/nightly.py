"""The nightly entry point: run the workflow on what arrived, then write a one-page summary.

Idempotent: with nothing new the workflow runs no job, the archive gets no version, and the
summary says so. A second nightly run while one is active exits with a clear message.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from passerelle.archive.lock import ArchiveLock
from passerelle.config import REPO_ROOT, Settings
from passerelle.fsutil import write_text

_PLANNED = re.compile(
    r"passerelle: (\d+) session\(s\) to process, (\d+) new or changed file\(s\) "
    r"read, planned in ([\d.]+) s"
)


def run_nightly(
    settings: Settings, config: Path, cores: int, extra: list[str]
) -> tuple[int, Path, str]:
    """Run the workflow once; return (exit status, summary path, summary text)."""
    lock = ArchiveLock(settings.work / "nightly.lock", f"nightly run of {config.name}", 0)
    with lock:
        runs = settings.work / "runs"
        before = set(runs.glob("*.done")) if runs.is_dir() else set()
        stamp = datetime.now().astimezone()
        log = settings.work / "logs" / "nightly" / f"{stamp:%Y%m%dT%H%M%S}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO_ROOT / "Snakefile"),
            "--cores",
            str(cores),
            "--configfile",
            str(config.resolve()),
            *extra,
        ]
        started = time.perf_counter()
        with log.open("w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
        elapsed = time.perf_counter() - started
        new = sorted(set(runs.glob("*.done")) - before) if runs.is_dir() else []
        text = summary(settings, stamp, proc.returncode, elapsed, log.read_text(), new)
        out = settings.reports_dir / "nightly" / f"{stamp:%Y-%m-%dT%H%M%S}.md"
        write_text(out, text)
        write_text(settings.reports_dir / "nightly" / "latest.md", text)
        return proc.returncode, out, text


def _manifest(settings: Settings) -> list[dict[str, str]]:
    path = settings.reports_dir / "manifest.tsv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def summary(
    settings: Settings, stamp: datetime, status: int, elapsed: float, log: str, new: list[Path]
) -> str:
    """One page: new sessions, quarantined files with reasons, the version created."""
    planned = _PLANNED.search(log)
    lines = [f"# Passerelle nightly run, {stamp:%Y-%m-%d %H:%M %Z}", ""]
    if status != 0:
        lines += [
            f"**FAILED** (workflow exit status {status}): nothing new was archived; "
            "the workflow log is in the work area (logs/nightly/).",
            "",
        ]
    if planned:
        lines.append(
            f"Planning: {planned.group(1)} session(s) to process, {planned.group(2)} "
            f"new or changed file(s) read, in {planned.group(3)} s; whole run "
            f"{elapsed:.1f} s."
        )
    sessions: list[str] = []
    tag = None
    for done in new:
        run_id, _, version = done.read_text().strip().partition("\t")
        tag = version if version and version != "-" else tag
        sessions += _run_sessions(settings, run_id)
    lines += ["", "## New or updated sessions", ""]
    lines += [f"- {s}" for s in sessions] or ["- none (nothing new arrived)"]
    rows = _manifest(settings)
    mine = {s.replace("/", "\t") for s in sessions}
    quarantined = [
        r
        for r in rows
        if r["state"] == "quarantined"
        and (f"{r['subject']}\t{r['session']}" in mine or r["subject"] == "n/a")
    ]
    lines += ["", "## Quarantined files, with reasons", ""]
    tally = Counter(r["reason"] for r in quarantined)
    lines += [f"- {n} file(s): {reason}" for reason, n in sorted(tally.items())] or ["- none"]
    lines += ["", "## Archive", ""]
    if settings.archive is None:
        lines.append("- no archive configured")
    elif tag:
        lines.append(f"- version created: {tag}")
    else:
        lines.append("- no new version (nothing new to archive)")
    return "\n".join(lines) + "\n"


def _run_sessions(settings: Settings, run_id: str) -> list[str]:
    from passerelle.finalize import pending_sessions

    return [f"sub-{a}/ses-{b}" for a, b in pending_sessions(settings, run_id)]
