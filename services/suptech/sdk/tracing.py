"""Optional OpenTelemetry: one span per batch, its ``traceparent`` sent inside the batch.

Only ``opentelemetry-api`` is used (``pip install suptech-sdk[tracing]``); the application owns
the tracer provider and exporter. Without the package, or without a provider configured, there is
no span and no traceparent, at no cost. The gateway continues the batch's trace, the detector
continues the gateway's from the Kafka record, and the alert service the detector's from the
finding: one trace from the institution's batch to the supervisor's alert.
"""

from __future__ import annotations

from typing import Any

__all__ = ["start_batch_span", "end_batch_span"]

try:
    from opentelemetry import trace
    from opentelemetry.propagate import inject
except ImportError:  # the tracing extra is not installed
    trace = None  # type: ignore[assignment]


def start_batch_span(batch_id: str, events: int) -> tuple[Any, str]:
    """A started span for one batch and its traceparent; ``(None, "")`` when not tracing."""
    if trace is None:
        return None, ""
    span = trace.get_tracer("suptech.sdk").start_span(
        "suptech.sdk.batch",
        kind=trace.SpanKind.PRODUCER,
        attributes={"suptech.batch_id": batch_id, "suptech.events": events},
    )
    if not span.get_span_context().is_valid:
        return None, ""
    carrier: dict[str, str] = {}
    inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier.get("traceparent", "")


def end_batch_span(span: Any, accepted: int = 0, rejected: int = 0, error: str = "") -> None:
    if span is None:
        return
    span.set_attribute("suptech.events_accepted", accepted)
    span.set_attribute("suptech.events_rejected", rejected)
    if error:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error))
    span.end()
