"""``suptech-ops`` / ``python -m suptech.ops``: health, lag, topics and dead letters of suptech.

Exit codes (so that a command can back an alert or a Kubernetes job):
0 all as expected, 1 something is unhealthy, 2 bad usage or configuration,
3 the check itself could not be made (broker unreachable, timeout).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from suptech.common.config import ConfigError, settings_help
from suptech.ops.config import SETTINGS, OpsConfig, load_config

if TYPE_CHECKING:
    from suptech.ops.deadletters import DeadLetterRecord

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_UNHEALTHY", "EXIT_USAGE", "EXIT_CHECK_FAILED"]

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    common.add_argument(
        "--timeout", type=float, default=None, help="seconds per request (env OPS_TIMEOUT_S)"
    )
    parser = argparse.ArgumentParser(
        prog="suptech-ops",
        description="Health, lag, topics and dead letters of a running suptech "
        "(KAFKA_ADDR, SUPTECH_TOPIC_PREFIX). Exit 0 ok, 1 unhealthy, 2 usage, 3 check failed.",
        epilog=settings_help(SETTINGS, common=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("health", parents=[common], help="grpc.health.v1 of each service")
    p.add_argument(
        "--target",
        action="append",
        metavar="NAME=HOST:PORT",
        help="a service to ask (repeatable)",
    )
    p.add_argument(
        "--kube",
        action="store_true",
        help="find the Helm release's components through the Kubernetes API and ask each pod "
        "through a port-forward (needs suptech[ops-k8s])",
    )
    p.add_argument("--namespace", help="with --kube (env OPS_KUBE_NAMESPACE)")
    p.add_argument("--release", help="with --kube: Helm release name (env OPS_KUBE_RELEASE)")
    p.add_argument("--context", help="with --kube: kubeconfig context (env OPS_KUBE_CONTEXT)")

    p = sub.add_parser("lag", parents=[common], help="consumer-group lag per topic/partition")
    p.add_argument(
        "--group",
        action="append",
        metavar="G",
        help="group id (repeatable); default: the detector's and the alert service's",
    )
    p.add_argument("--max-lag", type=int, metavar="N", help="exit 1 if a group lags more than N")
    p.add_argument("-v", "--verbose", action="store_true", help="show every partition")

    p = sub.add_parser("topics", parents=[common], help="declared topics vs the broker's")
    p.add_argument("--create", action="store_true", help="create missing topics first")

    p = sub.add_parser("deadletters", parents=[common], help="dead letters by reason and source")
    p.add_argument("--limit", type=int, default=10, metavar="N", help="latest records to show")
    p.add_argument("--since", metavar="WHEN", help="30m, 2h, 7d or an ISO 8601 time")
    p.add_argument(
        "--max-dead", type=int, metavar="N", help="exit 1 if more than N dead letters are read"
    )
    p.add_argument(
        "--replay",
        action="store_true",
        help="re-produce the dead letters of --reason (within --since) to --to-source",
    )
    p.add_argument("--reason", metavar="R", help="reason code to replay")
    p.add_argument(
        "--to-source", action="store_true", help="replay to the topic each record came from"
    )
    return parser


def _health(args: argparse.Namespace, cfg: OpsConfig, out: Callable[[str], None]) -> int:
    from suptech.ops import health

    if bool(args.kube) == bool(args.target):
        print("suptech-ops health: give --target NAME=HOST:PORT ... or --kube", file=sys.stderr)
        return EXIT_USAGE
    if args.kube:
        return _health_kube(args, cfg, out)
    try:
        targets = [health.parse_target(t) for t in args.target]
    except ValueError as exc:
        print(f"suptech-ops: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = health.check_targets(targets, cfg.timeout_s)
    out(
        json.dumps({"targets": [r.to_dict() for r in results]}, indent=2)
        if args.json
        else health.render(results)
    )
    return EXIT_OK if all(r.healthy for r in results) else EXIT_UNHEALTHY


def _health_kube(args: argparse.Namespace, cfg: OpsConfig, out: Callable[[str], None]) -> int:
    from suptech.ops import kube

    namespace = args.namespace or cfg.kube_namespace
    release = args.release or cfg.kube_release
    try:
        cluster = kube.connect(args.context or cfg.kube_context, cfg.kubeconfig)
    except kube.KubeUnavailable as exc:
        print(f"suptech-ops health --kube: {exc}", file=sys.stderr)
        return EXIT_USAGE
    found = kube.discover(cluster, namespace, release, cfg.timeout_s)
    reports = kube.check_health(cluster, namespace, found, cfg.timeout_s)
    if args.json:
        doc = {
            "namespace": namespace,
            "release": release,
            "context": cluster.context,
            "components": [r.to_dict() for r in reports],
        }
        out(json.dumps(doc, indent=2))
    else:
        out(kube.render(reports, namespace, release, cluster.context))
    return EXIT_OK if reports and all(r.healthy for r in reports) else EXIT_UNHEALTHY


def _lag(args: argparse.Namespace, cfg: OpsConfig, out: Callable[[str], None]) -> int:
    from suptech.ops import lag
    from suptech.ops.kafka_clients import open_admin

    groups = args.group or list(cfg.suptech_groups())
    admin = open_admin(cfg.kafka_addr, cfg.timeout_s)
    try:
        lags = lag.group_lags(admin, groups, cfg.topic_prefix)
    finally:
        admin.close()
    over = [
        g.group
        for g in lags
        if args.max_lag is not None and (not g.known or g.total > args.max_lag)
    ]
    if args.json:
        out(json.dumps({"groups": [g.to_dict() for g in lags], "over_max": over}, indent=2))
    else:
        text = lag.render(lags, args.verbose)
        if over:
            text += f"\nover --max-lag {args.max_lag} (or unknown): {', '.join(over)}"
        out(text)
    return EXIT_UNHEALTHY if over else EXIT_OK


def _topics(args: argparse.Namespace, cfg: OpsConfig, out: Callable[[str], None]) -> int:
    from suptech.common.topics import ensure_topics
    from suptech.ops import topics
    from suptech.ops.kafka_clients import open_admin

    created = (
        ensure_topics(cfg.kafka_addr, cfg.topic_prefix, timeout_s=cfg.timeout_s)
        if args.create
        else []
    )
    admin = open_admin(cfg.kafka_addr, cfg.timeout_s)
    try:
        reports = topics.inspect_topics(admin, cfg.topic_prefix)
    finally:
        admin.close()
    if args.json:
        out(json.dumps({"created": created, "topics": [r.to_dict() for r in reports]}, indent=2))
    else:
        text = topics.render(reports)
        if args.create:
            text = f"created {len(created)}: {', '.join(created) or '-'}\n" + text
        out(text)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_UNHEALTHY


def _deadletters(args: argparse.Namespace, cfg: OpsConfig, out: Callable[[str], None]) -> int:
    from suptech.common.topics import DEAD_LETTER, topic_name
    from suptech.ops import deadletters
    from suptech.ops.kafka_clients import open_reader

    if args.replay and not (args.reason and args.to_source):
        print("suptech-ops: --replay needs --reason R and --to-source", file=sys.stderr)
        return EXIT_USAGE
    try:
        since = None if args.since is None else deadletters.parse_since(args.since)
    except ValueError as exc:
        print(f"suptech-ops: {exc}", file=sys.stderr)
        return EXIT_USAGE
    dlq = topic_name(DEAD_LETTER, cfg.topic_prefix)
    consumer = open_reader(cfg.kafka_addr, cfg.timeout_s)
    try:
        records = deadletters.read_dead_letters(consumer, cfg.topic_prefix, since, cfg.timeout_s)
        existing = set(consumer.topics()) if args.replay else set()
    finally:
        consumer.close()
    report = deadletters.summarize(records, dlq, since, args.limit)
    if args.replay:
        return _replay(args, cfg, out, [r for r in records if r.reason == args.reason], existing)
    out(json.dumps(report.to_dict(), indent=2) if args.json else deadletters.render(report))
    if args.max_dead is not None and report.total > args.max_dead:
        return EXIT_UNHEALTHY
    return EXIT_OK


def _replay(
    args: argparse.Namespace,
    cfg: OpsConfig,
    out: Callable[[str], None],
    records: list[DeadLetterRecord],
    existing: set[str],
) -> int:
    from suptech.common.topics import DEAD_LETTER, topic_name
    from suptech.ops.kafka_clients import open_producer
    from suptech.ops.replay import replay

    dlq = topic_name(DEAD_LETTER, cfg.topic_prefix)
    producer = open_producer(cfg.kafka_addr, cfg.timeout_s)
    try:
        done = replay(producer, records, dlq, cfg.topic_prefix, existing, cfg.timeout_s)
    finally:
        producer.close()
    skipped = [d for d in done if d.skipped]
    if args.json:
        out(json.dumps({"reason": args.reason, "replayed": [d.to_dict() for d in done]}, indent=2))
    else:
        lines = [f"replayed {len(done) - len(skipped)} of {len(done)} dead letters ({args.reason})"]
        for d in done:
            where = d.skipped or f"{d.partition}@{d.offset}"
            lines.append(f"  {dlq}@{d.dead_letter_offset} -> {d.to_topic} {where}")
        out("\n".join(lines))
    return EXIT_UNHEALTHY if skipped else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, OpsConfig, Callable[[str], None]], int]] = {
    "health": _health,
    "lag": _lag,
    "topics": _topics,
    "deadletters": _deadletters,
}


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        cfg = load_config()
    except ConfigError as exc:
        print(f"suptech-ops: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout is not None:
        if args.timeout <= 0:
            print("suptech-ops: --timeout must be positive", file=sys.stderr)
            return EXIT_USAGE
        cfg = OpsConfig(**{**vars(cfg), "timeout_s": args.timeout})
    try:
        return COMMANDS[args.command](args, cfg, out)
    except Exception as exc:  # the check could not be made: say why, in one line, exit 3
        print(f"suptech-ops {args.command}: cannot check: {_describe(exc)}", file=sys.stderr)
        return EXIT_CHECK_FAILED


def _describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc)
    # kafka-python's errors already start with their class name.
    return text if text.startswith(name) else f"{name}: {text}" if text else name
