"""perf.detector_scaleout's quick takeover on the real broker: a worker started beside a
SIGKILLed one takes over every shard from its checkpoints in Kafka and goes on processing new
telemetry of each (the benchmark's figures are in its JSON; no timed assertion here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf.detector_scaleout import SHARDS, main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_second_worker_takes_over_every_shard_of_a_killed_one(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "scaleout.json"
    main(
        [
            *("--quick", "--only", "takeover", "--takeover-actors", "3000"),
            *("--kafka", kafka_bootstrap, "--out", str(out)),
        ]
    )
    takeover = json.loads(out.read_text())["takeover"]
    shards = sorted(SHARDS)
    # B holds every shard, restored from A's checkpoints (not started cold: A's actors are kept).
    assert takeover["shards_taken_over"] == shards
    assert takeover["shards_restored_from_kafka"] == shards
    assert takeover["a_checkpoint_bytes"] > 0
    # ... and processed records produced after the kill for each of them.
    assert sorted(int(s) for s in takeover["kill_to_new_records_s"]) == shards
    for figure in ("kill_to_all_taken_on_s", "kill_to_all_new_records_s", "restore_s"):
        assert takeover[figure] > 0, figure
    assert takeover["actors"] >= 2_880
    assert takeover["load_before"] and takeover["load_after"]
