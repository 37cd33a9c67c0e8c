#!/usr/bin/env python3
"""Archive and nightly-planning cost on a large synthetic archive, each against a peer in
the same invocation.

* archive: a published BIDS tree of N sessions (tiny NIfTI, sidecar, one pseudonymised DICOM
  and one derivatives file each, random bytes) is saved as the first version, then 10 new
  sessions as a second one (the nightly case); the peer is the same 10 sessions saved into
  an archive holding 10;
* query: `passerelle query` cold (catalogue built after the new version) and warm, against
  pybids indexing the same archive into its SQLite layout database (--pybids);
* planning: a synthetic DICOM inbox of N sessions (2 real Siemens files each, synthetic
  identities) is indexed and closed, 10 new sessions arrive, and `plan.prepare` is timed
  incremental (what a nightly run does) and full (every session re-derived, as before
  incremental planning); the peer is the same 10 arriving in an inbox of 10.

Run: ``.venv/bin/python scripts/bench_archive.py --sessions 5000`` (needs ../shared/testdata
for the planning part; about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from passerelle.archive.runstep import archive_run  # noqa: E402
from passerelle.config import settings_from  # noqa: E402
from passerelle.finalize import close_run  # noqa: E402
from passerelle.keys import SecretKey  # noqa: E402
from passerelle.plan import prepare  # noqa: E402
from passerelle.synth import build_synthetic_inbox  # noqa: E402

SOURCE = "ge_siemens_epi/In/20180918Si/mr_0003"
KEY = SecretKey(b"0123456789abcdef" * 4)


def _settings(base: Path, inbox: Path | None = None, work: Path | None = None):
    inbox = inbox or (base / "inbox")
    inbox.mkdir(parents=True, exist_ok=True)
    raw = {
        "inbox": str(inbox),
        "output": str(base / "output"),
        "key_file": "unused",
        "bids_map": str(REPO / "config" / "bids_map.yaml"),
        "dataset": {"name": "bench"},
        "archive": str(base / "archive"),
        "work": str(work) if work else None,
    }
    return settings_from(raw, "bench", base)


def _publish(bids: Path, first: int, count: int) -> list[tuple[str, str]]:
    """Write count synthetic sessions into a published tree, as finalize would."""
    sessions = []
    for i in range(first, first + count):
        sub, ses = f"{i:012x}", f"{i:08x}"
        sessions.append((sub, ses))
        anat = bids / f"sub-{sub}" / f"ses-{ses}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        name = f"sub-{sub}_ses-{ses}_T1w"
        (anat / f"{name}.nii.gz").write_bytes(os.urandom(2048))
        (anat / f"{name}.json").write_text(json.dumps({"RepetitionTime": 2.3, "Index": i}))
        dicom = bids / "sourcedata" / "dicom" / f"sub-{sub}" / f"ses-{ses}" / "001-1"
        dicom.mkdir(parents=True, exist_ok=True)
        (dicom / "00001.dcm").write_bytes(os.urandom(2048))
        seg = bids / "derivatives" / "passerelle-seg" / f"sub-{sub}" / f"ses-{ses}" / "anat"
        seg.mkdir(parents=True, exist_ok=True)
        (seg / f"{name.replace('_T1w', '')}_desc-brain_mask.nii.gz").write_bytes(os.urandom(512))
    (bids / "dataset_description.json").write_text(
        json.dumps(
            {"Name": "bench", "BIDSVersion": "1.10.0", "GeneratedBy": [{"Name": "passerelle"}]}
        )
    )
    (bids / "derivatives" / "passerelle-seg" / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "seg",
                "BIDSVersion": "1.10.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "passerelle-seg", "Version": "0.1.0"}],
            }
        )
    )
    return sessions


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def _query(archive: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "passerelle", "query", "--archive", str(archive), "--json", *extra],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return time.perf_counter() - start


def bench_archive(base: Path, n: int, pybids: bool) -> dict[str, float]:
    sink = open(os.devnull, "w")  # noqa: SIM115
    big = _settings(base / "big")
    _publish(big.bids_dir, 0, n)
    t_first, _ = _timed(archive_run, big, "first", [], sink)
    new = _publish(big.bids_dir, n, 10)
    t_nightly, _ = _timed(archive_run, big, "nightly", new, sink)
    small = _settings(base / "small")
    _publish(small.bids_dir, 0, 10)
    archive_run(small, "first", [], sink)
    new_small = _publish(small.bids_dir, 10, 10)
    t_peer, _ = _timed(archive_run, small, "nightly", new_small, sink)
    cold = _query(big.archive)
    warm = min(_query(big.archive) for _ in range(3))
    warm_filtered = min(_query(big.archive, "--subject", f"{n - 1:012x}") for _ in range(3))
    result = {
        "first_save_s": t_first,
        "nightly_save_10_s": t_nightly,
        "peer_nightly_save_10_into_10_s": t_peer,
        "query_cold_s": cold,
        "query_warm_s": warm,
        "query_one_subject_warm_s": warm_filtered,
    }
    if pybids:
        from bids import BIDSLayout

        db = base / "pybids.sqlite"
        start = time.perf_counter()
        BIDSLayout(str(big.archive), validate=False, derivatives=False, database_path=str(db))
        result["pybids_index_s"] = time.perf_counter() - start
        start = time.perf_counter()
        layout = BIDSLayout(str(big.archive), validate=False, database_path=str(db))
        layout.get_sessions()
        result["pybids_reload_and_sessions_s"] = time.perf_counter() - start
    return result


def bench_planning(base: Path, n: int, testdata: Path) -> dict[str, float]:
    source = testdata / SOURCE
    out: dict[str, float] = {}
    for label, count in (("big", n), ("peer", 10)):
        where = base / f"plan-{label}"
        settings = _settings(where, where / "inbox")
        build_synthetic_inbox([source], where / "inbox" / "old", patients=count, studies=1)
        t_index, plan = _timed(prepare, settings, KEY)
        close_run(settings, plan.run_id)
        # The same state twice: one plans incrementally, the other re-derives every session.
        shutil.copytree(settings.work, where / "work-full")
        full_settings = _settings(where, where / "inbox", where / "work-full")
        build_synthetic_inbox([source], where / "inbox" / "new", patients=10, studies=1, seed=9)
        t_inc, plan = _timed(prepare, settings, KEY)
        assert len(plan.pending) == 10, plan.pending
        t_again, _ = _timed(prepare, settings, KEY)
        t_full, full = _timed(prepare, full_settings, KEY, 2, True)
        assert full.pending == plan.pending
        out.update(
            {
                f"{label}_initial_index_s": t_index,
                f"{label}_nightly_plan_s": t_inc,
                f"{label}_replan_unchanged_s": t_again,
                f"{label}_full_replan_s": t_full,
            }
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=5000)
    p.add_argument("--pybids", action="store_true", help="also time pybids on the archive")
    p.add_argument("--skip-planning", action="store_true")
    p.add_argument("--skip-archive", action="store_true")
    p.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        results: dict[str, float] = {}
        if not args.skip_archive:
            results.update(bench_archive(base, args.sessions, args.pybids))
        if not args.skip_planning:
            results.update(bench_planning(base, args.sessions, Path(args.shared) / "testdata"))
    finally:
        for root, dirs, _ in os.walk(base):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(base, ignore_errors=True)
    n = args.sessions
    print(f"sessions: {n}")
    for key, value in results.items():
        print(f"{key}: {value:.3f}")
    if "nightly_save_10_s" in results:
        print(
            f"ratio nightly save, {n} vs 10 archived: "
            f"{results['nightly_save_10_s'] / results['peer_nightly_save_10_into_10_s']:.2f}"
        )
    if "pybids_index_s" in results:
        print(
            f"ratio pybids index / passerelle query cold: "
            f"{results['pybids_index_s'] / results['query_cold_s']:.1f}"
        )
    if "big_nightly_plan_s" in results:
        print(
            f"ratio nightly plan, {n} vs 10 planned before: "
            f"{results['big_nightly_plan_s'] / results['peer_nightly_plan_s']:.2f}"
        )
        print(
            f"ratio full re-derivation / incremental, {n} sessions: "
            f"{results['big_full_replan_s'] / results['big_nightly_plan_s']:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
