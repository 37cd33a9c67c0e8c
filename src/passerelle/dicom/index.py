"""Walk an inbox of any layout and keep a header cache that only reads new or changed files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from passerelle import __version__
from passerelle.dicom.reader import Header, Unusable, read_header
from passerelle.keys import SecretKey
from passerelle.state import State

# Cached headers are trusted only from the same reader: bump on any change to what it records.
INDEX_FORMAT = f"{__version__}/1"
# Below this many new files a process pool costs more than it saves.
PARALLEL_THRESHOLD = 400


def walk(inbox: Path) -> Iterator[tuple[str, int, int]]:
    """Yield (inbox-relative path, size, mtime_ns) for every regular file, in sorted order.

    Symlinked folders are followed (exports are often mounted or linked in) but each real
    folder is visited once, so a link loop cannot hang the walk.
    """
    seen: set[str] = set()
    stack = [inbox]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir():
                stack.append(Path(entry.path))
            elif entry.is_file():
                st = entry.stat()
                yield Path(entry.path).relative_to(inbox).as_posix(), st.st_size, st.st_mtime_ns


def _read(args: tuple[Path, bytes]) -> dict[str, Any]:
    path, material = args
    result = read_header(path, SecretKey(material))
    if isinstance(result, Unusable):
        return {"unusable": result.reason}
    return asdict(result)


def record_to_header(record: dict[str, Any]) -> Header | Unusable:
    if "unusable" in record:
        return Unusable(record["unusable"])
    return Header(**record)


@dataclass(frozen=True)
class Indexed:
    size: int
    mtime_ns: int
    record: dict[str, Any]


def _check_stamp(key: SecretKey, state: State) -> None:
    stamp = f"{key.fingerprint()}/{INDEX_FORMAT}"
    if state.meta("index_stamp") != stamp:
        state.reset_index()
        state.set_meta("index_stamp", stamp)


def _read_all(
    inbox: Path, key: SecretKey, todo: list[tuple[str, int, int]], workers: int
) -> list[dict[str, Any]]:
    jobs = [(inbox / rel, key.material) for rel, _, _ in todo]
    if len(jobs) >= PARALLEL_THRESHOLD and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_read, jobs, chunksize=64))
    return [_read(j) for j in jobs]


@dataclass(frozen=True)
class Changes:
    """What changed in the inbox since the last plan, without loading unchanged records."""

    read: dict[str, Indexed]  # new or changed files, their headers read now
    removed: list[str]
    old_sessions: set[str]  # session labels the changed and removed files had before
    n_read: int


def scan_changes(inbox: Path, key: SecretKey, state: State, workers: int = 2) -> Changes:
    """Walk the inbox comparing (size, mtime) with the cache; read only what differs."""
    _check_stamp(key, state)
    cached = state.cached_stats()
    todo: list[tuple[str, int, int]] = []
    for rel, size, mtime in walk(inbox):
        hit = cached.pop(rel, None)
        if hit is None or hit != (size, mtime):
            todo.append((rel, size, mtime))
    removed = sorted(cached)
    old = state.session_labels_of([rel for rel, _, _ in todo] + removed)
    records = _read_all(inbox, key, todo, workers)
    if removed:
        state.mark_absent(removed)
    state.store_files(
        (rel, size, mtime, rec) for (rel, size, mtime), rec in zip(todo, records, strict=True)
    )
    read = {
        rel: Indexed(size, mtime, rec)
        for (rel, size, mtime), rec in zip(todo, records, strict=True)
    }
    return Changes(read, removed, old, len(todo))


def update_index(
    inbox: Path, key: SecretKey, state: State, workers: int = 2
) -> tuple[dict[str, Indexed], int]:
    """Return {relpath: Indexed} for every file now in the inbox, and how many were read."""
    _check_stamp(key, state)
    cached = state.cached_files()
    current: dict[str, Indexed] = {}
    todo: list[tuple[str, int, int]] = []
    for rel, size, mtime in walk(inbox):
        hit = cached.pop(rel, None)
        if hit is not None and hit[0] == size and hit[1] == mtime:
            current[rel] = Indexed(size, mtime, hit[2])
        else:
            todo.append((rel, size, mtime))
    if cached:
        state.mark_absent(cached)
    records = _read_all(inbox, key, todo, workers)
    state.store_files(
        (rel, size, mtime, rec) for (rel, size, mtime), rec in zip(todo, records, strict=True)
    )
    for (rel, size, mtime), rec in zip(todo, records, strict=True):
        current[rel] = Indexed(size, mtime, rec)
    return current, len(todo)
