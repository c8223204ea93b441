"""The chaos suite's promise at small scale: a SIGKILLed gateway or alert service loses nothing.

Runs perf.chaos's gateway_kill and alerts_kill scenarios (the same code as
``python -m perf.chaos``) on a tiny fleet: real services as processes, the real broker, the SDK
retrying through the kill. Counts are asserted, never timings (those are perf.chaos's figures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.chaos import SCENARIOS, Size, run_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A few thousand events over 12 s of wall time: long enough that each kill lands mid-stream.
TINY = Size(days=1, scale=0.1, stream_s=12.0, settle_s=60.0, quiet_s=3.0)


def test_gateway_and_alert_service_sigkill_lose_nothing_and_duplicate_no_alert(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    chosen = [s for s in SCENARIOS if s.name in ("gateway_kill", "alerts_kill")]
    rows, _ = run_all(chosen, TINY, work=tmp_path)
    by_name = {r["scenario"]: r for r in rows}
    assert set(by_name) == {"gateway_kill", "alerts_kill"}
    for name, row in by_name.items():
        # The fault happened while events were still being sent, and all were answered.
        assert row["fault_s"] < TINY.stream_s, name
        assert row["events_unanswered"] == 0, name
        assert row["events_acked"] == row["events_sent"] > 0, name
        assert row["events_lost"] == 0, name
        # Every finding the detector published is in an alert, none in two.
        assert row["findings_on_topic"] > 0, name
        assert row["findings_missing"] == 0, name
        assert row["duplicate_alerts"] == 0, name
        assert row["dead_lettered"] == 0, name
