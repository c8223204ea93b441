"""ListSandboxTests: the register of sandbox tests (registry.sandbox.v1 on the real broker) served
by the real alert service over real gRPC, under ListAlerts' jurisdiction rules, following the
topic's updates and tombstones while it runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from kafka import KafkaProducer
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.sandbox_register import SandboxTests
from suptech.alerts.store import ALL, Scope
from suptech.common.topics import REGISTRY_SANDBOX, topic_name
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, sandbox_pb2

from simulators.stream import publish_registry
from tests.test_alerts_service import make_config

pytestmark = pytest.mark.integration

TOKENS = {
    "tok-16chars-admin": {"name": "chief", "role": "admin", "jurisdictions": ["*"]},
    "tok-16chars-viewer-a": {"name": "li.wei", "role": "viewer", "jurisdictions": ["bank-a"]},
    "tok-16chars-gateway": {"name": "bank-a", "institution_id": "bank-a"},
}


def md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer tok-16chars-{token}")]


def sandbox_test(test_id: str, institution: str, user_cap: int = 1000) -> sandbox_pb2.SandboxTest:
    t = sandbox_pb2.SandboxTest(
        test_id=test_id,
        institution_id=institution,
        app_id=f"app-{test_id}",
        name=f"试点 {test_id}",
        user_cap=user_cap,
        single_amount_cap_fen=500_000,
        daily_amount_cap_fen=20_000_000,
        approved_features=["payments", "credit_scoring"],
    )
    t.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    t.end_time.FromDatetime(datetime(2026, 12, 31, tzinfo=UTC))
    return t


def send_raw(bootstrap: str, prefix: str, records: list[tuple[bytes, bytes | None]]) -> None:
    """Records as an operator's tool could write them: a tombstone, a value that is not a test."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in records:
        producer.send(topic_name(REGISTRY_SANDBOX, prefix), key=key, value=value)
    producer.flush()
    producer.close()


@pytest.fixture
async def service(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[AlertApp]:
    # Registered before the service starts: what it must read from the topic's beginning.
    publish_registry(
        kafka_bootstrap,
        topic_prefix,
        [
            sandbox_test("t-a1", "bank-a"),
            sandbox_test("t-a2", "bank-a"),
            sandbox_test("t-b1", "bank-b"),
        ],
    )
    send_raw(kafka_bootstrap, topic_prefix, [(b"t-junk", b"\xff\xfe not a test")])
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    app = build_alert_service(
        make_config(kafka_bootstrap, topic_prefix, f"sqlite:///{tmp_path / 'a.db'}", str(tokens))
    )
    await app.start()
    yield app
    await app.stop()


async def list_tests(
    stub: alerts_pb2_grpc.AlertServiceStub, token: str, institution: str = ""
) -> alerts_pb2.ListSandboxTestsResponse:
    req = alerts_pb2.ListSandboxTestsRequest(institution_id=institution)
    resp: alerts_pb2.ListSandboxTestsResponse = await stub.ListSandboxTests(
        req,
        metadata=md(token),  # type: ignore[arg-type]
    )
    return resp


async def until(stub: alerts_pb2_grpc.AlertServiceStub, want: set[tuple[str, int]]) -> None:
    """Poll (bounded) until the admin sees exactly ``want`` as (test_id, user_cap)."""
    seen: set[tuple[str, int]] = set()
    for _ in range(200):
        resp = await list_tests(stub, "admin")
        seen = {(t.test_id, t.user_cap) for t in resp.tests}
        if resp.complete and seen == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"register shows {seen}, expected {want}")


async def test_register_served_in_jurisdiction_and_follows_updates_and_tombstones(
    service: AlertApp, kafka_bootstrap: str, topic_prefix: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as ch:
        stub = alerts_pb2_grpc.AlertServiceStub(ch)
        await until(stub, {("t-a1", 1000), ("t-a2", 1000), ("t-b1", 1000)})
        # The undecodable record was skipped, not served and not fatal.
        assert service.register is not None and service.register.tests.skipped == 1

        # Every approved boundary arrives as registered.
        everything = await list_tests(stub, "admin")
        assert [(t.institution_id, t.test_id) for t in everything.tests] == [
            ("bank-a", "t-a1"),
            ("bank-a", "t-a2"),
            ("bank-b", "t-b1"),
        ]
        assert everything.tests[0] == sandbox_test("t-a1", "bank-a")

        # A viewer of bank-a sees bank-a's tests only, even when she asks for bank-b's.
        mine = await list_tests(stub, "viewer-a")
        assert [t.test_id for t in mine.tests] == ["t-a1", "t-a2"]
        assert not (await list_tests(stub, "viewer-a", institution="bank-b")).tests
        assert [t.test_id for t in (await list_tests(stub, "admin", "bank-b")).tests] == ["t-b1"]

        # An institution's credential is refused: the register is the regulator's.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await list_tests(stub, "gateway")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # While it runs: a new cap replaces the old value, a tombstone ends a test.
        publish_registry(kafka_bootstrap, topic_prefix, [sandbox_test("t-a1", "bank-a", 5000)])
        send_raw(kafka_bootstrap, topic_prefix, [(b"t-a2", None)])
        await until(stub, {("t-a1", 5000), ("t-b1", 1000)})
        assert [t.test_id for t in (await list_tests(stub, "viewer-a")).tests] == ["t-a1"]


def test_the_key_names_the_test_and_a_record_without_institution_is_skipped() -> None:
    tests = SandboxTests()
    renamed = sandbox_test("old-id", "bank-a")
    tests.apply(b"t-1", renamed.SerializeToString())
    tests.apply(b"t-2", sandbox_pb2.SandboxTest(test_id="t-2").SerializeToString())
    assert [t.test_id for t in tests.visible(ALL)] == ["t-1"]
    assert tests.skipped == 1
    assert tests.visible(Scope(frozenset({"bank-b"}))) == []
    # A tombstone of an unknown test is harmless; one of a known test removes it.
    tests.apply(b"t-9", None)
    tests.apply(b"t-1", None)
    assert len(tests) == 0
