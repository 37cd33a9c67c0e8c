"""The workflow's last step: the run's published sessions become one archive version.

Only the sessions of the run (and any published session the archive has never seen) are
compared and staged, so a nightly run's cost follows what arrived, not the archive's size.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from passerelle import __version__
from passerelle.archive import ledger, records
from passerelle.archive.layout import (
    CHANGES,
    DERIVATIVES,
    LEDGER,
    SOURCEDATA,
    create_archive,
    derivative_names,
    is_archive,
)
from passerelle.archive.lock import archive_lock, journal_path, recover
from passerelle.archive.store import Change, commit_version, differs
from passerelle.archive.tools import identity_env
from passerelle.config import Settings
from passerelle.plan import spec_path

Session = tuple[str, str]
# Files of the published tree the archive never takes: it writes CHANGES itself.
ARCHIVE_OWNED = {CHANGES}


def open_archive(settings: Settings, out: TextIO) -> Path:
    """Create the archive if needed and finish any interrupted save. Call with the lock."""
    archive = settings.archive
    ident = settings.archiving["identity"]
    identity_env(ident["name"], ident["email"])
    if not is_archive(archive):
        create_archive(archive, ident["site"])
        print(f"passerelle: created the archive {archive}", file=out, flush=True)
    if journal_path(archive).exists():
        print(f"passerelle: {recover(archive)}", file=out, flush=True)
    return archive


def trees(bids: Path) -> list[str]:
    """Dataset roots of the published tree: raw, pseudonymised DICOM, each derivative."""
    found = ["."]
    if (bids / SOURCEDATA).is_dir():
        found.append(SOURCEDATA)
    found += [f"{DERIVATIVES}/{n}" for n in derivative_names(bids)]
    return found


def _rel(tree: str, *parts: str) -> str:
    return "/".join(p for p in (tree if tree != "." else "", *parts) if p)


def _files(root: Path, base: str) -> dict[str, Path]:
    folder = root / base if base else root
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and ".git" not in p.relative_to(root).parts
    }


def _dataset_level(root: Path, tree: str) -> dict[str, Path]:
    """Files of a tree outside every sub-* folder and outside nested trees."""
    folder = root / tree if tree != "." else root
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(".") and name != ".bidsignore":
            continue
        if name.startswith("sub-") or (tree == "." and name in ("sourcedata", DERIVATIVES)):
            if entry.is_file():
                found[_rel(tree, name)] = entry
            continue
        if entry.is_file():
            found[_rel(tree, name)] = entry
        elif entry.is_dir():
            found.update(_files(root, _rel(tree, name)))
    return {k: v for k, v in found.items() if k not in ARCHIVE_OWNED}


def _subject_level(root: Path, tree: str, sub: str) -> dict[str, Path]:
    folder = root / _rel(tree, f"sub-{sub}")
    if not folder.is_dir():
        return {}
    return {_rel(tree, f"sub-{sub}", p.name): p for p in folder.iterdir() if p.is_file()}


def published_sessions(bids: Path) -> set[Session]:
    found = set()
    for tree in trees(bids):
        root = bids / tree if tree != "." else bids
        for ses in root.glob("sub-*/ses-*"):
            if ses.is_dir():
                found.add((ses.parent.name[4:], ses.name[4:]))
    return found


def _filter_tsv(src: Path, removed: set[Session], gone: set[str]) -> bytes | None:
    """participants.tsv and sessions.tsv without rows removed by retention (gone: subjects
    with no session left)."""
    name = src.name
    if not removed or not name.endswith(".tsv"):
        return None
    rows = list(csv.reader(io.StringIO(src.read_text()), delimiter="\t"))
    if not rows:
        return None
    header, body = rows[0], rows[1:]
    if name == "participants.tsv" and "participant_id" in header:
        i = header.index("participant_id")
        keep = [r for r in body if r[i][4:] not in gone]
    elif name.endswith("_sessions.tsv") and "session_id" in header:
        sub = name.split("_")[0][4:]
        i = header.index("session_id")
        keep = [r for r in body if (sub, r[i][4:]) not in removed]
    else:
        return None
    if len(keep) == len(body):
        return None
    return ("\n".join("\t".join(r) for r in [header, *keep]) + "\n").encode()


def _delivery(settings: Settings, sub: str, ses: str) -> tuple[str, str]:
    """(public delivery name, retention end) of a session, from its inbox paths (private)."""
    retention = settings.archiving["retention"]
    default = retention.get("until") or ""
    try:
        spec = json.loads(spec_path(settings.work, sub, ses).read_text())
    except FileNotFoundError:
        return "", default
    paths = [f[0] for s in spec["series"] for f in s["files"]]
    for rule in retention.get("deliveries", []):
        if any(fnmatch.fnmatch(p, rule["match"]) for p in paths):
            return rule["name"], rule.get("until") or default
    return "", default


def generated_by(root: Path, tree: str) -> str:
    path = (root / tree if tree != "." else root) / "dataset_description.json"
    try:
        gen = json.loads(path.read_text()).get("GeneratedBy") or []
    except (OSError, json.JSONDecodeError):
        return ""
    return "; ".join(f"{g.get('Name', '')} {g.get('Version', '')}".strip() for g in gen)


def build_change(
    settings: Settings,
    archive: Path,
    scope: set[Session],
    removed: set[Session],
    gone: set[str],
) -> tuple[Change, dict[str, set[Session]]]:
    """The change that makes the archive hold the published state of the scoped sessions."""
    bids = settings.bids_dir
    change = Change()
    touched: dict[str, set[Session]] = defaultdict(set)  # tree -> sessions whose files change
    names = trees(bids)
    for tree in names:
        desired = _dataset_level(bids, tree)
        present = _dataset_level(archive, tree) if tree != "." else {}
        for sub in sorted({s for s, _ in scope}):
            desired.update(_subject_level(bids, tree, sub))
            present.update(_subject_level(archive, tree, sub))
        for sub, ses in sorted(scope):
            where = _rel(tree, f"sub-{sub}", f"ses-{ses}")
            mine = _files(bids, where)
            theirs = _files(archive, where)
            if set(mine) != set(theirs) or any(differs(archive, r, p) for r, p in mine.items()):
                touched[tree].add((sub, ses))
            desired.update(mine)
            present.update(theirs)
        for rel, src in desired.items():
            filtered = _filter_tsv(src, removed, gone)
            if filtered is not None:
                if not (archive / rel).is_file() or (archive / rel).read_bytes() != filtered:
                    change.generated[rel] = filtered
            elif differs(archive, rel, src):
                change.writes[rel] = src
        change.deletes |= set(present) - set(desired)
    return change, touched


def archive_run(
    settings: Settings, run_id: str, pending: list[Session], out: TextIO = sys.stderr
) -> str | None:
    """Save the run's sessions as one version; return its tag, or None when nothing changed."""
    archive = settings.archive
    with archive_lock(archive, wait=settings.archiving["lock_wait"], out=out):
        open_archive(settings, out)
        rows = ledger.load(archive)
        removed = ledger.removed_sessions(rows)
        known = {(r.subject, r.session) for r in rows.values() if r.dataset == "."}
        scope = (set(pending) | (published_sessions(settings.bids_dir) - known)) - removed
        expired = set(pending) & removed
        for sub, ses in sorted(expired):
            print(
                f"passerelle: sub-{sub}/ses-{ses} was removed under retention; not archived again",
                file=out,
            )
        change, touched = build_change(
            settings, archive, scope, removed, ledger.gone_subjects(rows)
        )
        if not change:
            print("passerelle: archive already holds this run's outputs; no new version", file=out)
            return None
        now = datetime.now().astimezone()
        tag = records.next_tag(archive, settings.archiving["tag"], now)
        sessions = _update_ledger(settings, archive, rows, touched, tag)
        doc = records.configuration(settings)
        digest = records.config_digest(doc)
        counts = _counts(settings, rows, change)
        record = {
            "version": tag,
            "kind": "run",
            "date": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "passerelle": __version__,
            "run": run_id,
            "config": f"sha256:{digest}",
            "config_file": records.config_path(digest),
            "command": f"python -m passerelle archive --config <work>/config.effective.json "
            f"--run-id {run_id}",
            "workflow": "snakemake --configfile CONFIG --config inbox=<inbox> "
            "output=<output> key_file=<key file> archive=<archive>",
            "sessions": sessions,
            "counts": counts,
            "producer": _producer(settings),
        }
        title = (
            f"passerelle {__version__}: {len(sessions['added'])} session(s) added, "
            f"{len(sessions['updated'])} updated, {len(sessions['removed'])} removed"
        )
        change.generated[LEDGER] = ledger.dump(rows)
        change.generated[records.version_path(tag)] = records.canonical(record)
        change.generated[records.config_path(digest)] = records.canonical(doc)
        change.generated[CHANGES] = records.changes_text(
            archive, tag, now, [title, f"config sha256:{digest[:12]}, run {run_id}"]
        )
        change.generated[records.REGISTER] = records.register_text(
            archive, _register_entry(settings, record)
        )
        commit_version(
            archive,
            change,
            tag,
            records.message(title, record),
            settings.archiving["identity"]["site"],
            "run",
            out,
        )
        print(f"passerelle: archive version {tag}: {title}", file=out, flush=True)
        return tag


def _update_ledger(
    settings: Settings,
    archive: Path,
    rows: dict[tuple[str, str, str], ledger.Row],
    touched: dict[str, set[Session]],
    tag: str,
) -> dict[str, list[str]]:
    bids = settings.bids_dir
    added, updated, removed = set(), set(), set()
    for tree, sessions in touched.items():
        # sourcedata has no description of its own: the raw dataset's pipeline made it.
        made_by = generated_by(bids, tree) or generated_by(bids, ".")
        for sub, ses in sessions:
            label = f"sub-{sub}/ses-{ses}"
            key = (tree, sub, ses)
            exists = (bids / _rel(tree, f"sub-{sub}", f"ses-{ses}")).is_dir()
            if not exists:
                if key in rows:
                    del rows[key]  # withheld or no longer yielding anything: history keeps it
                    if tree == ".":
                        removed.add(label)
                continue
            delivery, until = _delivery(settings, sub, ses)
            if key in rows:
                rows[key].updated, rows[key].generated_by = tag, made_by
                if tree == ".":
                    updated.add(label)
            else:
                rows[key] = ledger.Row(tree, sub, ses, tag, tag, made_by, delivery, until)
                if tree == ".":
                    added.add(label)
    # A session whose derivatives alone changed is an update too.
    for tree, sessions in touched.items():
        if tree != ".":
            updated |= {f"sub-{a}/ses-{b}" for a, b in sessions} - added - removed
    return {"added": sorted(added), "updated": sorted(updated), "removed": sorted(removed)}


def _counts(
    settings: Settings, rows: dict[tuple[str, str, str], ledger.Row], change: Change
) -> dict[str, int]:
    live = [r for r in rows.values() if r.dataset == "." and not r.removed]
    counts = {
        "files written": len(change.writes) + len(change.generated),
        "files deleted": len(change.deletes),
        "sessions in archive": len(live),
        "subjects in archive": len({r.subject for r in live}),
    }
    summary = settings.reports_dir / "summary.json"
    if summary.is_file():
        for state, n in json.loads(summary.read_text()).get("files", {}).items():
            counts[f"inbox files {state}"] = n
    return counts


def _producer(settings: Settings) -> dict[str, Any]:
    ident = settings.archiving["identity"]
    return {k: ident[k] for k in ("name", "institution", "site") if ident.get(k)}


def _register_entry(settings: Settings, record: dict[str, Any]) -> dict[str, Any]:
    sessions = record["sessions"]
    return {
        "version": record["version"],
        "date": record["date"],
        "kind": "pipeline",
        "who": [{**_producer(settings), "role": "data platform (pseudonymisation, conversion)"}],
        "what": f"passerelle {__version__}: pseudonymised DICOM, BIDS conversion, derivatives",
        "on": sorted(set(sessions["added"]) | set(sessions["updated"])),
        "removed": sessions["removed"],
        "funding": settings.raw["dataset"].get("funding", []),
        "license": settings.raw["dataset"].get("license", ""),
    }
