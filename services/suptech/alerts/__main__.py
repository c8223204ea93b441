"""``python -m suptech.alerts``: run the alert service until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from suptech.alerts.app import build_alert_service
from suptech.alerts.config import load_config
from suptech.common.logging_setup import setup_logging


async def _serve() -> None:
    app = build_alert_service(load_config())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    print(f"alerts listening on {app.port}", flush=True)
    await stop.wait()
    await app.stop()


def main() -> None:
    setup_logging("alerts")
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
