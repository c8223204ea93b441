"""Following a topic without a consumer group, in a thread of its own: every replica of a
service reads every partition (a view each replica must hold whole, such as the sandbox register
or the recent per-event scores), from where the subclass seeks, until told to stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from suptech.common.kafka import open_client

__all__ = ["TopicFollower"]

log = logging.getLogger(__name__)


class TopicFollower:
    """Assigned every partition of ``topic``; subclasses seek in :meth:`__init__` and take the
    records of each poll in :meth:`handle`. ``run`` in a thread of its own."""

    #: Names the follower in its log lines.
    what = "topic"

    def __init__(
        self, topic: str, *, bootstrap: str, client_id: str, metadata_timeout_s: float = 30.0
    ) -> None:
        self.topic = topic
        self._consumer = open_client(
            KafkaConsumer,
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id=client_id,
        )
        self.partitions = self._partitions(metadata_timeout_s)
        self._consumer.assign(self.partitions)

    def _partitions(self, timeout_s: float) -> list[TopicPartition]:
        deadline = time.monotonic() + timeout_s
        while not (found := self._consumer.partitions_for_topic(self.topic)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no partitions after {timeout_s:.0f}s")
            time.sleep(0.1)
        return [TopicPartition(self.topic, p) for p in sorted(found)]

    def handle(self, records: Sequence[Any]) -> int:
        """Take one poll's records; return how many were used."""
        raise NotImplementedError

    def poll_once(self, timeout_ms: int = 500) -> int:
        polled: Mapping[TopicPartition, Sequence[Any]] = self._consumer.poll(timeout_ms=timeout_ms)
        return self.handle([r for batch in polled.values() for r in batch])

    def run(self, stop: threading.Event) -> None:
        """Follow the topic until ``stop``; a failed poll is logged (once per outage) and retried
        with backoff: what a follower feeds is a view, and the service goes on without it."""
        failures = 0
        while not stop.is_set():
            try:
                self.poll_once()
                failures = 0
            except Exception:
                failures += 1
                if failures == 1:
                    log.exception("%s: reading %s failed; retrying", self.what, self.topic)
                stop.wait(min(0.5 * 2**failures, 10.0))

    def close(self) -> None:
        self._consumer.close()
