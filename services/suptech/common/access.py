"""Who may do what on Kafka: the SCRAM users of a deployment and their ACLs, applied as the admin.

``python -m suptech.common.access`` (the chart's kafka-access Job) reads the grants from
``SUPTECH_KAFKA_ACCESS``, a JSON list the chart renders from its values ``kafka.acls``, e.g.::

    [{"user": "detector", "topics": ["DETECTOR_CHECKPOINTS"], "operations": ["Read", "Write"]}]

Topics are named by their constant in :mod:`suptech.common.topics` (``DETECTOR_CHECKPOINTS``), so
topic names stay declared once and get ``SUPTECH_TOPIC_PREFIX`` here; ``topicPrefixes`` and
``groups`` are prefixed patterns given as is (faust's internal topics and consumer groups are
named after the app id, not the topic prefix). Brokers run StandardAuthorizer denying what no
ACL allows, so whatever is not granted is refused: only the detector writes its state.

Each user's password is read from ``SUPTECH_KAFKA_USERS_DIR/<user>.password`` and set again on
every run (a rotation is a re-run). ACLs removed from the values are not revoked by a re-run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suptech.common import topics as topic_specs
from suptech.common.config import ConfigError, env_str
from suptech.common.kafka import KafkaSecurity, load_kafka_security, open_client

__all__ = ["Grant", "parse_grants", "acl_bindings", "apply_access", "main"]

OPERATIONS = ("Read", "Write", "Create", "Describe", "DescribeConfigs", "All")
_ENV = "SUPTECH_KAFKA_ACCESS"


@dataclass(frozen=True)
class Grant:
    user: str
    operations: tuple[str, ...]
    topics: tuple[str, ...] = ()
    topic_prefixes: tuple[str, ...] = ()
    groups: tuple[str, ...] = field(default=())


def _spec(name: str) -> topic_specs.TopicSpec:
    spec = getattr(topic_specs, name, None)
    if not isinstance(spec, topic_specs.TopicSpec):
        known = sorted(
            n
            for n in dir(topic_specs)
            if isinstance(getattr(topic_specs, n), topic_specs.TopicSpec)
        )
        raise ConfigError(f"{_ENV}: unknown topic {name!r} (one of {', '.join(known)})")
    return spec


def parse_grants(text: str) -> list[Grant]:
    """The grants of ``SUPTECH_KAFKA_ACCESS``; a wrong entry raises :class:`ConfigError`."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{_ENV}: not JSON: {e}") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{_ENV}: must be a JSON list of grants")
    grants = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("user"), str):
            raise ConfigError(f"{_ENV}[{i}]: needs a user")
        if entry["user"] == "admin":
            raise ConfigError(f"{_ENV}[{i}]: admin is a super user; grant nothing to it")
        ops = tuple(entry.get("operations") or ())
        if not ops or not set(ops) <= set(OPERATIONS):
            raise ConfigError(f"{_ENV}[{i}]: operations must be some of {', '.join(OPERATIONS)}")
        grant = Grant(
            user=entry["user"],
            operations=ops,
            topics=tuple(entry.get("topics") or ()),
            topic_prefixes=tuple(entry.get("topicPrefixes") or ()),
            groups=tuple(entry.get("groups") or ()),
        )
        for name in grant.topics:
            _spec(name)
        if not (grant.topics or grant.topic_prefixes or grant.groups):
            raise ConfigError(f"{_ENV}[{i}]: names no topics, topicPrefixes or groups")
        grants.append(grant)
    return grants


def acl_bindings(grants: Sequence[Grant], prefix: str) -> list[Any]:
    """kafka-python ``ACL`` objects: one per (user, operation, resource), ALLOW from any host."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    literal, prefixed = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED
    out = []
    for g in grants:
        resources = [
            *(
                (ResourceType.TOPIC, topic_specs.topic_name(_spec(t), prefix), literal)
                for t in g.topics
            ),
            *((ResourceType.TOPIC, p, prefixed) for p in g.topic_prefixes),
            *((ResourceType.GROUP, p, prefixed) for p in g.groups),
        ]
        for rtype, name, pattern in resources:
            for op in g.operations:
                operation = ACLOperation[
                    "DESCRIBE_CONFIGS" if op == "DescribeConfigs" else op.upper()
                ]
                out.append(
                    ACL(
                        principal=f"User:{g.user}",
                        host="*",
                        operation=operation,
                        permission_type=ACLPermissionType.ALLOW,
                        resource_pattern=ResourcePattern(rtype, name, pattern),
                    )
                )
    return out


def apply_access(
    bootstrap: str,
    grants: Sequence[Grant],
    prefix: str,
    users_dir: Path,
    *,
    security: KafkaSecurity | None = None,
    timeout_s: float = 30,
) -> dict[str, int]:
    """Set every granted user's SCRAM password and create the ACLs; counts of each."""
    from kafka.admin import KafkaAdminClient, UserScramCredentialUpsertion

    sec = security or load_kafka_security()
    mechanism = sec.sasl_mechanism or "SCRAM-SHA-512"
    users = sorted({g.user for g in grants})
    upserts = []
    for user in users:
        path = users_dir / f"{user}.password"
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(
                f"SUPTECH_KAFKA_USERS_DIR: cannot read {path}: {e.strerror}"
            ) from None
        if not password:
            raise ConfigError(f"SUPTECH_KAFKA_USERS_DIR: {path} is empty")
        upserts.append(UserScramCredentialUpsertion(user, mechanism, password, iterations=8192))
    admin = open_client(
        KafkaAdminClient,
        security=sec,
        bootstrap_servers=bootstrap,
        client_id="suptech-access",
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )
    try:
        errors = {u: e for u, e in admin.alter_user_scram_credentials(upserts).items() if e}
        if errors:
            raise RuntimeError(f"SCRAM credentials refused: {errors}")
        bindings = acl_bindings(grants, prefix)
        result = admin.create_acls(bindings)
        failed = result.get("failed") or []
        if failed:
            raise RuntimeError(f"ACLs refused: {failed}")
    finally:
        admin.close()
    return {"users": len(users), "acls": len(bindings)}


def main(environ: Mapping[str, str] | None = None) -> None:
    """``python -m suptech.common.access``: apply ``SUPTECH_KAFKA_ACCESS`` on ``KAFKA_ADDR``."""
    grants = parse_grants(env_str(_ENV, None, environ))
    done = apply_access(
        env_str("KAFKA_ADDR", "127.0.0.1:19092", environ),
        grants,
        env_str("SUPTECH_TOPIC_PREFIX", "", environ),
        Path(env_str("SUPTECH_KAFKA_USERS_DIR", None, environ)),
        security=load_kafka_security(environ),
    )
    print(f"kafka access: {done['users']} users, {done['acls']} ACLs")


if __name__ == "__main__":
    main()
