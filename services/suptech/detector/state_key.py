"""The key that seals the detector's checkpoints, held by the detector alone.

A checkpoint is pickled engine state, and unpickling runs code: bytes read back from a file or
from Kafka are therefore unpickled only when their HMAC-SHA256 under this key is right. Anyone
who can write to the checkpoint topic but lacks the key can make the detector start cold, never
run their code. The key comes from ``DETECTOR_STATE_KEY_FILE`` (a Kubernetes Secret in the
chart); without it the detector makes one in its state directory on first start, which seals
the local file but leaves the Kafka copy unreadable to a worker that lost that directory.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

__all__ = ["KEY_BYTES", "MAGIC", "StateKeyError", "load_state_key", "seal", "unseal"]

log = logging.getLogger(__name__)

KEY_BYTES = 32
# Format marker of a sealed checkpoint: what follows is the 32-byte MAC, then the payload.
MAGIC = b"SUPTECH-STATE/2\n"
_MAC_BYTES = hashlib.sha256().digest_size


class StateKeyError(ValueError):
    """Sealed bytes that this key did not seal (or that are not sealed at all)."""


def load_state_key(path: Path, create: bool) -> bytes:
    """The key in ``path``; with ``create``, a new random one is written there when absent."""
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise
        key = secrets.token_hex(KEY_BYTES).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        log.warning(
            "no DETECTOR_STATE_KEY_FILE: made a state key in %s; checkpoints in Kafka can be "
            "restored only by a worker that has this file",
            path,
        )
    if len(key) < KEY_BYTES:
        raise ValueError(f"state key in {path} is shorter than {KEY_BYTES} bytes")
    return key


def _mac(payload: bytes | memoryview, key: bytes) -> bytes:
    # Incremental, so that no copy of a payload of hundreds of MB is made to prefix it.
    mac = hmac.new(key, MAGIC, "sha256")
    mac.update(payload)
    return mac.digest()


def seal(payload: bytes, key: bytes) -> bytes:
    return b"".join((MAGIC, _mac(payload, key), payload))


def unseal(data: bytes, key: bytes) -> memoryview:
    """The payload of ``data`` (a view of it, not a copy); raises :class:`StateKeyError`
    unless ``key`` sealed it."""
    if not data.startswith(MAGIC):
        raise StateKeyError("not a sealed checkpoint (unknown format or an older version)")
    mac = data[len(MAGIC) : len(MAGIC) + _MAC_BYTES]
    payload = memoryview(data)[len(MAGIC) + _MAC_BYTES :]
    if not hmac.compare_digest(mac, _mac(payload, key)):
        raise StateKeyError("checkpoint MAC does not verify: written without this detector's key")
    return payload
