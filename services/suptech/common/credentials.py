"""Reading a caller's credentials off a gRPC call, the same way in every service.

Two kinds: ``authorization: Bearer <token>`` metadata, and the identity in a client certificate
that the TLS handshake verified. Which identities and roles they map to is each service's own
business (institutions at the gateway, regulators at the alert service); both keep them in a file
of ``token -> entry`` and ``cert:<identity> -> entry``, read again when it changes
(:class:`ReloadingFile`), so a credential is revoked without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = [
    "CERT_PREFIX",
    "MalformedAuthorization",
    "ReloadingFile",
    "TokenTable",
    "bearer_token",
    "certificate_identity",
    "parse_expiry",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

# Key prefix of a client-certificate identity in a credentials file ("cert:bank-a.example").
CERT_PREFIX = "cert:"


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


def parse_expiry(raw: Any) -> datetime | None:
    """An entry's optional ``expires``: ISO 8601 with a time zone, as an aware UTC datetime.

    Raises :class:`ValueError` saying what is wrong (the caller adds which entry). A time without a
    zone is refused: read as local time it would end a credential hours early or late.

    >>> parse_expiry("2027-01-01T08:00:00+08:00")
    datetime.datetime(2027, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is None:
        raise ValueError(f"'expires' must be an ISO 8601 time, got {raw!r}")
    if when.tzinfo is None:
        raise ValueError("'expires' needs a time zone (e.g. Z or +08:00)")
    try:
        return when.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:00 is past the largest datetime in UTC
        raise ValueError(f"'expires' {raw!r} is out of range in UTC") from None


_Signature = tuple[int, int, int, int] | None


class ReloadingFile(Generic[T]):
    """What ``load(path)`` made of a file, made again whenever the file changes.

    The file is looked at (one ``stat``) at most every ``check_every_s`` seconds, on the calls
    that need it, and reloaded when its modification time, size or inode changed (an editor's
    rename, a Kubernetes Secret's symlink swap). The first load raises whatever ``load`` raises.
    A later file that ``load`` refuses with one of ``errors`` (or that cannot be read) is logged
    once, kept in :attr:`error`, and the last good contents stay in force until a good file
    replaces it, as PostgreSQL does with a bad ``pg_hba.conf`` on reload: a typo must not lock
    every caller out, and expiries in the kept contents still apply.
    """

    def __init__(
        self,
        path: str | Path,
        load: Callable[[Path], T],
        *,
        check_every_s: float,
        errors: tuple[type[Exception], ...] = (ValueError,),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._load = load
        self._every = check_every_s
        self._errors: tuple[type[Exception], ...] = (OSError, *errors)
        self._clock = clock
        self._lock = threading.Lock()
        # Taken before the read: a change made while reading is seen at the next check.
        self._signature = self._stat()
        self._value = load(self.path)
        self._checked = clock()
        self.error = ""

    def _stat(self) -> _Signature:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

    def current(self) -> T:
        """The contents as of the last check (checking first when one is due)."""
        now = self._clock()
        if now - self._checked < self._every:
            return self._value
        with self._lock:
            if now - self._checked >= self._every:
                self._checked = now
                signature = self._stat()
                if signature != self._signature:
                    self._signature = signature
                    self._reload()
            return self._value

    def _reload(self) -> None:
        try:
            value = self._load(self.path)
        except self._errors as exc:
            self.error = str(exc) if not isinstance(exc, OSError) else f"cannot read: {exc}"
            log.error(
                "%s rejected, the previous contents stay in force until it is fixed: %s",
                self.path,
                self.error,
            )
            return
        self._value = value
        self.error = ""
        log.info("%s reloaded", self.path)
