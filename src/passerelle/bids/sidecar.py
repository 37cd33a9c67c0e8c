"""The one allow-list for what a converted file may say about its acquisition.

JSON sidecars keep only listed keys; NIfTI text fields keep only listed descrip items.
Anything not listed is dropped (fails closed): an unknown dcm2niix key never leaks through.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import nibabel as nib

SIDECAR_ALLOWED: frozenset[str] = frozenset(
    {
        # Hardware and software (device identity: serial and station are never listed).
        "Modality", "MagneticFieldStrength", "ImagingFrequency", "Manufacturer",
        "ManufacturersModelName", "SoftwareVersions", "ReceiveCoilName",
        "ReceiveCoilActiveElements", "CoilString", "CoilCombinationMethod", "MatrixCoilMode",
        "BodyPart", "PatientPosition",
        # Sequence.
        "MRAcquisitionType", "SeriesDescription", "ProtocolName", "ScanningSequence",
        "SequenceVariant", "ScanOptions", "SequenceName", "PulseSequenceName",
        "PulseSequenceType", "PulseSequenceDetails", "InternalPulseSequenceName",
        "ImageType", "ImageTypeText", "NonlinearGradientCorrection", "SeriesNumber",
        "AcquisitionNumber", "RawImage", "MTState", "SpoilingState", "SpoilingType",
        "NumberOfAverages", "SAR",
        # Timing and contrast.
        "EchoNumber", "EchoTime", "EchoTime1", "EchoTime2", "RepetitionTime", "InversionTime",
        "FlipAngle", "EchoTrainLength", "SliceTiming", "AcquisitionDuration", "DwellTime",
        "PixelBandwidth", "BandwidthPerPixelPhaseEncode", "TxRefAmp",
        # Geometry and encoding.
        "SliceThickness", "SpacingBetweenSlices", "TablePosition", "ShimSetting",
        "BaseResolution", "PhaseResolution", "PercentPhaseFOV", "PercentSampling",
        "PhaseEncodingSteps", "PhaseEncodingStepsOutOfPlane", "FrequencyEncodingSteps",
        "AcquisitionMatrixPE", "ReconMatrixPE", "RefLinesPE", "PartialFourier",
        "PartialFourierDirection", "ParallelAcquisitionTechnique",
        "ParallelReductionFactorInPlane", "ParallelReductionFactorOutOfPlane",
        "MultibandAccelerationFactor", "NumberOfKSpaceTrajectories", "PhaseEncodingDirection",
        "InPlanePhaseEncodingDirectionDICOM", "PhaseEncodingPolarityGE",
        "ImageOrientationPatientDICOM", "ImageOrientationText", "WaterFatShift",
        "EffectiveEchoSpacing", "DerivedVendorReportedEchoSpacing",
        "EstimatedEffectiveEchoSpacing", "TotalReadoutTime", "EstimatedTotalReadoutTime",
        "DiffusionScheme",
        # Perfusion.
        "ArterialSpinLabelingType", "PostLabelingDelay", "LabelingDuration",
        # Vendor scaling needed to interpret intensities.
        "PhilipsRWVIntercept", "PhilipsRWVSlope", "PhilipsRescaleIntercept",
        "PhilipsRescaleSlope", "PhilipsScaleSlope", "UsePhilipsFloatNotDisplayScaling",
        # Provenance of the conversion and BIDS fields the pipeline adds.
        "ConversionSoftware", "ConversionSoftwareVersion", "TaskName", "IntendedFor",
        # Made from the pseudonymised copy, so the time of day is already shifted.
        "AcquisitionTime",
        "B0FieldIdentifier", "B0FieldSource",
    }
)  # fmt: skip

# dcm2niix writes e.g. "TE=12;Time=120942.480;phase=1": the time of day must not survive.
DESCRIP_ALLOWED = frozenset({"TE", "TR", "TI", "FA", "phase", "mb", "dwell"})
_BLANKED_TEXT_FIELDS = ("aux_file", "intent_name", "db_name")


def scrub_sidecar(sidecar: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    kept = {k: v for k, v in sidecar.items() if k in SIDECAR_ALLOWED}
    return kept, sorted(set(sidecar) - set(kept))


def scrub_descrip(descrip: str) -> str:
    items = [i for i in re.split(r"[;\s]+", descrip) if "=" in i]
    return ";".join(i for i in items if i.split("=", 1)[0] in DESCRIP_ALLOWED)


def scrub_nifti_header(path: Path) -> None:
    """Rewrite the header text fields of an uncompressed NIfTI in place.

    The header is parsed from the raw bytes: nibabel's image-level header resets
    vox_offset, which would shift the voxels if written back.
    """
    with path.open("r+b") as fh:
        raw = fh.read(540)
        klass = nib.Nifti2Header if int.from_bytes(raw[:4], "little") == 540 else nib.Nifti1Header
        header = klass.from_fileobj(io.BytesIO(raw))
        descrip = header["descrip"].tobytes().split(b"\0", 1)[0].decode("ascii", "replace")
        header["descrip"] = scrub_descrip(descrip).encode()
        for name in _BLANKED_TEXT_FIELDS:
            if name in header:
                header[name] = b""
        block = header.binaryblock
        if block == raw[: len(block)]:
            return
        fh.seek(0)
        fh.write(block)
