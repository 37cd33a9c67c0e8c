"""The secret key: read from its own file, never copied, logged or stored elsewhere."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from passerelle.errors import KeyFileError

MIN_KEY_BYTES = 32
ENV_VAR = "PASSERELLE_KEY_FILE"


@dataclass(frozen=True)
class SecretKey:
    # repr=False keeps the bytes out of tracebacks, logs and debug output.
    material: bytes = field(repr=False)

    def digest(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of a value, domain-separated by purpose so labels of one kind
        can never be replayed as another."""
        msg = purpose.encode() + b"\x00" + value.encode("utf-8")
        return hmac.new(self.material, msg, hashlib.sha256).digest()

    def fingerprint(self) -> str:
        """Identifies the key (for cache invalidation) without revealing it."""
        return self.digest("fingerprint", "passerelle").hex()[:16]


def resolve_key_path(configured: str | None, base: Path | None = None) -> Path:
    raw = os.environ.get(ENV_VAR) or configured
    if not raw:
        raise KeyFileError(
            f"no key file: set config key 'key_file' or {ENV_VAR} "
            "(create one with: passerelle keygen PATH)"
        )
    path = Path(raw).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def load_key(path: Path) -> SecretKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} not found (create one with: passerelle keygen {path})"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"key file {path} is unreadable ({exc.strerror})") from None
    data = data.strip()
    if len(data) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"key file {path} holds {len(data)} bytes; at least {MIN_KEY_BYTES} are required"
        )
    return SecretKey(data)


def generate_key_file(path: Path) -> None:
    if path.exists():
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
