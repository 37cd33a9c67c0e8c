"""Linkage of clinical tables to the imaging subjects through keyed encodings only."""
