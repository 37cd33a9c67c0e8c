"""What each version records: pipeline version, configuration, command, CHANGES, tag."""

from __future__ import annotations

import hashlib
import json
import os
import string
from datetime import datetime
from pathlib import Path
from typing import Any

from passerelle import __version__
from passerelle.archive.layout import CHANGES, CONFIGS, REGISTER, VERSIONS
from passerelle.archive.tools import git
from passerelle.config import Settings
from passerelle.errors import ConfigError
from passerelle.fsutil import canonical_json
from passerelle.keys import ENV_VAR, resolve_key_path

# Paths on the clinical side, the key, and patterns over inbox folder names never enter
# the archive; the record keeps a placeholder so the shape of the configuration stays.
PRIVATE_KEYS = {
    "inbox": "<inbox>",
    "output": "<output>",
    "work": "<work>",
    "key_file": "<key file>",
    "archive": "<archive>",
    "bids_map": "<bids_map>",
    "deid": "<deid>",
}
TAG_FIELDS = {"date", "seq"}


def check_tag_scheme(scheme: str, source: str) -> None:
    """Start-up check: only {date:...} and {seq} placeholders, and a valid git tag."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(scheme) if f is not None}
        sample = scheme.format(date=datetime(2026, 11, 22), seq=1)
    except (ValueError, KeyError, IndexError) as exc:
        raise ConfigError(f"{source}: key archiving.tag: invalid format ({exc})") from None
    if not fields <= TAG_FIELDS or not fields:
        raise ConfigError(
            f"{source}: key archiving.tag: expected placeholders among {{date:...}} and {{seq}}"
            f", got {scheme!r}"
        )
    if not sample or any(c in sample for c in " ~^:?*[\\") or ".." in sample:
        raise ConfigError(f"{source}: key archiving.tag: {sample!r} is not a valid git tag")


def tags(archive: Path) -> list[str]:
    """Version tags, oldest first."""
    out = git(archive, "tag", "--list", "--sort=creatordate")
    return out.split()


def next_tag(archive: Path, scheme: str, now: datetime) -> str:
    existing = set(tags(archive))
    base = scheme.format(date=now, seq=len(existing) + 1)
    tag, n = base, 1
    while tag in existing:  # a second version the same day: 2026.11.22.2
        n += 1
        tag = f"{base}.{n}"
    return tag


def _redact(raw: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(raw, default=str))
    for key, placeholder in PRIVATE_KEYS.items():
        if doc.get(key) is not None:
            doc[key] = placeholder
    retention = doc.get("archiving", {}).get("retention", {})
    for rule in retention.get("deliveries", []):
        rule["match"] = "<pattern over inbox folders>"
    return doc


def private_paths(settings: Settings, cwd: Path) -> list[tuple[str, str]]:
    """(absolute path, placeholder) of every private location, longest first: the work area
    lies beside the output and often inside the working folder, and must win over both."""
    paths = {
        "inbox": settings.inbox, "output": settings.output, "work": settings.work,
        "archive": settings.archive, "bids_map": settings.bids_map_path,
        "deid": settings.deid_path,
        # Where the run looks for the key (the environment variable first), never its content.
        "key_file": resolve_key_path(settings.key_file, cwd)
        if settings.key_file or os.environ.get(ENV_VAR) else None,
    }  # fmt: skip
    pairs = {"<workflow>": {str(cwd), str(cwd.resolve())}}
    for key, path in paths.items():
        if path is not None:
            full = path if path.is_absolute() else cwd / path
            pairs[PRIVATE_KEYS[key]] = {str(full), str(full.resolve())}
    found = [(p, placeholder) for placeholder, ps in pairs.items() for p in ps if p != "/"]
    return sorted(found, key=lambda item: -len(item[0]))


def redact_paths(text: str, settings: Settings, cwd: Path) -> str:
    """Text (a Snakemake report, a log) with private locations replaced by placeholders."""
    for path, placeholder in private_paths(settings, cwd):
        text = text.replace(path, placeholder)
    return text


def configuration(settings: Settings) -> dict[str, Any]:
    """Everything that decides the outputs, without secrets or private paths."""
    return {
        "config": _redact(settings.raw),
        "bids_map": settings.bids_map,
        "deid": settings.deid,
        "passerelle": __version__,
    }


def canonical(doc: dict[str, Any]) -> bytes:
    return canonical_json(doc).encode()


def config_digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def config_path(digest: str) -> str:
    return f"{CONFIGS}/{digest[:16]}.json"


def version_path(tag: str) -> str:
    return f"{VERSIONS}/{tag}.json"


def changes_text(archive: Path, tag: str, when: datetime, lines: list[str]) -> bytes:
    """BIDS CHANGES (CPAN Changes form), newest first; the archive is its only writer."""
    old = (archive / CHANGES).read_text() if (archive / CHANGES).is_file() else ""
    entry = f"{tag} {when:%Y-%m-%d}\n" + "".join(f"  - {line}\n" for line in lines)
    return (entry + ("\n" + old if old else "")).encode()


def register_text(archive: Path, entry: dict[str, Any]) -> bytes:
    """The contributions register, one JSON object per line, appended."""
    path = archive / REGISTER
    old = path.read_bytes() if path.is_file() else b""
    return old + (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode()


def read_version(archive: Path, tag: str) -> dict[str, Any]:
    text = git(archive, "show", f"{tag}:{version_path(tag)}", check=False)
    return json.loads(text) if text else {}


def message(title: str, record: dict[str, Any]) -> str:
    """A structured commit message: a title, then the record as key: value lines."""
    lines = [title, ""]
    for key in ("version", "kind", "passerelle", "run", "config", "command"):
        if record.get(key):
            lines.append(f"{key}: {record[key]}")
    for what, items in sorted(record.get("sessions", {}).items()):
        lines.append(
            f"sessions {what}: {len(items)}" + (f" ({', '.join(items[:20])})" if items else "")
        )
    for what, n in sorted(record.get("counts", {}).items()):
        lines.append(f"{what}: {n}")
    return "\n".join(lines) + "\n"
