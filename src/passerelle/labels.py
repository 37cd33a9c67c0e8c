"""The one place where a patient or a study becomes a BIDS label.

Labels are keyed hashes: stable across runs and deliveries (no counter to renumber),
never derived from identifiers in clear, and impossible to recompute without the key.
"""

from __future__ import annotations

from passerelle.keys import SecretKey

SUBJECT_CHARS = 12
SESSION_CHARS = 8


def patient_key(issuer: str, patient_id: str) -> str:
    # The issuer disambiguates identical PatientIDs coming from different hospitals.
    return f"{issuer.strip()}\x00{patient_id.strip()}"


def subject_label(key: SecretKey, patient: str) -> str:
    return key.digest("subject", patient).hex()[:SUBJECT_CHARS]


def session_label(key: SecretKey, study_instance_uid: str) -> str:
    return key.digest("session", study_instance_uid.strip()).hex()[:SESSION_CHARS]


def opaque_id(key: SecretKey, purpose: str, value: str, length: int = 16) -> str:
    """Keyed short id for values that must be compared but never shown (UIDs, paths)."""
    return key.digest(purpose, value).hex()[:length]
