"""What the chaos suite breaks: the three services as processes, brokers and databases of its own.

The services run as in ``make run`` (:class:`simulators.run_pipeline.Service`, one process each,
a fresh topic prefix and state directory), but on ports fixed for the whole scenario, so that a
restarted gateway is found by the SDK's retries and a restarted alert service by the
``StreamAlerts`` follower at the address they already have. Each service has a consumer group of
the run's own: a group id shared with other runs on the broker would rebalance with them.

The broker on 127.0.0.1:19092 is shared and never stopped: a broker restart, a PostgreSQL outage
and a killed broker of three run on servers started here (scripts/kafka.sh, scripts/postgres.sh
on ports and data directories of their own) and wiped afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from suptech.v1 import alerts_pb2, alerts_pb2_grpc

from simulators.run_pipeline import Service

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "scripts" / "kafka.sh"
POSTGRES_SH = REPO / "scripts" / "postgres.sh"

__all__ = [
    "ChaosStack",
    "AlertFollower",
    "PrivateBroker",
    "PrivatePostgres",
    "Cluster",
    "cluster_script_exists",
    "free_port",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ChaosStack:
    """Alert service, detector and gateway of one scenario; any of them killed and restarted."""

    run_dir: Path
    env: dict[str, str]
    db_url: str
    app_id: str
    ready_timeout_s: float = 180.0
    alerts_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    services: dict[str, Service] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def _spec(self, name: str) -> tuple[str, dict[str, str], str]:
        """Module, environment and the log line that says it is ready, per service."""
        if name == "alerts":
            return (
                "suptech.alerts",
                {
                    "ALERTS_PORT": str(self.alerts_port),
                    "ALERTS_DB_URL": self.db_url,
                    "ALERTS_TOKENS_FILE": str(self.run_dir / "alerts_tokens.json"),
                    "ALERTS_CONSUMER_GROUP": f"{self.app_id}-alerts",
                },
                r"alerts listening on (\d+)",
            )
        if name == "detector":
            return (
                "suptech.detector",
                {
                    "DETECTOR_STATE_DIR": str(self.run_dir / "detector"),
                    "DETECTOR_APP_ID": self.app_id,
                    "DETECTOR_HEALTH_PORT": "0",
                    # As make run: a fast replay, seconds of wall time are hours of event time.
                    "DETECTOR_PARTITION_IDLE_S": "120",
                },
                r"detector ready",
            )
        if name == "gateway":
            return (
                "suptech.gateway",
                {
                    "GATEWAY_PORT": str(self.gateway_port),
                    "GATEWAY_HEALTH_PORT": "0",
                    "GATEWAY_TOKENS_FILE": str(self.run_dir / "gateway_tokens.json"),
                },
                r"gateway listening on (\d+)",
            )
        raise ValueError(f"no service {name!r}")

    def _spawn(self, name: str) -> tuple[Service, str]:
        module, extra, ready = self._spec(name)
        n = self.starts.get(name, 0) + 1
        self.starts[name] = n
        log = self.run_dir / (f"{name}.log" if n == 1 else f"{name}-{n}.log")
        svc = Service(name, module, dict(self.env, **extra), log)
        self.services[name] = svc
        return svc, ready

    def start(self, *names: str) -> None:
        """Start the services (all three by default) and wait until each says it is ready."""
        started = [self._spawn(n) for n in names or ("alerts", "detector", "gateway")]
        for svc, ready in started:
            svc.wait_for(ready, self.ready_timeout_s)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed."""
        svc = self.services[name]
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait()
        svc.stop()  # closes its log

    def stop(self) -> None:
        for name in ("gateway", "detector", "alerts"):
            if name in self.services:
                self.services[name].stop()


class AlertFollower(threading.Thread):
    """A supervisor's ``StreamAlerts`` from cursor 0, reconnecting from its last cursor, noting
    the wall time each alert event arrives: what "alerts flow again" is measured on."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(name="chaos-alert-follower", daemon=True)
        self._target = f"127.0.0.1:{port}"
        self._metadata = [("authorization", f"Bearer {token}")]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._call: Any = None
        self.cursor = "0"
        # (wall time.time(), cursor as int, event kind, alert id, entity id)
        self.events: list[tuple[float, int, int, str, str]] = []
        self.reconnects = 0

    def run(self) -> None:
        while not self._stopping.is_set():
            # A fresh channel each time: a channel's own reconnect backoff grows to seconds and
            # would be measured as the alert service's outage.
            with grpc.insecure_channel(self._target) as channel:
                stub = alerts_pb2_grpc.AlertServiceStub(channel)
                try:
                    call = stub.StreamAlerts(
                        alerts_pb2.StreamAlertsRequest(cursor=self.cursor), metadata=self._metadata
                    )
                    with self._lock:
                        self._call = call
                    for ev in call:
                        self._note(ev)
                except grpc.RpcError:
                    pass
            if not self._stopping.is_set():
                self.reconnects += 1
                time.sleep(0.1)

    def _note(self, ev: Any) -> None:
        with self._lock:
            a = ev.alert
            self.events.append((time.time(), int(ev.cursor), int(ev.kind), a.alert_id, a.entity_id))
            self.cursor = ev.cursor

    def last_cursor(self) -> int:
        with self._lock:
            return self.events[-1][1] if self.events else 0

    def first_after(self, wall: float, cursor: int) -> float | None:
        """Wall time of the first event past ``cursor`` received at or after ``wall``."""
        with self._lock:
            for t, c, _, _, _ in self.events:
                if t >= wall and c > cursor:
                    return t
        return None

    def first_of_entity(self, entity_id: str) -> float | None:
        """Wall time of the first event about an alert on ``entity_id`` (the probe's)."""
        with self._lock:
            for t, _, _, _, entity in self.events:
                if entity == entity_id:
                    return t
        return None

    def last_event_time(self) -> float:
        with self._lock:
            return self.events[-1][0] if self.events else 0.0

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self.join(timeout=10)


def _run(script: Path, verb: str, env: dict[str, str], timeout_s: float = 300) -> str:
    out = subprocess.run(
        [str(script), verb],
        env=dict(os.environ, **env),
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return out.stdout.strip()


@dataclass
class PrivateBroker:
    """A single broker of the suite's own (as tests/conftest.py ``private_kafka``)."""

    port: int = 19592

    def _env(self) -> dict[str, str]:
        return {"KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(self.port + 1)}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> str:
        _run(KAFKA_SH, "up", self._env())
        return self.bootstrap

    def down(self) -> None:
        _run(KAFKA_SH, "down", self._env())

    def wipe(self) -> None:
        _run(KAFKA_SH, "wipe", self._env())


@dataclass
class PrivatePostgres:
    """A PostgreSQL server only the suite uses: stopping it disturbs nobody's tests."""

    port: int = field(default_factory=free_port)
    data: str = field(default_factory=lambda: f"/tmp/suptech-pg-chaos-{os.getpid()}")

    def _env(self) -> dict[str, str]:
        return {"PG_PORT": str(self.port), "PG_DATA": self.data}

    def up(self) -> str:
        """Start (or start again); the URL of its ``suptech`` database."""
        return _run(POSTGRES_SH, "up", self._env())

    def down(self) -> None:
        _run(POSTGRES_SH, "down", self._env())

    def wipe(self) -> None:
        _run(POSTGRES_SH, "wipe", self._env())


def cluster_script_exists() -> bool:
    """Whether scripts/kafka.sh can start a three-broker cluster (``up-cluster``)."""
    return "up-cluster)" in KAFKA_SH.read_text(encoding="utf-8")


@dataclass
class Cluster:
    """Three KRaft brokers of the suite's own (``scripts/kafka.sh up-cluster``) on other ports."""

    port: int = 19791

    def _env(self) -> dict[str, str]:
        return {"KAFKA_CLUSTER_PORT": str(self.port)}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(3))

    def up(self) -> str:
        _run(KAFKA_SH, "up-cluster", self._env())
        return self.bootstrap

    def kill_node(self, node: int) -> None:
        """SIGKILL one broker (and controller) of the three."""
        state = Path(os.environ.get("SUPTECH_STATE", REPO / ".state"))
        pidfile = state / f"kafka-cluster-{self.port}" / f"node-{node}" / "kafka.pid"
        os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)

    def start_node(self, node: int) -> None:
        subprocess.run(
            [str(KAFKA_SH), "start-node", str(node)],
            env=dict(os.environ, **self._env()),
            check=True,
            capture_output=True,
            timeout=300,
        )

    def wipe(self) -> None:
        _run(KAFKA_SH, "wipe-cluster", self._env())
