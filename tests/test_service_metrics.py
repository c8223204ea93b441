"""The metrics objects and their HTTP endpoint, without the services around them."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from suptech.common.metrics import MetricsEndpoint, counter, metric_names
from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.metrics import DetectorMetrics, entity_stats
from suptech.v1 import findings_pb2


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_detector_counts_findings_by_family_and_reports_state_and_watermark_lag() -> None:
    m = DetectorMetrics(CollectorRegistry())
    for family in (findings_pb2.FAMILY_IT_AUTONOMY, findings_pb2.FAMILY_IT_AUTONOMY):
        m.published(findings_pb2.Finding(family=family))
    m.published(findings_pb2.Finding(family=findings_pb2.FAMILY_SANDBOX))
    r = m.registry
    assert sample(r, "suptech_detector_findings_total", family="it_autonomy") == 2
    assert sample(r, "suptech_detector_findings_total", family="sandbox") == 1
    assert sample(r, "suptech_detector_findings_total", family="data_leakage") == 0

    stats = DetectionEngine(EngineConfig()).stats()
    m.refresh(stats, time.time_ns() - 90 * 10**9)
    held = entity_stats(stats)
    assert {"actors", "open_conditions", "event_ids_remembered"} <= set(held)
    # Running totals are counters of work done, not state: they are not entities.
    assert not {"events_processed", "findings_emitted", "duplicates_skipped"} & set(held)
    assert sample(r, "suptech_detector_state_entities", kind="actors") == 0
    lag = sample(r, "suptech_detector_watermark_lag_seconds")
    assert lag is not None and 90 <= lag < 3600

    m.lag("t.telemetry.data_access.v1", 3, 17)
    m.lag("t.telemetry.data_access.v1", 4, -2)  # a stale end offset: never negative
    labels = {"topic": "t.telemetry.data_access.v1"}
    assert sample(r, "suptech_detector_consumer_lag", partition="3", **labels) == 17
    assert sample(r, "suptech_detector_consumer_lag", partition="4", **labels) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_endpoint_serves_its_registry_and_port_zero_serves_nothing() -> None:
    registry = CollectorRegistry()
    counter(registry, "test_things", "things").inc(3)
    assert metric_names(registry) == {"suptech_test_things", "suptech_test_things_total"}
    off = MetricsEndpoint(registry, 0, host="127.0.0.1")
    off.start()
    assert off.port == 0
    on = MetricsEndpoint(registry, free_port(), host="127.0.0.1")
    on.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{on.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        on.stop()
    assert "suptech_test_things_total 3.0" in text


def test_a_port_in_use_is_logged_and_the_service_runs_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = MetricsEndpoint(CollectorRegistry(), port, host="127.0.0.1")
        with caplog.at_level(logging.ERROR, logger="suptech.common.metrics"):
            endpoint.start()
    assert f"cannot bind 127.0.0.1:{port}" in caplog.text
