"""Decide, from the indexed inbox, what each file becomes and which sessions need work.

Runs in the Snakemake main process before the DAG is built. Its cost is a directory walk
plus header reads of new files only; the DAG then holds only sessions whose inputs changed.
Only the sessions touched by new, changed or removed files are regrouped and re-derived
(their cached records loaded by session label); a change of the rules that shape every spec
(bids_map, convert settings, inbox, version) re-derives them all.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passerelle import __version__
from passerelle.bids.mapping import map_series, match_fields
from passerelle.config import Settings
from passerelle.dicom.classify import is_derived, is_localizer
from passerelle.dicom.index import Indexed, scan_changes, update_index
from passerelle.errors import PasserelleError
from passerelle.fsutil import canonical_json, content_digest, write_if_changed
from passerelle.keys import SecretKey
from passerelle.state import State

CONVERTED, SOURCE_ONLY, QUARANTINED, PENDING = "converted", "source_only", "quarantined", "pending"
RISK_ATTRS = ("ObjectClass", "Modality", "ImageType", "SeriesDescription", "BurnedInAnnotation")


@dataclass
class Plan:
    run_id: str | None
    pending: list[tuple[str, str]]
    counts: dict[str, int] = field(default_factory=dict)
    files_read: int = 0


@dataclass
class _Series:
    subject: str
    session: str
    patient: str
    study: str
    files: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    patients: set[str] = field(default_factory=set)


def spec_path(work: Path, sub: str, ses: str) -> Path:
    return work / "specs" / f"sub-{sub}" / f"ses-{ses}.json"


def _series_order(s: _Series) -> tuple[int, str]:
    number = s.attrs.get("SeriesNumber")
    return (number if isinstance(number, int) else 1 << 30, s.files[0])


def _resolve_duplicates(
    inbox: Path, records: dict[str, Indexed], disp: dict[str, tuple[str, str]]
) -> None:
    """Same SOPInstanceUID twice: identical copies are kept once, conflicting ones set aside."""
    by_sop: dict[str, list[str]] = defaultdict(list)
    for rel, item in records.items():
        if item.record.get("sop"):
            by_sop[item.record["sop"]].append(rel)
    for paths in by_sop.values():
        if len(paths) < 2:
            continue
        paths.sort()
        digests = {p: content_digest(inbox / p) for p in paths}
        if len(set(digests.values())) == 1:
            for p in paths[1:]:
                disp[p] = (SOURCE_ONLY, "identical duplicate of another file in the delivery")
        else:
            for p in paths:
                disp[p] = (QUARANTINED, "duplicate SOPInstanceUID with different content")


def _group(
    records: dict[str, Indexed], disp: dict[str, tuple[str, str]]
) -> dict[tuple[str, str], list[_Series]]:
    series: dict[str, _Series] = {}
    for rel in sorted(records):
        rec = records[rel].record
        if rel in disp:
            continue
        if "unusable" in rec:
            disp[rel] = (QUARANTINED, rec["unusable"])
            continue
        if rec["object_class"] == "directory":
            disp[rel] = (SOURCE_ONLY, "DICOMDIR media index (files are indexed directly)")
            continue
        s = series.setdefault(
            rec["series"], _Series(rec["subject"], rec["session"], rec["patient"], rec["study"])
        )
        s.files.append(rel)
        s.patients.add(rec["patient"])
        if not s.attrs:
            s.attrs = rec["attrs"]
    studies: dict[str, set[str]] = defaultdict(set)
    for s in series.values():
        studies[s.study] |= s.patients
    sessions: dict[tuple[str, str], list[_Series]] = defaultdict(list)
    for s in series.values():
        if len(s.patients) > 1:
            reason = "mixed patients in one series"
        elif len(studies[s.study]) > 1:
            reason = "mixed patients in one study"
        else:
            sessions[(s.subject, s.session)].append(s)
            continue
        for rel in s.files:
            disp[rel] = (QUARANTINED, reason)
    return sessions


def _check_label_collisions(sessions: dict[tuple[str, str], list[_Series]]) -> None:
    owners: dict[str, str] = {}
    for (sub, _), group in sessions.items():
        for s in group:
            if owners.setdefault(sub, s.patient) != s.patient:
                raise PasserelleError(
                    f"subject label collision on sub-{sub}: two patients share a label; "
                    "report this (it is a 1 in 2^48 event)"
                )


def _disposition(s: _Series, settings: Settings) -> tuple[str, str, Any]:
    cfg = settings.convert
    attrs = s.attrs
    image_type = [str(t) for t in attrs.get("ImageType") or []]
    cls = attrs.get("ObjectClass")
    if cls != "image":
        return SOURCE_ONLY, f"non-image object ({cls})", None
    descriptions = " ".join(str(attrs.get(k) or "") for k in ("SeriesDescription", "ProtocolName"))
    if is_localizer(image_type) or re.search(cfg["localizer_pattern"], descriptions):
        return SOURCE_ONLY, "localizer", None
    if cfg["skip_derived"] and is_derived(image_type):
        return SOURCE_ONLY, "derived image (reconstructed by the scanner from other series)", None
    target = map_series(settings.bids_map["rules"], match_fields(attrs, len(s.files)))
    if target is None:
        return SOURCE_ONLY, "no bids_map rule matched", None
    return PENDING, f"rule {target.rule}", target


def _assign_runs(entries: list[dict[str, Any]]) -> None:
    """Series that would share a name get run-1..n in SeriesNumber order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        t = e["target"]
        if t and not t["entities"].get("run"):
            ents = {k: v for k, v in t["entities"].items() if k != "run"}
            groups[json.dumps([t["datatype"], t["suffix"], ents], sort_keys=True)].append(e)
    for members in groups.values():
        if len(members) > 1:
            for i, e in enumerate(members, start=1):
                e["target"]["entities"]["run"] = str(i)


def _spec(
    sub: str, ses: str, group: list[_Series], settings: Settings, records: dict[str, Indexed]
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    entries: list[dict[str, Any]] = []
    file_disp: dict[str, tuple[str, str]] = {}
    for s in sorted(group, key=_series_order):
        state, reason, target = _disposition(s, settings)
        entries.append(
            {
                "number": s.attrs.get("SeriesNumber"),
                "object_class": s.attrs.get("ObjectClass"),
                # What the burned-in text screen looks at (kept in the private work area).
                "attrs": {k: s.attrs.get(k) for k in RISK_ATTRS if k in s.attrs},
                "action": "convert" if state == PENDING else state,
                "reason": reason,
                "target": None
                if target is None
                else {
                    "rule": target.rule,
                    "datatype": target.datatype,
                    "suffix": target.suffix,
                    "entities": dict(target.entities),
                    "echo_suffix": target.echo_suffix,
                    "intended_for": list(target.intended_for),
                    "task_name": target.task_name,
                },
                "files": [
                    [rel, records[rel].size, records[rel].mtime_ns] for rel in sorted(s.files)
                ],
            }
        )
        for rel in s.files:
            file_disp[rel] = (state, reason)
    _assign_runs(entries)
    first = group[0].attrs
    spec = {
        "passerelle": __version__,
        "subject": sub,
        "session": ses,
        "inbox": str(settings.inbox),
        "convert": {k: settings.convert[k] for k in ("compress",)},
        "derivatives": _derivation_settings(settings),
        "demographics": {"sex": first.get("PatientSex"), "age": first.get("Age")},
        "series": entries,
    }
    return spec, file_disp


# Derivatives settings that change no derived byte: job sizes, and the release level (a
# dataset-level choice that finalize applies, part of the dataset digest instead).
_NOT_DERIVATION = ("deface", "segment", "release")


def _derivation_settings(settings: Settings) -> dict[str, Any]:
    """What shapes a session's derivatives: a change re-derives every session."""
    section = settings.raw.get("derivatives") or {}
    out = {k: v for k, v in section.items() if k not in _NOT_DERIVATION}
    out["models"] = [
        {k: v for k, v in m.items() if k != "resources"} for m in section.get("models", [])
    ]
    return out


def _rules_digest(settings: Settings) -> str:
    """Everything besides the files that shapes a spec: when it changes, all are re-derived."""
    rules = {
        "bids_map": settings.bids_map,
        "convert": settings.convert,
        "derivatives": _derivation_settings(settings),
        "inbox": str(settings.inbox),
        "version": __version__,
    }
    return hashlib.sha256(canonical_json(rules).encode()).hexdigest()


def _changed_records(
    settings: Settings, key: SecretKey, state: State, workers: int
) -> tuple[dict[str, Indexed], int, set[str]]:
    """Records of every file of the sessions that new, changed or removed files touch."""
    changes = scan_changes(settings.inbox, key, state, workers)
    touched = set(changes.old_sessions)
    touched |= {i.record["session"] for i in changes.read.values() if i.record.get("session")}
    # A new copy of an already indexed instance makes its session's files part of the check.
    touched |= state.sessions_with_sops(
        i.record["sop"] for i in changes.read.values() if i.record.get("sop")
    )
    records = {
        rel: Indexed(size, mtime, rec)
        for rel, (size, mtime, rec) in state.records_in_sessions(touched).items()
    }
    records.update({r: i for r, i in changes.read.items() if not i.record.get("session")})
    return records, changes.n_read, touched


def _check_known_subjects(state: State, sessions: dict[tuple[str, str], list[_Series]]) -> None:
    """Label collisions against sessions planned before (not reloaded this time)."""
    for (sub, _), group in sessions.items():
        known = state.patients_of_subject(sub) - {s.patient for s in group}
        if known:
            raise PasserelleError(
                f"subject label collision on sub-{sub}: two patients share a label; "
                "report this (it is a 1 in 2^48 event)"
            )


def prepare(settings: Settings, key: SecretKey, workers: int = 2, full: bool = False) -> Plan:
    """full: re-derive every session (also done whenever the rules changed)."""
    state = State(settings.work / "state.sqlite")
    try:
        rules = _rules_digest(settings)
        full = full or state.meta("rules_digest") != rules
        touched: set[str] | None = None  # session labels re-examined; None: all of them
        if full:
            records, n_read = update_index(settings.inbox, key, state, workers)
        else:
            records, n_read, touched = _changed_records(settings, key, state, workers)
        disp: dict[str, tuple[str, str]] = {}
        _resolve_duplicates(settings.inbox, records, disp)
        sessions = _group(records, disp)
        _check_label_collisions(sessions)
        if not full:
            _check_known_subjects(state, sessions)
        loose = dict(disp)
        done = state.done_hashes()
        pending: list[tuple[str, str, str]] = []
        planned: list[tuple[str, str, str, str | None, int | None, int]] = []
        rows: list[tuple[str, str, str, str | None, str | None, int | None]] = []
        for (sub, ses), group in sorted(sessions.items()):
            spec, file_disp = _spec(sub, ses, group, settings, records)
            text = canonical_json(spec)
            digest = hashlib.sha256(text.encode()).hexdigest()
            if done.get((sub, ses)) != digest:
                number = {rel: s.attrs.get("SeriesNumber") for s in group for rel in s.files}
                for rel, (st, reason) in file_disp.items():
                    rows.append((rel, st, reason, sub, ses, number[rel]))
                write_if_changed(spec_path(settings.work, sub, ses), text.encode())
                demographics = spec["demographics"]
                n_files = sum(len(s.files) for s in group)
                planned.append(
                    (sub, ses, digest, demographics["sex"], demographics["age"], n_files)
                )
                pending.append((sub, ses, digest))
        state.upsert_sessions(planned)
        if touched is not None:
            # Planned by an earlier plan but not closed by a run yet (a run died): still due.
            pending += [u for u in state.unfinished() if u[1] not in touched]
            pending.sort()
        rows.extend((rel, st, reason, None, None, None) for rel, (st, reason) in loose.items())
        # "pending" dispositions become converted or quarantined when their session finishes.
        state.set_dispositions(rows)
        state.set_meta("rules_digest", rules)
        # Files outside every session, this plan's and earlier ones' alike.
        all_loose = [[p, [st, rs]] for p, st, rs in state.loose_dispositions()]
        dataset_digest = hashlib.sha256(
            canonical_json(
                {
                    "loose": all_loose,
                    "dataset": settings.raw["dataset"],
                    # A new risk policy is a new release: its remedies must reach the files.
                    "risk": settings.raw["risk"],
                    # So is a new release level: public must replace the raw anatomy.
                    "release": (settings.raw.get("derivatives") or {}).get("release"),
                    "version": __version__,
                }
            ).encode()
        ).hexdigest()
        counts = defaultdict(int)
        for _, st, *_ in rows:
            counts[st] += 1
        # A configured archive that does not exist yet gets the published dataset in one run.
        archive_missing = (
            settings.archive is not None
            and not (settings.archive / ".datalad" / "config").is_file()
        )
        if not pending and state.meta("dataset_digest") == dataset_digest and not archive_missing:
            return Plan(None, [], dict(counts), n_read)
        run_id = hashlib.sha256(
            canonical_json([pending, dataset_digest, archive_missing]).encode()
        ).hexdigest()[:16]
        state.set_meta(f"run:{run_id}:dataset_digest", dataset_digest)
        state.set_meta(f"run:{run_id}:pending", json.dumps(pending))
        return Plan(run_id, [(a, b) for a, b, _ in pending], dict(counts), n_read)
    finally:
        state.close()
