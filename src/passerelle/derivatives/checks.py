"""Measures of derivative quality shared by the tests and the benchmark."""

from __future__ import annotations

import nibabel as nib
import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def random_affine(
    rng: np.random.Generator, rot_deg: float = 15, trans_mm: float = 20, scale: float = 0.10
) -> np.ndarray:
    """A world-space 4x4: rotations, per-axis scales and a translation drawn uniformly."""
    ax, ay, az = np.deg2rad(rng.uniform(-rot_deg, rot_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx @ np.diag(1 + rng.uniform(-scale, scale, 3))
    m[:3, 3] = rng.uniform(-trans_mm, trans_mm, 3)
    return m


def moved(img: nib.Nifti1Image, world: np.ndarray) -> nib.Nifti1Image:
    """The same voxels placed at world @ affine: the head moved (and scaled) by a known transform.

    Voxel i of the moved image is voxel i of the original, so the original's face mask *is* the
    mask carried by the known transform, with no resampling error in the reference.
    """
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), world @ img.affine, img.header)
    out.set_qform(world @ img.affine, 1)
    out.set_sform(world @ img.affine, 1)
    return out
