"""The risk step of a run, and the remedies finalize applies to the released files.

`evaluate` measures the dataset as it will be released (sessions already published plus this
run's), under the remedies the config declares, and refuses (fails closed) below target k
unless the config accepts it with a stated reason. `apply_to_release` then writes the same
remedies into participants.tsv, the JSON sidecars and the pseudonymised DICOM headers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom

from passerelle.bids.paths import session_dir
from passerelle.config import Settings
from passerelle.errors import PasserelleError
from passerelle.fsutil import atomic_write_bytes, canonical_json, write_if_changed, write_tsv
from passerelle.risk.metrics import Record, assess
from passerelle.risk.quasi import (
    HEADER_FIELDS,
    MISSING,
    header_facts,
    read_tsv,
    sensitive_values,
    site_of,
    subject_records,
)
from passerelle.risk.remedies import (
    OTHER,
    REMOVED,
    Level,
    Remedy,
    apply_remedy,
    check_config,
    hierarchies,
    is_suppressed,
)
from passerelle.state import State


class ReleaseRefused(PasserelleError):
    """The release is below target k and no reason to accept it is configured."""


def risk_config(settings: Settings) -> tuple[dict[str, Any], dict[str, list[Level]]]:
    """The risk section (checked when the config was loaded) with its hierarchies."""
    cfg = settings.raw["risk"]
    check_config(cfg, settings.deid["age_bands"], "config")
    return cfg, hierarchies(cfg, settings.deid["age_bands"])


def quasi_identifiers(cfg: dict[str, Any]) -> list[str]:
    # Without configured sites the release says nothing about them: not a quasi-identifier.
    return [q for q in cfg["quasi_identifiers"] if q != "site" or cfg["sites"]]


def _pending(state: State, run_id: str | None) -> set[tuple[str, str]]:
    if run_id is None:
        return set()
    return {(a, b) for a, b, _ in json.loads(state.meta(f"run:{run_id}:pending") or "[]")}


def session_facts(settings: Settings, run_id: str | None) -> list[dict[str, Any]]:
    """Facts of every session the release will hold (published, or staged in this run)."""
    cfg = settings.raw["risk"]
    state = State(settings.work / "state.sqlite")
    try:
        pending = _pending(state, run_id)
        rows = state.sessions()
    finally:
        state.close()
    columns = [s["column"] for s in cfg["sensitive"]]
    sensitive = sensitive_values(settings.bids_dir, columns) if columns else {}
    facts = []
    for sub, ses, sex, age, acq_time in rows:
        where = session_dir(sub, ses)
        staged = settings.work / "staging" / f"sub-{sub}_ses-{ses}" / where
        published = settings.bids_dir / where
        if (sub, ses) in pending:
            if not staged.is_dir():
                continue  # nothing of it will be published
            result = settings.work / "results" / f"sub-{sub}_ses-{ses}.json"
            if result.is_file():
                acq_time = json.loads(result.read_text()).get("acq_time") or acq_time
            folder = staged
        elif published.is_dir():
            # Staging keeps what conversion wrote; the published copy may carry remedies.
            folder = staged if staged.is_dir() else published
        else:
            continue
        spec = settings.work / "specs" / f"sub-{sub}" / f"ses-{ses}.json"
        paths = (
            [f[0] for s in json.loads(spec.read_text())["series"] for f in s["files"]]
            if spec.is_file() and cfg["sites"]
            else []
        )
        facts.append(
            {
                "subject": sub,
                "session": ses,
                "sex": (sex or "").strip().upper() or None,
                "age": age,
                "acq_year": str(acq_time)[:4] if acq_time else None,
                "site": site_of(paths, cfg["sites"]),
                "sensitive": {c: sensitive.get(sub, {}).get(c, MISSING) for c in columns},
                **header_facts(folder),
            }
        )
    return facts


def measure(
    raw: Sequence[Record],
    cfg: dict[str, Any],
    hier: dict[str, list[Level]],
) -> dict[str, Any]:
    """Risk before and after the configured remedies, as one JSON-ready mapping."""
    qis = quasi_identifiers(cfg)
    target = cfg["target_k"]
    sens = [s["column"] for s in cfg["sensitive"]]
    numeric = [s["column"] for s in cfg["sensitive"] if s.get("numeric")]
    remedy = Remedy(dict(cfg["remedies"]), suppress=cfg["suppress"])
    before = apply_remedy(raw, qis, hier, Remedy(), target, 0.0)
    after = apply_remedy(raw, qis, hier, remedy, target, cfg["suppression_limit"])
    # Suppressed records single no one out (their quasi-identifiers match anybody): as in ARX
    # they stay out of the classes, and are counted apart.
    kept = [r for r in after.records if not is_suppressed(r, qis)]
    risk_after = assess(kept, qis, target, sens, numeric)
    accepted = cfg["accept"]["reason"] if cfg["accept"] else None
    return {
        "quasi_identifiers": qis,
        "target_k": target,
        "before": assess(before.records, qis, target, sens, numeric).as_dict(),
        "after": risk_after.as_dict(),
        "remedy": {
            "levels": {q: remedy.levels.get(q, 0) for q in qis},
            "described": remedy.describe(hier, qis),
            "suppressed_records": len(after.suppressed),
            "values_changed": after.changed,
        },
        "released": after.records,
        "suppressed": after.suppressed,
        "accepted_below_k": accepted if not risk_after.meets_target else None,
        "verdict": "meets target"
        if risk_after.meets_target
        else ("accepted below target" if accepted else "refused"),
    }


def evaluate(settings: Settings, run_id: str | None) -> dict[str, Any]:
    cfg, hier = risk_config(settings)
    return measure(subject_records(session_facts(settings, run_id)), cfg, hier)


def refusal(result: dict[str, Any]) -> str | None:
    """The one line that stops the release, or None when it may go ahead."""
    if result["verdict"] != "refused":
        return None
    after = result["after"]
    return (
        f"release refused: k={after['k']} is below the target k={result['target_k']} "
        f"({after['records_below_k']} of {after['records']} subjects in classes below k); "
        "see `passerelle risk --plan` for remedies, or set risk.accept.reason"
    )


def public_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the research-side report may show: aggregates only, no per-subject row."""
    return {k: v for k, v in result.items() if k not in ("released", "suppressed")}


# ---- applying the remedies to the released files --------------------------------------------

_DICOM_HEADER = {a: kw for a, (_keys, kw) in HEADER_FIELDS.items()}


def _sidecar_edit(data: dict[str, Any], record: Record, qis: Sequence[str]) -> dict[str, Any]:
    out = dict(data)
    for attr, (keys, _kw) in HEADER_FIELDS.items():
        if attr not in qis or record[attr] not in (REMOVED, OTHER):
            continue
        for key in keys:
            if key in out:
                if record[attr] == REMOVED:
                    del out[key]
                else:
                    out[key] = OTHER
    return out


def _age_value(band: Any) -> str | None:
    if band in (None, REMOVED, MISSING):
        return None
    low = str(band).split("-")[0].rstrip("+")
    return f"{int(low):03d}Y"


def _dicom_edited(src: Path, record: Record, qis: Sequence[str]) -> bytes | None:
    """The file with the remedies in its header, or None when they change nothing in it."""
    try:
        ds = pydicom.dcmread(src)
    except (pydicom.errors.InvalidDicomError, OSError):
        return None
    changed = False
    for attr, kw in _DICOM_HEADER.items():
        if attr in qis and record[attr] in (REMOVED, OTHER) and kw in ds:
            if record[attr] == REMOVED:
                del ds[kw]
            else:
                setattr(ds, kw, OTHER)
            changed = True
    if "sex" in qis and record["sex"] == REMOVED and ds.get("PatientSex"):
        ds.PatientSex = ""
        changed = True
    if "age" in qis and "PatientAge" in ds:
        age = _age_value(record["age"])
        if age is None:
            del ds["PatientAge"]
            changed = True
        elif ds.PatientAge != age:
            ds.PatientAge = age
            changed = True
    if not changed:
        return None
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _dicom_edit(path: Path, record: Record, qis: Sequence[str]) -> bool:
    """Apply the remedies to one file in place."""
    data = _dicom_edited(path, record, qis)
    if data is not None:
        atomic_write_bytes(path, data)
    return data is not None


def _published_files(settings: Settings, sub: str) -> list[tuple[Path, Path]]:
    """(published file, what conversion or pseudonymisation wrote) of a subject's sidecars
    and DICOM; the published copy is its own source when the work area no longer has it."""
    bids, work = settings.bids_dir, settings.work
    out = []
    for ses_dir in sorted((bids / f"sub-{sub}").glob("ses-*")):
        name = f"sub-{sub}_{ses_dir.name}"
        where = Path(f"sub-{sub}") / ses_dir.name
        staged = work / "staging" / name / where
        for pub in sorted(ses_dir.rglob("*.json")):
            src = staged / pub.relative_to(ses_dir)
            out.append((pub, src if src.is_file() else pub))
        pseudo = work / "pseudo" / name / "sourcedata" / "dicom" / where
        published = bids / "sourcedata" / "dicom" / where
        for pub in sorted(p for p in published.rglob("*") if p.is_file()):
            src = pseudo / pub.relative_to(published)
            out.append((pub, src if src.is_file() else pub))
    return out


def _remedy_files(
    settings: Settings, sub: str, record: Record, qis: Sequence[str]
) -> dict[str, int]:
    """Rewrite a subject's published files from their sources with the remedies: a remedy
    lowered since the last release is undone as surely as a new one is applied."""
    counts = {"sidecars": 0, "dicom": 0}
    for pub, src in _published_files(settings, sub):
        if pub.suffix == ".json":
            data = json.loads(src.read_text())
            edited = _sidecar_edit(data, record, qis)
            text = canonical_json(edited).encode() if edited != data else src.read_bytes()
            counts["sidecars"] += write_if_changed(pub, text)
        else:
            data = _dicom_edited(src, record, qis)
            counts["dicom"] += write_if_changed(pub, src.read_bytes() if data is None else data)
    return counts


def apply_to_release(settings: Settings, result: dict[str, Any], run_id: str) -> dict[str, int]:
    """Write the remedies into the release; returns files changed per kind."""
    cfg = settings.raw["risk"]
    qis = result["quasi_identifiers"]
    bids = settings.bids_dir
    released = {r["subject"]: r for r in result["released"]}
    counts = {"participants": 0, "sidecars": 0, "dicom": 0}
    rows = read_tsv(bids / "participants.tsv")
    if rows:
        header = list(rows[0])
        if cfg["sites"] and "site" in qis and "site" not in header:
            header.append("site")
        out = []
        for row in rows:
            r = released.get(row["participant_id"].removeprefix("sub-"))
            if r is not None:
                if "age" in qis:
                    row["age_band"] = _public(r["age"])
                if "sex" in qis:
                    row["sex"] = _public(r["sex"])
                if "site" in header:
                    row["site"] = _public(r["site"])
            out.append([row.get(h) for h in header])
        before = (bids / "participants.tsv").read_bytes()
        write_tsv(bids / "participants.tsv", header, out)
        counts["participants"] = int(before != (bids / "participants.tsv").read_bytes())
        _describe_participants(bids, result, "site" in header)
    # Only subjects new in this run or whose released values moved since the last release.
    applied_path = settings.work / "risk" / "applied.json"
    previous = json.loads(applied_path.read_text()) if applied_path.is_file() else {}
    fresh = {sub for sub, _ses in _pending_of(settings, run_id)}
    for sub, record in released.items():
        if sub not in fresh and previous.get(sub) == record:
            continue
        for kind, n in _remedy_files(settings, sub, record, qis).items():
            counts[kind] += n
    write_if_changed(applied_path, canonical_json(released).encode())
    _write_audit(settings, result, run_id, counts)
    return counts


def _pending_of(settings: Settings, run_id: str) -> set[tuple[str, str]]:
    state = State(settings.work / "state.sqlite")
    try:
        return _pending(state, run_id)
    finally:
        state.close()


def _public(value: Any) -> Any:
    return None if value in (REMOVED, MISSING) else value


def _describe_participants(bids: Path, result: dict[str, Any], site: bool) -> None:
    path = bids / "participants.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    age_level = next((d for d in result["remedy"]["described"] if d.startswith("age:")), None)
    if age_level and "age_band" in data:
        data["age_band"]["Description"] = (
            f"age in years at the first session, {age_level.split(': ', 1)[1]}"
        )
    if site:
        data["site"] = {"Description": "acquisition site, or its region when generalised"}
    write_if_changed(path, canonical_json(data).encode())


def _write_audit(
    settings: Settings, result: dict[str, Any], run_id: str, counts: dict[str, int]
) -> None:
    """Every remedy, in the public report (aggregates) and the private work area (subjects)."""
    rows = [
        [
            q,
            result["remedy"]["levels"][q],
            line.split(": ", 1)[1],
            result["remedy"]["values_changed"][q],
        ]
        for q, line in zip(result["quasi_identifiers"], result["remedy"]["described"], strict=False)
    ]
    rows.append(
        [
            "(local suppression)",
            "",
            "on" if settings.raw["risk"]["suppress"] else "off",
            result["remedy"]["suppressed_records"],
        ]
    )
    if result["accepted_below_k"]:
        rows.append(["(accepted below k)", "", result["accepted_below_k"], result["after"]["k"]])
    write_tsv(
        settings.reports_dir / "risk_audit.tsv",
        ["attribute", "level", "remedy", "records_changed"],
        rows,
    )
    private = {
        "run_id": run_id,
        "suppressed_subjects": result["suppressed"],
        "files_changed": counts,
        "verdict": result["verdict"],
        "accepted_below_k": result["accepted_below_k"],
    }
    write_if_changed(settings.work / "risk" / "audit.json", canonical_json(private).encode())
