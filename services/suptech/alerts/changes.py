"""Wake-ups for StreamAlerts readers when this process has committed new alert events.

The store's writers run in worker threads and the gRPC readers on an asyncio loop; a reader waits
here instead of polling the database every few milliseconds. Events committed by another replica
are not signalled: readers keep a slow poll for those.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["ChangeSignal"]


class ChangeSignal:
    """Thread-safe "the change log grew" notice for any number of asyncio waiters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.notifications = 0

    def notify(self) -> None:
        """Wake every waiter; callable from any thread, after the commit is visible."""
        with self._lock:
            self.notifications += 1
            waiters = list(self._waiters)
        for loop, ready in waiters:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # that reader's loop has closed; it no longer waits
                pass

    def subscribe(self) -> asyncio.Event:
        """An event set by every later :meth:`notify`; pass it to :meth:`unsubscribe` when done.

        The reader clears it before reading the log, so a commit that lands between the read and
        the wait still wakes it.
        """
        ready = asyncio.Event()
        with self._lock:
            self._waiters.add((asyncio.get_running_loop(), ready))
        return ready

    def unsubscribe(self, ready: asyncio.Event) -> None:
        with self._lock:
            self._waiters = {w for w in self._waiters if w[1] is not ready}
