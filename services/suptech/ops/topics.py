"""Declared topics (``suptech.common.topics.TOPICS``) against what the broker actually has."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from suptech.common.kafka import load_replication
from suptech.common.topics import TOPICS, TopicSpec, topic_name
from suptech.ops.kafka_clients import log_offsets

__all__ = ["TopicReport", "inspect_topics", "render"]


@dataclass
class TopicReport:
    name: str
    exists: bool
    declared_partitions: int
    partitions: int | None = None
    # Declared config key -> (declared, actual) for each key that differs.
    drift: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    cleanup_policy: str | None = None
    # end - beginning offsets over all partitions: the records held, except on a compacted
    # topic, where cleaned-away records still count until its log start moves.
    messages: int | None = None

    @property
    def ok(self) -> bool:
        return self.exists and not self.drift

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "exists": self.exists,
            "ok": self.ok,
            "declared_partitions": self.declared_partitions,
            "partitions": self.partitions,
            "cleanup_policy": self.cleanup_policy,
            "messages": self.messages,
            "drift": {k: {"declared": d, "actual": a} for k, (d, a) in self.drift.items()},
        }


def _configs(admin: Any, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, None) for n in names]
    # "all", not the default "modified": a value left at the broker default is still compared.
    result = admin.describe_configs(resources, config_filter="all")
    return {
        name: {key: str(entry.get("value")) for key, entry in entries.items()}
        for name, entries in result.get("topic", {}).items()
    }


def inspect_topics(
    admin: Any, prefix: str, specs: tuple[TopicSpec, ...] = TOPICS
) -> list[TopicReport]:
    names = [topic_name(s, prefix) for s in specs]
    described = {t["name"]: t for t in admin.describe_topics(names) if t.get("error_code", 0) == 0}
    configs = _configs(admin, [n for n in names if n in described])
    partitions = [
        TopicPartition(n, p["partition_index"])
        for n in names
        if n in described
        for p in described[n]["partitions"]
    ]
    begin, end = log_offsets(admin, partitions)
    # Durability is declared by SUPTECH_KAFKA_* rather than per topic; ensure_topics never alters
    # a topic that exists, so one created before a move to three brokers shows here.
    replication = load_replication()
    reports: list[TopicReport] = []
    for spec, name in zip(specs, names, strict=True):
        report = TopicReport(name, name in described, spec.partitions)
        if report.exists:
            report.partitions = len(described[name]["partitions"])
            if report.partitions != spec.partitions:
                report.drift["partitions"] = (str(spec.partitions), str(report.partitions))
            actual = configs.get(name, {})
            report.cleanup_policy = actual.get("cleanup.policy")
            declared_configs = {
                **spec.configs(),
                "min.insync.replicas": str(replication.min_insync),
            }
            for key, declared in declared_configs.items():
                if actual.get(key) != declared:
                    report.drift[key] = (declared, actual.get(key))
            replicas = min(len(p["replica_nodes"]) for p in described[name]["partitions"])
            if replicas != replication.factor:
                report.drift["replication.factor"] = (str(replication.factor), str(replicas))
            report.messages = sum(
                end[tp] - begin[tp] for tp in partitions if tp.topic == name and tp in end
            )
        reports.append(report)
    return reports


def render(reports: list[TopicReport]) -> str:
    lines = [f"{'TOPIC':<48} {'STATE':<8} {'PARTS':>9} {'CLEANUP':<8} {'MESSAGES':>10}"]
    for r in reports:
        state = "OK" if r.ok else ("MISSING" if not r.exists else "DRIFT")
        parts = f"{r.partitions if r.exists else '-'}/{r.declared_partitions}"
        msgs = "-" if r.messages is None else str(r.messages)
        lines.append(f"{r.name:<48} {state:<8} {parts:>9} {r.cleanup_policy or '-':<8} {msgs:>10}")
        for key, (declared, actual) in r.drift.items():
            lines.append(f"  drift {key}: declared {declared}, actual {actual}")
    bad = sum(not r.ok for r in reports)
    lines.append(f"{len(reports) - bad}/{len(reports)} topics as declared")
    return "\n".join(lines)
