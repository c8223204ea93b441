"""Structured logs: JSON lines joined to traces, and a dead broker that does not flood the log."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from suptech.common.logging_setup import JsonFormatter, RepeatFilter

from tests.test_gateway import TOKEN_A, closed_port

REPO = Path(__file__).resolve().parents[1]


def record(name: str, msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)


def test_json_line_carries_the_current_span_and_the_exception() -> None:
    fmt = JsonFormatter("alerts")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("store") as span:
        line = fmt.format(record("suptech.alerts.store", "stored %d findings", 3, exc=True))
        ctx = span.get_span_context()
    doc = json.loads(line)
    assert doc["service"] == "alerts"
    assert doc["logger"] == "suptech.alerts.store"
    assert doc["level"] == "WARNING"
    assert doc["message"] == "stored 3 findings"
    assert doc["trace_id"] == format(ctx.trace_id, "032x")
    assert doc["span_id"] == format(ctx.span_id, "016x")
    assert "ValueError: boom" in doc["exception"]
    assert doc["timestamp"].endswith("+00:00")
    # Outside any span there is no trace to join: no ids rather than zeros.
    assert "trace_id" not in json.loads(fmt.format(record("x", "y")))


def test_kafka_client_lines_pass_once_per_interval_and_say_how_many_were_held() -> None:
    now = [0.0]
    filt = RepeatFilter(interval_s=10.0, clock=lambda: now[0])
    kafka = [
        record("kafka.net.manager", "Connection failed: %s", "ECONNREFUSED") for _ in range(50)
    ]
    kafka += [record("kafka.net.connection", "Connection lost") for _ in range(50)]
    assert sum(filt.filter(r) for r in kafka) == 1
    # Our own lines are never held back.
    assert all(filt.filter(record("suptech.detector", "dead letter")) for _ in range(20))
    now[0] = 10.5
    again = record("kafka.net.manager", "Bootstrap failed")
    assert filt.filter(again)
    assert again.getMessage() == "Bootstrap failed (99 more kafka lines in the last 10s)"


@pytest.mark.slow
def test_gateway_on_a_dead_broker_logs_a_few_clear_lines_not_a_flood(tmp_path: Path) -> None:
    """It used to print 123 kafka-python lines in 20 s and none of its own."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN_A: "bank-a"}))
    env = dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        KAFKA_ADDR=f"127.0.0.1:{closed_port()}",
        GATEWAY_PORT="0",
        GATEWAY_TOKENS_FILE=str(tokens),
        GATEWAY_PRODUCE_TIMEOUT_S="2",
        SUPTECH_METRICS_PORT="0",
        SUPTECH_LOG_FORMAT="json",
    )
    log_path = tmp_path / "gateway.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suptech.gateway"], env=env, stdout=out, stderr=out
        )
        try:
            time.sleep(12)  # about one retry interval of the throttle, after start-up
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    docs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    messages = [d["message"] for d in docs]
    kafka_lines = [d for d in docs if d["logger"].startswith("kafka")]
    assert any("Kafka does not answer" in m for m in messages), messages
    assert len(kafka_lines) <= 4, messages
    assert len(docs) <= 16, messages


@pytest.mark.slow
def test_alert_service_on_a_dead_broker_says_so_in_one_line_and_exits(tmp_path: Path) -> None:
    """It used to end in a 50-line traceback."""
    env = dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        KAFKA_ADDR=f"127.0.0.1:{closed_port()}",
        ALERTS_INSECURE_DEV="true",
        ALERTS_PORT="0",
        ALERTS_DB_URL=f"sqlite:///{tmp_path / 'alerts.db'}",
        SUPTECH_METRICS_PORT="0",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "suptech.alerts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in lines if "cannot start" in x]
    assert "Unable to bootstrap" in line and env["KAFKA_ADDR"] in line
    assert len(lines) <= 5, lines
