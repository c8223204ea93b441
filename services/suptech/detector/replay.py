"""Replay recorded telemetry through the detection engine, without Kafka.

    python -m suptech.detector.replay TELEMETRY.jsonl [--registry sandbox_registry.jsonl] \
        --out findings.jsonl [--scores scores.csv]

Each input line is one ``TelemetryEnvelope`` in protobuf JSON; each output line one ``Finding``.
``--scores`` writes every per-event anomaly score the engine made, one CSV row each (institution,
entity, model, event, event time, score in [0, 1], alarm level, observed, expected, alarm).
The engine runs on event time alone, so a replay at full speed gives the findings (and finding
ids) the live detector gave.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from google.protobuf import json_format

from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.logic.scores import Score, write_csv
from suptech.v1 import findings_pb2, sandbox_pb2, telemetry_pb2

__all__ = ["main", "read_envelopes", "read_registry", "replay"]


def read_envelopes(path: Path) -> Iterator[telemetry_pb2.TelemetryEnvelope]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json_format.Parse(line, telemetry_pb2.TelemetryEnvelope())
            except json_format.ParseError as exc:
                raise ValueError(f"{path}:{n}: not a TelemetryEnvelope: {exc}") from exc


def read_registry(path: Path) -> list[sandbox_pb2.SandboxTest]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json_format.Parse(line, sandbox_pb2.SandboxTest()))
                except json_format.ParseError as exc:
                    raise ValueError(f"{path}:{n}: not a SandboxTest: {exc}") from exc
    return out


def replay(
    envelopes: Iterable[telemetry_pb2.TelemetryEnvelope],
    registry: Iterable[sandbox_pb2.SandboxTest] = (),
    engine: DetectionEngine | None = None,
    on_scores: Callable[[list[Score]], object] | None = None,
) -> list[findings_pb2.Finding]:
    """Run ``envelopes`` in order through ``engine``; flush silence at the last event time.

    ``on_scores`` receives the per-event scores as they are made (else they are dropped).
    """
    engine = engine or DetectionEngine(EngineConfig(record_scores=on_scores is not None))
    for test in registry:
        engine.upsert_sandbox_test(test)
    findings: list[findings_pb2.Finding] = []
    last = 0
    for env in envelopes:
        findings.extend(engine.process(env))
        last = max(last, env.event_time.ToNanoseconds())
        # Taken every event even without on_scores: a given engine may record scores, and a
        # long replay would otherwise hold every one of them until the end, to drop them.
        made = engine.take_scores()
        if on_scores is not None:
            on_scores(made)
    findings.extend(engine.advance(last))
    engine.take_scores()
    return findings


@contextlib.contextmanager
def _scores_file(path: Path | None) -> Iterator[TextIO | None]:
    if path is None:
        yield None
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        yield fh


def _write(findings: list[findings_pb2.Finding], out: TextIO) -> None:
    for f in findings:
        out.write(json_format.MessageToJson(f, indent=None, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suptech.detector.replay", description=__doc__)
    parser.add_argument("telemetry", type=Path, help="JSON-lines file of TelemetryEnvelope")
    parser.add_argument("--registry", type=Path, help="JSON-lines file of SandboxTest")
    parser.add_argument("--out", type=Path, required=True, help="where to write findings")
    parser.add_argument("--scores", type=Path, help="where to write per-event scores (CSV)")
    args = parser.parse_args(argv)
    try:
        registry = read_registry(args.registry) if args.registry else []
        engine = DetectionEngine(EngineConfig(record_scores=args.scores is not None))
        with _scores_file(args.scores) as scores_out:
            on_scores = None
            if scores_out is not None:
                write_csv((), scores_out)
                out_file = scores_out

                def on_scores(scores: list[Score]) -> None:
                    write_csv(scores, out_file, header=False)

            findings = replay(read_envelopes(args.telemetry), registry, engine, on_scores)
    except (OSError, ValueError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    with args.out.open("w", encoding="utf-8") as out:
        _write(findings, out)
    stats = engine.stats()
    by = Counter(f.rule_id or f.model_id for f in findings)
    print(
        f"{stats['events_processed']} events ({stats['duplicates_skipped']} duplicates), "
        f"{len(findings)} findings -> {args.out}"
    )
    for detector, n in sorted(by.items()):
        print(f"  {detector:34s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
