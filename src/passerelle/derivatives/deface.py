"""pydeface's method with SimpleITK: register its template, carry its face mask, zero the face.

The template (``mean_reg2mean``) and mask (``facemask``: 1 = keep, 0 = face) are the pydeface
package data. The registration maps image points to template points, so resampling the mask
with it puts the face onto the image grid; voxels beyond the template's field of view are kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from passerelle.derivatives import nifti
from passerelle.derivatives.registration import (
    Registration,
    RegistrationError,
    RegParams,
    register,
)

# A head needs this much extent on every axis; less is a slab or a localizer.
MIN_EXTENT_MM = 100.0
MIN_VOXELS = 32


def pydeface_data(name: str) -> Path:
    return Path(str(files("pydeface") / "data" / name))


@cache
def _template() -> tuple[sitk.Image, sitk.Image]:
    tpl = nifti.to_sitk(nifti.load(pydeface_data("mean_reg2mean.nii.gz")))
    keep = nifti.to_sitk(nifti.load(pydeface_data("facemask.nii.gz")))
    return tpl, keep


def check_geometry(img: nib.Nifti1Image) -> None:
    """Quarantine what a whole-head registration cannot handle, before trying it."""
    shape = img.shape
    if len(shape) > 3 and any(n > 1 for n in shape[3:]):
        raise RegistrationError(f"not a 3D volume (shape {'x'.join(map(str, shape))})")
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    extent = np.asarray(shape[:3]) * zooms
    if min(shape[:3]) < MIN_VOXELS or extent.min() < MIN_EXTENT_MM:
        raise RegistrationError(
            f"a slab, not a head: {'x'.join(map(str, shape[:3]))} voxels, "
            f"{extent.min():.0f} mm on its thinnest axis (needs {MIN_EXTENT_MM:.0f} mm)"
        )


@dataclass(frozen=True)
class Defaced:
    face: np.ndarray  # bool, image grid: True = removed
    registration: Registration


def face_mask(img: nib.Nifti1Image, params: RegParams) -> Defaced:
    check_geometry(img)
    tpl, keep = _template()
    fixed = nifti.to_sitk(nib.funcs.squeeze_image(img))
    reg = register(fixed, tpl, params)
    warped = sitk.Resample(keep, fixed, reg.transform, sitk.sitkLinear, 1.0, sitk.sitkFloat32)
    face = sitk.GetArrayFromImage(warped).T < 0.5
    return Defaced(face.reshape(img.shape[:3]), reg)


def deface_image(src: Path, defaced: Path, mask: Path, params: RegParams) -> dict[str, Any]:
    """Write the defaced image and the face mask (1 = removed); return the figures to record."""
    img = nifti.load(src)
    result = face_mask(img, params)
    raw = nifti.raw_data(img)
    face = result.face.reshape(raw.shape) if raw.ndim == 3 else result.face[..., None]
    out = np.where(face, np.zeros((), raw.dtype), raw)
    nifti.write_like(img, out, defaced)
    nifti.write_like(img, result.face.astype(np.uint8), mask, dtype=np.uint8, keep_scaling=False)
    return {
        "metric": round(result.registration.metric, 6),
        "face_voxels": int(result.face.sum()),
        "removed_nonzero_voxels": int(np.count_nonzero(raw[face])),
        "transform": result.registration.matrix(),
    }


def pydeface_available() -> bool:
    return bool(os.environ.get("FSLDIR")) and shutil.which("pydeface") is not None


def deface_with_pydeface(src: Path, defaced: Path, mask: Path) -> dict[str, Any]:
    """pydeface itself (FSL FLIRT), when FSL is installed and the config asks for it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "defaced.nii.gz"
        subprocess.run(
            ["pydeface", str(src), "--outfile", str(out), "--force"],
            check=True,
            capture_output=True,
        )
        img, got = nifti.load(src), nifti.load(out)
        face = (nifti.raw_data(img) != 0) & (np.asanyarray(got.dataobj) == 0)
        nifti.write_like(img, nifti.raw_data(got), defaced)
        nifti.write_like(img, face.astype(np.uint8), mask, dtype=np.uint8, keep_scaling=False)
    return {"face_voxels": int(face.sum())}
