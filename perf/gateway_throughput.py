"""Gateway throughput and CPU per event: ``python -m perf.gateway_throughput [--quick]``.

Runs ``python -m suptech.gateway`` as its own process against the local broker, streams
pre-serialized batches of 1000 mixed events over one stream with several batches in flight (as the
SDK does), and reports events/s acknowledged and the gateway process's CPU µs per event (from
/proc), which is what the 100k events/s on 2 cores budget is spent on. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from suptech.common.topics import ensure_topics
from suptech.v1 import ingest_pb2

from perf.gateway_validation import RESULTS, make_batch

REPO = Path(__file__).resolve().parents[1]
TOKEN = "perf-token-" + "p" * 32
METHOD = "/suptech.v1.IngestService/StreamTelemetry"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(batches: int, batch_size: int, in_flight: int, kafka: str) -> dict[str, float]:
    prefix = f"perf{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka, prefix)
    now = time.time()
    template = make_batch(batch_size, now)
    payloads = []
    for i in range(batches):
        for j, ev in enumerate(template.events):
            ev.event_id = f"b{i:06d}-e{j:06d}"
        template.batch_id = f"b{i}"
        payloads.append(template.SerializeToString())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({TOKEN: "bank-a"}, f)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "services"), str(REPO)]),
        GATEWAY_PORT="0",
        GATEWAY_TOKENS_FILE=f.name,
        KAFKA_ADDR=kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "suptech.gateway", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            if not line:
                raise RuntimeError("gateway exited before listening")
            match = re.search(r"gateway listening on (\d+)", line)
            port = int(match.group(1)) if match else None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            # Bytes in, parsed acks out: the client costs as little as possible.
            call = channel.stream_stream(
                METHOD,
                request_serializer=lambda b: b,
                response_deserializer=ingest_pb2.BatchAck.FromString,
            )(metadata=(("authorization", f"Bearer {TOKEN}"),))
            await call.write(payloads[0])  # warm up: connections to Kafka, topic metadata
            await call.read()
            slots = asyncio.Semaphore(in_flight)
            accepted = 0

            async def read_acks() -> None:
                nonlocal accepted
                for _ in range(batches - 1):
                    ack = await call.read()
                    accepted += ack.accepted
                    slots.release()

            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            reader = asyncio.create_task(read_acks())
            for payload in payloads[1:]:
                await slots.acquire()
                await call.write(payload)
            await reader
            wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
            await call.done_writing()
        events = (batches - 1) * batch_size
        if accepted != events:
            raise RuntimeError(f"accepted {accepted} of {events}")
        return {
            "events_per_s": events / wall,
            "gateway_cpu_us_per_event": cpu / events * 1e6,
            "gateway_cores_busy": cpu / wall,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
        os.unlink(f.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 batches instead of 200")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_ADDR", "127.0.0.1:19092"))
    args = parser.parse_args()
    batches = 21 if args.quick else 201
    figures = asyncio.run(run(batches, args.batch_size, args.in_flight, args.kafka))
    result = {
        "benchmark": "gateway_throughput",
        "batch_size": args.batch_size,
        "batches": batches - 1,
        "in_flight": args.in_flight,
        "load_average_1m": os.getloadavg()[0],
        **figures,
    }
    for key, value in result.items():
        print(f"{key:28} {value:,.2f}" if isinstance(value, float) else f"{key:28} {value}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateway_throughput.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
