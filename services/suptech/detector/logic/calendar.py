"""What institutions declare about themselves: business calendars and planned windows.

A holiday week is not an outage and a declared change window is not a regression. Detectors ask
this module what kind of day an event time is at the institution, and whether it falls in a
window the institution declared in advance.
"""

from __future__ import annotations

import datetime
import zoneinfo

from suptech.v1 import findings_pb2, telemetry_pb2

__all__ = ["BusinessCalendar", "InstitutionContext", "WINDOW_FAMILIES"]

_NS = 1_000_000_000
# Which families a declared window explains: maintenance and changes explain health, silence
# and version regressions; a batch window explains bulk data movement.
WINDOW_FAMILIES: dict[int, frozenset[int]] = {
    telemetry_pb2.WINDOW_KIND_MAINTENANCE: frozenset(
        {findings_pb2.FAMILY_IT_AUTONOMY, findings_pb2.FAMILY_SANDBOX}
    ),
    telemetry_pb2.WINDOW_KIND_CHANGE: frozenset(
        {findings_pb2.FAMILY_IT_AUTONOMY, findings_pb2.FAMILY_SANDBOX}
    ),
    telemetry_pb2.WINDOW_KIND_BATCH: frozenset({findings_pb2.FAMILY_DATA_LEAKAGE}),
}
_MAX_WINDOWS = 1_000


class BusinessCalendar:
    """Time zone, holidays and make-up working days of one institution.

    Examples
    --------
    >>> cal = BusinessCalendar("Asia/Shanghai", ["2026-10-01"], ["2026-10-10"])
    >>> t = lambda s: int(datetime.datetime.fromisoformat(s).timestamp() * 1e9)
    >>> cal.is_rest_day(t("2026-10-01T10:00:00+08:00"))  # National Day
    True
    >>> cal.is_rest_day(t("2026-10-10T10:00:00+08:00"))  # a Saturday worked in exchange
    False
    >>> cal.slot(t("2026-10-12T09:30:00+08:00"))  # a Monday, 9 h local, working day
    9
    """

    __slots__ = ("time_zone", "holidays", "working_days", "_zone")

    def __init__(
        self,
        time_zone: str = "UTC",
        holidays: list[str] | None = None,
        working_days: list[str] | None = None,
    ) -> None:
        self.time_zone = time_zone
        self._zone = zoneinfo.ZoneInfo(time_zone)
        self.holidays = frozenset(holidays or ())
        self.working_days = frozenset(working_days or ())

    def __getstate__(self) -> tuple[str, frozenset[str], frozenset[str]]:
        return self.time_zone, self.holidays, self.working_days

    def __setstate__(self, state: tuple[str, frozenset[str], frozenset[str]]) -> None:
        self.time_zone, self.holidays, self.working_days = state
        self._zone = zoneinfo.ZoneInfo(self.time_zone)

    def local(self, t_ns: int) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(t_ns / _NS, self._zone)

    def is_rest_day(self, t_ns: int) -> bool:
        day = self.local(t_ns)
        iso = day.date().isoformat()
        if iso in self.working_days:
            return False
        return iso in self.holidays or day.weekday() >= 5

    def is_makeup_day(self, t_ns: int) -> bool:
        """A working day declared on what would be a rest day (a weekend day worked in exchange
        for a holiday): office work as on a weekday, customers often as on a weekend."""
        day = self.local(t_ns)
        return day.date().isoformat() in self.working_days and (
            day.weekday() >= 5 or day.date().isoformat() in self.holidays
        )

    def slot(self, t_ns: int) -> int:
        """Local hour of day, plus 24 on a rest day (weekend or holiday, not a make-up day)."""
        return self.local(t_ns).hour + (24 if self.is_rest_day(t_ns) else 0)

    def day_of_month(self, t_ns: int) -> tuple[int, int]:
        """(local day of month, days left in the month): month-end jobs key on these."""
        d = self.local(t_ns).date()
        nxt = (d.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
        return d.day, (nxt - d).days - 1


class _Window:
    __slots__ = ("kind", "start_ns", "end_ns", "systems")

    def __init__(self, kind: int, start_ns: int, end_ns: int, systems: frozenset[str]) -> None:
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.systems = systems


class InstitutionContext:
    """Calendars and declared windows, per institution (only the institution itself sends them:
    the gateway checks that an envelope's institution is the authenticated caller)."""

    def __init__(self, default_time_zone: str = "Asia/Shanghai") -> None:
        self.default = BusinessCalendar(default_time_zone)
        self.calendars: dict[str, BusinessCalendar] = {}
        self.windows: dict[str, dict[str, _Window]] = {}

    def stats(self) -> dict[str, int]:
        return {
            "calendars": len(self.calendars),
            "declared_windows": sum(len(w) for w in self.windows.values()),
        }

    def calendar(self, institution_id: str) -> BusinessCalendar:
        return self.calendars.get(institution_id, self.default)

    def upsert_calendar(self, institution_id: str, msg: telemetry_pb2.BusinessCalendar) -> None:
        """Replace the institution's calendar; ValueError for a time zone that is not IANA's."""
        try:
            calendar = BusinessCalendar(msg.time_zone, list(msg.holidays), list(msg.working_days))
        # A tz database directory ("America") is an OSError, a missing zone a KeyError.
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"calendar time zone {msg.time_zone!r} is unknown") from exc
        self.calendars[institution_id] = calendar

    def upsert_window(self, institution_id: str, msg: telemetry_pb2.MaintenanceWindow) -> None:
        windows = self.windows.setdefault(institution_id, {})
        if msg.cancelled:
            windows.pop(msg.window_id, None)
            return
        windows[msg.window_id] = _Window(
            msg.kind,
            msg.start.ToNanoseconds(),
            msg.end.ToNanoseconds(),
            frozenset(msg.system_ids),
        )
        if len(windows) > _MAX_WINDOWS:
            # Keep the latest-ending windows: old ones explain nothing any more.
            for wid, _ in sorted(windows.items(), key=lambda kv: kv[1].end_ns)[
                : len(windows) - _MAX_WINDOWS
            ]:
                del windows[wid]

    def window_at(
        self, institution_id: str, system_id: str, family: int, t_ns: int, any_kind: bool = False
    ) -> str:
        """Id of a declared window covering ``system_id`` (any, when empty) of the institution
        at ``t_ns`` that explains findings of ``family`` (of any family with ``any_kind``);
        empty when none does."""
        windows = self.windows.get(institution_id)
        if not windows:
            return ""
        for wid, w in windows.items():
            if (
                w.start_ns <= t_ns <= w.end_ns
                and (any_kind or family in WINDOW_FAMILIES.get(w.kind, frozenset()))
                and (not w.systems or not system_id or system_id in w.systems)
            ):
                return wid
        return ""

    def forget_before(self, t_ns: int) -> None:
        """Drop windows that ended before ``t_ns``."""
        for inst, windows in list(self.windows.items()):
            for wid in [k for k, w in windows.items() if w.end_ns < t_ns]:
                del windows[wid]
            if not windows:
                del self.windows[inst]
