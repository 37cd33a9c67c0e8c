"""One writer at a time, and a way back from a save that was killed half-way.

The lock is an flock on a file beside the archive: the kernel releases it when its holder
dies, even by SIGKILL, so a stale lock cannot block the next night. A writer records a
transaction journal (base commits of every dataset and the tag it is making) before it
touches the work tree and removes it once the tag exists; `passerelle recover` (also run
automatically by the next writer) rolls an unfinished transaction back to the base version.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from passerelle.archive.layout import control_dir, is_archive, lock_path, remove_tree, subdatasets
from passerelle.archive.tools import git, head
from passerelle.errors import PasserelleError
from passerelle.fsutil import write_json


class ArchiveBusy(PasserelleError):
    """Another process holds the archive."""


@dataclass
class ArchiveLock:
    """Exclusive lock on an archive (or any resource named by a path).

    wait: seconds to wait for another holder (0: fail at once with a clear message)."""

    path: Path
    what: str
    wait: float = 0
    out: TextIO = sys.stderr
    _fh: Any = None

    def __enter__(self) -> ArchiveLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(self.path)
                if time.monotonic() >= deadline:
                    fh.close()
                    raise ArchiveBusy(
                        f"{self.what} is busy: {holder}; not interleaving, try again later "
                        "(or raise archiving.lock_wait)"
                    ) from None
                if not told:
                    print(
                        f"passerelle: {self.what} is busy ({holder}); waiting up to "
                        f"{self.wait:.0f} s",
                        file=self.out,
                        flush=True,
                    )
                    told = True
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fh.write(f"pid {os.getpid()} since {since}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.truncate(0)
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return f"held by {text}" if text else "held by another process"


def archive_lock(archive: Path, wait: float = 0, out: TextIO = sys.stderr) -> ArchiveLock:
    return ArchiveLock(lock_path(archive), f"archive {archive.name}", wait, out)


def journal_path(archive: Path) -> Path:
    return control_dir(archive) / "transaction.json"


def begin(archive: Path, tag: str, kind: str) -> dict[str, Any]:
    """Record where every dataset stands before the work tree is touched."""
    base = head(archive)
    subs = {}
    for rel in subdatasets(archive):
        sha = head(archive / rel)
        if sha:
            subs[rel] = sha
    record = {"tag": tag, "kind": kind, "base": base, "subdatasets": subs}
    write_json(journal_path(archive), record)
    return record


def commit_done(archive: Path) -> None:
    journal_path(archive).unlink(missing_ok=True)


def _tag_commit(repo: Path, tag: str) -> str | None:
    out = git(repo, "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}", check=False)
    return out.strip() or None


def _reset(repo: Path, sha: str) -> None:
    (repo / ".git" / "index.lock").unlink(missing_ok=True)
    git(repo, "reset", "-q", "--hard", sha)
    git(repo, "clean", "-q", "-fd")


def recover(archive: Path) -> str:
    """Bring an archive back to a finished version after an interruption; say what was done.

    Call with the archive lock held."""
    if not is_archive(archive):
        return f"{archive.name}: no archive here yet; nothing to recover"
    journal = journal_path(archive)
    if not journal.exists():
        return f"{archive.name}: no interrupted save; nothing to recover"
    record = json.loads(journal.read_text())
    tag = record["tag"]
    if _tag_commit(archive, tag) and _tag_commit(archive, tag) == head(archive):
        commit_done(archive)
        return f"{archive.name}: version {tag} had been completed; nothing rolled back"
    # The super dataset's base commit names the subdataset commits of the base version.
    for rel in subdatasets(archive):
        sub = archive / rel
        base = record["subdatasets"].get(rel)
        if base is None:
            remove_tree(sub)  # created by the interrupted save, never registered
        else:
            _reset(sub, base)
    if record["base"]:
        _reset(archive, record["base"])
    if _tag_commit(archive, tag):
        git(archive, "tag", "-d", tag)
    remove_tree(control_dir(archive) / "staging")
    commit_done(archive)
    return f"{archive.name}: interrupted save of {tag} rolled back to the previous version"
