"""``python -m suptech.detector [worker]``: run one detector worker until SIGTERM."""

from __future__ import annotations

import logging
import sys

__all__ = ["main"]

USAGE = """usage: python -m suptech.detector [worker]

The streaming detector: a faust worker reading the telemetry topics, scoring every event and
publishing findings; its state is checkpointed to its state directory and to Kafka."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    from suptech.common.config import exit_if_help
    from suptech.common.kafka import KAFKA_SETTINGS
    from suptech.detector.config import SETTINGS

    exit_if_help(args, USAGE, (*SETTINGS, *KAFKA_SETTINGS))
    if args not in ([], ["worker"]):
        print(USAGE.splitlines()[0], file=sys.stderr)
        return 2

    from suptech.common.config import ConfigError
    from suptech.common.gc_tuning import tune_gc
    from suptech.common.logging_setup import setup_logging
    from suptech.common.metrics import MetricsEndpoint
    from suptech.common.topics import ensure_topics
    from suptech.detector.app import build_app, build_worker
    from suptech.detector.config import DetectorConfig

    setup_logging("detector")
    try:
        config = DetectorConfig.from_env()
    except ConfigError as exc:
        print(f"detector: {exc}", file=sys.stderr)
        return 2
    try:
        ensure_topics(config.kafka_addr, config.topic_prefix)
        detector = build_app(config)
    except Exception as exc:
        # Kafka not answering (or a state directory it cannot use): one line saying so, not a
        # traceback; the supervisor (Kubernetes) restarts the worker with its back-off.
        logging.getLogger("suptech.detector").error(
            "cannot start: %s: %s (Kafka %s)", type(exc).__name__, exc, config.kafka_addr
        )
        return 1
    MetricsEndpoint(detector.metrics.registry, config.metrics_port).start()
    worker = build_worker(detector)
    tune_gc()
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
