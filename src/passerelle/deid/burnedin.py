"""Burned-in text: objects likely to carry text in their pixels are screened with OCR.

A word found means quarantine, reported by location only. If OCR cannot run, every at-risk
object is quarantined: the screen fails closed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

AT_RISK_CLASSES = {"secondary_capture", "pdf", "sr"}
ULTRASOUND_MODALITIES = {"US", "IVUS"}
SCREEN_WORDS = re.compile(r"(?i)(screen|capture|report|dose|summary|secondary|snapshot|save ?page)")
MIN_CONFIDENCE = 60
MIN_WORD_CHARS = 2


class OcrUnavailable(RuntimeError):
    """tesseract or pytesseract is missing: at-risk objects cannot be proven clean."""


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    width: int
    height: int
    frame: int = 0

    def __str__(self) -> str:
        return f"frame {self.frame} at x={self.left},y={self.top} ({self.width}x{self.height})"


def risk_reason(attrs: dict[str, Any]) -> str | None:
    """Why an object must be screened for burned-in text, or None."""
    cls = attrs.get("ObjectClass")
    if cls in AT_RISK_CLASSES:
        return f"object class {cls}"
    if attrs.get("Modality") in ULTRASOUND_MODALITIES:
        return "ultrasound"
    if str(attrs.get("BurnedInAnnotation", "")).upper() == "YES":
        return "BurnedInAnnotation=YES"
    image_type = " ".join(str(t) for t in attrs.get("ImageType") or [])
    text = " ".join([image_type, str(attrs.get("SeriesDescription") or "")])
    if SCREEN_WORDS.search(text):
        return "image type or description suggests a screen capture or report page"
    return None


def ocr_available() -> bool:
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return False
    return shutil.which("tesseract") is not None


def _frames(ds: Dataset) -> list[np.ndarray]:
    pixels = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames == 1:
        pixels = pixels[np.newaxis]
    if samples > 1:
        pixels = pixels.mean(axis=-1)
    return list(pixels)


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    frame = frame.astype(np.float64)
    low, high = float(frame.min()), float(frame.max())
    if high <= low:
        return np.zeros(frame.shape, dtype=np.uint8)
    return ((frame - low) * (255.0 / (high - low))).astype(np.uint8)


def find_text(ds: Dataset) -> list[Box]:
    """Locations of words OCR reads in the pixel data. Raises OcrUnavailable."""
    if not ocr_available():
        raise OcrUnavailable("tesseract OCR is not installed")
    import pytesseract
    from PIL import Image

    boxes = []
    for n, frame in enumerate(_frames(ds)):
        image = Image.fromarray(_to_uint8(frame))
        # Text burned into medical images is small: upscaling helps tesseract read it.
        if max(image.size) < 1000:
            image = image.resize((image.width * 2, image.height * 2))
        scale = 2 if image.size != frame.shape[::-1] else 1
        data = pytesseract.image_to_data(image, output_type=pytesseract.Output.DICT)
        for i, word in enumerate(data["text"]):
            letters = re.sub(r"[^\w]", "", word or "")
            if len(letters) >= MIN_WORD_CHARS and float(data["conf"][i]) >= MIN_CONFIDENCE:
                boxes.append(
                    Box(
                        data["left"][i] // scale,
                        data["top"][i] // scale,
                        data["width"][i] // scale,
                        data["height"][i] // scale,
                        n,
                    )
                )
    return boxes
