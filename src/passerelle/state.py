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
# re-planning recreates), except version 2, which gains its label columns in place.
SCHEMA_VERSION = 3
# Copied out of each file's record into indexed columns, so a plan can load only the files
# of the sessions that changed instead of every record of the inbox.
_LABEL_COLUMNS = (
    ("rec_subject", "subject"),
    ("rec_session", "session"),
    ("rec_sop", "sop"),
    ("rec_patient", "patient"),
)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    record TEXT NOT NULL, present INTEGER NOT NULL DEFAULT 1,
    state TEXT, reason TEXT, subject TEXT, session TEXT, series INTEGER,
    rec_subject TEXT, rec_session TEXT, rec_sop TEXT, rec_patient TEXT
);
CREATE INDEX IF NOT EXISTS files_session ON files (rec_session);
CREATE INDEX IF NOT EXISTS files_sop ON files (rec_sop);
-- Planning asks which patients a subject label has, once per session: no full scans.
CREATE INDEX IF NOT EXISTS files_subject ON files (rec_subject);
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
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == 2:
            self._add_label_columns()
        elif version != SCHEMA_VERSION:
            with self.db:
                for (table,) in self.db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                ).fetchall():
                    self.db.execute(f"DROP TABLE {table}")
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.executescript(_DDL)

    def _add_label_columns(self) -> None:
        with self.db:
            for column, _ in _LABEL_COLUMNS:
                self.db.execute(f"ALTER TABLE files ADD COLUMN {column} TEXT")
            rows = self.db.execute("SELECT path, record FROM files").fetchall()
            self.db.executemany(
                "UPDATE files SET rec_subject=?, rec_session=?, rec_sop=?, rec_patient=? "
                "WHERE path=?",
                ((*_labels(json.loads(r)), p) for p, r in rows),
            )
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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

    def cached_stats(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every present file: what change detection needs, no records."""
        rows = self.db.execute("SELECT path, size, mtime_ns FROM files WHERE present=1")
        return {p: (s, m) for p, s, m in rows}

    def store_files(self, rows: Iterable[tuple[str, int, int, dict[str, Any]]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO files (path, size, mtime_ns, record, present, rec_subject, "
                "rec_session, rec_sop, rec_patient) VALUES (?,?,?,?,1,?,?,?,?) "
                "ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, record=excluded.record, present=1, "
                "rec_subject=excluded.rec_subject, rec_session=excluded.rec_session, "
                "rec_sop=excluded.rec_sop, rec_patient=excluded.rec_patient",
                ((p, s, m, json.dumps(r, sort_keys=True), *_labels(r)) for p, s, m, r in rows),
            )

    def session_labels_of(self, paths: Iterable[str]) -> set[str]:
        """Session labels the records of these files had (before they change or go)."""
        return self._select_set("SELECT rec_session FROM files WHERE path IN ({})", paths)

    def sessions_with_sops(self, sops: Iterable[str]) -> set[str]:
        """Session labels of present files sharing a SOPInstanceUID (duplicates)."""
        return self._select_set(
            "SELECT rec_session FROM files WHERE present=1 AND rec_sop IN ({})", sops
        )

    def records_in_sessions(self, sessions: Iterable[str]) -> dict[str, tuple[int, int, Any]]:
        """{path: (size, mtime_ns, record)} of the present files of these session labels."""
        out: dict[str, tuple[int, int, Any]] = {}
        values = sorted(set(sessions))
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            rows = self.db.execute(
                "SELECT path, size, mtime_ns, record FROM files WHERE present=1 AND "
                f"rec_session IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            out.update({p: (s, m, json.loads(r)) for p, s, m, r in rows})
        return out

    def patients_of_subject(self, subject: str) -> set[str]:
        rows = self.db.execute(
            "SELECT DISTINCT rec_patient FROM files WHERE present=1 AND rec_subject=? "
            "AND subject IS NOT NULL",
            (subject,),
        )
        return {r[0] for r in rows if r[0]}

    def loose_dispositions(self) -> list[tuple[str, str, str]]:
        """(path, state, reason) of present files that belong to no session."""
        return list(
            self.db.execute(
                "SELECT path, state, reason FROM files WHERE present=1 AND subject IS NULL "
                "ORDER BY path"
            )
        )

    def _select_set(self, sql: str, values: Iterable[str]) -> set[str]:
        found: set[str] = set()
        items = sorted({v for v in values if v})
        for i in range(0, len(items), 500):
            chunk = items[i : i + 500]
            rows = self.db.execute(sql.format(",".join("?" * len(chunk))), chunk)
            found |= {r[0] for r in rows if r[0]}
        return found

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

    def upsert_sessions(
        self, rows: Iterable[tuple[str, str, str, str | None, int | None, int]]
    ) -> None:
        """rows: (subject, session, spec hash, sex, age, number of files); one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT INTO sessions (subject, session, spec_hash, sex, age, n_files) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(subject, session) DO UPDATE SET "
                "spec_hash=excluded.spec_hash, sex=excluded.sex, age=excluded.age, "
                "n_files=excluded.n_files",
                rows,
            )

    def unfinished(self) -> list[tuple[str, str, str]]:
        """(subject, session, spec hash) of sessions planned but not yet closed by a run."""
        return list(
            self.db.execute(
                "SELECT subject, session, spec_hash FROM sessions "
                "WHERE done_hash IS NULL OR done_hash != spec_hash"
            )
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


def _labels(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(key) for _, key in _LABEL_COLUMNS)
