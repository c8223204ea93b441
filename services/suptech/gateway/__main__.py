"""``python -m suptech.gateway``: run the ingest gateway until SIGTERM, then drain and stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from suptech.common.config import ConfigError
from suptech.common.logging_setup import setup_logging
from suptech.gateway.config import GatewayConfig, load_config
from suptech.gateway.server import build_gateway

log = logging.getLogger("suptech.gateway")


async def serve(config: GatewayConfig) -> None:
    server, cleanup = build_gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("gateway listening on %d", server.port)
    if server.health_port is not None:
        log.info("gateway plain-text health on %d", server.health_port)
    # Calls fail with UNAVAILABLE while Kafka is away; serving anyway lets the gateway come up
    # before the broker (as pods do) and recover without a restart.
    if not await asyncio.to_thread(server.servicer.check_kafka):
        log.warning("Kafka at %s not ready: batches fail with UNAVAILABLE", config.kafka_addr)
    await stop.wait()
    log.info("signal received: draining in-flight batches (grace %.0fs)", config.grace_s)
    await server.stop(config.grace_s)
    await cleanup()
    log.info("gateway stopped")


def main() -> None:
    setup_logging("gateway")
    try:
        config = load_config()
    except ConfigError as e:
        print(f"suptech-gateway: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
