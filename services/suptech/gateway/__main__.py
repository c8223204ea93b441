"""``python -m suptech.gateway``: run the ingest gateway until SIGTERM, then drain and stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading

from suptech.common.config import ConfigError, exit_if_help
from suptech.common.gc_tuning import tune_gc
from suptech.common.kafka import KAFKA_SETTINGS
from suptech.common.logging_setup import setup_logging
from suptech.common.metrics import MetricsEndpoint
from suptech.gateway.config import SETTINGS, GatewayConfig, load_config
from suptech.gateway.server import GatewayServer, build_gateway

log = logging.getLogger("suptech.gateway")

USAGE = """usage: python -m suptech.gateway  (or suptech-gateway)

The ingest gateway: authenticates institutions' SDKs, validates their telemetry batches, writes
them to Kafka and acknowledges each batch once Kafka has it. Runs until SIGTERM, then drains."""


async def serve(config: GatewayConfig) -> None:
    server, cleanup = build_gateway(config)
    endpoint = MetricsEndpoint(server.servicer.metrics.registry, config.metrics_port)
    endpoint.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("gateway listening on %d", server.port)
    if server.health_port is not None:
        log.info("gateway plain-text health on %d", server.health_port)
    tune_gc()
    check_kafka(server, config)
    await stop.wait()
    log.info("signal received: draining in-flight batches (grace %.0fs)", config.grace_s)
    await server.stop(config.grace_s)
    await cleanup()
    endpoint.stop()
    log.info("gateway stopped")


def check_kafka(server: GatewayServer, config: GatewayConfig) -> None:
    """Log whether Kafka answers, from a daemon thread: a SIGTERM while Kafka is slow to answer
    drains at once, and the exit does not wait for the check."""

    def run() -> None:
        # Calls fail with UNAVAILABLE while Kafka is away; serving anyway lets the gateway come
        # up before the broker (as pods do) and recover without a restart.
        if not server.servicer.check_kafka():
            log.warning("Kafka at %s not ready: batches fail with UNAVAILABLE", config.kafka_addr)

    threading.Thread(target=run, name="kafka-check", daemon=True).start()


def main() -> None:
    exit_if_help(sys.argv[1:], USAGE, (*SETTINGS, *KAFKA_SETTINGS))
    setup_logging("gateway")
    try:
        config = load_config()
    except ConfigError as e:
        print(f"suptech-gateway: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
