"""Publishing derivatives into OUTPUT/bids/derivatives and the dataset-level files there."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from passerelle import __version__
from passerelle.bids.dataset import BIDS_VERSION, CODE_URL
from passerelle.bids.paths import session_dir
from passerelle.derivatives.layout import DEFACE, SEG, Anat, sidecar
from passerelle.derivatives.segment import LABELS
from passerelle.fsutil import write_json, write_tsv

_KIND_DIR = {DEFACE: ["deface"], SEG: ["segment"]}
_DESCRIPTIONS = {
    DEFACE: "Defaced anatomical images and the face masks removed from them",
    SEG: "Brain masks, tissue segmentations (CSF, GM, WM) and tissue volumes",
}


def derivatives_dir(bids: Path) -> Path:
    return bids / "derivatives"


def summary_path(work: Path, sub: str, ses: str) -> Path:
    return work / "derivatives" / "prov" / f"sub-{sub}_ses-{ses}.json"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap(tmp: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    if any(tmp.rglob("*")):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dst)
    else:
        shutil.rmtree(tmp)


def _prune(folder: Path, stop: Path) -> None:
    """Remove empty folders from folder up to (not including) stop."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _source_dirs(work: Path, sub: str, ses: str, models: list[str]) -> dict[str, list[Path]]:
    name = f"sub-{sub}_ses-{ses}"
    out = {DEFACE: [work / "derivatives" / "deface" / name]}
    out[SEG] = [work / "derivatives" / "segment" / name]
    out[SEG] += [work / "derivatives" / f"model-{m}" / name for m in models]
    return out


def publish_session_derivatives(
    work: Path, bids: Path, sub: str, ses: str, raw_cfg: dict[str, Any]
) -> dict[str, Any] | None:
    """Put the session's checked derivatives and its PROV document in place; None if none ran."""
    summary_file = summary_path(work, sub, ses)
    where = session_dir(sub, ses)
    if not summary_file.exists():
        remove_session_derivatives(bids, sub, ses)
        return None
    summary = json.loads(summary_file.read_text())
    models = [m["name"] for m in raw_cfg["derivatives"]["models"]]
    dirs = _source_dirs(work, sub, ses, models)
    prov = summary_file.with_suffix(".prov.json")
    for ds in (DEFACE, SEG):
        dst = derivatives_dir(bids) / ds / where
        files: list[tuple[Path, str]] = []  # (work-area file, dataset-relative path)
        for entry in summary["images"]:
            if entry["dataset"] != ds:
                continue
            for rel in entry["outputs"]:
                src = next(d / rel for d in dirs[ds] if (d / rel).exists())
                files += [(src, rel), (src.parent / Path(sidecar(rel)).name, sidecar(rel))]
        if not files:
            # Nothing derived here: no folder either, so no empty derivatives dataset appears.
            if dst.exists():
                shutil.rmtree(dst)
            _prune(dst.parent, derivatives_dir(bids))
            continue
        tmp = dst.with_name(f".{dst.name}.incoming")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for src, rel in files:
            _link(src, tmp / Path(rel).relative_to(where))
        _link(prov, tmp / f"sub-{sub}_ses-{ses}_prov.json")
        _swap(tmp, dst)
    if raw_cfg["derivatives"]["release"] == "public":
        _release_public(bids, sub, ses, summary, raw_cfg["derivatives"]["suffixes"])
    return summary


def _release_public(
    bids: Path, sub: str, ses: str, summary: dict[str, Any], suffixes: list[str]
) -> None:
    """Defaced images take the raw images' place; anatomy that could not be defaced leaves."""
    defaced = {
        e["source"]: e["outputs"][0]
        for e in summary["images"]
        if e["dataset"] == DEFACE and e["state"] != "quarantined"
    }
    anat = bids / session_dir(sub, ses) / "anat"
    removed = []
    for img in sorted(anat.glob("*.nii.gz")) if anat.is_dir() else []:
        rel = img.relative_to(bids).as_posix()
        suffix = img.name.removesuffix(".nii.gz").rsplit("_", 1)[-1]
        if suffix not in suffixes:
            continue
        if rel in defaced:
            new = derivatives_dir(bids) / DEFACE / defaced[rel]
            tmp = img.with_name(f".{img.name}.tmp")
            shutil.copyfile(new, tmp)
            os.replace(tmp, img)
        else:
            img.unlink()
            img.with_name(img.name.removesuffix(".nii.gz") + ".json").unlink(missing_ok=True)
            removed.append(f"anat/{img.name}")
    scans = bids / session_dir(sub, ses) / f"sub-{sub}_ses-{ses}_scans.tsv"
    if removed and scans.exists():
        lines = scans.read_text().splitlines()
        kept = [ln for ln in lines if ln.split("\t", 1)[0] not in removed]
        scans.write_text("\n".join(kept) + "\n")
    # The pseudonymised DICOM holds the face too: a public release carries BIDS only.
    shutil.rmtree(bids / "sourcedata" / "dicom" / session_dir(sub, ses), ignore_errors=True)


def remove_session_derivatives(bids: Path, sub: str, ses: str) -> None:
    for ds in (DEFACE, SEG):
        dst = derivatives_dir(bids) / ds / session_dir(sub, ses)
        shutil.rmtree(dst, ignore_errors=True)
        _prune(dst.parent, derivatives_dir(bids))


def volume_rows(bids: Path) -> list[dict[str, Any]]:
    rows = []
    for side in sorted((derivatives_dir(bids) / SEG).glob("sub-*/ses-*/anat/*_dseg.json")):
        data = json.loads(side.read_text())
        if "TissueVolumes_mL" in data:
            rows.append(
                {
                    "file": side.name.removesuffix(".json") + ".nii.gz",
                    "volumes": data["TissueVolumes_mL"],
                }
            )
    return rows


def write_derivative_datasets(bids: Path, dataset: dict[str, Any]) -> None:
    """dataset_description.json of each derivatives dataset, dseg.tsv and the volume table."""
    for ds in (DEFACE, SEG):
        root = derivatives_dir(bids) / ds
        if not any(root.glob("sub-*")):
            # No session left: the dataset goes, description and tables included.
            shutil.rmtree(root, ignore_errors=True)
            _prune(derivatives_dir(bids), bids)
            continue
        generated: dict[str, Any] = {
            "Name": "passerelle",
            "Version": __version__,
            "CodeURL": CODE_URL,
            "Description": _DESCRIPTIONS[ds],
        }
        if os.environ.get("PASSERELLE_CONTAINER"):
            generated["Container"] = {"Type": "oci", "Tag": os.environ["PASSERELLE_CONTAINER"]}
        write_json(
            root / "dataset_description.json",
            {
                "Name": f"{dataset['name']}: {_DESCRIPTIONS[ds].lower()}",
                "BIDSVersion": BIDS_VERSION,
                "DatasetType": "derivative",
                "GeneratedBy": [generated],
                "SourceDatasets": [{"URL": "bids:raw:"}],
                "DatasetLinks": {"raw": "../../"},
                **({"License": dataset["license"]} if dataset.get("license") else {}),
            },
        )
    seg = derivatives_dir(bids) / SEG
    if any(seg.glob("sub-*")):
        write_tsv(
            seg / "dseg.tsv",
            ["index", "name", "abbreviation"],
            [[0, "background", "BG"]]
            + [
                [k, {"CSF": "cerebrospinal fluid", "GM": "grey matter", "WM": "white matter"}[v], v]
                for k, v in LABELS.items()
            ],
        )
        rows = volume_rows(bids)
        write_tsv(
            seg / "tissue_volumes.tsv",
            ["filename", "CSF_mL", "GM_mL", "WM_mL", "Brain_mL"],
            [
                [r["file"], *(r["volumes"].get(k) for k in ("CSF", "GM", "WM", "Brain"))]
                for r in rows
            ],
        )


def counts(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    tally: dict[str, int] = {}
    lines = []
    for s in summaries:
        for e in s["images"]:
            tally[f"{e['dataset']} {e['state']}"] = tally.get(f"{e['dataset']} {e['state']}", 0) + 1
            if e["state"] == "quarantined":
                lines.append(f"{e['dataset']}: {e['source']}: {e['reason']}")
    return {"images": dict(sorted(tally.items())), "quarantined": lines}


__all__ = ["Anat", "counts", "publish_session_derivatives", "write_derivative_datasets"]
