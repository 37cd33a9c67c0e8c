"""Answer "what do we have, since when, made how?" over the archive, with DuckDB.

The catalogue is built from git's file lists (no walk of the work tree, and dropped annex
content still counts as archived), the ledger and the contributions register, and cached
in the archive's private folder keyed on HEAD: the first query after a new version builds
it, every other query only opens it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from passerelle.archive.layout import LEDGER, REGISTER, SOURCEDATA, control_dir, subdatasets
from passerelle.archive.tools import git, head
from passerelle.errors import PasserelleError

CATALOGUE_FORMAT = "2"


def _tree_of(path: str) -> tuple[str, str]:
    if path.startswith(f"{SOURCEDATA}/"):
        return SOURCEDATA, path[len(SOURCEDATA) + 1 :]
    return ".", path


def _rows(archive: Path) -> list[tuple[str, ...]]:
    listings = [(".", archive)] + [(rel, archive / rel) for rel in subdatasets(archive)]
    rows = []
    for prefix, repo in listings:
        for path in git(repo, "ls-files", "-z").split("\0"):
            if not path or path.startswith("."):
                continue
            tree, rest = (prefix, path) if prefix != "." else _tree_of(path)
            parts = rest.split("/")
            if len(parts) < 3 or not parts[0].startswith("sub-") or not parts[1].startswith("ses-"):
                continue  # dataset- and subject-level files are not session data
            sub, ses = parts[0][4:], parts[1][4:]
            folder = parts[2] if len(parts) > 3 else ""  # "" for files of the session itself
            base = parts[-1]
            stem, _, ext = base.partition(".")
            datatype = "dicom" if tree == SOURCEDATA else folder
            suffix = stem.rsplit("_", 1)[-1] if "_" in stem else ""
            full = path if prefix == "." else f"{prefix}/{path}"
            rows.append((tree, sub, ses, datatype, suffix, f".{ext}" if ext else "", full))
    return rows


def _generated_by(archive: Path, tree: str) -> str:
    path = (archive / tree if tree != "." else archive) / "dataset_description.json"
    try:
        gen = json.loads(path.read_text()).get("GeneratedBy") or []
    except (OSError, json.JSONDecodeError):
        return ""
    return "; ".join(f"{g.get('Name', '')} {g.get('Version', '')}".strip() for g in gen)


def _versions(archive: Path) -> list[tuple[int, str, str]]:
    out = git(
        archive,
        "for-each-ref",
        "--sort=creatordate",
        "refs/tags",
        "--format=%(refname:short)\t%(creatordate:iso-strict)",
    )
    return [(i, *line.split("\t")) for i, line in enumerate(out.splitlines(), start=1)]


def build(archive: Path, db: Path) -> None:
    tmp = db.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        with tempfile.TemporaryDirectory() as scratch:
            files = Path(scratch) / "files.tsv"
            with files.open("w") as fh:
                for row in _rows(archive):
                    fh.write("\t".join(row) + "\n")
            con.execute(
                "CREATE TABLE files AS SELECT * FROM read_csv(?, delim='\t', header=false, "
                "quote='', escape='', columns={'dataset': 'VARCHAR', 'subject': 'VARCHAR', "
                "'session': 'VARCHAR', 'datatype': 'VARCHAR', 'suffix': 'VARCHAR', "
                "'extension': 'VARCHAR', 'path': 'VARCHAR'})",
                [str(files)],
            )
        con.execute(
            "CREATE TABLE versions (seq INTEGER, tag VARCHAR, date VARCHAR);"
            "CREATE TABLE ledger (dataset VARCHAR, subject VARCHAR, session VARCHAR, "
            "since VARCHAR, updated VARCHAR, generated_by VARCHAR, delivery VARCHAR, "
            "retention_until VARCHAR, removed VARCHAR);"
            "CREATE TABLE datasets (dataset VARCHAR, generated_by VARCHAR);"
            "CREATE TABLE contributions (version VARCHAR, entry JSON);"
            "CREATE TABLE meta (head VARCHAR, format VARCHAR)"
        )
        con.executemany("INSERT INTO versions VALUES (?, ?, ?)", _versions(archive))
        if (archive / LEDGER).is_file():
            con.execute(
                "INSERT INTO ledger SELECT * FROM read_csv(?, delim='\t', header=true, "
                "nullstr='n/a', all_varchar=true)",
                [str(archive / LEDGER)],
            )
        trees = [".", SOURCEDATA, *subdatasets(archive)]
        con.executemany(
            "INSERT INTO datasets VALUES (?, ?)", [(t, _generated_by(archive, t)) for t in trees]
        )
        if (archive / REGISTER).is_file():
            entries = [json.loads(line) for line in (archive / REGISTER).read_text().splitlines()]
            con.executemany(
                "INSERT INTO contributions VALUES (?, ?)",
                [(e.get("version"), json.dumps(e)) for e in entries],
            )
        con.execute(_VIEWS)
        con.execute("INSERT INTO meta VALUES (?, ?)", [head(archive), CATALOGUE_FORMAT])
    finally:
        con.close()
    tmp.replace(db)


_VIEWS = """
CREATE VIEW sessions AS
SELECT f.subject, f.session,
       string_agg(DISTINCT f.datatype, ',' ORDER BY f.datatype)
           FILTER (WHERE f.dataset = '.' AND f.datatype <> '') AS datatypes,
       bool_or(f.dataset = 'sourcedata/dicom') AS dicom,
       string_agg(DISTINCT substr(f.dataset, 13), ',' ORDER BY substr(f.dataset, 13))
           FILTER (WHERE f.dataset LIKE 'derivatives/%') AS derivatives,
       any_value(l.since) AS since, any_value(l.updated) AS updated,
       any_value(l.generated_by) AS generated_by, any_value(l.delivery) AS delivery,
       any_value(l.retention_until) AS retention_until,
       count(*) AS files
FROM files f
LEFT JOIN ledger l ON l.dataset = '.' AND l.subject = f.subject AND l.session = f.session
GROUP BY f.subject, f.session;
CREATE VIEW derivatives AS
SELECT substr(f.dataset, 13) AS derivative, f.subject, f.session,
       coalesce(any_value(l.generated_by), any_value(d.generated_by)) AS generated_by,
       any_value(l.since) AS since, count(*) AS files
FROM files f
LEFT JOIN ledger l ON l.dataset = f.dataset AND l.subject = f.subject AND l.session = f.session
LEFT JOIN datasets d ON d.dataset = f.dataset
WHERE f.dataset LIKE 'derivatives/%'
GROUP BY f.dataset, f.subject, f.session;
"""


def connect(archive: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to an up-to-date catalogue of the archive."""
    if not (archive / ".git").is_dir():
        raise PasserelleError(f"{archive}: not an archive (no .git folder)")
    db = control_dir(archive) / "catalogue.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    current = head(archive)
    fresh = False
    if db.is_file():
        con = duckdb.connect(str(db), read_only=True)
        try:
            fresh = con.execute("SELECT head, format FROM meta").fetchone() == (
                current,
                CATALOGUE_FORMAT,
            )
        except duckdb.Error:
            fresh = False
        if fresh:
            return con
        con.close()
    build(archive, db)
    return duckdb.connect(str(db), read_only=True)


def sessions(
    con: duckdb.DuckDBPyConnection,
    subject: str | None = None,
    datatype: str | None = None,
    derivative: str | None = None,
    since: str | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    where, params = [], []
    if subject:
        where.append("s.subject = ?")
        params.append(subject.removeprefix("sub-"))
    if datatype:
        where.append("list_contains(string_split(coalesce(s.datatypes, ''), ','), ?)")
        params.append(datatype)
    if derivative:
        where.append("list_contains(string_split(coalesce(s.derivatives, ''), ','), ?)")
        params.append(derivative)
    if since:
        seq = con.execute("SELECT seq FROM versions WHERE tag = ?", [since]).fetchone()
        if seq is None:
            raise PasserelleError(f"no version {since!r} in this archive")
        where.append("v.seq >= ?")
        params.append(seq[0])
    sql = (
        "SELECT s.subject, s.session, s.datatypes, s.dicom, s.derivatives, s.since, s.updated, "
        "s.generated_by, s.files FROM sessions s LEFT JOIN versions v ON v.tag = s.since"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY s.subject, s.session"
    )
    cur = con.execute(sql, params)
    return [d[0] for d in cur.description], cur.fetchall()


def totals(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    one = con.execute(
        "SELECT count(DISTINCT subject), count(*) FROM sessions WHERE datatypes IS NOT NULL"
    ).fetchone()
    by_type = con.execute(
        "SELECT datatype, count(DISTINCT subject || '/' || session), count(*) FROM files "
        "WHERE dataset = '.' AND datatype <> '' GROUP BY datatype ORDER BY datatype"
    ).fetchall()
    by_derivative = con.execute(
        "SELECT derivative, count(*), string_agg(DISTINCT generated_by, '; '), min(since) "
        "FROM derivatives GROUP BY derivative ORDER BY derivative"
    ).fetchall()
    versions = con.execute("SELECT tag FROM versions ORDER BY seq").fetchall()
    return {
        "subjects": one[0],
        "sessions": one[1],
        "datatypes": {t: {"sessions": s, "files": f} for t, s, f in by_type},
        "derivatives": {
            d: {"sessions": n, "generated_by": g, "since": s} for d, n, g, s in by_derivative
        },
        "versions": [v[0] for v in versions],
    }


def run_sql(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        cur = con.execute(sql)
    except duckdb.Error as exc:
        raise PasserelleError(f"query failed: {str(exc).splitlines()[0]}") from None
    return [d[0] for d in cur.description], cur.fetchall()


def table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain aligned table for the terminal."""
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
