"""The sandbox register and the supervisors' verdicts, read whole by every detector worker.

They are not partitioned like the telemetry: every state shard needs the whole register, and a
verdict is for the shard that holds its entity, which the topic's key does not tell. Each worker
therefore reads both topics outside the consumer group. Every shard's core keeps its own offsets
of them in its checkpoint and skips what it already has (:meth:`DetectorCore.handle`), so a
verdict is applied once to a shard's state across restarts, rebalances and takeovers: a shard a
worker takes on is caught up to the topics' ends before its first record
(:meth:`SideReader.read_to_end`, from the lowest offset any of its shards needs, every record
handed to every shard), then the worker hands each later record to all the shards it holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from suptech.common.kafka import open_client

__all__ = ["SideRecord", "SideReader", "SideFollower"]

log = logging.getLogger(__name__)

# (topic, partition, offset, key, value)
SideRecord = tuple[str, int, int, bytes | None, bytes | None]
Positions = Mapping[tuple[str, int], int]


class SideReader:
    """A consumer outside the group, assigned every partition of ``topics``; blocking calls, for
    a thread (``asyncio.to_thread``), one at a time."""

    def __init__(self, bootstrap: str, topics: Iterable[str], timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._consumer = open_client(
            KafkaConsumer, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.partitions = [
            TopicPartition(topic, p) for topic in topics for p in self._partitions_of(topic)
        ]
        self._consumer.assign(self.partitions)

    def _partitions_of(self, topic: str) -> list[int]:
        deadline = time.monotonic() + self.timeout_s
        while not (found := self._consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions after {self.timeout_s:.0f}s")
            time.sleep(0.1)
        return sorted(found)

    def seek(self, positions: Positions) -> None:
        """Read on from ``positions`` (0 where a partition is not named)."""
        for tp in self.partitions:
            self._consumer.seek(tp, positions.get((tp.topic, tp.partition), 0))

    def ends(self) -> dict[tuple[str, int], int]:
        found = self._consumer.end_offsets(self.partitions)
        return {(tp.topic, tp.partition): int(o) for tp, o in found.items()}

    def poll(self, timeout_ms: int = 0) -> list[SideRecord]:
        """What has come since the last poll (nothing, at once, when nothing has)."""
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        return [
            (r.topic, r.partition, r.offset, r.key, r.value)
            for tp in self.partitions
            for r in polled.get(tp, ())
        ]

    def read_to_end(self, start: Positions) -> tuple[list[SideRecord], dict[tuple[str, int], int]]:
        """Every record from ``start`` to the current ends, in offset order per partition, and
        those ends; raises TimeoutError if the broker does not deliver them in time."""
        ends = self.ends()
        self.seek(start)
        out: list[SideRecord] = []
        deadline = time.monotonic() + self.timeout_s
        while any(
            self._consumer.position(tp) < ends[(tp.topic, tp.partition)] for tp in self.partitions
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot read {sorted(ends)} to their ends in {self.timeout_s}s")
            out.extend(self.poll(timeout_ms=200))
        return out, ends

    def close(self) -> None:
        self._consumer.close()


class SideFollower:
    """A :class:`SideReader` polled by a thread of its own from given positions; the loop takes
    what has come with :meth:`take`, without waiting (a poll in a worker thread of a busy
    process waits for the GIL: taken on every watermark tick, it stretched the tick to 1 s)."""

    def __init__(self, reader: SideReader, positions: Positions) -> None:
        self._reader = reader
        reader.seek(positions)
        self._lock = threading.Lock()
        self._pending: list[SideRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="side-inputs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                records = self._reader.poll(timeout_ms=500)
            except Exception as exc:  # the broker away: try again, the positions are kept
                log.warning("cannot read the register and verdicts (%r): retrying", exc)
                self._stop.wait(1.0)
                continue
            if records:
                with self._lock:
                    self._pending.extend(records)

    def take(self) -> list[SideRecord]:
        with self._lock:
            records, self._pending = self._pending, []
        return records

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._reader.close()
