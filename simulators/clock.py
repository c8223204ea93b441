"""Simulated event time and the daily/weekly rhythm of activity at a Shenzhen institution.

Everything is in integer microseconds since the Unix epoch (UTC), so that events sort and
serialise exactly; local time is China Standard Time (UTC+8, no daylight saving).
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

__all__ = [
    "CST",
    "DEFAULT_START",
    "HOUR_US",
    "MINUTE_US",
    "DAY_US",
    "SECOND_US",
    "parse_start",
    "local_hour",
    "local_weekday",
    "local_day_start",
    "office_activity",
    "consumer_activity",
    "iso_utc",
    "poisson",
]

CST = timezone(timedelta(hours=8))
DEFAULT_START = "2026-11-02T00:00:00+08:00"
SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
_CST_OFFSET_US = 8 * HOUR_US

# Share of peak activity by local hour. Offices: 9-18 on weekdays with a lunch dip; nights and
# weekends are quiet (a skeleton staff and batch jobs). Consumers (sandbox apps): evening peak.
_WEEKDAY = (
    [0.03] * 7
    + [0.15, 0.45]
    + [1.0, 1.0, 1.0, 0.7, 1.0, 1.0, 1.0, 1.0, 1.0]
    + [0.45, 0.25, 0.15, 0.08, 0.04, 0.03]
)
_WEEKEND = [0.02] * 8 + [0.06] + [0.10] * 11 + [0.06, 0.04, 0.03, 0.02]
_CONSUMER = [0.10, 0.06, 0.04, 0.03, 0.03, 0.05, 0.15, 0.35, 0.55, 0.65, 0.70, 0.75] + [
    0.85,
    0.75,
    0.70,
    0.70,
    0.75,
    0.80,
    0.90,
    1.0,
    1.0,
    0.95,
    0.70,
    0.35,
]


def parse_start(text: str) -> int:
    """ISO 8601 with an offset -> microseconds since the epoch."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"start time needs a UTC offset, e.g. {DEFAULT_START}: {text!r}")
    return int(dt.timestamp()) * SECOND_US + dt.microsecond


def local_hour(t_us: int) -> int:
    return int(((t_us + _CST_OFFSET_US) % DAY_US) // HOUR_US)


def local_weekday(t_us: int) -> int:
    """Monday = 0. 1970-01-01 was a Thursday."""
    return int(((t_us + _CST_OFFSET_US) // DAY_US + 3) % 7)


def local_day_start(t_us: int) -> int:
    """Start of the local (UTC+8) calendar day containing ``t_us``."""
    return t_us - (t_us + _CST_OFFSET_US) % DAY_US


def office_activity(t_us: int) -> float:
    table = _WEEKDAY if local_weekday(t_us) < 5 else _WEEKEND
    return table[local_hour(t_us)]


def consumer_activity(t_us: int) -> float:
    weekend_boost = 1.15 if local_weekday(t_us) >= 5 else 1.0
    return _CONSUMER[local_hour(t_us)] * weekend_boost


def iso_utc(t_us: int) -> str:
    dt = datetime.fromtimestamp(t_us // SECOND_US, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def poisson(rng: random.Random, lam: float) -> int:
    """Poisson sample; Knuth for small means, rounded normal beyond (plenty for a simulator)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
