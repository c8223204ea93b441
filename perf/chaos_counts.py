"""What the chaos suite counts after a fault: events in Kafka, findings, alerts, dead letters.

Everything is read from where a user of the system would look: the telemetry and findings topics
(read to their end by a reader outside any group, as ``suptech-ops`` reads them), the dead-letter
topic through ``suptech-ops deadletters``' reader, and the alerts through the alert service's
gRPC API (``ListAlerts``, then ``GetAlert`` for each alert's findings).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from kafka import TopicPartition
from suptech.common.bundles import iter_events
from suptech.common.topics import FINDINGS, TELEMETRY_TOPICS, topic_name
from suptech.ops.deadletters import read_dead_letters
from suptech.ops.kafka_clients import open_producer, open_reader
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

__all__ = [
    "PROBE_ENTITY",
    "send_probe",
    "read_values",
    "telemetry_event_ids",
    "finding_ids",
    "alerts_dead_letters",
    "StoredAlerts",
    "stored_alerts",
]


# The probe: one finding of its own put on the findings topic at the restart, so that "alerts flow
# again" does not wait for the detector's next finding. The same in every scenario (the no-fault
# run's too), so it is never an "extra" finding.
PROBE_ENTITY = "chaos-probe"


def send_probe(bootstrap: str, prefix: str, event_time_s: int) -> None:
    """Publish the probe finding (acks=all; kafka-python retries while the broker is away)."""
    f = findings_pb2.Finding(
        finding_id="chaos-probe-finding",
        family=findings_pb2.FAMILY_IT_AUTONOMY,
        institution_id="chaos-probe-institution",
        entity_kind="system",
        entity_id=PROBE_ENTITY,
        rule_id="chaos.probe",
        score=1.0,
        threshold=0.5,
        grade=findings_pb2.GRADE_GENERAL,
        summary="chaos suite probe: alerts flow again",
    )
    f.event_time.FromSeconds(event_time_s)
    producer = open_producer(bootstrap, 60)
    try:
        topic = topic_name(FINDINGS, prefix)
        producer.send(topic, key=PROBE_ENTITY.encode(), value=f.SerializeToString()).get(120)
    finally:
        producer.close(timeout=10)


def read_values(bootstrap: str, topics: Iterable[str], timeout_s: float = 120) -> list[bytes]:
    """Every record value of ``topics`` up to the end offsets seen at the start."""
    reader = open_reader(bootstrap, 30)
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(reader.partitions_for_topic(t) or ())
        ]
        if not partitions:
            return []
        reader.assign(partitions)
        end = reader.end_offsets(partitions)
        reader.seek_to_beginning(*partitions)
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in partitions if reader.position(tp) < end[tp]}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted(topics)} to the end in {timeout_s}s")
            for tp, batch in reader.poll(timeout_ms=500, max_records=5000).items():
                out += [r.value for r in batch if r.offset < end[tp] and r.value is not None]
            remaining = {tp for tp in remaining if reader.position(tp) < end[tp]}
        return out
    finally:
        reader.close()


def telemetry_event_ids(bootstrap: str, prefix: str) -> Counter[str]:
    """How many times each event id is in the telemetry topics (a resent batch counts twice)."""
    topics = [topic_name(spec, prefix) for spec in TELEMETRY_TOPICS.values()]
    ids: Counter[str] = Counter()
    for value in read_values(bootstrap, topics):
        ids.update(e.event_id for e in iter_events(value))
    return ids


def finding_ids(bootstrap: str, prefix: str) -> tuple[Counter[str], set[str]]:
    """How many times each finding id is on the findings topic, and the ids of the clears.

    A clear (the end of a condition) is stored only with an open alert of its group: one that
    comes when there is none is counted by the store as unmatched, not stored, by design."""
    ids: Counter[str] = Counter()
    clears: set[str] = set()
    for v in read_values(bootstrap, [topic_name(FINDINGS, prefix)]):
        f = findings_pb2.Finding.FromString(v)
        ids[f.finding_id] += 1
        if f.phase == findings_pb2.PHASE_CLEAR:
            clears.add(f.finding_id)
    return ids, clears


def alerts_dead_letters(bootstrap: str, prefix: str) -> list[str]:
    """Finding ids the alert service dead-lettered (the detector's dead letters left out)."""
    reader = open_reader(bootstrap, 30)
    try:
        records = read_dead_letters(reader, prefix, None, 120)
    finally:
        reader.close()
    out = []
    for r in records:
        if r.writer == "alerts":
            try:
                out.append(findings_pb2.Finding.FromString(r.value).finding_id or "?")
            except Exception:  # noqa: BLE001 - an undecodable dead letter still counts
                out.append("?")
    return out


@dataclass
class StoredAlerts:
    """The alerts a supervisor sees and the findings stored in them."""

    alerts: int
    # finding id -> number of alerts holding it (more than one: a duplicate alert)
    findings: Counter[str]
    # alerts with the same group key and first finding time as another (a finding re-emitted
    # under a new id would open such a twin)
    twins: int

    @property
    def duplicate_findings(self) -> int:
        return sum(n - 1 for n in self.findings.values() if n > 1)


def _with_retry(method: Callable[..., Any], request: Any, md: Any, timeout_s: float = 60) -> Any:
    """One call, tried again while the service is unavailable (it may be restarting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return method(request, metadata=md, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def stored_alerts(port: int, token: str) -> StoredAlerts:
    """Every alert through ``ListAlerts`` pages, each one's findings through ``GetAlert``."""
    md = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)
        alerts: list[Any] = []
        page_token = ""
        while True:
            req = alerts_pb2.ListAlertsRequest(page_size=500, page_token=page_token)
            page = _with_retry(stub.ListAlerts, req, md)
            alerts.extend(page.alerts)
            page_token = page.next_page_token
            if not page_token:
                break
        held: Counter[str] = Counter()
        for a in alerts:
            req = alerts_pb2.GetAlertRequest(alert_id=a.alert_id)
            full = _with_retry(stub.GetAlert, req, md).alert
            held.update({f.finding_id for f in full.findings})
    keys = Counter(
        (
            a.family,
            a.institution_id,
            a.entity_kind,
            a.entity_id,
            a.detector_id,
            a.first_seen.seconds,
        )
        for a in alerts
    )
    return StoredAlerts(len(alerts), held, sum(n - 1 for n in keys.values() if n > 1))
