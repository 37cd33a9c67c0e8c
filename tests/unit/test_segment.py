"""Built-in segmentation against the MNI152 tissue maps, and outside models run for real."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from passerelle.derivatives import nifti
from passerelle.derivatives.checks import dice, moved, random_affine
from passerelle.derivatives.external import run_model
from passerelle.derivatives.registration import RegParams
from passerelle.derivatives.segment import SegParams, mni_path, mni_probability, segment
from passerelle.derivatives.session import QUARANTINED

# Measured (README, Derivatives): GM 0.92, WM 0.92, CSF 0.43. The reference CSF is the brain
# mask less GM>0.5 and WM>0.5, i.e. partial-volume rims a T1w intensity calls GM; so CSF gets
# a low bar and GM/WM the bar of published affine+EM methods (~0.85).
MIN_DICE = {1: 0.35, 2: 0.85, 3: 0.85}


@pytest.fixture(scope="module")
def mni_moved() -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray]:
    """The MNI152 T1 moved by a known affine: its own GM/WM maps are the reference."""
    img = moved(nifti.load(mni_path("t1")), random_affine(np.random.default_rng(1)))
    return img, mni_probability("gm"), mni_probability("wm")


def test_dice_per_class_against_mni152_maps(mni_moved) -> None:
    img, gm, wm = mni_moved
    seg = segment(img, RegParams(), SegParams())
    ref = np.zeros(gm.shape, np.uint8)
    ref[seg.brain] = 1
    ref[gm > 0.5], ref[wm > 0.5] = 2, 3
    ref[~seg.brain] = 0
    assert dice(seg.brain, (gm + wm) > 0.5) >= 0.95
    for label, bar in MIN_DICE.items():
        assert dice(seg.dseg == label, ref == label) >= bar, label
    vols = seg.volumes_ml()
    assert vols["GM"] > vols["WM"] > vols["CSF"] > 0
    assert abs(sum(vols[k] for k in ("CSF", "GM", "WM")) - vols["Brain"]) < 1


@pytest.fixture(scope="module")
def small_session(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A session holding the MNI T1 at 2 mm (fast) as its T1w."""
    from nilearn.image import resample_img

    tmp = tmp_path_factory.mktemp("model")
    src = nifti.load(mni_path("t1"))
    img = resample_img(src, np.diag([2, 2, 2]) @ np.eye(3), interpolation="continuous",
                       force_resample=True, copy_header=True)  # fmt: skip
    img = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.int16), img.affine)
    rel = "sub-1/ses-1/anat/sub-1_ses-1_T1w.nii.gz"
    (tmp / "staging" / rel).parent.mkdir(parents=True)
    nib.save(img, tmp / "staging" / rel)
    return {"series": [{"state": "converted", "outputs": [rel]}]}, tmp


def _cfg(command: str, labels: dict) -> dict:
    return {"derivatives": {"models": [{"name": "builtin", "command": command, "labels": labels}]}}


LABELS = {0: "background", 1: "CSF", 2: "GM", 3: "WM"}
BUILTIN = f"{sys.executable} -m passerelle segment-image {{input}} {{output}} --threads {{threads}}"


def test_outside_model_runs_through_its_command_template(small_session) -> None:
    result, tmp = small_session
    made_twice = []
    for run in ("ok", "again"):
        out, record = tmp / run, tmp / f"{run}.json"
        recs = run_model(_cfg(BUILTIN, LABELS), "builtin", result, tmp / "staging", out, record, 1)
        assert [r["state"] for r in recs] == ["segmented"]
        made = out / "sub-1/ses-1/anat/sub-1_ses-1_desc-builtin_dseg.nii.gz"
        made_twice.append(made.read_bytes())
    assert made_twice[0] == made_twice[1]  # segmentation is deterministic too
    data = np.asanyarray(nib.load(made).dataobj)
    assert set(np.unique(data)) == {0, 1, 2, 3}
    side = json.loads(made.with_name(made.name.replace(".nii.gz", ".json")).read_text())
    assert side["Sources"] == ["bids:raw:sub-1/ses-1/anat/sub-1_ses-1_T1w.nii.gz"]


BAD = [
    ("exit 3", {0: "bg"}, "exited with status 3"),
    # The built-in method's output checked against a table without WM: labels outside it.
    (BUILTIN, {0: "background", 1: "CSF", 2: "GM"}, "not in the declared label table"),
    # A real segmentation, but written on another grid.
    (
        f'{sys.executable} -c "import nibabel as n, numpy as np; '
        "n.save(n.Nifti1Image(np.zeros((9, 9, 9), np.uint8), np.eye(4)), '{output}')\"",
        LABELS,
        "does not match the input",
    ),
    ("true", LABELS, "wrote no output"),
]


@pytest.mark.parametrize(("command", "labels", "why"), BAD)
def test_failed_model_leaves_no_derivative(small_session, command, labels, why) -> None:
    result, tmp = small_session
    out, record = tmp / "bad", tmp / "bad.json"
    recs = run_model(_cfg(command, labels), "builtin", result, tmp / "staging", out, record, 1)
    assert recs[0]["state"] == QUARANTINED and why in recs[0]["reason"], recs[0]
    assert not list(out.rglob("*")), "a failed model must leave no file"
    assert json.loads(record.read_text())["images"][0]["reason"].startswith("model builtin:")
