"""Derivatives of converted anatomy: defacing, tissue segmentation, outside models, provenance."""
