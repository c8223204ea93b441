"""The register of sandbox tests, read from the compacted ``registry.sandbox.v1`` topic.

The detector judges sandbox reports against this register; supervisors need to see it too, the
tests within their boundaries as well as those past them, and the alert service is their only
way in. Each replica reads the whole topic from its beginning with no consumer group (the
register is small, and every replica must hold all of it) and keeps following it: the latest
value per key (test_id) wins and a tombstone (an empty value) removes the test.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import DecodeError
from kafka.structs import TopicPartition

from suptech.alerts.store import Scope
from suptech.common.follower import TopicFollower
from suptech.common.topics import REGISTRY_SANDBOX, topic_name
from suptech.v1 import sandbox_pb2

__all__ = ["SandboxRegister", "SandboxTests"]

log = logging.getLogger(__name__)


class SandboxTests:
    """The tests by test_id, safe to read from the gRPC loop while the reader thread writes."""

    def __init__(self) -> None:
        self._tests: dict[str, sandbox_pb2.SandboxTest] = {}
        self._lock = threading.Lock()
        self.skipped = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: an upsert, or a removal for a tombstone."""
        test_id = key.decode("utf-8", "replace") if key else ""
        if not value:
            if test_id:
                with self._lock:
                    self._tests.pop(test_id, None)
            return
        try:
            test = sandbox_pb2.SandboxTest.FromString(value)
        except DecodeError as exc:
            self._skip(test_id, f"not a SandboxTest protobuf: {exc}")
            return
        # Compaction keeps the last value per key, so the key is the test's identity.
        test_id = test_id or test.test_id
        if not test_id or not test.institution_id:
            self._skip(test_id, "test_id and institution_id are required")
            return
        test.test_id = test_id
        with self._lock:
            self._tests[test_id] = test

    def _skip(self, test_id: str, why: str) -> None:
        self.skipped += 1
        log.warning("sandbox register: record for %r skipped: %s", test_id, why)

    def visible(self, scope: Scope, institution_id: str = "") -> list[sandbox_pb2.SandboxTest]:
        """Copies of the tests ``scope`` may see, by institution then test id."""
        with self._lock:
            chosen = [
                t
                for t in self._tests.values()
                if scope.allows(t.institution_id)
                and (not institution_id or t.institution_id == institution_id)
            ]
            out = []
            for t in sorted(chosen, key=lambda t: (t.institution_id, t.test_id)):
                copy = sandbox_pb2.SandboxTest()
                copy.CopyFrom(t)
                out.append(copy)
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._tests)


class SandboxRegister(TopicFollower):
    """Follows the register topic into :class:`SandboxTests`; ``run`` in a thread of its own."""

    what = "sandbox register"

    def __init__(
        self,
        *,
        bootstrap: str,
        topic_prefix: str = "",
        client_id: str = "suptech-alerts-register",
        metadata_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(
            topic_name(REGISTRY_SANDBOX, topic_prefix),
            bootstrap=bootstrap,
            client_id=client_id,
            metadata_timeout_s=metadata_timeout_s,
        )
        self.tests = SandboxTests()
        tps = self.partitions
        self._consumer.seek_to_beginning(*tps)
        # Read to here and the register is the one the service started with.
        self._until: dict[TopicPartition, int] = {
            tp: o for tp, o in self._consumer.end_offsets(tps).items() if o > 0
        }
        self._complete = threading.Event()
        self._check_complete()

    @property
    def complete(self) -> bool:
        """Whether the register has been read up to the end it had at start."""
        return self._complete.is_set()

    def wait_complete(self, timeout_s: float) -> bool:
        return self._complete.wait(timeout_s)

    def _check_complete(self) -> None:
        if self._complete.is_set():
            return
        if all(self._consumer.position(tp) >= end for tp, end in self._until.items()):
            log.info("sandbox register loaded: %d tests from %s", len(self.tests), self.topic)
            self._complete.set()

    def handle(self, records: Sequence[Any]) -> int:
        for r in records:
            self.tests.apply(r.key, r.value)
        self._check_complete()
        return len(records)
