"""``python -m suptech.alerts``: run the alert service until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from suptech.alerts.app import build_alert_service
from suptech.alerts.authz import TokensFileError
from suptech.alerts.config import SETTINGS, AlertsConfig, load_config
from suptech.common.config import ConfigError, exit_if_help
from suptech.common.kafka import KAFKA_SETTINGS
from suptech.common.logging_setup import setup_logging
from suptech.common.metrics import MetricsEndpoint

log = logging.getLogger("suptech.alerts")

USAGE = """usage: python -m suptech.alerts

The regulator's alert service: stores the detector's findings as alerts (grouped, graded,
escalated), serves them to supervisors over gRPC (suptech.v1.AlertService) and delivers
webhooks. Runs until SIGTERM or SIGINT."""


async def _serve(config: AlertsConfig) -> int:
    app = build_alert_service(config)
    endpoint = MetricsEndpoint(app.metrics.registry, config.metrics_port)
    endpoint.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except (ConfigError, TokensFileError):
        raise
    except Exception as e:
        # Kafka or the database not answering: one line saying which, not a 50-line traceback;
        # the supervisor (Kubernetes) restarts the process with its back-off.
        log.error(
            "cannot start: %s: %s (Kafka %s, database %s)",
            type(e).__name__,
            e,
            config.kafka_addr,
            config.db_url.split("@")[-1],
        )
        await app.stop()
        endpoint.stop()
        return 1
    print(f"alerts listening on {app.port}", flush=True)
    assert app.failed is not None
    # A dead findings consumer ends the process (exit 1) for its supervisor to restart it.
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(app.failed.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    await app.stop()
    endpoint.stop()
    if app.failure:
        print(f"alerts stopped: {app.failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def main() -> None:
    exit_if_help(sys.argv[1:], USAGE, (*SETTINGS, *KAFKA_SETTINGS))
    setup_logging("alerts")
    try:
        config = load_config()
        sys.exit(asyncio.run(_serve(config)))
    except (ConfigError, TokensFileError) as e:
        # Refusing to start (no tokens file, a short token, a bad setting) is one clear line.
        print(f"suptech-alerts: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
