#!/usr/bin/env python3
"""Wall time of the Snakemake workflow against one bare dcm2niix call on the same inbox.

For each workload the inbox is built (untimed), its files read once so both sides start
from a warm page cache, then timed:

* bare: ``dcm2niix -b y -z y -o TMP INBOX`` (recursive, one call). dcm2niix cannot read
  gzipped DICOM, so when the inbox holds ``.gz`` files it runs on an untimed mirror with
  those files decompressed and every other file symlinked;
* workflow: ``snakemake --cores 2`` into a fresh output with a fresh key. Its merged
  output is read line by line and stamped as it arrives (Snakemake's own log stamps have
  one-second resolution), which splits the run into planning (start to the first job:
  start-up, config, header index, plan, DAG), conversion (first convert_session start to
  last finish), dataset steps (finalize, validate, report) and the rest (scheduling and
  exit);
* no-op re-run: the same command again, which must start no job.

Run from anywhere: ``.venv/bin/python scripts/bench_convert.py --workloads demo,testdata``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
PYTHON = BIN / "python"
DEMO_CACHE = REPO / ".cache" / "demo-sources"
TESTDATA_EXAMS = ("siemens_xa30_exam", "philips_mprage_classic", "ge_siemens_epi")
SYNTH_SOURCES = ("siemens_xa30_exam/In", "philips_mprage_classic/In")
DATASET_RULES = ("finalize", "validate", "report")
GZIP_MAGIC = b"\x1f\x8b"

_JOB_START = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")
_JOB_ID = re.compile(r"^\s*jobid: (\d+)\s*$")
_JOB_END = re.compile(r"Finished job(?:id:)? (\d+)")


@dataclass
class Job:
    rule: str
    start: float
    end: float | None = None


@dataclass
class WorkflowRun:
    wall_s: float
    jobs: list[Job]
    plan_line_s: float | None  # when the "passerelle: N session(s)" line came out

    def of(self, *rules: str) -> list[Job]:
        return [j for j in self.jobs if j.rule in rules]

    def span(self, *rules: str) -> float:
        jobs = self.of(*rules)
        if not jobs:
            return 0.0
        return max(j.end or self.wall_s for j in jobs) - min(j.start for j in jobs)

    @property
    def planning_s(self) -> float:
        return min((j.start for j in self.jobs), default=self.wall_s)


@dataclass
class Result:
    workload: str
    files: int
    sessions: int
    bare_s: float
    workflow_s: float
    planning_s: float
    conversion_s: float
    dataset_s: float
    other_s: float
    noop_s: float
    bare_outputs: int
    workflow_outputs: int
    bare_rc: int
    bare_input: str
    session_s: list[float] = field(default_factory=list)
    dataset_step_s: dict[str, float] = field(default_factory=dict)
    plan_line_s: float | None = None

    @property
    def ratio(self) -> float:
        return self.workflow_s / self.bare_s

    @property
    def conversion_ratio(self) -> float:
        return self.conversion_s / self.bare_s


# ------------------------------------------------------------------------ inboxes


def iter_files(root: Path):
    """Every regular file under root, following symlinked folders as the workflow does."""
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file():
                yield path


def build_demo(dest: Path) -> None:
    cmd = [str(PYTHON), "-m", "passerelle.demo", str(dest), "--cache", str(DEMO_CACHE)]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def build_testdata(dest: Path, shared: Path) -> None:
    dest.mkdir(parents=True)
    for exam in TESTDATA_EXAMS:
        (dest / exam).symlink_to(shared / "testdata" / exam / "In", target_is_directory=True)


def build_synthetic(dest: Path, shared: Path, patients: int, studies: int) -> None:
    cmd = [str(PYTHON), "-m", "passerelle.synth"]
    for src in SYNTH_SOURCES:
        cmd += ["--source", str(shared / "testdata" / src)]
    cmd += ["--patients", str(patients), "--studies", str(studies), str(dest)]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def bare_input(inbox: Path, mirror: Path) -> tuple[Path, str]:
    """The folder bare dcm2niix reads: the inbox, or a mirror with .gz files decompressed."""
    files = list(iter_files(inbox))
    gz = [p for p in files if is_gzip(p)]
    if not gz:
        return inbox, "inbox"
    t0 = time.perf_counter()
    gz_set = set(gz)
    for path in files:
        rel = path.relative_to(inbox)
        dst = mirror / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if path in gz_set:
            dst.with_name(dst.name.removesuffix(".gz")).write_bytes(
                gzip.decompress(path.read_bytes())
            )
        else:
            dst.symlink_to(path.resolve())
    took = time.perf_counter() - t0
    return mirror, f"mirror ({len(gz)} .gz decompressed in {took:.1f} s, untimed)"


def warm(inbox: Path) -> int:
    """Read every file once so neither side pays for a cold page cache; return the count."""
    n = 0
    for path in iter_files(inbox):
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass
        n += 1
    return n


# ------------------------------------------------------------------------ timing


def run_bare(src: Path, out: Path) -> tuple[float, int, int]:
    out.mkdir(parents=True)
    cmd = [str(BIN / "dcm2niix"), "-b", "y", "-z", "y", "-o", str(out), str(src)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - t0
    return wall, len(list(out.rglob("*.nii.gz"))), proc.returncode


def run_workflow(inbox: Path, output: Path, key: Path, log: Path) -> WorkflowRun:
    cmd = [
        str(BIN / "snakemake"), "--cores", "2", "--config",
        f"inbox={inbox}", f"output={output}", f"key_file={key}",
    ]  # fmt: skip
    jobs: dict[str, Job] = {}
    pending: Job | None = None
    plan_line = None
    with log.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - t0
            fh.write(f"{now:9.3f} {line}")
            if m := _JOB_START.match(line):
                pending = Job(m.group(1), now)
            elif (m := _JOB_ID.match(line)) and pending is not None:
                jobs[m.group(1)] = pending
                pending = None
            elif (m := _JOB_END.search(line)) and m.group(1) in jobs:
                jobs[m.group(1)].end = now
            elif line.startswith("passerelle:") and plan_line is None:
                plan_line = now
        rc = proc.wait()
        wall = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text().splitlines()[-40:]
        raise SystemExit(f"workflow failed (exit {rc}); log {log}:\n" + "\n".join(tail))
    return WorkflowRun(wall, list(jobs.values()), plan_line)


def keygen(path: Path) -> None:
    subprocess.run(
        [str(BIN / "passerelle"), "keygen", str(path)], check=True, stdout=subprocess.DEVNULL
    )


def bench(name: str, inbox: Path, work: Path) -> Result:
    files = warm(inbox)
    src, how = bare_input(inbox, work / "bare_in")
    if src != inbox:
        warm(src)
    print(f"[{name}] {files} files; bare dcm2niix on {how}", file=sys.stderr)
    bare_s, bare_n, bare_rc = run_bare(src, work / "bare_out")
    print(f"[{name}] bare {bare_s:.1f} s; workflow...", file=sys.stderr)
    key, output = work / "bench.key", work / "output"
    keygen(key)
    first = run_workflow(inbox, output, key, work / "workflow.log")
    again = run_workflow(inbox, output, key, work / "noop.log")
    if again.jobs:
        raise SystemExit(f"[{name}] the no-op re-run started {len(again.jobs)} job(s)")
    conversion = first.span("convert_session")
    dataset = first.span(*DATASET_RULES)
    return Result(
        workload=name,
        files=files,
        sessions=len(first.of("convert_session")),
        bare_s=bare_s,
        workflow_s=first.wall_s,
        planning_s=first.planning_s,
        conversion_s=conversion,
        dataset_s=dataset,
        other_s=first.wall_s - first.planning_s - conversion - dataset,
        noop_s=again.wall_s,
        bare_outputs=bare_n,
        workflow_outputs=len(list((output / "bids").rglob("*.nii.gz"))),
        bare_rc=bare_rc,
        bare_input=how,
        session_s=[
            round((j.end or first.wall_s) - j.start, 3) for j in first.of("convert_session")
        ],
        dataset_step_s={r: round(first.span(r), 3) for r in DATASET_RULES},
        plan_line_s=first.plan_line_s,
    )


# ------------------------------------------------------------------------ report

COLUMNS = (
    ("workload", "workload", "{}"),
    ("files", "files", "{}"),
    ("sessions", "sessions", "{}"),
    ("bare s", "bare_s", "{:.1f}"),
    ("workflow s", "workflow_s", "{:.1f}"),
    ("ratio", "ratio", "{:.2f}"),
    ("conversion/bare", "conversion_ratio", "{:.2f}"),
    ("planning s", "planning_s", "{:.1f}"),
    ("conversion s", "conversion_s", "{:.1f}"),
    ("dataset steps s", "dataset_s", "{:.1f}"),
    ("no-op rerun s", "noop_s", "{:.1f}"),
)


def table(results: list[Result]) -> str:
    rows = [[title for title, _, _ in COLUMNS], ["---"] * len(COLUMNS)]
    for r in results:
        rows.append([fmt.format(getattr(r, attr)) for _, attr, fmt in COLUMNS])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="demo,testdata,synthetic")
    parser.add_argument("--patients", type=int, default=6, help="synthetic workload")
    parser.add_argument("--studies", type=int, default=2, help="synthetic workload")
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp dir)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(wanted) - {"demo", "testdata", "synthetic"}
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="passerelle-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    try:
        for name in wanted:
            work = root / name
            if work.exists():
                shutil.rmtree(work)
            work.mkdir()
            inbox = work / "inbox"
            t0 = time.perf_counter()
            if name == "demo":
                build_demo(inbox)
            elif name == "testdata":
                build_testdata(inbox, args.shared.resolve())
            else:
                build_synthetic(inbox, args.shared.resolve(), args.patients, args.studies)
            print(f"[{name}] inbox built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            results.append(bench(name, inbox, work))
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    if args.json:
        payload = {
            "host": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "loadavg_at_end": os.getloadavg(),
            },
            "results": [
                {**asdict(r), "ratio": r.ratio, "conversion_ratio": r.conversion_ratio}
                for r in results
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
