"""``python -m suptech.console``: serve the console (``CONSOLE_PORT``, ``ALERTS_ADDR``)."""

from __future__ import annotations

import asyncio
import sys

from suptech.console.app import Console
from suptech.console.config import load_config


async def _run() -> None:
    console = Console(load_config())
    await console.start()
    print(f"console listening on http://{console.cfg.host}:{console.port}/", flush=True)
    await asyncio.Event().wait()


def main() -> int:
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
