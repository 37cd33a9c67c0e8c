"""BIDS naming, series mapping, sidecar scrubbing and dataset-level files."""
