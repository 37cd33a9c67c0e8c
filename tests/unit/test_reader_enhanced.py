"""The index reads a classic header in one pass and an enhanced multi-frame one up to the
per-frame groups only; what it records must be exactly what a full read records, and
truncation must still be caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from passerelle.dicom import reader


def _xa30(testdata: Path) -> list[Path]:
    return sorted(p for p in (testdata / "siemens_xa30_exam" / "In").rglob("*") if p.is_file())


def _classic(testdata: Path) -> list[Path]:
    return sorted((testdata / "ge_siemens_epi" / "In").rglob("*.dcm"))[:40]


def test_quick_read_records_what_a_full_read_records(testdata, secret_key, monkeypatch) -> None:
    files = _xa30(testdata) + _classic(testdata)
    quick = [reader.read_header(p, secret_key) for p in files]
    monkeypatch.setattr(reader, "_read_quickly", lambda fh, size: (None, False))
    full = [reader.read_header(p, secret_key) for p in files]
    assert quick == full
    # The per-frame echo time (no shared MR echo group in these DWI files) is still found.
    dwi = [h for h, p in zip(quick, files, strict=True) if "10_DWI" in p.parent.name]
    assert dwi and all(h.attrs["EchoTime"] == pytest.approx(68.0) for h in dwi)


def test_quick_read_is_used_for_enhanced_objects(testdata) -> None:
    src = next((testdata / "siemens_xa30_exam" / "In" / "10_DWI_dir80_PA").glob("*.dcm"))
    with src.open("rb") as fh:
        ds, proven = reader._read_quickly(fh, src.stat().st_size)
    assert proven and ds is not None and "PerFrameFunctionalGroupsSequence" not in ds


def test_classic_header_is_read_once_with_pixels_left_to_check(testdata) -> None:
    src = _classic(testdata)[0]
    with src.open("rb") as fh:
        ds, proven = reader._read_quickly(fh, src.stat().st_size)
    # Whole header, pixel data deferred: the caller still checks its declared length.
    assert ds is not None and not proven and "PatientID" in ds and 0x7FE00010 in ds


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_enhanced_file_is_still_caught(testdata, secret_key, tmp_path, keep) -> None:
    src = next((testdata / "siemens_xa30_exam" / "In" / "10_DWI_dir80_PA").glob("*.dcm"))
    data = src.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * keep)])
    result = reader.read_header(cut, secret_key)
    assert isinstance(result, reader.Unusable)
    assert result.reason.startswith(("truncated", "unreadable"))
