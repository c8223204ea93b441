"""Writing accepted telemetry to Kafka: one record per batch and topic, confirmed by all replicas.

kafka-python's producer is blocking and thread-safe. Its blocking calls (connecting, encoding,
``send``, which waits for metadata and buffer space) run on the producer's own thread pool, never
on asyncio's default executor, which the health monitor's Kafka ping and the rest of the process
share; the wait for Kafka's confirmation holds no thread at all (its futures complete asyncio
futures). One producer serves every batch; a batch that fails fails alone, and a producer that
can send nothing more is replaced for new batches and closed only after the batches using it.

A producer whose records Kafka failed is replaced (kafka-python 3.0's idempotent producer does not
reliably recover on its own: a non-retriable error leaves it failing everything, and after
expired deliveries its producer-id reset can stall it); one whose ``send`` merely timed out
waiting for a topic's metadata is kept.

A record is never larger than its topic takes (``max.message.bytes``, read from Kafka at start
and whenever Kafka refuses a record as too large): kafka-python 3.0's idempotent producer turns
any non-retriable error, "record too large" included, into a fatal state in which it fails every
batch in flight and after, so a record Kafka would refuse must never be sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.codec import has_lz4

from suptech.common.bundles import PAYLOAD_KINDS, encode_bundle, topic_spec_for
from suptech.common.kafka import load_kafka_security, open_client
from suptech.common.topics import ensure_topics, topic_name
from suptech.gateway.forward import (
    MAX_RECORD_BYTES,
    bundle_event_fields,
    encode_bundle_head,
    pack_fields,
)
from suptech.v1 import telemetry_pb2

__all__ = [
    "ProduceError",
    "Refused",
    "TelemetryProducer",
    "MAX_RECORD_BYTES",
    "PUBLISH_THREADS",
    "record_bound",
]

log = logging.getLogger(__name__)

# Small: it adds latency to every ack, and batches already group events.
LINGER_MS = 2
# Threads of the producer's pool. A thread is held while a batch is encoded and handed to the
# producer (which blocks up to the produce timeout when a topic's metadata is missing), not while
# Kafka confirms: the pool only needs to outnumber batches stuck that way.
PUBLISH_THREADS = 32
# Kafka refuses the record (or the producer its request) for its size.
_TOO_LARGE = (kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordListTooLargeError)
# Record-batch and record framing, key, trace headers, and lz4's worst-case growth of
# incompressible data (0.4%) between a record's value and what the broker measures.
_RECORD_OVERHEAD_BYTES = 2048

Envelopes = Sequence[telemetry_pb2.TelemetryEnvelope]


def record_bound(max_message_bytes: int) -> int:
    """The largest record value the gateway writes to a topic of this ``max.message.bytes``."""
    return min(MAX_RECORD_BYTES, int(max_message_bytes * 0.99) - _RECORD_OVERHEAD_BYTES)


class ProduceError(Exception):
    """Kafka did not confirm the batch; nothing may be acknowledged."""


@dataclass(frozen=True)
class Refused:
    """An accepted event no record of its topic can hold (the topic takes smaller records than
    the per-event limit allows): refused alone, never sent."""

    event_id: str
    detail: str


@dataclass
class _Record:
    kind: str
    topic: str
    value: bytes
    # The events it holds, in order: re-packed when Kafka refuses the record as too large.
    events: Envelopes


class _Handle:
    """A producer and the publishes using it: a replaced producer is closed by its last user."""

    __slots__ = ("producer", "users", "retired")

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.users = 0
        self.retired = False


def _bundles(
    institution_id: str, batch_id: str, received_ns: int, events: Envelopes, limit: int
) -> list[tuple[bytes, Envelopes]]:
    """Bundles of ``events`` of at most ``limit`` bytes each, but for a lone event larger than
    that."""
    value = encode_bundle(institution_id, batch_id, received_ns, events)
    if len(value) <= limit or len(events) == 1:
        return [(value, events)]
    half = len(events) // 2
    return _bundles(institution_id, batch_id, received_ns, events[:half], limit) + _bundles(
        institution_id, batch_id, received_ns, events[half:], limit
    )


def _settle(done: asyncio.Future[BaseException | None], outcome: BaseException | None) -> None:
    if not done.done():
        done.set_result(outcome)


def _outcome(loop: asyncio.AbstractEventLoop, future: Any) -> asyncio.Future[BaseException | None]:
    """An asyncio future completed, with ``None`` or the error, when the Kafka future is."""
    done: asyncio.Future[BaseException | None] = loop.create_future()

    def report(outcome: BaseException | None) -> None:
        # Called on kafka-python's sender thread (or here, when already complete).
        try:
            loop.call_soon_threadsafe(_settle, done, outcome)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    future.add_callback(lambda _metadata: report(None))
    future.add_errback(report)
    return done


def _close_producer(producer: Any, timeout_s: float) -> None:
    """Blocking: close ``producer``, even one whose records never complete."""
    try:
        producer.close(timeout=timeout_s)
        return
    except Exception as e:
        log.info("the Kafka producer did not close within %.0fs (%s): stopping it", timeout_s, e)
    # kafka-python 3.0's close() flushes first and gives up, leaving its network thread and
    # connections behind, when records never complete (a stalled producer): stop the thread.
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(timeout_s)
    try:
        producer.close(timeout=0)
    except Exception:
        log.debug("closing a stopped producer", exc_info=True)


async def _failed(error: BaseException) -> BaseException:
    return error


class TelemetryProducer:
    def __init__(self, bootstrap: str, topic_prefix: str, timeout_s: float) -> None:
        self._bootstrap = bootstrap
        self._prefix = topic_prefix
        self._timeout_s = timeout_s
        self._topics = {
            kind: topic_name(topic_spec_for(kind), topic_prefix) for kind in PAYLOAD_KINDS
        }
        # topic -> largest record value it takes, until Kafka tells otherwise
        self._bounds = dict.fromkeys(self._topics.values(), MAX_RECORD_BYTES)
        self._bounds_read_at = -1e9
        self._lock = threading.Lock()
        self._bounds_lock = threading.Lock()
        self._current: _Handle | None = None
        self._pool = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="suptech-kafka-publish")
        # Only the health monitor's thread uses it.
        self._admin: Any = None
        # Validated now, so a wrong SUPTECH_KAFKA_* setting stops the gateway at start.
        self._security = load_kafka_security()

    def _config(self) -> dict[str, Any]:
        timeout_ms = int(self._timeout_s * 1000)
        return {
            "bootstrap_servers": self._bootstrap,
            "client_id": "suptech-gateway",
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": "lz4" if has_lz4() else "gzip",
            "linger_ms": LINGER_MS,
            "max_request_size": 1024 * 1024,
            # Topics come from suptech.common.topics with their declared partitions, never from
            # the broker's defaults.
            "allow_auto_create_topics": False,
            # Every wait is bounded by the produce timeout, so a call fails instead of hanging.
            "bootstrap_timeout_ms": timeout_ms,
            "max_block_ms": timeout_ms,
            "delivery_timeout_ms": timeout_ms,
            "request_timeout_ms": max(500, timeout_ms - LINGER_MS - 100),
            "reconnect_backoff_max_ms": 1000,
        }

    # -- the shared producer ------------------------------------------------------------------

    def _acquire(self) -> _Handle:
        """Blocking: the current producer (made on first use), counted as used until released."""
        with self._lock:
            if self._current is None:
                try:
                    self._current = _Handle(
                        open_client(KafkaProducer, security=self._security, **self._config())
                    )
                except Exception as e:
                    raise ProduceError(f"cannot connect to Kafka at {self._bootstrap}: {e}") from e
            handle = self._current
            handle.users += 1
            return handle

    def _release(self, handle: _Handle) -> None:
        with self._lock:
            handle.users -= 1
            last = handle.retired and handle.users == 0
        if last:
            self._close_later(handle.producer)

    def _retire(self, handle: _Handle, why: BaseException) -> None:
        """Stop handing out a producer that can send nothing more; the batches still using it
        keep it until they are done, then it is closed (never under them)."""
        with self._lock:
            if self._current is handle:
                self._current = None
                log.warning("replacing the Kafka producer after %s: %s", type(why).__name__, why)
            handle.retired = True

    def _close_later(self, producer: Any) -> None:
        threading.Thread(
            target=_close_producer,
            args=(producer, self._timeout_s),
            name="suptech-kafka-close",
            daemon=True,
        ).start()

    # -- what Kafka takes ---------------------------------------------------------------------

    def read_record_bounds(self, max_age_s: float = 0.0) -> None:
        """Blocking: read each telemetry topic's ``max.message.bytes`` (unless read within
        ``max_age_s``); records are then packed to fit. Raises when Kafka does not answer."""
        with self._bounds_lock:
            if time.monotonic() - self._bounds_read_at < max_age_s:
                return
            admin = open_client(
                KafkaAdminClient,
                security=self._security,
                bootstrap_servers=self._bootstrap,
                client_id="suptech-gateway-config",
                request_timeout_ms=int(self._timeout_s * 1000),
                bootstrap_timeout_ms=int(self._timeout_s * 1000),
            )
            try:
                topics = sorted(set(self._topics.values()))
                described = admin.describe_configs(
                    [
                        ConfigResource(ConfigResourceType.TOPIC, t, configs=["max.message.bytes"])
                        for t in topics
                    ],
                    config_filter="all",
                )
            finally:
                admin.close()
            for topic, configs in described.get("topic", {}).items():
                value = (configs.get("max.message.bytes") or {}).get("value")
                if topic in self._bounds and value is not None:
                    bound = record_bound(int(value))
                    if bound != self._bounds[topic]:
                        log.info("records on %s: at most %d bytes", topic, bound)
                    self._bounds[topic] = bound
            self._bounds_read_at = time.monotonic()

    def check(self) -> bool:
        """Create missing telemetry topics; whether Kafka answers. Logs what is wrong."""
        try:
            ensure_topics(
                self._bootstrap,
                self._prefix,
                tuple(topic_spec_for(kind) for kind in self._topics),
                timeout_s=self._timeout_s,
            )
            self.read_record_bounds()
            handle = self._acquire()
            try:
                for topic in self._topics.values():
                    if not handle.producer.partitions_for(topic):
                        log.warning("topic %s has no partitions (not created?)", topic)
                        return False
            finally:
                self._release(handle)
        except Exception as e:
            log.warning("Kafka not ready at %s: %s", self._bootstrap, e)
            return False
        return True

    def ping(self) -> bool:
        """Blocking: whether a broker answers a metadata request within the produce timeout.

        A real Kafka request rather than a TCP connect, so a broker that accepts connections but
        cannot answer counts as down; one admin client is kept between pings (a ping then costs
        about a millisecond).
        """
        timeout_ms = int(self._timeout_s * 1000)
        try:
            if self._admin is None:
                self._admin = open_client(
                    KafkaAdminClient,
                    security=self._security,
                    bootstrap_servers=self._bootstrap,
                    client_id="suptech-gateway-health",
                    request_timeout_ms=timeout_ms,
                    bootstrap_timeout_ms=timeout_ms,
                    reconnect_backoff_max_ms=1000,
                )
            self._admin.describe_cluster()
        except Exception as e:
            log.debug("Kafka ping failed: %s", e)
            self._close_admin()
            return False
        return True

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:
                log.debug("closing the health admin client", exc_info=True)

    # -- publishing ---------------------------------------------------------------------------

    def _records(
        self,
        institution_id: str,
        batch_id: str,
        groups: Mapping[str, Envelopes],
        whole: Any,
    ) -> tuple[list[_Record], list[Refused]]:
        """Blocking: the records of one batch, per topic, each within what the topic takes; and
        the events no record of their topic could hold."""
        received_ns = time.time_ns()
        records: list[_Record] = []
        refused: list[Refused] = []

        def add(kind: str, value: bytes, events: Envelopes) -> None:
            topic = self._topics[kind]
            bound = self._bounds[topic]
            if len(value) <= bound:
                records.append(_Record(kind, topic, value, events))
            else:  # a lone event (packing splits everything else)
                refused.append(
                    Refused(
                        events[0].event_id,
                        f"event takes {len(value)} bytes in a record; {topic} takes at most "
                        f"{bound} (its max.message.bytes)",
                    )
                )

        if whole is not None and len(groups) == 1:
            ((kind, events),) = groups.items()
            # One serialisation of the parsed batch (unknown fields already dropped), re-framed.
            fields = bundle_event_fields(whole.SerializeToString())
            if fields is not None and len(fields) == len(events):
                head = encode_bundle_head(institution_id, batch_id, received_ns)
                budget = self._bounds[self._topics[kind]] - len(head)
                for a, b in pack_fields(fields, budget):
                    add(kind, head + b"".join(fields[a:b]), events[a:b])
                return records, refused
        for kind, events in groups.items():
            bound = self._bounds[self._topics[kind]]
            for value, part in _bundles(institution_id, batch_id, received_ns, events, bound):
                add(kind, value, part)
        return records, refused

    def _repack(
        self, institution_id: str, batch_id: str, records: Sequence[_Record]
    ) -> tuple[list[_Record], list[Refused]]:
        """Blocking: records Kafka refused as too large, packed again after reading the topics'
        limits anew."""
        self.read_record_bounds(max_age_s=1.0)
        groups: dict[str, list[telemetry_pb2.TelemetryEnvelope]] = {}
        for r in records:
            groups.setdefault(r.kind, []).extend(r.events)
        return self._records(institution_id, batch_id, groups, None)

    @staticmethod
    def _send(
        producer: Any, records: Sequence[_Record], key: bytes, headers: list[tuple[str, bytes]]
    ) -> list[Any]:
        """Blocking: hand every record to the producer; its future, or the error ``send`` raised
        for the record's size."""
        futures: list[Any] = []
        for r in records:
            try:
                futures.append(producer.send(r.topic, key=key, value=r.value, headers=headers))
            except _TOO_LARGE as e:
                futures.append(e)
        return futures

    async def _publish(
        self,
        institution_id: str,
        batch_id: str,
        groups: Mapping[str, Envelopes],
        headers: list[tuple[str, bytes]],
        whole: Any,
    ) -> list[Refused]:
        loop = asyncio.get_running_loop()
        pool = self._pool
        key = institution_id.encode()
        # The handle in use and the pool's job running now: a publish cancelled (its time is
        # up) releases the producer only once that job is done with it.
        handle: _Handle | None = None
        job: asyncio.Future[Any] | None = None
        confirming = False

        async def run(fn: Any, *args: Any) -> Any:
            nonlocal job
            try:
                job = loop.run_in_executor(pool, fn, *args)
            except RuntimeError as e:  # the pool is shut down
                raise ProduceError("the gateway is stopping") from e
            return await asyncio.shield(job)

        def release() -> None:
            nonlocal handle
            held, handle = handle, None
            if held is None:
                return
            if job is not None and not job.done():
                job.add_done_callback(lambda _: self._release(held))
            else:
                self._release(held)

        try:
            built: tuple[list[_Record], list[Refused]] = await run(
                self._records, institution_id, batch_id, groups, whole
            )
            records, refused = built
            # A second round only after Kafka refused a record as too large: the topic's limit
            # was lowered since it was read.
            for attempt in range(2):
                if not records:
                    break
                job = None
                try:
                    handle = await run(self._acquire)
                except asyncio.CancelledError:
                    if job is not None:
                        job.add_done_callback(
                            lambda f: (
                                None
                                if f.cancelled() or f.exception()
                                else self._release(f.result())
                            )
                        )
                    raise
                sent = await run(self._send, handle.producer, records, key, headers)
                confirming = True
                outcomes: list[BaseException | None] = await asyncio.gather(
                    *(
                        _failed(f) if isinstance(f, BaseException) else _outcome(loop, f)
                        for f in sent
                    )
                )
                confirming = False
                errors = [e for e in outcomes if e is not None]
                if not errors:
                    break
                # A record Kafka failed (not one send() refused to take) leaves kafka-python
                # 3.0's idempotent producer suspect: after a non-retriable error it fails
                # everything after (a fatal state), and after expired deliveries its producer id
                # reset can stall every later batch. A fresh producer is the safe way on.
                self._retire(handle, errors[0])
                other = next((e for e in errors if not isinstance(e, _TOO_LARGE)), None)
                if other is not None or attempt == 1:
                    error = other or errors[0]
                    raise ProduceError(
                        f"Kafka did not confirm the batch: {type(error).__name__}: {error}"
                    )
                too_large = [
                    r for r, e in zip(records, outcomes, strict=True) if isinstance(e, _TOO_LARGE)
                ]
                log.warning(
                    "Kafka refused records of %s as too large (%s): reading the topics' limits",
                    institution_id,
                    ", ".join(sorted({r.topic for r in too_large})),
                )
                release()
                built = await run(self._repack, institution_id, batch_id, too_large)
                records = built[0]
                refused += built[1]
            for r in refused:
                log.warning("event %s of %s refused: %s", r.event_id, institution_id, r.detail)
            return refused
        except ProduceError:
            raise
        except asyncio.CancelledError:
            if confirming and handle is not None:
                # The time is up and Kafka confirmed nothing: the producer is stuck.
                self._retire(handle, TimeoutError("no confirmation within the produce timeout"))
            raise
        except Exception as e:
            # A synchronous error of send() (a topic's metadata missing, the buffer full): the
            # producer itself is fine.
            raise ProduceError(f"Kafka did not confirm the batch: {type(e).__name__}: {e}") from e
        finally:
            release()

    async def publish(
        self,
        institution_id: str,
        batch_id: str,
        groups: Mapping[str, Envelopes],
        headers: Sequence[tuple[str, bytes]] = (),
        whole: Any = None,
    ) -> list[Refused]:
        """Write each group to its topic (every record with ``headers``: the batch's trace
        context) and wait for Kafka; raise :class:`ProduceError`.

        ``whole``: the parsed ``TelemetryBatch`` when ``groups`` is exactly all of its events
        (one kind): its records are then framed from one serialisation of it. Returns the
        events refused because no record of their topic can hold them (the rest is written).
        """
        if not groups:
            return []
        try:
            refused: list[Refused] = await asyncio.wait_for(
                self._publish(institution_id, batch_id, groups, list(headers), whole),
                # The producer bounds each wait too; this keeps the call's bound even if it
                # overruns (a batch that lands late is resent by the client, deduped downstream).
                timeout=self._timeout_s + 1,
            )
            return refused
        except TimeoutError as e:
            raise ProduceError(f"Kafka did not answer within {self._timeout_s:.0f}s") from e

    def close(self, timeout_s: float = 10.0) -> None:
        """Blocking: close the producer (after the batches in flight, up to ``timeout_s``)."""
        self._close_admin()
        with self._lock:
            handle, self._current = self._current, None
        self._pool.shutdown(wait=False)
        if handle is not None:
            _close_producer(handle.producer, timeout_s)
