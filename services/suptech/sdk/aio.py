"""asyncio face of :class:`TelemetryClient`, with the sync client's signatures.

Spooling an event is a short local write, so the senders run inline and return the event id; the
calls that wait for the gateway (flush, close) run in the default executor so they never block
the event loop. Every sender is the sync method itself, typed through ``ParamSpec``: a type
checker sees the same parameters on both clients (a wrong argument is caught on either).
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from suptech.sdk.client import ClientStats, Rejection, TelemetryClient

__all__ = ["AsyncTelemetryClient"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _on_client(
    method: Callable[Concatenate[TelemetryClient, _P], _R],
) -> Callable[Concatenate[AsyncTelemetryClient, _P], _R]:
    """The sync ``method``, called on the wrapped client, with its signature and docstring."""

    @functools.wraps(method)
    def call(self: AsyncTelemetryClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(self.client, *args, **kwargs)

    return call


class AsyncTelemetryClient:
    """:class:`TelemetryClient` for asyncio: the same constructor and senders; ``await`` only
    :meth:`flush`, :meth:`close` and ``async with``."""

    def __init__(
        self,
        target: str,
        institution_id: str,
        *,
        spool_dir: str | os.PathLike[str],
        pseudonym_key: bytes,
        token: str | None = None,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        tls: bool | None = None,
        batch_size: int = 500,
        linger_s: float = 0.2,
        max_in_flight: int = 4,
        max_batch_bytes: int = 3 * 1024 * 1024,
        max_event_bytes: int = 256 * 1024,
        retry_base_s: float = 0.1,
        retry_max_s: float = 10.0,
        ack_timeout_s: float = 30.0,
        channel_options: Sequence[tuple[str, Any]] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.client = TelemetryClient(
            target,
            institution_id,
            spool_dir=spool_dir,
            pseudonym_key=pseudonym_key,
            token=token,
            root_certificates=root_certificates,
            client_certificate=client_certificate,
            client_key=client_key,
            tls=tls,
            batch_size=batch_size,
            linger_s=linger_s,
            max_in_flight=max_in_flight,
            max_batch_bytes=max_batch_bytes,
            max_event_bytes=max_event_bytes,
            retry_base_s=retry_base_s,
            retry_max_s=retry_max_s,
            ack_timeout_s=ack_timeout_s,
            channel_options=channel_options,
            rng=rng,
        )

    @property
    def institution_id(self) -> str:
        return self.client.institution_id

    @property
    def rejections(self) -> Sequence[Rejection]:
        return self.client.rejections

    send = _on_client(TelemetryClient.send)
    send_encoded = _on_client(TelemetryClient.send_encoded)
    send_many_encoded = _on_client(TelemetryClient.send_many_encoded)
    pseudonymise = _on_client(TelemetryClient.pseudonymise)
    data_access = _on_client(TelemetryClient.data_access)
    it_posture = _on_client(TelemetryClient.it_posture)
    sandbox_metrics = _on_client(TelemetryClient.sandbox_metrics)
    heartbeat = _on_client(TelemetryClient.heartbeat)
    metrics = _on_client(TelemetryClient.metrics)
    maintenance_window = _on_client(TelemetryClient.maintenance_window)
    business_calendar = _on_client(TelemetryClient.business_calendar)

    def stats(self) -> ClientStats:
        return self.client.stats()

    async def flush(self, timeout: float | None = None) -> bool:
        """Like :meth:`TelemetryClient.flush`, awaited in the default executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.client.flush, timeout)

    async def close(self, timeout: float | None = 10.0) -> bool:
        """Like :meth:`TelemetryClient.close`, awaited in the default executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.client.close, timeout)

    async def __aenter__(self) -> AsyncTelemetryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
