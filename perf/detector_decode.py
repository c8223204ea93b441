"""How fast a shard's state is decoded at a takeover, per actor, in this snapshot format and in
the one before it (version 8: each per-actor detector a dict of its slots).

    python -m perf.detector_decode [--actors N] [--runs K]

Feeds N distinct actors (default 200k) two real data accesses each through the engine, takes
its snapshot, and times :meth:`DetectionEngine.restore` of it with the collector paused, as a
worker restores (``gc_tuning.bulk_load``); then the same state pickled as version 8 did. Reports
the median CPU time per actor of K restores (default 3) of each, their ratio, the bytes per actor
and the CPU time of one snapshot (what a worker's snapshot child spends). The takeover of issue
11 (``perf.detector_scaleout --only takeover``) decodes about a million actors: this is the part
of it that grows with them. Writes perf/results/detector_decode.json.
"""

from __future__ import annotations

import argparse
import copyreg
import io
import json
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

from suptech.common.gc_tuning import bulk_load
from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.logic.slot_state import PackedSlots
from suptech.v1 import telemetry_pb2

RESULTS = Path(__file__).resolve().parent / "results" / "detector_decode.json"
_T0 = 1_790_000_000 * 10**9


def engine_with_actors(n: int) -> DetectionEngine:
    engine = DetectionEngine(EngineConfig(dedup_capacity=1))
    env = telemetry_pb2.TelemetryEnvelope(institution_id="bank-1")
    da = env.data_access
    da.records = 5
    da.bytes_out = 900
    da.destination_kind = telemetry_pb2.DESTINATION_KIND_PARTNER
    da.destination_pseudonym = "ab" * 32
    for i in range(n):
        da.system_id = f"sys-{i % 50}"
        da.actor_pseudonym = f"{i:064x}"
        for k, op in enumerate((telemetry_pb2.OPERATION_QUERY, telemetry_pb2.OPERATION_EXPORT)):
            env.event_id = f"m{i}-{k}"
            env.event_time.FromNanoseconds(_T0 + i * 1000 + k)
            da.operation = op
            engine.process(env)
            engine.scores.take()
    return engine


class _DictPickler(pickle.Pickler):
    """Pickles the per-actor detectors as version 8 did: a dict of their slots each."""

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, PackedSlots):
            return NotImplemented
        getstate = getattr(type(obj), "__getstate__", None)
        if getstate is not None and getstate is not object.__getstate__:
            return (copyreg.__newobj__, (type(obj),), obj.__getstate__())  # type: ignore[attr-defined]
        slots = {k: getattr(obj, k) for k in type(obj).__slots__}  # type: ignore[attr-defined]
        return (copyreg.__newobj__, (type(obj),), (None, slots))


def version8_snapshot(engine: DetectionEngine) -> bytes:
    state = dict(engine.__dict__)
    state["_out"] = []
    buf = io.BytesIO()
    _DictPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump((8, state))
    return buf.getvalue()


def time_restore(blob: bytes, runs: int) -> float:
    """Median CPU seconds of ``runs`` restores of ``blob``."""
    times = []
    for _ in range(runs):
        with bulk_load():
            start = time.process_time()
            engine = DetectionEngine.restore(blob)
            times.append(time.process_time() - start)
        del engine
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actors", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    engine = engine_with_actors(args.actors)
    assert engine.stats()["actors"] == args.actors
    blobs, dump_s = {}, {}
    for name, snapshot in (
        ("version 9 (packed)", DetectionEngine.snapshot),
        ("version 8 (dicts)", version8_snapshot),
    ):
        start = time.process_time()
        blobs[name] = snapshot(engine)
        dump_s[name] = time.process_time() - start
    del engine
    out: dict[str, Any] = {"actors": args.actors, "runs": args.runs, "formats": {}}
    for name, blob in blobs.items():
        cpu = time_restore(blob, args.runs)
        out["formats"][name] = {
            "bytes_per_actor": len(blob) / args.actors,
            "restore_us_per_actor": cpu / args.actors * 1e6,
            "restore_s_per_million": cpu / args.actors * 1e6,
            "snapshot_us_per_actor": dump_s[name] / args.actors * 1e6,
        }
    new, old = (out["formats"][k]["restore_us_per_actor"] for k in blobs)
    out["speedup"] = old / new
    print(f"restore of {args.actors:,} actors (median CPU of {args.runs}, collector paused):")
    for name, r in out["formats"].items():
        print(
            f"  {name:20s} {r['restore_us_per_actor']:6.2f} us/actor "
            f"({r['restore_s_per_million']:.1f} s per million), "
            f"{r['bytes_per_actor']:,.0f} B/actor, "
            f"snapshot {r['snapshot_us_per_actor']:.2f} us/actor"
        )
    print(f"  version 9 decodes {out['speedup']:.2f}x as fast as version 8")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
