"""Reading configuration from environment variables, failing fast with the variable's name.

Each service has one config module built on these helpers; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "Setting",
    "COMMON_SETTINGS",
    "env_str",
    "env_int",
    "env_float",
    "env_bool",
    "settings_help",
    "exit_if_help",
]


class ConfigError(RuntimeError):
    """A required variable is missing or malformed."""


def env_str(name: str, default: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Return the variable, or ``default``; raise :class:`ConfigError` naming it when neither."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"environment variable {name} is required")
        return default
    return value


def env_int(name: str, default: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, None if default is None else str(default), environ)
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None


def env_float(
    name: str, default: float | None = None, environ: Mapping[str, str] | None = None
) -> float:
    raw = env_str(name, None if default is None else str(default), environ)
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, "true" if default else "false", environ).strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"environment variable {name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Setting:
    """One environment variable a service reads, as ``--help`` shows it."""

    name: str
    default: object
    help: str


# Read by suptech.common itself (logging, telemetry), so every service takes them.
COMMON_SETTINGS: tuple[Setting, ...] = (
    Setting("SUPTECH_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting("SUPTECH_LOG_FORMAT", "text", "text (one line for humans) or json (one JSON object)"),
    Setting("SUPTECH_OTEL_CONSOLE", "0", "1: print spans to the console (development)"),
)


def settings_help(settings: Sequence[Setting], common: bool = True) -> str:
    """The settings as ``--help`` prints them: name, default and one line each; ``common``
    adds the logging and telemetry ones every service reads."""
    extra = COMMON_SETTINGS if common else ()
    rows = [*settings, *(c for c in extra if c not in settings)]
    width = max(len(s.name) for s in rows)
    lines = ["environment variables (default in brackets):"]
    for s in rows:
        default = "" if s.default is None else str(s.default)
        lines.append(f"  {s.name:<{width}}  {s.help} [{default or 'unset'}]")
    return "\n".join(lines)


def exit_if_help(argv: Sequence[str], usage: str, settings: Sequence[Setting]) -> None:
    """Print usage and settings and exit 0 on ``-h``/``--help``: before anything connects or
    creates topics, so that asking for help never touches a broker or a database."""
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(f"{usage}\n\n{settings_help(settings)}\n")
        raise SystemExit(0)
