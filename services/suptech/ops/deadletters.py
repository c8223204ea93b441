"""What sits in the dead-letter topic, grouped by why it is there and where it came from.

Two writers put records there, each with its own headers:

* the detector: ``x-suptech-reason`` (a reason code), ``x-suptech-detail``,
  ``x-suptech-source-topic``, ``-partition``, ``-offset``;
* the alert service: ``reason`` (``"<code>: <detail>"`` or a bare code) and
  ``source`` (``"<topic>/<partition>/<offset>"``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from suptech.common.topics import DEAD_LETTER, topic_name

__all__ = [
    "DeadLetterRecord",
    "ReasonGroup",
    "DeadLetterReport",
    "parse_since",
    "classify",
    "read_dead_letters",
    "summarize",
    "render",
]

NO_REASON = "(no reason header)"
UNKNOWN_SOURCE = "(unknown)"


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int
    offset: int
    timestamp_ms: int
    writer: str  # "detector", "alerts" or "?"
    reason: str  # the code: what records are grouped by
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    # The record itself, kept for --replay; never printed.
    key: bytes | None = field(default=None, repr=False)
    value: bytes = field(default=b"", repr=False)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        del d["key"], d["value"]
        d["time"] = _iso(self.timestamp_ms)
        return d


@dataclass
class ReasonGroup:
    reason: str
    source_topic: str
    writer: str
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    last_offset: int = -1

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["first"] = _iso(self.first_ms)
        d["last"] = _iso(self.last_ms)
        return d


@dataclass
class DeadLetterReport:
    topic: str
    since_ms: int | None
    total: int = 0
    groups: list[ReasonGroup] = field(default_factory=list)
    latest: list[DeadLetterRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "since": None if self.since_ms is None else _iso(self.since_ms),
            "total": self.total,
            "groups": [g.to_dict() for g in self.groups],
            "latest": [r.to_dict() for r in self.latest],
        }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(raw: str, now_ms: int | None = None) -> int:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 time (UTC unless it says otherwise): epoch ms.

    >>> parse_since("2h", now_ms=10_000_000)
    2800000
    >>> parse_since("1970-01-01T00:00:01")
    1000
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    m = _RELATIVE.match(raw.strip())
    if m:
        return now - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1000)
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(
            f"--since must be like 30m, 2h, 7d or an ISO 8601 time, got {raw!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _int(raw: str | None) -> int | None:
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def classify(
    partition: int, offset: int, timestamp_ms: int, headers: Iterable[tuple[str, bytes | None]]
) -> DeadLetterRecord:
    """Read one dead letter's headers, whichever service wrote it."""
    h = {k: (v or b"").decode("utf-8", "replace") for k, v in headers}
    if "x-suptech-reason" in h:
        return DeadLetterRecord(
            partition,
            offset,
            timestamp_ms,
            "detector",
            h["x-suptech-reason"],
            h.get("x-suptech-detail", ""),
            h.get("x-suptech-source-topic") or UNKNOWN_SOURCE,
            _int(h.get("x-suptech-source-partition")),
            _int(h.get("x-suptech-source-offset")),
        )
    if "reason" in h:
        code, _, detail = h["reason"].partition(":")
        parts = h.get("source", "").rsplit("/", 2)
        topic, p, o = parts if len(parts) == 3 else (UNKNOWN_SOURCE, None, None)
        return DeadLetterRecord(
            partition,
            offset,
            timestamp_ms,
            "alerts",
            code.strip(),
            detail.strip(),
            topic or UNKNOWN_SOURCE,
            _int(p),
            _int(o),
        )
    return DeadLetterRecord(
        partition, offset, timestamp_ms, "?", NO_REASON, "", UNKNOWN_SOURCE, None, None
    )


def read_dead_letters(
    consumer: Any, prefix: str, since_ms: int | None, timeout_s: float
) -> list[DeadLetterRecord]:
    """Every dead letter from ``since_ms`` (or the beginning) up to the end seen at the start.

    ``consumer`` must be outside any group (``group_id=None``): this reads, it moves no offsets.
    Raises ``TimeoutError`` if the records up to that end cannot be read within ``timeout_s``.
    """
    topic = topic_name(DEAD_LETTER, prefix)
    known = consumer.partitions_for_topic(topic)
    if not known:
        raise LookupError(f"topic {topic} does not exist (suptech-ops topics --create makes it)")
    partitions = [TopicPartition(topic, p) for p in sorted(known)]
    consumer.assign(partitions)
    end = consumer.end_offsets(partitions)
    consumer.seek_to_beginning(*partitions)
    if since_ms is not None:
        for tp, found in consumer.offsets_for_times({tp: since_ms for tp in partitions}).items():
            # None: nothing at or after since_ms in this partition.
            consumer.seek(tp, end[tp] if found is None else found.offset)
    remaining = {tp for tp in partitions if consumer.position(tp) < end[tp]}
    records: list[DeadLetterRecord] = []
    deadline = time.monotonic() + timeout_s
    while remaining:
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s}s")
        for tp, batch in consumer.poll(timeout_ms=500).items():
            for rec in batch:
                if rec.offset < end[tp]:
                    r = classify(rec.partition, rec.offset, rec.timestamp, rec.headers or [])
                    records.append(replace(r, key=rec.key, value=rec.value or b""))
        remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
    return records


def summarize(
    records: list[DeadLetterRecord], topic: str, since_ms: int | None, latest: int
) -> DeadLetterReport:
    report = DeadLetterReport(topic, since_ms, total=len(records))
    groups: dict[tuple[str, str, str], ReasonGroup] = {}
    for r in records:
        key = (r.reason, r.source_topic, r.writer)
        g = groups.get(key)
        if g is None:
            g = groups[key] = ReasonGroup(r.reason, r.source_topic, r.writer, 0, r.timestamp_ms)
        g.count += 1
        g.first_ms = min(g.first_ms, r.timestamp_ms)
        if r.timestamp_ms >= g.last_ms:
            g.last_ms, g.last_offset = r.timestamp_ms, r.offset
    report.groups = sorted(groups.values(), key=lambda g: (-g.count, g.reason, g.source_topic))
    by_time = sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    report.latest = by_time[-latest:] if latest > 0 else []
    return report


def render(report: DeadLetterReport) -> str:
    since = "" if report.since_ms is None else f" since {_iso(report.since_ms)}"
    lines = [f"{report.topic}: {report.total} dead letters{since}"]
    if report.groups:
        lines.append(f"{'COUNT':>7}  {'REASON':<28} {'SOURCE TOPIC':<40} {'WRITER':<9} LAST")
        for g in report.groups:
            lines.append(
                f"{g.count:>7}  {g.reason:<28} {g.source_topic:<40} {g.writer:<9} "
                f"{_iso(g.last_ms)} @{g.last_offset}"
            )
    if report.latest:
        lines.append(f"latest {len(report.latest)}:")
        for r in report.latest:
            src = r.source_topic
            if r.source_partition is not None:
                src += f"/{r.source_partition}/{r.source_offset}"
            lines.append(
                f"  {_iso(r.timestamp_ms)} p{r.partition}@{r.offset} {r.reason} from {src}"
                + (f": {r.detail[:120]}" if r.detail else "")
            )
    return "\n".join(lines)
