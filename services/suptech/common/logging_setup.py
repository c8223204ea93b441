"""Logging set-up shared by every service entry point."""

from __future__ import annotations

import logging
import os

__all__ = ["setup_logging"]


def setup_logging(service: str) -> None:
    level = os.environ.get("SUPTECH_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python is chatty at INFO about every connection.
    logging.getLogger("kafka").setLevel(logging.WARNING)
