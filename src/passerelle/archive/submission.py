"""`passerelle reintegrate DIR`: outside work (a lab's segmentations, measurements) checked
rule by rule, then archived as a derivatives subdataset and entered in the register.

Every problem is one line ``<rule>: <file>: <what>``; nothing is archived unless there are
none. The archive's clear identities are not available here (they never leave the clinical
side), so the PHI screen looks for what an outside submission can carry: DICOM headers,
NIfTI header text and extensions, dates in clear, person-introducing words, identifier-like
numbers, and subject or session labels that are not the archive's pseudonyms.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from passerelle import __version__
from passerelle.archive import ledger, records
from passerelle.archive.layout import CHANGES, DERIVATIVES, LEDGER, REGISTER, subdatasets
from passerelle.archive.lock import archive_lock
from passerelle.archive.runstep import open_archive
from passerelle.archive.store import Change, commit_version, differs
from passerelle.archive.tools import git
from passerelle.config import Settings
from passerelle.deid.gate import dates_in
from passerelle.deid.text import person_word_hits

PRODUCERS = "producers.json"
TOP_FILES = {
    "dataset_description.json",
    PRODUCERS,
    "README",
    "README.md",
    "CHANGES",
    "LICENSE",
    "LICENSE.txt",
    ".bidsignore",
}
_LABEL = r"[A-Za-z0-9]+"
_NAME = re.compile(rf"^sub-{_LABEL}(?:_[a-z]+-{_LABEL})*_[A-Za-z0-9]+(?:\.[a-z0-9]+)+$")
_ENTITY = re.compile(rf"(?:^|_)(sub|ses)-({_LABEL})")
_URI = re.compile(r"^bids:([A-Za-z0-9._-]*):(.+)$")
_NUMBER_RUN = re.compile(r"(?<![\d.])\d{7,}(?![\d.])")  # IPP, accession or phone-like
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_NIFTI_TEXT = ("descrip", "aux_file", "intent_name", "db_name")
_TEXT_SUFFIXES = {".json", ".tsv", ".txt", ".md", ".csv", ".bval", ".bvec"}


@dataclass
class Submission:
    root: Path
    problems: list[str] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)
    producers: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    sessions: set[tuple[str, str]] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    known_subjects: set[str] = field(default_factory=set)  # the archive's subject labels

    def reject(self, rule: str, where: str, what: str) -> None:
        self.problems.append(f"{rule}: {where}: {what}")


def archive_paths(archive: Path) -> set[str]:
    paths = {p for p in git(archive, "ls-files", "-z").split("\0") if p}
    for rel in subdatasets(archive):
        paths |= {f"{rel}/{p}" for p in git(archive / rel, "ls-files", "-z").split("\0") if p}
    return paths


def _load_json(sub: Submission, rel: str) -> Any:
    try:
        return json.loads((sub.root / rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        sub.reject("layout", rel, f"not valid JSON ({type(exc).__name__})")
        return None


def _check_layout(sub: Submission) -> None:
    for path in sorted(sub.root.rglob("*")):
        rel = path.relative_to(sub.root).as_posix()
        if path.is_symlink():
            sub.reject("layout", rel, "symbolic link (submit the files themselves)")
            continue
        if not path.is_file():
            continue
        parts = rel.split("/")
        if len(parts) == 1:
            if rel not in TOP_FILES:
                sub.reject(
                    "layout",
                    rel,
                    f"unexpected file at the top (allowed: {', '.join(sorted(TOP_FILES))})",
                )
            continue
        sub.files.append(rel)
        if not parts[0].startswith("sub-"):
            sub.reject("layout", rel, "outside every sub-<label> folder")
            continue
        if len(parts) not in (3, 4) or (len(parts) == 4 and not parts[1].startswith("ses-")):
            sub.reject("layout", rel, "expected sub-<label>/[ses-<label>/]<datatype>/<file>")
            continue
        name = parts[-1]
        if not _NAME.match(name):
            sub.reject(
                "layout", rel, "file name is not a BIDS name (sub-<label>[_key-value]_suffix.ext)"
            )
            continue
        ents = dict(_ENTITY.findall(name))
        if f"sub-{ents.get('sub')}" != parts[0] or (
            len(parts) == 4 and f"ses-{ents.get('ses')}" != parts[1]
        ):
            sub.reject("layout", rel, "entities in the file name do not match its folders")
            continue
        sub.sessions.add((ents["sub"], ents.get("ses", "")))
    if not sub.files:
        sub.reject("layout", ".", "no data: expected sub-<label>/... files")


def _check_description(sub: Submission) -> None:
    rel = "dataset_description.json"
    if not (sub.root / rel).is_file():
        sub.reject("description", rel, "missing")
        return
    desc = _load_json(sub, rel)
    if not isinstance(desc, dict):
        return
    sub.description = desc
    for key in ("Name", "BIDSVersion"):
        if not desc.get(key):
            sub.reject("description", rel, f"{key} missing")
    if desc.get("DatasetType") != "derivative":
        sub.reject("description", rel, 'DatasetType must be "derivative"')
    gen = desc.get("GeneratedBy")
    if (
        not isinstance(gen, list)
        or not gen
        or not all(isinstance(g, dict) and g.get("Name") for g in gen)
    ):
        sub.reject("description", rel, "GeneratedBy missing (a list of {Name, Version, ...})")


def _check_licence(sub: Submission) -> None:
    if not sub.description.get("License") and not any(
        (sub.root / n).is_file() for n in ("LICENSE", "LICENSE.txt")
    ):
        sub.reject("licence", "dataset_description.json", "no License (nor a LICENSE file)")


def _check_producers(sub: Submission) -> None:
    if not (sub.root / PRODUCERS).is_file():
        sub.reject(
            "producers",
            PRODUCERS,
            "missing: who produced this (people with institution and role, funding)",
        )
        return
    doc = _load_json(sub, PRODUCERS)
    if not isinstance(doc, dict):
        return
    sub.producers = doc
    people = doc.get("people")
    if not isinstance(people, list) or not people:
        sub.reject("producers", PRODUCERS, "people missing (a list of {name, institution, role})")
    else:
        for i, person in enumerate(people):
            for key in ("name", "institution", "role"):
                if not isinstance(person, dict) or not str(person.get(key) or "").strip():
                    sub.reject("producers", PRODUCERS, f"people[{i}].{key} missing")
    funding = doc.get("funding")
    if not isinstance(funding, list) or not funding:
        sub.reject("producers", PRODUCERS, 'funding missing (a list; ["none"] if unfunded)')
    until = doc.get("retention_until")
    if until is not None:
        try:
            date.fromisoformat(str(until))
        except ValueError:
            sub.reject("producers", PRODUCERS, "retention_until is not a YYYY-MM-DD date")


def _sidecar(rel: str) -> str:
    stem = rel.split("/")[-1].split(".")[0]
    return "/".join([*rel.split("/")[:-1], f"{stem}.json"])


def _check_sources(sub: Submission, present: set[str], name: str) -> None:
    files = set(sub.files)
    for rel in sub.files:
        side = _sidecar(rel)
        if (
            rel.endswith(".json")
            and side == rel
            and any(f != rel and _sidecar(f) == rel for f in files)
        ):
            continue  # the sidecar of another file
        holder = side if side in files else None
        if holder is None:
            sub.reject("sources", rel, f"no sidecar {side.split('/')[-1]} with Sources")
            continue
        doc = json.loads((sub.root / holder).read_text()) if holder else None
        sources = doc.get("Sources") if isinstance(doc, dict) else None
        if not isinstance(sources, list) or not sources:
            sub.reject("sources", holder, "Sources missing (BIDS URIs of the archived inputs)")
            continue
        for uri in sources:
            target = _resolve(str(uri), name)
            if target is None:
                sub.reject("sources", holder, f"{uri!r} is not a BIDS URI (bids:raw:sub-...)")
            elif target not in present:
                sub.reject("sources", holder, f"{uri} is not in the archive")
            else:
                sub.sources.add(target)


def _resolve(uri: str, name: str) -> str | None:
    """Archive path of a BIDS URI: 'raw' (or empty) is the archive root, any other dataset
    name a derivatives subdataset of the archive."""
    m = _URI.match(uri)
    if not m:
        return None
    dataset, path = m.groups()
    path = path.lstrip("/")
    if dataset in ("", "raw"):
        return path
    return f"{DERIVATIVES}/{dataset}/{path}"


def _screen_text(sub: Submission, rel: str, where: str, text: str) -> None:
    if person_word_hits(text):
        sub.reject("phi", rel, f"{where}: a word that introduces a person (Dr, Mme, Monsieur...)")
    if _dates_in_clear(text):
        sub.reject(
            "phi",
            rel,
            f"{where}: a date in clear (give intervals or the archive's shifted times instead)",
        )
    if _NUMBER_RUN.search(text):
        sub.reject("phi", rel, f"{where}: a long number that may be an identifier")
    if _EMAIL.search(text):
        sub.reject("phi", rel, f"{where}: an e-mail address")
    for kind, label in _ENTITY.findall(text):
        if kind == "sub" and label not in sub.known_subjects:
            sub.reject("phi", rel, f"{where}: names sub-{label}, which is not in the archive")


def _dates_in_clear(text: str) -> bool:
    for value in dates_in(text):
        try:
            if 1900 <= date(int(value[:4]), int(value[4:6]), int(value[6:])).year <= 2100:
                return True
        except ValueError:
            continue
    return False


def _json_strings(obj: Any, label: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((f"{label}{k}(key)", str(k)))
            out += _json_strings(v, f"{label}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _json_strings(v, f"{label}{i}.")
    elif isinstance(obj, str):
        out.append((label.rstrip("."), obj))
    return out


def _check_phi(sub: Submission, rows: dict[tuple[str, str, str], ledger.Row]) -> None:
    raw = {(r.subject, r.session) for r in rows.values() if r.dataset == "." and not r.removed}
    sub.known_subjects = {s for s, _ in raw}
    for s, ses in sorted(sub.sessions):
        if s not in sub.known_subjects:
            sub.reject(
                "phi",
                f"sub-{s}",
                "subject label not in the archive (labels must be the "
                "archive's pseudonyms, never a hospital identifier)",
            )
        elif ses and (s, ses) not in raw:
            sub.reject("phi", f"sub-{s}/ses-{ses}", "session label not in the archive")
    for rel in [*sub.files, *(n for n in TOP_FILES - {PRODUCERS} if (sub.root / n).is_file())]:
        path = sub.root / rel
        name_text = rel.replace("/", " ").replace("_", " ")
        if person_word_hits(name_text) or _dates_in_clear(rel) or _NUMBER_RUN.search(rel):
            sub.reject("phi", rel, "the file name may carry an identifier or a date")
        head = path.read_bytes()[:132]
        if head[128:132] == b"DICM" or rel.endswith((".dcm", ".dcm.gz")):
            sub.reject(
                "phi",
                rel,
                "DICOM is not accepted in a submission (its header carries "
                "identities; DICOM enters through the pipeline)",
            )
        elif rel.endswith((".nii", ".nii.gz")):
            _screen_nifti(sub, rel, path)
        elif path.suffix in _TEXT_SUFFIXES or "." not in path.name:
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.suffix == ".json":
                try:
                    pairs = _json_strings(json.loads(text))
                except json.JSONDecodeError:
                    pairs = [("content", text)]
            elif path.suffix == ".tsv":
                pairs = [(f"line {n}", line) for n, line in enumerate(text.splitlines(), 1)]
            else:
                pairs = [(f"line {n}", line) for n, line in enumerate(text.splitlines(), 1)]
            for where, value in pairs:
                if where.startswith("Sources"):
                    continue  # already checked to resolve to archived files
                _screen_text(sub, rel, where, value)


def _screen_nifti(sub: Submission, rel: str, path: Path) -> None:
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as exc:
        sub.reject("layout", rel, f"unreadable NIfTI ({type(exc).__name__})")
        return
    for field_name in _NIFTI_TEXT:
        if field_name in img.header:
            text = img.header[field_name].tobytes().split(b"\0", 1)[0].decode("latin-1")
            if text.strip():
                _screen_text(sub, rel, f"header.{field_name}", text)
    if img.header.extensions:
        sub.reject(
            "phi", rel, "NIfTI header extension (it can hold a whole DICOM header); remove it"
        )


def check(root: Path, archive: Path, name: str) -> Submission:
    """Every rule, every problem: the submission is accepted only with none."""
    sub = Submission(root)
    if not root.is_dir():
        sub.reject("layout", str(root.name), "not a folder")
        return sub
    rows = ledger.load(archive)
    _check_layout(sub)
    _check_description(sub)
    _check_licence(sub)
    _check_producers(sub)
    _check_sources(sub, archive_paths(archive), name)
    _check_phi(sub, rows)
    return sub


def reintegrate(
    settings: Settings, root: Path, name: str | None, out: TextIO = sys.stderr
) -> tuple[Submission, str | None]:
    """Check a submission and, when it passes every rule, archive it as one new version."""
    archive = settings.archive
    with archive_lock(archive, wait=settings.archiving["lock_wait"], out=out):
        open_archive(settings, out)
        desc: Any = {}
        with contextlib.suppress(OSError, ValueError):
            desc = json.loads((root / "dataset_description.json").read_text())
        name = name or default_name(desc if isinstance(desc, dict) else {}, root)
        sub = check(root, archive, name)
        register = (
            [json.loads(x) for x in (archive / REGISTER).read_text().splitlines()]
            if (archive / REGISTER).is_file()
            else []
        )
        ours = {e.get("dataset") for e in register if e.get("kind") == "reintegration"}
        target = f"{DERIVATIVES}/{name}"
        if (archive / target).exists() and target not in ours:
            sub.reject(
                "layout",
                target,
                "already in the archive and not made by a submission; choose another --name",
            )
        if sub.problems:
            return sub, None
        change = Change()
        mine = {
            f"{target}/{p.relative_to(root).as_posix()}": p for p in root.rglob("*") if p.is_file()
        }
        for rel, src in mine.items():
            if differs(archive, rel, src):
                change.writes[rel] = src
        change.generated[f"{target}/.bidsignore"] = f"{PRODUCERS}\n".encode()
        existing = (
            {
                p.relative_to(archive).as_posix()
                for p in (archive / target).rglob("*")
                if (p.is_file() or p.is_symlink())
                and ".git" not in p.parts
                and ".datalad" not in p.parts
            }
            if (archive / target).is_dir()
            else set()
        )
        change.deletes = {
            r
            for r in existing - set(mine) - set(change.generated)
            if not r.split("/")[-1].startswith(".")
        }
        now = datetime.now().astimezone()
        tag = records.next_tag(archive, settings.archiving["tag"], now)
        when = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows = ledger.load(archive)
        made_by = "; ".join(
            f"{g.get('Name', '')} {g.get('Version', '')}".strip() for g in desc["GeneratedBy"]
        )
        until = str(sub.producers.get("retention_until") or "") or (
            settings.archiving["retention"].get("until") or ""
        )
        for key in [k for k in rows if k[0] == target]:
            if (key[1], key[2]) not in sub.sessions:
                del rows[key]
        for a, b in sorted(sub.sessions):
            key = (target, a, b)
            if key in rows:
                rows[key].updated, rows[key].generated_by = tag, made_by
                rows[key].retention_until = until
            else:
                rows[key] = ledger.Row(target, a, b, tag, tag, made_by, "", until)
        entry = register_entry(sub, name, tag, when, len(mine))
        title = records_title(name, sub)
        record = {
            "version": tag,
            "kind": "reintegration",
            "date": when,
            "passerelle": __version__,
            "command": f"passerelle reintegrate <submission> --name {name}",
            "sessions": {"added": [], "updated": entry["on"], "removed": []},
            "counts": {"files written": len(change.writes), "files deleted": len(change.deletes)},
            "contribution": entry,
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
            "reintegration",
            out,
        )
        return sub, tag


def default_name(description: dict[str, Any], root: Path) -> str:
    base = description.get("Name") or root.name
    return re.sub(r"[^a-z0-9]+", "-", str(base).lower()).strip("-") or "contribution"


def register_entry(sub: Submission, name: str, tag: str, when: str, n_files: int) -> dict[str, Any]:
    gen = sub.description.get("GeneratedBy", [])
    return {
        "version": tag,
        "date": when,
        "kind": "reintegration",
        "dataset": f"{DERIVATIVES}/{name}",
        "who": sub.producers.get("people", []),
        "funding": sub.producers.get("funding", []),
        "what": [
            {k: g.get(k) for k in ("Name", "Version", "Description", "CodeURL") if g.get(k)}
            for g in gen
        ],
        "license": sub.description.get("License", "see LICENSE"),
        "on": sorted(f"sub-{a}/ses-{b}" if b else f"sub-{a}" for a, b in sub.sessions),
        "sources": len(sub.sources),
        "files": n_files,
        "retention_until": sub.producers.get("retention_until"),
    }


def records_title(name: str, sub: Submission) -> str:
    return (
        f"reintegration of derivatives/{name}: {len(sub.files)} file(s) on "
        f"{len(sub.sessions)} session(s)"
    )
