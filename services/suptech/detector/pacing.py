"""When a shard's checkpoint may start, so that checkpoints never starve the records.

A checkpoint costs in proportion to the state (a forked child pickles and seals it, the parent
sends it to Kafka): milliseconds at ten thousand actors, seconds per shard at a million. Every
shard checkpointing on its own every 30 s then kept several children pickling at once on two
cores, each also copying the pages the parent touched, and the records waited: at a million
actors the worker read a fifth of its ten-thousand-actor rate.

So, as a database bounds its checkpoint I/O: one routine checkpoint at a time, and after each
one the next waits ``cost * (1 - budget) / budget``, where the cost is the CPU it took (the
snapshot child's, and the thread's that sent it to Kafka; waiting for the broker costs nothing),
so that checkpointing takes at most ``budget`` of one core. Small state is not held back (the
wait is shorter than the checkpoint interval); large state is checkpointed less often, which
only means more records are read again after a crash (offsets are committed with the
checkpoints, never past them).

The checkpoints of a rebalance or a shutdown are not routine: they all run at once, but with at
most ``final_children`` snapshot children alive together (the cores; more only share them and
copy more memory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["CheckpointPacer", "on_cpu_clock"]

T = TypeVar("T")


def on_cpu_clock(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``fn(*args)`` and the CPU seconds the calling thread spent in it (for a worker thread)."""
    start = time.thread_time()
    return fn(*args), time.thread_time() - start


@dataclass
class CheckpointPacer:
    budget: float = 0.2
    final_children: int = 2
    # Checkpoints between their start and their end (Kafka has them, or they failed).
    running: int = 0
    # Snapshot children alive (or, without fork, snapshots being written in a thread).
    children: int = 0
    _opens_at: float = 0.0
    _child_done: asyncio.Event = field(default_factory=asyncio.Event)

    def may_start(self, now: float) -> bool:
        """Whether a routine checkpoint may start now."""
        return self.running == 0 and now >= self._opens_at

    def started(self) -> None:
        self.running += 1
        self.children += 1

    def written(self) -> None:
        """The snapshot is on disk (its child exited): another child may start."""
        self.children -= 1
        self._child_done.set()

    def finished(self, cost_s: float, now: float) -> None:
        """A checkpoint that took ``cost_s`` of CPU ended at ``now``."""
        self.running -= 1
        self._opens_at = max(self._opens_at, now + cost_s * (1 - self.budget) / self.budget)

    async def child_slot(self) -> None:
        """Wait until fewer than ``final_children`` snapshot children are alive."""
        while self.children >= self.final_children:
            self._child_done.clear()
            await self._child_done.wait()
