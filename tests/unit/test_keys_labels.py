"""The secret key file and the keyed labels derived from it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from passerelle.errors import KeyFileError
from passerelle.keys import (
    ENV_VAR,
    MIN_KEY_BYTES,
    SecretKey,
    generate_key_file,
    load_key,
    resolve_key_path,
)
from passerelle.labels import (
    SESSION_CHARS,
    SUBJECT_CHARS,
    opaque_id,
    patient_key,
    session_label,
    subject_label,
)

PATIENT_IDS = ["123456", "PAT-0001", "abc123def", "0", "Müller^Hans", "7c5445473abe", "deadbeef"]
STUDY_UIDS = ["1.2.826.0.1.3680043.8.498.1", "1.3.12.2.1107.5.2.43.67093.30000022071111"]


def key_error(path: Path) -> str:
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --- loading ---------------------------------------------------------------------------


def test_missing_key_file(tmp_path):
    path = tmp_path / "absent.key"
    message = key_error(path)
    assert "not found" in message
    assert "keygen" in message  # says how to create one


def test_key_path_is_a_directory(tmp_path):
    message = key_error(tmp_path)
    assert "unreadable" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_key_file_without_read_permission(tmp_path):
    path = tmp_path / "locked.key"
    secret = "f" * 64
    path.write_text(secret)
    path.chmod(0)
    try:
        message = key_error(path)
    finally:
        path.chmod(0o600)
    assert "unreadable" in message
    assert secret not in message


@pytest.mark.parametrize("content", ["s3cr3t-short", "A" * (MIN_KEY_BYTES - 1), "  tiny  \n"])
def test_short_key_is_refused_without_echoing_it(tmp_path, content):
    path = tmp_path / "short.key"
    path.write_text(content)
    message = key_error(path)
    assert content.strip() not in message
    assert str(MIN_KEY_BYTES) in message
    assert str(len(content.strip())) in message


def test_whitespace_does_not_count_towards_key_length(tmp_path):
    path = tmp_path / "padded.key"
    path.write_text("k" * (MIN_KEY_BYTES - 2) + " " * 10 + "\n")
    key_error(path)


def test_valid_key_loads_stripped(tmp_path):
    path = tmp_path / "ok.key"
    path.write_text("k" * MIN_KEY_BYTES + "\n")
    key = load_key(path)
    assert key.material == b"k" * MIN_KEY_BYTES


def test_repr_and_str_hide_material():
    material = b"super-secret-material-0123456789abcdef"
    key = SecretKey(material)
    for text in (repr(key), str(key), f"{key!r}", f"{key}"):
        assert material.decode() not in text
        assert repr(material) not in text
        assert material.hex() not in text


def test_fingerprint_identifies_key_without_revealing_it():
    a, b = SecretKey(b"a" * 32), SecretKey(b"b" * 32)
    assert a.fingerprint() == SecretKey(b"a" * 32).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert "a" * 8 not in a.fingerprint()
    assert len(a.fingerprint()) == 16


# --- generating ------------------------------------------------------------------------


def test_generate_key_file_mode_and_strength(tmp_path):
    path = tmp_path / "sub" / "new.key"
    generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(path)
    assert len(key.material) >= MIN_KEY_BYTES
    other = tmp_path / "other.key"
    generate_key_file(other)
    assert load_key(other).material != key.material


def test_generate_key_file_ignores_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        generate_key_file(tmp_path / "u.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "u.key").stat().st_mode) == 0o600


def test_generate_key_file_refuses_to_overwrite(tmp_path):
    path = tmp_path / "existing.key"
    path.write_text("keep me\n")
    with pytest.raises(KeyFileError) as info:
        generate_key_file(path)
    assert "\n" not in str(info.value)
    assert "exists" in str(info.value)
    assert path.read_text() == "keep me\n"
    generate_key_file(tmp_path / "fresh.key")
    before = (tmp_path / "fresh.key").read_bytes()
    with pytest.raises(KeyFileError):
        generate_key_file(tmp_path / "fresh.key")
    assert (tmp_path / "fresh.key").read_bytes() == before


# --- key path resolution ---------------------------------------------------------------


def test_resolve_key_path(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_key_path("rel.key", tmp_path) == tmp_path / "rel.key"
    assert resolve_key_path(str(tmp_path / "abs.key"), Path("/elsewhere")) == tmp_path / "abs.key"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.key"))
    assert resolve_key_path("rel.key", tmp_path) == tmp_path / "env.key"


def test_resolve_key_path_without_any_key(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(KeyFileError) as info:
        resolve_key_path(None)
    assert "\n" not in str(info.value)
    assert ENV_VAR in str(info.value) and "key_file" in str(info.value)


# --- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize("pid", PATIENT_IDS)
def test_subject_labels(secret_key, pid):
    patient = patient_key("", pid)
    label = subject_label(secret_key, patient)
    assert label == subject_label(secret_key, patient)  # stable
    assert label == subject_label(SecretKey(bytes(secret_key.material)), patient)
    assert label != subject_label(SecretKey(b"another key of thirty-two bytes!"), patient)
    assert len(label) == SUBJECT_CHARS
    assert label.isascii() and label.isalnum()
    assert pid not in label and label not in pid


def test_subject_labels_differ_between_patients_and_issuers(secret_key):
    labels = {subject_label(secret_key, patient_key("", pid)) for pid in PATIENT_IDS}
    assert len(labels) == len(PATIENT_IDS)
    a = subject_label(secret_key, patient_key("HOSP-A", "123456"))
    b = subject_label(secret_key, patient_key("HOSP-B", "123456"))
    assert a != b
    # Surrounding blanks are not part of an identifier.
    assert subject_label(secret_key, patient_key(" HOSP-A ", " 123456 ")) == a


@pytest.mark.parametrize("study", STUDY_UIDS)
def test_session_labels(secret_key, study):
    label = session_label(secret_key, study)
    assert label == session_label(secret_key, study + " ")
    assert label != session_label(SecretKey(b"z" * 32), study)
    assert len(label) == SESSION_CHARS
    assert label.isascii() and label.isalnum()
    assert label not in study


def test_labels_are_domain_separated(secret_key):
    value = "1.2.3.4"
    assert subject_label(secret_key, value) != session_label(secret_key, value)[:SUBJECT_CHARS]
    assert not subject_label(secret_key, value).startswith(session_label(secret_key, value))
    assert opaque_id(secret_key, "sop", value) != opaque_id(secret_key, "series", value)
    assert len(opaque_id(secret_key, "sop", value, 24)) == 24
