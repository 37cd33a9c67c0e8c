"""Reading converted images and writing derived ones byte-for-byte deterministically."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from passerelle.fsutil import gzip_file

_SINGLE_FILE_OFFSET = 352  # header (348) + an empty extension flag (4)


def load(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    if not isinstance(img, nib.Nifti1Image):
        raise ValueError(f"{path.name}: not a NIfTI-1 image")
    return img


def raw_data(img: nib.Nifti1Image) -> np.ndarray:
    """Stored values, before scl_slope/scl_inter: zeroing them keeps the scaling exact."""
    return np.asanyarray(img.dataobj.get_unscaled())


def write_like(
    ref: nib.Nifti1Image,
    data: np.ndarray,
    path: Path,
    dtype: np.dtype | type | None = None,
    keep_scaling: bool = True,
) -> None:
    """Write data on ref's grid: same affine, qform/sform codes and units, .nii.gz, mtime 0.

    The header is written by hand rather than by nibabel's writer, which re-derives scaling
    and would change stored values of scaled (e.g. Philips) images.
    """
    hdr = ref.header.copy()
    if dtype is not None:
        hdr.set_data_dtype(dtype)
    hdr.set_data_shape(data.shape)
    slope, inter = (ref.dataobj.slope, ref.dataobj.inter) if keep_scaling else (1.0, 0.0)
    hdr["scl_slope"], hdr["scl_inter"] = slope, inter
    hdr["vox_offset"] = _SINGLE_FILE_OFFSET
    hdr["descrip"] = b"passerelle derivative"
    if len(data.shape) == 3:
        hdr["dim"][4:] = 1
    if not keep_scaling:
        hdr["cal_min"], hdr["cal_max"] = 0, 0
    block = np.asarray(data).astype(hdr.get_data_dtype(), copy=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".nii.") as tmp:
        plain = Path(tmp) / "image.nii"
        with plain.open("wb") as fh:
            fh.write(hdr.binaryblock)
            fh.write(b"\0\0\0\0")
            fh.write(block.tobytes(order="F"))
        gzip_file(plain, path)


def to_sitk(img: nib.Nifti1Image) -> sitk.Image:
    """The image as SimpleITK sees it (LPS physical space), from nibabel's voxel grid."""
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.T))
    aff = img.affine
    lps = np.diag([-1.0, -1.0, 1.0])
    zooms = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    direction = lps @ aff[:3, :3] / zooms
    out.SetSpacing([float(z) for z in zooms])
    out.SetOrigin([float(v) for v in lps @ aff[:3, 3]])
    out.SetDirection([float(v) for v in direction.ravel()])
    return out
