"""Console configuration from environment variables (``CONSOLE_*``, ``ALERTS_ADDR``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from suptech.common.config import Setting

__all__ = ["ConsoleConfig", "SETTINGS", "load_config"]


@dataclass(frozen=True)
class ConsoleConfig:
    # What the console listens on (loopback by default: put a TLS proxy in front to expose it).
    host: str = "127.0.0.1"
    port: int = 8080
    # The alert service's gRPC address, and its TLS: a CA file turns TLS on; a client certificate
    # and key add mutual TLS (the console's own certificate; every call still carries the
    # signed-in supervisor's token, so the service authorises the person, not the console).
    alerts_addr: str = "127.0.0.1:50053"
    alerts_ca: str = ""
    alerts_client_cert: str = ""
    alerts_client_key: str = ""
    # The server name to check in the service's certificate (empty: the host of alerts_addr).
    alerts_server_name: str = ""
    # Default time zone for times shown; each supervisor may pick her own at sign-in.
    time_zone: str = "Asia/Shanghai"
    # Default label language, "zh" or "en".
    language: str = "zh"
    # A signed-in session ends after this much inactivity.
    session_idle_s: float = 8 * 3600
    # Prometheus /metrics (process metrics) on every interface (SUPTECH_METRICS_PORT, 0 = off).
    metrics_port: int = 9467


_D = ConsoleConfig()

SETTINGS: tuple[Setting, ...] = (
    Setting("CONSOLE_HOST", _D.host, "address the web console binds (put TLS in front)"),
    Setting("CONSOLE_PORT", _D.port, "its HTTP port"),
    Setting("ALERTS_ADDR", _D.alerts_addr, "the alert service's gRPC address"),
    Setting("CONSOLE_ALERTS_CA", "", "CA PEM of the alert service (TLS on)"),
    Setting("CONSOLE_ALERTS_CLIENT_CERT", "", "the console's client certificate (mTLS)"),
    Setting("CONSOLE_ALERTS_CLIENT_KEY", "", "its private key"),
    Setting("CONSOLE_ALERTS_SERVER_NAME", "", "name to check in the service's certificate"),
    Setting("CONSOLE_TZ", _D.time_zone, "default time zone of times shown"),
    Setting("CONSOLE_LANG", _D.language, "default label language, zh or en"),
    Setting("SUPTECH_METRICS_PORT", _D.metrics_port, "Prometheus /metrics port (0 = off)"),
)


def load_config(env: Mapping[str, str] | None = None) -> ConsoleConfig:
    """Read the environment; a bad value raises ValueError naming its variable."""
    env = os.environ if env is None else env
    d = ConsoleConfig()
    try:
        port = int(env.get("CONSOLE_PORT", d.port))
    except ValueError:
        raise ValueError("CONSOLE_PORT must be an integer") from None
    tz = env.get("CONSOLE_TZ", d.time_zone)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise ValueError(f"CONSOLE_TZ: unknown time zone {tz!r}") from None
    try:
        metrics_port = int(env.get("SUPTECH_METRICS_PORT", d.metrics_port))
    except ValueError:
        raise ValueError("SUPTECH_METRICS_PORT must be an integer") from None
    lang = env.get("CONSOLE_LANG", d.language)
    if lang not in ("zh", "en"):
        raise ValueError("CONSOLE_LANG must be zh or en")
    ca, cert, key = _tls_files(env)
    return ConsoleConfig(
        host=env.get("CONSOLE_HOST", d.host),
        port=port,
        alerts_addr=env.get("ALERTS_ADDR", d.alerts_addr),
        alerts_ca=ca,
        alerts_client_cert=cert,
        alerts_client_key=key,
        alerts_server_name=env.get("CONSOLE_ALERTS_SERVER_NAME", ""),
        time_zone=tz,
        language=lang,
        metrics_port=metrics_port,
    )


def _tls_files(env: Mapping[str, str]) -> tuple[str, str, str]:
    """CA, client certificate and key, checked now: a console that starts with a missing file
    would fail every sign-in later with only a TLS error to go on."""
    names = ("CONSOLE_ALERTS_CA", "CONSOLE_ALERTS_CLIENT_CERT", "CONSOLE_ALERTS_CLIENT_KEY")
    ca, cert, key = (env.get(n, "").strip() for n in names)
    if bool(cert) != bool(key):
        raise ValueError("CONSOLE_ALERTS_CLIENT_CERT and CONSOLE_ALERTS_CLIENT_KEY go together")
    if cert and not ca:
        raise ValueError(
            "CONSOLE_ALERTS_CLIENT_CERT needs CONSOLE_ALERTS_CA (TLS is off without it)"
        )
    for name, path in zip(names, (ca, cert, key), strict=True):
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ValueError(f"{name}: {path} is not a readable file")
    return ca, cert, key
