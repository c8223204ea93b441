"""The contracts: generated code is current and importable without server dependencies."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "gen_protos.sh"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_contracts_import_without_server_dependencies() -> None:
    # An institution installs the SDK without Kafka, faust or river: contracts must not pull them.
    code = (
        "import sys\n"
        "from suptech.v1 import telemetry_pb2, ingest_pb2_grpc, alerts_pb2, findings_pb2\n"
        "bad = [m for m in ('kafka', 'faust', 'river', 'sqlalchemy') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "e = telemetry_pb2.TelemetryEnvelope(event_id='x', institution_id='bank-a')\n"
        "assert e.WhichOneof('payload') is None\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "services")},
    )
    assert result.returncode == 0, result.stderr
