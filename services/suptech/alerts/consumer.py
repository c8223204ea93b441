"""Consume findings.v1 into the store: at-least-once in, idempotent store, retried, never skipped.

Offsets are committed only after the database transaction that stored a batch has committed, so
a crash in between replays the batch, which the store recognises (finding_id is unique).

Two kinds of failure are told apart, because they call for opposite answers:

- **The database's fault** (down, unreachable, out of connections, locked, read-only, schema
  missing: :func:`is_database_fault`): every finding would fail the same way. The batch is
  rewound and retried with backoff until the database answers; nothing is dead-lettered and no
  offset moves past it.
- **The finding's fault** (a value the database or the store refuses: data and integrity errors,
  PostgreSQL's program-limit errors, a value the store cannot convert): the batch is split until
  the finding is alone, retried once more while the database answers a probe, and only then
  dead-lettered with its reason, so that one bad finding does not hold back the others.

Any other exception (a bug) stops the consumer: the service reports NOT_SERVING and exits rather
than dead-letter every finding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry import trace
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

from suptech.alerts import grouping
from suptech.alerts.store import AlertStore
from suptech.common.kafka import open_client
from suptech.common.otel import extract_context, setup_telemetry, traceparent_of
from suptech.common.topics import DEAD_LETTER, FINDINGS, topic_name
from suptech.v1 import findings_pb2

__all__ = [
    "ConsumerStats",
    "DatabaseUnavailableError",
    "FindingsConsumer",
    "decode_finding",
    "is_database_fault",
]

log = logging.getLogger(__name__)

# PostgreSQL error classes a value can cause on a healthy server: 22 data exception (a NUL in
# text, a number out of range), 23 integrity constraint violation, 54 program limit exceeded (an
# index row too large). Every other class (08 connection, 25 read-only transaction, 40 deadlock,
# 42 missing table, 53 out of resources, 57 shutdown, 58 I/O) is the server's state.
_VALUE_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})


def is_database_fault(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot store anything now, whatever the finding.

    False means the finding may be at fault: data and integrity errors, PostgreSQL's
    program-limit errors, and a ``ValueError`` / ``OverflowError`` from turning its values into
    columns.
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate:
            return sqlstate[:2] not in _VALUE_SQLSTATE_CLASSES
        return not isinstance(exc, DataError | IntegrityError)
    # Pool exhausted or timed out, disconnection, stale data after the store's own retries.
    return isinstance(exc, SQLAlchemyError)


def _finding_fault(exc: BaseException) -> bool:
    return isinstance(exc, SQLAlchemyError | ValueError | OverflowError) and not (
        is_database_fault(exc)
    )


class DatabaseUnavailableError(Exception):
    """The database cannot store findings now; the batch is retried, never skipped."""


@dataclass
class ConsumerStats:
    records: int = 0
    stored: int = 0
    duplicates: int = 0
    # Clears of a detector condition whose alert was no longer open (kept nowhere: nothing to
    # attach them to, and a clear never opens an alert).
    unmatched_clears: int = 0
    dead_lettered: int = 0
    # Batches rewound because the database could not store them.
    db_retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def decode_finding(value: bytes | None) -> tuple[findings_pb2.Finding | None, str]:
    """The finding in a record value, or None and why it is unusable."""
    if not value:
        return None, "empty record"
    try:
        finding = findings_pb2.Finding.FromString(value)
    except DecodeError as exc:
        return None, f"not a Finding protobuf: {exc}"
    reason = grouping.invalid_reason(finding)
    if reason is not None:
        return None, f"invalid finding: {reason}"
    return finding, ""


class FindingsConsumer:
    """One member of the alert service's consumer group on findings.v1."""

    # Called with each poll's records once they are stored (the service's latency metric).
    on_stored: Callable[[Sequence[Any]], None] | None = None

    def __init__(
        self,
        store: AlertStore,
        *,
        bootstrap: str,
        topic_prefix: str = "",
        group_id: str = "suptech-alerts",
        max_records: int = 500,
        metadata_timeout_s: float = 30.0,
        session_timeout_s: float = 6.0,
        heartbeat_s: float = 2.0,
        instance_id: str = "",
        retry_initial_s: float = 0.5,
        retry_max_s: float = 5.0,
    ) -> None:
        self._store = store
        self.topic = topic_name(FINDINGS, topic_prefix)
        self.dead_letter_topic = topic_name(DEAD_LETTER, topic_prefix)
        self.stats = ConsumerStats()
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        # Offsets up to which findings are stored (and dead letters flushed): the only offsets
        # ever committed, at every poll and on close.
        self._stored: dict[TopicPartition, OffsetAndMetadata] = {}
        # Records dead-lettered but not yet committed past: a batch replayed after an outage
        # does not dead-letter them twice.
        self._dead_lettered: set[tuple[str, int, int]] = set()
        self._alive = False
        self._tracer = setup_telemetry("alerts")[0]
        self._consumer = open_client(
            KafkaConsumer,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            group_instance_id=instance_id or None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_records,
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=int(heartbeat_s * 1000),
            client_id=f"{group_id}-findings",
        )
        self._producer = open_client(
            KafkaProducer,
            bootstrap_servers=bootstrap,
            acks="all",
            client_id=f"{group_id}-deadletter",
        )
        self._wait_for_partitions(metadata_timeout_s)
        self._consumer.subscribe([self.topic])

    @property
    def consumer_alive(self) -> bool:
        """True while :meth:`run` is consuming (False before, after, and once it has died)."""
        return self._alive

    def _wait_for_partitions(self, timeout_s: float) -> None:
        # Joining the group before the broker reports the topic's partitions (a topic just
        # created) gets an empty assignment that stays empty until the next metadata refresh,
        # minutes later: the service would sit idle with findings waiting.
        deadline = time.monotonic() + timeout_s
        while not self._consumer.partitions_for_topic(self.topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no partitions after {timeout_s:.0f}s")
            time.sleep(0.1)

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Store one poll's worth of records and commit their offsets; return records seen.

        Raises :class:`DatabaseUnavailableError` after seeking back to the first record polled,
        so the next poll returns the same records.
        """
        polled: Mapping[TopicPartition, Sequence[Any]] = self._consumer.poll(timeout_ms=timeout_ms)
        records = [r for batch in polled.values() for r in batch]
        if not records:
            return 0
        try:
            self._process(records)
            # Dead letters must be on Kafka before their source offsets are committed.
            self._producer.flush()
        except DatabaseUnavailableError:
            for tp, batch in polled.items():
                self._consumer.seek(tp, batch[0].offset)
            raise
        offsets = {
            tp: OffsetAndMetadata(batch[-1].offset + 1, "", -1) for tp, batch in polled.items()
        }
        self._stored.update(offsets)
        self._dead_lettered = {
            k for k in self._dead_lettered if k[2] >= self._stored_offset(k[0], k[1])
        }
        # Asynchronous: a lost commit only replays findings the store already holds, and not
        # waiting for the broker's answer takes its round trip off every alert's latency.
        self._consumer.commit_async(offsets=offsets, callback=_log_commit_failure)
        self.stats.records += len(records)
        if self.on_stored is not None:
            self.on_stored(records)
        return len(records)

    def _stored_offset(self, topic: str, partition: int) -> int:
        done = self._stored.get(TopicPartition(topic, partition))
        return done.offset if done is not None else -1

    def _process(self, records: Sequence[Any]) -> None:
        good: list[tuple[Any, findings_pb2.Finding]] = []
        bad: list[tuple[Any, str]] = []
        for rec in records:
            finding, reason = decode_finding(rec.value)
            if finding is None:
                bad.append((rec, reason))
            else:
                good.append((rec, finding))
        # Stored first: if the database is down, nothing of this batch has been sent anywhere.
        if good:
            spans: list[trace.Span] = []
            traces: dict[str, str] = {}
            for rec, finding in good:
                span, tp = self._store_span(rec, finding)
                spans.append(span)
                if tp is not None:
                    traces[finding.finding_id] = tp
            error = ""
            try:
                self._store_batch(good, traces)
            except Exception as exc:
                error = _describe(exc)
                raise
            finally:
                for span in spans:
                    if error:
                        span.set_status(trace.Status(trace.StatusCode.ERROR, error))
                    span.end()
        for rec, reason in bad:
            self._dead_letter(rec, reason)

    def _store_span(self, rec: Any, finding: findings_pb2.Finding) -> tuple[trace.Span, str | None]:
        """A span for storing one finding, continuing the trace in the record's headers (the
        detector's, itself continuing the gateway's and the institution SDK's), and the span's
        ``traceparent`` for the store to keep with the alert change (None when the record
        carried no trace: no stream span is worth a trace of its own)."""
        parent = extract_context(rec.headers)
        span = self._tracer.start_span(
            "suptech.alerts.store",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": rec.topic,
                "messaging.kafka.message.offset": rec.offset,
                "suptech.finding_id": finding.finding_id,
                "suptech.institution_id": finding.institution_id,
            },
        )
        traced = trace.get_current_span(parent).get_span_context().is_valid
        return span, traceparent_of(span) if traced else None

    def _store_batch(
        self, good: Sequence[tuple[Any, findings_pb2.Finding]], traces: Mapping[str, str]
    ) -> None:
        try:
            result = self._store.ingest([f for _, f in good], traces)
        except Exception as exc:
            if not _finding_fault(exc):
                if is_database_fault(exc):
                    raise DatabaseUnavailableError(_describe(exc)) from exc
                raise
            if len(good) > 1:
                # One bad finding must not hold back the others: split until it is alone.
                mid = len(good) // 2
                self._store_batch(good[:mid], traces)
                self._store_batch(good[mid:], traces)
                return
            self._store_alone(good[0], exc, traces)
            return
        self.stats.stored += result.new_findings
        self.stats.duplicates += result.duplicates
        self.stats.unmatched_clears += result.unmatched_clears

    def _store_alone(
        self,
        item: tuple[Any, findings_pb2.Finding],
        first: Exception,
        traces: Mapping[str, str],
    ) -> None:
        """A finding that failed alone: dead-lettered only if it fails again on a healthy DB."""
        rec, finding = item
        if not self._store.ping():
            raise DatabaseUnavailableError(f"database probe failed after {_describe(first)}")
        try:
            result = self._store.ingest([finding], traces)
        except Exception as exc:
            if not _finding_fault(exc):
                if is_database_fault(exc):
                    raise DatabaseUnavailableError(_describe(exc)) from exc
                raise
            if not self._store.ping():
                raise DatabaseUnavailableError(
                    f"database probe failed after {_describe(exc)}"
                ) from exc
            log.warning("finding %r dead-lettered by the store: %s", finding.finding_id, exc)
            self._dead_letter(rec, f"store rejected the finding: {_describe(exc)}")
            return
        self.stats.stored += result.new_findings
        self.stats.duplicates += result.duplicates
        self.stats.unmatched_clears += result.unmatched_clears

    def _dead_letter(self, rec: Any, reason: str) -> None:
        key = (rec.topic, rec.partition, rec.offset)
        if key in self._dead_lettered:
            return
        source = f"{rec.topic}/{rec.partition}/{rec.offset}"
        log.warning("dead-lettering %s: %s", source, reason)
        self._producer.send(
            self.dead_letter_topic,
            key=rec.key,
            value=rec.value or b"",
            headers=[("reason", reason.encode()), ("source", source.encode())],
        )
        self._dead_lettered.add(key)
        self.stats.dead_lettered += 1
        short = reason.split(":", 1)[0]
        self.stats.reasons[short] = self.stats.reasons.get(short, 0) + 1

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; a database outage is retried, never skipped."""
        delay = self._retry_initial_s
        self._alive = True
        try:
            while not stop.is_set():
                try:
                    self.poll_once()
                except DatabaseUnavailableError as exc:
                    self.stats.db_retries += 1
                    log.warning(
                        "database unavailable, batch not stored and not committed; "
                        "retrying in %.1fs: %s",
                        delay,
                        exc,
                    )
                    stop.wait(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                delay = self._retry_initial_s
        finally:
            self._alive = False

    def close(self) -> None:
        try:
            self._producer.flush()
            self._producer.close()
            # Only what was stored, and only partitions still ours: a position past a batch the
            # database refused, or a partition moved to another member, is never committed.
            mine = self._consumer.assignment()
            offsets = {tp: o for tp, o in self._stored.items() if tp in mine}
            if offsets:
                self._consumer.commit(offsets=offsets)
        except Exception:
            log.exception("final offset commit failed; the next member replays (idempotently)")
        finally:
            self._consumer.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("offset commit failed (the batch will replay, idempotently): %s", response)
