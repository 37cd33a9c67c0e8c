#!/usr/bin/env python3
"""Files per second of Passerelle's pseudonymise stage against two PyPI de-identifiers.

All three run, in one process and one run, on the same inbox of real DICOM files:

* Passerelle: ``pseudonymise_session`` on every session spec the planner wrote, with
  workers=1 and again with workers=2. Planning (header index, grouping, specs) is done
  once beforehand and is not timed. The stage does more than the peers per file: keyed
  HMAC UIDs, a per-patient date shift, recursion into sequences, private-tag cleaning, a
  free-text screen and the PHI gate scan of every output element;
* deid (pydicom/deid): ``get_identifiers`` then ``replace_identifiers`` with its default
  recipe (``DeidRecipe()``), one file per call so errors can be counted per file;
* dicom-anonymizer (KitwareMedical): ``anonymize_dicom_file(in, out)`` with its defaults.

The peers run single-process (neither has a pool of its own). The inbox is the real test
data (GE classic, Siemens mosaic, Philips classic decompressed, Siemens XA30 enhanced)
topped up to ``--min-files`` with synthetic copies of the Philips series (new identity and
new UIDs, see ``passerelle.synth``); every SOPInstanceUID is checked to be distinct, so the
planner sets nothing aside as a duplicate. Building it and a first read of every file
(page cache) are untimed.

Install the peers first: ``.venv/bin/pip install -e '.[bench]'``.
Run: ``.venv/bin/python scripts/bench_deid.py [--json PATH]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pydicom

from passerelle.config import settings_from
from passerelle.dicom.classify import is_mosaic, object_class
from passerelle.keys import generate_key_file, load_key
from passerelle.plan import prepare, spec_path
from passerelle.pseudonymise import pseudonymise_session
from passerelle.synth import build_synthetic_inbox

REPO = Path(__file__).resolve().parents[1]
# (folder under testdata, name in the inbox)
REAL_SOURCES = (
    ("ge_siemens_epi/In", "ge_siemens_epi"),
    ("philips_mprage_classic/In", "philips_mprage_classic"),
    ("siemens_xa30_exam/In", "siemens_xa30_exam"),
)
SYNTH_SOURCE = "philips_mprage_classic"  # its decompressed copy in the inbox
GZIP_MAGIC = b"\x1f\x8b"
ENHANCED_MARKERS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")
MAX_ERRORS_KEPT = 5

PASSERELLE_NOTE = (
    "Passerelle does more per file than the peers: keyed HMAC-SHA256 UIDs, a per-patient "
    "date shift, recursion into every sequence, private-tag cleaning (safe vendor fields "
    "kept and checked), a free-text screen, and the PHI gate scan of every output element "
    "against the session's source identities (plus a per-session read of every source "
    "header to build that watchlist, and an audit file)."
)


@dataclass
class Row:
    tool: str
    files: int
    errors: int
    seconds: float
    detail: str = ""
    error_samples: list[str] = field(default_factory=list)
    group_s: dict[str, float] = field(default_factory=dict)  # seconds per input group

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds else math.nan


# ------------------------------------------------------------------------ inbox


def is_dicom_bytes(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def stage_real(testdata: Path, inbox: Path) -> Counter:
    """Copy every DICOM file of the real exams into the inbox, gunzipping as it goes."""
    skipped: Counter = Counter()
    for folder, name in REAL_SOURCES:
        src = testdata / folder
        if not src.is_dir():
            raise SystemExit(f"bench_deid: {src} is missing (see --shared)")
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            data = path.read_bytes()
            rel = path.relative_to(src)
            if data[:2] == GZIP_MAGIC:
                data = gzip.decompress(data)
                rel = rel.with_suffix("")  # x.dcm.gz -> x.dcm
            if not is_dicom_bytes(data):
                skipped[name] += 1  # README-*.txt beside the series
                continue
            out = inbox / "real" / name / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
    return skipped


def group_of(rel: str) -> str:
    """Input group of an inbox-relative path (one scanner and kind of file each)."""
    parts = rel.split("/")
    if parts[0] == "synth":
        return "Philips classic synthetic"
    name = parts[1]
    if name == "ge_siemens_epi":
        return "GE classic" if parts[2].endswith("GE") else "Siemens mosaic"
    if name == "siemens_xa30_exam":
        return "Siemens XA30 enhanced + non-image"
    return "Philips classic"


def inbox_files(inbox: Path) -> list[Path]:
    return sorted(p for p in inbox.rglob("*") if p.is_file())


def build_inbox(testdata: Path, inbox: Path, min_files: int) -> dict:
    skipped = stage_real(testdata, inbox)
    real = len(inbox_files(inbox))
    source = inbox / "real" / SYNTH_SOURCE
    per_copy = len(inbox_files(source))
    copies = max(0, math.ceil((min_files - real) / per_copy))
    synth = {}
    if copies:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            synth = build_synthetic_inbox([source], inbox / "synth", copies, 1, seed=7)
    return {
        "real_files": real,
        "synthetic_files": synth.get("files", 0),
        "synthetic_copies_of": f"{SYNTH_SOURCE} x {copies}" if copies else None,
        "non_dicom_skipped": dict(skipped),
    }


def describe(files: list[Path]) -> tuple[Counter, list[str]]:
    """(mix by kind, duplicate SOPInstanceUIDs) from the headers."""
    mix: Counter = Counter()
    seen: dict[str, Path] = {}
    dupes = []
    tags = ["SOPClassUID", "SOPInstanceUID", "ImageType", "NumberOfFrames", *ENHANCED_MARKERS]
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
        sop = str(ds.get("SOPInstanceUID", ""))
        if sop in seen:
            dupes.append(sop)
        seen[sop] = path
        image_type = [str(t) for t in (ds.get("ImageType") or [])]
        if object_class(str(ds.get("SOPClassUID", ""))) != "image":
            mix["non-image"] += 1
        elif any(m in ds for m in ENHANCED_MARKERS):
            mix["enhanced multi-frame"] += 1
        elif is_mosaic(image_type):
            mix["classic mosaic"] += 1
        else:
            mix["classic single-frame"] += 1
    return mix, dupes


def warm(files: list[Path]) -> int:
    return sum(len(p.read_bytes()) for p in files)


def count_written(root: Path, suffix: str | None = None) -> int:
    if not root.exists():
        return 0
    return sum(
        1 for p in root.rglob("*") if p.is_file() and (suffix is None or p.name.endswith(suffix))
    )


# ------------------------------------------------------------------------ tools


def plan_passerelle(inbox: Path, work: Path):
    key_file = work / "key" / "bench.key"
    generate_key_file(key_file)
    raw = {
        "inbox": str(inbox),
        "output": str(work / "passerelle-plan"),
        "key_file": str(key_file),
        "bids_map": str(REPO / "config" / "bids_map.yaml"),
        "dataset": {"name": "bench-deid"},
    }
    settings = settings_from(raw, "bench_deid", work)
    key = load_key(key_file)
    t0 = time.perf_counter()
    plan = prepare(settings, key)
    plan_s = time.perf_counter() - t0
    specs = []
    planned = 0
    for sub, ses in plan.pending:
        path = spec_path(settings.work, sub, ses)
        rels = [f[0] for s in json.loads(path.read_text())["series"] for f in s["files"]]
        groups = {group_of(rel) for rel in rels}
        specs.append((path, groups.pop() if len(groups) == 1 else "mixed"))
        planned += len(rels)
    info = {
        "plan_s": round(plan_s, 2),
        "sessions": len(specs),
        "files_in_specs": planned,
        "dispositions": plan.counts,
    }
    return settings, key, specs, info


def run_passerelle(settings, key, specs: list[tuple[Path, str]], out: Path, workers: int) -> Row:
    results = []
    group_s: Counter = Counter()
    t0 = time.perf_counter()
    for spec, group in specs:
        name = spec.parent.name + "_" + spec.stem
        t = time.perf_counter()
        results.append(
            pseudonymise_session(
                spec, settings, key, out / name, out / f"{name}.result.json", workers
            )
        )
        group_s[group] += time.perf_counter() - t
    seconds = time.perf_counter() - t0
    set_aside = [
        f"{rel}: {f['reason']}"
        for r in results
        for s in r["series"]
        for rel, f in s["files"].items()
        if not f["pseudo"]
    ]
    withheld = [h for r in results for h in r["withheld"]]
    reasons = Counter(x.split(": ", 1)[1] for x in set_aside)
    detail = f"{len(specs)} sessions; PHI gate hits {len(withheld)}"
    if reasons:
        detail += "; set aside: " + ", ".join(f"{n} x {r}" for r, n in reasons.most_common(3))
    return Row(
        f"Passerelle (workers={workers})",
        count_written(out, ".dcm"),
        len(set_aside),
        seconds,
        detail,
        (set_aside + withheld)[:MAX_ERRORS_KEPT],
        dict(group_s),
    )


def run_peer(tool: str, files: list[Path], inbox: Path, out: Path, one) -> Row:
    errors: list[str] = []
    group_s: Counter = Counter()
    t0 = time.perf_counter()
    for path in files:
        rel = path.relative_to(inbox)
        target = out / rel
        t = time.perf_counter()
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            one(path, target)
        except Exception as exc:
            errors.append(f"{rel}: {type(exc).__name__}: {exc}"[:300])
        group_s[group_of(rel.as_posix())] += time.perf_counter() - t
    seconds = time.perf_counter() - t0
    reasons = Counter(e.split(": ", 2)[1] for e in errors)
    detail = ", ".join(f"{n} x {r}" for r, n in reasons.most_common(3))
    return Row(
        tool,
        count_written(out),
        len(errors),
        seconds,
        detail,
        errors[:MAX_ERRORS_KEPT],
        dict(group_s),
    )


def deid_one():
    from deid.config import DeidRecipe
    from deid.dicom import get_identifiers, replace_identifiers
    from deid.logger import bot

    bot.level = -3  # ERROR: its default (DEBUG) prints several lines per file to stderr
    recipe = DeidRecipe()  # the default recipe shipped with deid ("dicom")

    def one(path: Path, target: Path) -> None:
        ids = get_identifiers([str(path)])
        replace_identifiers(
            [str(path)],
            ids=ids,
            deid=recipe,
            save=True,
            overwrite=True,
            output_folder=str(target.parent),
        )

    return one


def dicomanonymizer_one():
    from dicomanonymizer import anonymize_dicom_file

    def one(path: Path, target: Path) -> None:
        anonymize_dicom_file(str(path), str(target))

    return one


def peer_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# ------------------------------------------------------------------------ report


def table(rows: list[Row], base: Row) -> str:
    lines = [
        "| tool | files | errors | seconds | files/s | ratio vs Passerelle (workers=1) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r.files_per_s / base.files_per_s if base.files_per_s else math.nan
        lines.append(
            f"| {r.tool} | {r.files} | {r.errors} | {r.seconds:.1f} | "
            f"{r.files_per_s:.1f} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def group_table(rows: list[Row], groups: Counter) -> str:
    names = sorted(groups, key=lambda g: -groups[g])
    lines = [
        "| tool | " + " | ".join(f"{g} ({groups[g]})" for g in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for r in rows:
        cells = [f"{groups[g] / r.group_s[g]:.1f}" if r.group_s.get(g) else "-" for g in names]
        lines.append(f"| {r.tool} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared",
        help="folder holding testdata/ (default: ../shared beside the repository)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="empty or new folder for inbox and outputs (kept); default: a temp dir, removed",
    )
    parser.add_argument("--min-files", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    testdata = args.shared / "testdata"
    peers = {"deid": deid_one, "dicom-anonymizer": dicomanonymizer_one}
    makers = {}
    missing = {}
    for dist, make in peers.items():
        try:
            makers[dist] = make()
        except ImportError as exc:
            missing[dist] = f"not installed ({exc}); pip install -e '.[bench]'"

    if args.workdir is None:
        work = Path(tempfile.mkdtemp(prefix="bench-deid-"))
        cleanup = True
    else:
        work = args.workdir.resolve()
        if work.exists() and any(work.iterdir()):
            parser.error(f"--workdir {work} is not empty")
        work.mkdir(parents=True, exist_ok=True)
        cleanup = False
    try:
        inbox = work / "inbox"
        print(f"building the inbox in {inbox} (untimed) ...", file=sys.stderr)
        built = build_inbox(testdata, inbox, args.min_files)
        files = inbox_files(inbox)
        mix, dupes = describe(files)
        groups = Counter(group_of(p.relative_to(inbox).as_posix()) for p in files)
        if dupes:
            raise SystemExit(f"bench_deid: {len(dupes)} duplicate SOPInstanceUIDs in the inbox")
        if len(files) < args.min_files:
            raise SystemExit(f"bench_deid: only {len(files)} files (< {args.min_files})")
        print("planning Passerelle sessions (untimed) ...", file=sys.stderr)
        settings, key, specs, plan_info = plan_passerelle(inbox, work)
        nbytes = warm(files)
        load_before = os.getloadavg()

        rows: list[Row] = []
        out = work / "out"
        for workers in (1, 2):
            print(f"timing Passerelle workers={workers} ...", file=sys.stderr)
            warm(files)
            rows.append(
                run_passerelle(settings, key, specs, out / f"passerelle-w{workers}", workers)
            )
        for dist, one in makers.items():
            print(f"timing {dist} ...", file=sys.stderr)
            warm(files)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warnings on vendor quirks
                row = run_peer(dist, files, inbox, out / dist, one)
            row.tool = f"{dist} {peer_version(dist)}"
            rows.append(row)
        base = rows[0]
        load_after = os.getloadavg()
        load_text = (
            f"load average 1/5/15 min {'/'.join(f'{x:.2f}' for x in load_before)} before, "
            f"{'/'.join(f'{x:.2f}' for x in load_after)} after"
        )

        mix_text = ", ".join(f"{n} {k}" for k, n in mix.most_common())
        origin_text = ", ".join(f"{n} {k}" for k, n in groups.most_common())
        print()
        print(
            f"Inbox: {len(files)} DICOM files ({nbytes / 2**20:.0f} MiB), all distinct "
            f"SOPInstanceUIDs. Mix: {mix_text}. Origin: {origin_text}."
        )
        print(
            f"Passerelle plan (untimed, {plan_info['plan_s']} s): {plan_info['sessions']} "
            f"sessions, {plan_info['files_in_specs']} files in specs, dispositions "
            f"{plan_info['dispositions']}."
        )
        print(
            f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"pydicom {pydicom.__version__}; {load_text}. Peers single-process; "
            "page cache warmed before each tool."
        )
        print()
        print(table(rows, base))
        print()
        print("Files/s by input group (files in brackets):")
        print()
        print(group_table(rows, groups))
        print()
        print("Ratio: the tool's files/s divided by Passerelle's (workers=1); >1 is faster.")
        print(PASSERELLE_NOTE)
        for r in rows:
            if r.detail:
                print(f"- {r.tool}: {r.detail}")
            for e in r.error_samples[:3]:
                print(f"    e.g. {e}")
        for dist, why in missing.items():
            print(f"- {dist}: {why}")

        if args.json:
            payload = {
                "inbox": {
                    "files": len(files),
                    "bytes": nbytes,
                    "mix": dict(mix),
                    **built,
                },
                "passerelle_plan": plan_info,
                "groups": dict(groups),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "pydicom": pydicom.__version__,
                    "loadavg_before": load_before,
                    "loadavg_after": load_after,
                    "deid": peer_version("deid"),
                    "dicom-anonymizer": peer_version("dicom-anonymizer"),
                },
                "rows": [
                    {
                        **asdict(r),
                        "files_per_s": r.files_per_s,
                        "ratio_vs_passerelle_w1": r.files_per_s / base.files_per_s,
                    }
                    for r in rows
                ],
                "missing_peers": missing,
                "note": PASSERELLE_NOTE,
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if cleanup:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
