"""``python -m suptech.console``: serve the console (``CONSOLE_PORT``, ``ALERTS_ADDR``)."""

from __future__ import annotations

import asyncio
import sys

from suptech.common.config import exit_if_help
from suptech.common.logging_setup import setup_logging
from suptech.common.metrics import MetricsEndpoint, new_registry
from suptech.console.app import Console
from suptech.console.config import SETTINGS, load_config

USAGE = """usage: python -m suptech.console

The supervisors' web console: signs supervisors in with their alert-service token and shows,
triages and streams their alerts. Runs until interrupted."""


async def _run() -> None:
    cfg = load_config()
    console = Console(cfg)
    # Process metrics only (CPU, memory, descriptors): the console's work is the alert service's.
    MetricsEndpoint(new_registry(), cfg.metrics_port).start()
    await console.start()
    print(f"console listening on http://{console.cfg.host}:{console.port}/", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    exit_if_help(sys.argv[1:], USAGE, SETTINGS)
    setup_logging("console")
    try:
        asyncio.run(_run())
    except ValueError as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
