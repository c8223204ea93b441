"""Trace context crosses Kafka: what one service injects, the next extracts as the same trace."""

from __future__ import annotations

from opentelemetry import trace
from suptech.common.otel import extract_context, inject_headers, setup_telemetry


def test_trace_context_round_trips_through_kafka_headers() -> None:
    tracer, _ = setup_telemetry("test")
    with tracer.start_as_current_span("ingest") as span:
        sent_trace = span.get_span_context().trace_id
        headers = inject_headers([("other", b"x"), ("traceparent", b"stale")])
    # Exactly one traceparent: two break the link between producer and consumer spans.
    assert [k for k, _ in headers].count("traceparent") == 1
    assert ("other", b"x") in headers
    ctx = extract_context(headers)
    with tracer.start_as_current_span("detect", context=ctx) as child:
        assert child.get_span_context().trace_id == sent_trace
        assert child.parent is not None and child.parent.trace_id == sent_trace


def test_no_headers_start_a_new_trace() -> None:
    tracer, _ = setup_telemetry("test")
    with tracer.start_as_current_span("detect", context=extract_context(None)) as span:
        assert span.parent is None
        assert span.get_span_context().trace_id != trace.INVALID_TRACE_ID
