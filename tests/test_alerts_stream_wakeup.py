"""StreamAlerts is woken by the commit that grows the change log, not by its slow poll.

Real SQLite store and a real gRPC server; the readers' fallback poll is set to an hour, so an
event that arrives at all arrived through the in-process wake-up.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest_asyncio
from suptech.alerts.changes import ChangeSignal
from suptech.alerts.config import AlertsConfig
from suptech.alerts.database import open_database
from suptech.alerts.service import AlertServicer
from suptech.alerts.store import AlertStore
from suptech.common.grpc_server import GrpcServer
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

HOUR = 3600.0


def finding(n: int) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"wake-{uuid.uuid4().hex}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id="bank-a",
        entity_kind="actor",
        entity_id=f"actor-{n}",
        rule_id="bulk_export",
        score=0.99,
        threshold=0.9,
        grade=findings_pb2.GRADE_MAJOR,
        summary=f"export {n}",
    )
    f.event_time.FromDatetime(datetime.now(UTC))
    return f


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[AlertStore, int]]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'alerts.db'}")
    store = AlertStore(sessions, AlertsConfig())
    servicer = AlertServicer(store, stream_poll_s=HOUR)
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        registrations=[lambda s: alerts_pb2_grpc.add_AlertServiceServicer_to_server(servicer, s)],
        service_names=["suptech.v1.AlertService"],
    )
    await server.start()
    yield store, server.port
    await server.stop(0)
    engine.dispose()


async def test_a_committed_finding_reaches_an_idle_subscriber(
    served: tuple[AlertStore, int],
) -> None:
    store, port = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = alerts_pb2_grpc.AlertServiceStub(channel).StreamAlerts(
            alerts_pb2.StreamAlertsRequest(cursor="0"), timeout=60
        )
        got: list[alerts_pb2.AlertEvent] = []
        for n in range(3):
            # Each time the reader has gone idle first (empty log, then drained).
            await asyncio.sleep(0.3)
            await asyncio.to_thread(store.ingest, [finding(n)])
            got.append(await stream.read())
        stream.cancel()
    assert [e.alert.summary for e in got] == ["export 0", "export 1", "export 2"]
    assert all(e.kind == alerts_pb2.ALERT_EVENT_KIND_CREATED for e in got)
    assert [int(e.cursor) for e in got] == sorted(int(e.cursor) for e in got)


async def test_only_commits_that_append_events_notify(served: tuple[AlertStore, int]) -> None:
    store, _ = served
    before = store.changes.notifications
    await asyncio.to_thread(store.ingest, [finding(7)])
    assert store.changes.notifications == before + 1
    # A replay stores nothing and appends no event: readers are not woken for nothing.
    assert (await asyncio.to_thread(store.ingest, [])).new_findings == 0
    assert store.changes.notifications == before + 1


async def test_change_signal_wakes_waiters_from_another_thread() -> None:
    signal = ChangeSignal()
    ready = signal.subscribe()
    threading.Thread(target=signal.notify).start()
    await asyncio.wait_for(ready.wait(), 30)
    signal.unsubscribe(ready)
    ready.clear()
    signal.notify()
    await asyncio.sleep(0)
    assert not ready.is_set()
