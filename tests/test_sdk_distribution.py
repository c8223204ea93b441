"""The SDK as institutions install it: its own wheel, in a fresh virtual environment, streaming
to the real gateway and Kafka; and the async client typed like the sync one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from mypy import api as mypy_api

from tests.test_ingest_e2e import INSTITUTION, KEY, REPO, TOKEN, Gateway, read_kafka
from tests.test_ingest_e2e import gateway as gateway  # the fixture

SCRIPT = """
import importlib.util, sys, tempfile
from suptech.sdk import TelemetryClient
# Nothing of the server came with the SDK.
for name in ("suptech.gateway", "suptech.detector", "suptech.alerts", "kafka", "faust"):
    assert importlib.util.find_spec(name) is None, name
target, institution, token, key = sys.argv[1:5]
with TelemetryClient(target, institution, token=token, spool_dir=tempfile.mkdtemp(),
                     pseudonym_key=key.encode()) as client:
    for i in range(20):
        client.heartbeat(f"venv-src-{i}")
    assert client.flush(timeout=60), client.stats()
    print("acknowledged", client.stats().acknowledged)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [str(REPO / "scripts" / "build_sdk.sh"), str(out)],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    return Path(built.stdout.strip())


def test_wheel_holds_the_sdk_and_contracts_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith(".py")}
    assert packages == {"suptech", "suptech/sdk", "suptech/v1"}
    meta = next(n for n in names if n.endswith("METADATA"))
    requires = [
        line.split(":", 1)[1].strip()
        for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert sorted(r.split(">")[0].split("<")[0] for r in requires) == ["grpcio", "protobuf"]


def fresh_venv(tmp_path: Path, wheel: Path, *more: str) -> Path:
    """A new virtual environment with the SDK's wheel (and then ``pip install *more`` when
    given); its python. pip runs without make test's PYTHONPATH, where it would find the source
    tree's suptech installed and skip the wheel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, env=env, cwd=tmp_path)
    if more:
        subprocess.run([*pip, *more], check=True, env=env, cwd=tmp_path)
    return py


@pytest.mark.integration
@pytest.mark.slow
def test_wheel_in_a_fresh_venv_streams_to_the_gateway(
    wheel: Path, gateway: Gateway, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    py = fresh_venv(tmp_path, wheel)
    run = subprocess.run(
        [str(py), "-c", SCRIPT, gateway.target, INSTITUTION, TOKEN, KEY.decode()],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        # `make test` exports PYTHONPATH=services: the venv must see only what it installed.
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert run.returncode == 0, run.stderr
    assert "acknowledged 20" in run.stdout
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, lambda e: len(e["heartbeat"]) >= 20)
    sources = {e.heartbeat.source_id for e in events["heartbeat"]}
    assert sources == {f"venv-src-{i}" for i in range(20)}


@pytest.mark.slow
def test_the_server_distribution_depends_on_the_sdk_and_ships_none_of_it(
    wheel: Path, tmp_path: Path
) -> None:
    """The regulator's wheel requires suptech-sdk and carries only its own subpackages; both
    installed side by side (as in the image) make one ``suptech`` package."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(REPO)],
        check=True,
    )  # fmt: skip
    [server] = tmp_path.glob("suptech-*.whl")
    names = zipfile.ZipFile(server).namelist()
    shipped = {n.split("/")[1] for n in names if n.startswith("suptech/") and n.count("/") > 1}
    assert shipped == {"alerts", "common", "console", "detector", "gateway", "ops"}
    assert not [n for n in names if n.startswith("suptech/") and n.count("/") == 1]
    meta = next(n for n in names if n.endswith("METADATA"))
    requires = [
        line.split(":", 1)[1].strip()
        for line in zipfile.ZipFile(server).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert requires == ["suptech-sdk==0.1.0"]
    py = fresh_venv(tmp_path, wheel, "--no-deps", str(server))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = (
        "import suptech, suptech.sdk, suptech.v1.ingest_pb2, suptech.gateway.config, "
        "suptech.common.config; print(suptech.__version__, len(suptech.__path__))"
    )
    run = subprocess.run(
        [str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0.1.0", "1"]


def readme_first_example() -> str:
    text = (REPO / "services" / "suptech" / "sdk" / "README.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.integration
@pytest.mark.slow
def test_the_readme_first_example_runs_as_written_with_only_the_wheel(
    wheel: Path, gateway: Gateway, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    py = fresh_venv(tmp_path, wheel)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SUPTECH_GATEWAY=gateway.target, SUPTECH_INSTITUTION=INSTITUTION, SUPTECH_TOKEN=TOKEN)
    run = subprocess.run(
        [str(py), "-c", readme_first_example()],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "acknowledged=3" in run.stdout, run.stdout
    events, _ = read_kafka(
        kafka_bootstrap, topic_prefix, lambda e: sum(len(v) for v in e.values()) >= 3
    )
    assert {kind for kind, evs in events.items() if evs} == {"data_access", "metrics", "heartbeat"}
    [access] = events["data_access"]
    assert "emp-10023" not in str(access)


def test_mypy_catches_a_wrong_argument_on_the_async_client_as_on_the_sync(tmp_path: Path) -> None:
    snippet = tmp_path / "wrong.py"
    call = 'heartbeat("src", interval_seconds="60")'
    snippet.write_text(
        textwrap.dedent(f"""
        from suptech.sdk import AsyncTelemetryClient, TelemetryClient
        sync = TelemetryClient("h:1", "B", spool_dir="s", pseudonym_key=b"k")
        aio = AsyncTelemetryClient("h:1", "B", spool_dir="s", pseudonym_key=b"k", batch="x")
        sync.{call}
        aio.{call}
        aio.data_access(system_id="s", actor_id="a", operation="export", channel=1,
                        destination_kind="internal", records="12")
        """)
    )
    out, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--follow-imports=silent", str(snippet)]
    )
    assert status == 1
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert sorted(int(e.split(":")[1]) for e in errors) == [4, 5, 6, 8], out
