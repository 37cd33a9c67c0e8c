"""The index reads enhanced multi-frame headers up to the per-frame groups only; what it
records must be exactly what a full read records, and truncation must still be caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from passerelle.dicom import reader


def _xa30(testdata: Path) -> list[Path]:
    return sorted(p for p in (testdata / "siemens_xa30_exam" / "In").rglob("*") if p.is_file())


def test_quick_read_records_what_a_full_read_records(testdata, secret_key, monkeypatch) -> None:
    files = _xa30(testdata)
    quick = [reader.read_header(p, secret_key) for p in files]
    monkeypatch.setattr(reader, "_read_enhanced_quickly", lambda fh, size: None)
    full = [reader.read_header(p, secret_key) for p in files]
    assert quick == full
    # The per-frame echo time (no shared MR echo group in these DWI files) is still found.
    dwi = [h for h, p in zip(quick, files, strict=True) if "10_DWI" in p.parent.name]
    assert dwi and all(h.attrs["EchoTime"] == pytest.approx(68.0) for h in dwi)


def test_quick_read_is_used_for_enhanced_objects(testdata) -> None:
    src = next((testdata / "siemens_xa30_exam" / "In" / "10_DWI_dir80_PA").glob("*.dcm"))
    with src.open("rb") as fh:
        ds = reader._read_enhanced_quickly(fh, src.stat().st_size)
    assert ds is not None and "PerFrameFunctionalGroupsSequence" not in ds


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_enhanced_file_is_still_caught(testdata, secret_key, tmp_path, keep) -> None:
    src = next((testdata / "siemens_xa30_exam" / "In" / "10_DWI_dir80_PA").glob("*.dcm"))
    data = src.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * keep)])
    result = reader.read_header(cut, secret_key)
    assert isinstance(result, reader.Unusable)
    assert result.reason.startswith(("truncated", "unreadable"))
