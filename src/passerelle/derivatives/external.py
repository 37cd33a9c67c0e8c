"""Outside segmenters (SynthSeg, nnU-Net, HD-BET...) run from a configured command template.

An output counts only once checked: same grid as the input (shape and affine) and every label
in the declared table. Anything else yields no derivative, not a partial file, and one line
saying why.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from passerelle.derivatives import layout, nifti
from passerelle.derivatives.layout import Anat, sidecar, source_uri
from passerelle.derivatives.session import QUARANTINED, _fresh_tmp, _now, _record, _swap_in
from passerelle.errors import ConfigError
from passerelle.fsutil import write_json

SEGMENTED = "segmented"


def model_config(raw_cfg: dict[str, Any], name: str) -> dict[str, Any]:
    for m in raw_cfg["derivatives"]["models"]:
        if m["name"] == name:
            return m
    raise ConfigError(f"key derivatives.models: no model named {name!r}")


def argv(model: dict[str, Any], src: Path, dst: Path, threads: int) -> list[str]:
    cmd = model["command"].format(
        input=shlex.quote(str(src)), output=shlex.quote(str(dst)), threads=threads
    )
    if model.get("container"):
        return ["apptainer", "exec", "--nv", model["container"], "bash", "-c", cmd]
    if model.get("conda"):
        return ["conda", "run", "--no-capture-output", "-n", model["conda"], "bash", "-c", cmd]
    return ["bash", "-c", cmd]


def check_output(out: Path, src: Path, labels: dict[int, str]) -> None:
    """Raise ValueError naming the first way the output fails to match the input."""
    if not out.is_file():
        raise ValueError("the model wrote no output file")
    try:
        got, ref = nifti.load(out), nifti.load(src)
    except Exception as exc:
        raise ValueError(f"output is not a readable NIfTI ({type(exc).__name__})") from None
    if got.shape[:3] != ref.shape[:3] or (len(got.shape) > 3 and got.shape[3] != 1):
        raise ValueError(f"output shape {got.shape} does not match the input {ref.shape}")
    if not np.allclose(got.affine, ref.affine, atol=1e-3):
        raise ValueError("output affine does not match the input's")
    data = np.asanyarray(got.dataobj)
    if not np.all(np.equal(np.mod(data, 1), 0)):
        raise ValueError("output holds non-integer labels")
    extra = sorted(set(np.unique(data).astype(int).tolist()) - set(labels))
    if extra:
        raise ValueError(f"labels {extra[:5]} are not in the declared label table")


def run_model(
    raw_cfg: dict[str, Any],
    name: str,
    result: dict[str, Any],
    staging: Path,
    out: Path,
    record: Path,
    threads: int,
) -> list[dict[str, Any]]:
    model = model_config(raw_cfg, name)
    labels = {int(k): str(v) for k, v in model["labels"].items()}
    params = {
        "model": name,
        "command": model["command"],
        "environment": model.get("container") or model.get("conda") or "the workflow's own",
        "labels": {str(k): v for k, v in sorted(labels.items())},
    }
    tmp = _fresh_tmp(out)
    records = []
    for anat in layout.anat_images(result, model.get("suffixes", ["T1w"])):
        rec: dict[str, Any] = {"source": anat.rel, "started": _now()}
        t0 = time.perf_counter()
        try:
            rec.update(_one(model, anat, staging, tmp, threads, labels, params), state=SEGMENTED)
        except (ValueError, OSError) as exc:
            rec.update(state=QUARANTINED, reason=f"model {name}: {exc}", outputs=[])
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        rec["ended"] = _now()
        records.append(rec)
    _swap_in(tmp, out)
    _record(record, name, params, records)
    return records


def _one(
    model: dict[str, Any],
    anat: Anat,
    staging: Path,
    tmp: Path,
    threads: int,
    labels: dict[int, str],
    params: dict[str, Any],
) -> dict[str, Any]:
    src = staging / anat.rel
    with tempfile.TemporaryDirectory(prefix="passerelle-model-") as scratch:
        got = Path(scratch) / "output.nii.gz"
        proc = subprocess.run(
            argv(model, src, got, threads), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            # The model's own words can quote paths: keep the exit status only.
            raise ValueError(f"exited with status {proc.returncode}")
        check_output(got, src, labels)
        dst = tmp / anat.model(model["name"])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(got, dst)
    write_json(
        tmp / sidecar(anat.model(model["name"])),
        {"Sources": [source_uri(anat.rel)], "Parameters": params, "Labels": params["labels"]},
    )
    return {"outputs": [anat.model(model["name"])]}
