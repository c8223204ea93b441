"""Topics are created once from their declarations, with the declared partitions and policies."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from suptech.common.topics import (
    REGISTRY_SANDBOX,
    TOPICS,
    delete_topics_with_prefix,
    ensure_topics,
    topic_name,
)

pytestmark = pytest.mark.integration


def test_topics_created_as_declared(kafka_bootstrap: str, topic_prefix: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics()}
        for spec in TOPICS:
            name = topic_name(spec, topic_prefix)
            assert len(described[name]["partitions"]) == spec.partitions, name
        # Idempotent: a second call creates nothing.
        assert ensure_topics(kafka_bootstrap, topic_prefix) == []
        from kafka.admin import ConfigResource, ConfigResourceType

        res = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name(REGISTRY_SANDBOX, topic_prefix))]
        )
        cfg = res["topic"][topic_name(REGISTRY_SANDBOX, topic_prefix)]
        assert cfg["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()


def test_a_namespace_is_deleted_whole_and_only_with_a_prefix(kafka_bootstrap: str) -> None:
    prefix = "tdel-namespace."
    ensure_topics(kafka_bootstrap, prefix)
    deleted = delete_topics_with_prefix(kafka_bootstrap, prefix)
    assert sorted(deleted) == sorted(topic_name(s, prefix) for s in TOPICS)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert not [t for t in admin.list_topics() if t.startswith(prefix)]
    finally:
        admin.close()
    with pytest.raises(ValueError):
        delete_topics_with_prefix(kafka_bootstrap, "")
