"""Consumer-group lag: how far each suptech consumer is behind the end of what it reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kafka import TopicPartition

from suptech.ops.kafka_clients import log_offsets

__all__ = ["PartitionLag", "GroupLag", "group_lags", "render"]


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    # None: the group has no committed offset here (it would start from its reset policy).
    committed: int | None
    end: int
    lag: int


@dataclass
class GroupLag:
    group: str
    # Broker's view: Stable, Empty (no member running), Dead (unknown group), ...
    state: str
    members: int
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def known(self) -> bool:
        """False when the group has committed nothing: its lag cannot be told."""
        return bool(self.partitions)

    def by_topic(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.partitions:
            out[p.topic] = out.get(p.topic, 0) + p.lag
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "group": self.group,
            "state": self.state,
            "members": self.members,
            "total_lag": self.total if self.known else None,
            "topics": self.by_topic(),
            "partitions": [asdict(p) for p in self.partitions],
        }


def _describe(admin: Any, groups: list[str]) -> dict[str, tuple[str, int]]:
    try:
        described = admin.describe_groups(groups)
    except Exception:  # the state is informative only; lag is what counts
        return {}
    out: dict[str, tuple[str, int]] = {}
    for gid, info in described.items():
        out[gid] = (
            str(info.get("group_state") or info.get("state") or "?"),
            len(info.get("members") or []),
        )
    return out


def group_lags(admin: Any, groups: list[str], prefix: str = "") -> list[GroupLag]:
    """Lag per partition of every topic under ``prefix`` each group has committed offsets on.

    One group id can serve several deployments that share a broker through topic prefixes:
    the prefix keeps another deployment's backlog out of this one's figures.

    A partition of such a topic without a commit of its own counts from its beginning offset:
    that is what the group would read (suptech consumers reset to earliest).
    """
    committed = {
        g: {tp: om for tp, om in offsets.items() if tp.topic.startswith(prefix)}
        for g, offsets in admin.list_group_offsets({g: None for g in groups}).items()
    }
    states = _describe(admin, groups)
    topics = sorted({tp.topic for offsets in committed.values() for tp in offsets})
    partitions: list[TopicPartition] = []
    if topics:
        for t in admin.describe_topics(topics):
            if t.get("error_code", 0) == 0:
                partitions += [
                    TopicPartition(t["name"], p["partition_index"]) for p in t["partitions"]
                ]
    begin, end = log_offsets(admin, partitions)
    out: list[GroupLag] = []
    for g in groups:
        state, members = states.get(g, ("?", 0))
        offsets = {tp: int(om.offset) for tp, om in committed.get(g, {}).items() if om.offset >= 0}
        mine = {tp.topic for tp in committed.get(g, {})}
        lag = GroupLag(g, state, members)
        for tp in sorted(partitions, key=lambda x: (x.topic, x.partition)):
            if tp.topic not in mine:
                continue
            c = offsets.get(tp)
            start = c if c is not None else begin.get(tp, 0)
            lag.partitions.append(
                PartitionLag(tp.topic, tp.partition, c, end[tp], max(0, end[tp] - start))
            )
        out.append(lag)
    return out


def render(lags: list[GroupLag], verbose: bool = False) -> str:
    lines: list[str] = []
    for g in lags:
        total = g.total if g.known else "unknown (no committed offsets)"
        lines.append(f"group {g.group} [{g.state}, {g.members} members]: lag {total}")
        for topic, n in g.by_topic().items():
            lines.append(f"  {topic:<48} {n:>10}")
            if verbose:
                for p in g.partitions:
                    if p.topic == topic:
                        c = "-" if p.committed is None else p.committed
                        lines.append(
                            f"    p{p.partition:<4} committed {c:>10} end {p.end:>10}"
                            f" lag {p.lag:>8}"
                        )
    return "\n".join(lines)
