"""The alert service's Prometheus metrics: findings stored, alerts open, how fast they reach a
supervisor, and what waits in the outbox.

A finding's way to a supervisor is measured in two legs, each from a wall clock the service can
read: from the detector's Kafka record (its timestamp) to the store's commit, then from the
alert change's commit (``Alert.updated_time``) to its send on ``StreamAlerts``. A finding's
``detected_time`` cannot serve: it is event time, hours or days old in a replay.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suptech.alerts.consumer import ConsumerStats
from suptech.alerts.models import OUTBOX_FEEDBACK, OUTBOX_WEBHOOK, AlertRow, OutboxRow
from suptech.alerts.webhooks import DispatchStats
from suptech.common.metrics import PREFIX, counter, gauge, histogram, new_registry
from suptech.v1 import alerts_pb2, findings_pb2

__all__ = ["AlertsMetrics"]


class _ConsumerCollector(Collector):
    """The findings consumer's own running totals, read at scrape time (plain integers)."""

    def __init__(self) -> None:
        self.stats: ConsumerStats | None = None

    def collect(self) -> Any:
        s = self.stats or ConsumerStats()
        rows = (
            ("alerts_findings_records", "Findings records read from Kafka", s.records),
            ("alerts_findings_stored", "Findings stored (new, not duplicates)", s.stored),
            ("alerts_findings_duplicates", "Findings already stored (replays)", s.duplicates),
            ("alerts_findings_dead_lettered", "Findings records dead-lettered", s.dead_lettered),
            ("alerts_db_retries", "Batches rewound, database unavailable", s.db_retries),
        )
        for name, doc, value in rows:
            family = CounterMetricFamily(PREFIX + name, doc)
            family.add_metric([], value)
            yield family

    def describe(self) -> Any:
        return self.collect()


def _state(value: int) -> str:
    return alerts_pb2.AlertState.Name(value).removeprefix("ALERT_STATE_").lower()


def _grade(value: int) -> str:
    return findings_pb2.Grade.Name(value).removeprefix("GRADE_").lower()


class AlertsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = new_registry() if registry is None else registry
        r = self.registry
        self.consumer = _ConsumerCollector()
        r.register(self.consumer)
        self.alerts = gauge(r, "alerts_alerts", "Alerts by state and grade", ("state", "grade"))
        self.outbox_depth = gauge(
            r, "alerts_outbox_depth", "Outbox messages not yet delivered, by kind", ("kind",)
        )
        self.finding_to_store = histogram(
            r,
            "alerts_finding_to_store_seconds",
            "From the detector's findings record (Kafka timestamp) to the store's commit",
        )
        self.store_to_stream = histogram(
            r,
            "alerts_store_to_stream_seconds",
            "From an alert change's commit to its send on StreamAlerts (live streams only)",
        )
        self.webhooks = counter(
            r,
            "alerts_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retried, dead)",
            ("outcome",),
        )
        for outcome in ("delivered", "retried", "dead"):
            self.webhooks.labels(outcome)
        self._alert_labels: set[tuple[str, str]] = set()

    def stored(self, records: Sequence[Any]) -> None:
        """After a poll's findings are stored: the first leg of each one's latency."""
        now_ms = time.time() * 1000
        for rec in records:
            if rec.timestamp and rec.timestamp > 0:
                self.finding_to_store.observe(max(0.0, now_ms - rec.timestamp) / 1000)

    def streamed(self, alert: alerts_pb2.Alert, opened_at: float) -> None:
        """An alert change sent on a stream: the second leg, for changes made while the stream
        was open (a replay from an old cursor is history, not latency)."""
        if not alert.HasField("updated_time"):
            return
        changed = alert.updated_time.ToNanoseconds() / 1e9
        if changed >= opened_at:
            self.store_to_stream.observe(max(0.0, time.time() - changed))

    def dispatched(self, stats: DispatchStats) -> None:
        self.webhooks.labels("delivered").inc(stats.delivered)
        self.webhooks.labels("retried").inc(stats.retried)
        self.webhooks.labels("dead").inc(stats.dead)

    def refresh(self, sessions: sessionmaker[Session]) -> None:
        """From the ticker thread: alert counts and outbox depth, two grouped queries."""
        with sessions() as s:
            alerts = s.execute(
                select(AlertRow.state, AlertRow.grade, func.count()).group_by(
                    AlertRow.state, AlertRow.grade
                )
            ).all()
            outbox = s.execute(
                select(OutboxRow.kind, func.count())
                .where(OutboxRow.delivered_at.is_(None))
                .group_by(OutboxRow.kind)
            ).all()
        seen: set[tuple[str, str]] = set()
        for state, grade, n in alerts:
            labels = (_state(state), _grade(grade))
            seen.add(labels)
            self.alerts.labels(*labels).set(n)
        for gone in self._alert_labels - seen:
            self.alerts.labels(*gone).set(0)
        self._alert_labels |= seen
        for kind in (OUTBOX_WEBHOOK, OUTBOX_FEEDBACK):
            self.outbox_depth.labels(kind).set(0)
        for kind, n in outbox:
            self.outbox_depth.labels(kind).set(n)
