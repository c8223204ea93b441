"""Durable on-disk spool of events not yet acknowledged by the gateway.

Layout of the spool directory::

    LOCK                  held (flock) by the one client using the directory
    seg-000000000001.log  records: <u32 length><u32 crc32> + serialised TelemetryEnvelope
    seg-000000000001.ack  records, same framing: packed little-endian u32 indexes of records of
                          the segment that the gateway answered (accepted or rejected)
    rejections.jsonl      one line per event the gateway rejected, with its reason

An event is written to the active segment before ``send()`` returns (a ``write`` to the OS, so it
survives the process being killed) and the segment is fsync'd before any batch holding it goes on
the wire (so an event the gateway has seen survives a power loss too). A segment is deleted once
every record in it has been answered. A crash can leave a torn last record: reading stops at the
first record whose length or CRC does not check out. A lost ``.ack`` record only causes a resend of
events the gateway already has, which consumers dedup by event id.

Not thread-safe: the client serialises calls under its own lock, except :meth:`Spool.sync`.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from suptech.sdk.wire import frame_batch_event

__all__ = ["SpoolLockedError", "Record", "Segment", "Spool", "read_frames"]

_HEADER = struct.Struct("<II")
# A length beyond this is a torn or corrupt header, not a real record.
_MAX_RECORD = 64 * 1024 * 1024


class SpoolLockedError(RuntimeError):
    """Another client (in this or another process) is using the spool directory."""


def _frame(data: bytes) -> bytes:
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


def read_frames(path: Path) -> tuple[list[bytes], int]:
    """Every intact record of ``path`` and the length of the intact prefix (torn tail ignored)."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    out: list[bytes] = []
    pos = 0
    end = len(blob)
    while pos + _HEADER.size <= end:
        length, crc = _HEADER.unpack_from(blob, pos)
        start = pos + _HEADER.size
        if length > _MAX_RECORD or start + length > end:
            break
        data = blob[start : start + length]
        if zlib.crc32(data) != crc:
            break
        out.append(data)
        pos = start + length
    return out, pos


class Segment:
    __slots__ = ("seq", "path", "ack_path", "fd", "ack_fd", "count", "done", "written", "synced")

    def __init__(self, seq: int, directory: Path) -> None:
        self.seq = seq
        self.path = directory / f"seg-{seq:012d}.log"
        self.ack_path = directory / f"seg-{seq:012d}.ack"
        self.fd: int | None = None
        self.ack_fd: int | None = None
        self.count = 0
        self.done = 0
        self.written = 0
        self.synced = 0


class Record:
    """One spooled event: where it lives on disk and its bytes framed for a ``TelemetryBatch``."""

    __slots__ = ("segment", "index", "framed", "t")

    def __init__(self, segment: Segment, index: int, framed: bytes, t: float) -> None:
        self.segment = segment
        self.index = index
        self.framed = framed
        self.t = t


class Spool:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_max_records: int = 50_000,
        segment_max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segment_max_records = segment_max_records
        self._segment_max_bytes = segment_max_bytes
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLockedError(f"spool {self.directory} is in use by another client") from None
        self._segments: dict[int, Segment] = {}
        self._active: Segment | None = None
        self._next_seq = 1
        self._closed = False

    # -- recovery -------------------------------------------------------------------------------

    def recover(self, now: float) -> list[Record]:
        """Load the unanswered records left by an earlier client, oldest first.

        Segments found fully answered are deleted.
        """
        found: list[Record] = []
        for path in sorted(self.directory.glob("seg-*.log")):
            try:
                seq = int(path.stem.split("-", 1)[1])
            except ValueError:
                continue
            self._next_seq = max(self._next_seq, seq + 1)
            seg = Segment(seq, self.directory)
            datas, _ = read_frames(seg.path)
            answered: set[int] = set()
            for blob in read_frames(seg.ack_path)[0]:
                answered.update(struct.unpack(f"<{len(blob) // 4}I", blob[: len(blob) // 4 * 4]))
            seg.count = len(datas)
            seg.done = sum(1 for i in answered if i < seg.count)
            if seg.done >= seg.count:
                self._delete(seg)
                continue
            self._segments[seq] = seg
            for index, data in enumerate(datas):
                if index not in answered:
                    found.append(Record(seg, index, frame_batch_event(data), now))
        return found

    # -- writing --------------------------------------------------------------------------------

    def append(self, envelope: bytes, framed: bytes, now: float) -> Record:
        seg = self._active
        if seg is None or (
            seg.count >= self._segment_max_records or seg.written >= self._segment_max_bytes
        ):
            seg = self._open_segment()
        data = _frame(envelope)
        assert seg.fd is not None
        os.write(seg.fd, data)
        seg.written += len(data)
        record = Record(seg, seg.count, framed, now)
        seg.count += 1
        return record

    def append_many(self, items: list[tuple[bytes, bytes]], now: float) -> list[Record]:
        """Append several events with one write per segment touched."""
        out: list[Record] = []
        pos = 0
        while pos < len(items):
            seg = self._active
            if seg is None or (
                seg.count >= self._segment_max_records or seg.written >= self._segment_max_bytes
            ):
                seg = self._open_segment()
            room = max(1, self._segment_max_records - seg.count)
            chunk = items[pos : pos + room]
            pack = _HEADER.pack
            crc = zlib.crc32
            blob = b"".join([pack(len(env), crc(env)) + env for env, _ in chunk])
            assert seg.fd is not None
            os.write(seg.fd, blob)
            seg.written += len(blob)
            first = seg.count
            out.extend([Record(seg, first + i, f, now) for i, (_, f) in enumerate(chunk)])
            seg.count += len(chunk)
            pos += len(chunk)
        return out

    def _open_segment(self) -> Segment:
        if self._active is not None:
            self._seal(self._active)
        seg = Segment(self._next_seq, self.directory)
        self._next_seq += 1
        seg.fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # The new file's directory entry must itself be durable for the fsyncs of its data to count.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._segments[seg.seq] = seg
        self._active = seg
        return seg

    def _seal(self, seg: Segment) -> None:
        if self._active is seg:
            self._active = None
        if seg.done >= seg.count:
            self._delete(seg)

    def dirty(self, records: Iterable[Record]) -> list[tuple[Segment, int]]:
        """Segments holding ``records`` with writes not yet fsync'd, and the length to sync."""
        out: dict[int, tuple[Segment, int]] = {}
        for rec in records:
            seg = rec.segment
            if seg.synced < seg.written and seg.seq not in out:
                out[seg.seq] = (seg, seg.written)
        return list(out.values())

    @staticmethod
    def sync(dirty: list[tuple[Segment, int]]) -> None:
        """fsync the given segments; safe without the caller's lock (a segment with unanswered
        records is never closed)."""
        for seg, upto in dirty:
            fd = seg.fd
            if fd is not None and seg.synced < upto:
                os.fsync(fd)
                seg.synced = max(seg.synced, upto)

    # -- answering ------------------------------------------------------------------------------

    def mark_done(self, records: Iterable[Record]) -> None:
        """Record that the gateway answered these records; delete segments fully answered."""
        by_seg: dict[int, list[int]] = {}
        segs: dict[int, Segment] = {}
        for rec in records:
            by_seg.setdefault(rec.segment.seq, []).append(rec.index)
            segs[rec.segment.seq] = rec.segment
        for seq, indexes in by_seg.items():
            seg = segs[seq]
            seg.done += len(indexes)
            if seg.done >= seg.count:
                if self._active is seg:
                    self._active = None
                self._delete(seg)
                continue
            if seg.ack_fd is None:
                seg.ack_fd = os.open(seg.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(seg.ack_fd, _frame(struct.pack(f"<{len(indexes)}I", *indexes)))

    def _delete(self, seg: Segment) -> None:
        for fd in (seg.fd, seg.ack_fd):
            if fd is not None:
                os.close(fd)
        seg.fd = seg.ack_fd = None
        for path in (seg.path, seg.ack_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._segments.pop(seg.seq, None)

    def segment_files(self) -> Iterator[Path]:
        return iter(sorted(self.directory.glob("seg-*.log")))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for seg in list(self._segments.values()):
            for fd in (seg.fd, seg.ack_fd):
                if fd is not None:
                    if fd == seg.fd and seg.synced < seg.written:
                        os.fsync(fd)
                    os.close(fd)
            seg.fd = seg.ack_fd = None
        self._segments.clear()
        self._active = None
        os.close(self._lock_fd)
