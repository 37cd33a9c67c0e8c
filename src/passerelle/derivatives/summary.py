"""The session's closing derivative job: cross-checks, provenance document, QC pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from passerelle.derivatives import layout, provenance, qc
from passerelle.derivatives.layout import DEFACE, RAW, SEG
from passerelle.derivatives.session import QUARANTINED, engine_versions
from passerelle.fsutil import write_json, write_text

_DATASET = {"deface": DEFACE, "segment": SEG}


def _rel_work(path: Path, work: Path) -> str:
    try:
        return "WORK/" + path.resolve().relative_to(work.resolve()).as_posix()
    except ValueError:
        return path.name


def _threads(raw_cfg: dict[str, Any], kind: str) -> int:
    cfg = raw_cfg["derivatives"]
    if kind in _DATASET:
        return int(cfg[kind]["threads"])
    model = next((m for m in cfg["models"] if m["name"] == kind), {})
    return int(model.get("resources", {}).get("threads", 1))


def _brain_overlap(deface_dir: Path, seg_dir: Path, anat: layout.Anat) -> int | None:
    """Voxels both under the face mask and in the brain mask; None without both."""
    face, brain = deface_dir / anat.face_mask, seg_dir / anat.brain_mask
    if not (face.exists() and brain.exists()):
        return None
    import nibabel as nib

    f = np.asanyarray(nib.load(face).dataobj) > 0
    b = np.asanyarray(nib.load(brain).dataobj) > 0
    return int((f & b).sum()) if f.shape == b.shape else None


def summarise_session(
    raw_cfg: dict[str, Any],
    work: Path,
    result_file: Path,
    staging: Path,
    records: list[Path],
    out: Path,
    qc_out: tuple[Path, Path],
) -> dict[str, Any]:
    result = json.loads(result_file.read_text())
    sub, ses = result["subject"], result["session"]
    recs = {p: json.loads(p.read_text()) for p in records}
    dirs = {p: p.with_suffix("") for p in records}
    deface_rec = next(p for p, r in recs.items() if r["kind"] == "deface")
    seg_rec = next(p for p, r in recs.items() if r["kind"] == "segment")
    anats = {
        a.rel: a
        for a in layout.anat_images(result, sorted({*raw_cfg["derivatives"]["suffixes"], "T1w"}))
    }
    images: list[dict[str, Any]] = []
    # The built-in picture draws only the built-in step's labels: an outside model shares the
    # segmentation dataset but has its own files and label scheme.
    builtin_seg: list[dict[str, Any]] = []
    activities, timed = [], []
    for path, rec in sorted(recs.items()):
        kind = rec["kind"]
        dataset = _DATASET.get(kind, SEG)
        for img in rec["images"]:
            entry = {"dataset": dataset, **{k: img.get(k) for k in ("source", "state", "reason")}}
            entry["outputs"] = list(img.get("outputs", []))
            anat = anats.get(img["source"])
            if kind == "deface" and img["state"] != QUARANTINED and anat is not None:
                overlap = _brain_overlap(dirs[path], dirs[seg_rec], anat)
                entry["brain_voxels_removed"] = overlap
                if overlap:
                    # Fail closed: a mask that reaches the brain is not a defaced image.
                    entry.update(
                        state=QUARANTINED,
                        reason=f"face mask overlaps the brain mask by {overlap} voxels",
                        outputs=[],
                    )
            images.append(entry)
            if entry["state"] == QUARANTINED:
                continue
            if kind == "segment":
                builtin_seg.append(entry)
            prefix = "deface" if kind == "deface" else "seg"
            act = {
                "id": f"{kind}-{Path(img['source']).name.removesuffix('.nii.gz')}",
                "rule": f"{kind}_session" if kind in _DATASET else "model_session",
                "command": provenance.command(
                    f"{kind}-session" if kind in _DATASET else "run-model",
                    {
                        "config": "WORK/config.effective.json",
                        "result": _rel_work(result_file, work),
                        "staging": _rel_work(staging, work),
                        "out": _rel_work(dirs[path], work),
                        "record": _rel_work(path, work),
                        "threads": str(_threads(raw_cfg, kind)),
                        **({} if kind in _DATASET else {"model": kind}),
                    },
                ),
                "parameters": rec["parameters"],
                "used": {f"{RAW}:{img['source']}": staging / img["source"]},
                "generated": {f"{prefix}:{o}": dirs[path] / o for o in entry["outputs"]},
                "started": img["started"],
                "ended": img["ended"],
                "host": rec["host"],
            }
            activities.append(act)
            timed.append(act)
    site = raw_cfg["archiving"]["identity"]["site"]
    software = engine_versions()
    write_text(
        out.with_suffix(".prov.json"),
        provenance.serialize(provenance.session_document(activities, software, site, timed=False)),
    )
    write_text(
        out.with_suffix(".timed.json"),
        provenance.serialize(provenance.session_document(timed, software, site, timed=True)),
    )
    summary = {"subject": sub, "session": ses, "images": images}
    show_source = raw_cfg["derivatives"]["release"] == "internal"
    qc.deface_mosaic(
        [
            (
                anats[e["source"]].defaced.rsplit("/", 1)[1],
                staging / e["source"],
                dirs[deface_rec] / anats[e["source"]].defaced,
                dirs[deface_rec] / anats[e["source"]].face_mask,
            )
            for e in images
            if e["dataset"] == DEFACE and e["state"] != QUARANTINED
        ],
        qc_out[0],
        show_source,
    )
    qc.segment_mosaic(
        [
            (
                anats[e["source"]].dseg.rsplit("/", 1)[1],
                staging / e["source"],
                dirs[seg_rec] / anats[e["source"]].dseg,
                dirs[seg_rec] / anats[e["source"]].brain_mask,
            )
            for e in builtin_seg
        ],
        qc_out[1],
    )
    write_json(out, summary)
    return summary
