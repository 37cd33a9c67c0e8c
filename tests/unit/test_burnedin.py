"""Burned-in text screening: OCR finds words and reports where, never what; no OCR, no pass."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset

from passerelle import pseudonymise
from passerelle.deid import burnedin

WORDS = "DUPONT JEANNE 12/03/1961"


def _capture(text: str | None) -> Dataset:
    image = Image.new("L", (512, 256), 0)
    if text:
        ImageDraw.Draw(image).text((20, 40), text, fill=255, font=ImageFont.load_default(size=28))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    pixels = np.array(image)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    return ds


SC = {"ObjectClass": "secondary_capture", "Modality": "OT"}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"ObjectClass": "secondary_capture"}, "object class secondary_capture"),
        ({"ObjectClass": "image", "Modality": "US"}, "ultrasound"),
        ({"ObjectClass": "image", "BurnedInAnnotation": "YES"}, "BurnedInAnnotation=YES"),
        ({"ObjectClass": "image", "ImageType": ["DERIVED", "SECONDARY", "SCREEN SAVE"]}, "screen"),
        ({"ObjectClass": "image", "SeriesDescription": "Dose Report"}, "screen"),
        ({"ObjectClass": "image", "Modality": "MR", "ImageType": ["ORIGINAL", "PRIMARY"]}, None),
    ],
)
def test_risk_reasons(attrs, expected) -> None:
    reason = burnedin.risk_reason(attrs)
    assert (reason is None) if expected is None else (expected in reason)


@pytest.mark.skipif(not burnedin.ocr_available(), reason="tesseract not installed")
def test_text_in_pixels_is_found_and_located_not_quoted() -> None:
    boxes = burnedin.find_text(_capture(WORDS))
    assert len(boxes) >= 2
    assert all(0 <= b.left < 512 and 0 <= b.top < 256 and b.width > 0 for b in boxes)
    reason = pseudonymise._burned_in(_capture(WORDS), SC, ocr=True)
    assert reason is not None and reason.startswith("burned-in text:")
    assert "x=" in reason
    for word in WORDS.split():
        assert word.lower() not in reason.lower()


@pytest.mark.skipif(not burnedin.ocr_available(), reason="tesseract not installed")
def test_blank_capture_passes() -> None:
    assert burnedin.find_text(_capture(None)) == []
    assert pseudonymise._burned_in(_capture(None), SC, ocr=True) is None


def test_without_ocr_at_risk_objects_are_quarantined(monkeypatch) -> None:
    monkeypatch.setattr(burnedin, "ocr_available", lambda: False)
    reason = pseudonymise._burned_in(_capture(None), SC, ocr=True)
    assert reason is not None and "OCR is unavailable" in reason
    with pytest.raises(burnedin.OcrUnavailable):
        burnedin.find_text(_capture(WORDS))
    # Switching OCR off in the policy fails closed the same way.
    assert "OCR is unavailable" in pseudonymise._burned_in(_capture(None), SC, ocr=False)


def test_encapsulated_pdf_is_never_passed() -> None:
    reason = pseudonymise._burned_in(Dataset(), {"ObjectClass": "pdf"}, ocr=True)
    assert reason is not None and "PDF" in reason


def test_ordinary_mr_is_not_screened() -> None:
    attrs = {"ObjectClass": "image", "Modality": "MR", "ImageType": ["ORIGINAL", "PRIMARY"]}
    assert pseudonymise._burned_in(_capture(WORDS), attrs, ocr=True) is None
