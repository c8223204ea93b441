"""Alert service benchmark: findings/s stored, and Kafka-to-StreamAlerts latency at offered load.

    python -m perf.alert_latency [--quick] [--db sqlite|postgres|both]

1. Throughput: N findings (over many groups) are put on findings.v1 first, then one consumer
   drains them into a fresh store; findings/s = N / drain time.
2. Latency: the whole service runs (gRPC, consumer, outbox) in this process; a StreamAlerts
   subscriber (a process of its own) follows while a paced producer (another process) offers
   findings at a fixed rate, each one opening its own alert (the worst case: one insert and one
   change event per finding). Latency is from the producer's send (stamped in the finding's
   summary) to the subscriber receiving that alert's CREATED event. Goal: p99 < 500 ms at 1,000/s.
   The load average before and after each run is recorded: the machine is shared.

Loopback only (the project's Kafka on 127.0.0.1:19092, PostgreSQL from scripts/postgres.sh).
Writes perf/results/alert_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from kafka import KafkaProducer
from sqlalchemy import create_engine, text
from suptech.alerts.app import build_alert_service
from suptech.alerts.config import AlertsConfig
from suptech.alerts.consumer import FindingsConsumer
from suptech.alerts.database import open_database
from suptech.alerts.store import AlertStore
from suptech.common.topics import FINDINGS, ensure_topics, topic_name
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "perf" / "results" / "alert_latency.json"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_finding(run: str, n: int, entity: str, stamp: bool = False) -> bytes:
    """A finding; ``stamp`` puts the send time in its summary (the alert carries it back)."""
    f = findings_pb2.Finding(
        finding_id=f"{run}-{n}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id=f"bank-{n % 20}",
        entity_kind="actor",
        entity_id=entity,
        rule_id="bulk_export",
        score=0.99,
        threshold=0.9,
        grade=findings_pb2.GRADE_GENERAL,
        summary=f"{run}-{n}@{time.time():.6f}" if stamp else f"{run}-{n}",
        contributions=[findings_pb2.Contribution(feature="records", observed=5e4, baseline=200)],
        evidence_event_ids=[f"ev-{run}-{n}"],
    )
    f.event_time.FromDatetime(T0 + timedelta(seconds=n))
    return f.SerializeToString()


class Database:
    """A fresh database of one kind for one run, dropped afterwards."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self._admin_url = ""
        self._name = ""
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
            return
        out = subprocess.run(
            [str(REPO / "scripts" / "postgres.sh"), "up"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        base = out.rsplit("/", 1)[0]
        self._admin_url = base + "/postgres"
        self._name = f"bench_{uuid.uuid4().hex[:8]}"
        with create_engine(self._admin_url, isolation_level="AUTOCOMMIT").connect() as c:
            c.execute(text(f'CREATE DATABASE "{self._name}"'))
        self.url = f"{base}/{self._name}"

    def drop(self) -> None:
        if self._name:
            engine = create_engine(self._admin_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'))
            engine.dispose()


def measure_throughput(bootstrap: str, db: Database, count: int) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix, (FINDINGS,))
    run = uuid.uuid4().hex[:6]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for n in range(count):
        # 500 groups: most findings update an existing alert, as in a busy day.
        producer.send(topic_name(FINDINGS, prefix), make_finding(run, n, f"actor-{n % 500}"))
    producer.flush()
    producer.close()
    engine, sessions = open_database(db.url)
    store = AlertStore(sessions, AlertsConfig(group_window_s=10 * 365 * 86400))
    consumer = FindingsConsumer(
        store, bootstrap=bootstrap, topic_prefix=prefix, group_id=f"bench-{run}", max_records=1000
    )
    seen = 0
    started = 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < count and time.monotonic() < deadline:
            got = consumer.poll_once(timeout_ms=500)
            if got and not started:
                started = time.perf_counter()
            seen += got
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
        engine.dispose()
    return {
        "findings": count,
        "stored": consumer.stats.stored,
        "seconds": round(elapsed, 3),
        "findings_per_s": round(consumer.stats.stored / elapsed, 1) if elapsed else 0.0,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _subscribe(port: int, run: str, total: int, timeout_s: float, out: Any) -> None:
    """Subscriber process: latency of every CREATED event of this run, from its send time."""
    latencies: list[float] = []
    deadline = time.time() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)
        # From the beginning of this fresh store: nothing is missed while connecting.
        stream = stub.StreamAlerts(
            alerts_pb2.StreamAlertsRequest(cursor="0"), timeout=max(1.0, timeout_s)
        )
        out.put(("ready", None))
        try:
            for event in stream:
                now = time.time()
                if event.kind != alerts_pb2.ALERT_EVENT_KIND_CREATED:
                    continue
                tag, _, sent = event.alert.summary.partition("@")
                if tag.startswith(run) and sent:
                    latencies.append((now - float(sent)) * 1000)
                if len(latencies) >= total or now > deadline:
                    stream.cancel()
                    break
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
    out.put(("latencies", latencies))


def _offer(bootstrap: str, topic: str, run: str, rate: int, total: int, out: Any) -> None:
    """Producer process: ``total`` findings paced at ``rate``/s, each stamped with its send time.

    A process of its own so that the producer neither slows the service under test nor is
    slowed by it (one interpreter lock each).
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    tick = 0.005
    per_tick = max(1, int(rate * tick))
    start = time.perf_counter()
    n = 0
    while n < total:
        for _ in range(min(per_tick, total - n)):
            producer.send(topic, make_finding(run, n, f"actor-{run}-{n}", stamp=True))
            n += 1
        # Paced against the start so a slow tick is caught up, keeping the offered rate.
        delay = start + (n / rate) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    out.put(("offered", total / elapsed))


async def measure_latency(
    bootstrap: str, db: Database, rate: int, seconds: float
) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    cfg = AlertsConfig(
        port=0,
        host="127.0.0.1",
        db_url=db.url,
        kafka_addr=bootstrap,
        topic_prefix=prefix,
        consumer_group=f"bench-{uuid.uuid4().hex[:6]}",
        tick_s=3600,
        # A loopback benchmark without credentials: the explicit development mode.
        insecure_dev=True,
    )
    app = build_alert_service(cfg)
    await app.start()
    run = uuid.uuid4().hex[:6]
    total = int(rate * seconds)
    ctx = multiprocessing.get_context("spawn")
    sub_q = ctx.Queue()
    off_q = ctx.Queue()
    timeout_s = seconds * 3 + 30
    subscriber = ctx.Process(
        target=_subscribe, args=(app.port, run, total, timeout_s, sub_q), daemon=True
    )
    subscriber.start()
    assert (await asyncio.to_thread(sub_q.get, True, 60))[0] == "ready"
    # Let the consumer join its group before the clock starts.
    await asyncio.sleep(2.0)
    load_before = _loadavg()
    producer = ctx.Process(
        target=_offer,
        args=(bootstrap, topic_name(FINDINGS, prefix), run, rate, total, off_q),
        daemon=True,
    )
    producer.start()
    offered = (await asyncio.to_thread(off_q.get, True, timeout_s))[1]
    latencies: list[float] = (await asyncio.to_thread(sub_q.get, True, timeout_s))[1]
    await asyncio.to_thread(producer.join, 10)
    await asyncio.to_thread(subscriber.join, 10)
    stats = app.consumer.stats if app.consumer is not None else None
    await app.stop()
    result: dict[str, Any] = {
        "offered_per_s": rate,
        "achieved_offer_per_s": round(offered, 1),
        "findings": total,
        "received": len(latencies),
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "stored": stats.stored if stats is not None else None,
    }
    if latencies:
        result.update(
            p50_ms=round(statistics.median(latencies), 1),
            p95_ms=round(percentile(latencies, 0.95), 1),
            p99_ms=round(percentile(latencies, 0.99), 1),
            max_ms=round(max(latencies), 1),
            goal_p99_under_500ms=percentile(latencies, 0.99) < 500,
        )
    return result


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.alert_latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (about a minute)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rate", type=int, default=1000, help="offered findings/s")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_ADDR", "127.0.0.1:19092")
    count = 3000 if args.quick else 20000
    seconds = 3.0 if args.quick else 10.0
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {
        "benchmark": "alert_latency",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            db = Database(kind, Path(tmp))
            try:
                throughput = measure_throughput(bootstrap, db, count)
            finally:
                db.drop()
            db = Database(kind, Path(tmp))
            try:
                latency = asyncio.run(measure_latency(bootstrap, db, args.rate, seconds))
            finally:
                db.drop()
            results[kind] = {"ingest": throughput, "latency": latency}
            lat = latency
            print(
                f"{kind:8} ingest {throughput['findings_per_s']:>8} findings/s | "
                f"latency at {lat['achieved_offer_per_s']}/s offered: p50 {lat.get('p50_ms')} ms, "
                f"p95 {lat.get('p95_ms')} ms, p99 {lat.get('p99_ms')} ms, "
                f"max {lat.get('max_ms')} ms ({lat['received']}/{lat['findings']} received; "
                f"load {lat['loadavg_before']})",
                flush=True,
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
