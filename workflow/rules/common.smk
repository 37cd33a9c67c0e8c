# Validate every config file, load the key, then plan: the DAG holds only changed sessions.
import sys
import time
from pathlib import Path

from passerelle.errors import PasserelleError
from passerelle.config import settings_from
from passerelle.fsutil import canonical_json, write_if_changed
from passerelle.keys import load_key, resolve_key_path
from passerelle.plan import prepare
from passerelle.resources import keyed_resources, step_resources
from passerelle.runtime import prepare_job_environment

prepare_job_environment()
CONFIG_SOURCE = (
    ", ".join(str(p) for p in workflow.overwrite_configfiles) or "config/config.yaml"
)

try:
    SETTINGS = settings_from(config, CONFIG_SOURCE, Path.cwd())
    WORK = SETTINGS.work
    # Jobs read this resolved copy, so --config overrides reach every sub-command.
    EFFECTIVE = WORK / "config.effective.json"
    if workflow.is_main_process:
        KEY = load_key(resolve_key_path(SETTINGS.key_file, Path.cwd()))
        effective = dict(SETTINGS.raw)
        effective.update(
            inbox=str(SETTINGS.inbox),
            output=str(SETTINGS.output),
            work=str(SETTINGS.work),
            bids_map=str(SETTINGS.bids_map_path),
            deid=str(SETTINGS.deid_path),
            key_file=str(resolve_key_path(SETTINGS.key_file, Path.cwd())),
        )
        write_if_changed(EFFECTIVE, canonical_json(effective).encode())
        started = time.perf_counter()
        PLAN = prepare(SETTINGS, KEY)
        print(
            f"passerelle: {len(PLAN.pending)} session(s) to process, "
            f"{PLAN.files_read} new or changed file(s) read, "
            f"planned in {time.perf_counter() - started:.2f} s",
            file=sys.stderr,
        )
    else:
        PLAN = None
except PasserelleError as exc:
    sys.exit(f"passerelle: error: {exc}")


def run_targets():
    """The run's closing marker; with no changed input, a file no rule makes, so no job runs."""
    if PLAN is None or PLAN.run_id is None:
        return [EFFECTIVE]
    return [WORK / "runs" / f"{PLAN.run_id}.done"]


def pending_results(wildcards):
    return [WORK / "results" / f"sub-{sub}_ses-{ses}.json" for sub, ses in PLAN.pending]


# Derivatives (derivatives.smk): resources of outside models, per-session inputs.
DERIV = SETTINGS.raw["derivatives"]
MODELS = {m["name"]: m for m in DERIV["models"]}


MODEL_RESOURCES = {name: m.get("resources", {}) for name, m in MODELS.items()}
MODEL_DEFAULTS = {"mem_mb": 4000, "runtime": 30, "gpu": 0}


def session_models(wildcards):
    return [
        WORK
        / "derivatives"
        / f"model-{name}"
        / f"sub-{wildcards.sub}_ses-{wildcards.ses}.json"
        for name in sorted(MODELS)
    ]


def pending_derivatives(wildcards):
    return [
        WORK / "derivatives" / "prov" / f"sub-{s}_ses-{t}.json" for s, t in PLAN.pending
    ]


def qc_pictures():
    """Every QC picture on record, so the HTML report covers the dataset, not only a run."""
    return sorted((WORK / "qc").glob("*.png")) if (WORK / "qc").is_dir() else []
