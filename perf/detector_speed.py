"""Detector worker throughput reading from Kafka, against river's HalfSpaceTrees as a yardstick.

    python -m perf.detector_speed [--quick] [--kafka 127.0.0.1:19092]
    python -m perf.detector_speed --actors 10000,100000,1000000 [--events N]

Pre-loads N data-access events (plus heartbeats), as TelemetryBundles of 500 events, into a fresh
topic namespace on the shared broker, then starts one ``python -m suptech.detector worker`` and
measures events/s from its first to its last progress line (the worker logs its processed counter
every watermark tick). In the same run it times, in-process on the same events:
``DetectionEngine.process`` alone (the detector without Kafka or faust), and river's
``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees()`` (defaults) scoring and learning each
event's numeric features. Writes perf/results/detector_speed.json.

``--actors`` runs the worker alone once per total number of actors (spread over the 20
institutions; each event's actor drawn at random, so a run of N events touches about
``min(N, actors)`` of them), and reports per run events/s, the longest pause between two
progress lines while events were flowing (a checkpoint of the whole engine stalls the worker),
the worker's peak resident memory (VmHWM) and the final checkpoint's size, and the ratio of
each run's events/s to the first's (issue 11's goal: at 1M actors at least 0.8x the 10k
figure, no pause over 1 s, memory within 2 GB). Writes perf/results/detector_scale.json.

Figures are for a 2-core machine shared with other work: compare ratios, not absolute values.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from suptech.common.bundles import encode_bundle
from suptech.common.topics import TELEMETRY_TOPICS, ensure_topics, topic_name
from suptech.detector.logic import DetectionEngine
from suptech.v1 import telemetry_pb2

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "perf" / "results" / "detector_speed.json"
SCALE_RESULTS = REPO / "perf" / "results" / "detector_scale.json"
T0_NS = 1_767_225_600 * 1_000_000_000
BUNDLE = 500
INSTITUTIONS = 20
# faust's lines put the time in brackets, ours (suptech.common.logging_setup) do not.
PROGRESS = re.compile(r"\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]?.*detector progress (\{.*\})")

CHECKPOINT = re.compile(r"checkpoint written: (?:shard (\d+), )?(\d+) bytes")
# A worker's graceful stop writes every shard's checkpoint: at 1M actors that takes minutes.
STOP_WAIT_S = 900.0

Bundle = tuple[str, str, list[telemetry_pb2.TelemetryEnvelope]]


def make_bundles(
    n_events: int,
    seed: int = 11,
    actors_per_institution: int = 40,
    institutions: int = INSTITUTIONS,
    cycle_actors: bool = False,
) -> list[Bundle]:
    """(topic kind, institution, events): routine access by ``actors_per_institution`` actors
    per institution, in time order per institution, with one heartbeat bundle per institution
    every 20 access bundles. Each event's actor is drawn at random, or with ``cycle_actors``
    taken in turn (so ``n_events`` events touch ``min(n_events, actors)`` actors exactly)."""
    rng = random.Random(seed)
    clock = {f"BANK-{i:03d}": T0_NS for i in range(institutions)}
    turn = dict.fromkeys(clock, 0)
    out: list[Bundle] = []
    made = 0
    k = 0
    while made < n_events:
        inst = f"BANK-{k % institutions:03d}"
        events = []
        for _ in range(min(BUNDLE, n_events - made)):
            clock[inst] += rng.randint(1, 4) * 1_000_000_000
            env = telemetry_pb2.TelemetryEnvelope(event_id=uuid.uuid4().hex, institution_id=inst)
            env.event_time.FromNanoseconds(clock[inst])
            da = env.data_access
            da.system_id = f"sys-{rng.randint(0, 3)}"
            if cycle_actors:
                actor = turn[inst] % actors_per_institution
                turn[inst] += 1
            else:
                actor = rng.randrange(actors_per_institution)
            da.actor_pseudonym = f"{inst}-actor-{actor:07d}"
            da.actor_role = telemetry_pb2.ACTOR_ROLE_EMPLOYEE
            da.channel = telemetry_pb2.CHANNEL_API
            da.operation = rng.choice([telemetry_pb2.OPERATION_QUERY, telemetry_pb2.OPERATION_READ])
            da.records = int(rng.lognormvariate(1.5, 0.6)) + 1
            da.fields.c1 = rng.randint(0, 3)
            da.fields.c2 = rng.randint(0, 4)
            da.bytes_out = da.records * rng.randint(300, 900)
            da.destination_kind = telemetry_pb2.DESTINATION_KIND_INTERNAL
            env.classification.data_class = telemetry_pb2.DATA_CLASS_C2
            events.append(env)
        out.append(("data_access", inst, events))
        made += len(events)
        if k % 20 == 0:
            hb = telemetry_pb2.TelemetryEnvelope(event_id=uuid.uuid4().hex, institution_id=inst)
            hb.event_time.FromNanoseconds(clock[inst])
            hb.heartbeat.source_id = inst
            hb.heartbeat.interval_seconds = 300
            out.append(("heartbeat", inst, [hb]))
        k += 1
    return out


def features(env: telemetry_pb2.TelemetryEnvelope) -> dict[str, float]:
    da = env.data_access
    return {
        "records": float(da.records),
        "bytes_out": float(da.bytes_out),
        "c1": float(da.fields.c1),
        "c2": float(da.fields.c2),
        "c3": float(da.fields.c3),
        "hour": float((env.event_time.seconds // 3600) % 24),
    }


def river_rate(events: list[telemetry_pb2.TelemetryEnvelope]) -> float:
    from river import anomaly, preprocessing

    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees()
    xs = [features(e) for e in events if e.HasField("data_access")]
    start = time.perf_counter()
    for x in xs:
        model.score_one(x)
        model.learn_one(x)
    return len(xs) / (time.perf_counter() - start)


def engine_rate(events: list[telemetry_pb2.TelemetryEnvelope]) -> float:
    engine = DetectionEngine()
    start = time.perf_counter()
    for env in events:
        engine.process(env)
    return len(events) / (time.perf_counter() - start)


def stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


# (topic kind, key, value): a bundle as the gateway writes it.
Record = tuple[str, bytes, bytes]


def encode_records(bundles: list[Bundle]) -> list[Record]:
    return [
        (kind, inst.encode(), encode_bundle(inst, uuid.uuid4().hex, time.time_ns(), events))
        for kind, inst, events in bundles
    ]


def send_records(bootstrap: str, prefix: str, records: list[Record]) -> None:
    """Write ``records`` to the telemetry topics of ``prefix`` (keyed by institution, as the
    gateway does), all delivered on return."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    try:
        for kind, key, value in records:
            producer.send(topic_name(TELEMETRY_TOPICS[kind], prefix), key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()


def worker_env(
    bootstrap: str, prefix: str, state_dir: Path, app_id: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of one benchmark worker (``extra``: other or further settings)."""
    env = dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        KAFKA_ADDR=bootstrap,
        SUPTECH_TOPIC_PREFIX=prefix,
        SUPTECH_LOG_FORMAT="text",
        DETECTOR_APP_ID=app_id or f"perf-detector-{prefix.rstrip('.')}",
        DETECTOR_STATE_DIR=str(state_dir),
        DETECTOR_WATERMARK_INTERVAL_S="0.25",
        DETECTOR_SESSION_TIMEOUT_S="6",
        # Ephemeral health port, no metrics port: fixed ports may be taken on a shared machine,
        # and by the other workers of a benchmark.
        DETECTOR_HEALTH_PORT="0",
        SUPTECH_METRICS_PORT="0",
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m suptech.detector worker`` with its output (stdout and stderr) in log_path."""
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "suptech.detector", "worker"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def progress_points(text: str) -> list[tuple[float, int]]:
    """(time, events processed) of every progress line of a worker's log."""
    return [(stamp(m.group(1)), json.loads(m.group(2))["events"]) for m in PROGRESS.finditer(text)]


def worker_rate(
    bootstrap: str, bundles: list[Bundle], n_events: int, timeout_s: float
) -> dict[str, Any]:
    prefix = f"perf{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix)
    send_records(bootstrap, prefix, encode_records(bundles))

    with tempfile.TemporaryDirectory(prefix="detector-speed-") as tmp:
        log_path = Path(tmp) / "worker.log"
        proc = start_worker(worker_env(bootstrap, prefix, Path(tmp) / "state"), log_path)
        peak_kib = 0
        text = ""
        try:
            points: list[tuple[float, int]] = []
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                time.sleep(0.5)
                text = log_path.read_text(errors="replace")
                points = progress_points(text)
                peak_kib = max(peak_kib, vm_hwm_kib(proc.pid))
                if points and points[-1][1] >= n_events:
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{text[-3000:]}")
            else:
                raise TimeoutError(f"worker did not finish in {timeout_s}s: {points[-1:]}")
        finally:
            stop_s = stop_worker(proc)
        # The final checkpoint (local file + Kafka topic) is written during the graceful stop.
        sizes = checkpoint_sizes(log_path.read_text(errors="replace"))
    moving = [p for p in points if p[1] > 0]
    (t0, e0), (t1, e1) = moving[0], moving[-1]
    gaps = [b[0] - a[0] for a, b in zip(moving, moving[1:], strict=False)]
    return {
        "longest_pause_s": round(max(gaps), 3) if gaps else None,
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "events": e1,
        "measured_events": e1 - e0,
        "seconds": round(t1 - t0, 3),
        "events_per_s": round((e1 - e0) / (t1 - t0), 1) if t1 > t0 else None,
        # Routine checkpoints while it read (paced: fewer as the state grows, see pacing.py).
        "checkpoints_while_reading": len(CHECKPOINT.findall(text)),
        "final_checkpoint_bytes": sum(sizes.values()) if sizes else None,
        "stop_s": stop_s,
        "topic_prefix": prefix,
    }


def checkpoint_sizes(text: str) -> dict[str, int]:
    """Each shard's latest checkpoint size in a worker's log (the last ones: the final)."""
    return {shard: int(size) for shard, size in CHECKPOINT.findall(text)}


def stop_worker(proc: subprocess.Popen[bytes], grace_s: float = STOP_WAIT_S) -> float | None:
    """SIGTERM, then the seconds until the worker has exited (its final checkpoint written):
    None when it is still writing after ``grace_s`` (then SIGKILLed)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    return round(time.monotonic() - started, 1)


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of a process so far (Linux), 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def scale(kafka: str, actors: list[int], n_events: int) -> None:
    """The worker alone at each total number of actors; see the module."""
    runs = []
    for total in actors:
        per_inst = max(1, total // INSTITUTIONS)
        bundles = make_bundles(n_events, actors_per_institution=per_inst)
        count = sum(len(evs) for _, _, evs in bundles)
        w = worker_rate(kafka, bundles, count, timeout_s=3600)
        w["actors"] = per_inst * INSTITUTIONS
        runs.append(w)
        w["load"] = round(os.getloadavg()[0], 2)
        print(
            f"{w['actors']:>9} actors: {w['events_per_s']} events/s, longest pause "
            f"{w['longest_pause_s']} s, peak RSS {w['peak_rss_mib']} MiB, "
            f"{w['checkpoints_while_reading']} checkpoints while reading, final checkpoint "
            f"{w['final_checkpoint_bytes']} bytes, stop (final checkpoint) {w['stop_s']} s, "
            f"load {w['load']}",
            flush=True,
        )
        base = runs[0]["events_per_s"] or 0.0
        for run in runs:
            rate = run["events_per_s"]
            run["vs_first"] = round(rate / base, 3) if base and rate else None
        result = {"events_per_run": n_events, "runs": runs, "cpus": os.cpu_count()}
        SCALE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        SCALE_RESULTS.write_text(json.dumps(result, indent=2) + "\n")  # after every run
    print(f"wrote {SCALE_RESULTS.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k events instead of 400k")
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_ADDR", "127.0.0.1:19092"))
    parser.add_argument("--actors", help="comma list of total actors: the scaling runs only")
    parser.add_argument("--events", type=int, default=200_000, help="events per scaling run")
    args = parser.parse_args(argv)
    if args.actors:
        scale(args.kafka, [int(a) for a in args.actors.split(",")], args.events)
        return
    n = 50_000 if args.quick else 400_000

    bundles = make_bundles(n)
    events = [e for _, _, evs in bundles for e in evs]
    worker = worker_rate(args.kafka, bundles, len(events), timeout_s=120 if args.quick else 600)
    engine_alone = engine_rate(events)
    river = river_rate(events)
    result = {
        "events": len(events),
        "bundle_size": BUNDLE,
        "worker": worker,
        "engine_in_process_events_per_s": round(engine_alone, 1),
        "river_minmax_hst_events_per_s": round(river, 1),
        "worker_vs_river": round(worker["events_per_s"] / river, 3)
        if worker["events_per_s"]
        else None,
        "goal_events_per_s": 20_000,
        "quick": args.quick,
        "cpus": os.cpu_count(),
    }
    print(f"detector worker (Kafka -> findings): {worker['events_per_s']} events/s")
    print(
        f"detection engine alone, in-process:  {result['engine_in_process_events_per_s']} events/s"
    )
    print(
        f"river MinMaxScaler|HalfSpaceTrees:    {result['river_minmax_hst_events_per_s']} events/s"
    )
    print(f"worker / river: {result['worker_vs_river']}")
    print(f"final checkpoint: {worker['final_checkpoint_bytes']} bytes")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
