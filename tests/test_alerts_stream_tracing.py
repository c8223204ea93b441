"""StreamAlerts continues the trace of the finding behind each alert change it sends.

The finding's store-span ``traceparent`` is kept with the change in the database (SQLite and a
real PostgreSQL), so a second replica, which never saw the finding, records the stream span in
that trace; changes no traced finding caused cost no span. Real stores, real gRPC.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from alembic import command
from alembic.config import Config
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from suptech.alerts.config import AlertsConfig
from suptech.alerts.database import MIGRATIONS, migrate, open_database
from suptech.alerts.service import AlertServicer
from suptech.alerts.store import AlertStore
from suptech.common.grpc_server import GrpcServer
from suptech.common.otel import setup_telemetry
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
STORE_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{STORE_SPAN_ID}-01"


def finding(entity: str) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"trace-{uuid.uuid4().hex}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id="bank-a",
        entity_kind="actor",
        entity_id=entity,
        rule_id="bulk_export",
        grade=findings_pb2.GRADE_MAJOR,
        summary=f"export by {entity}",
    )
    f.event_time.FromDatetime(datetime.now(UTC))
    return f


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    setup_telemetry("alerts")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@dataclass
class Replicas:
    writer: AlertStore  # the replica whose consumer stored the findings
    port: int  # StreamAlerts of another replica on the same database


@pytest_asyncio.fixture
async def replicas(db_url: str) -> AsyncIterator[Replicas]:
    engine_a, sessions_a = open_database(db_url)
    engine_b, sessions_b = open_database(db_url)
    servicer = AlertServicer(AlertStore(sessions_b, AlertsConfig()), stream_poll_s=0.05)
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        registrations=[lambda s: alerts_pb2_grpc.add_AlertServiceServicer_to_server(servicer, s)],
        service_names=["suptech.v1.AlertService"],
    )
    await server.start()
    yield Replicas(AlertStore(sessions_a, AlertsConfig()), server.port)
    await server.stop(0)
    engine_a.dispose()
    engine_b.dispose()


def stream_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == "suptech.alerts.stream"]


async def wait_for_spans(exporter: InMemorySpanExporter, n: int) -> list[ReadableSpan]:
    """The stream spans once ``n`` have ended (a span ends when the server resumes after the
    send, just after the client has the message)."""
    deadline = time.monotonic() + 30
    while len(stream_spans(exporter)) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return stream_spans(exporter)


def test_the_change_log_keeps_the_traceparent_of_the_last_finding_that_changed_the_alert(
    db_url: str,
) -> None:
    engine, sessions = open_database(db_url)
    try:
        store = AlertStore(sessions, AlertsConfig())
        first, second, untraced = finding("a"), finding("a"), finding("b")
        later = f"00-{TRACE_ID}-{'1' * 16}-01"
        store.ingest([first, untraced], {first.finding_id: TRACEPARENT})
        store.ingest([second], {second.finding_id: later})
        (alert_id,) = {
            alerts_pb2.Alert.FromString(e[2]).alert_id
            for e in store.events_after(0)[0]
            if e[3] is not None
        }
        store.acknowledge(alert_id, 0, actor="ana", role="analyst")
        # Read back through a fresh engine: what a restarted or other replica sees.
        engine2, sessions2 = open_database(db_url)
        events, _ = AlertStore(sessions2, AlertsConfig()).events_after(0)
        engine2.dispose()
    finally:
        engine.dispose()
    by_kind = [(alerts_pb2.Alert.FromString(e[2]).entity_id, e[1], e[3]) for e in events]
    assert by_kind == [
        ("a", alerts_pb2.ALERT_EVENT_KIND_CREATED, TRACEPARENT),
        ("b", alerts_pb2.ALERT_EVENT_KIND_CREATED, None),
        ("a", alerts_pb2.ALERT_EVENT_KIND_UPDATED, later),
        ("a", alerts_pb2.ALERT_EVENT_KIND_UPDATED, None),  # the acknowledgement
    ]


async def test_another_replica_streams_the_change_in_the_findings_trace(
    replicas: Replicas, spans: InMemorySpanExporter
) -> None:
    traced, untraced = finding("traced"), finding("untraced")
    await asyncio.to_thread(replicas.writer.ingest, [traced], {traced.finding_id: TRACEPARENT})
    await asyncio.to_thread(replicas.writer.ingest, [untraced])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replicas.port}") as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)
        streams = [
            stub.StreamAlerts(alerts_pb2.StreamAlertsRequest(cursor="0"), timeout=60)
            for _ in range(2)
        ]
        got = [[await s.read(), await s.read()] for s in streams]
        ended = await wait_for_spans(spans, 2)
        # Many idle poll-loop turns later (poll 0.05 s), still one span per change per stream.
        await asyncio.sleep(0.5)
        for s in streams:
            s.cancel()
    assert [[e.alert.entity_id for e in events] for events in got] == [["traced", "untraced"]] * 2
    cursor = got[0][0].cursor
    assert len(ended) == 2 == len(stream_spans(spans)), [s.attributes for s in ended]
    for span in ended:
        assert span.kind == trace.SpanKind.PRODUCER
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.parent is not None and f"{span.parent.span_id:016x}" == STORE_SPAN_ID
        assert span.attributes is not None
        assert span.attributes["suptech.alert_id"] == got[0][0].alert.alert_id
        assert span.attributes["suptech.alert_event.cursor"] == cursor
        assert span.attributes["suptech.alert_event.kind"] == "ALERT_EVENT_KIND_CREATED"


def test_the_migration_rolls_back_without_losing_the_change_logs_append_only_guard(
    db_url: str,
) -> None:
    engine, sessions = open_database(db_url)
    AlertStore(sessions, AlertsConfig()).ingest([finding("x")])
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "state_chain")
        assert "traceparent" not in {c["name"] for c in inspect(engine).get_columns("alert_events")}
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("UPDATE alert_events SET kind = 9"))
        migrate(engine)
        assert "traceparent" in {c["name"] for c in inspect(engine).get_columns("alert_events")}
    finally:
        engine.dispose()
