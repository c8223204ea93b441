"""Settings of the detection engine; every duration is event time, in nanoseconds."""

from __future__ import annotations

from dataclasses import dataclass

MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS


@dataclass(frozen=True)
class EngineConfig:
    # Events older than the watermark minus this still land in their own window.
    allowed_lateness_ns: int = 5 * MINUTE_NS
    # process() moves the watermark from the latest event time it saw: right for one ordered
    # stream (the offline replay). A service reading many partitions turns this off and drives
    # advance() with the slowest active partition's time, or a partition that is behind (its
    # institutions' spools draining, a lagging topic) would look silent.
    auto_advance: bool = True
    # One finding per entity and detector per coalescing window.
    coalesce_window_ns: int = 6 * HOUR_NS
    # Observations an entity must have before its statistical detectors may alert.
    warmup_events: int = 30
    # Days of history an actor needs before its daily (slow drip) detector may alert.
    warmup_days: int = 3
    # Data-moving events (exports, transfers, outbound) an actor needs before its own baseline.
    warmup_moves: int = 10
    # Health reports a system needs (about two days at 15 minutes) before its rhythm is known.
    health_warmup: int = 200
    # Consecutive off-baseline health reports before a health anomaly is reported.
    health_persist: int = 3
    # Event rate: events of an actor in one clock hour against its mean over its active hours.
    # An hour with more than max(rate_min_events, rate_ratio x that mean) events is scraping or
    # a runaway script, even when every single event looks ordinary.
    rate_ratio: float = 5.0
    rate_min_events: int = 30
    # Active hours an actor needs before its rate may alert.
    rate_warmup_hours: int = 12
    # Off-hours moves smaller than this are routine (a forgotten script), not exfiltration.
    off_hours_min_records: int = 200
    # Processed (institution, event id) pairs are remembered for idempotence this long in event
    # time behind the watermark (a redelivery or an SDK retry comes within it), and at most
    # dedup_capacity of them.
    dedup_horizon_ns: int = DAY_NS
    dedup_capacity: int = 200_000
    # Actors, data systems and metric streams unseen this long in event time are forgotten
    # (checked once per event-time day); one that returns is learnt again from scratch.
    idle_evict_ns: int = 30 * DAY_NS
    evidence_cap: int = 20
    # Robust z-score above which a volume is anomalous (on log1p scale).
    z_threshold: float = 6.0
    # Share of an entity's own scores allowed above its threshold (false-alarm budget).
    false_alarm_budget: float = 0.002
    # Local hours counted as off-hours (UTC offset applied first).
    utc_offset_hours: int = 8
    off_hours_start: int = 0
    off_hours_end: int = 6
    # Consecutive stable-shifted health observations after which a system re-baselines.
    rebaseline_after: int = 24
    # Controllability index drop that counts as a regression.
    controllability_drop: float = 0.05
    # Institutions whose core systems depend on one vendor before it is a systemic concentration.
    vendor_concentration_min: int = 5
    vendor_concentration_share: float = 0.5
    # Availability over a report interval below which a system is down.
    outage_availability: float = 0.9
    # Institutions hit within this window make a shared-vendor outage.
    vendor_outage_window_ns: int = HOUR_NS
    vendor_outage_min_institutions: int = 3
    # Share of a vendor's systems that must be down together before the vendor is blamed.
    vendor_outage_coverage: float = 0.5
    # Vendor findings need every institution's inventory. Off: the engine decides them itself
    # (one engine sees all telemetry: the replay, the simulator, one worker). On: it queues the
    # vendor facts for the caller (DetectionEngine.take_vendor_facts) to route, keyed by vendor,
    # to the vendor stage (suptech.detector.logic.vendor_stage), and decides none itself.
    external_vendor_stage: bool = False
    # Systems of one institution failing within this window of each other are one disruption.
    cascade_window_ns: int = HOUR_NS
    # A source is silent after this many missed heartbeat intervals.
    silence_intervals: float = 3.0
    default_heartbeat_interval_s: int = 300
    # Sandbox surge: minimum complaints+incidents in a report to alert on a rate anomaly.
    surge_min_count: int = 5
    # Shared per institution+family HalfSpaceTrees (secondary model).
    hst_trees: int = 10
    hst_height: int = 8
    hst_window: int = 250
    hst_quantile: float = 0.9999
    # Off by default: on the simulated fleet its quantile-thresholded findings were mostly false
    # alarms (scores crowd near 1.0); the per-actor detectors catch what it caught.
    hst_enabled: bool = False
    hst_warmup: int = 1000
    seed: int = 7
    # A statistical condition (the alarms of one model on one entity) is cleared after this long
    # without an alarm; until then repeats are one finding, reported again only when worse.
    condition_clear_ns: int = 6 * HOUR_NS
    # Keep per-event scores for the caller (the scores topic, replay --scores).
    record_scores: bool = True
    # Data access: alarm when an actor's multivariate per-event score reaches this level (one in
    # a million of its normal events) and no other detector reported the event.
    access_alarm_score: float = 0.99999999
    # Time zone of an institution that has not sent its business calendar.
    default_time_zone: str = "Asia/Shanghai"
