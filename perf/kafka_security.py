"""What TLS + SASL/SCRAM costs the gateway: ``python -m perf.kafka_security [--quick]``.

Starts two private brokers with the same heap (``scripts/kafka.sh up`` on a free port, PLAINTEXT,
and ``scripts/kafka.sh up-secure``, SASL_SSL with SCRAM-SHA-512), runs the gateway benchmark
(:mod:`perf.gateway_throughput`: the real gateway process, batches of 1000 mixed events, 4 in
flight) against each, prints events/s and the gateway's CPU µs per event side by side, writes
``perf/results/kafka_security.json`` and wipes both brokers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
from pathlib import Path

from perf.gateway_throughput import run
from perf.gateway_validation import RESULTS

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "scripts" / "kafka.sh"
HEAP = "-Xmx384m -Xms128m"


def free_pair() -> int:
    """A free port whose successor is free too (a broker's controller listener takes it)."""
    for port in range(19600, 19700, 2):
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair in 19600-19700")


def script(*args: str, env: dict[str, str]) -> str:
    """``scripts/kafka.sh ARGS`` with ``env`` added; its stdout, or RuntimeError with stderr."""
    done = subprocess.run(
        [str(KAFKA_SH), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return done.stdout


def measure(batches: int, kafka: str, security: dict[str, str]) -> dict[str, float]:
    """The gateway (a subprocess inheriting os.environ) and the topic set-up with ``security``."""
    saved = {k: os.environ.get(k) for k in security}
    os.environ.update(security)
    try:
        return asyncio.run(run(batches, 1000, 4, kafka))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 batches instead of 100")
    args = parser.parse_args()
    batches = 21 if args.quick else 101
    plain_port, secure_port = free_pair(), free_pair() + 2
    plain = {
        "KAFKA_PORT": str(plain_port),
        "KAFKA_CONTROLLER_PORT": str(plain_port + 1),
        "KAFKA_HEAP": HEAP,
    }
    secure = {
        "KAFKA_SECURE_PORT": str(secure_port),
        "KAFKA_SECURE_CONTROLLER_PORT": str(secure_port + 1),
        "KAFKA_SECURE_HEAP": HEAP,
    }
    figures: dict[str, dict[str, float]] = {}
    try:
        script("up", env=plain)
        figures["PLAINTEXT"] = measure(batches, f"127.0.0.1:{plain_port}", {})
        out = script("up-secure", env=secure)
        settings = dict(line.split("=", 1) for line in out.splitlines() if "=" in line[:40])
        kafka = settings.pop("KAFKA_ADDR")
        figures["SASL_SSL"] = measure(batches, kafka, settings)
    finally:
        script("wipe", env=plain)
        script("wipe-secure", env=secure)
    result = {
        "benchmark": "kafka_security",
        "batches": batches - 1,
        "batch_size": 1000,
        "load_average_1m": os.getloadavg()[0],
        **{f"{proto}_{k}": v for proto, f in figures.items() for k, v in f.items()},
    }
    for key, value in result.items():
        print(f"{key:40} {value:,.2f}" if isinstance(value, float) else f"{key:40} {value}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kafka_security.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
