"""What the stream span costs: StreamAlerts and ingest with and without the finding's trace.

    python -m perf.stream_tracing_cost [--events N] [--db sqlite|postgres|both]

1. Ingest: N findings, each its own alert, stored in batches of 500 with a ``traceparent`` per
   finding (what the consumer passes when records carry a trace) and without.
2. Stream: one StreamAlerts client (real gRPC on loopback, same process) reads the N changes of
   each kind from the change log; per-change cost with a ``suptech.alerts.stream`` span each
   (the tracer provider installed as in the service, no exporter) and without.
3. The span alone: ``_stream_span`` and ``end`` in a loop, what a traced change adds.

Each figure is the best of ``--rounds`` alternating rounds (the machine is shared, and other
work only ever adds time).

The machine is shared: the load average is recorded beside the figures. Writes
perf/results/stream_tracing_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine, text
from suptech.alerts.config import AlertsConfig
from suptech.alerts.database import open_database
from suptech.alerts.service import AlertServicer
from suptech.alerts.store import AlertStore
from suptech.common.grpc_server import GrpcServer
from suptech.common.otel import setup_telemetry
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

RESULTS = Path(__file__).resolve().parent / "results" / "stream_tracing_cost.json"
BATCH = 500


def _findings(n: int, tag: str) -> list[findings_pb2.Finding]:
    out = []
    now = datetime.now(UTC)
    for i in range(n):
        f = findings_pb2.Finding(
            finding_id=f"{tag}-{uuid.uuid4().hex}",
            family=findings_pb2.FAMILY_DATA_LEAKAGE,
            institution_id="bank-a",
            entity_kind="actor",
            entity_id=f"{tag}-{i}",
            rule_id="bulk_export",
            grade=findings_pb2.GRADE_MAJOR,
            summary=f"export {i}",
        )
        f.event_time.FromDatetime(now)
        out.append(f)
    return out


def _ingest(store: AlertStore, findings: list[findings_pb2.Finding], traced: bool) -> float:
    traces = (
        {f.finding_id: f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for f in findings}
        if traced
        else None
    )
    start = time.perf_counter()
    for i in range(0, len(findings), BATCH):
        store.ingest(findings[i : i + BATCH], traces)
    return time.perf_counter() - start


async def _stream(port: int, cursor: int, n: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = alerts_pb2_grpc.AlertServiceStub(channel).StreamAlerts(
            alerts_pb2.StreamAlertsRequest(cursor=str(cursor)), timeout=600
        )
        start = time.perf_counter()
        for _ in range(n):
            await stream.read()
        elapsed = time.perf_counter() - start
        stream.cancel()
    return elapsed


async def _run(url: str, n: int, rounds: int) -> dict[str, Any]:
    engine, sessions = open_database(url)
    store = AlertStore(sessions, AlertsConfig())
    servicer = AlertServicer(store, stream_poll_s=0.5)
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        registrations=[lambda s: alerts_pb2_grpc.add_AlertServiceServicer_to_server(servicer, s)],
        service_names=["suptech.v1.AlertService"],
    )
    await server.start()
    try:
        best: dict[str, list[float]] = {}
        for r in range(rounds):
            # Alternating which goes first: the log and the database grow as rounds go on.
            for traced in (r % 2 == 1, r % 2 == 0):
                name = "traced" if traced else "untraced"
                head = store.head_cursor()
                tag = f"{name}{r}"
                ingest_s = await asyncio.to_thread(_ingest, store, _findings(n, tag), traced)
                stream_s = await _stream(server.port, head, n)
                old = best.get(name, [ingest_s, stream_s])
                best[name] = [min(old[0], ingest_s), min(old[1], stream_s)]
        return {
            name: {
                "ingest_findings_per_s": round(n / ingest_s),
                "stream_us_per_change": round(stream_s / n * 1e6, 1),
            }
            for name, (ingest_s, stream_s) in best.items()
        }
    finally:
        await server.stop(0)
        engine.dispose()


def _span_alone_us(n: int = 20_000) -> float:
    servicer = AlertServicer.__new__(AlertServicer)
    servicer._tracer = setup_telemetry("alerts")[0]
    alert = alerts_pb2.Alert(alert_id=uuid.uuid4().hex, institution_id="bank-a")
    tp = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    start = time.perf_counter()
    for i in range(n):
        span = servicer._stream_span(i, alerts_pb2.ALERT_EVENT_KIND_CREATED, alert, tp)
        assert span is not None
        span.end()
    return round((time.perf_counter() - start) / n * 1e6, 1)


def _postgres_url() -> str:
    up = subprocess.run(["scripts/postgres.sh", "up"], check=True, capture_output=True, text=True)
    server = up.stdout.strip().rsplit("/", 1)[0]
    name = f"perf_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "events": args.events,
        "rounds": args.rounds,
        "load_before": os.getloadavg(),
        "span_alone_us": _span_alone_us(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            url = f"sqlite:///{tmp}/alerts.db"
            results["sqlite"] = asyncio.run(_run(url, args.events, args.rounds))
        if args.db in ("postgres", "both"):
            results["postgres"] = asyncio.run(_run(_postgres_url(), args.events, args.rounds))
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
