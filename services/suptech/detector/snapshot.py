"""Shard snapshots in a forked child, so the event loop never stops for a pickle.

Pickling a shard's engine takes time in proportion to its state (seconds at a million actors),
and on the loop that stops records, heartbeats and health alike: the group saw the worker as
dead and rebalanced. Instead, as Redis's BGSAVE does, the worker forks: the child has the state
exactly as it was between two records (copy-on-write pages), pickles and seals it, writes the
checkpoint file and exits; the parent goes on at once and, once the child is done, sends the file
to Kafka a chunk at a time, off the loop. The child touches nothing but the state and the file
(no logging, no sockets: only the forking thread exists in it) and leaves by ``os._exit``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os

from suptech.detector.checkpoint import Checkpoint, CheckpointStore
from suptech.detector.processing import DetectorCore

__all__ = ["SnapshotFailed", "fork_available", "finish_snapshot", "start_snapshot"]


class SnapshotFailed(RuntimeError):
    """The child could not write the checkpoint (its exit status says how)."""


def fork_available() -> bool:
    return hasattr(os, "fork")


def start_snapshot(core: DetectorCore, store: CheckpointStore) -> tuple[Checkpoint, int]:
    """Fork a child that writes ``core``'s checkpoint to ``store``; the checkpoint (its engine
    state left out) and the child's pid. Call between two records, as for any checkpoint."""
    head = core.checkpoint_head()
    pid = os.fork()
    if pid == 0:  # the child: state as of the fork, then out without any cleanup
        # No collection in the child: it would run finalizers of the parent's garbage (a socket
        # closed here deregisters it from the event loop's epoll, which the parent shares).
        gc.disable()
        status = 1
        try:
            store.write(dataclasses.replace(head, engine_blob=core.engine.snapshot()))
            status = 0
        finally:
            os._exit(status)
    return head, pid


async def finish_snapshot(pid: int, store: CheckpointStore) -> tuple[int, float]:
    """Wait (off the loop) for the child ``pid``; the size of the file it wrote and the CPU
    seconds it took (what it took from the records, on a machine with fewer cores than work)."""
    _, wait_status, usage = await asyncio.to_thread(os.wait4, pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise SnapshotFailed(f"snapshot child {pid} exited with {code}")
    return store.path.stat().st_size, usage.ru_utime + usage.ru_stime
