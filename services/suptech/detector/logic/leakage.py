"""Data leakage family: volume, rhythm, data class, systems and destinations per actor, against
its own history, in the institution's business calendar.

Every statistic is the entity's own (an actor's volumes, its hourly rhythm per calendar slot,
its rate of exports out of the institution, the data classes it touches per channel, the
systems it uses, a partner's records per query), so one threshold means the same for a clerk
and for a batch job. Nothing an entity does while it is flagged is learned. What the
institution declared (a BATCH window) and what its calendar says (rest days, make-up days,
month and quarter ends) is the context each one is judged in.
"""

from __future__ import annotations

import datetime
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from river import stats

from suptech.detector.logic.access_scorer import AccessScorer
from suptech.detector.logic.calendar import BusinessCalendar, InstitutionContext
from suptech.detector.logic.candidate import Candidate, grade_for
from suptech.detector.logic.category_novelty import CategoryNovelty
from suptech.detector.logic.config import DAY_NS, HOUR_NS, EngineConfig
from suptech.detector.logic.daily_drift import DailyDrift
from suptech.detector.logic.hst import ScaledHalfSpaceTrees
from suptech.detector.logic.idle import LastSeen
from suptech.detector.logic.log_volume import LogVolume
from suptech.detector.logic.recent_evidence import RecentEvidence
from suptech.detector.logic.records_ratio import RecordsPerQuery
from suptech.detector.logic.scores import Score, ScoreLog
from suptech.detector.logic.slot_rate import SlotRate
from suptech.detector.logic.slot_state import PackedSlots
from suptech.detector.logic.system_spread import SystemSpread
from suptech.detector.logic.threshold import update_quantile
from suptech.v1 import findings_pb2, telemetry_pb2

__all__ = ["LeakageFamily", "LeakageConfig"]

FAMILY = findings_pb2.FAMILY_DATA_LEAKAGE
T = telemetry_pb2
_OUTBOUND = frozenset(
    {T.DESTINATION_KIND_PARTNER, T.DESTINATION_KIND_EXTERNAL, T.DESTINATION_KIND_CROSS_BORDER}
)
_FOREIGN = frozenset({T.DESTINATION_KIND_EXTERNAL, T.DESTINATION_KIND_CROSS_BORDER})
_MOVING_OPS = frozenset({T.OPERATION_EXPORT, T.OPERATION_TRANSFER})
_DEST_NAMES = {
    T.DESTINATION_KIND_PARTNER: "partner",
    T.DESTINATION_KIND_EXTERNAL: "external",
    T.DESTINATION_KIND_CROSS_BORDER: "cross-border",
}
_CHANNEL_NAMES: dict[int, str] = {
    T.CHANNEL_API: "API",
    T.CHANNEL_BATCH: "batch",
    T.CHANNEL_CONSOLE: "console",
    T.CHANNEL_PARTNER: "partner",
}
_MAX_DESTINATIONS = 50_000
_MAX_SYSTEMS = 4_096

Emit = Callable[[Candidate], None]
_new_tuple = tuple.__new__


@dataclass(frozen=True)
class LeakageConfig:
    """Settings of the data leakage family that the engine-wide :class:`EngineConfig` lacks."""

    # An actor is watched this long (a weekly cycle) before a data class, channel or system can
    # be new for it; the same for an institution's role peers.
    novelty_warmup_ns: int = 7 * DAY_NS
    # New systems of one actor within this window, at least this many, are a lateral spread.
    spread_window_ns: int = DAY_NS
    spread_min_new: int = 2
    # Daily drift of exports out of the institution: working days in the reference, nats of
    # evidence for an alarm.
    drift_reference_days: int = 3
    drift_h: float = 5.0
    # Records per query of a partner interface: z of an hour's mean, queries in the hour.
    ratio_z: float = 6.0
    ratio_min_queries: int = 5
    # Internal bulk moves on a month's (a quarter's) closing days are judged against a
    # threshold this many times higher: the close is when batch jobs export everything.
    month_close_factor: float = 1.5
    quarter_close_factor: float = 2.0
    # leak.access alarms only on data leaving the institution, from an actor with at least
    # this many outbound accesses learned, and only on the second access within an hour whose
    # tail probability is below access_hot (a single odd query is the tail's own noise).
    access_min_outbound: int = 20
    access_hot: float = 1e-6
    # Smallest deviation of an actor's reading habit (log1p records): it mixes reads of a few
    # records with queries whose result sizes spread about this much.
    read_floor: float = 0.7
    # In an institution's first week a new destination is reported only for a send this many
    # deviations above its usual sends out of the institution.
    young_destination_z: float = 3.0


def _dest_key(pseudonym: str, country: str) -> int:
    # 64 bits of the HMAC are plenty to tell destinations apart and keep the set small.
    if not pseudonym:
        return zlib.crc32(country.encode())
    try:
        return int(pseudonym[:16], 16)
    except ValueError:
        return zlib.crc32(pseudonym.encode()) | (1 << 63)


class _Clock:
    """The institution's current local day, from its calendar: recomputed once a day."""

    __slots__ = ("cal", "lo", "hi", "rest", "day", "dom", "left", "month")

    def __init__(self) -> None:
        self.cal: BusinessCalendar | None = None
        self.lo = self.hi = 0
        self.rest = False
        self.day = self.dom = self.left = self.month = 0

    def set(self, cal: BusinessCalendar, t: int) -> None:
        local = cal.local(t)
        date = local.date()
        zone = local.tzinfo
        midnight = datetime.datetime(date.year, date.month, date.day, tzinfo=zone)
        nxt = date + datetime.timedelta(days=1)
        self.cal = cal
        self.lo = int(midnight.timestamp()) * 1_000_000_000
        self.hi = int(datetime.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp())
        self.hi *= 1_000_000_000
        self.rest = cal.is_rest_day(t)
        self.day = date.toordinal()
        self.dom, self.left = cal.day_of_month(t)
        self.month = date.month


class _Actor(PackedSlots):
    """Per-actor state: a handful of small detectors, most created when first needed (pickled
    as tuples: ``slot_state.PackedSlots``, a million of them are restored at a takeover)."""

    __slots__ = (
        "read",
        "move",
        "q",
        "rate",
        "access",
        "session",
        "classes",
        "system0",
        "spread",
        "drift",
        "ratio",
        "frozen_until",
        "day",
        "day_rest",
        "day_n",
        "quiet_work",
        "quiet_rest",
        "day_flagged",
        "outbound_n",
        "ratio_hour",
        "hot_ns",
    )

    def __init__(self, cfg: EngineConfig, lc: LeakageConfig) -> None:
        # Reading and moving data are different habits: one baseline each.
        self.read = LogVolume(alpha=0.02, clip=3.0, floor=lc.read_floor)
        self.move: LogVolume | None = None
        self.q = 0.0
        self.rate = SlotRate(cfg.rate_ratio, cfg.rate_min_events, 0.2, cfg.rate_warmup_hours)
        # Multivariate per-event score of the actor's accesses (the per-event anomaly score).
        self.access = AccessScorer()
        # The evidence of its recent accesses, carried forward: the published per-event score.
        self.session = RecentEvidence()
        self.classes = CategoryNovelty(lc.novelty_warmup_ns)
        # The one system the actor has used; systems tracked once it uses a second.
        self.system0 = -1
        self.spread: SystemSpread | None = None
        # Exports out of the institution per working day, once the actor made one.
        self.drift: DailyDrift | None = None
        # Records per query, for a partner interface.
        self.ratio: RecordsPerQuery | None = None
        self.frozen_until = 0
        # The local day being counted (its ordinal; a rest day?), its exports out; days (working,
        # rest) counted before the first export out.
        self.day = -1
        self.day_rest = False
        self.day_n = 0
        self.quiet_work = 0
        self.quiet_rest = 0
        # The current day already produced a drift finding.
        self.day_flagged = False
        self.outbound_n = 0
        self.ratio_hour = -1
        # When the actor last sent out an access with a tail probability below access_hot.
        self.hot_ns = -HOUR_NS


class _System:
    __slots__ = ("vol", "q", "frozen_until")

    def __init__(self) -> None:
        self.vol = LogVolume(alpha=0.01, clip=3.0, floor=0.5)
        self.q = 0.0
        self.frozen_until = 0


class _Institution:
    __slots__ = (
        "first_ns",
        "destinations",
        "hst",
        "hst_q",
        "hst_n",
        "clock",
        "roles",
        "systems",
        "peer_days",
    )

    def __init__(self, first_ns: int) -> None:
        self.first_ns = first_ns
        self.destinations: set[int] = set()
        self.hst: ScaledHalfSpaceTrees | None = None
        self.hst_q: Any = None
        self.hst_n = 0
        self.clock = _Clock()
        # Data classes per channel and direction that each role has touched here.
        self.roles: dict[int, CategoryNovelty] = {}
        # System id -> its bit in the actors' system masks.
        self.systems: dict[str, int] = {}
        # Per role: working days its actors were counted, and their exports out on them.
        self.peer_days: dict[int, list[float]] = {}


class LeakageFamily:
    """Every data-access detector, per actor, system and institution; see the module."""

    def __init__(
        self,
        cfg: EngineConfig,
        scores: ScoreLog | None = None,
        context: InstitutionContext | None = None,
        settings: LeakageConfig | None = None,
    ) -> None:
        self.cfg = cfg
        self.lcfg = settings or LeakageConfig()
        self.scores = scores or ScoreLog(False)
        self.context = context or InstitutionContext(cfg.default_time_zone)
        self.actors: dict[tuple[str, str], _Actor] = {}
        self.systems: dict[tuple[str, str], _System] = {}
        self.institutions: dict[str, _Institution] = {}
        # Data classes per channel and direction each role has touched at any institution this
        # worker sees (the peers of the peers), and the records each role sends out of them.
        self.roles: dict[int, CategoryNovelty] = {}
        self.sends: dict[int, LogVolume] = {}
        # When each actor and system was last seen, so that long-idle ones can be forgotten.
        self.actors_seen: LastSeen[tuple[str, str]] = LastSeen()
        self.systems_seen: LastSeen[tuple[str, str]] = LastSeen()
        self.evicted = 0

    def stats(self) -> dict[str, int]:
        return {
            "actors": len(self.actors),
            "data_systems": len(self.systems),
            "data_entities_evicted": self.evicted,
        }

    def upgrade(self, now_ns: int = 0) -> None:
        """Fill what an older snapshot of the same shape lacks: since version 7, when each actor
        and system was last seen (taken as ``now_ns``, the snapshot's last event time); each
        actor's carried session evidence."""
        if not hasattr(self, "actors_seen"):
            self.actors_seen = LastSeen()
            self.systems_seen = LastSeen()
            self.evicted = 0
            for key in self.actors:
                self.actors_seen.touch(key, now_ns)
            for key in self.systems:
                self.systems_seen.touch(key, now_ns)
        # Before the session score, an actor had no carried evidence: it starts with none.
        for actor in self.actors.values():
            if not hasattr(actor, "session"):
                actor.session = RecentEvidence()

    def evict_idle(self, before_ns: int) -> int:
        """Forget actors and systems not seen since ``before_ns``; return how many."""
        n = 0
        for key in self.actors_seen.pop_idle(before_ns):
            n += self.actors.pop(key, None) is not None
        for key in self.systems_seen.pop_idle(before_ns):
            n += self.systems.pop(key, None) is not None
        self.evicted += n
        return n

    # --- the event ----------------------------------------------------------------------------

    def process(self, env: telemetry_pb2.TelemetryEnvelope, t: int, emit: Emit) -> None:
        # It runs for every data access: each field is read once, and the detectors' routine
        # outcome (nothing to report) is decided here, their methods called only when they may
        # report or when they have more than a step to do.
        cfg = self.cfg
        da = env.data_access
        inst_id = env.institution_id
        actor_id = da.actor_pseudonym
        records = da.records
        bytes_out = da.bytes_out
        dk = da.destination_kind
        op = da.operation
        channel = da.channel
        outbound = dk in _OUTBOUND
        foreign = dk in _FOREIGN
        fields = da.fields
        n_c1 = fields.c1
        n_c2 = fields.c2
        n_c3 = fields.c3
        data_class = env.classification.data_class
        c3 = n_c3 > 0 or data_class == T.DATA_CLASS_C3

        inst = self.institutions.get(inst_id)
        if inst is None:
            inst = self.institutions[inst_id] = _Institution(t)
        clock = inst.clock
        cal = self.context.calendar(inst_id)
        if cal is not clock.cal or not clock.lo <= t < clock.hi:
            clock.set(cal, t)
        local_hour = (t - clock.lo) // HOUR_NS
        if local_hour > 23:
            local_hour = 23  # the 25-hour day a clock change makes
        slot = local_hour + 24 if clock.rest else local_hour

        # Hard rule: authentication-class data never leaves the institution.
        reported = c3 and outbound
        if reported:
            emit(
                self._actor_finding(
                    env, t, "leak.c3_outbound", True, float(n_c3 or 1), 0.0,
                    findings_pb2.GRADE_CRITICAL,
                    f"C3 authentication data ({n_c3} fields, {records} records) sent to a "
                    f"{_DEST_NAMES.get(dk, 'foreign')} destination from {da.system_id}",
                    [("c3_fields", float(n_c3), 0.0, 1.0)],
                )
            )  # fmt: skip

        new_destination = False
        if foreign:
            new_destination, alarmed = self._new_destination(env, inst, t, emit)
            reported = reported or alarmed

        key = (inst_id, actor_id)
        actor = self.actors.get(key)
        if actor is None:
            actor = self.actors[key] = _Actor(cfg, self.lcfg)
        self.actors_seen.touch(key, t)
        frozen = t < actor.frozen_until
        moving = outbound or op in _MOVING_OPS
        lr = math.log1p(records)
        lb = math.log1p(bytes_out)

        # The actor's reading or moving habit (records and bytes of one access).
        if moving:
            vol = actor.move
            if vol is None:
                vol = actor.move = LogVolume(alpha=0.05, clip=3.0, floor=0.5)
            warm = vol.n >= cfg.warmup_moves
        else:
            vol = actor.read
            warm = vol.n >= cfg.warmup_events
        score = vol.score(lr, lb)
        q = actor.q
        thr = cfg.z_threshold
        if q > thr:
            thr = q
        flagged = False
        if warm and score > thr:
            flagged = self._volume(env, vol, t, moving, outbound, lr, lb, score, thr, clock, emit)
        elif not frozen:
            vol.learn(lr, lb)
            if warm:
                actor.q = update_quantile(q, score, cfg.false_alarm_budget, 0.05)
        flagged = flagged or reported
        abs_hour = t // HOUR_NS
        rate = actor.rate
        if abs_hour == rate.hour:
            count = rate.count = rate.count + 1
        else:
            count = rate.add(abs_hour, slot)
        if count > rate.cap:
            flagged = self._rate(env, actor, t, count, slot, emit) or flagged
        if outbound and cfg.off_hours_start <= local_hour < cfg.off_hours_end:
            flagged = self._off_hours(env, actor, t, local_hour, emit) or flagged
        if channel == T.CHANNEL_PARTNER and op == T.OPERATION_QUERY:
            flagged = self._ratio(env, actor, t, abs_hour, flagged or frozen, emit) or flagged
        system_id = da.system_id
        systems = inst.systems
        idx = systems.get(system_id)
        if idx is None and len(systems) < _MAX_SYSTEMS:
            idx = systems[system_id] = len(systems)
        if idx is not None:
            spread = actor.spread
            if spread is None:
                if actor.system0 < 0:
                    actor.system0 = idx
                elif idx != actor.system0:
                    lc = self.lcfg
                    spread = actor.spread = SystemSpread(
                        lc.novelty_warmup_ns, lc.spread_window_ns, lc.spread_min_new
                    )
                    first = actor.classes.first_ns
                    spread.first_ns = first if first >= 0 else t
                    spread.mask = 1 << actor.system0
            if spread is not None and not spread.mask >> idx & 1:
                flagged = self._spread(env, spread, t, idx, emit) or flagged
        if flagged:
            actor.frozen_until = t + cfg.coalesce_window_ns
        elif foreign and not frozen and not c3:
            # What actors of this role send out, learned from actors not under suspicion.
            sends = self.sends.get(int(da.actor_role))
            if sends is not None:
                sends.learn(lr, lr)
        # Data classes by channel and direction: bit 6 * channel + 2 * class + outbound.
        base = channel * 6 + (1 if outbound else 0)
        bits = (
            (1 << base if n_c1 else 0)
            | (1 << base + 2 if n_c2 else 0)
            | (1 << base + 4 if n_c3 else 0)
        )
        if not bits and data_class:
            bits = 1 << base + 2 * (data_class - 1)
        if bits & ~actor.classes.mask:
            self._classes(env, inst, actor, t, bits, base, outbound, emit)
        if foreign or clock.day != actor.day:
            self._drift(env, inst, actor, int(da.actor_role), t, clock, foreign, emit)
        if outbound:
            actor.outbound_n += 1
        bytes_in = da.bytes_in
        duration_ms = da.duration_ms
        log1p = math.log1p
        # log1p of the scorer's count features (COUNT_FEATURES), its flags as bits.
        logs = (
            lr,
            lb,
            log1p(bytes_in) if bytes_in > 0 else 0.0,
            log1p(duration_ms / 1000.0) if duration_ms > 0 else 0.0,
            log1p(n_c1) if n_c1 > 0 else 0.0,
            log1p(n_c2) if n_c2 > 0 else 0.0,
            log1p(n_c3) if n_c3 > 0 else 0.0,
        )
        hits = (1 if outbound else 0) | (2 if new_destination else 0)
        self._access_score(
            env, da, key, actor, t, logs, hits, outbound, flagged or frozen or reported, emit
        )
        if moving:
            self._system(env, lr, lb, t, actor, flagged, emit)
        if outbound and cfg.hst_enabled:
            self._hst(inst, env, lr, lb, c3, local_hour, t, flagged, emit)

    def _actor_finding(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        t: int,
        detector: str,
        is_rule: bool,
        score: float,
        threshold: float,
        grade: int,
        summary: str,
        contributions: list[tuple[str, float, float, float]],
    ) -> Candidate:
        da = env.data_access
        inst_id = env.institution_id
        return Candidate(
            family=FAMILY,
            institution_id=inst_id,
            entity_kind="actor",
            entity_id=da.actor_pseudonym,
            detector_id=detector,
            is_rule=is_rule,
            score=score,
            threshold=threshold,
            grade=grade,
            summary=summary,
            event_time_ns=t,
            evidence=[env.event_id],
            contributions=contributions,
            # A window the institution declared for the event's system (the engine grades the
            # finding down and says so; an actor's finding does not name the system).
            declared_window_id=self.context.window_at(inst_id, da.system_id, FAMILY, t),
        )

    # --- the detectors ------------------------------------------------------------------------

    def _new_destination(
        self, env: telemetry_pb2.TelemetryEnvelope, inst: _Institution, t: int, emit: Emit
    ) -> tuple[bool, bool]:
        """A destination outside the institution it never sent to: a rule after its first day.
        Returns (new, reported).
        In its first week the institution's list of external destinations is still filling (a
        weekly transfer shows on its day), so then only a send far bigger than what actors of its
        role send out of any institution counts; a new cross-border destination always does."""
        da = env.data_access
        key = _dest_key(da.destination_pseudonym, da.destination_country)
        role = int(da.actor_role)
        foreign = self.sends.get(role)
        if foreign is None:
            foreign = self.sends[role] = LogVolume(alpha=0.01, clip=3.0, floor=0.5)
        lr = math.log1p(da.records)
        known = key in inst.destinations
        if known:
            return False, False
        alarm = False
        cross = da.destination_kind == T.DESTINATION_KIND_CROSS_BORDER
        age = t - inst.first_ns
        if age >= DAY_NS:
            # A new cross-border destination needs a security assessment whatever its size.
            alarm = cross or age >= self.lcfg.novelty_warmup_ns
            if not alarm and foreign.n >= 3:
                alarm = foreign.score(lr, lr) >= self.lcfg.young_destination_z
        if alarm:
            where = f"cross-border ({da.destination_country or '?'})" if cross else "external"
            emit(
                self._actor_finding(
                    env, t, "leak.new_destination", True, float(da.records), 0.0,
                    findings_pb2.GRADE_MAJOR if cross else findings_pb2.GRADE_SIGNIFICANT,
                    f"First {where} destination of the institution: {da.records} records from "
                    f"{da.system_id}",
                    [("records", float(da.records), 0.0, 1.0)],
                )
            )  # fmt: skip
        if len(inst.destinations) < _MAX_DESTINATIONS:
            inst.destinations.add(key)
        return True, alarm

    def _close_factor(self, clock: _Clock) -> float:
        """How much more an internal bulk move may be on a month's closing days."""
        if clock.left == 0:
            quarter = clock.month % 3 == 0
        elif clock.dom == 1:
            quarter = clock.month % 3 == 1
        else:
            return 1.0
        lc = self.lcfg
        return lc.quarter_close_factor if quarter else lc.month_close_factor

    def _volume(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        vol: LogVolume,
        t: int,
        moving: bool,
        outbound: bool,
        lr: float,
        lb: float,
        score: float,
        thr: float,
        clock: _Clock,
        emit: Emit,
    ) -> bool:
        """Records and bytes of one access past the threshold of the actor's reading or moving
        habit (``vol``, warmed up): reported, unless it is an internal bulk move that the
        month's close or a declared window explains (neither reported nor learned)."""
        da = env.data_access
        if moving and not outbound:
            if score <= thr * self._close_factor(clock):
                return False
            if self.context.window_at(env.institution_id, da.system_id, FAMILY, t):
                return False
        x = {"records": lr, "bytes": lb}
        emit(
            self._actor_finding(
                env, t, "leak.actor_volume", False, score, thr, grade_for(score, thr),
                f"{_op_name(da.operation)} of {da.records} records ({da.bytes_out} bytes) "
                f"from {da.system_id}, about {math.expm1(vol.baseline('records')):.0f} "
                f"normal for this actor",
                [
                    (k, math.expm1(x[k]), math.expm1(vol.baseline(k)), v)
                    for k, v in vol.contributions(x).items()
                ],
            )
        )  # fmt: skip
        return True

    def _rate(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        actor: _Actor,
        t: int,
        count: int,
        slot: int,
        emit: Emit,
    ) -> bool:
        """Accesses in this clock hour (``count``, more than the hour may hold) against the
        actor's normal for this hour of its week."""
        rate = actor.rate
        limit = rate.cap
        rate.mark_over()
        if count - 1 > limit:
            return True  # already reported this hour
        da = env.data_access
        expected = rate.expected(slot)
        day = "rest day" if slot >= 24 else "working day"
        emit(
            self._actor_finding(
                env, t, "leak.actor_rate", False, float(count), limit, grade_for(count, limit),
                f"{count} data accesses within this hour from {da.system_id} (last "
                f"{da.records} records), about {expected:.0f} normal for this actor at "
                f"{slot % 24:02d}:00 on a {day}",
                [("events_per_hour", float(count), expected, 1.0)],
            )
        )  # fmt: skip
        return True

    def _off_hours(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        actor: _Actor,
        t: int,
        local_hour: int,
        emit: Emit,
    ) -> bool:
        """Data sent out at night by an actor who is (almost) never active at night."""
        cfg = self.cfg
        da = env.data_access
        if da.records < cfg.off_hours_min_records:
            return False
        move_n = actor.move.n if actor.move is not None else 0
        if actor.read.n + move_n < cfg.warmup_events:
            return False
        night = range(cfg.off_hours_start, cfg.off_hours_end)
        share = actor.rate.share(night)
        if share * 100 >= 1.0:
            return False
        emit(
            self._actor_finding(
                env, t, "leak.off_hours", True, float(da.records), 0.0,
                findings_pb2.GRADE_SIGNIFICANT,
                f"{_op_name(da.operation)} of {da.records} records at {local_hour:02d}:00 local "
                f"time by an actor with {share:.1%} of its activity at night",
                [("night_share", 1.0, share, 1.0)],
            )
        )  # fmt: skip
        return True

    def _classes(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        inst: _Institution,
        actor: _Actor,
        t: int,
        bits: int,
        base: int,
        outbound: bool,
        emit: Emit,
    ) -> None:
        """A data class on a channel (and direction) that neither the actor nor any actor of
        its role, here or elsewhere, ever used: C3 in a batch feed, C2 in a C1-only export.
        ``bits`` are the event's categories, some new to the actor (what the actor has seen,
        its peers have seen too)."""
        da = env.data_access
        channel = int(da.channel)
        mine = actor.classes
        fresh = bits & ~mine.mask
        role = int(da.actor_role)
        peers = inst.roles.get(role)
        if peers is None:
            peers = inst.roles[role] = CategoryNovelty(self.lcfg.novelty_warmup_ns)
            peers.first_ns = inst.first_ns
        fleet = self.roles.get(role)
        if fleet is None:
            fleet = self.roles[role] = CategoryNovelty(self.lcfg.novelty_warmup_ns)
            fleet.first_ns = t
        if fresh and mine.warm(t) and peers.warm(t):
            # New for the actor, its role at the institution and its role anywhere: a rare
            # but routine class (an administrator's credential reset) is not new to the role.
            new = fresh & ~peers.mask & ~fleet.mask
            if new:
                cls_i = (new.bit_length() - 1 - base) // 2
                name = ("C1", "C2", "C3")[min(cls_i, 2)]
                where = _CHANNEL_NAMES.get(channel, "unspecified") + " channel"
                way = " out of the institution" if outbound else ""
                grade = (
                    findings_pb2.GRADE_MAJOR
                    if cls_i >= 2 or (cls_i == 1 and outbound)
                    else findings_pb2.GRADE_SIGNIFICANT
                )
                emit(
                    self._actor_finding(
                        env, t, "leak.new_data_class", True, float(da.records), 0.0, grade,
                        f"{name} data through the {where}{way} ({da.records} records from "
                        f"{da.system_id}): never before for this actor, nor for any "
                        f"{_role_name(role)} here or elsewhere",
                        [(f"{name.lower()}_fields", 1.0, 0.0, 1.0)],
                    )
                )  # fmt: skip
        if fresh:
            if mine.first_ns < 0:
                mine.first_ns = t
            mine.mask |= bits
        if bits & ~peers.mask:
            peers.mask |= bits
        if bits & ~fleet.mask:
            fleet.mask |= bits

    def _spread(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        spread: SystemSpread,
        t: int,
        idx: int,
        emit: Emit,
    ) -> bool:
        """Several systems the actor never touched, within a day: a lateral spread (``idx``,
        the event's system, is new to the actor)."""
        system_id = env.data_access.system_id
        score = spread.score(t, idx)
        spread.add(t, idx)
        if score < 1.0:
            return False
        n = round(score * spread.min_new)
        emit(
            self._actor_finding(
                env, t, "leak.lateral_spread", False, float(n), float(spread.min_new),
                grade_for(n, spread.min_new),
                f"{n} systems this actor never used touched within "
                f"{spread.window_ns // HOUR_NS} hours (latest {system_id})",
                [("new_systems", float(n), 0.0, 1.0)],
            )
        )  # fmt: skip
        return True

    def _ratio(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        actor: _Actor,
        t: int,
        abs_hour: int,
        frozen: bool,
        emit: Emit,
    ) -> bool:
        """Records per query of a partner interface this hour against its own reference."""
        ratio = actor.ratio
        if ratio is None:
            ratio = actor.ratio = RecordsPerQuery(min_queries=self.lcfg.ratio_min_queries)
        records = env.data_access.records
        ratio.add(abs_hour, records)
        z = ratio.z()
        thr = self.lcfg.ratio_z
        if z < thr:
            if not frozen:
                ratio.learn(records)
            return False
        if actor.ratio_hour != abs_hour:
            actor.ratio_hour = abs_hour
            emit(
                self._actor_finding(
                    env, t, "leak.records_ratio", False, z, thr, grade_for(z, thr),
                    f"{ratio.hour_mean():.0f} records per query this hour from "
                    f"{env.data_access.system_id}, about {ratio.reference():.0f} normal for "
                    f"this interface, at its usual query rate",
                    [("records_per_query", ratio.hour_mean(), ratio.reference(), 1.0)],
                )
            )  # fmt: skip
        return True

    def _drift(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        inst: _Institution,
        actor: _Actor,
        role: int,
        t: int,
        clock: _Clock,
        foreign: bool,
        emit: Emit,
    ) -> None:
        """Exports out of the institution per local day against the actor's frozen rate for
        that kind of day (working or rest), shrunk towards its role peers' rate: a few a day
        more, for days on end."""
        if clock.day == actor.day and not foreign:
            return
        peers = inst.peer_days.get(role)
        if peers is None:
            peers = inst.peer_days[role] = [0.0, 0.0]
        if clock.day != actor.day:
            if clock.day < actor.day:
                return  # a late event of a day already closed
            self._close_days(actor, clock, peers)
        if not foreign:
            return
        actor.day_n += 1
        drift = actor.drift
        if drift is None:
            drift = actor.drift = DailyDrift(
                h=self.lcfg.drift_h, reference_days=self.lcfg.drift_reference_days
            )
            drift.prime(actor.quiet_work, actor.quiet_rest)
        prior = _peer_rate(peers)
        score = drift.score(actor.day_n, clock.rest, prior)
        if score < 1.0 or actor.day_flagged:
            return
        actor.day_flagged = True
        da = env.data_access
        rate = drift.rate(clock.rest, prior)
        emit(
            self._actor_finding(
                env, t, "leak.slow_drip", False, score, 1.0, grade_for(score, 1.0),
                f"Exports out of the institution have run above this actor's normal for days "
                f"({actor.day_n} today, last {da.records} records from {da.system_id}; normal "
                f"{rate:.1f} a {'rest' if clock.rest else 'working'} day)",
                [("exports_out_per_day", float(actor.day_n), rate, 1.0)],
            )
        )  # fmt: skip

    def _close_days(self, actor: _Actor, clock: _Clock, peers: list[float]) -> None:
        """Learn the day being counted, and the days without events since (a week at most);
        count the working ones for the actor's peers."""
        if actor.day >= 0:
            cal = clock.cal
            days = [(actor.day_n, actor.day_rest)]
            for back in range(min(clock.day - actor.day, 8) - 1, 0, -1):
                noon = clock.lo - back * DAY_NS + 12 * HOUR_NS
                days.append((0, cal is not None and cal.is_rest_day(noon)))
            drift = actor.drift
            prior = _peer_rate(peers)
            for k, (n, rest) in enumerate(days):
                if not rest:
                    peers[0] += 1.0
                    peers[1] += n
                if drift is not None:
                    drift.learn(n, rest, prior)
                    if k == 0 and actor.day_flagged:
                        drift.reset()
                elif rest:
                    actor.quiet_rest += 1
                else:
                    actor.quiet_work += 1
        actor.day = clock.day
        actor.day_rest = clock.rest
        actor.day_n = 0
        actor.day_flagged = False

    def _access_score(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        da: telemetry_pb2.DataAccessEvent,
        key: tuple[str, str],
        actor: _Actor,
        t: int,
        logs: tuple[float, ...],
        hits: int,
        outbound: bool,
        flagged: bool,
        emit: Emit,
    ) -> None:
        """Score the event against the actor's multivariate habit (every access, on the scores
        log, as the session's tail probability: the accesses just after a glaring one share its
        suspicion). Alarm only on data leaving the institution that the other detectors of this
        event did not already report, from an actor whose outbound habit is known, on the
        access's own tail probability; learn only what was not flagged. ``logs`` and ``hits``
        are the event as :meth:`AccessScorer.log_tail_logs` takes it."""
        scorer = actor.access
        thr = self.cfg.access_alarm_score
        alarm = False
        if not (outbound or flagged):
            # Nothing to alarm on, the event is learnt: one step.
            lp, expected = scorer.log_tail_learn(logs, hits)
        else:
            lp = scorer.log_tail_logs(logs, hits)
            score = -math.expm1(lp)
            if outbound and score >= 1.0 - self.lcfg.access_hot:
                alarm = (
                    score >= thr
                    and t - actor.hot_ns <= HOUR_NS
                    and not flagged
                    and scorer.n >= scorer.warmup
                    and actor.outbound_n > self.lcfg.access_min_outbound
                )
                actor.hot_ns = t
            expected = scorer.baseline_count(0)
            if not (alarm or flagged):
                scorer.learn_logs(logs, hits)
        session_lp = actor.session.learn_log_tail(lp)
        scores = self.scores
        if scores.enabled:
            # tuple.__new__: a third of the time of Score(...), which checks its arguments.
            scores.add(
                _new_tuple(Score, (
                    key[0], "actor", key[1], "leak.access", env.event_id, t,
                    -math.expm1(session_lp), thr, float(da.records), expected, alarm or flagged,
                ))
            )  # fmt: skip
        if not alarm:
            return
        x = _access_features(da, hits)
        top = sorted(scorer.contributions(x).items(), key=lambda kv: -kv[1])[:3]
        tail = 1.0 - score
        grade = findings_pb2.GRADE_SIGNIFICANT if tail < 1e-7 else findings_pb2.GRADE_GENERAL
        emit(
            self._actor_finding(
                env, t, "leak.access", False, score, thr, grade,
                f"{_op_name(da.operation)} of {da.records} records ({da.bytes_out} bytes out) "
                f"from {da.system_id} unlike this actor's accesses, mostly in "
                + ", ".join(k for k, _ in top)
                + f" (tail probability {max(tail, 0.0):.1e})",
                [(k, x.get(k, 0.0), scorer.baseline(k), w) for k, w in top],
            )
        )  # fmt: skip

    def _system(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        lr: float,
        lb: float,
        t: int,
        actor: _Actor,
        actor_flagged: bool,
        emit: Emit,
    ) -> None:
        """Data moved out of a system (an export, a transfer, anything outbound) against what
        the system's actors move out of it: the judge of a move whose actor has no habit of
        moving data yet."""
        cfg = self.cfg
        da = env.data_access
        system_id = da.system_id
        inst_id = env.institution_id
        sysm = self.systems.get((inst_id, system_id))
        if sysm is None:
            sysm = self.systems[(inst_id, system_id)] = _System()
        self.systems_seen.touch((inst_id, system_id), t)
        score = sysm.vol.score(lr, lb)
        thr = max(cfg.z_threshold, sysm.q)
        if sysm.vol.n >= cfg.warmup_events and score > thr:
            sysm.frozen_until = t + cfg.coalesce_window_ns
            # The actor's own model speaks for an actor with a history; the system covers a
            # move its actor's habit could not judge (nothing learned of it yet).
            if (actor.move is None or actor.move.n == 0) and not actor_flagged:
                normal = math.expm1(sysm.vol.baseline("records"))
                emit(
                    Candidate(
                        family=FAMILY,
                        institution_id=inst_id,
                        entity_kind="system",
                        entity_id=system_id,
                        detector_id="leak.system_volume",
                        is_rule=False,
                        score=score,
                        threshold=thr,
                        grade=grade_for(score, thr),
                        summary=f"{_op_name(da.operation)} of {da.records} records from "
                        f"{system_id}, far above its normal {normal:.0f}",
                        event_time_ns=t,
                        evidence=[env.event_id],
                        contributions=[("records", float(da.records), normal, 1.0)],
                    )
                )
        elif t >= sysm.frozen_until:
            sysm.vol.learn(lr, lb)
            if sysm.vol.n > cfg.warmup_events:
                sysm.q = update_quantile(sysm.q, score, cfg.false_alarm_budget, 0.05)

    def _hst(
        self,
        inst: _Institution,
        env: telemetry_pb2.TelemetryEnvelope,
        lr: float,
        lb: float,
        c3: bool,
        hour: int,
        t: int,
        flagged: bool,
        emit: Emit,
    ) -> None:
        cfg = self.cfg
        if inst.hst is None:
            inst.hst = ScaledHalfSpaceTrees(
                n_trees=cfg.hst_trees,
                height=cfg.hst_height,
                window_size=cfg.hst_window,
                seed=cfg.seed,
            )
            inst.hst_q = stats.Quantile(cfg.hst_quantile)
        hx = {
            "records": lr,
            "bytes": lb,
            "dest": float(env.data_access.destination_kind),
            "hour": float(hour),
            "c3": 1.0 if c3 else 0.0,
        }
        score = inst.hst.score_one(hx)
        thr = inst.hst_q.get() if inst.hst_n >= cfg.hst_warmup else None
        if thr is not None and score > thr and score > 0.0:
            emit(
                self._actor_finding(
                    env, t, "leak.hst", False, score, thr, findings_pb2.GRADE_GENERAL,
                    "Outbound transfer unlike the institution's recent outbound traffic",
                    [(k, v, 0.0, 1.0) for k, v in hx.items()],
                )
            )  # fmt: skip
            return
        if not flagged:
            inst.hst.learn_one(hx)
            inst.hst_q.update(score)
            inst.hst_n += 1


def _access_features(da: telemetry_pb2.DataAccessEvent, hits: int) -> dict[str, float]:
    """The access as the scorer's features (FEATURES), for the explanation of an alarm."""
    fields = da.fields
    return {
        "records": float(da.records),
        "bytes_out": float(da.bytes_out),
        "bytes_in": float(da.bytes_in),
        "duration_s": da.duration_ms / 1000.0,
        "c1": float(fields.c1),
        "c2": float(fields.c2),
        "c3": float(fields.c3),
        "outbound": 1.0 if hits & 1 else 0.0,
        "new_destination": 1.0 if hits & 2 else 0.0,
    }


def _peer_rate(peers: list[float]) -> float | None:
    """Exports out of the institution per working day of a role's actors (None until known)."""
    return peers[1] / peers[0] if peers[0] >= 20.0 else None


def _op_name(op: int) -> str:
    name = T.Operation.Name(op) if op in T.Operation.values() else "?"
    return name.removeprefix("OPERATION_").capitalize()


def _role_name(role: int) -> str:
    name = T.ActorRole.Name(role) if role in T.ActorRole.values() else "?"
    return name.removeprefix("ACTOR_ROLE_").lower()
