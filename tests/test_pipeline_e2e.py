"""The whole pipeline, every service in its own process, on the real broker.

An institution sends through the SDK; the gateway writes to Kafka (lz4, as in production); the
detector finds; the alert service turns findings into alerts a supervisor receives on
``StreamAlerts``. The alert must name the very event the institution sent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import grpc
import pytest
from suptech.sdk.client import TelemetryClient
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2, sandbox_pb2

from simulators.run_pipeline import Stack
from simulators.stream import publish_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
INST = "bank-e2e-01"
GATEWAY_TOKEN = "gw-token-for-bank-e2e-01-xxxxxxxx"
SUPERVISOR_TOKEN = "supervisor-token-e2e-xxxxxxxxxxxx"
VIEWER_OTHER_TOKEN = "viewer-token-other-jurisdiction-xx"


def _stack(tmp_path: Path, kafka: str, prefix: str) -> Stack:
    gw_tokens = tmp_path / "gateway_tokens.json"
    gw_tokens.write_text(json.dumps({GATEWAY_TOKEN: INST}))
    al_tokens = tmp_path / "alerts_tokens.json"
    al_tokens.write_text(
        json.dumps(
            {
                SUPERVISOR_TOKEN: {"name": "duty", "role": "supervisor", "jurisdictions": ["*"]},
                VIEWER_OTHER_TOKEN: {
                    "name": "partner",
                    "role": "viewer",
                    "jurisdictions": ["bank-elsewhere"],
                },
            }
        )
    )
    env = dict(
        os.environ,
        KAFKA_ADDR=kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        DETECTOR_SESSION_TIMEOUT_S="10",
    )
    return Stack(tmp_path, env, gw_tokens, al_tokens, app_id=f"det-{prefix.rstrip('.')}")


def _collect(port: int, token: str, want: int, timeout_s: float) -> list[alerts_pb2.AlertEvent]:
    """Read StreamAlerts from the beginning until ``want`` alerts were created or time runs out."""
    events: list[alerts_pb2.AlertEvent] = []
    deadline = time.monotonic() + timeout_s
    cursor = "0"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = alerts_pb2_grpc.AlertServiceStub(ch)
        while time.monotonic() < deadline:
            stream = stub.StreamAlerts(
                alerts_pb2.StreamAlertsRequest(cursor=cursor),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=max(1.0, min(5.0, deadline - time.monotonic())),
            )
            try:
                for ev in stream:
                    events.append(ev)
                    cursor = ev.cursor
                    created = [e for e in events if e.kind == alerts_pb2.ALERT_EVENT_KIND_CREATED]
                    if len(created) >= want:
                        return events
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
    return events


def send_c3_export(client: TelemetryClient, event_time: float) -> str:
    """Authentication data exported abroad by an employee: a critical rule finding at once."""
    return client.data_access(
        system_id="card-auth",
        actor_id="employee-4711",
        operation="export",
        channel="batch",
        destination_kind="cross_border",
        destination_id="partner-sg",
        destination_country="SG",
        records=500,
        fields={"c3": 2},
        bytes_out=4_000_000,
        event_time=event_time,
    )


def test_institution_event_becomes_a_supervisor_alert(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    now_ns = time.time_ns()
    test = sandbox_pb2.SandboxTest(
        test_id="sbx-e2e", institution_id=INST, app_id="app-e2e", name="QR pay", user_cap=1_000
    )
    test.start_time.FromNanoseconds(now_ns - 30 * 86_400 * 10**9)
    test.end_time.FromNanoseconds(now_ns + 30 * 86_400 * 10**9)
    publish_registry(kafka_bootstrap, topic_prefix, [test])

    stack = _stack(tmp_path, kafka_bootstrap, topic_prefix)
    try:
        stack.start()
        with TelemetryClient(
            f"127.0.0.1:{stack.gateway_port}",
            INST,
            token=GATEWAY_TOKEN,
            spool_dir=tmp_path / "spool",
            pseudonym_key=b"institution-secret",
        ) as client:
            c3_event = send_c3_export(client, now_ns / 1e9 - 60)
            cap_event = client.sandbox_metrics(
                test_id="sbx-e2e",
                app_id="app-e2e",
                active_users=900,
                cumulative_users=1_500,
                transaction_count=10,
                interval_seconds=3600,
                event_time=now_ns / 1e9 - 30,
            )
            assert client.flush(timeout=60), client.stats()
            assert client.stats().acknowledged == 2

        events = _collect(stack.alerts_port, SUPERVISOR_TOKEN, want=2, timeout_s=120)
        created = {
            e.alert.family: e.alert for e in events if e.kind == alerts_pb2.ALERT_EVENT_KIND_CREATED
        }
        assert set(created) >= {findings_pb2.FAMILY_DATA_LEAKAGE, findings_pb2.FAMILY_SANDBOX}, [
            (e.kind, e.alert.detector_id) for e in events
        ]
        assert all(a.institution_id == INST for a in created.values())

        # The supervisor sees why: the finding behind the alert names the event that was sent.
        with grpc.insecure_channel(f"127.0.0.1:{stack.alerts_port}") as ch:
            stub = alerts_pb2_grpc.AlertServiceStub(ch)
            auth = [("authorization", f"Bearer {SUPERVISOR_TOKEN}")]
            leak = stub.GetAlert(
                alerts_pb2.GetAlertRequest(
                    alert_id=created[findings_pb2.FAMILY_DATA_LEAKAGE].alert_id
                ),
                metadata=auth,
                timeout=10,
            ).alert
            evidence = {i for f in leak.findings for i in f.evidence_event_ids}
            assert c3_event in evidence
            # The raw employee id never left the institution.
            assert "employee-4711" not in leak.entity_id
            sandbox = stub.GetAlert(
                alerts_pb2.GetAlertRequest(alert_id=created[findings_pb2.FAMILY_SANDBOX].alert_id),
                metadata=auth,
                timeout=10,
            ).alert
            assert cap_event in {i for f in sandbox.findings for i in f.evidence_event_ids}

            # A partner regulator without jurisdiction over this institution sees none of it.
            listed = stub.ListAlerts(
                alerts_pb2.ListAlertsRequest(),
                metadata=[("authorization", f"Bearer {VIEWER_OTHER_TOKEN}")],
                timeout=10,
            )
            assert list(listed.alerts) == []
    finally:
        stack.stop()
