"""``python -m suptech.alerts.feed --target host:port --token T``: print alerts as they arrive.

Follows StreamAlerts and reconnects with the last cursor after a disconnect, so nothing is missed
or printed twice. On Ctrl-C, or after ``--until-idle S`` seconds without an event, it prints a
summary: alerts seen, by family and grade (each alert counted once, at its latest grade).

``--token-file F`` reads the token from a file (kept out of the process list and shell history);
``--tls-ca`` (with ``--tls-cert``/``--tls-key`` for mutual TLS) speaks TLS to the service. A
service that cannot be reached within ``--connect-timeout`` seconds (first connection or
reconnection) ends the feed with exit status 2 and a message naming the address.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc

from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

__all__ = ["ChannelTLS", "Unreachable", "format_event", "format_summary", "follow", "main"]


class Unreachable(Exception):
    """The service did not answer within the connect timeout."""


@dataclass(frozen=True)
class ChannelTLS:
    """PEM files: the CA that signed the service's certificate, and an optional client pair."""

    ca: str
    cert: str = ""
    key: str = ""
    server_name: str = ""


def open_channel(target: str, tls: ChannelTLS | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target)
    creds = grpc.ssl_channel_credentials(
        Path(tls.ca).read_bytes(),
        Path(tls.key).read_bytes() if tls.key else None,
        Path(tls.cert).read_bytes() if tls.cert else None,
    )
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target, creds, options=options)


def format_event(event: alerts_pb2.AlertEvent) -> str:
    """One line: time, grade, family, institution, entity, summary."""
    a = event.alert
    when = (
        a.last_seen.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if a.HasField("last_seen") else "-"
    )
    grade = findings_pb2.Grade.Name(a.grade).removeprefix("GRADE_")
    family = findings_pb2.Family.Name(a.family).removeprefix("FAMILY_").lower()
    kind = alerts_pb2.AlertEventKind.Name(event.kind).removeprefix("ALERT_EVENT_KIND_").lower()
    flags = " [silenced]" if a.silenced else ""
    return (
        f"{when} {grade:<11} {family:<11} {a.institution_id} {a.entity_kind}:{a.entity_id} "
        f"{kind} x{a.finding_count}{flags} {a.summary}"
    )


def format_summary(alerts: Mapping[str, tuple[int, int]]) -> str:
    """A table of alert counts, one row per family, one column per grade, with totals."""
    grades = [g for g in sorted(findings_pb2.Grade.values()) if g]
    names = [findings_pb2.Grade.Name(g).removeprefix("GRADE_").lower() for g in grades]
    counts = Counter(alerts.values())
    families = sorted({f for f, _ in alerts.values()})
    lines = [f"# {len(alerts)} alerts", f"{'family':<14}" + "".join(f"{n:>13}" for n in names)]
    lines[-1] += f"{'total':>8}"
    for fam in families:
        label = findings_pb2.Family.Name(fam).removeprefix("FAMILY_").lower()
        row = [counts[(fam, g)] for g in grades]
        lines.append(f"{label:<14}" + "".join(f"{c:>13}" for c in row) + f"{sum(row):>8}")
    totals = [sum(counts[(f, g)] for f in families) for g in grades]
    lines.append(f"{'total':<14}" + "".join(f"{c:>13}" for c in totals) + f"{len(alerts):>8}")
    return "\n".join(lines)


def follow(
    target: str,
    token: str,
    cursor: str = "",
    out: TextIO | None = None,
    max_events: int = 0,
    idle_s: float = 0.0,
    alerts: dict[str, tuple[int, int]] | None = None,
    tls: ChannelTLS | None = None,
    connect_timeout_s: float = 10.0,
) -> str:
    """Print events until interrupted, ``max_events``, or ``idle_s`` without one (0: never).

    ``alerts`` collects alert id -> (family, grade) as last seen, for :func:`format_summary`.
    Returns the last cursor. Raises :class:`Unreachable` when a (re)connection takes longer
    than ``connect_timeout_s``.
    """
    out = out or sys.stdout  # looked up per call: tests and wrappers replace sys.stdout
    metadata = [("authorization", f"Bearer {token}")] if token else []
    seen = 0
    state = {"last": time.monotonic(), "idle": False}
    while True:
        with open_channel(target, tls) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=connect_timeout_s)
            except grpc.FutureTimeoutError:
                raise Unreachable(
                    f"cannot reach the alert service at {target} within {connect_timeout_s:g} s"
                ) from None
            stub = alerts_pb2_grpc.AlertServiceStub(channel)
            stream = stub.StreamAlerts(
                alerts_pb2.StreamAlertsRequest(cursor=cursor), metadata=metadata
            )
            done = threading.Event()
            if idle_s > 0:
                threading.Thread(
                    target=_idle_watch, args=(stream, idle_s, state, done), daemon=True
                ).start()
            try:
                for event in stream:
                    state["last"] = time.monotonic()
                    print(format_event(event), file=out, flush=True)
                    if alerts is not None:
                        alerts[event.alert.alert_id] = (event.alert.family, event.alert.grade)
                    cursor = event.cursor
                    seen += 1
                    if max_events and seen >= max_events:
                        return cursor
            except grpc.RpcError as exc:
                if state["idle"]:
                    return cursor
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    raise
                print(
                    f"# disconnected ({exc.code().name}), resuming after {cursor or 'now'}",
                    file=sys.stderr,
                )
            finally:
                done.set()
        time.sleep(1.0)


def _idle_watch(stream: Any, idle_s: float, state: dict[str, Any], done: threading.Event) -> None:
    # The blocking iterator has no timeout of its own: cancel it from here once idle long enough.
    while not done.wait(0.2):
        if time.monotonic() - state["last"] >= idle_s:
            state["idle"] = True
            stream.cancel()
            return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suptech.alerts.feed", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50053")
    parser.add_argument("--token", default="", help="prefer --token-file: argv is visible")
    parser.add_argument("--token-file", default="", metavar="F", help="read the token from F")
    parser.add_argument("--tls-ca", default="", metavar="PEM", help="speak TLS, trusting this CA")
    parser.add_argument("--tls-cert", default="", metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", default="", metavar="PEM", help="client key (mTLS)")
    parser.add_argument("--server-name", default="", help="name to check in the certificate")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    parser.add_argument("--cursor", default="", help="'' from now, '0' from the beginning")
    parser.add_argument(
        "--until-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="exit (with the summary) after S seconds without a new event",
    )
    args = parser.parse_args(argv)
    token = args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            print(f"feed: cannot read --token-file: {exc}", file=sys.stderr)
            return 2
    if (args.tls_cert or args.tls_key or args.server_name) and not args.tls_ca:
        parser.error("--tls-cert, --tls-key and --server-name need --tls-ca")
    tls = (
        ChannelTLS(args.tls_ca, args.tls_cert, args.tls_key, args.server_name)
        if args.tls_ca
        else None
    )
    alerts: dict[str, tuple[int, int]] = {}
    code = 0
    try:
        follow(
            args.target,
            token,
            args.cursor,
            idle_s=args.until_idle,
            alerts=alerts,
            tls=tls,
            connect_timeout_s=args.connect_timeout,
        )
    except KeyboardInterrupt:
        pass
    except Unreachable as exc:
        print(f"feed: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"feed: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"feed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        code = 1
    print(format_summary(alerts), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
