"""Passerelle: hospital DICOM exports to pseudonymised, versioned BIDS research archives."""

__version__ = "0.1.0"
