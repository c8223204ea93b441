"""The registry of institutions: which tokens and which client certificates are an institution.

It is the ``GATEWAY_TOKENS_FILE``, a JSON object; each key is a bearer token (at least 16
characters) or ``cert:<identity>`` (a client certificate's subject CN, else its first SAN, as the
TLS handshake verified it), and each value the institution id, alone or with an expiry::

    {
      "k7Qm...43-chars": "bank-a",
      "Zp0x...43-chars": {"institution": "bank-b", "expires": "2027-01-01T00:00:00Z"},
      "cert:gw.bank-c.example": "bank-c"
    }

A certificate signed by the CA is only proof of who the caller is, not that it is an
institution: the same CA may sign the regulator's own certificates. So a certificate identity
that is not listed here is refused (``PERMISSION_DENIED``), however valid the certificate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from suptech.common.credentials import CERT_PREFIX, TokenTable, parse_expiry

__all__ = [
    "MAX_INSTITUTION_ID_CHARS",
    "MIN_TOKEN_CHARS",
    "Credential",
    "Registry",
    "RegistryError",
    "load_registry",
    "read_entries",
]

# Shorter tokens are guessable; the generator (python -m suptech.gateway.tokens) makes 43 chars.
MIN_TOKEN_CHARS = 16
MAX_INSTITUTION_ID_CHARS = 128
_ENTRY_KEYS = frozenset({"institution", "expires"})


class RegistryError(ValueError):
    """The registry is malformed; the message names the entry, never a token."""


@dataclass(frozen=True)
class Credential:
    """What one registry entry grants: writing as ``institution`` until ``expires`` (aware UTC)."""

    institution: str
    expires: datetime | None = None


class Registry:
    """Tokens (constant-time lookup, kept as digests) and certificate identities -> credential."""

    def __init__(self, credentials: Mapping[str, Credential]) -> None:
        tokens: dict[str, Credential] = {}
        self._certs: dict[str, Credential] = {}
        for key, credential in credentials.items():
            if key.startswith(CERT_PREFIX):
                self._certs[key[len(CERT_PREFIX) :]] = credential
            else:
                tokens[key] = credential
        self._tokens = TokenTable(tokens)

    @classmethod
    def from_entries(cls, raw: Mapping[str, Any], source: str = "registry") -> Registry:
        """Entries in the file's format, validated: :class:`RegistryError` names a bad one."""
        return cls({key: _credential(source, key, value) for key, value in raw.items()})

    def current(self) -> Registry:
        """A fixed registry is its own current version (as :class:`ReloadingFile` has one)."""
        return self

    def __len__(self) -> int:
        return len(self._tokens) + len(self._certs)

    def by_token(self, token: str) -> Credential | None:
        return self._tokens.find(token)

    def by_certificate(self, identity: str) -> Credential | None:
        return self._certs.get(identity)


def _credential(source: str, key: str, value: Any) -> Credential:
    if key.startswith(CERT_PREFIX):
        label = repr(key)  # an identity the handshake checks, not a secret
        if not key[len(CERT_PREFIX) :]:
            raise RegistryError(f"{source}: {label} names no certificate identity")
    else:
        # Never echo the token itself into logs: name the entry by its institution instead.
        label = f"a token of {_institution_of(value)!r}"
        if len(key) < MIN_TOKEN_CHARS:
            raise RegistryError(f"{source}: {label} is shorter than {MIN_TOKEN_CHARS} chars")
    if isinstance(value, dict):
        unknown = sorted(set(value) - _ENTRY_KEYS)
        if unknown:
            # A misspelt "expires" would make a credential last for ever.
            raise RegistryError(f"{source}: {label} has unknown keys {unknown}")
        institution, expires_raw = value.get("institution"), value.get("expires")
    else:
        institution, expires_raw = value, None
    if not isinstance(institution, str) or not institution:
        raise RegistryError(f"{source}: {label}: the institution id must be a non-empty string")
    if len(institution) > MAX_INSTITUTION_ID_CHARS:
        raise RegistryError(f"{source}: institution id {institution[:20]!r}... is too long")
    try:
        expires = parse_expiry(expires_raw)
    except ValueError as exc:
        raise RegistryError(f"{source}: {label}: {exc}") from None
    return Credential(institution, expires)


def _institution_of(value: Any) -> str:
    raw = value.get("institution") if isinstance(value, dict) else value
    return raw[:MAX_INSTITUTION_ID_CHARS] if isinstance(raw, str) else "?"


def read_entries(path: str | Path, source: str = "") -> dict[str, Any]:
    """The file's JSON object, unvalidated; :class:`RegistryError` (starting with ``source``,
    else the path) when unreadable or not an object."""
    where = source or str(path)
    try:
        raw = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise RegistryError(f"{where}: cannot read: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise RegistryError(f"{where}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise RegistryError(f'{where}: must be an object {{"<token>": "<institution_id>"}}')
    return raw


def load_registry(path: Path) -> Registry:
    """Read and validate the file (what :class:`ReloadingFile` calls on each change)."""
    return Registry.from_entries(read_entries(path), str(path))
