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


def test_backoff_is_exponential_jittered_with_a_floor_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(40):
        cap = min(5.0, 0.1 * 2**attempt)
        delays = [backoff_delay(attempt, 0.1, 5.0, rng) for _ in range(50)]
        # Never below half the cap: the reconnect rate is bounded whatever the draws.
        assert all(cap / 2 <= d <= cap for d in delays)
    late = [backoff_delay(20, 0.1, 5.0, rng) for _ in range(200)]
    assert max(late) > 4.5 and min(late) < 3.0  # spread over the range, not clustered
    # The sum of the pauses grows exponentially: at most ~12 attempts in the first 10 s.
    total, attempts = 0.0, 0
    while total < 10.0:
        total += backoff_delay(attempts, 0.1, 5.0, random.Random(attempts))
        attempts += 1
    assert attempts <= 12


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


def test_flush_does_not_hurry_reconnects_to_a_gateway_that_is_down(tmp_path: Path) -> None:
    import socket
    import time

    from suptech.sdk import TelemetryClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port: every stream fails at once (a gateway that is down).
    client = TelemetryClient(
        f"127.0.0.1:{port}",
        "B1",
        spool_dir=tmp_path,
        pseudonym_key=b"k",
        retry_base_s=0.1,
        retry_max_s=1.0,
    )
    try:
        client.heartbeat()
        # As suptech-send does: flush in short slices, each one waking the sender.
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            assert not client.flush(timeout=0.05)
        stats = client.stats()
    finally:
        client.close(timeout=0)
    assert stats.errors.get("UNAVAILABLE", 0) >= 3 and stats.spooled == 1
    # Pauses of at least 0.05, 0.1, 0.2, 0.4 then 0.5 s: at most 15 attempts in 6 s (before the
    # fix, every flush cut the pause short: over a hundred).
    assert stats.retries <= 15, stats


def test_client_refuses_an_event_over_max_event_bytes_before_spooling(tmp_path: Path) -> None:
    from suptech.sdk import TelemetryClient

    client = TelemetryClient(
        "127.0.0.1:9", "B1", spool_dir=tmp_path, pseudonym_key=b"k", max_event_bytes=4096
    )
    try:
        big = telemetry_pb2.MaintenanceWindow(window_id="w", system_ids=["s" * 100] * 50)
        with pytest.raises(ValueError, match="max_event_bytes"):
            client.send(big)
        with pytest.raises(ValueError, match="max_event_bytes"):
            client.send_many_encoded("maintenance", [big.SerializeToString()])
        with pytest.raises(ValueError, match="max_event_bytes"):
            client.heartbeat(vouches_for=["data_access:" + "x" * 100] * 50)
        assert client.stats().spooled == 0
        client.heartbeat()
        assert client.stats().spooled == 1
    finally:
        client.close(timeout=0)
    with pytest.raises(ValueError, match="max_event_bytes"):
        TelemetryClient(
            "127.0.0.1:9",
            "B1",
            spool_dir=tmp_path / "other",
            pseudonym_key=b"k",
            max_batch_bytes=1000,
            max_event_bytes=2000,
        )


@pytest.mark.parametrize("option", ["--token-file", "--ca"])
def test_cli_unreadable_file_is_one_line_error_not_a_traceback(tmp_path: Path, option: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"heartbeat": {"sourceId": "x"}}\n')
    missing = tmp_path / "no-such-file"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "suptech.sdk.cli",
            "send",
            str(events),
            "--target",
            "127.0.0.1:9",
            "--institution",
            "B1",
            option,
            str(missing),
            "--spool-dir",
            str(tmp_path / "spool"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "services"), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and str(missing) in lines[0], out.stderr
    assert "No such file" in lines[0]
