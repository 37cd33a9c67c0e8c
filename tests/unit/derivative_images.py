"""The real whole-head T1w images the derivative tests run on (from ../shared/testdata)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import nibabel as nib

from passerelle.convert import dcm2niix_executable

HEAD = "head_t1w_face/ds000031_sub-01_ses-006_run-001_T1w.nii.gz"
SIEMENS = "siemens_xa30_exam/Ref/5_anat-T1w_acq-tfl.nii"


def philips_t1w(testdata: Path, tmp: Path) -> Path:
    """dcm2niix on gunzipped copies of the Philips MPRAGE slices."""
    dicom = tmp / "dicom"
    dicom.mkdir()
    for src in sorted((testdata / "philips_mprage_classic" / "In").glob("*.dcm.gz")):
        with gzip.open(src) as fin, (dicom / src.name.removesuffix(".gz")).open("wb") as fout:
            shutil.copyfileobj(fin, fout)
    out = tmp / "nifti"
    out.mkdir()
    subprocess.run(
        [dcm2niix_executable(), "-z", "y", "-b", "n", "-f", "t1w", "-o", str(out), str(dicom)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("*.nii.gz"))


def load(path: Path) -> nib.Nifti1Image:
    return nib.load(path)
