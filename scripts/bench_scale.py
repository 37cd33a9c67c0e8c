#!/usr/bin/env python3
"""Scale on Slurm: planning cost for 100, 1,000 and 10,000 sessions, and Slurm throughput
against a local run of the same inbox.

* planning: a synthetic inbox of N sessions (N/2 patients x 2 studies, one real Siemens
  mosaic each, distinct synthetic identities) is planned by a dry run with the Slurm
  profile, cold (nothing indexed yet, as for a new delivery); figures: wall time, peak
  RSS of the snakemake process, and Slurm jobs per session from the dry run's job groups;
* peer: a plain Snakefile of the same shape (the five per-session rules with the same
  inputs, one group, one closing rule; every command `true`, no planning of its own) planned
  the same way: what Snakemake alone costs for that many jobs. The 60 s goal was set for a
  shape of two per-session rules, so that peer is timed too;
* throughput: the same kind of inbox with --throughput sessions runs for real, locally
  (`--cores 2`) and through the Slurm profile on the local one-node cluster
  (scripts/local_slurm.sh); figures: sessions per minute and the Slurm/local time ratio.

Goals (issue 6): planning 10,000 sessions < 60 s; <= 1 Slurm job per session; Slurm
within 1.5x the local time.

Run: ``.venv/bin/python scripts/bench_scale.py`` (needs ../shared/testdata and, for the
throughput part, a running Slurm; writes docs/scale.json and docs/scale.png).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from passerelle.synth import build_synthetic_inbox  # noqa: E402

SOURCE = Path(os.environ.get("PASSERELLE_SHARED", REPO.parent / "shared")) / "testdata"
MOSAIC = SOURCE / "ge_siemens_epi/In/20180918Si/mr_0003/epi_pe_ap-00001.dcm"
STUDIES = 2
GROUP = re.compile(r"^\S.*Group job (\S+) ", re.M)
TOP_RULE = re.compile(r"^rule (\w+):", re.M)
# Rules Snakemake runs in the main process (localrules, and the target rule `all`).
LOCAL = {
    "risk", "finalize", "validate", "report", "reintegrate", "tissue_volumes", "qc_report", "all",
}  # fmt: skip
RUN_TIMEOUT = 3600


def _key(path: Path) -> Path:
    path.write_text("0123456789abcdef" * 4 + "\n")
    path.chmod(0o600)
    return path


def _inbox(base: Path, sessions: int, series: Path | None = None) -> Path:
    """N sessions, each a copy of series (default: the one mosaic) under new identities."""
    if series is None:
        series = base / "source" / "series"
        series.mkdir(parents=True, exist_ok=True)
        link = series / MOSAIC.name
        if not link.exists():
            link.symlink_to(MOSAIC)
    inbox = base / f"inbox-{sessions}-{series.name}"
    counts = build_synthetic_inbox([series], inbox, sessions // STUDIES, STUDIES)
    assert counts["sessions"] == sessions, counts
    return inbox


def _run(cmd: list[str], log: Path, cwd: Path = REPO) -> tuple[float, int, int]:
    """Run cmd (from the repository); (wall seconds, peak RSS in MB, exit code)."""
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.kill()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss // 1024, proc.returncode


def _snakemake(inbox: Path, out: Path, key: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", *args, "--config", f"inbox={inbox}",
        f"output={out}", f"key_file={key}", "archive=",
    ]  # fmt: skip


# The peer: the workflow's per-session shape in a plain Snakefile (see the module docstring).
PEER_STEP = """
rule {name}:
    input: {inputs}
    output: directory("{name}/{{s}}"), "{name}/{{s}}.json"
    group: "session"
    resources: mem_mb=1000, runtime=30
    shell: "true"
"""
PEER_SHAPES = {
    # step: the steps whose outputs it reads (the workflow's per-session rules)
    "same shape": {
        "pseudonymise": [], "convert": ["pseudonymise"], "deface": ["convert"],
        "segment": ["convert"], "derivatives": ["convert", "deface", "segment"],
    },
    "two rules": {"pseudonymise": [], "convert": ["pseudonymise"]},
}  # fmt: skip


def _peer_snakefile(steps: dict[str, list[str]]) -> str:
    rules = ['N = int(config["sessions"])\nSESSIONS = [f"{i:05d}" for i in range(N)]\n']
    last = [name for name in steps if not any(name in deps for deps in steps.values())]
    rules.append(
        "rule all:\n    input: "
        + ", ".join(f'expand("{name}/{{s}}.json", s=SESSIONS)' for name in last)
        + "\n"
    )
    for name, deps in steps.items():
        inputs = ['"specs/{s}.json"'] if not deps else []
        inputs += [f'"{d}/{{s}}.json", "{d}/{{s}}"' for d in deps]
        rules.append(PEER_STEP.format(name=name, inputs=", ".join(inputs)))
    return "\n".join(rules)


def peer(base: Path, sessions: int, shape: str) -> dict[str, float]:
    """Dry run of the plain Snakefile of that shape with the Slurm profile's executor."""
    folder = base / f"peer-{shape.replace(' ', '-')}-{sessions}"
    (folder / "specs").mkdir(parents=True)
    for i in range(sessions):
        (folder / "specs" / f"{i:05d}.json").write_text("{}")
    (folder / "Snakefile").write_text(_peer_snakefile(PEER_SHAPES[shape]))
    cmd = [
        sys.executable, "-m", "snakemake", "-n", "--quiet", "--executor", "slurm",
        "--jobs", "100", "--config", f"sessions={sessions}", "--group-components", "session=10",
    ]  # fmt: skip
    wall, rss, code = _run(cmd, folder / "dry-run.log", cwd=folder)
    if code != 0:
        raise SystemExit(f"peer dry run failed, see {folder / 'dry-run.log'}")
    shutil.rmtree(folder)
    return {"planning_s": round(wall, 2), "peak_rss_mb": rss}


def plan(base: Path, sessions: int, key: Path) -> dict[str, float]:
    inbox = _inbox(base, sessions)
    out = base / f"plan-{sessions}"
    log = base / f"plan-{sessions}.log"
    # Quiet: a real run starts once the DAG is built; listing its 50,000 jobs is a dry run's
    # own output (a third of the time at 10,000 sessions), so it is timed apart.
    dry_run = _snakemake(inbox, out, key, "-n", "--profile", "profiles/slurm")
    wall, rss, code = _run([*dry_run, "--quiet"], log)
    text = log.read_text()
    if code != 0:
        raise SystemExit(f"dry run of {sessions} failed, see {log}")
    prepare = float(re.search(r"planned in ([\d.]+) s", text).group(1))
    # Again, headers now indexed: a re-plan (a nightly run, a retried run) costs this.
    warm, _, code = _run([*dry_run, "--quiet"], base / f"plan-{sessions}-warm.log")
    if code != 0:
        raise SystemExit(f"second dry run of {sessions} failed")
    # And with the job listing, which names the Slurm jobs (one per group of sessions).
    listed, _, code = _run(dry_run, base / f"plan-{sessions}-listed.log")
    if code != 0:
        raise SystemExit(f"listing dry run of {sessions} failed")
    text = (base / f"plan-{sessions}-listed.log").read_text()
    groups = len(GROUP.findall(text))
    ungrouped = sum(1 for r in TOP_RULE.findall(text) if r not in LOCAL)
    shutil.rmtree(inbox)
    shutil.rmtree(out.with_name(out.name + ".work"), ignore_errors=True)
    peers = {shape: peer(base, sessions, shape) for shape in PEER_SHAPES}
    return {
        "sessions": sessions,
        "planning_s": round(wall, 2),
        "prepare_s": prepare,
        "warm_planning_s": round(warm, 2),
        "listed_planning_s": round(listed, 2),
        "peak_rss_mb": rss,
        "slurm_jobs": groups + ungrouped,
        "jobs_per_session": round((groups + ungrouped) / sessions, 3),
        "peer_same_shape_s": peers["same shape"]["planning_s"],
        "peer_two_rules_s": peers["two rules"]["planning_s"],
        "over_peer": round(wall / peers["same shape"]["planning_s"], 2),
    }


def throughput(base: Path, sessions: int, key: Path, series: Path | None) -> dict[str, float]:
    inbox = _inbox(base, sessions, series)
    files = sum(1 for p in inbox.rglob("*") if p.is_file())
    figures: dict[str, float] = {"sessions": sessions, "files_per_session": files // sessions}
    engines = {
        "local": ["--cores", "2"],
        "slurm": ["--profile", "profiles/slurm", "--slurm-logdir", str(base / "slurm-logs")],
    }
    for name, args in engines.items():
        out = base / f"run-{name}"
        log = base / f"run-{name}.log"
        wall, _, code = _run(_snakemake(inbox, out, key, *args), log)
        if code != 0:
            kept = Path(tempfile.gettempdir()) / f"bench-scale-{name}.log"
            shutil.copy(log, kept)  # the temporary folder goes with the exit
            raise SystemExit(f"{name} run failed, see {kept}")
        if name == "slurm":
            figures["slurm_jobs"] = len(re.findall(r"submitted with SLURM jobid", log.read_text()))
        figures[f"{name}_s"] = round(wall, 1)
        figures[f"{name}_sessions_per_min"] = round(sessions / wall * 60, 1)
    figures["slurm_over_local"] = round(figures["slurm_s"] / figures["local_s"], 2)
    same = subprocess.run(["diff", "-rq", base / "run-local", base / "run-slurm"], check=False)
    figures["identical_outputs"] = same.returncode == 0
    return figures


def draw(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["planning"]
    n = [r["sessions"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    left.plot(n, [r["planning_s"] for r in rows], "o-", label="dry run, quiet (total)")
    left.plot(n, [r["prepare_s"] for r in rows], "s--", label="of which: index + plan")
    left.plot(n, [r["warm_planning_s"] for r in rows], "^-", label="again, headers indexed")
    left.plot(n, [r["listed_planning_s"] for r in rows], "v-", label="again, listing every job")
    left.plot(n, [r["peer_same_shape_s"] for r in rows], "x:", color="black",
              label="plain Snakefile, same shape")  # fmt: skip
    left.plot(n, [r["peer_two_rules_s"] for r in rows], "+:", color="grey",
              label="plain Snakefile, 2 rules/session")  # fmt: skip
    left.axhline(60, color="grey", ls=":", label="goal: 60 s at 10,000")
    left.set(xscale="log", yscale="log", xlabel="sessions", ylabel="seconds",
             title="Planning a run (cold)")  # fmt: skip
    left.legend(fontsize=7)
    right.plot(n, [r["peak_rss_mb"] for r in rows], "o-", color="tab:green")
    right.set(xscale="log", xlabel="sessions", ylabel="MB",
              title="Peak memory of snakemake")  # fmt: skip
    for r in rows:
        right.annotate(f"{r['jobs_per_session']:g} job/session", (r["sessions"], r["peak_rss_mb"]),
                       fontsize=7, textcoords="offset points", xytext=(4, -10))  # fmt: skip
    tp = results.get("throughput")
    if tp:
        fig.suptitle(
            f"{tp['sessions']} sessions: local {tp['local_sessions_per_min']}/min, "
            f"Slurm {tp['slurm_sessions_per_min']}/min (x{tp['slurm_over_local']} the time)",
            fontsize=9,
        )
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 10000])
    parser.add_argument("--throughput", type=int, default=200, help="0: skip the real runs")
    parser.add_argument(
        "--series", type=Path, help="throughput: copy this series folder per session instead"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "scale.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "scale.png")
    args = parser.parse_args()
    if not MOSAIC.is_file():
        raise SystemExit(f"needs the shared test data ({MOSAIC})")
    # A run of one part keeps the other part's figures from the last run.
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results: dict = {
        "planning": [] if args.sizes else previous.get("planning", []),
        "machine": f"{os.cpu_count()} cores",
    }
    if not args.throughput and "throughput" in previous:
        results["throughput"] = previous["throughput"]
    with tempfile.TemporaryDirectory(prefix="passerelle-scale-") as tmp:
        base = Path(tmp)
        key = _key(base / "bench.key")
        for size in args.sizes:
            row = plan(base, size, key)
            print(json.dumps(row), flush=True)
            results["planning"].append(row)
        if args.throughput:
            results["throughput"] = throughput(base, args.throughput, key, args.series)
            print(json.dumps(results["throughput"]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if results["planning"]:
        draw(results, args.plot)
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
