"""``python -m suptech.alerts.feed --target host:port --token T``: print alerts as they arrive.

Follows StreamAlerts and reconnects with the last cursor after a disconnect, so nothing is missed
or printed twice.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import grpc

from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

__all__ = ["format_event", "follow", "main"]


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


def follow(
    target: str, token: str, cursor: str = "", out: TextIO = sys.stdout, max_events: int = 0
) -> str:
    """Print events until interrupted (or ``max_events``); return the last cursor."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    seen = 0
    while True:
        with grpc.insecure_channel(target) as channel:
            stub = alerts_pb2_grpc.AlertServiceStub(channel)
            try:
                for event in stub.StreamAlerts(
                    alerts_pb2.StreamAlertsRequest(cursor=cursor), metadata=metadata
                ):
                    print(format_event(event), file=out, flush=True)
                    cursor = event.cursor
                    seen += 1
                    if max_events and seen >= max_events:
                        return cursor
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    raise
                print(
                    f"# disconnected ({exc.code().name}), resuming after {cursor or 'now'}",
                    file=sys.stderr,
                )
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suptech.alerts.feed", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50053")
    parser.add_argument("--token", default="")
    parser.add_argument("--cursor", default="", help="'' from now, '0' from the beginning")
    args = parser.parse_args(argv)
    try:
        follow(args.target, args.token, args.cursor)
    except KeyboardInterrupt:
        return 0
    except grpc.RpcError as exc:
        print(f"feed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
