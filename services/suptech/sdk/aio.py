"""asyncio face of :class:`TelemetryClient`.

Spooling an event is a short local write, so the senders run inline; the calls that wait for the
gateway (flush, close) run in the default executor so they never block the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from suptech.sdk.client import ClientStats, TelemetryClient

__all__ = ["AsyncTelemetryClient"]


class AsyncTelemetryClient:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.client = TelemetryClient(*args, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> str:
        return self.client.send(*args, **kwargs)

    def data_access(self, **kwargs: Any) -> str:
        return self.client.data_access(**kwargs)

    def it_posture(self, **kwargs: Any) -> str:
        return self.client.it_posture(**kwargs)

    def sandbox_metrics(self, **kwargs: Any) -> str:
        return self.client.sandbox_metrics(**kwargs)

    def heartbeat(self, *args: Any, **kwargs: Any) -> str:
        return self.client.heartbeat(*args, **kwargs)

    def metrics(self, **kwargs: Any) -> str:
        return self.client.metrics(**kwargs)

    def maintenance_window(self, **kwargs: Any) -> str:
        return self.client.maintenance_window(**kwargs)

    def business_calendar(self, **kwargs: Any) -> str:
        return self.client.business_calendar(**kwargs)

    def stats(self) -> ClientStats:
        return self.client.stats()

    async def flush(self, timeout: float | None = None) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.client.flush, timeout)

    async def close(self, timeout: float | None = 10.0) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.client.close, timeout)

    async def __aenter__(self) -> AsyncTelemetryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
