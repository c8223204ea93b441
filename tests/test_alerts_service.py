"""The alert service end to end: real Kafka, real SQLite/PostgreSQL, real gRPC on port 0."""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import json
import queue
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from kafka import KafkaConsumer, KafkaProducer
from suptech.alerts import audit, webhooks
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.config import AlertsConfig
from suptech.alerts.consumer import FindingsConsumer
from suptech.alerts.store import AlertStore
from suptech.common.topics import DEAD_LETTER, FEEDBACK, FINDINGS, topic_name
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKENS = {
    "tok-16chars-admin": {"name": "chief", "role": "admin", "jurisdictions": ["*"]},
    "tok-16chars-analyst": {"name": "li.wei", "role": "analyst", "jurisdictions": ["bank-a"]},
    "tok-16chars-viewer": {"name": "viewer", "role": "viewer", "jurisdictions": ["*"]},
}


def finding(
    n: int,
    *,
    institution: str = "bank-a",
    entity: str = "actor-1",
    grade: int = 1,
    minutes: int = 0,
) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"{institution}-{entity}-{n}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id=institution,
        entity_kind="actor",
        entity_id=entity,
        rule_id="bulk_export",
        score=0.97,
        threshold=0.9,
        grade=grade,  # type: ignore[arg-type]
        summary=f"bulk export #{n}",
        contributions=[findings_pb2.Contribution(feature="records", observed=9e4, baseline=300)],
        evidence_event_ids=[f"ev-{n}"],
    )
    f.event_time.FromDatetime(T0 + timedelta(minutes=minutes or n))
    return f


def produce(bootstrap: str, prefix: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for v in values:
        producer.send(topic_name(FINDINGS, prefix), key=b"k", value=v)
    producer.flush()
    producer.close()


def auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


ADMIN = auth("tok-16chars-admin")


@pytest.fixture
def tokens_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS))
    return str(path)


def make_config(
    kafka_bootstrap: str, topic_prefix: str, db_url: str, tokens_file: str
) -> AlertsConfig:
    return AlertsConfig(
        port=0,
        host="127.0.0.1",
        db_url=db_url,
        kafka_addr=kafka_bootstrap,
        topic_prefix=topic_prefix,
        consumer_group=f"alerts-{uuid.uuid4().hex[:8]}",
        tokens_file=tokens_file,
        tick_s=3600,
        outbox_poll_s=0.1,
    )


@pytest.fixture
async def app(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, tokens_file: str
) -> AsyncIterator[AlertApp]:
    cfg = make_config(kafka_bootstrap, topic_prefix, f"sqlite:///{tmp_path / 'a.db'}", tokens_file)
    service = build_alert_service(cfg)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def stub(app: AlertApp) -> AsyncIterator[alerts_pb2_grpc.AlertServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield alerts_pb2_grpc.AlertServiceStub(channel)


async def wait_for_alerts(
    stub: alerts_pb2_grpc.AlertServiceStub, count: int, findings: int, **filters: object
) -> list[alerts_pb2.Alert]:
    """Poll ListAlerts until ``count`` alerts hold ``findings`` findings in all (bounded)."""
    alerts: list[alerts_pb2.Alert] = []
    for _ in range(300):
        resp = await stub.ListAlerts(
            alerts_pb2.ListAlertsRequest(page_size=500, **filters),
            metadata=ADMIN,  # type: ignore[arg-type]
        )
        alerts = list(resp.alerts)
        if len(alerts) >= count and sum(a.finding_count for a in alerts) >= findings:
            return alerts
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} alerts / {findings} findings, have {alerts}")


async def test_findings_become_grouped_alerts(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    batch = [finding(n) for n in range(1, 13)]  # one group, 12 findings: grows a grade
    batch.append(finding(1, entity="actor-2", grade=3))
    batch.append(finding(1, institution="bank-b"))
    batch.append(batch[0])  # an exact repeat
    produce(kafka_bootstrap, topic_prefix, [f.SerializeToString() for f in batch])

    alerts = await wait_for_alerts(stub, 3, 14)
    assert len(alerts) == 3 and sum(a.finding_count for a in alerts) == 14
    grown = next(a for a in alerts if a.entity_id == "actor-1" and a.institution_id == "bank-a")
    assert grown.finding_count == 12
    assert grown.grade == findings_pb2.GRADE_SIGNIFICANT  # general, raised once at 10 findings
    assert grown.state == alerts_pb2.ALERT_STATE_OPEN
    assert grown.summary == "bulk export #12"
    major = next(a for a in alerts if a.entity_id == "actor-2")
    assert major.grade == findings_pb2.GRADE_MAJOR

    got = (
        await stub.GetAlert(alerts_pb2.GetAlertRequest(alert_id=grown.alert_id), metadata=ADMIN)
    ).alert
    assert [f.finding_id for f in got.findings] == [f"bank-a-actor-1-{n}" for n in range(1, 13)]
    assert got.findings[0].contributions[0].feature == "records"
    assert list(got.findings[0].evidence_event_ids) == ["ev-1"]

    only_major = await stub.ListAlerts(
        alerts_pb2.ListAlertsRequest(min_grade=findings_pb2.GRADE_MAJOR), metadata=ADMIN
    )
    assert [a.alert_id for a in only_major.alerts] == [major.alert_id]
    # A principal scoped to bank-a never sees bank-b.
    scoped = await stub.ListAlerts(
        alerts_pb2.ListAlertsRequest(), metadata=auth("tok-16chars-analyst")
    )
    assert {a.institution_id for a in scoped.alerts} == {"bank-a"}
    other = next(a for a in alerts if a.institution_id == "bank-b")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetAlert(
            alerts_pb2.GetAlertRequest(alert_id=other.alert_id),
            metadata=auth("tok-16chars-analyst"),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_replay_from_the_beginning_creates_nothing_new(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    batch = [finding(n) for n in range(1, 6)] + [finding(1, entity="actor-9")]
    produce(kafka_bootstrap, topic_prefix, [f.SerializeToString() for f in batch])
    before = await wait_for_alerts(stub, 2, 6)
    assert app.store is not None
    head = app.store.head_cursor()

    # A brand-new consumer group reads the whole topic again into the same store.
    replay = FindingsConsumer(
        app.store,
        bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        group_id="replay-" + uuid.uuid4().hex,
    )
    try:
        seen = 0
        for _ in range(100):
            seen += replay.poll_once(timeout_ms=200)
            if seen >= len(batch):
                break
    finally:
        replay.close()
    assert seen == len(batch)
    assert replay.stats.stored == 0 and replay.stats.duplicates == len(batch)
    after = (await stub.ListAlerts(alerts_pb2.ListAlertsRequest(), metadata=ADMIN)).alerts
    assert sorted((a.alert_id, a.finding_count, a.version) for a in after) == sorted(
        (a.alert_id, a.finding_count, a.version) for a in before
    )
    assert app.store.head_cursor() == head  # no new change events either


async def test_undecodable_records_go_to_dead_letter_and_do_not_block(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    no_id = finding(2)
    no_id.finding_id = ""
    values = [b"\xff\xfe not a protobuf", no_id.SerializeToString(), finding(3).SerializeToString()]
    produce(kafka_bootstrap, topic_prefix, values)
    await wait_for_alerts(stub, 1, 1)

    dlq = KafkaConsumer(
        topic_name(DEAD_LETTER, topic_prefix),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    records = []
    for rec in dlq:
        records.append(rec)
        if len(records) == 2:
            break
    dlq.close()
    reasons = sorted(dict(r.headers)["reason"].decode() for r in records)
    assert reasons[0].startswith("invalid finding: finding_id is empty")
    assert reasons[1].startswith("not a Finding protobuf")
    assert any(r.value == values[0] for r in records)


async def test_stream_resumes_after_disconnects_without_gap_or_duplicate(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # 30 alerts (distinct entities), produced while the subscriber keeps disconnecting.
    batch = [finding(1, entity=f"actor-{i}") for i in range(30)]
    received: list[alerts_pb2.AlertEvent] = []
    cursor = "0"
    produce(kafka_bootstrap, topic_prefix, [f.SerializeToString() for f in batch[:10]])
    produced = 10
    for _round in range(200):
        call = stub.StreamAlerts(alerts_pb2.StreamAlertsRequest(cursor=cursor), metadata=ADMIN)
        # Read a few events, then cut the stream mid-way.
        for _ in range(4):
            try:
                event = await asyncio.wait_for(call.read(), timeout=0.5)
            except TimeoutError:
                break
            received.append(event)
            cursor = event.cursor
        call.cancel()
        if produced < len(batch):
            produce(
                kafka_bootstrap,
                topic_prefix,
                [f.SerializeToString() for f in batch[produced : produced + 10]],
            )
            produced += 10
        if len({e.alert.entity_id for e in received}) == 30:
            break
    ids = [int(e.cursor) for e in received]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "duplicate or out-of-order events"
    assert ids == list(range(1, len(ids) + 1)), "gap in the event sequence"
    assert {e.alert.entity_id for e in received} == {f"actor-{i}" for i in range(30)}
    assert all(e.kind == alerts_pb2.ALERT_EVENT_KIND_CREATED for e in received)


async def test_a_stream_from_the_lists_cursor_continues_the_list_without_replaying_it(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    first = [finding(1, entity=f"listed-{i}") for i in range(5)]
    produce(kafka_bootstrap, topic_prefix, [f.SerializeToString() for f in first])
    await wait_for_alerts(stub, 5, 5)
    listed = await stub.ListAlerts(alerts_pb2.ListAlertsRequest(page_size=2), metadata=ADMIN)
    # Every page of the listing starts from the change-log head as it was before the rows.
    assert int(listed.stream_cursor) == app.store.head_cursor() == 5
    later = [finding(1, entity=f"later-{i}") for i in range(3)]
    produce(kafka_bootstrap, topic_prefix, [f.SerializeToString() for f in later])
    call = stub.StreamAlerts(
        alerts_pb2.StreamAlertsRequest(cursor=listed.stream_cursor), metadata=ADMIN
    )
    got = [await asyncio.wait_for(call.read(), 30) for _ in range(3)]
    call.cancel()
    assert [e.alert.entity_id for e in got] == [f"later-{i}" for i in range(3)]
    assert [int(e.cursor) for e in got] == [6, 7, 8]


async def test_concurrent_acknowledge_exactly_one_wins(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    produce(kafka_bootstrap, topic_prefix, [finding(1).SerializeToString()])
    (alert,) = await wait_for_alerts(stub, 1, 1)

    async def ack(note: str) -> grpc.StatusCode:
        try:
            await stub.Acknowledge(
                alerts_pb2.AcknowledgeRequest(
                    alert_id=alert.alert_id, expected_version=alert.version, note=note
                ),
                metadata=auth("tok-16chars-analyst"),
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(ack(f"client {i}") for i in range(4)))
    assert sorted(c.name for c in codes) == ["ABORTED", "ABORTED", "ABORTED", "OK"]
    got = (
        await stub.GetAlert(alerts_pb2.GetAlertRequest(alert_id=alert.alert_id), metadata=ADMIN)
    ).alert
    assert got.state == alerts_pb2.ALERT_STATE_ACKNOWLEDGED and got.version == alert.version + 1


async def test_triage_resolve_publishes_feedback_and_refuses_bad_transitions(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    produce(kafka_bootstrap, topic_prefix, [finding(n).SerializeToString() for n in (1, 2)])
    (alert,) = await wait_for_alerts(stub, 1, 2)
    a = (
        await stub.Assign(
            alerts_pb2.AssignRequest(alert_id=alert.alert_id, assignee="zhang"), metadata=ADMIN
        )
    ).alert
    assert a.assignee == "zhang"
    with pytest.raises(grpc.aio.AioRpcError) as err:  # an analyst may not decide
        await stub.Resolve(
            alerts_pb2.ResolveRequest(alert_id=a.alert_id, verdict=alerts_pb2.VERDICT_BENIGN),
            metadata=auth("tok-16chars-analyst"),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    r = (
        await stub.Resolve(
            alerts_pb2.ResolveRequest(
                alert_id=a.alert_id,
                expected_version=a.version,
                verdict=alerts_pb2.VERDICT_TRUE_POSITIVE,
                note="confirmed with the bank",
            ),
            metadata=ADMIN,
        )
    ).alert
    assert (
        r.state == alerts_pb2.ALERT_STATE_RESOLVED and r.verdict == alerts_pb2.VERDICT_TRUE_POSITIVE
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Acknowledge(alerts_pb2.AcknowledgeRequest(alert_id=a.alert_id), metadata=ADMIN)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    fb = KafkaConsumer(
        topic_name(FEEDBACK, topic_prefix),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
    )
    feedback = [alerts_pb2.Feedback.FromString(rec.value) for rec in fb if rec][:1]
    fb.close()
    assert feedback and feedback[0].alert_id == a.alert_id
    assert feedback[0].verdict == alerts_pb2.VERDICT_TRUE_POSITIVE
    assert list(feedback[0].finding_ids) == ["bank-a-actor-1-1", "bank-a-actor-1-2"]
    assert feedback[0].actor == "chief"

    # Every human action is in the audit chain, which verifies.
    assert app.sessions is not None
    with app.sessions() as s:
        assert audit.verify(s).ok


async def test_bad_requests_get_clear_status_codes(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    produce(kafka_bootstrap, topic_prefix, [finding(1).SerializeToString()])
    (alert,) = await wait_for_alerts(stub, 1, 1)

    async def code(coro: object) -> grpc.StatusCode:
        try:
            await coro  # type: ignore[misc]
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    A = alerts_pb2
    cases = {
        "unknown alert": stub.GetAlert(A.GetAlertRequest(alert_id="nope"), metadata=ADMIN),
        "empty id": stub.GetAlert(A.GetAlertRequest(alert_id=""), metadata=ADMIN),
        "page too big": stub.ListAlerts(A.ListAlertsRequest(page_size=501), metadata=ADMIN),
        "bad family": stub.ListAlerts(A.ListAlertsRequest(family=42), metadata=ADMIN),  # type: ignore[arg-type]
        "bad token": stub.ListAlerts(A.ListAlertsRequest(page_token="garbage!"), metadata=ADMIN),
        "note too long": stub.Acknowledge(
            A.AcknowledgeRequest(alert_id=alert.alert_id, note="x" * 4001), metadata=ADMIN
        ),
        "no verdict": stub.Resolve(A.ResolveRequest(alert_id=alert.alert_id), metadata=ADMIN),
        "stale version": stub.Acknowledge(
            A.AcknowledgeRequest(alert_id=alert.alert_id, expected_version=alert.version + 7),
            metadata=ADMIN,
        ),
        "no token": stub.ListAlerts(A.ListAlertsRequest()),
        "wrong token": stub.ListAlerts(A.ListAlertsRequest(), metadata=auth("forged")),
        "viewer acks": stub.Acknowledge(
            A.AcknowledgeRequest(alert_id=alert.alert_id), metadata=auth("tok-16chars-viewer")
        ),
        "unknown silence": stub.ExpireSilence(
            A.ExpireSilenceRequest(silence_id="nope"), metadata=ADMIN
        ),
        "silence bad matcher": stub.CreateSilence(
            A.CreateSilenceRequest(
                matchers=[A.Matcher(name="colour", value="red")], ends_at=_ts(1)
            ),
            metadata=ADMIN,
        ),
    }
    got = {name: (await code(c)).name for name, c in cases.items()}
    bad_cursor = stub.StreamAlerts(A.StreamAlertsRequest(cursor="abc"), metadata=ADMIN)
    got["bad cursor"] = (await code(bad_cursor.read())).name
    assert got == {
        "unknown alert": "NOT_FOUND",
        "empty id": "INVALID_ARGUMENT",
        "page too big": "INVALID_ARGUMENT",
        "bad family": "INVALID_ARGUMENT",
        "bad token": "INVALID_ARGUMENT",
        "note too long": "INVALID_ARGUMENT",
        "no verdict": "INVALID_ARGUMENT",
        "stale version": "ABORTED",
        "no token": "UNAUTHENTICATED",
        "wrong token": "UNAUTHENTICATED",
        "viewer acks": "PERMISSION_DENIED",
        "unknown silence": "NOT_FOUND",
        "silence bad matcher": "INVALID_ARGUMENT",
        "bad cursor": "INVALID_ARGUMENT",
    }
    # Nothing above changed the alert.
    same = (await stub.GetAlert(A.GetAlertRequest(alert_id=alert.alert_id), metadata=ADMIN)).alert
    assert same.version == alert.version and same.state == A.ALERT_STATE_OPEN


def _ts(hours: int) -> object:
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromDatetime(datetime.now(UTC) + timedelta(hours=hours))
    return t


async def test_silence_keeps_the_record_and_marks_it(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    sil = (
        await stub.CreateSilence(
            alerts_pb2.CreateSilenceRequest(
                matchers=[alerts_pb2.Matcher(name="institution_id", value="bank-b")],
                ends_at=_ts(2),
                comment="planned migration",
            ),
            metadata=ADMIN,
        )
    ).silence
    produce(
        kafka_bootstrap,
        topic_prefix,
        [finding(1, institution="bank-b").SerializeToString(), finding(1).SerializeToString()],
    )
    alerts = await wait_for_alerts(stub, 2, 2)
    assert {a.institution_id: a.silenced for a in alerts} == {"bank-b": True, "bank-a": False}
    await stub.ExpireSilence(
        alerts_pb2.ExpireSilenceRequest(silence_id=sil.silence_id), metadata=ADMIN
    )
    alerts = (await stub.ListAlerts(alerts_pb2.ListAlertsRequest(), metadata=ADMIN)).alerts
    assert not any(a.silenced for a in alerts)


@pytest.mark.postgres
async def test_end_to_end_on_postgres(
    kafka_bootstrap: str, topic_prefix: str, postgres_url: str, tokens_file: str
) -> None:
    cfg = make_config(kafka_bootstrap, topic_prefix, postgres_url, tokens_file)
    service = build_alert_service(cfg)
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = alerts_pb2_grpc.AlertServiceStub(channel)
            produce(
                kafka_bootstrap, topic_prefix, [finding(n).SerializeToString() for n in (1, 2, 3)]
            )
            (alert,) = await wait_for_alerts(stub, 1, 3)
            call = stub.StreamAlerts(alerts_pb2.StreamAlertsRequest(cursor="0"), metadata=ADMIN)
            first = await call.read()
            call.cancel()
            assert first.alert.alert_id == alert.alert_id
            r = await asyncio.gather(
                *(
                    stub.Acknowledge(
                        alerts_pb2.AcknowledgeRequest(
                            alert_id=alert.alert_id, expected_version=alert.version
                        ),
                        metadata=ADMIN,
                    )
                    for _ in range(3)
                ),
                return_exceptions=True,
            )
            assert sum(isinstance(x, alerts_pb2.AlertResponse) for x in r) == 1
            assert all(
                x.code() == grpc.StatusCode.ABORTED
                for x in r
                if isinstance(x, grpc.aio.AioRpcError)
            )
    finally:
        await service.stop()
    assert isinstance(service.store, AlertStore)


async def test_new_alert_sends_a_signed_webhook_and_silenced_ones_do_not(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, tokens_file: str
) -> None:

    received: queue.Queue[tuple[str | None, bytes]] = queue.Queue()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((self.headers.get(webhooks.SIGNATURE_HEADER), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cfg = dataclasses.replace(
        make_config(kafka_bootstrap, topic_prefix, f"sqlite:///{tmp_path / 'w.db'}", tokens_file),
        webhook_urls=(f"http://127.0.0.1:{httpd.server_port}/hook",),
        webhook_secret="hook-secret",
    )
    service = build_alert_service(cfg)
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = alerts_pb2_grpc.AlertServiceStub(channel)
            await stub.CreateSilence(
                alerts_pb2.CreateSilenceRequest(
                    matchers=[alerts_pb2.Matcher(name="institution_id", value="bank-quiet")],
                    ends_at=_ts(1),  # type: ignore[arg-type]
                ),
                metadata=ADMIN,
            )
            produce(
                kafka_bootstrap,
                topic_prefix,
                [finding(1, institution="bank-quiet").SerializeToString()],
            )
            await wait_for_alerts(stub, 1, 1)
            produce(kafka_bootstrap, topic_prefix, [finding(1).SerializeToString()])
            await wait_for_alerts(stub, 2, 2)
            signature, body = await asyncio.to_thread(received.get, True, 20)
    finally:
        await service.stop()
        httpd.shutdown()
    webhooks.verify_signature(b"hook-secret", signature, body)
    doc = json.loads(body)
    assert doc["event"] == "ALERT_EVENT_KIND_CREATED"
    assert doc["alert"]["institutionId"] == "bank-a"
    assert received.empty(), "the silenced alert must not notify"


async def test_feed_client_prints_one_line_per_alert(
    app: AlertApp, stub: alerts_pb2_grpc.AlertServiceStub, kafka_bootstrap: str, topic_prefix: str
) -> None:
    import io

    from suptech.alerts import feed

    produce(kafka_bootstrap, topic_prefix, [finding(1, grade=4).SerializeToString()])
    await wait_for_alerts(stub, 1, 1)
    out = io.StringIO()
    cursor = await asyncio.to_thread(
        feed.follow, f"127.0.0.1:{app.port}", "tok-16chars-viewer", "0", out, 1
    )
    line = out.getvalue().strip()
    assert cursor == "1"
    assert "CRITICAL" in line and "data_leakage" in line and "bank-a actor:actor-1" in line
    assert line.endswith("bulk export #1")


async def test_housekeeping_tick_escalates_and_auto_resolves(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, tokens_file: str
) -> None:
    now = [datetime.now(UTC)]
    cfg = make_config(kafka_bootstrap, topic_prefix, f"sqlite:///{tmp_path / 't.db'}", tokens_file)
    service = build_alert_service(cfg, clock=lambda: now[0])
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = alerts_pb2_grpc.AlertServiceStub(channel)
            f = finding(1, grade=findings_pb2.GRADE_CRITICAL)
            f.event_time.FromDatetime(now[0])
            produce(kafka_bootstrap, topic_prefix, [f.SerializeToString()])
            (alert,) = await wait_for_alerts(stub, 1, 1)
            now[0] += timedelta(seconds=cfg.deadline_critical_s + 1)
            await asyncio.to_thread(service.tick)
            got = (
                await stub.GetAlert(
                    alerts_pb2.GetAlertRequest(alert_id=alert.alert_id), metadata=ADMIN
                )
            ).alert
            assert got.escalation_level == 1 and got.state == alerts_pb2.ALERT_STATE_OPEN
            now[0] += timedelta(seconds=cfg.auto_resolve_s)
            await asyncio.to_thread(service.tick)
            got = (
                await stub.GetAlert(
                    alerts_pb2.GetAlertRequest(alert_id=alert.alert_id), metadata=ADMIN
                )
            ).alert
            assert got.state == alerts_pb2.ALERT_STATE_RESOLVED and got.auto_resolved
    finally:
        await service.stop()
