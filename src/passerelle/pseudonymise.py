"""Pseudonymise one session: a de-identified DICOM copy of every usable file, screened for
burned-in and free text, then proven clean by the PHI gate before anything downstream runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from passerelle import __version__
from passerelle.bids.paths import session_dir
from passerelle.config import Settings
from passerelle.deid import burnedin, freetext
from passerelle.deid.apply import Context, dataset_bytes, pseudonymise
from passerelle.deid.gate import Watchlist, collect, scan_tree
from passerelle.deid.profile import Options, Profile, load_profile
from passerelle.deid.verify import noncompliance
from passerelle.dicom.reader import read_dataset
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
                collect(read_dataset(inbox / rel, headers_only=True), watch)
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


def pseudonymise_session(
    spec_file: Path, settings: Settings, key: SecretKey, out_dir: Path, result_file: Path
) -> dict[str, Any]:
    spec = json.loads(spec_file.read_text())
    sub, ses, inbox = spec["subject"], spec["session"], Path(spec["inbox"])
    deid = settings.deid
    profile: Profile = load_profile(options_from(deid))
    verify = deid["mode"] == "verify"
    ocr = deid["burned_in"]["ocr"]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    base = out_dir / "sourcedata" / "dicom" / session_dir(sub, ses)
    base.mkdir(parents=True)
    watch = source_watchlist(spec)
    identifiers = watch.raw_values()
    audits: dict[str, Any] = {}
    outcomes: list[SeriesOutcome] = []
    session_time = None
    for index, series in enumerate(spec["series"]):
        outcome = SeriesOutcome()
        outcomes.append(outcome)
        folder = _series_dir(index, series.get("number"))
        attrs = series.get("attrs") or {"ObjectClass": series.get("object_class")}
        for n, (rel, *_rest) in enumerate(series["files"], start=1):
            try:
                ds = read_dataset(inbox / rel)
            except Exception as exc:
                outcome.files[rel] = FileOutcome(
                    None, QUARANTINED, f"unreadable ({type(exc).__name__})"
                )
                continue
            if reason := _burned_in(ds, attrs, ocr):
                outcome.files[rel] = FileOutcome(None, QUARANTINED, reason)
                continue
            if verify:
                problems = noncompliance(ds, profile)
                if problems:
                    shown = ", ".join(problems[:8]) + (" ..." if len(problems) > 8 else "")
                    outcome.files[rel] = FileOutcome(
                        None, QUARANTINED, f"verify: not pseudonymised per profile ({shown})"
                    )
                    continue
                audit = None
            else:
                ctx = Context.for_dataset(key, ds, profile, identifiers)
                audit = pseudonymise(ds, ctx)
                for tag, keyword in freetext.screen(ds, watch):
                    audit.record(tag, keyword, "X")
                audits.setdefault(folder, []).append(audit.to_dict())
            pseudo_rel = f"{folder}/{n:05d}.dcm"
            atomic_write_bytes(base / pseudo_rel, dataset_bytes(ds))
            pseudo_rel = (base / pseudo_rel).relative_to(out_dir).as_posix()
            outcome.files[rel] = FileOutcome(pseudo_rel)
            if outcome.acq_time is None:
                outcome.acq_time = _iso(
                    ds, ("AcquisitionDate", "AcquisitionTime"), ("SeriesDate", "SeriesTime"),
                    ("ContentDate", "ContentTime"),
                )  # fmt: skip
            if session_time is None:
                session_time = _iso(ds, ("StudyDate", "StudyTime"))
    write_json(
        base / f"sub-{sub}_ses-{ses}_desc-deid_audit.json",
        _audit_summary(profile, verify, audits),
    )
    hits = scan_tree(out_dir, watch)
    result = {
        "subject": sub,
        "session": ses,
        "acq_time": session_time,
        "withheld": [str(h) for h in hits],
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
