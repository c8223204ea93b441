"""Detector workers in one consumer group: aggregate throughput, takeover of a killed worker's
shards, and the pause a rebalance causes.

    python -m perf.detector_scaleout [--quick] [--kafka 127.0.0.1:19092]
        [--workers 1,2,3] [--events N] [--actors N] [--takeover-actors N]
        [--only throughput,takeover,pause] [--out FILE]

Each scenario runs ``python -m suptech.detector worker`` processes of one app id (one group) on
a fresh topic namespace of the shared broker, deleted afterwards; the telemetry is
:func:`perf.detector_speed.make_bundles`'s routine access, spread over 240 institutions so that
all 6 telemetry partitions (shards) carry load. The workers share one state key, as the chart's
Secret makes them, each with its own state directory: a shard moves through its checkpoint in
Kafka only.

1. **throughput**: 1, 2, 3 workers. The workers start on empty topics and the benchmark waits
   until the group is settled (every shard held, nothing moving), then writes the pre-encoded
   telemetry. Events/s from the moment the producer is done until the last event is processed,
   summed over the group and per worker (from each worker's progress lines), with the machine's
   load average. On two shared cores more workers show the overhead, not a speed-up.
2. **takeover**: worker A reads ``--takeover-actors`` actors of state (one event per actor) and
   checkpoints every shard; a trickle of new telemetry (one record per shard every 0.2 s) flows
   meanwhile. Worker B is started and A is SIGKILLed at once, so A holds every shard when it
   dies, as when a pod is lost and its replacement starts. Reported: from the kill until B
   logs that it has taken on all six shards, until B has processed a record produced after the
   kill for each shard (its score on scores.v1, timestamped by B's producer), and the restore
   time B logs. The group notices a SIGKILLed member only after the session timeout
   (``--session-timeout``, the detector's and the chart's default 10 s), which is part of the
   figure. The workers run the detector's own 5 s watermark tick here, not the 0.25 s of the
   other scenarios (see :func:`main`).
3. **pause**: worker A reads a backlog, with the trickle beside it; when it has processed 5 %,
   worker B joins. The longest gap in the group's output (score records on scores.v1, any
   shard), in A's progress lines, and in the records of each shard that moved to B, from B's
   start until the backlog is done and B has processed new records of its shards, beside the
   longest gap of A alone before B started, and how much of the backlog was left when B took
   its shards on (the rebalance happened under load only if some was).

Writes perf/results/detector_scaleout.json (``PERF_KEEP_LOGS=DIR`` keeps the workers' logs).
Figures are for a 2-core machine shared with other work: read the load averages beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from suptech.common.bundles import encode_bundle
from suptech.common.topics import (
    DATA_ACCESS,
    SCORES,
    TELEMETRY_PARTITIONS,
    delete_topics_with_prefix,
    ensure_topics,
    partition_of,
    topic_name,
)
from suptech.v1 import findings_pb2, telemetry_pb2

from perf.detector_speed import (
    REPO,
    T0_NS,
    Record,
    encode_records,
    make_bundles,
    progress_points,
    send_records,
    stamp,
    start_worker,
    vm_hwm_kib,
    worker_env,
)

RESULTS = REPO / "perf" / "results" / "detector_scaleout.json"
INSTITUTIONS = 240
SHARDS = set(range(TELEMETRY_PARTITIONS))
_TIME = r"\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]?"
TAKEN_ON = re.compile(_TIME + r".*shards \[([\d, ]*)\] taken on in ([\d.]+) s \((\d+) held\)")
HANDED_OVER = re.compile(_TIME + r".*shard (\d+) handed over to another worker")
SHARD_CHECKPOINT = re.compile(_TIME + r".*checkpoint written: shard (\d+), (\d+) bytes")
RESTORED = re.compile(r"shard (\d+) restored from checkpoint \(Kafka")
TRICKLE_PREFIX = "trickle-"


@dataclass
class Worker:
    """One worker process and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    peak_kib: int = 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def sample(self) -> None:
        """Note its peak memory; raise if it died on its own."""
        self.peak_kib = max(self.peak_kib, vm_hwm_kib(self.proc.pid))
        if self.proc.poll() is not None and self.proc.returncode != -signal.SIGKILL:
            raise RuntimeError(f"worker {self.name} exited:\n{self.text()[-3000:]}")

    def events(self) -> int:
        points = progress_points(self.text())
        return points[-1][1] if points else 0

    def held(self) -> set[int]:
        """The shards it holds now, by its log (taken on, handed over, in order)."""
        held: set[int] = set()
        text = self.text()
        found = [(m.start(), "+", _numbers(m.group(2))) for m in TAKEN_ON.finditer(text)]
        found += [(m.start(), "-", {int(m.group(2))}) for m in HANDED_OVER.finditer(text)]
        for _, sign, numbers in sorted(found, key=lambda f: f[0]):
            held = held | numbers if sign == "+" else held - numbers
        return held

    def taken_on(self) -> list[dict[str, Any]]:
        return [
            {
                "at": stamp(m.group(1)),
                "shards": sorted(_numbers(m.group(2))),
                "seconds": float(m.group(3)),
                "held": int(m.group(4)),
            }
            for m in TAKEN_ON.finditer(self.text())
        ]

    def restored(self) -> set[int]:
        """The shards it restored from their checkpoint in Kafka (not started cold)."""
        return {int(m.group(1)) for m in RESTORED.finditer(self.text())}

    def checkpoints(self) -> list[tuple[float, int, int]]:
        """(time, shard, bytes) of every checkpoint it wrote."""
        return [
            (stamp(m.group(1)), int(m.group(2)), int(m.group(3)))
            for m in SHARD_CHECKPOINT.finditer(self.text())
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _numbers(text: str) -> set[int]:
    return {int(n) for n in text.replace(",", " ").split()}


@dataclass
class Group:
    """Workers of one app id on one fresh topic namespace, sharing one state key."""

    bootstrap: str
    prefix: str
    tmp: Path
    settings: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    def start(self, name: str) -> Worker:
        env = worker_env(
            self.bootstrap,
            self.prefix,
            self.tmp / f"state-{name}",
            DETECTOR_STATE_KEY_FILE=str(self.tmp / "state.key"),
            **self.settings,
        )
        worker = Worker(name, start_worker(env, self.tmp / f"{name}.log"), self.tmp / f"{name}.log")
        self.workers.append(worker)
        return worker

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            for worker in self.workers:
                worker.sample()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s:.0f} s ({self.prefix})")
            time.sleep(0.25)
        for worker in self.workers:
            worker.sample()

    def settle(self, timeout_s: float, quiet_s: float = 3.0) -> None:
        """Wait until every shard is held by exactly one worker, each worker holds some, and
        nothing has moved for ``quiet_s``."""
        last: list[set[int]] = []
        since = time.monotonic()

        def settled() -> bool:
            nonlocal last, since
            held = [w.held() for w in self.workers]
            if held != last:
                last, since = held, time.monotonic()
            whole = sorted(n for h in held for n in h) == sorted(SHARDS)
            return whole and all(held) and time.monotonic() - since >= quiet_s

        self.wait(settled, timeout_s, f"group of {len(self.workers)} settled")


@contextmanager
def group(bootstrap: str, settings: dict[str, str]) -> Iterator[Group]:
    """A fresh topic namespace and state key; the workers stopped and the topics deleted after."""
    prefix = f"perfso{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix)
    with tempfile.TemporaryDirectory(prefix="detector-scaleout-") as tmp:
        (Path(tmp) / "state.key").write_text(secrets.token_hex(32))
        g = Group(bootstrap, prefix, Path(tmp), settings)
        try:
            yield g
        finally:
            for worker in g.workers:
                worker.stop()
            _keep_logs(g)
            delete_topics_with_prefix(bootstrap, prefix)


def _keep_logs(g: Group) -> None:
    """Copy the workers' logs to $PERF_KEEP_LOGS, if set (to read what a figure came from)."""
    if keep := os.environ.get("PERF_KEEP_LOGS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        for worker in g.workers:
            shutil.copy(worker.log, Path(keep) / f"{g.prefix}{worker.name}.log")


class ScoreWatcher(threading.Thread):
    """Reads scores.v1 of a namespace as it is written: the group's output, one record per
    telemetry record processed, each data-access event scored once (a replay repeats ids)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        topic = topic_name(SCORES, prefix)
        parts = [TopicPartition(topic, p) for p in range(SCORES.partitions)]
        self._consumer.assign(parts)
        self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the end now: only what comes from here on counts
            self._consumer.position(tp)
        self._stopping = threading.Event()
        self.seen: set[str] = set()
        # (producer timestamp, shard, new event ids in it) per score record.
        self.records: list[tuple[float, int, int]] = []
        # First time each trickle event was scored.
        self.trickle: dict[str, float] = {}
        self.backlog = 0

    def run(self) -> None:
        while not self._stopping.is_set():
            for batch in self._consumer.poll(timeout_ms=200).values():
                for record in batch:
                    self._add(record.timestamp / 1000, record.value)
        self._consumer.close()

    def _add(self, at: float, value: bytes) -> None:
        scores = findings_pb2.AnomalyScoreBatch.FromString(value)
        new = 0
        for score in scores.scores:
            if score.event_id in self.seen:
                continue
            self.seen.add(score.event_id)
            new += 1
            if score.event_id.startswith(TRICKLE_PREFIX):
                self.trickle[score.event_id] = at
            else:
                self.backlog += 1
        self.records.append((at, partition_of(scores.institution_id), new))

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)


class Trickle(threading.Thread):
    """New telemetry while a scenario runs: one data-access record for each shard every
    ``every_s``, from one institution per shard (TRICKLE-<shard>-...), ids ``trickle-<n>``."""

    def __init__(self, bootstrap: str, prefix: str, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.topic = topic_name(DATA_ACCESS, prefix)
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        self.institutions = _one_institution_per_shard("TRICKLE")
        self._stopping = threading.Event()
        # event id -> (shard, wall time it was sent)
        self.sent: dict[str, tuple[int, float]] = {}

    def run(self) -> None:
        n = 0
        while not self._stopping.wait(self.every_s):
            for shard, inst in self.institutions.items():
                event_id = f"{TRICKLE_PREFIX}{n:08d}"
                env = _access_event(event_id, inst, T0_NS + n * 1_000_000_000)
                value = encode_bundle(inst, uuid.uuid4().hex, time.time_ns(), [env])
                self.sent[event_id] = (shard, time.time())
                self._producer.send(self.topic, key=inst.encode(), value=value)
                n += 1
            self._producer.flush(timeout=10)
        self._producer.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=15)


def _one_institution_per_shard(stem: str) -> dict[int, str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(SHARDS):
        found.setdefault(partition_of(f"{stem}-{i:03d}"), f"{stem}-{i:03d}")
        i += 1
    return found


def _access_event(event_id: str, inst: str, at_ns: int) -> telemetry_pb2.TelemetryEnvelope:
    env = telemetry_pb2.TelemetryEnvelope(event_id=event_id, institution_id=inst)
    env.event_time.FromNanoseconds(at_ns)
    da = env.data_access
    da.system_id = "sys-0"
    da.actor_pseudonym = f"{inst}-actor-0000000"
    da.actor_role = telemetry_pb2.ACTOR_ROLE_EMPLOYEE
    da.channel = telemetry_pb2.CHANNEL_API
    da.operation = telemetry_pb2.OPERATION_READ
    da.records = 2
    da.bytes_out = 1200
    da.destination_kind = telemetry_pb2.DESTINATION_KIND_INTERNAL
    env.classification.data_class = telemetry_pb2.DATA_CLASS_C2
    return env


@dataclass
class Telemetry:
    """Pre-encoded telemetry of one size, written to each scenario's topics."""

    records: list[Record]
    events: int  # every envelope (the workers' "events" counter)
    access: int  # data-access events (one score each)
    actors: int


def telemetry(n_events: int, actors: int, cycle: bool = False) -> Telemetry:
    per_inst = max(1, actors // INSTITUTIONS)
    bundles = make_bundles(
        n_events, actors_per_institution=per_inst, institutions=INSTITUTIONS, cycle_actors=cycle
    )
    return Telemetry(
        encode_records(bundles),
        sum(len(evs) for _, _, evs in bundles),
        sum(len(evs) for kind, _, evs in bundles if kind == "data_access"),
        per_inst * INSTITUTIONS,
    )


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def throughput(
    bootstrap: str, data: Telemetry, n_workers: int, settings: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """``n_workers`` settled workers, then the telemetry: events/s of the group and of each."""
    with group(bootstrap, settings) as g:
        workers = [g.start(f"w{i}") for i in range(n_workers)]
        g.settle(timeout_s)
        load_before = load()
        started = time.time()
        send_records(bootstrap, g.prefix, data.records)
        sent = time.time()
        g.wait(lambda: sum(w.events() for w in workers) >= data.events, timeout_s, "all events")
        load_after = load()
        per_worker = [_worker_window(w, sent) for w in workers]
    done = max(w["done_at"] for w in per_worker)
    before = sum(w["events_at_start"] for w in per_worker)
    aggregate = (data.events - before) / (done - sent) if done > sent else None
    for w in per_worker:
        w["done_at"] = round(w["done_at"] - sent, 3)
    return {
        "workers": n_workers,
        "events": data.events,
        "actors": data.actors,
        "produce_s": round(sent - started, 3),
        "events_before_produced": before,
        "seconds": round(done - sent, 3),
        "aggregate_events_per_s": round(aggregate, 1) if aggregate else None,
        "mean_per_worker_events_per_s": round(aggregate / n_workers, 1) if aggregate else None,
        "per_worker": per_worker,
        "load_before": load_before,
        "load_after": load_after,
    }


def _worker_window(worker: Worker, start: float) -> dict[str, Any]:
    """A worker's events/s from ``start`` until it reached its last count (group settled: its
    counter only grows)."""
    points = progress_points(worker.text())
    final = points[-1][1] if points else 0
    at_start = max((e for t, e in points if t <= start), default=0)
    done_at = min((t for t, e in points if e == final), default=start)
    moving = [p for p in points if p[0] >= start]
    gaps = [b[0] - a[0] for a, b in zip(moving, moving[1:], strict=False) if a[1] < final]
    return {
        "name": worker.name,
        "shards": sorted(worker.held()),
        "events": final,
        "events_at_start": at_start,
        "done_at": done_at,
        "events_per_s": round((final - at_start) / (done_at - start), 1)
        if done_at > start
        else None,
        "longest_pause_s": round(max(gaps), 3) if gaps else None,
        "peak_rss_mib": round(worker.peak_kib / 1024, 1),
    }


def takeover(
    bootstrap: str, data: Telemetry, settings: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """A holds ``data.actors`` actors in every shard; B starts, A is SIGKILLed: see the module."""
    with group(bootstrap, settings) as g:
        send_records(bootstrap, g.prefix, data.records)
        a = g.start("A")
        g.wait(lambda: a.events() >= data.events, timeout_s, "A read the state")
        read = time.time()
        points = [p for p in progress_points(a.text()) if p[1] > 0]
        a_rate = _worker_window(a, points[0][0] if points else read)
        watcher = ScoreWatcher(bootstrap, g.prefix)
        watcher.start()
        trickle = Trickle(bootstrap, g.prefix)
        trickle.start()
        try:
            interval = float(settings.get("DETECTOR_CHECKPOINT_INTERVAL_S", "30"))
            g.wait(
                lambda: {s for t, s, _ in a.checkpoints() if t > read} == SHARDS,
                interval + timeout_s / 4,
                "A checkpointed every shard",
            )
            g.wait(lambda: len(watcher.trickle) >= len(SHARDS), 60, "A processed the trickle")
            load_before = load()
            b = g.start("B")
            a.proc.send_signal(signal.SIGKILL)
            killed = time.time()
            g.wait(lambda: b.held() == SHARDS, timeout_s, "B took on every shard")
            g.wait(
                lambda: set(_first_new(trickle, watcher, killed)) == SHARDS,
                timeout_s,  # restoring a million actors' state takes a while: measure it
                "B processed new records of every shard",
            )
            load_after = load()
        finally:
            trickle.stop()
            watcher.stop()
        taken = [t for t in b.taken_on() if t["at"] > killed]
        checkpoint = {s: n for _, s, n in a.checkpoints()}
        held = b.held()
        restored = b.restored()
    first_new = _first_new(trickle, watcher, killed)
    all_held = next(t["at"] for t in taken if t["held"] == len(SHARDS))
    return {
        "actors": data.actors,
        "events": data.events,
        "session_timeout_s": float(settings["DETECTOR_SESSION_TIMEOUT_S"]),
        "a_events_per_s": a_rate["events_per_s"],
        "a_peak_rss_mib": round(a.peak_kib / 1024, 1),
        "a_checkpoint_bytes": sum(checkpoint.values()),
        "b_assignments": [
            {**t, "at": round(t["at"] - killed, 3)} for t in taken
        ],  # seconds after the kill
        "b_first_assignment_all_shards": bool(taken) and set(taken[0]["shards"]) == SHARDS,
        "shards_taken_over": sorted(held),
        "shards_restored_from_kafka": sorted(restored),
        "kill_to_all_taken_on_s": round(all_held - killed, 3),
        "restore_s": round(sum(t["seconds"] for t in taken), 3),
        "kill_to_new_records_s": {str(s): round(first_new[s], 3) for s in sorted(first_new)},
        "kill_to_all_new_records_s": round(max(first_new.values()), 3),
        "b_peak_rss_mib": round(b.peak_kib / 1024, 1),
        "load_before": load_before,
        "load_after": load_after,
    }


def _first_new(trickle: Trickle, watcher: ScoreWatcher, since: float) -> dict[int, float]:
    """Per shard, seconds from ``since`` until the first record sent after it was scored."""
    first: dict[int, float] = {}
    for event_id, at in list(watcher.trickle.items()):
        shard, sent = trickle.sent.get(event_id, (-1, 0.0))
        if sent > since:
            first[shard] = min(first.get(shard, at - since), at - since)
    return first


def rebalance_pause(
    bootstrap: str, data: Telemetry, settings: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """A reads a backlog (and the trickle); B joins at 5 %: the longest gaps in the output from
    B's start until the backlog is done and B has processed new records of its shards."""
    with group(bootstrap, settings) as g:
        watcher = ScoreWatcher(bootstrap, g.prefix)
        watcher.start()
        trickle = Trickle(bootstrap, g.prefix)
        try:
            send_records(bootstrap, g.prefix, data.records)
            a = g.start("A")
            trickle.start()
            g.wait(lambda: a.events() >= 0.05 * data.events, timeout_s, "A read 5 %")
            load_before = load()
            b = g.start("B")
            joined = time.time()
            g.wait(lambda: bool(b.held()), timeout_s, "B took on shards")
            backlog_left = data.access - watcher.backlog
            took_on = b.taken_on()[0]["at"]
            g.wait(
                lambda: (
                    watcher.backlog >= data.access
                    and b.held() <= set(_first_new(trickle, watcher, took_on))
                ),
                timeout_s,
                "the backlog and B's new records processed",
            )
            done = time.time()
            load_after = load()
        finally:
            trickle.stop()
            watcher.stop()
        moved = b.held()
        taken = [t for t in b.taken_on() if t["at"] > joined]
        revocation = [(t, s) for t, s, _ in a.checkpoints() if t > joined]
        a_points = progress_points(a.text())
    records = [(t, s) for t, s, new in watcher.records if new]
    return {
        "events": data.events,
        "actors": data.actors,
        "moved_shards": sorted(moved),
        "backlog_left_when_b_took_on": backlog_left,
        "b_start_to_taken_on_s": round(took_on - joined, 3),
        "b_restore_s": round(sum(t["seconds"] for t in taken), 3),
        "a_checkpoints_after_b_started": len(revocation),
        "longest_gap_before_b_s": _longest_gap([t for t, _ in records if t < joined]),
        "group_longest_gap_s": _longest_gap(
            [t for t, _ in records if joined <= t <= done] + [joined, done]
        ),
        "a_longest_gap_s": _longest_gap(
            [t for (t, e), (_, prev) in zip(a_points[1:], a_points, strict=False) if e > prev]
            + [joined],
            since=joined,
        ),
        "moved_shards_longest_gap_s": max(
            (
                g
                for g in (_longest_gap([t for t, s in records if s == n], joined) for n in moved)
                if g
            ),
            default=None,
        ),
        "seconds_b_start_to_done": round(done - joined, 3),
        "load_before": load_before,
        "load_after": load_after,
    }


def _longest_gap(times: list[float], since: float = 0.0) -> float | None:
    """Longest interval between successive times at or after ``since`` (the last kept time before
    it counts as the start)."""
    ordered = sorted(times)
    before = [t for t in ordered if t < since]
    kept = before[-1:] + [t for t in ordered if t >= since]
    gaps = [b - a for a, b in zip(kept, kept[1:], strict=False)]
    return round(max(gaps), 3) if gaps else None


def print_table(result: dict[str, Any]) -> None:
    """One line per throughput run, takeover and pause (flushed: the runs are long)."""
    for run in result.get("throughput", []):
        per = ", ".join(
            f"{w['name']} {w['events_per_s']} ({len(w['shards'])} sh)" for w in run["per_worker"]
        )
        print(
            f"{run['workers']} worker(s): {run['aggregate_events_per_s']} events/s aggregate, "
            f"{run['mean_per_worker_events_per_s']} per worker [{per}], load "
            f"{run['load_before']} -> {run['load_after']}",
            flush=True,
        )
    if t := result.get("takeover"):
        print(
            f"takeover of {t['actors']} actors: all shards taken on "
            f"{t['kill_to_all_taken_on_s']} s after the kill, new records of every shard "
            f"processed after {t['kill_to_all_new_records_s']} s, restore {t['restore_s']} s "
            f"(session timeout {t['session_timeout_s']} s), B peak RSS {t['b_peak_rss_mib']} "
            f"MiB, load {t['load_before']} -> {t['load_after']}",
            flush=True,
        )
    if p := result.get("pause"):
        print(
            f"rebalance pause ({p['actors']} actors): group {p['group_longest_gap_s']} s, "
            f"A {p['a_longest_gap_s']} s, moved shards {p['moved_shards_longest_gap_s']} s "
            f"(A alone before: {p['longest_gap_before_b_s']} s), B restore {p['b_restore_s']} s",
            flush=True,
        )


SCENARIOS = ("throughput", "takeover", "pause")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a couple of minutes")
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_ADDR", "127.0.0.1:19092"))
    parser.add_argument("--workers", default="1,2,3", help="group sizes of the throughput runs")
    parser.add_argument("--events", type=int, help="events of the throughput and pause runs")
    parser.add_argument("--actors", type=int, help="actors of the throughput and pause runs")
    parser.add_argument("--takeover-actors", type=int, help="actors A holds (default 1,000,000)")
    parser.add_argument("--session-timeout", default="10", help="DETECTOR_SESSION_TIMEOUT_S")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma list of scenarios")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    only = args.only.split(",")
    events = args.events or (30_000 if args.quick else 400_000)
    actors = args.actors or (10_000 if args.quick else 100_000)
    takeover_actors = args.takeover_actors or (20_000 if args.quick else 1_000_000)
    timeout_s = 300.0 if args.quick else 3600.0
    settings = {"DETECTOR_SESSION_TIMEOUT_S": args.session_timeout}
    if args.quick:  # A's checkpoints before the kill come sooner than the default 30 s
        settings["DETECTOR_CHECKPOINT_INTERVAL_S"] = "5"
    result: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "load_start": load()}

    def save() -> None:  # after every scenario: a late failure keeps the figures so far
        result["load_end"] = load()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    if "throughput" in only or "pause" in only:
        data = telemetry(events, actors)
    if "throughput" in only:
        result["throughput"] = []
        for n in [int(w) for w in args.workers.split(",")]:
            result["throughput"].append(throughput(args.kafka, data, n, settings, timeout_s))
            print_table({"throughput": result["throughput"][-1:]})
            save()
    if "takeover" in only:
        state = telemetry(takeover_actors, takeover_actors, cycle=True)
        # The detector's own watermark tick (5 s): the benchmark's 0.25 s tick costs over 1 s per
        # tick with 100k+ actors held, starves the loop and expires the session while A reads
        # the state. The takeover's figures come from log lines and scores, not progress lines.
        slow_tick = {**settings, "DETECTOR_WATERMARK_INTERVAL_S": "5"}
        result["takeover"] = takeover(args.kafka, state, slow_tick, timeout_s)
        print_table({"takeover": result["takeover"]})
        save()
    if "pause" in only:
        # Long enough to outlast B's start (up to 20 s on a loaded machine): B must join under load.
        backlog = telemetry(100_000, actors) if args.quick else data
        result["pause"] = rebalance_pause(args.kafka, backlog, settings, timeout_s)
        print_table({"pause": result["pause"]})
    save()
    print(f"wrote {args.out}", flush=True)
    return result


if __name__ == "__main__":
    main()
