"""One version: stage outside the work tree, check checksums, move in, save once, tag.

Every writer (a workflow run, an outside submission, a retention removal) goes through
``commit_version``; the caller builds a ``Change`` from what differs, so a writer with
nothing new never reaches here and makes no commit and no tag.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from passerelle.archive import lock
from passerelle.archive.layout import (
    DERIVATIVES,
    content_sha256,
    control_dir,
    create_subdataset,
    remove_tree,
)
from passerelle.archive.tools import annex, datalad_api, git
from passerelle.errors import PasserelleError
from passerelle.fsutil import sha256_file

_CHUNK = 1 << 20


@dataclass
class Change:
    """What a version does to the archive's work tree (paths relative to the archive)."""

    writes: dict[str, Path] = field(default_factory=dict)  # from files outside the archive
    generated: dict[str, bytes] = field(default_factory=dict)  # records made by passerelle
    deletes: set[str] = field(default_factory=set)
    drop: bool = False  # also drop the annexed content of deleted files (retention)

    def __bool__(self) -> bool:
        return bool(self.writes or self.generated or self.deletes)

    def touched(self) -> list[str]:
        return sorted({*self.writes, *self.generated, *self.deletes})


def differs(archive: Path, rel: str, source: Path) -> bool:
    """Whether a source file's content differs from the archive's (absent counts as differing)."""
    target = archive / rel
    if not (target.exists() or target.is_symlink()):
        return True
    if target.is_symlink() or source.stat().st_size != target.stat().st_size:
        return content_sha256(target) != sha256_file(source)
    return sha256_file(target) != sha256_file(source)


def _copy_hashing(src: Path, dst: Path) -> str:
    h = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        for block in iter(lambda: fin.read(_CHUNK), b""):
            h.update(block)
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def _stage(archive: Path, change: Change, out: TextIO) -> tuple[Path, dict[str, str]]:
    """Copy everything the version writes beside the archive and prove the copies intact."""
    staging = control_dir(archive) / "staging"
    remove_tree(staging)
    staging.mkdir(parents=True)
    expected: dict[str, str] = {}
    for rel, src in sorted(change.writes.items()):
        expected[rel] = _copy_hashing(src, staging / rel)
    for rel, data in sorted(change.generated.items()):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
        expected[rel] = hashlib.sha256(data).hexdigest()
    print(f"passerelle: staged {len(expected)} file(s); verifying checksums", file=out, flush=True)
    bad = [rel for rel, sha in expected.items() if sha256_file(staging / rel) != sha]
    if bad:
        raise PasserelleError(f"staging copy does not match its source: {bad[0]} (disk error?)")
    return staging, expected


def _new_subdatasets(archive: Path, paths: Iterable[str]) -> list[str]:
    names = {p.split("/")[1] for p in paths if p.startswith(f"{DERIVATIVES}/") and p.count("/") > 1}
    return sorted(
        f"{DERIVATIVES}/{n}" for n in names if not (archive / DERIVATIVES / n / ".git").exists()
    )


def _apply(archive: Path, staging: Path, change: Change) -> None:
    for rel in sorted(change.deletes):
        target = archive / rel
        if target.is_symlink() or target.exists():
            target.unlink()
        _prune(archive, target.parent)
    for rel in sorted({*change.writes, *change.generated}):
        target = archive / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        os.replace(staging / rel, target)


def _prune(archive: Path, folder: Path) -> None:
    while folder != archive and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _owner(archive: Path, rel: str) -> Path:
    parts = rel.split("/")
    if parts[0] == DERIVATIVES and len(parts) > 2:
        return archive / DERIVATIVES / parts[1]
    return archive


def commit_version(
    archive: Path,
    change: Change,
    tag: str,
    message: str,
    description: str,
    kind: str,
    out: TextIO = sys.stderr,
) -> None:
    """Make one tagged version from a change. Call with the archive lock held."""
    staging, expected = _stage(archive, change, out)
    # Retention: keys of deleted annexed files, dropped once the version exists.
    to_drop = [
        (_owner(archive, rel), os.path.basename(os.readlink(archive / rel)))
        for rel in sorted(change.deletes)
        if change.drop and (archive / rel).is_symlink()
    ]
    lock.begin(archive, tag, kind)
    for rel in _new_subdatasets(archive, change.touched()):
        create_subdataset(archive, rel, description)
    print(f"passerelle: moving {len(expected)} file(s) into the archive", file=out, flush=True)
    _apply(archive, staging, change)
    print(f"passerelle: saving version {tag}", file=out, flush=True)
    dl = datalad_api()
    results = dl.save(
        dataset=str(archive),
        path=[str(archive / p) for p in change.touched()],
        recursive=True,
        message=message,
        result_renderer="disabled",
        on_failure="ignore",
        return_type="list",
    )
    failed = [r for r in results if r.get("status") in ("error", "impossible")]
    if failed:
        raise PasserelleError(
            f"datalad save failed: {failed[0].get('message') or failed[0].get('path')}"
        )
    dirty = git(archive, "status", "--porcelain", "--ignore-submodules=none").strip()
    if dirty:
        raise PasserelleError(f"archive not clean after save: {dirty.splitlines()[0]}")
    for rel, sha in expected.items():
        if content_sha256(archive / rel) != sha:
            raise PasserelleError(f"archived {rel} does not match its staged checksum")
    git(archive, "tag", "-a", tag, "-m", message.splitlines()[0])
    lock.commit_done(archive)
    remove_tree(staging)
    used: dict[Path, set[str]] = {}
    for owner, key in to_drop:
        if owner not in used:  # identical content may still back a file that stays
            used[owner] = set(annex(owner, "find", "--format=${key}\\n").split())
        if key not in used[owner]:
            annex(owner, "drop", "--force", "--key", key)
