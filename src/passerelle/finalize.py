"""Publish converted sessions into the BIDS dataset and account for every input file."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from passerelle import __version__
from passerelle.bids.dataset import write_dataset_files
from passerelle.bids.paths import session_dir
from passerelle.config import Settings
from passerelle.convert import WITHHELD
from passerelle.derivatives import dataset as derived
from passerelle.fsutil import write_json, write_tsv
from passerelle.keys import SecretKey
from passerelle.labels import opaque_id
from passerelle.plan import PENDING, QUARANTINED
from passerelle.rungate import (
    check_shared,
    dataset_files,
    merged,
    session_hits,
    session_watchlists,
    subject_files,
    subject_watchlists,
)
from passerelle.state import State


def staging_dir(work: Path, sub: str, ses: str) -> Path:
    return work / "staging" / f"sub-{sub}_ses-{ses}"


def result_path(work: Path, sub: str, ses: str) -> Path:
    return work / "results" / f"sub-{sub}_ses-{ses}.json"


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link a staged session into place (copy across file systems), then swap it in."""
    tmp = dst.with_name(f".{dst.name}.incoming")
    shutil.rmtree(tmp, ignore_errors=True)

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, tmp, copy_function=link)
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)


def _publish(src: Path, dst: Path) -> None:
    if src.is_dir():
        _link_tree(src, dst)
    elif dst.exists():
        shutil.rmtree(dst)  # the session no longer yields anything here (or is withheld)


def publish_session(settings: Settings, sub: str, ses: str) -> dict[str, Any]:
    """Put a session's BIDS images and its pseudonymised DICOM in place, or take them out."""
    result = json.loads(result_path(settings.work, sub, ses).read_text())
    where = session_dir(sub, ses)
    _publish(staging_dir(settings.work, sub, ses) / where, settings.bids_dir / where)
    pseudo = settings.work / "pseudo" / f"sub-{sub}_ses-{ses}" / "sourcedata" / "dicom" / where
    sourcedata = settings.bids_dir / "sourcedata" / "dicom" / where
    if any(s["reason"].startswith(WITHHELD) for s in result["series"]):
        shutil.rmtree(sourcedata, ignore_errors=True)  # withheld: no copy of any kind
    else:
        _publish(pseudo, sourcedata)
    return result


def _publish_derivatives(settings: Settings, sub: str, ses: str) -> dict[str, Any] | None:
    if not (settings.bids_dir / session_dir(sub, ses)).is_dir():
        derived.remove_session_derivatives(settings.bids_dir, sub, ses)
        return None
    return derived.publish_session_derivatives(
        settings.work, settings.bids_dir, sub, ses, settings.raw
    )


def _manifest(settings: Settings, key: SecretKey, state: State) -> Counter[str]:
    counts: Counter[str] = Counter()
    public, private = [], []
    for path, st, reason, sub, ses, number, present in state.dispositions():
        if not present:
            continue
        counts[st or PENDING] += 1
        fid = opaque_id(key, "file", path)
        where = [f"sub-{sub}" if sub else None, f"ses-{ses}" if ses else None, number]
        public.append([fid, st, reason, *where])
        private.append([path, fid, st, reason, *where])
    header = ["state", "reason", "subject", "session", "series"]
    # The public manifest names files by keyed id: inbox paths can carry patient names.
    write_tsv(settings.reports_dir / "manifest.tsv", ["file_id", *header], public)
    write_tsv(settings.work / "manifest.tsv", ["path", "file_id", *header], private)
    return counts


def pending_sessions(settings: Settings, run_id: str) -> list[tuple[str, str]]:
    state = State(settings.work / "state.sqlite")
    try:
        return [(a, b) for a, b, _ in json.loads(state.meta(f"run:{run_id}:pending") or "[]")]
    finally:
        state.close()


def _withdraw(settings: Settings, sub: str, ses: str, why: str, rows: list[Any]) -> None:
    """Take a session the run-level gate flagged out of the dataset; its files are quarantined."""
    for base in (settings.bids_dir, settings.bids_dir / "sourcedata" / "dicom"):
        shutil.rmtree(base / session_dir(sub, ses), ignore_errors=True)
    derived.remove_session_derivatives(settings.bids_dir, sub, ses)
    reason = f"{WITHHELD}: {why}"
    for i, row in enumerate(rows):
        if row[3] == sub and row[4] == ses:
            rows[i] = (row[0], QUARANTINED, reason, sub, ses, row[5])


def _prune_subjects(bids: Path) -> None:
    """A subject left with no session (all withheld or withdrawn) leaves the dataset: an
    empty subject folder is a participant the dataset does not list."""
    for base in (bids, bids / "sourcedata" / "dicom"):
        for folder in sorted(base.glob("sub-*")) if base.is_dir() else []:
            if folder.is_dir() and not any(folder.glob("ses-*")):
                shutil.rmtree(folder)


def _apply_risk(settings: Settings, run_id: str, risk_path: Path | None) -> dict[str, Any] | None:
    """Write the risk step's remedies into the release, and its public summary and pictures."""
    if risk_path is None:
        return None
    from passerelle.risk.release import apply_to_release, public_summary

    result = json.loads(risk_path.read_text())
    counts = apply_to_release(settings, result, run_id)
    public = {**public_summary(result), "files_changed": counts}
    write_json(settings.reports_dir / "risk.json", public)
    pictures = risk_path.with_suffix("")
    for png in sorted(pictures.glob("*.png")) if pictures.is_dir() else []:
        dst = settings.reports_dir / "risk" / png.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.read_bytes() != png.read_bytes():
            shutil.copyfile(png, dst)
    return public


def _relevel(settings: Settings, state: State, pending: list[tuple[str, str]]) -> int:
    """A new release level reaches the sessions already published, not only this run's.

    Only sessions present in the dataset are republished: one the run-level gate withdrew
    stays out. Their derivatives are not recomputed, only put back at the new level.
    """
    before = state.meta("release_level")
    if before in (None, settings.raw["derivatives"]["release"]):
        return 0
    due = set(pending)
    again = [
        (row[0], row[1])
        for row in state.sessions()
        if (row[0], row[1]) not in due
        and (settings.bids_dir / session_dir(row[0], row[1])).is_dir()
        and result_path(settings.work, row[0], row[1]).is_file()
    ]
    for sub, ses in again:
        publish_session(settings, sub, ses)
        _publish_derivatives(settings, sub, ses)
    return len(again)


def finalize(
    settings: Settings, key: SecretKey, run_id: str, risk_path: Path | None = None
) -> dict[str, Any]:
    state = State(settings.work / "state.sqlite")
    try:
        pending = json.loads(state.meta(f"run:{run_id}:pending") or "[]")
        rows: list[Any] = []
        for sub, ses, _digest in pending:
            result = publish_session(settings, sub, ses)
            state.set_acq_time(sub, ses, result.get("acq_time"))
            for series in result["series"]:
                for rel in series["files"]:
                    rows.append(
                        (rel, series["state"], series["reason"], sub, ses, series["number"])
                    )
            # Files the pseudonymise step set aside (burned-in text, verify failures).
            for rel, f in result.get("files", {}).items():
                rows.append((rel, f["state"], f["reason"], sub, ses, None))
        sessions = [(sub, ses) for sub, ses, _ in pending]
        relevelled = _relevel(settings, state, sessions)
        derivative_summaries = [
            d for sub, ses in sessions if (d := _publish_derivatives(settings, sub, ses))
        ]
        per_session = session_watchlists(settings, sessions)
        watch = merged(per_session.values())
        by_subject = subject_watchlists(
            settings, per_session, [(row[0], row[4]) for row in state.sessions()]
        )
        for (sub, ses), hit in session_hits(settings, sessions, by_subject).items():
            _withdraw(settings, sub, ses, str(hit), rows)
        _prune_subjects(settings.bids_dir)
        state.set_dispositions(rows)
        present = [
            row
            for row in state.sessions()
            if (settings.bids_dir / session_dir(row[0], row[1])).is_dir()
        ]
        write_dataset_files(
            settings.bids_dir, settings.raw["dataset"], present, settings.deid["age_bands"]
        )
        derived.write_derivative_datasets(settings.bids_dir, settings.raw["dataset"])
        risk = _apply_risk(settings, run_id, risk_path)
        counts = _manifest(settings, key, state)
        summary = {
            "passerelle": __version__,
            "run_id": run_id,
            "sessions_processed": len(pending),
            "sessions_in_dataset": len(present),
            "subjects_in_dataset": len({p[0] for p in present}),
            "files": dict(sorted(counts.items())),
            "reasons": _reasons(state),
            "derivatives": derived.counts(derivative_summaries),
        }
        if risk is not None:
            summary["risk"] = {
                "k": risk["after"]["k"],
                "target_k": risk["target_k"],
                "verdict": risk["verdict"],
            }
        if relevelled:
            summary["sessions_republished"] = relevelled
        write_json(settings.reports_dir / "summary.json", summary)
        check_shared(settings, dataset_files(settings), watch)
        for sub, sub_watch in sorted(by_subject.items()):
            check_shared(settings, subject_files(settings, sub), sub_watch)
        # Recorded last: a run that dies before here republishes again next time.
        state.set_meta("release_level", settings.raw["derivatives"]["release"])
        return summary
    finally:
        state.close()


def _reasons(state: State) -> list[dict[str, Any]]:
    tally: Counter[tuple[str, str]] = Counter()
    for _, st, reason, *_rest, present in state.dispositions():
        if present and st != "converted":
            tally[(st or PENDING, reason or "")] += 1
    return [{"state": s, "reason": r, "files": n} for (s, r), n in sorted(tally.items())]


def close_run(settings: Settings, run_id: str) -> None:
    """Record the run's sessions as done, so the next plan leaves them out of the DAG."""
    state = State(settings.work / "state.sqlite")
    try:
        pending = json.loads(state.meta(f"run:{run_id}:pending") or "[]")
        state.mark_done((sub, ses, digest) for sub, ses, digest in pending)
        digest = state.meta(f"run:{run_id}:dataset_digest")
        if digest:
            state.set_meta("dataset_digest", digest)
    finally:
        state.close()
