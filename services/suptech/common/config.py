"""Reading configuration from environment variables, failing fast with the variable's name.

Each service has one config module built on these helpers; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ConfigError", "env_str", "env_int", "env_float", "env_bool"]


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
