"""Convert one session: dcm2niix per series, BIDS names from the plan, scrubbed outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passerelle.bids.paths import bids_path, bids_uri, session_dir
from passerelle.bids.sidecar import scrub_nifti_header, scrub_sidecar
from passerelle.deid.gate import scan_tree
from passerelle.fsutil import canonical_json, gzip_file, write_json, write_text, write_tsv
from passerelle.plan import CONVERTED, QUARANTINED, SOURCE_ONLY
from passerelle.pseudonymise import source_watchlist

DCM2NIIX_ARGS = ("-b", "y", "-ba", "y", "-z", "n", "-f", "series")


@dataclass
class Output:
    """One image dcm2niix wrote for a series, before naming."""

    nifti: Path
    sidecar: dict[str, Any]
    bval: Path | None = None
    bvec: Path | None = None


@dataclass
class SeriesResult:
    number: int | None
    state: str
    reason: str
    files: list[str]
    outputs: list[str] = field(default_factory=list)
    acq_time: str | None = None


def dcm2niix_executable() -> str:
    # The wheel installs dcm2niix beside the interpreter; a venv need not be on PATH.
    return shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")


def _stage_inputs(files: list[Path], folder: Path) -> None:
    """Give dcm2niix one folder per series, holding only this series' pseudonymised files."""
    for i, src in enumerate(files, start=1):
        os.symlink(src.resolve(), folder / f"{i:06d}.dcm")


def _run_dcm2niix(files: list[Path], tmp: Path) -> tuple[list[Output], str]:
    src, out = tmp / "in", tmp / "out"
    src.mkdir()
    out.mkdir()
    _stage_inputs(files, src)
    proc = subprocess.run(
        [dcm2niix_executable(), *DCM2NIIX_ARGS, "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    outputs = []
    for nii in sorted(out.glob("*.nii")):
        side = nii.with_suffix(".json")
        bval, bvec = nii.with_suffix(".bval"), nii.with_suffix(".bvec")
        outputs.append(
            Output(
                nifti=nii,
                sidecar=json.loads(side.read_text()) if side.exists() else {},
                bval=bval if bval.exists() else None,
                bvec=bvec if bvec.exists() else None,
            )
        )
    # dcm2niix messages can quote paths and descriptions: keep only its verdict.
    status = f"dcm2niix exit {proc.returncode}"
    return outputs, status


def _part(output: Output) -> str | None:
    image_type = [str(t).upper() for t in output.sidecar.get("ImageType", [])]
    stem = output.nifti.stem
    if "PHASE" in image_type or stem.endswith("_ph"):
        return "phase"
    if "REAL" in image_type or stem.endswith("_real"):
        return "real"
    if "IMAGINARY" in image_type or stem.endswith("_imaginary"):
        return "imag"
    return None


def _names(
    target: dict[str, Any], sub: str, ses: str, outputs: list[Output]
) -> list[tuple[str, str]] | str:
    """(datatype-relative path, suffix) for each output, or a reason the set is ambiguous."""
    echoes = sorted({int(o.sidecar.get("EchoNumber", 1) or 1) for o in outputs})
    multi_echo = len(echoes) > 1
    names = []
    for o in outputs:
        echo = int(o.sidecar.get("EchoNumber", 1) or 1)
        ents: dict[str, str | int] = {"sub": sub, "ses": ses, **target["entities"]}
        suffix = target["suffix"]
        if target["echo_suffix"]:
            suffix = f"{suffix}{echo}"
        elif multi_echo:
            ents["echo"] = echo
        part = _part(o)
        if part and suffix not in ("phasediff", "phase1", "phase2", "fieldmap"):
            ents["part"] = part
        names.append(bids_path(ents, target["datatype"], suffix))
    if len(set(names)) != len(names):
        return f"conversion gave {len(outputs)} images that the rule cannot name apart"
    return [(n, target["datatype"]) for n in names]


def _write_output(
    o: Output, rel: str, staging: Path, extra: dict[str, Any], compress: bool
) -> list[str]:
    scrub_nifti_header(o.nifti)
    sidecar, _dropped = scrub_sidecar(o.sidecar)
    sidecar.update(extra)
    base = staging / rel
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    if compress:
        gzip_file(o.nifti, base.with_name(base.name + ".nii.gz"))
        written.append(rel + ".nii.gz")
    else:
        shutil.copyfile(o.nifti, base.with_name(base.name + ".nii"))
        written.append(rel + ".nii")
    write_json(base.with_name(base.name + ".json"), sidecar)
    for src, ext in ((o.bval, ".bval"), (o.bvec, ".bvec")):
        if src is not None:
            shutil.copyfile(src, base.with_name(base.name + ext))
    return written


def _convert_series(
    series: dict[str, Any],
    pseudo: dict[str, Any],
    spec: dict[str, Any],
    pseudo_dir: Path,
    staging: Path,
) -> SeriesResult:
    number = series.get("number")
    files = [f[0] for f in series["files"]]
    if series["action"] != "convert":
        return SeriesResult(number, series["action"], series["reason"], files)
    # Only files the pseudonymise step let through are converted, never a source file.
    usable = [rel for rel in files if pseudo["files"].get(rel, {}).get("state") is None]
    if not usable:  # each file keeps the reason the pseudonymise step gave it
        reason = "every file was set aside before conversion"
        return SeriesResult(number, QUARANTINED, reason, files)
    inputs = [pseudo_dir / pseudo["files"][rel]["pseudo"] for rel in usable]
    target = series["target"]
    with tempfile.TemporaryDirectory(prefix="passerelle-") as tmp:
        outputs, status = _run_dcm2niix(inputs, Path(tmp))
        if not outputs:
            reason = f"conversion produced no image ({status})"
            return SeriesResult(number, QUARANTINED, reason, usable)
        names = _names(target, spec["subject"], spec["session"], outputs)
        if isinstance(names, str):
            return SeriesResult(number, SOURCE_ONLY, names, usable)
        extra: dict[str, Any] = {}
        if target["datatype"] == "func":
            extra["TaskName"] = target.get("task_name") or target["entities"]["task"]
        written: list[str] = []
        for o, (rel, _) in zip(outputs, names, strict=True):
            written += _write_output(o, rel, staging, extra, spec["convert"]["compress"])
    result = SeriesResult(number, CONVERTED, f"rule {target['rule']}", usable, written)
    result.acq_time = pseudo.get("acq_time")
    return result


def _add_intended_for(spec: dict[str, Any], results: list[SeriesResult], staging: Path) -> None:
    """Fieldmaps name the images they correct, as BIDS URIs within this session."""
    images = sorted(p for r in results for p in r.outputs)
    for series, result in zip(spec["series"], results, strict=True):
        wanted = (series.get("target") or {}).get("intended_for") or []
        if result.state != CONVERTED or not wanted:
            continue
        targets = [bids_uri(p) for p in images if p.split("/")[2] in wanted]
        if not targets:
            continue
        for img in result.outputs:
            side = staging / (img.rsplit(".nii", 1)[0] + ".json")
            data = json.loads(side.read_text())
            data["IntendedFor"] = targets
            write_json(side, data)


WITHHELD = "session withheld by the PHI gate"


def _withheld(spec: dict[str, Any], why: str) -> list[SeriesResult]:
    reason = f"{WITHHELD}: {why}"
    return [
        SeriesResult(s.get("number"), QUARANTINED, reason, [f[0] for f in s["files"]])
        for s in spec["series"]
    ]


def convert_session(
    spec_file: Path, pseudo_file: Path, staging: Path, result_file: Path, threads: int = 1
) -> dict[str, Any]:
    """Convert the pseudonymised copy of a session, then prove the outputs clean."""
    spec = json.loads(spec_file.read_text())
    pseudo = json.loads(pseudo_file.read_text())
    pseudo_dir = pseudo_file.with_suffix("")
    sub, ses = spec["subject"], spec["session"]
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if pseudo["withheld"]:
        results = _withheld(spec, pseudo["withheld"][0])
    else:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            results = list(
                pool.map(
                    lambda pair: _convert_series(pair[0], pair[1], spec, pseudo_dir, staging),
                    zip(spec["series"], pseudo["series"], strict=True),
                )
            )
        _add_intended_for(spec, results, staging)
        _write_scans(staging, sub, ses, results)
        hits = scan_tree(staging, source_watchlist(spec))
        if hits:
            shutil.rmtree(staging)
            staging.mkdir()
            results = _withheld(spec, str(hits[0]))
    result = {
        "subject": sub,
        "session": ses,
        "acq_time": pseudo.get("acq_time"),
        "series": [
            {
                "number": r.number,
                "state": r.state,
                "reason": r.reason,
                "outputs": r.outputs,
                "files": r.files,
            }
            for r in results
        ],
        "files": {
            rel: {"state": f["state"], "reason": f["reason"]}
            for s in pseudo["series"]
            for rel, f in s["files"].items()
            if f["state"] is not None
        },
    }
    write_text(result_file, canonical_json(result))
    return result


def _write_scans(staging: Path, sub: str, ses: str, results: list[SeriesResult]) -> None:
    rows = sorted((p, r.acq_time) for r in results for p in r.outputs)
    if not rows:
        return
    prefix = session_dir(sub, ses) + "/"
    write_tsv(
        staging / session_dir(sub, ses) / f"sub-{sub}_ses-{ses}_scans.tsv",
        ["filename", "acq_time"],
        ([p.removeprefix(prefix), t] for p, t in rows),
    )
