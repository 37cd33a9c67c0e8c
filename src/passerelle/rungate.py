"""The last PHI gate of a run, against every identity of the run.

A session is gated against its own patient when it is made; here the published sessions,
the dataset-level files, the reports and the logs are checked against all patients of the
run, which also catches one patient's identity turning up in another's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path

from passerelle.bids.paths import session_dir
from passerelle.config import Settings
from passerelle.deid.gate import Hit, Watchlist, dates_in, scan_text, scan_tree
from passerelle.errors import PasserelleError
from passerelle.plan import spec_path
from passerelle.pseudonymise import source_watchlist


def session_watchlists(
    settings: Settings, sessions: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Watchlist]:
    """Each session's source identities, read once for every gate of the finalize step."""
    return {
        (sub, ses): source_watchlist(json.loads(spec_path(settings.work, sub, ses).read_text()))
        for sub, ses in sessions
    }


def merged(watches: Iterable[Watchlist]) -> Watchlist:
    watch = Watchlist()
    for w in watches:
        watch.merge(w)
    return watch


def run_watchlist(settings: Settings, sessions: Iterable[tuple[str, str]]) -> Watchlist:
    return merged(session_watchlists(settings, sessions).values())


def _written_dates(settings: Settings, sub: str, ses: str) -> set[str]:
    """The shifted acquisition dates the pseudonymise step recorded for a session."""
    path = settings.work / "pseudo" / f"sub-{sub}_ses-{ses}.json"
    if not path.is_file():
        return set()
    pseudo = json.loads(path.read_text())
    times = [pseudo.get("acq_time"), *(s.get("acq_time") for s in pseudo.get("series", []))]
    return {d for t in times if t for d in dates_in(t)}


def subject_watchlists(
    settings: Settings,
    per_session: dict[tuple[str, str], Watchlist],
    acq_times: Iterable[tuple[str, str | None]],
) -> dict[str, Watchlist]:
    """The run's watchlist for each subject's own files (session folders, sessions.tsv).

    A subject's shifted dates are exempt there: a few hundred patients scanned over a few
    years make one patient's shifted date equal to another's real date a common chance
    (about 6% of sessions in a 200-session run), and such a date says nothing about the other
    patient. A shifted date equal to one of the subject's own real dates stays a hit.
    acq_times: (subject, shifted session time) of every session in the dataset.
    """
    watch = merged(per_session.values())
    written: dict[str, set[str]] = {}
    real: dict[str, set[str]] = {}
    for (sub, ses), w in per_session.items():
        written.setdefault(sub, set()).update(_written_dates(settings, sub, ses))
        real.setdefault(sub, set()).update(w.dates)
    for sub, acq_time in acq_times:
        if sub in written and acq_time:
            written[sub].update(dates_in(acq_time))
    return {
        sub: dataclasses.replace(watch, dates=watch.dates - (dates - real[sub]))
        for sub, dates in written.items()
    }


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
    settings: Settings, sessions: list[tuple[str, str]], watches: dict[str, Watchlist]
) -> dict[tuple[str, str], Hit]:
    """First hit in each published session's BIDS files, if any (watches: by subject).

    Hits are named from the output folder: the withdrawal reason is published (summary,
    manifest), and the same inputs must give the same bytes wherever the output lies.
    """
    found = {}
    for sub, ses in sessions:
        folder = settings.bids_dir / session_dir(sub, ses)
        hits = _scan(settings.output, folder.rglob("*"), watches[sub]) if folder.is_dir() else []
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


def dataset_files(settings: Settings) -> list[Path]:
    """Files the whole dataset shares: top-level tables and descriptions, the reports."""
    paths = [p for p in settings.bids_dir.iterdir() if p.is_file()]
    return paths + [p for p in settings.reports_dir.rglob("*") if p.is_file()]


def subject_files(settings: Settings, sub: str) -> list[Path]:
    """A subject's own tables (sessions.tsv), outside its session folders."""
    return sorted((settings.bids_dir / f"sub-{sub}").glob("*.tsv"))


def log_files(settings: Settings) -> list[Path]:
    logs = settings.work / "logs"
    return [p for p in logs.rglob("*") if p.is_file()] if logs.is_dir() else []
