"""Each service's Prometheus ``/metrics`` over HTTP after real traffic, as an SRE scrapes it.

The gateway, the detector and the alert service run as ``python -m`` processes on the real
broker; an institution streams through the gateway, findings reach the alert service on
findings.v1, a supervisor watches StreamAlerts and a webhook receiver answers. The counts each
service reports must be the traffic that went through it.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from suptech.common.topics import FINDINGS, topic_name
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2, ingest_pb2_grpc

from simulators.run_pipeline import Service
from tests.conftest import fixed_port
from tests.test_gateway import TOKEN_A, batch, now_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "tok-16chars-metrics-admin"
ADMIN = [("authorization", f"Bearer {ADMIN_TOKEN}")]
START_S = 180.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """(sample name, sorted labels) -> value, from one GET of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def scrape_until(port: int, done: Callable[[Samples], bool], timeout_s: float = 120) -> Samples:
    """Scrape until ``done`` holds or the time is up; the caller asserts on what came last."""
    deadline = time.monotonic() + timeout_s
    samples = scrape(port)
    while not done(samples) and time.monotonic() < deadline:
        time.sleep(0.5)
        samples = scrape(port)
    return samples


class Hooks:
    """A webhook receiver answering 204, counting what it received."""

    def __init__(self) -> None:
        self.received: queue.Queue[bytes] = queue.Queue()
        received = self.received

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                received.put(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"


@pytest.fixture
def stack(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> Iterator[tuple[dict[str, int], dict[str, Service], Hooks]]:
    """Gateway, detector and alert service, each with its own metrics port; all logs JSON."""
    gw_tokens = tmp_path / "gateway_tokens.json"
    gw_tokens.write_text(json.dumps({TOKEN_A: "bank-a"}))
    al_tokens = tmp_path / "alerts_tokens.json"
    al_tokens.write_text(
        json.dumps({ADMIN_TOKEN: {"name": "sre", "role": "admin", "jurisdictions": ["*"]}})
    )
    hooks = Hooks()
    ports: dict[str, int] = {}
    while len(set(ports.values())) < 3:
        ports = {name: fixed_port() for name in ("gateway", "detector", "alerts")}
    base = dict(
        os.environ,
        KAFKA_ADDR=kafka_bootstrap,
        SUPTECH_TOPIC_PREFIX=topic_prefix,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        SUPTECH_LOG_FORMAT="json",
    )
    own = {
        "alerts": dict(
            ALERTS_PORT="0",
            ALERTS_DB_URL=f"sqlite:///{tmp_path / 'alerts.db'}",
            ALERTS_TOKENS_FILE=str(al_tokens),
            ALERTS_TICK_S="1",
            ALERTS_WEBHOOK_URLS=hooks.url,
            ALERTS_WEBHOOK_SECRET="metrics-hook-secret",
        ),
        "detector": dict(
            DETECTOR_STATE_DIR=str(tmp_path / "detector"),
            DETECTOR_APP_ID=f"det-metrics-{uuid.uuid4().hex[:8]}",
            DETECTOR_HEALTH_PORT="0",
            DETECTOR_WATERMARK_INTERVAL_S="1",
            DETECTOR_SESSION_TIMEOUT_S="10",
        ),
        "gateway": dict(GATEWAY_PORT="0", GATEWAY_TOKENS_FILE=str(gw_tokens)),
    }
    services: dict[str, Service] = {}
    try:
        for name, env in own.items():
            env = dict(base, SUPTECH_METRICS_PORT=str(ports[name]), **env)
            services[name] = Service(name, f"suptech.{name}", env, tmp_path / f"{name}.log")
        ports["alerts_api"] = int(
            services["alerts"].wait_for(r"alerts listening on (\d+)", START_S).group(1)
        )
        ports["gateway_api"] = int(
            services["gateway"].wait_for(r"gateway listening on (\d+)", START_S).group(1)
        )
        services["detector"].wait_for(r"detector ready", START_S)
        yield ports, services, hooks
    finally:
        for svc in services.values():
            svc.stop()
        hooks.httpd.shutdown()


def send_telemetry(port: int) -> list[int]:
    """7 good events and 2 refused (a raw employee id where a pseudonym belongs), in 2 batches;
    returns the accepted count of each ack."""
    bad = []
    for n in (90, 91):
        ev = now_event("data_access", n)
        ev.data_access.actor_pseudonym = "raw-employee-id"
        bad.append(ev)
    first = [now_event("heartbeat", n) for n in range(5)] + bad
    second = [now_event("heartbeat", n) for n in range(5, 7)]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call = stub.StreamTelemetry(
            iter([batch(first, "m-1"), batch(second, "m-2")]),
            metadata=(("authorization", f"Bearer {TOKEN_A}"),),
            timeout=60,
        )
        return [ack.accepted for ack in call]


def finding(n: int) -> bytes:
    f = findings_pb2.Finding(
        finding_id=f"metrics-finding-{n}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id="bank-a",
        entity_kind="actor",
        entity_id="actor-metrics",
        rule_id="bulk_export",
        score=0.97,
        threshold=0.9,
        grade=findings_pb2.GRADE_SIGNIFICANT,
        summary=f"bulk export #{n}",
    )
    f.event_time.FromNanoseconds(time.time_ns() - (10 - n) * 10**9)
    return f.SerializeToString()


def produce_findings(bootstrap: str, prefix: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for v in values:
        producer.send(topic_name(FINDINGS, prefix), key=b"bank-a", value=v)
    producer.flush()
    producer.close()


def alerts_listed(stub: alerts_pb2_grpc.AlertServiceStub, findings: int) -> list[alerts_pb2.Alert]:
    alerts: list[alerts_pb2.Alert] = []
    for _ in range(600):
        resp = stub.ListAlerts(alerts_pb2.ListAlertsRequest(page_size=500), metadata=ADMIN)
        alerts = list(resp.alerts)
        if sum(a.finding_count for a in alerts) >= findings:
            break
        time.sleep(0.2)
    return alerts


def watch(stub: alerts_pb2_grpc.AlertServiceStub, events: queue.Queue[int]) -> None:
    """StreamAlerts from the beginning, each event's cursor into ``events`` (until closed)."""
    try:
        for ev in stub.StreamAlerts(
            alerts_pb2.StreamAlertsRequest(cursor="0"), metadata=ADMIN, timeout=120
        ):
            events.put(int(ev.cursor))
    except grpc.RpcError:
        pass


def test_each_service_reports_the_traffic_it_carried(
    stack: tuple[dict[str, int], dict[str, Service], Hooks],
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    ports, services, hooks = stack
    assert send_telemetry(ports["gateway_api"]) == [5, 2]

    gw = scrape(ports["gateway"])
    assert value(gw, "suptech_gateway_events_total", outcome="accepted", reason="") == 7
    assert (
        value(gw, "suptech_gateway_events_total", outcome="rejected", reason="INVALID_FORMAT") == 2
    )
    assert value(gw, "suptech_gateway_batches_total", outcome="acked") == 2
    assert value(gw, "suptech_gateway_ingest_seconds_count") == 2
    assert value(gw, "suptech_gateway_kafka_produce_seconds_count") == 2
    # The process collectors an SRE looks at first come along.
    assert value(gw, "process_resident_memory_bytes") > 0

    det = scrape_until(
        ports["detector"],
        lambda s: (
            value(s, "suptech_detector_events_total") >= 7
            and total(s, "suptech_detector_consumer_lag") == 0
            and any(n == "suptech_detector_consumer_lag" for n, _ in s)
        ),
    )
    assert value(det, "suptech_detector_events_total") == 7
    lag = {labels: v for (n, labels), v in det.items() if n == "suptech_detector_consumer_lag"}
    assert lag and all(v == 0 for v in lag.values()), lag
    assert any(n == "suptech_detector_state_entities" for n, _ in det)

    with grpc.insecure_channel(f"127.0.0.1:{ports['alerts_api']}") as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)
        produce_findings(kafka_bootstrap, topic_prefix, [finding(1)])
        assert len(alerts_listed(stub, 1)) == 1
        # A live stream: it has replayed the first alert's creation before the second finding.
        events: queue.Queue[int] = queue.Queue()
        threading.Thread(target=watch, args=(stub, events), daemon=True).start()
        events.get(timeout=60)
        produce_findings(kafka_bootstrap, topic_prefix, [finding(2), finding(1)])
        listed = alerts_listed(stub, 2)
        events.get(timeout=60)
    assert sum(a.finding_count for a in listed) == 2

    al = scrape_until(
        ports["alerts"],
        lambda s: (
            value(s, "suptech_alerts_findings_records_total") >= 3
            and total(s, "suptech_alerts_alerts") == len(listed)
            and value(s, "suptech_alerts_webhook_deliveries_total", outcome="delivered") >= 1
            and value(s, "suptech_alerts_outbox_depth", kind="webhook") == 0
            and value(s, "suptech_alerts_store_to_stream_seconds_count") >= 1
        ),
    )
    assert value(al, "suptech_alerts_findings_records_total") == 3
    assert value(al, "suptech_alerts_findings_stored_total") == 2
    assert value(al, "suptech_alerts_findings_duplicates_total") == 1
    assert value(al, "suptech_alerts_finding_to_store_seconds_count") == 3
    assert total(al, "suptech_alerts_alerts") == len(listed) == 1
    assert value(al, "suptech_alerts_store_to_stream_seconds_count") >= 1
    delivered = value(al, "suptech_alerts_webhook_deliveries_total", outcome="delivered")
    assert delivered == hooks.received.qsize() >= 1
    assert value(al, "suptech_alerts_outbox_depth", kind="webhook") == 0

    # Every line the gateway logged is one JSON object with the fields log pipelines index.
    lines = services["gateway"].log_path.read_text().splitlines()
    docs = [json.loads(line) for line in lines if line.strip()]
    assert docs and all(d["service"] == "gateway" for d in docs)
    assert {"timestamp", "level", "logger", "message"} <= set(docs[0])
    # The detector's too, faust's own lines included (faust installs its own handler otherwise).
    lines = services["detector"].log_path.read_text().splitlines()
    loggers = {json.loads(line)["logger"] for line in lines if line.strip()}
    assert any(name.startswith(("faust", "mode", "aiokafka")) for name in loggers), loggers
