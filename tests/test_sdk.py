"""Unit tests of the SDK's plain functions: wire encoding, spool, pseudonyms, backoff, CLI parsing,
and its dependency boundary."""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from suptech.sdk.cli import LineError, parse_lines
from suptech.sdk.client import backoff_delay
from suptech.sdk.pseudonym import is_pseudonym, pseudonymise
from suptech.sdk.spool import Spool, SpoolLockedError, read_frames
from suptech.sdk.wire import encode_batch, encode_envelope, frame_batch_event, institution_field
from suptech.v1 import ingest_pb2, telemetry_pb2

REPO = Path(__file__).resolve().parents[1]


def test_pseudonym_is_keyed_hmac_sha256_hex() -> None:
    expected = hmac.new(b"secret", "张三-13800000000".encode(), hashlib.sha256).hexdigest()
    assert pseudonymise(b"secret", "张三-13800000000") == expected
    assert is_pseudonym(expected)
    assert pseudonymise(b"other", "张三-13800000000") != expected
    assert not is_pseudonym("alice")
    with pytest.raises(ValueError):
        pseudonymise(b"", "alice")


@pytest.mark.parametrize("unix_ns", [0, 1, 1_700_000_000_000_000_000, 1_700_000_000_123_456_789])
def test_hand_encoded_envelope_parses_as_the_contract(unix_ns: int) -> None:
    payload = telemetry_pb2.DataAccessEvent(system_id="core", records=7, bytes_out=1 << 40)
    cls = telemetry_pb2.Classification(data_class=telemetry_pb2.DATA_CLASS_C2, security_level=3)
    blob = encode_envelope(
        "e1",
        institution_field("银行-1"),
        unix_ns,
        "data_access",
        payload.SerializeToString(),
        cls.SerializeToString(),
    )
    env = telemetry_pb2.TelemetryEnvelope.FromString(blob)
    assert env.event_id == "e1"
    assert env.institution_id == "银行-1"
    assert env.event_time.ToNanoseconds() == unix_ns
    assert env.data_access == payload
    assert env.classification == cls


def test_empty_payload_keeps_its_oneof_case() -> None:
    blob = encode_envelope("e", institution_field("b"), 5, "heartbeat", b"")
    assert telemetry_pb2.TelemetryEnvelope.FromString(blob).WhichOneof("payload") == "heartbeat"


def test_hand_encoded_batch_parses_as_the_contract() -> None:
    envs = [
        encode_envelope(f"e{i}", institution_field("b"), i * 10**9, "heartbeat", b"\x0a\x01x")
        for i in range(300)
    ]
    batch = ingest_pb2.TelemetryBatch.FromString(
        encode_batch("batch-1", [frame_batch_event(e) for e in envs])
    )
    assert batch.batch_id == "batch-1"
    assert [e.event_id for e in batch.events] == [f"e{i}" for i in range(300)]
    assert batch.events[299].heartbeat.source_id == "x"


def _spool_events(spool: Spool, n: int) -> list[bytes]:
    envs = [encode_envelope(f"e{i}", b"", 1, "heartbeat", b"") for i in range(n)]
    for env in envs:
        spool.append(env, frame_batch_event(env), 0.0)
    return envs


def test_spool_recovers_unanswered_events_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    envs = _spool_events(spool, 10)
    spool.close()

    spool = Spool(tmp_path)
    recovered = spool.recover(0.0)
    assert [r.framed for r in recovered] == [frame_batch_event(e) for e in envs]
    spool.mark_done(recovered[:4])
    spool.close()

    spool = Spool(tmp_path)
    recovered = spool.recover(0.0)
    assert [r.framed for r in recovered] == [frame_batch_event(e) for e in envs[4:]]
    spool.mark_done(recovered)
    assert list(spool.segment_files()) == []
    spool.close()


def test_spool_ignores_a_torn_last_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    envs = _spool_events(spool, 3)
    spool.close()
    seg = next(tmp_path.glob("seg-*.log"))
    whole = seg.read_bytes()
    # A crash in the middle of the last write: its header claims more bytes than exist.
    seg.write_bytes(whole[:-3])
    spool = Spool(tmp_path)
    assert [r.framed for r in spool.recover(0.0)] == [frame_batch_event(e) for e in envs[:2]]
    spool.close()


def test_spool_stops_at_a_record_whose_crc_does_not_match(tmp_path: Path) -> None:
    good = b"hello"
    bad = b"world"
    path = tmp_path / "seg.log"
    path.write_bytes(
        struct.pack("<II", len(good), zlib.crc32(good))
        + good
        + struct.pack("<II", len(bad), zlib.crc32(bad) ^ 1)
        + bad
    )
    assert read_frames(path) == ([good], 8 + len(good))


def test_spool_appends_after_recovery_into_a_new_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _spool_events(spool, 2)
    spool.close()
    spool = Spool(tmp_path)
    old = spool.recover(0.0)
    new = _spool_events(spool, 1)
    spool.close()
    spool = Spool(tmp_path)
    assert len(spool.recover(0.0)) == len(old) + len(new) == 3
    spool.close()


def test_spool_many_rolls_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_max_records=4)
    envs = [encode_envelope(f"e{i}", b"", 1, "heartbeat", b"") for i in range(10)]
    records = spool.append_many([(e, frame_batch_event(e)) for e in envs], 0.0)
    assert len(list(spool.segment_files())) == 3
    spool.mark_done(records[:4])
    assert len(list(spool.segment_files())) == 2
    spool.close()
    spool = Spool(tmp_path)
    assert [r.framed for r in spool.recover(0.0)] == [r.framed for r in records[4:]]
    spool.close()


def test_spool_is_exclusive(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolLockedError):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_backoff_is_full_jitter_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(a, 0.1, 5.0, rng) for a in range(40) for _ in range(20)]
    assert all(0.0 <= d <= 5.0 for d in delays)
    early = [backoff_delay(0, 0.1, 5.0, rng) for _ in range(200)]
    assert max(early) <= 0.1
    late = [backoff_delay(20, 0.1, 5.0, rng) for _ in range(200)]
    assert max(late) > 2.5 and min(late) < 2.5  # spread over the whole range, not clustered


def test_cli_parse_reports_malformed_lines_by_number() -> None:
    lines = [
        '{"institutionId": "b1", "heartbeat": {"sourceId": "app"}}',
        "",
        "{not json",
        '{"eventId": "keep-me", "heartbeat": {}}',
        '{"institutionId": "b1"}',
        '{"heartbeat": {"noSuchField": 1}}',
    ]
    out = list(parse_lines(lines))
    assert isinstance(out[0], telemetry_pb2.TelemetryEnvelope) and len(out[0].event_id) == 32
    assert isinstance(out[1], LineError) and out[1].line == 3
    assert isinstance(out[2], telemetry_pb2.TelemetryEnvelope)
    assert out[2].event_id == "keep-me"
    assert isinstance(out[3], LineError) and out[3].line == 5 and "payload" in out[3].message
    assert isinstance(out[4], LineError) and out[4].line == 6
    assert len(out) == 5


def test_sdk_imports_only_contracts_grpc_and_protobuf() -> None:
    code = (
        "import sys, suptech.sdk, suptech.sdk.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'kafka','faust','river','sqlalchemy','aiokafka','mode','alembic','psycopg'} "
        "or (m.startswith('suptech.') and m.split('.')[1] not in {'sdk','v1'}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "services"), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == ""


def test_bulk_event_ids_are_unique_uuid4() -> None:
    import uuid

    from suptech.sdk.client import new_event_ids

    ids = new_event_ids(5000)
    assert len(set(ids)) == 5000
    for eid in ids[:200]:
        parsed = uuid.UUID(hex=eid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.hex == eid


def test_envelope_template_matches_the_full_encoder() -> None:
    from suptech.sdk.wire import envelope_template

    inst = institution_field("b1")
    head, tail = envelope_template(inst, 1_700_000_000_5, "sandbox", b"\x0a\x02t1")
    eid = "0123456789abcdef0123456789abcdef"
    assert head + eid.encode() + tail == encode_envelope(
        eid, inst, 1_700_000_000_5, "sandbox", b"\x0a\x02t1"
    )


def test_client_refuses_raw_ids_unknown_enums_and_naive_times_before_spooling(
    tmp_path: Path,
) -> None:
    from datetime import datetime

    from suptech.sdk import TelemetryClient

    # Nothing listens on port 9: these checks happen before anything is spooled or sent.
    client = TelemetryClient(
        "127.0.0.1:9", "B1", spool_dir=tmp_path, pseudonym_key=b"k", retry_base_s=30
    )
    try:
        with pytest.raises(ValueError, match="actor_id="):
            client.send(telemetry_pb2.DataAccessEvent(system_id="s", actor_pseudonym="alice"))
        with pytest.raises(ValueError, match="unknown operation"):
            client.data_access(
                system_id="s",
                actor_id="alice",
                operation="steal",
                channel="api",
                destination_kind="internal",
            )
        with pytest.raises(ValueError, match="timezone"):
            client.heartbeat(event_time=datetime(2025, 1, 1))
        with pytest.raises(TypeError):
            client.send(ingest_pb2.BatchAck())
        assert client.stats().spooled == 0
        client.data_access(
            system_id="s",
            actor_id="alice",
            operation="read",
            channel="api",
            destination_kind="internal",
        )
        assert client.stats().spooled == 1
    finally:
        client.close(timeout=0)
