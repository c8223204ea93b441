"""The commit guard: faust's commits never pass the last checkpoint Kafka has, and a commit
that waits for a lost group coordinator is given up instead of holding a shutdown for ever."""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

from suptech.detector.commits import CommitGuard


class TP(NamedTuple):
    topic: str
    partition: int


class _Consumer:
    """faust's consumer as the guard sees it: one ``_commit_offsets`` path."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.committed: list[dict[Any, int]] = []

    async def _commit_offsets(self, offsets: dict[Any, int], *args: Any, **kwargs: Any) -> bool:
        if self.hang:
            await asyncio.Event().wait()  # aiokafka waiting for a coordinator it lost
        self.committed.append(dict(offsets))
        return True


def test_commits_are_clamped_to_what_the_checkpoint_covers() -> None:
    guard, consumer = CommitGuard(), _Consumer()
    guard.install(consumer)
    guard.durable({("t", 0): 5})
    ok = asyncio.run(consumer._commit_offsets({TP("t", 0): 9, TP("t", 1): 3}))
    assert ok and consumer.committed == [{TP("t", 0): 5}]
    assert guard.clamped == 2


def test_a_commit_the_coordinator_never_answers_is_given_up_not_waited_for() -> None:
    guard, consumer = CommitGuard(timeout_s=0.2), _Consumer(hang=True)
    guard.install(consumer)
    guard.durable({("t", 0): 5})
    started = time.monotonic()
    ok = asyncio.run(consumer._commit_offsets({TP("t", 0): 5}))
    assert not ok and consumer.committed == []
    assert guard.timed_out == 1
    assert time.monotonic() - started < 5
