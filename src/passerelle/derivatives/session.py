"""Per-session derivative jobs: each image defaced or segmented, or quarantined with a reason.

A job builds its whole output in a temporary folder and renames it into place, so a killed job
leaves no partial derivative. Timings go to the job record in the private work area only: the
derived files and sidecars stay byte-identical across runs.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from passerelle.derivatives import layout
from passerelle.derivatives.deface import (
    deface_image,
    deface_with_pydeface,
    pydeface_available,
)
from passerelle.derivatives.layout import Anat, sidecar, source_uri
from passerelle.derivatives.registration import RegParams
from passerelle.derivatives.segment import LABELS, SegParams, segment_image
from passerelle.errors import PasserelleError
from passerelle.fsutil import write_json

DEFACED, SEGMENTED, QUARANTINED = "defaced", "segmented", "quarantined"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fresh_tmp(out: Path) -> Path:
    """An empty folder beside out, swapped in whole when the step ends: never a partial out."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _swap_in(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def _each_image(
    images: list[Anat],
    work: Callable[[Anat], dict[str, Any]],
    done_state: str,
) -> list[dict[str, Any]]:
    records = []
    for anat in images:
        rec: dict[str, Any] = {"source": anat.rel, "started": _now()}
        t0 = time.perf_counter()
        try:
            rec.update(work(anat))
            rec["state"] = done_state
        except (PasserelleError, RuntimeError, ValueError, OSError) as exc:
            # One image the method cannot handle must not stop the session or the run.
            rec.update(state=QUARANTINED, reason=str(exc).splitlines()[0][:300], outputs=[])
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        rec["ended"] = _now()
        records.append(rec)
    return records


def _record(path: Path, kind: str, params: dict[str, Any], images: list[dict[str, Any]]) -> None:
    write_json(
        path,
        {"kind": kind, "parameters": params, "host": platform.node(), "images": images},
    )


def deface_session(
    settings_raw: dict[str, Any],
    result: dict[str, Any],
    staging: Path,
    out: Path,
    record: Path,
    threads: int,
) -> list[dict[str, Any]]:
    cfg = settings_raw["derivatives"]
    reg = RegParams.from_config(cfg["registration"], threads)
    use_fsl = cfg["backend"] == "pydeface" and pydeface_available()
    params = (
        {"method": "pydeface (FSL FLIRT)", "pydeface": version("pydeface")}
        if use_fsl
        else {"method": "pydeface template and face mask, SimpleITK registration", **reg.as_dict()}
    )
    params["template"] = f"pydeface {version('pydeface')}: data/mean_reg2mean.nii.gz"
    params["face_mask"] = f"pydeface {version('pydeface')}: data/facemask.nii.gz"
    tmp = _fresh_tmp(out)

    def one(anat: Anat) -> dict[str, Any]:
        src = staging / anat.rel
        dst, msk = tmp / anat.defaced, tmp / anat.face_mask
        dst.parent.mkdir(parents=True, exist_ok=True)
        figures = (
            deface_with_pydeface(src, dst, msk) if use_fsl else deface_image(src, dst, msk, reg)
        )
        sources = [source_uri(anat.rel)]
        write_json(
            tmp / sidecar(anat.defaced),
            {
                "Description": "The source image with the voxels under the face mask set to 0",
                "Sources": sources,
                "Parameters": params,
                "RegistrationMetric": figures.get("metric"),
            },
        )
        write_json(
            tmp / sidecar(anat.face_mask),
            {
                "Description": "Voxels removed by defacing (1); the template face mask "
                "carried onto the source grid",
                "Type": "Face",
                "Sources": sources,
                "Parameters": params,
            },
        )
        return {**figures, "outputs": [anat.defaced, anat.face_mask]}

    images = layout.anat_images(result, cfg["suffixes"])
    records = _each_image(images, one, DEFACED)
    _swap_in(tmp, out)
    _record(record, "deface", params, records)
    return records


def segment_session(
    settings_raw: dict[str, Any],
    result: dict[str, Any],
    staging: Path,
    out: Path,
    record: Path,
    threads: int,
) -> list[dict[str, Any]]:
    cfg = settings_raw["derivatives"]
    reg = RegParams.from_config(cfg["registration"], threads)
    seg = SegParams.from_config(cfg["segmentation"])
    params = {
        "method": "built-in: MNI152 brain mask, N4, EM Gaussian mixture with MRF",
        "template": "MNI152 ICBM 2009a nonlinear symmetric (nilearn "
        f"{version('nilearn')}), T1 and GM/WM maps",
        **seg.as_dict(),
        "registration": reg.as_dict(),
    }
    tmp = _fresh_tmp(out)

    def one(anat: Anat) -> dict[str, Any]:
        paths = {"mask": tmp / anat.brain_mask, "dseg": tmp / anat.dseg}
        if cfg["probseg"]:
            paths["probseg"] = tmp / anat.probseg
        figures = segment_image(staging / anat.rel, paths, reg, seg)
        sources = [source_uri(anat.rel)]
        write_json(
            tmp / sidecar(anat.brain_mask),
            {"Type": "Brain", "Sources": sources, "Parameters": params},
        )
        write_json(
            tmp / sidecar(anat.dseg),
            {
                "Description": "Tissue classes; labels in dseg.tsv at the dataset root",
                "Sources": sources,
                "Parameters": params,
                "TissueVolumes_mL": figures["volumes_ml"],
            },
        )
        outputs = [anat.brain_mask, anat.dseg]
        if cfg["probseg"]:
            write_json(
                tmp / sidecar(anat.probseg),
                {
                    "Description": "Posterior probability per class, volumes in label order",
                    "Labels": [LABELS[k] for k in sorted(LABELS)],
                    "Sources": sources,
                    "Parameters": params,
                },
            )
            outputs.append(anat.probseg)
        return {**figures, "outputs": outputs}

    images = layout.anat_images(result, cfg["segment_suffixes"])
    records = _each_image(images, one, SEGMENTED)
    _swap_in(tmp, out)
    _record(record, "segment", params, records)
    return records


def engine_versions() -> dict[str, str]:
    return {
        "SimpleITK": sitk.Version_VersionString(),
        **{name: version(name) for name in ("nibabel", "numpy", "scipy", "pydeface", "nilearn")},
    }
