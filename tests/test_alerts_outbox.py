"""The feedback outbox against the real broker and real databases: claim, send, record.

No database transaction may stay open while the dispatcher waits for Kafka: on PostgreSQL that
is a connection "idle in transaction" holding back vacuum for as long as Kafka is slow, and
every verdict behind it waits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker
from suptech.alerts.database import open_database
from suptech.alerts.models import OUTBOX_FEEDBACK, OutboxRow
from suptech.alerts.outbox import FeedbackDispatcher
from suptech.common.topics import FEEDBACK, topic_name
from suptech.v1 import alerts_pb2

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def database(db_url: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    engine, sessions = open_database(db_url)
    yield engine, sessions
    engine.dispose()


def enqueue(sessions: sessionmaker[Session], n: int) -> list[str]:
    ids = [f"alert-{i:03d}" for i in range(n)]
    with sessions.begin() as s:
        for alert_id in ids:
            fb = alerts_pb2.Feedback(alert_id=alert_id, verdict=alerts_pb2.VERDICT_TRUE_POSITIVE)
            s.add(
                OutboxRow(
                    kind=OUTBOX_FEEDBACK,
                    payload=fb.SerializeToString(),
                    dedup_key=f"feedback:{alert_id}",
                    attempts=0,
                    next_attempt_at=T0,
                    last_error="",
                    created_time=T0,
                )
            )
    return ids


def read_feedback(bootstrap: str, prefix: str, want: int) -> list[Any]:
    consumer = KafkaConsumer(
        topic_name(FEEDBACK, prefix),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    records = []
    try:
        for rec in consumer:
            records.append(rec)
            if len(records) >= want:
                break
    finally:
        consumer.close()
    return records


def test_no_transaction_is_open_while_feedback_goes_to_kafka(
    database: tuple[Engine, sessionmaker[Session]], kafka_bootstrap: str, topic_prefix: str
) -> None:
    engine, sessions = database
    ids = enqueue(sessions, 40)
    # Every transaction of the dispatcher's engine, as wall-clock intervals.
    opened: dict[int, float] = {}
    transactions: list[tuple[float, float]] = []

    def on_begin(conn: Any) -> None:
        opened[id(conn)] = time.time()

    def on_end(conn: Any) -> None:
        transactions.append((opened.pop(id(conn)), time.time()))

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "commit", on_end)
    event.listen(engine, "rollback", on_end)
    dispatcher = FeedbackDispatcher(
        sessions, bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, clock=lambda: T0
    )
    try:
        assert dispatcher.run_once() == 40
    finally:
        dispatcher.close()

    records = read_feedback(kafka_bootstrap, topic_prefix, 40)
    assert sorted(r.key.decode() for r in records) == ids
    assert {dict(r.headers)["dedup_key"] for r in records} == {
        f"feedback:{i}".encode() for i in ids
    }
    # A record's CreateTime is stamped by the producer at send(), in whole milliseconds.
    inside = [
        r.offset
        for r in records
        for begin, end in transactions
        if begin + 0.001 < r.timestamp / 1000 and (r.timestamp + 1) / 1000 < end - 0.001
    ]
    assert inside == [], f"{len(inside)} of 40 sends happened inside a database transaction"
    with sessions() as s:
        rows = list(s.scalars(select(OutboxRow)))
    assert all(r.delivered_at == T0 and r.attempts == 1 for r in rows)


def test_competing_dispatchers_send_each_row_once(
    database: tuple[Engine, sessionmaker[Session]], kafka_bootstrap: str, topic_prefix: str
) -> None:
    _, sessions = database
    ids = enqueue(sessions, 60)
    dispatchers = [
        FeedbackDispatcher(
            sessions,
            bootstrap=kafka_bootstrap,
            topic_prefix=topic_prefix,
            batch=7,
            clock=lambda: T0,
        )
        for _ in range(3)
    ]

    def drain(d: FeedbackDispatcher) -> int:
        total = 0
        while (n := d.run_once()) > 0:
            total += n
        return total

    try:
        with ThreadPoolExecutor(3) as pool:
            counts = list(pool.map(drain, dispatchers))
    finally:
        for d in dispatchers:
            d.close()
    assert sum(counts) == 60
    records = read_feedback(kafka_bootstrap, topic_prefix, 61)
    assert sorted(r.key.decode() for r in records) == ids


def test_a_failed_send_keeps_rows_for_a_retry(
    database: tuple[Engine, sessionmaker[Session]], kafka_bootstrap: str
) -> None:
    _, sessions = database
    enqueue(sessions, 3)
    # A topic the broker does not have (it creates none by itself): the first send waits for
    # its metadata and times out; nothing is lost or marked sent.
    dispatcher = FeedbackDispatcher(
        sessions,
        bootstrap=kafka_bootstrap,
        topic_prefix=f"missing-{time.monotonic_ns()}.",
        clock=lambda: T0,
        send_timeout_s=1.0,
    )
    try:
        assert dispatcher.run_once() == 0
    finally:
        dispatcher.close()
    with sessions() as s:
        rows = sorted(s.scalars(select(OutboxRow)), key=lambda r: r.id)
    assert [r.delivered_at for r in rows] == [None] * 3
    # The first one was tried and backs off; the ones never tried are due again at once.
    assert rows[0].attempts == 1 and rows[0].next_attempt_at == T0 + timedelta(seconds=1)
    assert rows[0].last_error
    assert [(r.attempts, r.next_attempt_at) for r in rows[1:]] == [(0, T0), (0, T0)]
