"""Shared fixtures: the real Kafka broker (scripts/kafka.sh) and per-test topic namespaces."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from suptech.common.topics import delete_topics_with_prefix, ensure_topics

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "scripts" / "kafka.sh"


def fixed_port() -> int:
    """A free port below the kernel's ephemeral range, for a service told its port in advance.

    A port from ``bind(0)`` is ephemeral: released, the kernel may hand it to another service
    started on port 0 meanwhile (seen: the detector's metrics port given to the alert service's
    gRPC port, and a scrape read HTTP/2)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10_000, max(10_001, low))
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def kafka_up(port: int) -> str:
    """Start (or find running) the project's broker on ``port``; return its bootstrap address."""
    env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_CONTROLLER_PORT=str(port + 1))
    subprocess.run([str(KAFKA_SH), "up"], check=True, env=env, stdout=subprocess.DEVNULL)
    return f"127.0.0.1:{port}"


def kafka_down(port: int, wipe: bool = False) -> None:
    env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_CONTROLLER_PORT=str(port + 1))
    subprocess.run(
        [str(KAFKA_SH), "wipe" if wipe else "down"], check=True, env=env, stdout=subprocess.DEVNULL
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The shared test broker. Tests isolate through topic prefixes, never by restarting it."""
    return kafka_up(int(os.environ.get("KAFKA_PORT", "19092")))


@pytest.fixture
def topic_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh namespace of every suptech topic, created on the shared broker and deleted after
    the test: a broker that kept every test's partitions would run out of its small heap after
    a few runs of the suite."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka_bootstrap, prefix)
    yield prefix
    try:
        delete_topics_with_prefix(kafka_bootstrap, prefix)
    except Exception as exc:  # housekeeping: never the verdict on the test itself
        warnings.warn(f"could not delete topics {prefix}*: {exc!r}", stacklevel=1)


@pytest.fixture
def private_kafka() -> Iterator[Callable[[int], str]]:
    """Start a broker of the test's own (for tests that stop or restart it); wiped afterwards."""
    started: list[int] = []

    def start(port: int) -> str:
        started.append(port)
        return kafka_up(port)

    yield start
    for port in set(started):
        kafka_down(port, wipe=True)


# --- PostgreSQL (scripts/postgres.sh) and SQLite databases for the alert store ---

POSTGRES_SH = REPO / "scripts" / "postgres.sh"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of the ``postgres`` maintenance database of the test server (started if needed)."""
    out = subprocess.run([str(POSTGRES_SH), "up"], check=True, capture_output=True, text=True)
    return out.stdout.strip().rsplit("/", 1)[0] + "/postgres"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield postgres_server.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each supported kind: store tests run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    return str(request.getfixturevalue("postgres_url"))
