"""SDK -> gateway (subprocess) -> Kafka (acks=all) throughput, by SDK batch size.

    python -m perf.ingest_throughput [--quick] [--kafka 127.0.0.1:19092] [--sizes 1,100,1000]
        [--runs 3] [--seconds 12]

For each batch size (1, 100, 1000) it streams data-access events through a real ``TelemetryClient``
(durable spool included) to a real gateway on loopback that writes them to the shared broker under
a topic prefix of its own, and reports acknowledged events/s, the gateway's CPU per event (from
/proc/<pid>/stat) and the SDK process's CPU per event. It also measures the SDK alone (encoding and
spooling, no network) for the two ways of sending: the bulk template path and the per-event builder.
Each batch size runs ``--runs`` times (default 3, 1 with ``--quick``) for ``--seconds`` of
sustained sending after a warm-up that is not counted; the summary gives the median run (by
events/s) with the range, and /proc/loadavg before and after, since the machine is shared.
Writes perf/results/ingest_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from suptech.common.topics import ensure_topics
from suptech.sdk import TelemetryClient, pseudonymise
from suptech.v1 import telemetry_pb2

from simulators.run_pipeline import Service

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "perf" / "results" / "ingest_throughput.json"
INSTITUTION = "BENCH-BANK"
TOKEN = "tok-bench-" + "x" * 20
KEY = b"bench-pseudonym-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_gateway(kafka: str, prefix: str, workdir: Path) -> Service:
    """The gateway as its own process (as deployed), on its own topic namespace."""
    tokens = workdir / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: INSTITUTION}))
    env = dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'services'}:{REPO}",
        GATEWAY_PORT="0",
        KAFKA_ADDR=kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
        GATEWAY_TOKENS_FILE=str(tokens),
        GATEWAY_RATE_LIMIT_EPS="10000000",
    )
    return Service("gateway", "suptech.gateway", env, workdir / "gateway.log")


def payload_templates(n: int) -> list[bytes]:
    """A few distinct data-access payloads, serialised once (actors pseudonymised once)."""
    out = []
    for i in range(n):
        msg = telemetry_pb2.DataAccessEvent(
            system_id=f"core-{i % 4}",
            actor_pseudonym=pseudonymise(KEY, f"employee-{i}"),
            actor_role=telemetry_pb2.ACTOR_ROLE_EMPLOYEE,
            channel=telemetry_pb2.CHANNEL_API,
            operation=telemetry_pb2.OPERATION_QUERY,
            records=10 + i,
            fields=telemetry_pb2.FieldsByClass(c2=2),
            bytes_out=2048,
            destination_kind=telemetry_pb2.DESTINATION_KIND_INTERNAL,
        )
        out.append(msg.SerializeToString())
    return out


def run_one(
    target: str, gw_pid: int, batch_size: int, seconds: float, max_events: int
) -> dict[str, Any]:
    templates = payload_templates(16)
    chunk = max(batch_size, 100)
    block = [templates[i % len(templates)] for i in range(chunk)]
    backlog_cap = max(8 * batch_size, 2000)
    with tempfile.TemporaryDirectory(prefix="suptech-bench-") as spool:
        client = TelemetryClient(
            target,
            INSTITUTION,
            token=TOKEN,
            spool_dir=spool,
            pseudonym_key=KEY,
            batch_size=batch_size,
            linger_s=0.005,
            max_in_flight=8,
        )
        # Warm-up, not counted: opens the stream and the gateway's Kafka connections, and runs
        # the hot paths a few times.
        for _ in range(3):
            client.send_many_encoded("data_access", block[:batch_size])
        client.flush(30)
        base_acked = client.stats().acknowledged
        gw0 = proc_cpu_s(gw_pid)
        me0 = time.process_time()
        t0 = time.perf_counter()
        sent = 0
        while time.perf_counter() - t0 < seconds and sent < max_events:
            if client.stats().spooled > backlog_cap:
                time.sleep(0.001)
                continue
            n = min(chunk, max_events - sent)
            client.send_many_encoded("data_access", block[:n])
            sent += n
        flushed = client.flush(120)
        elapsed = time.perf_counter() - t0
        me = time.process_time() - me0
        gw = proc_cpu_s(gw_pid) - gw0
        stats = client.stats()
        client.close(timeout=0)
    acked = stats.acknowledged - base_acked
    return {
        "batch_size": batch_size,
        "events": sent,
        "acknowledged": acked,
        "rejected": stats.rejected_total,
        "flushed": flushed,
        "retries": stats.retries,
        "seconds": round(elapsed, 3),
        "events_per_s": round(acked / elapsed, 1),
        "gateway_cpu_us_per_event": round(gw * 1e6 / max(acked, 1), 2),
        "sdk_cpu_us_per_event": round(me * 1e6 / max(acked, 1), 2),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
    }


def sdk_only(n: int) -> dict[str, float]:
    """Encoding + spooling cost with no gateway (nothing listens on the target)."""
    templates = payload_templates(16)
    block = [templates[i % 16] for i in range(1000)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="suptech-bench-") as spool:
        client = TelemetryClient(
            "127.0.0.1:9", INSTITUTION, spool_dir=spool, pseudonym_key=KEY, retry_base_s=30
        )
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n // 1000):
            client.send_many_encoded("data_access", block)
        bulk = n // 1000 * 1000
        out["bulk_template_events_per_s"] = round(bulk / (time.perf_counter() - t0))
        out["bulk_template_cpu_us_per_event"] = round((time.process_time() - c0) * 1e6 / bulk, 2)
        m = max(n // 20, 500)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(m):
            client.data_access(
                system_id="core",
                actor_id=f"employee-{i % 50}",
                actor_role="employee",
                channel="api",
                operation="query",
                records=10,
                fields={"c2": 2},
                bytes_out=2048,
                destination_kind="internal",
            )
        out["builder_events_per_s"] = round(m / (time.perf_counter() - t0))
        out["builder_cpu_us_per_event"] = round((time.process_time() - c0) * 1e6 / m, 2)
        client.close(timeout=0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 2 s per batch size")
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_ADDR", "127.0.0.1:19092"))
    parser.add_argument("--sizes", default="1,100,1000", help="batch sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=None, help="runs per batch size (3)")
    parser.add_argument("--seconds", type=float, default=None, help="per run (12; quick 2)")
    parser.add_argument("--no-sdk-only", action="store_true", help="skip the SDK-alone figures")
    args = parser.parse_args(argv)
    seconds = args.seconds or (2.0 if args.quick else 12.0)
    runs = args.runs or (1 if args.quick else 3)
    sizes = [int(s) for s in args.sizes.split(",")]
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    ensure_topics(args.kafka, prefix)
    results: dict[str, Any] = {
        "benchmark": "ingest_throughput",
        "quick": args.quick,
        "kafka": args.kafka,
        "cpus": os.cpu_count(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "seconds_per_run": seconds,
        "sdk_only": {} if args.no_sdk_only else sdk_only(20_000 if args.quick else 100_000),
        "runs": [],
        "summary": [],
    }
    print(f"SDK alone (encode + spool, no network): {results['sdk_only']}")
    with tempfile.TemporaryDirectory(prefix="suptech-bench-gw-") as work:
        gateway = start_gateway(args.kafka, prefix, Path(work))
        try:
            port = int(gateway.wait_for(r"gateway listening on (\d+)", 60).group(1))
            for batch_size in sizes:
                # Batch 1 is slow (one Kafka round trip per event): bounded by count too.
                max_events = (300 if args.quick else 2000) if batch_size == 1 else 10**8
                for _ in range(runs):
                    run = run_one(
                        f"127.0.0.1:{port}", gateway.proc.pid, batch_size, seconds, max_events
                    )
                    results["runs"].append(run)
                    print(
                        f"batch {batch_size:>5}: {run['events_per_s']:>10,.0f} events/s  "
                        f"gateway {run['gateway_cpu_us_per_event']:>8.1f} µs CPU/event  "
                        f"SDK {run['sdk_cpu_us_per_event']:>7.1f} µs CPU/event  "
                        f"({run['acknowledged']} acked in {run['seconds']} s, "
                        f"loadavg {run['loadavg']})",
                        flush=True,
                    )
        finally:
            gateway.stop(15)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    for size in sizes:
        runs = [r for r in results["runs"] if r["batch_size"] == size]
        rates = [r["events_per_s"] for r in runs]
        mid = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]
        summary = {
            "batch_size": size,
            "runs": len(runs),
            "median_events_per_s": statistics.median(rates),
            "min_events_per_s": min(rates),
            "max_events_per_s": max(rates),
            "median_gateway_cpu_us_per_event": statistics.median(
                r["gateway_cpu_us_per_event"] for r in runs
            ),
            "median_sdk_cpu_us_per_event": statistics.median(
                r["sdk_cpu_us_per_event"] for r in runs
            ),
            "median_run_loadavg": mid["loadavg"],
        }
        results["summary"].append(summary)
        print(
            f"median batch {size:>5}: {summary['median_events_per_s']:>10,.0f} events/s "
            f"({summary['min_events_per_s']:,.0f}-{summary['max_events_per_s']:,.0f})  "
            f"gateway {summary['median_gateway_cpu_us_per_event']:.1f} µs/event  "
            f"SDK {summary['median_sdk_cpu_us_per_event']:.1f} µs/event  "
            f"loadavg {' '.join(results['loadavg_start'])} -> {' '.join(results['loadavg_end'])}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
