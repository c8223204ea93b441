"""OpenTelemetry, set up once per process, and trace context on Kafka records in one place.

The gateway writes the W3C ``traceparent`` of the ingest call into the headers of each record it
produces (:func:`inject_headers`); consumers continue that trace (:func:`extract_context`), so a
finding can be followed back to the batch that carried its evidence. Metric names carry the
``suptech.`` prefix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "setup_telemetry",
    "inject_headers",
    "extract_context",
    "traceparent_of",
    "context_from_traceparent",
    "METRIC_PREFIX",
]

METRIC_PREFIX = "suptech."

KafkaHeaders = list[tuple[str, bytes]]


def setup_telemetry(service: str) -> tuple[trace.Tracer, metrics.Meter]:
    """Install tracer and meter providers for ``service`` (once per process) and return both.

    Spans go to an OpenTelemetry collector over OTLP/HTTP when the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (the
    exporter reads the rest of the ``OTEL_EXPORTER_OTLP_*`` variables itself: headers, timeout,
    certificate), and to the console when ``SUPTECH_OTEL_CONSOLE=1`` (development). Otherwise
    they are recorded with no exporter, so instrumentation costs little until an SRE turns it on.
    ``OTEL_SERVICE_NAME`` overrides the service name.
    """
    resource = Resource.create({"service.name": f"suptech-{service}"})
    console = os.environ.get("SUPTECH_OTEL_CONSOLE", "") == "1"
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        tracer_provider = TracerProvider(resource=resource)
        if _otlp_configured():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if console:
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(tracer_provider)
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        readers = [PeriodicExportingMetricReader(ConsoleMetricExporter())] if console else []
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return trace.get_tracer(f"suptech.{service}"), metrics.get_meter(f"suptech.{service}")


def _otlp_configured() -> bool:
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def inject_headers(headers: KafkaHeaders | None = None) -> KafkaHeaders:
    """Return Kafka headers carrying the current trace context (exactly one ``traceparent``)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    out = [(k, v) for k, v in (headers or []) if k not in carrier]
    out.extend((k, v.encode()) for k, v in carrier.items())
    return out


def extract_context(
    headers: Sequence[tuple[str, bytes]] | Iterable[tuple[str, bytes]] | None,
) -> otel_context.Context:
    """The trace context a producer wrote into a record's headers (empty context when none)."""
    carrier = {k: v.decode("latin-1") for k, v in (headers or []) if isinstance(v, bytes)}
    return extract(carrier)


_W3C = TraceContextTextMapPropagator()


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C ``traceparent`` naming ``span`` (None for an invalid span): what a store keeps
    so that a later step, in another process or after a restart, continues the same trace."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def context_from_traceparent(value: str) -> otel_context.Context:
    """The context a stored ``traceparent`` names (empty context when it is malformed)."""
    return _W3C.extract({"traceparent": value})
