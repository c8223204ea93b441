"""Client-side pseudonymisation of personal identifiers (actor and destination ids).

The raw identifier never leaves the institution's process: only a keyed HMAC-SHA256 of it is sent.
The key stays with the institution, so the regulator can link events of one actor without being
able to recover who the actor is, and nobody without the key can test a guessed identifier.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["pseudonymise", "is_pseudonym"]

_PSEUDONYM = re.compile(r"[0-9a-f]{64}")


def pseudonymise(key: bytes, raw: str) -> str:
    """HMAC-SHA256 of ``raw`` (UTF-8) under ``key``, as 64 lowercase hex characters.

    >>> pseudonymise(b"k", "alice")[:16]
    'ec631a55bb81f5b9'
    """
    if not key:
        raise ValueError("pseudonym key must not be empty")
    return hmac.new(key, raw.encode("utf-8"), hashlib.sha256).hexdigest()


def is_pseudonym(value: str) -> bool:
    """Whether ``value`` has the shape of a pseudonym (so is not, by mistake, a raw identifier)."""
    return _PSEUDONYM.fullmatch(value) is not None
