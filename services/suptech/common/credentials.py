"""Reading a caller's credentials off a gRPC call, the same way in every service.

Two kinds: ``authorization: Bearer <token>`` metadata, and the identity in a client certificate
that the TLS handshake verified. Which identities and roles they map to is each service's own
business (institutions at the gateway, regulators at the alert service).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["MalformedAuthorization", "bearer_token", "certificate_identity", "TokenTable"]

T = TypeVar("T")


class MalformedAuthorization(ValueError):
    """An ``authorization`` header is present but is not ``Bearer <token>``."""


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The bearer token of the call; ``None`` when it sent no ``authorization`` header.

    Raises :class:`MalformedAuthorization` for any other scheme or an empty token: a client that
    meant to authenticate and got it wrong must be told, not treated as anonymous.
    """
    for key, value in metadata or ():
        if key.lower() == "authorization":
            header = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise MalformedAuthorization("authorization header must be 'Bearer <token>'")
            return token.strip()
    return None


def certificate_identity(auth_context: Mapping[str, Sequence[bytes]] | None) -> str | None:
    """Identity of a verified client certificate: its subject CN, else its first SAN.

    gRPC fills these keys only when the handshake verified the certificate against the
    configured client CA, so their presence is the proof.
    """
    # An absent CN is reported as one empty value, so empty values are skipped, not final.
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in (auth_context or {}).get(key) or ():
            if value:
                return value.decode("utf-8", "replace")
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class TokenTable(Generic[T]):
    """Token -> identity, looked up in constant time.

    Tokens are kept only as SHA-256 digests and compared against every entry without an early
    exit, so neither the lookup's timing nor a memory dump gives a token away.

    >>> table = TokenTable({"s3cret-token-0001": "bank-a"})
    >>> table.find("s3cret-token-0001"), table.find("guess")
    ('bank-a', None)
    """

    def __init__(self, entries: Mapping[str, T]) -> None:
        self._entries = [(_digest(token), value) for token, value in entries.items()]

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, token: str) -> T | None:
        presented = _digest(token)
        found: T | None = None
        for digest, value in self._entries:
            if hmac.compare_digest(digest, presented):
                found = value
        return found
