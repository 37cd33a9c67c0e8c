"""Temporary copies of the real scanner files in ../shared/testdata, with synthetic edits.

Nothing here writes outside the destination a test passes in (always under tmp_path).
"""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

XA30 = "siemens_xa30_exam/In"
XA30_T1 = f"{XA30}/5_anat-T1w_acq-tfl"
XA30_BOLD = f"{XA30}/7_func-bold_task-fa_run-1"
XA30_PHOENIX = f"{XA30}/99_Phoenix_Document"
PHILIPS = "philips_mprage_classic/In"
SI_MOSAIC_AP = "ge_siemens_epi/In/20180918Si/mr_0003"
GE_EPI = "ge_siemens_epi/In/20180918GE/mr_0004"
GE_README = "ge_siemens_epi/In/20180918GE/README-Study.txt"

PIXEL_DATA = 0x7FE00010


def dicoms(testdata: Path, folder: str, n: int | None = None) -> list[Path]:
    """The DICOM files (*.dcm, *.dcm.gz) of one folder of the test data, sorted."""
    files = sorted(p for p in (testdata / folder).iterdir() if ".dcm" in p.name)
    assert files, f"no DICOM files in {folder}"
    return files[:n] if n else files


def raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def load(path: Path, **kwargs: Any) -> Dataset:
    return pydicom.dcmread(io.BytesIO(raw_bytes(path)), **kwargs)


def save(ds: Dataset, dst: Path) -> Path:
    buf = io.BytesIO()
    ds.save_as(buf)
    return write_bytes(dst, buf.getvalue())


def plant(src: Path, dst: Path, **tags: Any) -> Path:
    """Copy src to dst with the given attributes set (None deletes the attribute)."""
    ds = load(src)
    for name, value in tags.items():
        if value is None:
            if name in ds:
                delattr(ds, name)
        else:
            setattr(ds, name, value)
    return save(ds, dst)


def pixel_span(path: Path) -> tuple[int, int]:
    """(offset, length) of the Pixel Data value in the (decompressed) file."""
    ds = load(path, defer_size=1024)
    elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
    return elem.value_tell, elem.length


def effective_echo_time(ds: Dataset) -> float | None:
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(group)
        if seq and "MREchoSequence" in seq[0]:
            return float(seq[0].MREchoSequence[0].EffectiveEchoTime)
    return None
