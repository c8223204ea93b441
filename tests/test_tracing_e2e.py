"""One trace from the institution's batch to the supervisor's alert, exported over OTLP.

The SDK's batch span (the application's tracer provider), then the gateway's, the detector's and
the alert service's spans, each service a real process exporting to a real OTLP/HTTP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``): all under one trace id, down to the alert service's span for
sending the alert to a supervisor's StreamAlerts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from suptech.sdk.client import TelemetryClient

from tests.test_pipeline_e2e import (
    GATEWAY_TOKEN,
    INST,
    SUPERVISOR_TOKEN,
    _collect,
    _stack,
    send_c3_export,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# (service.name, span name, trace id as hex) of every span the services exported.
Exported = list[tuple[str, str, str]]


class _Collector(BaseHTTPRequestHandler):
    spans: Exported = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's method name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            for scope in rs.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        (attrs.get("service.name", ""), span.name, span.trace_id.hex())
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, Exported]]:
    spans: Exported = []
    handler = type("Handler", (_Collector,), {"spans": spans})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", spans
    server.shutdown()
    server.server_close()


@pytest.fixture
def sdk_spans() -> Iterator[InMemorySpanExporter]:
    """The institution application's own tracing, as it would set it up."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # another test may have installed one
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def test_one_trace_from_sdk_batch_to_stored_alert(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    collector: tuple[str, Exported],
    sdk_spans: InMemorySpanExporter,
) -> None:
    endpoint, exported = collector
    stack = _stack(tmp_path, kafka_bootstrap, topic_prefix)
    stack.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="200")
    try:
        stack.start()
        with TelemetryClient(
            f"127.0.0.1:{stack.gateway_port}",
            INST,
            token=GATEWAY_TOKEN,
            spool_dir=tmp_path / "spool",
            pseudonym_key=b"institution-secret",
        ) as client:
            send_c3_export(client, time.time() - 60)
            assert client.flush(timeout=60), client.stats()
        [batch] = [s for s in sdk_spans.get_finished_spans() if s.name == "suptech.sdk.batch"]
        trace_id = f"{batch.context.trace_id:032x}"
        assert batch.attributes is not None and batch.attributes["suptech.events_accepted"] == 1

        want = {"suptech-gateway", "suptech-detector", "suptech-alerts"}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            seen = {svc for svc, _, tid in list(exported) if tid == trace_id}
            if seen >= want:
                break
            time.sleep(0.3)
        in_trace = sorted({(svc, name) for svc, name, tid in list(exported) if tid == trace_id})
        assert {svc for svc, _ in in_trace} >= want, (in_trace, len(exported))
        assert ("suptech-alerts", "suptech.alerts.store") in in_trace
        assert ("suptech-gateway", "suptech.gateway.batch") in in_trace

        # The supervisor reads the alert: its send on the stream joins the same trace.
        [created] = _collect(stack.alerts_port, SUPERVISOR_TOKEN, want=1, timeout_s=90)
        assert created.alert.institution_id == INST
        streamed = ("suptech-alerts", "suptech.alerts.stream", trace_id)
        deadline = time.monotonic() + 60
        while streamed not in list(exported) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert streamed in list(exported), sorted(
            {(svc, name) for svc, name, tid in list(exported) if tid == trace_id}
        )
    finally:
        stack.stop()
