"""Reading, indexing and classifying DICOM deliveries (headers only)."""
