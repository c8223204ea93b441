"""Logging set-up shared by every service entry point: one format for our loggers, faust's and
kafka-python's, chosen by ``SUPTECH_LOG_FORMAT``.

``text`` (the default) is one line for a human at ``make run``; ``json`` (the chart's) is one
JSON object per line with ``timestamp``, ``level``, ``service``, ``logger``, ``message`` and the
``trace_id``/``span_id`` of the current OpenTelemetry span, so a log line can be joined to its
trace. Kafka clients repeat the same complaint on every reconnect (a gateway on a wrong broker
address printed 123 kafka-python lines in 20 s); :class:`RepeatFilter` lets one line of each
client through per interval and says how many it held back. The service's own line says what is
wrong in words (the gateway: "Kafka does not answer ...").
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from suptech.common.config import ConfigError, env_str

__all__ = [
    "setup_logging",
    "faust_logging",
    "JsonFormatter",
    "RepeatFilter",
    "REPEAT_INTERVAL_S",
    "THROTTLED_LOGGERS",
]

# One line per kind of complaint per this many seconds (a reconnect loop's retry interval).
REPEAT_INTERVAL_S = 10.0
# Loggers of the Kafka clients, which log every reconnect attempt.
THROTTLED_LOGGERS = ("kafka", "aiokafka")
_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (the fields log pipelines index), exception text included."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            doc["trace_id"] = format(ctx.trace_id, "032x")
            doc["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """Lets one record of each Kafka client library through per ``interval_s``; the next one
    let through says how many were held back meanwhile. One reconnect attempt of kafka-python
    logs four lines of three loggers: keyed by library, an outage is one line per interval."""

    def __init__(
        self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        # library -> (time let through, records held back since)
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.name.split(".", 1)[0]
        if key not in THROTTLED_LOGGERS:
            return True
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            held = f" ({last[1]} more {key} lines in the last {now - last[0]:.0f}s)"
            record.msg = f"{record.msg}{held}"
        return True


def _handler(service: str) -> logging.Handler:
    fmt = env_str("SUPTECH_LOG_FORMAT", "text").lower()
    if fmt not in _FORMATS:
        raise ConfigError(f"environment variable SUPTECH_LOG_FORMAT must be json or text: {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(RepeatFilter())
    return handler


def _level() -> str:
    return env_str("SUPTECH_LOG_LEVEL", "INFO").upper()


def setup_logging(service: str) -> None:
    """Install the one handler on the root logger (replacing any), for every library's logger.

    A bad ``SUPTECH_LOG_FORMAT`` ends the process with one line naming it (exit 2).
    """
    try:
        handler = _handler(service)
    except ConfigError as e:
        print(f"suptech-{service}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level())
    # kafka-python is chatty at INFO about every connection.
    logging.getLogger("kafka").setLevel(logging.WARNING)


def faust_logging() -> dict[str, Any]:
    """``faust.Worker`` keyword arguments that keep the root handler :func:`setup_logging`
    installed: faust (mode) otherwise replaces it with its own coloured one at start."""
    root = logging.getLogger()
    return {
        "loglevel": _level(),
        "logging_config": {
            "version": 1,
            # Our loggers exist by then; dictConfig would silence them.
            "disable_existing_loggers": False,
            "root": {"level": _level(), "handlers": []},
        },
        "loghandlers": list(root.handlers),
    }
