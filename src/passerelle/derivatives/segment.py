"""Built-in tissue segmentation on CPU: brain mask, N4, then EM with a Markov random field.

The brain mask is the MNI152 2009a (ICBM, nonlinear symmetric) grey+white matter map, carried
onto the image by the defacing registration composed with a fixed template-to-MNI link, then
refined by a brain-to-brain affine fit, with its enclosed holes (ventricles) filled. N4 runs
on a ~2 mm copy inside the mask; its bias field is evaluated on the full grid. A three-class
Gaussian mixture (CSF < GM < WM on T1w) is fitted by EM inside the mask; a mean-field MRF
prior (3x3x3 neighbourhood) smooths the labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from passerelle.derivatives import nifti
from passerelle.derivatives.deface import _template, check_geometry
from passerelle.derivatives.registration import (
    Registration,
    RegParams,
    coarse,
    from_matrix,
    refine,
    register,
)

LABELS = {1: "CSF", 2: "GM", 3: "WM"}
# pydeface template space -> MNI152 space (scripts/derive_template_link.py).
LINK = Path(__file__).resolve().parents[1] / "data" / "template_to_mni.json"
_MNI = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def mni_path(kind: str) -> Path:
    """nilearn's copy of the MNI152 2009a template: 't1', 'gm' or 'wm'."""
    return Path(str(files("nilearn") / "datasets" / "data" / _MNI.format(kind)))


def mni_probability(kind: str) -> np.ndarray:
    """A tissue map as probability: nilearn stores them as 0-255 without scaling."""
    data = np.asanyarray(nifti.load(mni_path(kind)).dataobj, dtype=np.float32)
    return data / data.max()


@cache
def _mni() -> tuple[sitk.Image, sitk.Image]:
    t1 = nifti.load(mni_path("t1"))
    gm, wm = (mni_probability(k) for k in ("gm", "wm"))
    brain = nib.Nifti1Image(gm + wm, t1.affine)
    return nifti.to_sitk(t1), nifti.to_sitk(brain)


@dataclass(frozen=True)
class SegParams:
    iterations: int = 12
    mrf_beta: float = 0.5
    n4_iterations: int = 20

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SegParams:
        return cls(cfg["em_iterations"], cfg["mrf_beta"], cfg["n4_iterations"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "bias_correction": f"N4, {self.n4_iterations} iterations x 3 levels, ~2 mm",
            "classifier": f"EM Gaussian mixture, 3 classes, {self.iterations} iterations",
            "mrf_beta": self.mrf_beta,
            "brain_mask": "MNI152 2009a GM+WM > 0.5 carried by the defacing registration and "
            "the template link, refined brain to brain (affine), holes filled",
        }


@dataclass(frozen=True)
class Segmentation:
    brain: np.ndarray  # bool
    dseg: np.ndarray  # uint8, LABELS
    probseg: np.ndarray  # float32, (x, y, z, 3)
    voxel_ml: float
    metric: float

    def volumes_ml(self) -> dict[str, float]:
        vols = {name: float((self.dseg == k).sum()) * self.voxel_ml for k, name in LABELS.items()}
        vols["Brain"] = float(self.brain.sum()) * self.voxel_ml
        return {k: round(v, 2) for k, v in vols.items()}


def brain_mask(fixed: sitk.Image, reg_params: RegParams) -> tuple[np.ndarray, float]:
    t1, brain = _mni()
    # Start from the head-to-head registration of defacing (robust: whole head against whole
    # head) carried into MNI space by the fixed template link, then fit brain to brain with
    # the metric on that brain and ~1 cm around it, so the face and neck cannot pull it.
    tpl, _ = _template()
    head = register(fixed, tpl, reg_params)
    link = np.asarray(json.loads(LINK.read_text())["matrix"])
    reg = Registration(from_matrix(link @ np.asarray(head.matrix())), head.metric)
    first = sitk.Resample(brain, fixed, reg.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    radius = [max(1, round(10.0 / sp)) for sp in fixed.GetSpacing()]
    near = sitk.BinaryDilate(sitk.Cast(first > 0.5, sitk.sitkUInt8), radius)
    reg = refine(fixed, t1, reg, near, reg_params)
    warped = sitk.Resample(brain, fixed, reg.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = sitk.BinaryFillhole(sitk.Cast(warped > 0.5, sitk.sitkUInt8))
    return sitk.GetArrayFromImage(mask).T.astype(bool), reg.metric


def bias_corrected(fixed: sitk.Image, mask: np.ndarray, iterations: int) -> np.ndarray:
    msk = sitk.GetImageFromArray(np.ascontiguousarray(mask.T.astype(np.uint8)))
    msk.CopyInformation(fixed)
    small, small_mask = coarse(fixed), coarse(msk)
    small_mask = sitk.Cast(small_mask > 0, sitk.sitkUInt8)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([iterations] * 3)
    n4.Execute(sitk.Cast(small, sitk.sitkFloat32), small_mask)
    log_bias = n4.GetLogBiasFieldAsImage(fixed)
    return (sitk.GetArrayFromImage(fixed) / np.exp(sitk.GetArrayFromImage(log_bias))).T


def _gauss(y: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((y[..., None] - mu) / sd) ** 2) / sd


def em_mrf(values: np.ndarray, mask: np.ndarray, p: SegParams) -> np.ndarray:
    """Posterior per class (x, y, z, 3) inside the mask, classes ordered by mean intensity."""
    y = values[mask].astype(np.float64)
    mu = np.quantile(y, [0.1, 0.45, 0.85])
    sd = np.full(3, y.std() / 3)
    pi = np.full(3, 1 / 3)
    post = np.zeros((*mask.shape, 3), dtype=np.float32)
    prior = np.broadcast_to(pi, (y.size, 3))
    for _ in range(p.iterations):
        lik = _gauss(y, mu, sd) * prior
        resp = lik / np.maximum(lik.sum(axis=1, keepdims=True), 1e-300)
        weight = resp.sum(axis=0)
        mu = (resp * y[:, None]).sum(axis=0) / weight
        sd = np.sqrt((resp * (y[:, None] - mu) ** 2).sum(axis=0) / weight) + 1e-6
        pi = weight / weight.sum()
        post[mask] = resp
        if p.mrf_beta > 0:
            # Mean-field prior: a class is likelier where the neighbours already hold it.
            near = np.stack([ndimage.uniform_filter(post[..., k], 3) for k in range(3)], -1)
            energy = np.exp(p.mrf_beta * 3 * near[mask]) * pi
            prior = energy / energy.sum(axis=1, keepdims=True)
        else:
            prior = np.broadcast_to(pi, (y.size, 3))
    order = np.argsort(mu)
    return post[..., order]


def segment(img: nib.Nifti1Image, reg_params: RegParams, p: SegParams) -> Segmentation:
    check_geometry(img)
    img = nib.funcs.squeeze_image(img)
    fixed = nifti.to_sitk(img)
    brain, metric = brain_mask(fixed, reg_params)
    # Only the brain's bounding box (plus a margin) is classified: memory follows the brain.
    idx = np.argwhere(brain)
    lo, hi = np.maximum(idx.min(0) - 2, 0), np.minimum(idx.max(0) + 3, brain.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    values = bias_corrected(fixed, brain, p.n4_iterations)
    probs = np.zeros((*brain.shape, 3), dtype=np.float32)
    probs[box] = em_mrf(values[box], brain[box], p)
    dseg = np.where(brain, probs.argmax(-1) + 1, 0).astype(np.uint8)
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000.0
    return Segmentation(brain, dseg, probs, voxel_ml, metric)


def segment_image(
    src: Path, out: dict[str, Path], reg_params: RegParams, p: SegParams
) -> dict[str, Any]:
    """Write brain mask, dseg and (when asked) probseg; return volumes and figures."""
    img = nifti.load(src)
    seg = segment(img, reg_params, p)
    nifti.write_like(img, seg.brain.astype(np.uint8), out["mask"], np.uint8, keep_scaling=False)
    nifti.write_like(img, seg.dseg, out["dseg"], np.uint8, keep_scaling=False)
    if "probseg" in out:
        probs = np.round(seg.probseg, 4)
        nifti.write_like(img, probs, out["probseg"], np.float32, keep_scaling=False)
    return {"metric": round(seg.metric, 6), "volumes_ml": seg.volumes_ml()}
