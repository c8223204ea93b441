"""``suptech-send``: send a file of telemetry envelopes (protobuf JSON, one per line).

    python -m suptech.sdk.cli send events.jsonl --target gw:7443 --institution BANK1 \
        --token-file token.txt

Exit status: 0 when every event was accepted, 1 when any line was malformed, any event rejected
or any left unacknowledged (they stay in the spool directory, printed, for a rerun with
``--spool-dir``), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from google.protobuf import json_format

from suptech.sdk.client import ClientStats, TelemetryClient, new_event_id
from suptech.sdk.wire import PAYLOAD_FIELDS
from suptech.v1 import telemetry_pb2

__all__ = ["main", "parse_lines", "LineError"]


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


def parse_lines(
    lines: Iterator[str] | Sequence[str],
) -> Iterator[telemetry_pb2.TelemetryEnvelope | LineError]:
    """Each non-blank line as an envelope (event id filled in when missing), or why it is not."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        env = telemetry_pb2.TelemetryEnvelope()
        try:
            json_format.Parse(line, env)
        except json_format.ParseError as exc:
            yield LineError(number, str(exc).splitlines()[0][:200])
            continue
        if env.WhichOneof("payload") is None:
            yield LineError(number, "no payload (one of " + ", ".join(PAYLOAD_FIELDS) + ")")
            continue
        if not env.event_id:
            env.event_id = new_event_id()
        yield env


class _Progress:
    """A one-line text progress bar on stderr, redrawn at most a few times a second."""

    def __init__(self, out: TextIO, total: int) -> None:
        self._out = out
        self._total = max(total, 1)
        self._last = 0.0

    def draw(self, stats: ClientStats, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        done = stats.acknowledged + stats.rejected_total
        width = 30
        filled = min(width, width * done // self._total)
        self._out.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self._total} "
            f"acked {stats.acknowledged} rejected {stats.rejected_total} "
            f"retries {stats.retries}   "
        )
        self._out.flush()


class _UsageError(Exception):
    """A bad argument, told in one line (exit status 2)."""


def _read(option: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise _UsageError(f"cannot read {option} {path}: {e.strerror or e}") from None


def _token(args: argparse.Namespace) -> str | None:
    if not args.token_file:
        return str(args.token) if args.token else None
    raw = _read("--token-file", args.token_file) or b""
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _UsageError(f"--token-file {args.token_file} is not UTF-8 text") from None
    if not token:
        raise _UsageError(f"--token-file {args.token_file} is empty")
    return token


def _send(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"suptech-send: no such file: {path}", file=sys.stderr)
        return 2
    try:
        token = _token(args)
        ca, cert, key_pem = (
            _read("--ca", args.ca),
            _read("--cert", args.cert),
            _read("--key", args.key),
        )
    except _UsageError as e:
        print(f"suptech-send: {e}", file=sys.stderr)
        return 2
    lines = path.read_text(encoding="utf-8").splitlines()
    spool_dir = args.spool_dir or tempfile.mkdtemp(prefix="suptech-spool-")
    key = os.environ.get("SUPTECH_PSEUDONYM_KEY", "").encode() or os.urandom(32)
    malformed = 0
    sent = 0
    client = TelemetryClient(
        args.target,
        args.institution,
        token=token,
        root_certificates=ca,
        client_certificate=cert,
        client_key=key_pem,
        spool_dir=spool_dir,
        # Lines already carry pseudonyms: the key only guards against raw ids, never used here.
        pseudonym_key=key,
        batch_size=args.batch_size,
    )
    progress = _Progress(sys.stderr, len(lines) + client.stats().recovered)
    try:
        for item in parse_lines(lines):
            if isinstance(item, LineError):
                malformed += 1
                sys.stderr.write(f"\nsuptech-send: {path}:{item.line}: skipped: {item.message}\n")
                continue
            try:
                client.send(item)
            except ValueError as exc:
                malformed += 1
                sys.stderr.write(f"\nsuptech-send: {path}: event {item.event_id}: {exc}\n")
                continue
            sent += 1
            progress.draw(client.stats())
        deadline = time.monotonic() + args.timeout
        flushed = False
        while time.monotonic() < deadline:
            flushed = client.flush(timeout=min(0.25, deadline - time.monotonic()))
            progress.draw(client.stats(), force=flushed)
            if flushed or client.stats().halted:
                break
        stats = client.stats()
    finally:
        client.close(timeout=0)
    sys.stderr.write("\n")
    for rej in list(client.rejections)[:20]:
        sys.stderr.write(f"rejected {rej.event_id}: {rej.reason}: {rej.detail}\n")
    print(
        f"lines {len(lines)} malformed {malformed} sent {sent} recovered {stats.recovered} "
        f"acknowledged {stats.acknowledged} rejected {stats.rejected_total} "
        f"{dict(sorted(stats.rejected.items()))} unacknowledged {stats.spooled} "
        f"retries {stats.retries}"
    )
    if stats.last_error and not flushed:
        print(f"last error: {stats.last_error}", file=sys.stderr)
    if stats.spooled:
        print(
            f"unacknowledged events kept in {spool_dir} (rerun with --spool-dir)", file=sys.stderr
        )
    elif not args.spool_dir:
        for leftover in Path(spool_dir).glob("*"):
            leftover.unlink()
        Path(spool_dir).rmdir()
    return 0 if flushed and not malformed and not stats.rejected_total else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suptech-send", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send", help="send a JSON-lines file of TelemetryEnvelope")
    send.add_argument("file")
    send.add_argument("--target", required=True, help="gateway host:port")
    send.add_argument("--institution", required=True, help="your institution id")
    auth = send.add_mutually_exclusive_group()
    auth.add_argument("--token", help="bearer token (prefer --token-file)")
    auth.add_argument("--token-file", help="file holding the bearer token")
    send.add_argument("--ca", help="PEM of the gateway's CA (enables TLS)")
    send.add_argument("--cert", help="client certificate PEM (mutual TLS)")
    send.add_argument("--key", help="client private key PEM (mutual TLS)")
    send.add_argument("--spool-dir", help="spool directory (default: a fresh temporary one)")
    send.add_argument("--batch-size", type=int, default=500)
    send.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for acks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _send(args)


if __name__ == "__main__":
    sys.exit(main())
