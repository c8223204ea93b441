"""Chaos suite: faults injected mid-stream into the whole pipeline, and what they cost.

    python -m perf.chaos [--quick] [--only gateway_kill,alerts_kill,...]

For each scenario a simulated fleet streams through the SDK (one client per institution) into a
pipeline of its own (alert service, detector, gateway as processes, as ``make run`` starts them,
on a fresh topic prefix and state directory) while a supervisor follows ``StreamAlerts``; the
fault is injected about a third of the way through the stream:

- ``no_fault``: nothing breaks; the reference the others' findings are compared with;
- ``gateway_kill``, ``detector_kill``, ``alerts_kill``: SIGKILL of that service, restarted 1 s
  later on the same port (the SDK retries; the follower reconnects from its cursor);
- ``broker_restart``: the broker stopped and started again (a private broker, never the shared
  one on 127.0.0.1:19092);
- ``db_outage``: the alert service on a PostgreSQL server of its own, stopped for 30 s;
- ``broker_of_three``: one broker of a private three-broker cluster (replication 3, min ISR 2)
  SIGKILLed and started again 10 s later; only when ``scripts/kafka.sh up-cluster`` exists.

Counted afterwards: events the gateway acknowledged vs present in the telemetry topics (by event
id), findings on the findings topic vs stored in alerts (through the alert service's API),
findings the no-fault run did not make (finding ids are deterministic: these are what the fault
made the detector say), duplicate alerts (a finding id in two alerts, or two alerts of one group
opened at the same time), findings the alert service dead-lettered, and the wall seconds from
the restart (for the cluster: from the kill) to the first new alert event delivered by
StreamAlerts ("flow s", which also waits for the detector's next finding) and to the alert of a
probe finding the suite puts on the findings topic at the restart ("probe s", the goal's
measure; after the broker is back for ``broker_restart``).

Not in ``make perf``: it starts a broker, a three-broker cluster and a PostgreSQL server of its
own (ports 19592-19593, 19791-19793 and 19891-19893, a free one) and takes about 10 minutes with
``--quick``, 25 without.

Goals (issue 8): 0 lost, 0 duplicate alerts, alerts flowing again <= 5 s after an alert-service
restart, no finding dead-lettered because a database was down. PASS/FAIL is printed per goal;
timings are figures, never asserted. Writes perf/results/chaos.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from suptech.common.topics import (
    FINDINGS,
    delete_topics_with_prefix,
    ensure_topics,
    topic_name,
)
from suptech.ops.kafka_clients import log_offsets, open_admin
from suptech.ops.lag import group_lags

from perf import chaos_counts as counts
from perf.chaos_stack import (
    AlertFollower,
    ChaosStack,
    Cluster,
    PrivateBroker,
    PrivatePostgres,
    cluster_script_exists,
)
from simulators.scenario import generate
from simulators.stream import publish_registry, stream_telemetry

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "perf" / "results" / "chaos.json"
SHARED_KAFKA = os.environ.get("KAFKA_ADDR", "127.0.0.1:19092")
CST = timezone(timedelta(hours=8))
ALERTS_RESTART_GOAL_S = 5.0
NO_CLUSTER = "skipped: no three-broker cluster script"


@dataclass(frozen=True)
class Size:
    """How much is streamed: a simulated period paced over ``stream_s`` of wall time."""

    seed: int = 11
    days: int = 1
    scale: float = 0.3
    stream_s: float = 45.0
    settle_s: float = 120.0
    quiet_s: float = 8.0
    db_down_s: float = 30.0


# 40 s of stream: the detector's first checkpoint (30 s after it starts) comes mid-stream.
QUICK = Size(stream_s=40.0, quiet_s=5.0, settle_s=90.0)
FULL = Size(days=3, scale=1.0, stream_s=150.0, settle_s=300.0, quiet_s=15.0)


@dataclass
class Run:
    """One scenario's pipeline while it runs: what a fault acts on, and when it acted."""

    stack: ChaosStack
    size: Size
    broker: PrivateBroker | None = None
    postgres: PrivatePostgres | None = None
    cluster: Cluster | None = None
    fault_at: float = 0.0
    # Recovery is measured from here: the restart (for the cluster, the kill itself).
    restored_at: float = 0.0
    # When what was restarted answered again (a service ready, a broker or database up).
    ready_at: float = 0.0
    kafka: str = ""
    prefix: str = ""
    probe_event_s: int = 0
    probe: threading.Thread | None = None

    def send_probe(self) -> None:
        """Put the probe finding on the topic now, in the background (a broker may be away)."""

        def send() -> None:
            counts.send_probe(self.kafka, self.prefix, self.probe_event_s)

        self.probe = threading.Thread(target=send, name="chaos-probe", daemon=True)
        self.probe.start()


def _no_fault(run: Run) -> None:
    """The reference: what the same stream gives when nothing breaks."""
    run.fault_at = run.restored_at = run.ready_at = time.time()
    run.send_probe()


def _kill_service(name: str) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        if name == "detector":
            # Killed between two checkpoints, the restart restores one (killed before the first,
            # it would start cold and re-read everything: a path of its own, not this one).
            run.stack.services["detector"].wait_for(r"checkpoint written", run.size.stream_s)
            time.sleep(3.0)
        run.fault_at = time.time()
        run.stack.kill(name)
        time.sleep(1.0)
        run.restored_at = time.time()
        run.send_probe()
        run.stack.start(name)
        run.ready_at = time.time()

    return inject


def _restart_broker(run: Run) -> None:
    assert run.broker is not None
    run.fault_at = time.time()
    run.broker.down()
    time.sleep(3.0)
    run.restored_at = time.time()
    run.broker.up()
    run.ready_at = time.time()
    run.send_probe()


def _database_outage(run: Run) -> None:
    assert run.postgres is not None
    run.fault_at = time.time()
    run.postgres.down()
    time.sleep(run.size.db_down_s)
    run.restored_at = time.time()
    run.send_probe()
    run.postgres.up()
    run.ready_at = time.time()


def _kill_one_of_three(run: Run) -> None:
    assert run.cluster is not None
    run.fault_at = run.restored_at = time.time()
    run.cluster.kill_node(2)
    run.send_probe()
    time.sleep(10.0)
    run.cluster.start_node(2)
    run.ready_at = time.time()


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Callable[[Run], None]
    kafka: str = "shared"  # shared | private | cluster
    database: str = "sqlite"  # sqlite | postgres


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("no_fault", _no_fault),
    Scenario("gateway_kill", _kill_service("gateway")),
    Scenario("detector_kill", _kill_service("detector")),
    Scenario("alerts_kill", _kill_service("alerts")),
    Scenario("broker_restart", _restart_broker, kafka="private"),
    Scenario("db_outage", _database_outage, database="postgres"),
    Scenario("broker_of_three", _kill_one_of_three, kafka="cluster"),
)


@dataclass
class Fleet:
    """The simulated fleet of every scenario (regenerated each time: the SDK copies, but a
    scenario must never depend on what an earlier one did to shared objects)."""

    size: Size
    start: str = field(init=False)

    def __post_init__(self) -> None:
        today = datetime.now(CST).replace(hour=0, minute=0, second=0, microsecond=0)
        self.start = (today - timedelta(days=self.size.days)).isoformat()

    def scenario(self) -> Any:
        s = self.size
        return generate(s.seed, s.days, s.scale, "all", start=self.start)


def _say(msg: str) -> None:
    print(f"[chaos] {msg}", flush=True)


@contextlib.contextmanager
def _replication(factor: int, min_insync: int) -> Iterator[dict[str, str]]:
    """Topic replication for this process's set-up and the services' environment."""
    env = {
        "SUPTECH_KAFKA_REPLICATION_FACTOR": str(factor),
        "SUPTECH_KAFKA_MIN_INSYNC_REPLICAS": str(min_insync),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _infrastructure(scenario: Scenario, run_dir: Path) -> Iterator[dict[str, Any]]:
    """Broker and database of the scenario: started before, wiped after (shared ones kept)."""
    out: dict[str, Any] = {"kafka": SHARED_KAFKA, "env": {}}
    with contextlib.ExitStack() as cleanups:
        if scenario.kafka == "private":
            broker = PrivateBroker()
            cleanups.callback(_housekeeping, broker.wipe)
            out["kafka"], out["broker"] = broker.up(), broker
        elif scenario.kafka == "cluster":
            cluster = Cluster()
            cleanups.callback(_housekeeping, cluster.wipe)
            out["kafka"], out["cluster"] = cluster.up(), cluster
            out["env"] = cleanups.enter_context(_replication(3, 2))
        if scenario.database == "postgres":
            pg = PrivatePostgres()
            cleanups.callback(_housekeeping, pg.wipe)
            out["db_url"], out["postgres"] = pg.up(), pg
        else:
            out["db_url"] = f"sqlite:///{run_dir / 'alerts.db'}"
        yield out


def _housekeeping(cleanup: Callable[[], None]) -> None:
    try:
        cleanup()
    except Exception as exc:  # noqa: BLE001 - housekeeping must not hide the result
        _say(f"clean-up failed: {exc!r}")


def _write_tokens(run_dir: Path, institutions: list[str]) -> tuple[dict[str, str], str]:
    """Gateway tokens (institution -> token) and the duty supervisor's alert-service token."""
    tokens = {inst: secrets.token_urlsafe(24) for inst in institutions}
    supervisor = secrets.token_urlsafe(24)
    (run_dir / "gateway_tokens.json").write_text(json.dumps({t: i for i, t in tokens.items()}))
    (run_dir / "alerts_tokens.json").write_text(
        json.dumps(
            {supervisor: {"name": "chaos-supervisor", "role": "supervisor", "jurisdictions": ["*"]}}
        )
    )
    return tokens, supervisor


def _service_env(kafka: str, prefix: str, extra: dict[str, str]) -> dict[str, str]:
    return dict(
        os.environ,
        KAFKA_ADDR=kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        SUPTECH_LOG_LEVEL="INFO",
        # Several pipelines share this machine: no fixed metrics port to collide on.
        SUPTECH_METRICS_PORT="0",
        **extra,
    )


def _settle(
    kafka: str, prefix: str, stack: ChaosStack, follower: AlertFollower, size: Size
) -> bool:
    """Wait until the alert service has read every finding and none has come for ``quiet_s``."""
    admin = open_admin(kafka, 30)
    findings = topic_name(FINDINGS, prefix)
    deadline = time.monotonic() + size.settle_s
    last_end, stable_since = -1, time.monotonic()
    try:
        while time.monotonic() < deadline:
            parts = [TopicPartition(findings, p) for p in range(FINDINGS.partitions)]
            _, end = log_offsets(admin, parts)
            total = sum(end.values())
            if total != last_end:
                last_end, stable_since = total, time.monotonic()
            groups = [stack.app_id, f"{stack.app_id}-alerts"]
            lag = sum(g.total for g in group_lags(admin, groups, prefix))
            quiet = time.time() - follower.last_event_time() >= size.quiet_s
            if lag == 0 and quiet and time.monotonic() - stable_since >= size.quiet_s:
                return True
            time.sleep(1.0)
        return False
    finally:
        admin.close()


def _rejected_ids(spool_root: Path) -> set[str]:
    out: set[str] = set()
    for path in spool_root.glob("*/rejections.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.add(json.loads(line)["event_id"])
    return out


def run_scenario(scenario: Scenario, fleet: Fleet, work: Path) -> dict[str, Any]:
    """Stream the fleet, inject the fault a third of the way in, count what came through."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    run_dir = work / scenario.name
    run_dir.mkdir(parents=True)
    prefix = f"chaos-{stamp}-{scenario.name}."
    sim = fleet.scenario()
    envelopes = list(sim.envelopes())
    sent_ids = {e.event_id for e in envelopes}
    tokens, supervisor = _write_tokens(run_dir, sorted({e.institution_id for e in envelopes}))
    size = fleet.size
    with _infrastructure(scenario, run_dir) as infra:
        kafka = infra["kafka"]
        ensure_topics(kafka, prefix)
        publish_registry(kafka, prefix, sim.registry)
        stack = ChaosStack(
            run_dir,
            _service_env(kafka, prefix, infra["env"]),
            infra["db_url"],
            app_id=f"chaos-{stamp}-{scenario.name}",
        )
        run = Run(
            stack,
            size,
            infra.get("broker"),
            infra.get("postgres"),
            infra.get("cluster"),
            kafka=kafka,
            prefix=prefix,
            probe_event_s=sim.start_us // 1_000_000,
        )
        follower = AlertFollower(stack.alerts_port, supervisor)
        try:
            _say(f"{scenario.name}: starting the services on {kafka} ({prefix}*)")
            stack.start()
            follower.start()
            result: dict[str, Any] = {}
            spool = run_dir / "spool"
            period_s = size.days * 86400

            def stream() -> None:
                result.update(
                    stream_telemetry(
                        envelopes,
                        f"127.0.0.1:{stack.gateway_port}",
                        tokens,
                        spool,
                        speedup=period_s / size.stream_s,
                        flush_timeout_s=size.settle_s,
                    )
                )

            streamer = threading.Thread(target=stream, name="chaos-stream", daemon=True)
            began = time.time()
            streamer.start()
            time.sleep(size.stream_s / 3)
            cursor_at_fault = follower.last_cursor()
            _say(f"{scenario.name}: fault at {time.time() - began:.1f}s into the stream")
            scenario.inject(run)
            _say(f"{scenario.name}: restored; streaming on")
            streamer.join(timeout=size.stream_s + 2 * size.settle_s)
            if run.probe is not None:
                run.probe.join(timeout=size.settle_s)
            settled = _settle(kafka, prefix, stack, follower, size)
            recovered = follower.first_after(run.restored_at, cursor_at_fault)
            probed = follower.first_of_entity(counts.PROBE_ENTITY)
            _say(f"{scenario.name}: counting")
            row = _count(kafka, prefix, stack, supervisor, sent_ids, spool, result)
            row.update(
                scenario=scenario.name,
                settled=settled,
                stream_reconnects=follower.reconnects,
                fault_s=round(run.fault_at - began, 1),
                outage_s=round(run.restored_at - run.fault_at, 1),
                ready_s=round(run.ready_at - run.restored_at, 1),
                recovery_s=None if recovered is None else round(recovered - run.restored_at, 2),
                probe_s=None if probed is None else round(probed - run.restored_at, 2),
                detector_restart=_checkpoint_choice(run_dir / "detector-2.log"),
            )
            return row
        finally:
            follower.stop()
            stack.stop()
            if scenario.kafka == "shared":
                delete_topics_with_prefix(kafka, prefix)


def _checkpoint_choice(log: Path) -> str | None:
    """What a restarted detector started from (its log's "checkpoint choice" line)."""
    if not log.exists():
        return None
    m = re.search(r"checkpoint choice: (.*)", log.read_text(errors="replace"))
    return m.group(1) if m else None


def _count(
    kafka: str,
    prefix: str,
    stack: ChaosStack,
    supervisor: str,
    sent_ids: set[str],
    spool: Path,
    result: dict[str, Any],
) -> dict[str, Any]:
    in_kafka = counts.telemetry_event_ids(kafka, prefix)
    acked = sum(r["acknowledged"] for r in result.values())
    unanswered = sum(r["unacknowledged"] for r in result.values())
    candidates = sent_ids - _rejected_ids(spool)
    # Unanswered events (a flush that timed out) may or may not be in Kafka: not counted lost.
    lost = max(0, len(candidates - in_kafka.keys()) - unanswered)
    on_topic, clears = counts.finding_ids(kafka, prefix)
    dead = counts.alerts_dead_letters(kafka, prefix)
    stored = counts.stored_alerts(stack.alerts_port, supervisor)
    not_stored = on_topic.keys() - stored.findings.keys() - set(dead)
    # A clear with no open alert to close is not stored by design: not a lost finding.
    missing = not_stored - clears
    return {
        "events_sent": len(sent_ids),
        "events_acked": acked,
        "events_rejected": sum(sum(r["rejected"].values()) for r in result.values()),
        "events_unanswered": unanswered,
        "events_in_kafka": len(in_kafka.keys() & sent_ids),
        "event_copies_in_kafka": sum(in_kafka.values()) - len(in_kafka),
        "events_lost": lost,
        "findings_on_topic": len(on_topic),
        "finding_copies_on_topic": sum(on_topic.values()) - len(on_topic),
        "findings_stored": len(stored.findings),
        "findings_missing": len(missing),
        "clears_not_stored": len(not_stored & clears),
        "alerts": stored.alerts,
        "duplicate_alerts": stored.duplicate_findings + stored.twins,
        "dead_lettered": len(dead),
        # Popped by run_all: compared with the no-fault run's (finding ids are deterministic).
        "_finding_ids": set(on_topic),
    }


def goals(row: dict[str, Any]) -> dict[str, bool | None]:
    """PASS/FAIL per goal of issue 8 (None: the goal does not apply to this scenario)."""
    # The probe, not the next detector finding: the detector may have nothing to say for a while.
    recovery = row.get("probe_s")
    return {
        "0 lost": row["events_lost"] == 0 and row["findings_missing"] == 0,
        "0 duplicate alerts": row["duplicate_alerts"] == 0,
        "alerts again <= 5 s": (
            recovery is not None and recovery <= ALERTS_RESTART_GOAL_S
            if row["scenario"] == "alerts_kill"
            else None
        ),
        "0 dead-lettered by DB outage": (
            row["dead_lettered"] == 0 if row["scenario"] == "db_outage" else None
        ),
    }


COLUMNS = (
    ("scenario", "scenario", 16),
    ("acked", "events_acked", 8),
    ("in kafka", "events_in_kafka", 9),
    ("lost", "events_lost", 5),
    ("findings", "findings_on_topic", 9),
    ("stored", "findings_stored", 7),
    ("missing", "findings_missing", 8),
    ("extra", "findings_extra", 6),
    ("alerts", "alerts", 7),
    ("dups", "duplicate_alerts", 5),
    ("DLQ", "dead_lettered", 4),
    ("outage s", "outage_s", 9),
    ("ready s", "ready_s", 8),
    ("flow s", "recovery_s", 7),
    ("probe s", "probe_s", 8),
)


def render(rows: list[dict[str, Any]], skipped: list[str]) -> str:
    lines = [" ".join(f"{h:>{w}}" for h, _, w in COLUMNS)]
    for row in rows:
        cells = []
        for _, key, w in COLUMNS:
            v = row.get(key)
            cells.append(f"{'-' if v is None else v!s:>{w}}")
        lines.append(" ".join(cells))
    lines.append("")
    for row in rows:
        verdicts = [
            f"{goal}: {'PASS' if ok else 'FAIL'}"
            for goal, ok in goals(row).items()
            if ok is not None
        ]
        lines.append(f"{row['scenario']:<16} " + "; ".join(verdicts))
    lines += skipped
    lines.append(
        "flow s: wall seconds from the restart (broker_of_three: from the kill) to the first new "
        "alert event on StreamAlerts (- when none came); probe s: from the restart to the alert "
        "of a probe finding put on the findings topic then (after the broker is back for "
        "broker_restart), the goal's measure. ready s: from the restart until the "
        "restarted service, broker or database answered. extra: findings the no-fault run did "
        "not make"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.chaos", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a small fleet, one simulated day")
    p.add_argument("--only", help="comma list of scenario names")
    args = p.parse_args(argv)
    size = QUICK if args.quick else FULL
    wanted = set(args.only.split(",")) if args.only else {s.name for s in SCENARIOS}
    unknown = wanted - {s.name for s in SCENARIOS}
    if unknown:
        p.error(f"unknown scenarios: {sorted(unknown)}")
    rows, skipped = run_all([s for s in SCENARIOS if s.name in wanted], size)
    print(render(rows, skipped))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "size": size.__dict__,
                "load_avg": os.getloadavg(),
                "scenarios": [{**r, "goals": goals(r)} for r in rows],
                "skipped": skipped,
            },
            indent=2,
        )
        + "\n"
    )
    _say(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


def run_all(
    scenarios: list[Scenario], size: Size, work: Path | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run each scenario on a fresh namespace; the cluster one only where the script exists.

    Logs, spools and SQLite stores go under ``work`` (``.state/chaos-<time>`` by default)."""
    fleet = Fleet(size)
    if work is None:
        work = REPO / ".state" / f"chaos-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    reference: set[str] | None = None
    for scenario in scenarios:
        if scenario.kafka == "cluster" and not cluster_script_exists():
            skipped.append(f"{scenario.name}: {NO_CLUSTER}")
            _say(skipped[-1])
            continue
        row = run_scenario(scenario, fleet, work)
        ids = row.pop("_finding_ids")
        if scenario.name == "no_fault":
            reference = ids
        # Findings the undisturbed stream does not make: what the fault made the detector say.
        row["findings_extra"] = None if reference is None else len(ids - reference)
        rows.append(row)
        _say(json.dumps(row))
    return rows, skipped


if __name__ == "__main__":
    raise SystemExit(main())
