"""The private state of a run: index cache, per-file dispositions and the session ledger.

It lives in WORK/state.sqlite, next to the inbox in trust terms: it holds inbox-relative
paths (which may contain names) but no identifier from a DICOM header in clear.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Bumped when the tables change; an older state is rebuilt (it is a cache plus a ledger that
# re-planning recreates).
SCHEMA_VERSION = 2

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    record TEXT NOT NULL, present INTEGER NOT NULL DEFAULT 1,
    state TEXT, reason TEXT, subject TEXT, session TEXT, series INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    subject TEXT NOT NULL, session TEXT NOT NULL, spec_hash TEXT NOT NULL,
    done_hash TEXT, sex TEXT, age INTEGER, n_files INTEGER, acq_time TEXT,
    PRIMARY KEY (subject, session)
);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, summary TEXT NOT NULL);
"""


class State:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=600)
        self.db.execute("PRAGMA journal_mode=WAL")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with self.db:
                for (table,) in self.db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                ).fetchall():
                    self.db.execute(f"DROP TABLE {table}")
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.executescript(_DDL)

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def reset_index(self) -> None:
        """Forget cached headers (the key changed): every file is read again."""
        with self.db:
            self.db.execute("DELETE FROM files")
            self.db.execute("DELETE FROM sessions")

    def cached_files(self) -> dict[str, tuple[int, int, dict[str, Any]]]:
        rows = self.db.execute("SELECT path, size, mtime_ns, record FROM files WHERE present=1")
        return {p: (s, m, json.loads(r)) for p, s, m, r in rows}

    def store_files(self, rows: Iterable[tuple[str, int, int, dict[str, Any]]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO files (path, size, mtime_ns, record, present) VALUES (?,?,?,?,1) "
                "ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, record=excluded.record, present=1",
                ((p, s, m, json.dumps(r, sort_keys=True)) for p, s, m, r in rows),
            )

    def mark_absent(self, paths: Iterable[str]) -> None:
        with self.db:
            self.db.executemany("UPDATE files SET present=0 WHERE path=?", ((p,) for p in paths))

    def set_dispositions(
        self, rows: Iterable[tuple[str, str, str, str | None, str | None, int | None]]
    ) -> None:
        """rows: (path, state, reason, subject, session, series number)."""
        with self.db:
            self.db.executemany(
                "UPDATE files SET state=?, reason=?, subject=?, session=?, series=? WHERE path=?",
                ((st, rs, sub, ses, num, p) for p, st, rs, sub, ses, num in rows),
            )

    def dispositions(
        self,
    ) -> list[tuple[str, str | None, str | None, str | None, str | None, int | None, int]]:
        return list(
            self.db.execute(
                "SELECT path, state, reason, subject, session, series, present FROM files "
                "ORDER BY path"
            )
        )

    def upsert_session(
        self, subject: str, session: str, spec_hash: str, sex: str | None, age: int | None, n: int
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO sessions (subject, session, spec_hash, sex, age, n_files) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(subject, session) DO UPDATE SET "
                "spec_hash=excluded.spec_hash, sex=excluded.sex, age=excluded.age, "
                "n_files=excluded.n_files",
                (subject, session, spec_hash, sex, age, n),
            )

    def done_hashes(self) -> dict[tuple[str, str], str | None]:
        rows = self.db.execute("SELECT subject, session, done_hash FROM sessions")
        return {(a, b): h for a, b, h in rows}

    def mark_done(self, items: Iterable[tuple[str, str, str]]) -> None:
        with self.db:
            self.db.executemany(
                "UPDATE sessions SET done_hash=? WHERE subject=? AND session=?",
                ((h, a, b) for a, b, h in items),
            )

    def set_acq_time(self, subject: str, session: str, acq_time: str | None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE sessions SET acq_time=? WHERE subject=? AND session=?",
                (acq_time, subject, session),
            )

    def sessions(self) -> list[tuple[str, str, str | None, int | None, str | None]]:
        """(subject, session, sex, age, acq_time) of every session ever planned."""
        return list(
            self.db.execute(
                "SELECT subject, session, sex, age, acq_time FROM sessions "
                "ORDER BY subject, session"
            )
        )
