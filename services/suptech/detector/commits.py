"""Offsets faust may commit: never past the last checkpoint that reached Kafka.

faust commits the offsets of acknowledged records on its own at a rebalance (while it waits for
the agents to drain, before the ``on_partitions_revoked`` signal that writes our checkpoint) and
at shutdown (before ``on_before_shutdown``). A worker killed in between left committed offsets
past the saved state: the records in that gap were never re-read, and the state they built was
lost for good. :class:`CommitGuard` wraps the consumer's one commit path so that every commit,
ours or faust's, is clamped to the offsets of the newest checkpoint Kafka has; records above
them are re-read after a crash, and the engine's idempotence makes that harmless.

A commit is also bounded in time. aiokafka can lose its group coordinator in the middle of a
rebalance that a shutdown interrupts (the connection closes under an offset fetch, and the
routine that would find the coordinator again is stopping); its commit then waits for a
coordinator forever, and faust's last commit at shutdown with it: the worker never exits. A
commit that does not finish in ``timeout_s`` is given up like a refused one, since a commit is
only ever an optimisation here: the records above the last one are read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = ["CommitGuard", "COMMIT_TIMEOUT_S"]

log = logging.getLogger(__name__)

# (topic, partition) -> offset of the next record the covering checkpoint has not seen.
Offsets = Mapping[tuple[str, int], int]
_Commit = Callable[..., Awaitable[bool]]
# A commit takes milliseconds; one still waiting after this long waits for a coordinator.
COMMIT_TIMEOUT_S = 10.0


class CommitGuard:
    """Holds the offsets the last durable checkpoint covers and clamps commits to them."""

    def __init__(self, timeout_s: float = COMMIT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.covered: dict[tuple[str, int], int] = {}
        self.clamped = 0
        self.timed_out = 0
        self._installed: set[int] = set()

    def durable(self, offsets: Offsets) -> None:
        """A checkpoint covering ``offsets`` is now in Kafka (one shard's: the partitions it
        names move to these offsets, the others keep theirs)."""
        self.covered.update(offsets)

    def clamp(self, offsets: Mapping[Any, int]) -> dict[Any, int]:
        """The part of a commit the checkpoint covers (topic-partitions as faust's ``TP``)."""
        out: dict[Any, int] = {}
        for tp, offset in offsets.items():
            limit = self.covered.get((tp.topic, tp.partition))
            if limit is None:
                self.clamped += 1
                continue
            if offset > limit:
                self.clamped += 1
            out[tp] = min(offset, limit)
        return out

    def install(self, consumer: Any) -> None:
        """Route ``consumer``'s commits (faust's ``Consumer._commit_offsets``) through
        :meth:`clamp`, each bounded by ``timeout_s``; idempotent."""
        if id(consumer) in self._installed:
            return
        original: _Commit = consumer._commit_offsets

        async def guarded(offsets: Mapping[Any, int], *args: Any, **kwargs: Any) -> bool:
            allowed = self.clamp(offsets)
            if allowed != dict(offsets):
                log.debug("commit clamped to the last checkpoint: %s -> %s", offsets, allowed)
            if not allowed:
                return False
            try:
                return await asyncio.wait_for(original(allowed, *args, **kwargs), self.timeout_s)
            except TimeoutError:
                self.timed_out += 1
                log.warning(
                    "offsets not committed: no answer from the group coordinator in %.0f s "
                    "(the records above the last commit are read again)",
                    self.timeout_s,
                )
                return False

        consumer._commit_offsets = guarded
        self._installed.add(id(consumer))
