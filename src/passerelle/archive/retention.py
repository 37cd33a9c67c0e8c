"""Retention: each delivery (or the whole project, or a submission) can carry an end date.

`passerelle retention` lists what has expired; with --apply it removes it as one new version:
the files leave the tree and their annexed content is dropped, while git history keeps the
record that they existed (and the ledger says which version removed them, so a later run
does not bring them back).
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

from passerelle import __version__
from passerelle.archive import ledger, records
from passerelle.archive.layout import CHANGES, LEDGER, REGISTER
from passerelle.archive.lock import archive_lock
from passerelle.archive.runstep import _files, _filter_tsv, _rel, open_archive
from passerelle.archive.store import Change, commit_version
from passerelle.config import Settings


def until(settings: Settings, row: ledger.Row) -> str:
    """A row's end date: the configured delivery's (so an extension applies at once), else
    the date recorded when it was archived, else the project's."""
    retention = settings.archiving["retention"]
    for rule in retention.get("deliveries", []):
        if row.delivery and rule["name"] == row.delivery:
            return rule["until"]
    return row.retention_until or retention.get("until") or ""


def expired(settings: Settings, archive: Path, today: date) -> list[ledger.Row]:
    rows = ledger.load(archive)
    out = [
        r
        for r in rows.values()
        if not r.removed and until(settings, r) and date.fromisoformat(until(settings, r)) < today
    ]
    gone = {(r.subject, r.session) for r in out if r.dataset == "."}
    # Everything made from an expired session goes with it.
    out += [
        r
        for r in rows.values()
        if not r.removed and r not in out and (r.subject, r.session) in gone
    ]
    return sorted(out, key=lambda r: r.key)


def apply(
    settings: Settings, today: date, out: TextIO = sys.stderr
) -> tuple[list[ledger.Row], str | None]:
    archive = settings.archive
    with archive_lock(archive, wait=settings.archiving["lock_wait"], out=out):
        open_archive(settings, out)
        doomed = expired(settings, archive, today)
        if not doomed:
            return [], None
        rows = ledger.load(archive)
        now = datetime.now().astimezone()
        tag = records.next_tag(archive, settings.archiving["tag"], now)
        change = Change(drop=True)
        for r in doomed:
            where = _rel(r.dataset, f"sub-{r.subject}", f"ses-{r.session}")
            change.deletes |= set(_files(archive, where))
            rows[r.key].removed = tag
        removed = ledger.removed_sessions(rows)
        gone = ledger.gone_subjects(rows)
        tables = [archive / "participants.tsv"]
        tables += [archive / f"sub-{s}" / f"sub-{s}_sessions.tsv" for s, _ in removed]
        for table in tables:
            rel = table.relative_to(archive).as_posix()
            if table.parts[-2][4:] in gone and table.name.endswith("_sessions.tsv"):
                change.deletes.add(rel)
                continue
            filtered = _filter_tsv(table, removed, gone) if table.is_file() else None
            if filtered is not None:
                change.generated[rel] = filtered
        labels = sorted({f"sub-{r.subject}/ses-{r.session}" for r in doomed})
        title = f"retention: {len(labels)} session(s) removed, past their retention date"
        when = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = {
            "version": tag,
            "kind": "retention",
            "date": when,
            "passerelle": __version__,
            "command": f"passerelle retention --apply --today {today.isoformat()}",
            "sessions": {"added": [], "updated": [], "removed": labels},
            "counts": {"files deleted": len(change.deletes)},
            "expired": [
                {
                    "dataset": r.dataset,
                    "session": f"sub-{r.subject}/ses-{r.session}",
                    "until": until(settings, r),
                }
                for r in doomed
            ],
        }
        entry = {
            "version": tag,
            "date": when,
            "kind": "retention",
            "removed": labels,
            "who": [settings.archiving["identity"].get("name")],
            "what": title,
        }
        change.generated[LEDGER] = ledger.dump(rows)
        change.generated[records.version_path(tag)] = records.canonical(record)
        change.generated[CHANGES] = records.changes_text(archive, tag, now, [title])
        change.generated[REGISTER] = records.register_text(archive, entry)
        commit_version(
            archive,
            change,
            tag,
            records.message(title, record),
            settings.archiving["identity"]["site"],
            "retention",
            out,
        )
        return doomed, tag
