"""Pseudonymise one session: a de-identified DICOM copy of every usable file, screened for
burned-in and free text, then proven clean by the PHI gate before anything downstream runs."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from passerelle import __version__
from passerelle.bids.paths import session_dir
from passerelle.config import Settings
from passerelle.deid import burnedin, freetext
from passerelle.deid.apply import Context, Identifiers, dataset_bytes, pseudonymise
from passerelle.deid.gate import Watchlist, collect, scan_dataset, scan_text, scan_tree
from passerelle.deid.profile import Options, Profile, load_profile
from passerelle.deid.verify import noncompliance
from passerelle.dicom.reader import read_dataset, read_identifying_part
from passerelle.fsutil import atomic_write_bytes, canonical_json, write_json, write_text
from passerelle.keys import SecretKey
from passerelle.plan import QUARANTINED

MAX_BOXES_LISTED = 5


def options_from(deid: dict[str, Any]) -> Options:
    bands, shift = deid["age_bands"], deid["date_shift_days"]
    return Options(
        **deid["options"],
        age_band_width=bands["width"],
        age_band_bottom=bands["bottom"],
        age_band_top=bands["top"],
        date_shift_min_days=shift["min"],
        date_shift_max_days=shift["max"],
    )


def source_watchlist(spec: dict[str, Any]) -> Watchlist:
    """Identifying values of every source header of the session (kept in memory only)."""
    inbox = Path(spec["inbox"])
    watch = Watchlist()
    for series in spec["series"]:
        for rel, *_ in series["files"]:
            try:
                collect(read_identifying_part(inbox / rel), watch)
            except Exception:
                continue
    return watch


@dataclass
class FileOutcome:
    pseudo: str | None
    state: str | None = None  # None: follows its series; else source_only/quarantined
    reason: str | None = None


@dataclass
class SeriesOutcome:
    files: dict[str, FileOutcome] = field(default_factory=dict)
    acq_time: str | None = None


def _iso(ds: Dataset, *pairs: tuple[str, str]) -> str | None:
    """First available date+time as ISO 8601, from an already shifted dataset."""
    dt = str(ds.get("AcquisitionDateTime", "") or "")
    if len(dt) >= 14:
        return f"{dt[:4]}-{dt[4:6]}-{dt[6:8]}T{dt[8:10]}:{dt[10:12]}:{dt[12:14]}"
    for d_kw, t_kw in pairs:
        d, t = str(ds.get(d_kw, "") or ""), str(ds.get(t_kw, "") or "").replace(":", "")
        if len(d) == 8:
            t = (t.split(".")[0] + "000000")[:6]
            return f"{d[:4]}-{d[4:6]}-{d[6:8]}T{t[:2]}:{t[2:4]}:{t[4:6]}"
    return None


def _burned_in(ds: Dataset, attrs: dict[str, Any], ocr: bool) -> str | None:
    """Why this file must be set aside for text in its pixels, or None."""
    reason = burnedin.risk_reason(attrs)
    if reason is None:
        return None
    if attrs.get("ObjectClass") == "pdf":
        return "encapsulated PDF: its text is the object and cannot be proven clean"
    if "PixelData" not in ds:
        return None  # nothing to read; its text fields go through the free-text screen
    if not ocr or not burnedin.ocr_available():
        return f"at risk of burned-in text ({reason}) and OCR is unavailable"
    try:
        boxes = burnedin.find_text(ds)
    except Exception as exc:
        return f"at risk of burned-in text ({reason}); pixels unreadable ({type(exc).__name__})"
    if not boxes:
        return None
    where = "; ".join(str(b) for b in boxes[:MAX_BOXES_LISTED])
    more = f" and {len(boxes) - MAX_BOXES_LISTED} more" if len(boxes) > MAX_BOXES_LISTED else ""
    return f"burned-in text: {len(boxes)} word(s) at {where}{more}"


def _series_dir(index: int, number: Any) -> str:
    return f"{index:03d}-{number if number is not None else 'x'}"


@dataclass(frozen=True)
class _Job:
    """What every worker needs; the watchlist travels in memory, never to disk."""

    key: SecretKey
    options: Options
    verify: bool
    ocr: bool
    watch: Watchlist
    inbox: Path
    out_dir: Path
    base: Path
    known: Identifiers  # the watchlist as the pseudonymiser's cleaners take it


@dataclass
class _Done:
    rel: str
    outcome: FileOutcome
    audit: dict[str, Any] | None = None
    hits: list[str] = field(default_factory=list)
    acq_time: str | None = None
    study_time: str | None = None


_JOB: _Job | None = None


def _init(job: _Job) -> None:
    global _JOB
    _JOB = job


def _one_file(item: tuple[str, str, int, dict[str, Any]]) -> _Done:
    """Read, screen, pseudonymise, gate and write one file (runs in a worker process)."""
    rel, folder, n, attrs = item
    job = _JOB
    assert job is not None
    try:
        ds = read_dataset(job.inbox / rel)
    except Exception as exc:
        return _Done(rel, FileOutcome(None, QUARANTINED, f"unreadable ({type(exc).__name__})"))
    if reason := _burned_in(ds, attrs, job.ocr):
        return _Done(rel, FileOutcome(None, QUARANTINED, reason))
    profile = load_profile(job.options)
    if job.verify and (problems := noncompliance(ds, profile)):
        shown = ", ".join(problems[:8]) + (" ..." if len(problems) > 8 else "")
        reason = f"verify: not pseudonymised per profile ({shown})"
        return _Done(rel, FileOutcome(None, QUARANTINED, reason))
    # Verified files are pseudonymised too: the archive keys every object with its own
    # secret, whatever pseudonyms the sender used.
    ctx = Context.for_dataset(job.key, ds, profile, job.watch.raw_values())
    result = pseudonymise(ds, ctx, job.known)
    for tag, keyword in freetext.screen(ds, job.watch):
        result.record(tag, keyword, "X")
    audit = result.to_dict()
    target = job.base / folder / f"{n:05d}.dcm"
    pseudo_rel = target.relative_to(job.out_dir).as_posix()
    # The gate reads the dataset exactly as it is about to be written.
    hits = [str(h) for h in scan_dataset(ds, pseudo_rel, job.watch)]
    hits += [f"{pseudo_rel}: path ({kind})" for kind in scan_text(pseudo_rel, job.watch)]
    atomic_write_bytes(target, dataset_bytes(ds))
    pairs = (("AcquisitionDate", "AcquisitionTime"), ("SeriesDate", "SeriesTime"))
    return _Done(
        rel,
        FileOutcome(pseudo_rel),
        audit,
        hits,
        _iso(ds, *pairs, ("ContentDate", "ContentTime")),
        _iso(ds, ("StudyDate", "StudyTime")),
    )


def pseudonymise_session(
    spec_file: Path,
    settings: Settings,
    key: SecretKey,
    out_dir: Path,
    result_file: Path,
    workers: int = 1,
) -> dict[str, Any]:
    spec = json.loads(spec_file.read_text())
    sub, ses = spec["subject"], spec["session"]
    deid = settings.deid
    options = options_from(deid)
    profile: Profile = load_profile(options)
    verify = deid["mode"] == "verify"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    base = out_dir / "sourcedata" / "dicom" / session_dir(sub, ses)
    base.mkdir(parents=True)
    watch = source_watchlist(spec)
    known = Identifiers(
        frozenset(watch.raw_names), frozenset(watch.raw_ids), frozenset(watch.raw_texts),
        frozenset(watch.dates),
    )  # fmt: skip
    job = _Job(
        key, options, verify, deid["burned_in"]["ocr"], watch, Path(spec["inbox"]), out_dir, base,
        known,
    )  # fmt: skip
    items = []
    for index, series in enumerate(spec["series"]):
        folder = _series_dir(index, series.get("number"))
        attrs = series.get("attrs") or {"ObjectClass": series.get("object_class")}
        for n, (rel, *_rest) in enumerate(series["files"], start=1):
            items.append((rel, folder, n, attrs))
    if workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(job,)) as pool:
            done = list(pool.map(_one_file, items, chunksize=4))
    else:
        _init(job)
        done = [_one_file(item) for item in items]
    by_rel = {d.rel: d for d in done}
    audits: dict[str, list[dict[str, Any]]] = {}
    outcomes: list[SeriesOutcome] = []
    for index, series in enumerate(spec["series"]):
        folder = _series_dir(index, series.get("number"))
        outcome = SeriesOutcome()
        for rel, *_rest in series["files"]:
            d = by_rel[rel]
            outcome.files[rel] = d.outcome
            outcome.acq_time = outcome.acq_time or d.acq_time
            if d.audit is not None:
                audits.setdefault(folder, []).append(d.audit)
        outcomes.append(outcome)
    audit_file = base / f"sub-{sub}_ses-{ses}_desc-deid_audit.json"
    write_json(audit_file, _audit_summary(profile, verify, audits))
    hits = [h for d in done for h in d.hits]
    written = [p for p in sorted(out_dir.rglob("*")) if p.is_dir() or p == audit_file]
    hits += [str(h) for h in scan_tree(out_dir, job.watch, written)]
    result = {
        "subject": sub,
        "session": ses,
        "acq_time": next((d.study_time for d in done if d.study_time), None),
        "withheld": hits,
        "series": [
            {
                "acq_time": o.acq_time,
                "files": {
                    rel: {"pseudo": f.pseudo, "state": f.state, "reason": f.reason}
                    for rel, f in o.files.items()
                },
            }
            for o in outcomes
        ],
    }
    write_text(result_file, canonical_json(result))
    return result


def _audit_summary(
    profile: Profile, verify: bool, audits: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Per series: which attributes were removed, replaced or kept (tag and action only)."""
    series = {}
    for folder, items in sorted(audits.items()):
        merged: dict[tuple[str, str, str], int] = {}
        for item in items:
            for e in item["entries"]:
                k = (e["tag"], e["keyword"], e["action"])
                merged[k] = merged.get(k, 0) + e["count"]
        series[folder] = [
            {"tag": t, "keyword": kw, "action": a, "elements": n}
            for (t, kw, a), n in sorted(merged.items())
        ]
    return {
        "profile": "DICOM PS3.15 Annex E Table E.1-1",
        "edition": profile.edition,
        "options": list(profile.options.enabled()),
        "mode": "verify" if verify else "enforce",
        "software": {"passerelle": __version__, "pydicom": pydicom.__version__},
        "series": series,
    }
