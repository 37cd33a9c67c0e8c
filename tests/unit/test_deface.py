"""Defacing on real whole-head T1w: known transforms, brain sparing, determinism, quarantine."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from passerelle.derivatives import nifti
from passerelle.derivatives.checks import dice, moved, random_affine
from passerelle.derivatives.deface import deface_image, face_mask
from passerelle.derivatives.registration import RegistrationError, RegParams
from passerelle.derivatives.segment import brain_mask
from passerelle.derivatives.session import QUARANTINED, deface_session

from .derivative_images import HEAD, SIEMENS, philips_t1w

pytestmark = pytest.mark.testdata
PARAMS = RegParams()


@pytest.fixture(scope="module")
def heads(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, nib.Nifti1Image]:
    tmp = tmp_path_factory.mktemp("philips")
    return {
        "head": nifti.load(testdata / HEAD),
        "siemens": nifti.load(testdata / SIEMENS),
        "philips": nifti.load(philips_t1w(testdata, tmp)),
    }


@pytest.fixture(scope="module")
def faces(heads) -> dict[str, np.ndarray]:
    return {name: face_mask(img, PARAMS).face for name, img in heads.items()}


# Ten known transforms on the open head, two more on each scanner series.
CASES = [("head", s) for s in range(10)] + [(n, s) for n in ("siemens", "philips") for s in (0, 1)]


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_known_transform_moves_the_face_mask_with_it(heads, faces, name: str, seed: int) -> None:
    world = random_affine(np.random.default_rng(seed))
    got = face_mask(moved(heads[name], world), PARAMS).face
    # Same voxels, moved in the world: the original mask is the mask the transform carries.
    assert dice(got, faces[name]) >= 0.95
    assert faces[name].sum() > 50_000  # a face was found, not an empty agreement


@pytest.mark.parametrize("name", ["head", "siemens", "philips"])
def test_no_brain_voxel_is_removed(heads, faces, name: str) -> None:
    img = nib.funcs.squeeze_image(heads[name])
    brain, _ = brain_mask(nifti.to_sitk(img), PARAMS)
    assert brain.sum() * np.prod(img.header.get_zooms()[:3]) / 1000 > 900  # mL: a whole brain
    assert int((brain & faces[name]).sum()) == 0


def test_two_runs_are_byte_identical(testdata: Path, tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        d, m = tmp_path / run / "defaced.nii.gz", tmp_path / run / "mask.nii.gz"
        deface_image(testdata / HEAD, d, m, PARAMS)
        outs.append((d.read_bytes(), m.read_bytes()))
    assert outs[0] == outs[1]
    src = nib.load(testdata / HEAD)
    got = nib.load(tmp_path / "a" / "defaced.nii.gz")
    mask = np.asanyarray(nib.load(tmp_path / "a" / "mask.nii.gz").dataobj).astype(bool)
    assert np.allclose(got.affine, src.affine) and got.get_data_dtype() == src.get_data_dtype()
    orig, new = np.asanyarray(src.dataobj), np.asanyarray(got.dataobj)
    assert np.array_equal(new[~mask], orig[~mask])  # only the face changes
    assert np.count_nonzero(new[mask]) == 0 and np.count_nonzero(orig[mask]) > 10_000


def _session(tmp: Path, images: dict[str, nib.Nifti1Image]) -> tuple[dict, Path]:
    staging = tmp / "staging"
    outputs = []
    for name, img in images.items():
        rel = f"sub-1/ses-1/anat/sub-1_ses-1_{name}"
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, staging / rel)
        outputs.append(rel)
    result = {"series": [{"state": "converted", "outputs": outputs}]}
    return result, staging


def _config(tmp_path: Path) -> dict:
    from passerelle.config import REPO_ROOT, load_settings

    # The shipped configuration (its demo inbox need not exist), with only T1w images defaced.
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    raw = load_settings(REPO_ROOT / "config" / "config.yaml", {"inbox": str(inbox)}).raw
    raw["derivatives"]["suffixes"] = ["T1w"]
    return raw


def test_slab_4d_and_noise_are_quarantined_and_the_rest_goes_on(heads, tmp_path: Path) -> None:
    head = heads["head"]
    data = np.asanyarray(head.dataobj)
    slab = nib.Nifti1Image(data[:, :, 120:132], head.affine)
    four = nib.Nifti1Image(np.stack([data, data], -1), head.affine)
    rng = np.random.default_rng(0)
    noise = nib.Nifti1Image(rng.integers(0, 1000, data.shape).astype(np.int16), head.affine)
    result, staging = _session(
        tmp_path,
        {
            "acq-slab_T1w.nii.gz": slab,
            "acq-four_T1w.nii.gz": four,
            "acq-noise_T1w.nii.gz": noise,
            "run-1_T1w.nii.gz": head,
        },
    )
    out, record = tmp_path / "out", tmp_path / "record.json"
    recs = {
        r["source"].rsplit("_", 2)[-2]: r
        for r in deface_session(_config(tmp_path), result, staging, out, record, 1)
    }
    assert recs["acq-slab"]["state"] == QUARANTINED and "slab" in recs["acq-slab"]["reason"]
    assert recs["acq-four"]["state"] == QUARANTINED and "not a 3D" in recs["acq-four"]["reason"]
    assert recs["acq-noise"]["state"] == QUARANTINED
    assert "metric" in recs["acq-noise"]["reason"]
    assert recs["run-1"]["state"] == "defaced"
    made = sorted(p.name for p in out.rglob("*.nii.gz"))
    assert made == [
        "sub-1_ses-1_run-1_desc-defaced_T1w.nii.gz",
        "sub-1_ses-1_run-1_desc-face_mask.nii.gz",
    ]


def test_registration_error_names_the_metric(heads) -> None:
    strict = RegParams(max_metric=-5.0)
    with pytest.raises(RegistrationError, match="metric"):
        face_mask(heads["head"], strict)
