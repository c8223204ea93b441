"""Signed webhooks delivered from the outbox to a real HTTP receiver, with retries."""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from suptech.alerts.database import make_session_factory, open_database
from suptech.alerts.models import OUTBOX_WEBHOOK, OutboxRow
from suptech.alerts.webhooks import (
    DEDUP_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    WebhookDispatcher,
    sign,
    verify_signature,
)

SECRET = b"whsec-test-0123456789"


@dataclass
class Received:
    body: bytes
    signature: str
    dedup_key: str
    valid: bool


@dataclass
class Receiver:
    """A webhook endpoint as a regulator would run it: verifies, then accepts or fails."""

    fail_first: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    redirect_to: str | None = None
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


class Receivers(list[Receiver]):
    """Receivers started by one test, each a ThreadingHTTPServer on an ephemeral port."""

    def __init__(self) -> None:
        super().__init__()
        self._servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def close(self) -> None:
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(5)

    def start(
        self,
        fail_first: int = 0,
        fail_status: int = 503,
        retry_after: str | None = None,
        redirect_to: str | None = None,
    ) -> Receiver:
        rec = Receiver(fail_first, fail_status, retry_after, redirect_to)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get(SIGNATURE_HEADER, "")
                try:
                    verify_signature(SECRET, header, body)
                    valid = True
                except SignatureError:
                    valid = False
                with rec.lock:
                    rec.requests.append(
                        Received(body, header, self.headers.get(DEDUP_HEADER, ""), valid)
                    )
                    n = len(rec.requests)
                if rec.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", rec.redirect_to)
                elif not valid:
                    self.send_response(401)
                elif n <= rec.fail_first:
                    self.send_response(rec.fail_status)
                    if rec.retry_after:
                        self.send_header("Retry-After", rec.retry_after)
                else:
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/suptech"
        self._servers.append((server, thread))
        self.append(rec)
        return rec


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    started = Receivers()
    yield started
    started.close()


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine: Engine
    engine, _ = open_database(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def now0() -> datetime:
    # Near real time: the receiver checks the signed timestamp against its own clock.
    return datetime.now(UTC).replace(microsecond=0)


def enqueue(sessions: sessionmaker[Session], at: datetime, n: int = 1) -> list[str]:
    keys = []
    with sessions.begin() as s:
        for i in range(n):
            key = f"alert-{i}:2:ALERT_EVENT_KIND_ESCALATED"
            body = {"event": "ALERT_EVENT_KIND_ESCALATED", "alert": {"alertId": f"alert-{i}"}}
            s.add(
                OutboxRow(
                    kind=OUTBOX_WEBHOOK,
                    payload=json.dumps(body).encode(),
                    dedup_key=key,
                    attempts=0,
                    next_attempt_at=at,
                    last_error="",
                    created_time=at,
                )
            )
            keys.append(key)
    return keys


def outbox(sessions: sessionmaker[Session]) -> list[OutboxRow]:
    with sessions() as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def dispatcher(
    sessions: sessionmaker[Session], urls: list[str], **kwargs: object
) -> WebhookDispatcher:
    return WebhookDispatcher(
        sessions,
        urls,
        SECRET,
        http_timeout=5.0,
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )


# --- signing, as a receiver uses it ---------------------------------------------------------


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"alert":{"alertId":"a1"},"event":"ALERT_EVENT_KIND_CREATED"}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, header, body, now=1_700_000_100) == 1_700_000_000
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, header, body.replace(b"a1", b"a2"), now=1_700_000_000)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(b"other-secret", header, body, now=1_700_000_000)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(SECRET, header, body, now=1_700_000_000 + 301)
    # Rotation: a receiver holding the old and the new secret accepts either.
    assert verify_signature([b"new", SECRET], header, body, now=1_700_000_000)


@pytest.mark.parametrize(
    ("header", "reason"),
    [(None, "missing"), ("v1=abc", "needs t="), ("t=1", "needs t="), ("t=x,v1=ab", "timestamp")],
)
def test_malformed_signature_header(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_signature(SECRET, header, b"{}", now=1)


def test_bad_configuration_refused() -> None:
    sessions: sessionmaker[Session] = sessionmaker()
    with pytest.raises(ValueError, match="http"):
        WebhookDispatcher(sessions, ["file:///etc/passwd"], SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookDispatcher(sessions, ["http://127.0.0.1:1/"], b"")


# --- delivery against a real receiver ---------------------------------------------------------


def test_delivery_retries_until_receiver_recovers(
    sessions: sessionmaker[Session], receivers: Receivers
) -> None:
    rec = receivers.start(fail_first=2)
    t = now0()
    (key,) = enqueue(sessions, t)
    d = dispatcher(sessions, [rec.url])

    assert d.run_once(t).retried == 1
    # Not due again until its backoff has passed.
    assert d.run_once(t).retried == 0 and len(rec.requests) == 1
    for expected_attempts in (1, 2):
        (row,) = outbox(sessions)
        assert row.attempts == expected_attempts and row.delivered_at is None
        assert "HTTP 503" in row.last_error and rec.url in row.last_error
        assert row.next_attempt_at > t
        t = row.next_attempt_at
        stats = d.run_once(t)
    assert stats.delivered == 1
    (row,) = outbox(sessions)
    assert (row.attempts, row.delivered_at, row.last_error) == (3, t, "")

    assert len(rec.requests) == 3
    assert all(r.valid for r in rec.requests)
    assert {r.dedup_key for r in rec.requests} == {key}
    assert {r.body for r in rec.requests} == {rec.requests[0].body}
    doc = json.loads(rec.requests[-1].body)
    assert doc["dedup_key"] == key and doc["alert"]["alertId"] == "alert-0"
    # Delivered means done: a later pass sends nothing.
    assert d.run_once(t + timedelta(days=1)).delivered == 0 and len(rec.requests) == 3

    # A body altered in transit no longer matches its signature.
    last = rec.requests[-1]
    with pytest.raises(SignatureError):
        verify_signature(SECRET, last.signature, last.body.replace(b"alert-0", b"alert-9"))


def test_backoff_grows_then_gives_up_and_keeps_the_row(
    sessions: sessionmaker[Session], receivers: Receivers
) -> None:
    rec = receivers.start(fail_first=10**6, fail_status=500)
    t = now0()
    enqueue(sessions, t)
    d = dispatcher(sessions, [rec.url], max_attempts=4, base_delay_s=2.0)
    delays = []
    for _ in range(3):
        assert d.run_once(t).retried == 1
        (row,) = outbox(sessions)
        delays.append((row.next_attempt_at - t).total_seconds())
        t = row.next_attempt_at
    # Doubling with jitter: attempt n waits between half and all of 2 * 2**(n-1) seconds.
    for n, delay in enumerate(delays, start=1):
        assert 2.0 * 2 ** (n - 1) / 2 <= delay <= 2.0 * 2 ** (n - 1)
    assert d.run_once(t).dead == 1
    (row,) = outbox(sessions)
    assert row.attempts == 4 and row.delivered_at is None
    assert row.last_error.startswith("gave up after 4 attempts") and "HTTP 500" in row.last_error
    assert d.run_once(t + timedelta(days=30)) == type(d.run_once(t))()
    assert len(rec.requests) == 4


def test_retry_after_is_honoured(sessions: sessionmaker[Session], receivers: Receivers) -> None:
    rec = receivers.start(fail_first=1, retry_after="120")
    t = now0()
    enqueue(sessions, t)
    dispatcher(sessions, [rec.url]).run_once(t)
    (row,) = outbox(sessions)
    assert row.next_attempt_at >= t + timedelta(seconds=120)


def test_each_receiver_gets_it_and_a_healthy_one_is_not_resent(
    sessions: sessionmaker[Session], receivers: Receivers
) -> None:
    healthy, flaky = receivers.start(), receivers.start(fail_first=1)
    t = now0()
    enqueue(sessions, t)
    d = dispatcher(sessions, [healthy.url, flaky.url])
    assert d.run_once(t).retried == 1
    (row,) = outbox(sessions)
    assert d.run_once(row.next_attempt_at).delivered == 1
    assert (len(healthy.requests), len(flaky.requests)) == (1, 2)


@pytest.mark.parametrize("problem", ["closed_port", "redirect"])
def test_unreachable_or_redirecting_receiver_is_a_failure(
    sessions: sessionmaker[Session], receivers: Receivers, problem: str
) -> None:
    if problem == "closed_port":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        expected = url
    else:
        other = receivers.start()
        url = receivers.start(redirect_to=other.url).url
        expected = "HTTP 307"
    t = now0()
    enqueue(sessions, t)
    assert dispatcher(sessions, [url]).run_once(t).retried == 1
    (row,) = outbox(sessions)
    assert expected in row.last_error and row.delivered_at is None
    if problem == "redirect":
        assert receivers[0].requests == []  # the signed body did not follow the redirect


def test_competing_dispatchers_deliver_each_row_once(
    sessions: sessionmaker[Session], receivers: Receivers
) -> None:
    rec = receivers.start()
    t = now0()
    keys = enqueue(sessions, t, n=12)
    pool_dispatchers = [dispatcher(sessions, [rec.url], batch=5) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        for _ in range(4):
            list(pool.map(lambda d: d.run_once(t), pool_dispatchers))
    assert sorted(r.dedup_key for r in rec.requests) == sorted(keys)
    assert all(row.delivered_at == t for row in outbox(sessions))
