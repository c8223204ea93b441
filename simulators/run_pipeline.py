"""``make run``: the whole suptech pipeline on this machine, end to end.

Starts the alert service, the detector and the ingest gateway as separate processes (as they run in
production) on the project's Kafka broker, publishes the sandbox register, streams a simulated
fleet with its injected incidents through the institution SDK, and shows the alerts a supervisor
receives through ``StreamAlerts`` as they arrive, ending with a summary by family and grade and how
the alerts compare with the simulator's ground truth.

    python -m simulators.run_pipeline [--days 3] [--seed 7] [--incidents all] [--scale 1.0]

Every run uses a fresh topic namespace, detector state and alert database under
``.state/run-<stamp>/``, so runs never see each other's data.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from simulators.scenario import generate
from simulators.stream import publish_registry, stream_telemetry

REPO = Path(__file__).resolve().parents[1]
CST = timezone(timedelta(hours=8))


class Service:
    """A suptech service in a child process, its log in a file, its port read from its log."""

    def __init__(self, name: str, module: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = rx.search(text)
            if m:
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; log {self.log_path}:\n"
                    + text[-3000:]
                )
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not log {pattern!r} in {timeout_s}s: {self.log_path}")

    def stop(self, timeout_s: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Stack:
    """The three services of suptech, each in its own process, on one topic namespace."""

    def __init__(
        self,
        run_dir: Path,
        env: dict[str, str],
        gateway_tokens_file: Path,
        alerts_tokens_file: Path,
        app_id: str,
    ) -> None:
        self.run_dir = run_dir
        self.env = env
        self.gateway_tokens_file = gateway_tokens_file
        self.alerts_tokens_file = alerts_tokens_file
        self.app_id = app_id
        self.services: list[Service] = []
        self.alerts_port = 0
        self.gateway_port = 0
        self.console_url = ""

    def start(self, timeout_s: float = 120) -> None:
        alerts = self._spawn(
            "alerts",
            "suptech.alerts",
            ALERTS_PORT="0",
            ALERTS_DB_URL=f"sqlite:///{self.run_dir / 'alerts.db'}",
            ALERTS_TOKENS_FILE=str(self.alerts_tokens_file),
        )
        detector = self._spawn(
            "detector",
            "suptech.detector",
            DETECTOR_STATE_DIR=str(self.run_dir / "detector"),
            DETECTOR_APP_ID=self.app_id,
            DETECTOR_HEALTH_PORT="0",
            # A full-speed replay: seconds of wall time are hours of event time.
            DETECTOR_PARTITION_IDLE_S="120",
        )
        gateway = self._spawn(
            "gateway",
            "suptech.gateway",
            GATEWAY_PORT="0",
            GATEWAY_HEALTH_PORT="0",
            GATEWAY_TOKENS_FILE=str(self.gateway_tokens_file),
        )
        self.alerts_port = int(alerts.wait_for(r"alerts listening on (\d+)", timeout_s).group(1))
        self.gateway_port = int(gateway.wait_for(r"gateway listening on (\d+)", timeout_s).group(1))
        detector.wait_for(r"detector ready", timeout_s)
        # The web console reads only the alert service's API; sign in with the supervisor token.
        console = self._spawn(
            "console",
            "suptech.console",
            CONSOLE_PORT=os.environ.get("CONSOLE_PORT", "0"),
            ALERTS_ADDR=f"127.0.0.1:{self.alerts_port}",
        )
        self.console_url = console.wait_for(r"console listening on (\S+)", timeout_s).group(1)

    def _spawn(self, name: str, module: str, **env: str) -> Service:
        svc = Service(name, module, dict(self.env, **env), self.run_dir / f"{name}.log")
        self.services.append(svc)
        return svc

    def stop(self) -> None:
        for svc in reversed(self.services):
            svc.stop()


def _say(msg: str) -> None:
    print(f"[run] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.run_pipeline", description=__doc__)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--incidents", default="all", help="all | family:NAME,... | kind,kind")
    p.add_argument("--kafka", default=os.environ.get("KAFKA_ADDR", "127.0.0.1:19092"))
    p.add_argument("--idle-s", type=float, default=25.0, help="end after this long without alerts")
    p.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep this run's Kafka topics (deleted by default, so repeated runs stay small)",
    )
    args = p.parse_args(argv)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = REPO / ".state" / f"run-{stamp}"
    run_dir.mkdir(parents=True)
    prefix = f"run-{stamp}."

    # The simulated week ends at today's midnight (Shenzhen time), so every event is in the past
    # and within the gateway's accepted age.
    today = datetime.now(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    start = (today - timedelta(days=args.days)).isoformat()
    _say(f"generating {args.days} simulated days from {start} (seed {args.seed})")
    scenario = generate(args.seed, args.days, args.scale, args.incidents, start=start)
    envelopes = list(scenario.envelopes())
    truth = scenario.ground_truth_json()
    institutions = sorted({e.institution_id for e in envelopes})
    _say(
        f"{len(envelopes):,} events from {len(institutions)} institutions, "
        f"{len(truth)} injected incidents, {len(scenario.registry)} sandbox tests"
    )

    gateway_tokens = {secrets.token_urlsafe(24): inst for inst in institutions}
    supervisor_token = secrets.token_urlsafe(24)
    (run_dir / "gateway_tokens.json").write_text(json.dumps(gateway_tokens))
    (run_dir / "alerts_tokens.json").write_text(
        json.dumps(
            {
                supervisor_token: {
                    "name": "duty-supervisor",
                    "role": "supervisor",
                    "jurisdictions": ["*"],
                }
            }
        )
    )

    base_env = dict(
        os.environ,
        KAFKA_ADDR=args.kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        SUPTECH_LOG_LEVEL="INFO",
    )
    from suptech.common.topics import ensure_topics

    ensure_topics(args.kafka, prefix)
    n = publish_registry(args.kafka, prefix, scenario.registry)
    _say(f"published {n} sandbox tests to {prefix}registry.sandbox.v1")

    feed: subprocess.Popen[bytes] | None = None
    stack = Stack(
        run_dir,
        base_env,
        run_dir / "gateway_tokens.json",
        run_dir / "alerts_tokens.json",
        app_id=f"suptech-detector-{stamp}",
    )
    try:
        stack.start()
        alerts_port, gateway_port = stack.alerts_port, stack.gateway_port
        _say(f"alerts on :{alerts_port}, gateway on :{gateway_port}, detector ready")
        _say(f"web console at {stack.console_url} (token in {run_dir / 'alerts_tokens.json'})")
        _say(f"logs and state in {run_dir}")

        feed = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "suptech.alerts.feed",
                "--target",
                f"127.0.0.1:{alerts_port}",
                "--token",
                supervisor_token,
                "--cursor",
                "0",
                "--until-idle",
                str(args.idle_s),
            ],
            # The supervisor's feed writes straight to this terminal.
            env=base_env,
            cwd=REPO,
        )

        _say("streaming the fleet through the SDK ...")
        began = time.monotonic()
        result = stream_telemetry(
            envelopes,
            f"127.0.0.1:{gateway_port}",
            {inst: tok for tok, inst in gateway_tokens.items()},
            run_dir / "spool",
        )
        took = time.monotonic() - began
        acked = sum(r["acknowledged"] for r in result.values())
        rejected = sum(sum(r["rejected"].values()) for r in result.values())
        _say(
            f"streamed: {acked:,} events acknowledged, {rejected} rejected, "
            f"in {took:.1f}s ({acked / max(took, 1e-9):,.0f} events/s)"
        )
        _say(
            f"waiting for the detector and alert service (feed ends after {args.idle_s:.0f}s idle)"
        )
        feed.wait(timeout=1800)
        _summary(_list_alerts(alerts_port, supervisor_token), truth)
        return 0 if rejected == 0 and all(r["flushed"] for r in result.values()) else 1
    finally:
        if feed is not None and feed.poll() is None:
            feed.terminate()
        stack.stop()
        if not args.keep_topics:
            from suptech.common.topics import delete_topics_with_prefix

            delete_topics_with_prefix(args.kafka, prefix)


FAMILY_NAMES = {1: "data_leakage", 2: "it_autonomy", 3: "sandbox"}
GRACE_S = 2 * 3600


def _list_alerts(port: int, token: str) -> list[Any]:
    """Every alert the supervisor can see, through ListAlerts pages."""
    import grpc
    from suptech.v1 import alerts_pb2, alerts_pb2_grpc

    out: list[Any] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)
        token_ = ""
        while True:
            page = stub.ListAlerts(
                alerts_pb2.ListAlertsRequest(page_size=500, page_token=token_),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=30,
            )
            out.extend(page.alerts)
            token_ = page.next_page_token
            if not token_:
                return out


def _caught_by(alert: Any, g: dict[str, Any]) -> bool:
    """Whether ``alert`` is about incident ``g`` (family, institution, entity, time window)."""
    if FAMILY_NAMES.get(alert.family) != g["family"]:
        return False
    start = datetime.fromisoformat(g["start"]).timestamp()
    end = datetime.fromisoformat(g["end"]).timestamp() + GRACE_S
    if alert.last_seen.seconds < start or alert.first_seen.seconds > end:
        return False
    insts = {g["institution_id"], *g.get("affected_institutions", [])} - {""}
    if alert.institution_id not in insts and alert.institution_id != "*":
        return False
    entities = {g["entity_id"], g.get("app_id", ""), *g.get("affected_systems", [])} - {""}
    if g["entity_kind"] == "vendor":
        return alert.entity_id in entities or alert.entity_kind == "system"
    return alert.entity_id in entities or alert.entity_kind == "institution"


def _summary(alerts: list[Any], truth: list[dict[str, Any]]) -> None:
    """How the alerts a supervisor received compare with what the simulator injected."""
    incidents = [g for g in truth if not g.get("benign")]
    print()
    _say(f"{len(alerts)} alerts against {len(incidents)} injected incidents (ground truth):")
    print(f"  {'family':<14}{'incidents':>10}{'caught':>8}{'alerts':>8}{'unexplained':>13}")
    for fam in ("data_leakage", "it_autonomy", "sandbox"):
        inc = [g for g in incidents if g["family"] == fam]
        fam_alerts = [a for a in alerts if FAMILY_NAMES.get(a.family) == fam]
        caught = [g for g in inc if any(_caught_by(a, g) for a in fam_alerts)]
        unexplained = [a for a in fam_alerts if not any(_caught_by(a, g) for g in inc)]
        print(
            f"  {fam:<14}{len(inc):>10}{len(caught):>8}{len(fam_alerts):>8}{len(unexplained):>13}"
        )
        for g in inc:
            if g not in caught:
                print(f"    missed: {g['kind']} at {g['institution_id'] or 'several'}")
    print(
        "  (unexplained: alerts matching no injected incident; the simulated market also has "
        "normal events that look alarming, and the detector may see what the simulator did not "
        "label)"
    )


if __name__ == "__main__":
    sys.exit(main())
