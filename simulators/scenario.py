"""A scenario: the fleet, the planned incidents, and the merged, time-ordered telemetry.

``generate(seed, days, scale, incidents)`` is all a test or benchmark needs; ``write(scenario,
out_dir)`` produces the files the CLI writes. Everything is a pure function of the arguments.
``confounders`` adds benign look-alikes of incidents (:mod:`simulators.confounders`) and the
context telemetry they come with (metrics, declared windows, business calendars).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from suptech.v1 import sandbox_pb2, telemetry_pb2

from simulators import baseline
from simulators.clock import DAY_US, DEFAULT_START, parse_start
from simulators.confounders import Delivery, plan_confounders, select_confounders
from simulators.events import Effects, Stream
from simulators.fleet import Fleet, build_fleet
from simulators.incidents import GroundTruth, PlanContext, plan_incidents, select_kinds

__all__ = ["Scenario", "generate", "write", "event_id", "registry_entry"]


def event_id(seed: int, n: int) -> str:
    """The n-th event's id: a UUID (version 4 layout) derived from the seed, so reruns match."""
    digest = hashlib.sha256(f"suptech-sim:{seed}:{n}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def registry_entry(app: Any) -> sandbox_pb2.SandboxTest:
    test = sandbox_pb2.SandboxTest(
        test_id=app.test_id,
        institution_id=app.institution_id,
        app_id=app.app_id,
        name=app.name,
        user_cap=app.user_cap,
        single_amount_cap_fen=app.single_cap_fen,
        daily_amount_cap_fen=app.daily_cap_fen,
        approved_features=app.approved_features,
    )
    test.start_time.FromMicroseconds(app.start_us)
    test.end_time.FromMicroseconds(app.end_us)
    return test


@dataclass
class Scenario:
    seed: int
    days: int
    scale: float
    start_us: int
    end_us: int
    fleet: Fleet
    ground_truth: list[GroundTruth]
    registry: list[sandbox_pb2.SandboxTest]
    effects: Effects = field(repr=False)
    # Skewed clocks, re-sent events and unsent reports of the confounders (none by default).
    delivery: Delivery = field(default_factory=Delivery, repr=False)

    def _streams(self) -> list[Stream]:
        start, end, seed = self.start_us, self.end_us, self.seed
        streams: list[Stream] = []
        for inst in self.fleet.institutions:
            for actor in inst.actors:
                if actor.rate_per_hour > 0:
                    streams.append(baseline.actor_stream(inst, actor, start, end, self.scale, seed))
                else:
                    streams.append(
                        baseline.nightly_batch_stream(inst, actor, start, end, self.scale, seed)
                    )
            for system in inst.systems:
                streams.append(
                    baseline.posture_stream(inst, system, start, end, seed, self.effects)
                )
            streams.append(
                baseline.heartbeat_stream(
                    inst.institution_id,
                    inst.institution_id,
                    inst.offset_s,
                    start,
                    end,
                    seed,
                    self.effects,
                )
            )
            for app in inst.apps:
                streams.append(baseline.sandbox_stream(app, start, end, seed, self.effects))
                streams.append(
                    baseline.heartbeat_stream(
                        inst.institution_id,
                        app.app_id,
                        app.offset_s % 300,
                        start,
                        end,
                        seed,
                        self.effects,
                    )
                )
        streams.extend(factory() for factory in self.effects.streams)
        return streams

    def timed_envelopes(self) -> Iterator[tuple[int, telemetry_pb2.TelemetryEnvelope]]:
        """``(event_time_us, envelope)`` in event-time order; each call replays from the start.

        With confounders the order is the arrival order: a skewed clock is a few seconds off
        and a re-sent event (same id) comes again minutes after its event time.
        """
        merged: Iterator[tuple[int, telemetry_pb2.TelemetryEnvelope]] = heapq.merge(
            *self._streams(), key=lambda e: e[0]
        )
        if self.delivery:
            merged = self.delivery.drop_gaps(merged)
        numbered = self._numbered(merged)
        yield from self.delivery.deliver(numbered) if self.delivery else numbered

    def _numbered(
        self, merged: Iterator[tuple[int, telemetry_pb2.TelemetryEnvelope]]
    ) -> Iterator[tuple[int, telemetry_pb2.TelemetryEnvelope]]:
        for n, (t, env) in enumerate(merged):
            env.event_id = event_id(self.seed, n)
            yield t, env

    def envelopes(self) -> Iterator[telemetry_pb2.TelemetryEnvelope]:
        for _, env in self.timed_envelopes():
            yield env

    def ground_truth_json(self) -> list[dict[str, Any]]:
        return [g.to_json() for g in self.ground_truth]


def generate(
    seed: int = 7,
    days: int = 7,
    scale: float = 1.0,
    incidents: str | list[str] = "all",
    start: str = DEFAULT_START,
    confounders: str | list[str] = "none",
) -> Scenario:
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    kinds = (
        select_kinds(incidents) if isinstance(incidents, str) else select_kinds(",".join(incidents))
    )
    start_us = parse_start(start)
    end_us = start_us + days * DAY_US
    fleet = build_fleet(seed, start_us)
    effects = Effects()
    delivery = Delivery()
    ctx = PlanContext(fleet, seed, start_us, end_us, effects)
    # Confounders first: they switch on the context telemetry the incidents may then use.
    benign = plan_confounders(ctx, select_confounders(confounders), delivery)
    truth = plan_incidents(ctx, kinds) + benign
    registry = [registry_entry(app) for app in fleet.apps()]
    return Scenario(seed, days, scale, start_us, end_us, fleet, truth, registry, effects, delivery)


def _to_json(msg: Any) -> str:
    return json_format.MessageToJson(msg, indent=None)


def write(scenario: Scenario, out_dir: Path) -> dict[str, int]:
    """Write telemetry.jsonl, ground_truth.jsonl, sandbox_registry.jsonl and fleet.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with open(out_dir / "telemetry.jsonl", "w", encoding="utf-8") as f:
        for env in scenario.envelopes():
            f.write(_to_json(env))
            f.write("\n")
            kind = env.WhichOneof("payload") or "none"
            counts[kind] = counts.get(kind, 0) + 1
    with open(out_dir / "ground_truth.jsonl", "w", encoding="utf-8") as f:
        for gt in scenario.ground_truth_json():
            f.write(json.dumps(gt, ensure_ascii=False, sort_keys=False))
            f.write("\n")
    with open(out_dir / "sandbox_registry.jsonl", "w", encoding="utf-8") as f:
        for test in scenario.registry:
            f.write(_to_json(test))
            f.write("\n")
    meta = {
        "seed": scenario.seed,
        "days": scenario.days,
        "scale": scenario.scale,
        "start": json_format.MessageToJson(_ts(scenario.start_us)).strip('"'),
        "end": json_format.MessageToJson(_ts(scenario.end_us)).strip('"'),
        "event_counts": counts,
        **scenario.fleet.to_json(),
    }
    (out_dir / "fleet.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return counts


def _ts(t_us: int) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromMicroseconds(t_us)
    return ts
