"""Prometheus metrics, set up the same way in every service: one registry per service object,
served on the service's own port (``SUPTECH_METRICS_PORT``; 0 = off) at ``/metrics``.

A registry per service object (not the process-wide default) lets a test run two gateways in one
process without their counters colliding. Every name carries the ``suptech_`` prefix; each
service declares its own metrics in its ``metrics`` module with the constructors below, so that
the chart's dashboard can be checked against what the code registers (:func:`metric_names`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

__all__ = [
    "PREFIX",
    "LATENCY_BUCKETS_S",
    "new_registry",
    "counter",
    "gauge",
    "histogram",
    "metric_names",
    "MetricsEndpoint",
]

log = logging.getLogger(__name__)

PREFIX = "suptech_"
# From a millisecond (a batch on loopback) to a minute (a finding waiting out a DB outage).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def new_registry(process: bool = True) -> CollectorRegistry:
    """A registry for one service, with the process, platform and GC collectors when
    ``process`` (CPU, memory and file descriptors: what an SRE looks at first)."""
    registry = CollectorRegistry(auto_describe=True)
    if process:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def counter(
    registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()
) -> Counter:
    """A counter named ``suptech_<name>`` (exposed with ``_total``)."""
    return Counter(PREFIX + name, doc, labelnames=tuple(labels), registry=registry)


def gauge(registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return Gauge(PREFIX + name, doc, labelnames=tuple(labels), registry=registry)


def histogram(
    registry: CollectorRegistry,
    name: str,
    doc: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = LATENCY_BUCKETS_S,
) -> Histogram:
    return Histogram(
        PREFIX + name, doc, labelnames=tuple(labels), buckets=tuple(buckets), registry=registry
    )


def metric_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry exposes with the ``suptech_`` prefix (``_total``,
    ``_bucket``, ``_sum``, ``_count`` included), as a dashboard's queries name them."""
    names: set[str] = set()
    for family in registry.collect():
        if not family.name.startswith(PREFIX):
            continue
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


class MetricsEndpoint:
    """``/metrics`` of one registry over HTTP, on a daemon thread (started, then stopped)."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> None:
        self.registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one until started); 0 when off."""
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> None:
        """Serve, unless the port is 0 (metrics off). A port in use is logged as an error and
        the service runs on unscraped: on a developer's machine two gateways (a test's and
        ``make run``'s) share the default port, and metrics are not worth refusing ingest for."""
        if self._port == 0:
            return
        try:
            self._server, self._thread = start_http_server(
                self._port, addr=self._host, registry=self.registry
            )
        except OSError as e:
            log.error("metrics not served: cannot bind %s:%d: %s", self._host, self._port, e)
            return
        log.info("metrics on http://%s:%d/metrics", self._host, self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
