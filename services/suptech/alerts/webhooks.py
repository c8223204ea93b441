"""Signed webhooks: delivery of the outbox's ``webhook`` rows to the regulator's receivers.

Every request is a JSON POST carrying two headers:

``X-Suptech-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
    as Stripe does it: the timestamp is signed with the body, so a captured request cannot be
    replayed later than the receiver's tolerance. Verify with :func:`verify_signature`.
``X-Suptech-Dedup-Key``
    the same for every retry of one message (also in the body as ``dedup_key``); delivery is
    at-least-once, so a receiver drops a key it has already processed.

A failed delivery (network error, timeout, any non-2xx answer, a redirect) is retried with
exponential backoff and jitter; after ``max_attempts`` the row is left undelivered with
``attempts == max_attempts`` and the last error in ``last_error`` (dead, but kept for inspection).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from suptech.alerts.models import OUTBOX_WEBHOOK, OutboxRow

__all__ = [
    "DEDUP_HEADER",
    "SIGNATURE_HEADER",
    "DispatchStats",
    "SignatureError",
    "WebhookDispatcher",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Suptech-Signature"
DEDUP_HEADER = "X-Suptech-Dedup-Key"
DEFAULT_TOLERANCE_S = 300
USER_AGENT = "suptech-alerts-webhook/1"


class SignatureError(ValueError):
    """A webhook request whose signature does not prove it came from us, unchanged and recently."""


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Suptech-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secrets: bytes | Sequence[bytes],
    header: str | None,
    body: bytes,
    *,
    now: int | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a received request; return its signed timestamp or raise :class:`SignatureError`.

    ``secrets`` may list the old and the new secret while rotating. Pass the raw body bytes as
    received: re-serialised JSON would not match.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"bad timestamp {value!r}") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header needs t=<timestamp> and v1=<signature>")
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is outside the {tolerance_s}s tolerance")
    keys: list[bytes] = [secrets] if isinstance(secrets, bytes) else [bytes(k) for k in secrets]
    for secret in keys:
        expected = _mac(secret, timestamp, body)
        if any(hmac.compare_digest(expected, c) for c in candidates):
            return timestamp
    raise SignatureError("signature does not match the body")


@dataclass(frozen=True)
class _Claimed:
    # Copied out of the ORM row so the caller's session settings (expire_on_commit) cannot bite.
    id: int
    payload: bytes
    dedup_key: str
    attempts: int


@dataclass
class DispatchStats:
    delivered: int = 0
    retried: int = 0
    dead: int = 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A receiver that moved must be reconfigured; following a redirect would send the signed body
    # to wherever the redirect points.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


class _DeliveryError(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _retry_after(headers: Message | None) -> float | None:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP-date: ignore it and use our own backoff


class WebhookDispatcher:
    """Delivers due webhook rows of the outbox to every configured URL."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        urls: Sequence[str],
        secret: bytes | str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        http_timeout: float = 5.0,
        *,
        max_attempts: int = 8,
        base_delay_s: float = 2.0,
        max_delay_s: float = 600.0,
        batch: int = 50,
        rng: random.Random | None = None,
    ) -> None:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"webhook URL must be http(s)://host/..., got {url!r}")
        if not secret:
            raise ValueError("webhook secret must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._sessions = session_factory
        self._urls = list(urls)
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._clock = clock
        self._timeout = http_timeout
        self.max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._batch = batch
        self._rng = rng or random.Random()
        self._opener = urllib.request.build_opener(_NoRedirect())
        # URLs that already accepted a message still being retried elsewhere: not sent again by
        # this process (after a restart they may be, which the dedup key makes harmless).
        self._accepted: dict[int, set[str]] = {}

    def backoff_s(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``: doubling, capped, with "equal jitter"."""
        full = min(self._max_delay_s, self._base_delay_s * 2.0 ** max(0, attempts - 1))
        return full / 2 + self._rng.uniform(0, full / 2)

    def _claim(self, now: datetime) -> list[_Claimed]:
        """Take due rows, pushing their next attempt past this one so no other dispatcher does."""
        lease = now + timedelta(seconds=self._timeout * max(1, len(self._urls)) + 30)
        with self._sessions.begin() as s:
            due = list(
                s.scalars(
                    select(OutboxRow)
                    .where(
                        OutboxRow.kind == OUTBOX_WEBHOOK,
                        OutboxRow.delivered_at.is_(None),
                        OutboxRow.attempts < self.max_attempts,
                        OutboxRow.next_attempt_at <= now,
                    )
                    .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                    .limit(self._batch)
                )
            )
            claimed = []
            for row in due:
                # Compare-and-set on next_attempt_at: exactly one dispatcher wins each row.
                result: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                    update(OutboxRow)
                    .where(
                        OutboxRow.id == row.id,
                        OutboxRow.next_attempt_at == row.next_attempt_at,
                        OutboxRow.delivered_at.is_(None),
                    )
                    .values(next_attempt_at=lease)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:
                    claimed.append(_Claimed(row.id, row.payload, row.dedup_key, row.attempts))
            return claimed

    def _body(self, row: _Claimed) -> bytes:
        try:
            doc = json.loads(row.payload)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise _DeliveryError("payload is not a JSON object")
        doc["dedup_key"] = row.dedup_key
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def _post(self, url: str, body: bytes, dedup_key: str, now: datetime) -> None:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: sign(self._secret, int(now.timestamp()), body),
                DEDUP_HEADER: dedup_key,
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            raise _DeliveryError(
                f"{url}: HTTP {exc.code} {exc.reason}", _retry_after(exc.headers)
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _DeliveryError(f"{url}: {reason}") from None
        if not 200 <= status < 300:
            raise _DeliveryError(f"{url}: HTTP {status}")

    def _deliver(self, row: _Claimed, now: datetime) -> list[_DeliveryError]:
        try:
            body = self._body(row)
        except _DeliveryError as exc:
            return [exc]
        accepted = self._accepted.setdefault(row.id, set())
        errors = []
        for url in self._urls:
            if url in accepted:
                continue
            try:
                self._post(url, body, row.dedup_key, now)
                accepted.add(url)
            except _DeliveryError as exc:
                errors.append(exc)
        return errors

    def _record(
        self, row: _Claimed, errors: list[_DeliveryError], now: datetime, stats: DispatchStats
    ) -> None:
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts}
        if not errors:
            values.update(delivered_at=now, last_error="")
            stats.delivered += 1
            self._accepted.pop(row.id, None)
        else:
            message = "; ".join(str(e) for e in errors)[:2000]
            if attempts >= self.max_attempts:
                values["last_error"] = f"gave up after {attempts} attempts: {message}"
                stats.dead += 1
                self._accepted.pop(row.id, None)
                log.error("webhook %s dead: %s", row.dedup_key, message)
            else:
                delay = self.backoff_s(attempts)
                hints = [e.retry_after_s for e in errors if e.retry_after_s is not None]
                if hints:
                    delay = max(delay, min(max(hints), self._max_delay_s))
                values.update(next_attempt_at=now + timedelta(seconds=delay), last_error=message)
                stats.retried += 1
                log.warning("webhook %s attempt %d failed: %s", row.dedup_key, attempts, message)
        with self._sessions.begin() as s:
            s.execute(update(OutboxRow).where(OutboxRow.id == row.id).values(**values))

    def run_once(self, now: datetime | None = None) -> DispatchStats:
        """Deliver every row due at ``now`` (default: the clock) once; return what happened."""
        stats = DispatchStats()
        if not self._urls:
            return stats
        current = now or self._clock()
        for row in self._claim(current):
            errors = self._deliver(row, current)
            self._record(row, errors, current, stats)
        return stats

    def run_forever(self, stop_event: threading.Event, poll_s: float = 0.2) -> None:
        """Deliver until ``stop_event`` is set; a database hiccup is logged and retried."""
        while not stop_event.is_set():
            try:
                stats = self.run_once()
            except Exception:  # noqa: BLE001 - keep dispatching after a transient DB failure
                log.exception("webhook dispatch pass failed")
                stats = DispatchStats()
            if not (stats.delivered or stats.retried or stats.dead):
                stop_event.wait(poll_s)
