"""Replay a generated scenario into a running suptech: telemetry through the SDK (one client per
institution, as real institutions would), and the sandbox register onto its compacted topic.

    python -m simulators.stream DIR --target 127.0.0.1:50051 --tokens-file tokens.json
    python -m simulators.stream DIR --registry-only --kafka 127.0.0.1:19092 --topic-prefix dev.

``tokens.json`` is the gateway's own file (``{"<token>": "<institution_id>"}``); ``--token``
uses one token for every institution (fine with ``--institutions`` naming one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from suptech.v1 import sandbox_pb2, telemetry_pb2

from simulators.fleet import institution_key

__all__ = [
    "read_telemetry",
    "read_registry",
    "publish_registry",
    "stream_telemetry",
    "main",
]


def read_telemetry(path: Path) -> Iterator[telemetry_pb2.TelemetryEnvelope]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json_format.Parse(line, telemetry_pb2.TelemetryEnvelope())
            except json_format.ParseError as exc:
                raise ValueError(f"{path}:{n}: not a TelemetryEnvelope: {exc}") from exc


def read_registry(path: Path) -> list[sandbox_pb2.SandboxTest]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json_format.Parse(line, sandbox_pb2.SandboxTest()) for line in lines if line.strip()]


def publish_registry(
    bootstrap: str, prefix: str, tests: Iterable[sandbox_pb2.SandboxTest], timeout_s: float = 30
) -> int:
    """Publish each test to ``<prefix>registry.sandbox.v1`` keyed by test_id; wait for acks."""
    from kafka import KafkaProducer
    from suptech.common.topics import REGISTRY_SANDBOX, ensure_topics, topic_name

    # Auto-creation would make an ordinary (deleting) topic: the register must be compacted.
    ensure_topics(bootstrap, prefix, specs=(REGISTRY_SANDBOX,), timeout_s=timeout_s)
    topic = topic_name(REGISTRY_SANDBOX, prefix)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [
            producer.send(topic, key=t.test_id.encode(), value=t.SerializeToString()) for t in tests
        ]
        for fut in futures:
            fut.get(timeout=timeout_s)
        return len(futures)
    finally:
        producer.close(timeout=timeout_s)


def stream_telemetry(
    envelopes: Iterable[telemetry_pb2.TelemetryEnvelope],
    target: str,
    tokens: dict[str, str],
    spool_root: Path,
    *,
    speedup: float | None = None,
    institutions: set[str] | None = None,
    flush_timeout_s: float = 120.0,
) -> dict[str, dict[str, Any]]:
    """Send every envelope through the SDK of its institution; return each client's counters.

    ``tokens`` maps institution_id -> token. With ``speedup`` the replay follows event time, that
    many simulated seconds per wall-clock second; without, as fast as the SDK accepts.
    """
    from suptech.sdk.client import TelemetryClient

    clients: dict[str, Any] = {}
    first_event: float | None = None
    began = time.monotonic()
    try:
        for env in envelopes:
            inst = env.institution_id
            if institutions is not None and inst not in institutions:
                continue
            if speedup:
                t = env.event_time.ToMicroseconds() / 1e6
                first_event = t if first_event is None else first_event
                delay = (t - first_event) / speedup - (time.monotonic() - began)
                if delay > 0:
                    time.sleep(delay)
            client = clients.get(inst)
            if client is None:
                if inst not in tokens:
                    raise ValueError(f"no token for institution {inst!r}")
                client = TelemetryClient(
                    target,
                    inst,
                    token=tokens[inst],
                    spool_dir=spool_root / inst,
                    pseudonym_key=institution_key(inst),
                )
                clients[inst] = client
            client.send(env)
        out: dict[str, dict[str, Any]] = {}
        for inst, client in clients.items():
            flushed = client.flush(timeout=flush_timeout_s)
            s = client.stats()
            out[inst] = {
                "flushed": flushed,
                "acknowledged": s.acknowledged,
                "rejected": dict(s.rejected),
                "unacknowledged": s.spooled,
                "last_error": s.last_error,
            }
        return out
    finally:
        for client in clients.values():
            client.close(timeout=0)


def _tokens(args: argparse.Namespace, institutions: Iterable[str]) -> dict[str, str]:
    if args.tokens_file:
        raw = json.loads(Path(args.tokens_file).read_text(encoding="utf-8"))
        return {inst: token for token, inst in raw.items()}
    if args.token:
        return {inst: args.token for inst in institutions}
    raise SystemExit("simulators.stream: give --tokens-file or --token")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.stream", description=__doc__)
    p.add_argument("dir", type=Path, help="output directory of simulators.generate")
    p.add_argument("--target", help="gateway host:port")
    p.add_argument("--token")
    p.add_argument("--tokens-file")
    p.add_argument("--spool-dir", type=Path, default=Path("/tmp/suptech-sim-spool"))
    p.add_argument("--speedup", type=float, default=None, help="simulated s per wall-clock s")
    p.add_argument("--institutions", help="comma list; default all")
    p.add_argument("--kafka", help="bootstrap servers: also publish the sandbox register")
    p.add_argument("--topic-prefix", default="")
    p.add_argument("--registry-only", action="store_true")
    args = p.parse_args(argv)
    if args.kafka:
        n = publish_registry(
            args.kafka, args.topic_prefix, read_registry(args.dir / "sandbox_registry.jsonl")
        )
        print(f"published {n} sandbox tests", file=sys.stderr)
    if args.registry_only:
        return 0
    if not args.target:
        p.error("--target is required unless --registry-only")
    fleet = json.loads((args.dir / "fleet.json").read_text(encoding="utf-8"))
    all_insts = [i["institution_id"] for i in fleet["institutions"]]
    only = set(args.institutions.split(",")) if args.institutions else None
    result = stream_telemetry(
        read_telemetry(args.dir / "telemetry.jsonl"),
        args.target,
        _tokens(args, all_insts),
        args.spool_dir,
        speedup=args.speedup,
        institutions=only,
    )
    print(json.dumps(result, indent=1))
    ok = all(r["flushed"] and not r["rejected"] for r in result.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
