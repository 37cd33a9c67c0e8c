"""De-identification: DICOM PS3.15 Annex E confidentiality profile with keyed pseudonyms.

profile: the vendored Table E.1-1 resolved to one action per attribute for a set of options.
uids, dates: keyed replacement UIDs and per-patient date shifts.
apply: the engine that rewrites one dataset (or file) in place and returns its audit.
"""
