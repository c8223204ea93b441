"""ListEntityScores: the detector's per-event scores (scores.v1 on the real broker, encoded by the
detector's own code) served by the real alert service over real gRPC, under GetAlert's
jurisdiction rules, in a history bounded per entity and in entities."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from kafka import KafkaProducer
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.scores import EntityKey, ScoreHistory
from suptech.common.topics import SCORES, topic_name
from suptech.detector.logic.scores import Score, to_batches
from suptech.v1 import alerts_pb2, alerts_pb2_grpc

from tests.test_alerts_service import make_config

pytestmark = pytest.mark.integration

TOKENS = {
    "tok-16chars-admin": {"name": "chief", "role": "admin", "jurisdictions": ["*"]},
    "tok-16chars-viewer-a": {"name": "li.wei", "role": "viewer", "jurisdictions": ["bank-a"]},
    "tok-16chars-gateway": {"name": "bank-a", "institution_id": "bank-a"},
}
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
PER_ENTITY = 5


def md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer tok-16chars-{token}")]


def score(inst: str, entity: str, n: int) -> Score:
    t = int((T0 + timedelta(minutes=n)).timestamp() * 1e9)
    return Score(inst, "actor", entity, "leak.access", f"ev-{entity}-{n}", t, n / 10, 0.95,
                 100.0 + n, 100.0, n == 9)  # fmt: skip


def publish(bootstrap: str, prefix: str, scores: list[Score]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for batch in to_batches(scores):
        producer.send(
            topic_name(SCORES, prefix),
            key=batch.institution_id.encode(),
            value=batch.SerializeToString(),
        )
    producer.flush()
    producer.close()


@pytest.fixture
async def service(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[AlertApp]:
    # Published before the service starts: read back from the topic (within the lookback).
    publish(kafka_bootstrap, topic_prefix, [score("bank-a", "alice", n) for n in range(10)])
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    cfg = make_config(kafka_bootstrap, topic_prefix, f"sqlite:///{tmp_path / 'a.db'}", str(tokens))
    app = build_alert_service(
        dataclasses.replace(cfg, scores_per_entity=PER_ENTITY, scores_entities=2)
    )
    await app.start()
    yield app
    await app.stop()


async def list_scores(
    stub: alerts_pb2_grpc.AlertServiceStub,
    token: str,
    inst: str = "bank-a",
    entity: str = "alice",
    **kw: object,
) -> alerts_pb2.ListEntityScoresResponse:
    req = alerts_pb2.ListEntityScoresRequest(
        institution_id=inst,
        entity_kind="actor",
        entity_id=entity,
        **kw,  # type: ignore[arg-type]
    )
    resp: alerts_pb2.ListEntityScoresResponse = await stub.ListEntityScores(
        req,
        metadata=md(token),  # type: ignore[arg-type]
    )
    return resp


async def until_held(
    stub: alerts_pb2_grpc.AlertServiceStub, inst: str, entity: str, last_event: str
) -> None:
    """Poll (bounded) until the admin sees ``last_event`` as the entity's newest score."""
    for _ in range(300):
        resp = await list_scores(stub, "admin", inst, entity)
        if resp.scores and resp.scores[-1].event_id == last_event:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{inst}/{entity}: {last_event} never served")


async def test_scores_reach_list_entity_scores_in_jurisdiction_and_bounded(
    service: AlertApp, kafka_bootstrap: str, topic_prefix: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as ch:
        stub = alerts_pb2_grpc.AlertServiceStub(ch)
        await until_held(stub, "bank-a", "alice", "ev-alice-9")
        # The last PER_ENTITY of her ten, oldest first, each as the detector scored it.
        got = (await list_scores(stub, "admin")).scores
        assert [s.event_id for s in got] == [f"ev-alice-{n}" for n in range(5, 10)]
        last = got[-1]
        assert (last.score, last.threshold, last.observed, last.expected, last.alarm) == (
            0.9,
            0.95,
            109.0,
            100.0,
            True,
        )
        assert last.model_id == "leak.access" and last.entity_kind == "actor"
        assert last.event_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=9)

        # An event-time window and a limit: the newest of the window, and "truncated" said.
        frm, to = T0 + timedelta(minutes=6), T0 + timedelta(minutes=9)
        window = alerts_pb2.ListEntityScoresRequest().from_time
        window.FromDatetime(frm)
        end = alerts_pb2.ListEntityScoresRequest().to_time
        end.FromDatetime(to)
        part = await list_scores(stub, "admin", from_time=window, to_time=end, limit=2)
        assert [s.event_id for s in part.scores] == ["ev-alice-7", "ev-alice-8"]
        assert part.truncated

        # Her supervisor's viewer sees them; bank-b's entity answers as having no scores.
        assert len((await list_scores(stub, "viewer-a")).scores) == PER_ENTITY
        publish(kafka_bootstrap, topic_prefix, [score("bank-b", "bob", 1)])
        await until_held(stub, "bank-b", "bob", "ev-bob-1")
        assert not (await list_scores(stub, "viewer-a", "bank-b", "bob")).scores
        # An institution's credential is refused; a request without the entity is invalid.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await list_scores(stub, "gateway")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await list_scores(stub, "admin", entity="")
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # At most two entities: a third one scored drops the least recently scored (alice).
        publish(kafka_bootstrap, topic_prefix, [score("bank-a", "carol", 1)])
        await until_held(stub, "bank-a", "carol", "ev-carol-1")
        assert not (await list_scores(stub, "admin")).scores
        assert (await list_scores(stub, "admin", "bank-b", "bob")).scores
        assert len(service.scores) == 2 and service.scores.evicted == 1


def test_a_batch_that_is_not_one_is_skipped_and_an_entity_rescored_stays() -> None:
    history = ScoreHistory(per_entity=3, entities=2)
    assert history.add_batch(b"\xff\xfe not a batch") == 0 and history.skipped == 1
    for entity in ("a", "b"):
        history.add_batch(to_batches([score("bank-a", entity, 1)])[0].SerializeToString())
    # "a" scored again is the most recent: "c" evicts "b", not "a".
    history.add_batch(to_batches([score("bank-a", "a", 2)])[0].SerializeToString())
    history.add_batch(to_batches([score("bank-a", "c", 1)])[0].SerializeToString())
    held = {e for e in "abc" if history.query(EntityKey("bank-a", "actor", e), None, None, 10)[0]}
    assert held == {"a", "c"}
