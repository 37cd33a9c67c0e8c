"""The last PHI gate of a run, against every identity of the run.

A session is gated against its own patient when it is made; here the published sessions,
the dataset-level files, the reports and the logs are checked against all patients of the
run, which also catches one patient's identity turning up in another's outputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from passerelle.bids.paths import session_dir
from passerelle.config import Settings
from passerelle.deid.gate import Hit, Watchlist, scan_text, scan_tree
from passerelle.errors import PasserelleError
from passerelle.plan import spec_path
from passerelle.pseudonymise import source_watchlist


def run_watchlist(settings: Settings, sessions: Iterable[tuple[str, str]]) -> Watchlist:
    watch = Watchlist()
    for sub, ses in sessions:
        watch.merge(source_watchlist(json.loads(spec_path(settings.work, sub, ses).read_text())))
    return watch


def _scan(
    root: Path, paths: Iterable[Path], watch: Watchlist, roots: Iterable[Path] = ()
) -> list[Hit]:
    hits = []
    for path in sorted(set(paths)):
        if not path.exists():
            continue
        if path.suffix == ".log":
            hits += _scan_log(root, path, watch, roots)
        else:
            hits += scan_tree(root, watch, [path])
    return hits


def _scan_log(root: Path, path: Path, watch: Watchlist, roots: Iterable[Path]) -> list[Hit]:
    """Logs quote the configured folders; those paths are the operator's, not data, so they
    are set aside before the scan (a hit on a path the operator chose is no leak of ours)."""
    rel = path.relative_to(root).as_posix()
    text = path.read_text(errors="replace")
    for folder in sorted((str(r) for r in roots), key=len, reverse=True):
        text = text.replace(folder, "<configured folder>")
    return [
        Hit(rel, f"line {n}", kind)
        for n, line in enumerate(text.splitlines(), start=1)
        for kind in scan_text(line, watch)
    ]


def _root(settings: Settings) -> Path:
    """Where hits are named from: the folder holding both the output and the work area."""
    return Path(os.path.commonpath([settings.output, settings.work]))


def session_hits(
    settings: Settings, sessions: list[tuple[str, str]], watch: Watchlist
) -> dict[tuple[str, str], Hit]:
    """First hit in each published session's BIDS files, if any."""
    found = {}
    for sub, ses in sessions:
        folder = settings.bids_dir / session_dir(sub, ses)
        hits = _scan(_root(settings), folder.rglob("*"), watch) if folder.is_dir() else []
        if hits:
            found[(sub, ses)] = hits[0]
    return found


def check_shared(settings: Settings, paths: Iterable[Path], watch: Watchlist) -> None:
    """Files shared by the run (tables, reports, logs): a hit removes the file and fails."""
    roots = (settings.output, settings.work, settings.inbox)
    root = _root(settings)
    hits = _scan(root, paths, watch, roots)
    for hit in hits:
        (root / hit.file).unlink(missing_ok=True)
    if hits:
        where = "; ".join(str(h) for h in hits[:5])
        raise PasserelleError(f"PHI gate: identifier in a run output, file removed: {where}")


def dataset_files(settings: Settings, subjects: Iterable[str]) -> list[Path]:
    bids = settings.bids_dir
    paths = [p for p in bids.iterdir() if p.is_file()]
    for sub in subjects:
        paths += list((bids / f"sub-{sub}").glob("*.tsv"))
    return paths + [p for p in settings.reports_dir.rglob("*") if p.is_file()]


def log_files(settings: Settings) -> list[Path]:
    logs = settings.work / "logs"
    return [p for p in logs.rglob("*") if p.is_file()] if logs.is_dir() else []
