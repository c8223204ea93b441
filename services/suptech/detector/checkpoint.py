"""Engine checkpoints, with the source offsets each one covers: on local disk and in Kafka.

On disk a checkpoint is written atomically (temporary file, fsync, rename), so a worker killed at
any instant finds either the previous checkpoint or the new one, never a torn file.

In Kafka (compacted ``detector.checkpoints.v1``, so the state survives losing the volume) the same
bytes go as chunks of at most 1 MiB keyed ``<app id>/<n>``, each tagged with its checkpoint id,
then a manifest ``<app id>/manifest`` (id, chunk count, sha256, offsets) written last. A write torn
before its manifest is never chosen, and a manifest whose chunks do not hash to its sha256 is
passed over for the previous good one.

Both copies are sealed (:mod:`suptech.detector.state_key`): the pickle inside is loaded only when
its HMAC under the detector's key verifies, so bytes someone else wrote to the topic or the volume
make the worker start cold (logged, counted in :data:`REFUSED`), never run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suptech.common.kafka import open_client
from suptech.detector.state_key import StateKeyError, seal, unseal

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "KafkaCheckpointStore",
    "FORMAT_VERSION",
    "CHUNK_BYTES",
    "decode_checkpoint",
    "encode_checkpoint",
    "newest_checkpoint",
    "REFUSED",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
# Checkpoints refused since the process started, by reason: the worker's stats report them.
REFUSED: dict[str, int] = {}

# (topic, partition) -> offset of the next record the engine has not seen.
Offsets = dict[tuple[str, int], int]


@dataclass
class Checkpoint:
    engine_blob: bytes
    # Every record below these offsets is in ``engine_blob``; records from them on are not.
    offsets: Offsets = field(default_factory=dict)
    max_event_time_ns: int = 0
    written_unix_s: float = 0.0
    version: int = FORMAT_VERSION


def encode_checkpoint(checkpoint: Checkpoint, key: bytes) -> bytes:
    return seal(pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL), key)


def decode_checkpoint(data: bytes, where: str, key: bytes) -> Checkpoint | None:
    """The checkpoint in ``data``, or None (logged, naming ``where``) if it cannot be used.

    Nothing is unpickled before the seal verifies under ``key``.
    """
    try:
        checkpoint = pickle.loads(unseal(data, key))
    except StateKeyError as exc:
        return _refused(where, "unsealed", str(exc))
    except Exception as exc:  # a bad checkpoint must not keep the worker down
        return _refused(where, "unreadable", repr(exc))
    if not isinstance(checkpoint, Checkpoint) or checkpoint.version != FORMAT_VERSION:
        return _refused(where, "unknown_version", "a format this worker cannot read")
    return checkpoint


def _refused(where: str, reason: str, detail: str) -> Checkpoint | None:
    REFUSED[reason] = REFUSED.get(reason, 0) + 1
    log.error("checkpoint %s refused (%s: %s): not using it", where, reason, detail)
    return None


def newest_checkpoint(
    local: Checkpoint | None, remote: Checkpoint | None, local_where: str, remote_where: str
) -> tuple[Checkpoint | None, str]:
    """The newer of the local and the Kafka checkpoint, and a phrase saying which it is."""
    if local is None and remote is None:
        return None, "none"
    if remote is None or (local is not None and local.written_unix_s >= remote.written_unix_s):
        return local, f"local file {local_where}"
    return remote, f"Kafka {remote_where}"


class CheckpointStore:
    """One checkpoint file per detector app id."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self.key = key

    def save(self, checkpoint: Checkpoint) -> bytes:
        """Stamp and write ``checkpoint``; return its encoded bytes (what Kafka gets too)."""
        checkpoint.written_unix_s = time.time()
        return self.write(checkpoint)

    def write(self, checkpoint: Checkpoint) -> bytes:
        """Write ``checkpoint`` as stamped; return its encoded bytes."""
        data = encode_checkpoint(checkpoint, self.key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One temporary file per process: a forked snapshot may still be writing its own.
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return data

    def load(self) -> Checkpoint | None:
        """The last checkpoint, or None when there is none or it cannot be read."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("checkpoint %s unreadable (%s): not using it", self.path, exc)
            return None
        return decode_checkpoint(data, str(self.path), self.key)


# A chunk's value; the record with key and headers stays under the topic's 2 MiB limit.
CHUNK_BYTES = 1024 * 1024
CHECKPOINT_ID_HEADER = "x-suptech-checkpoint-id"
# Chunks of this many recent manifests are kept while reading, so a torn latest one can fall back.
_KEEP_MANIFESTS = 2
# Records read back from the end of the partition at first when looking for the newest manifest.
_TAIL_WINDOW = 16


class KafkaCheckpointStore:
    """Checkpoints of one app id (or one shard of it) on the compacted checkpoint topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        app_id: str,
        key: bytes,
        chunk_bytes: int = CHUNK_BYTES,
        timeout_s: float = 30.0,
        partition: int = 0,
    ) -> None:
        if not 0 < chunk_bytes <= CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in 1..{CHUNK_BYTES}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.app_id = app_id
        self.key = key
        self.chunk_bytes = chunk_bytes
        self.timeout_s = timeout_s
        # Every record of this store's checkpoints goes to (and is read from) this partition.
        self.partition = partition
        self._producer: Any = None
        self._parent: KafkaCheckpointStore | None = None
        # Rebalance and shutdown checkpoints may overlap one running in a thread.
        self._lock = threading.Lock()
        # Chunks beyond the latest count are tombstoned, so compaction can drop them.
        self._last_chunk_count = 0
        # Records the last :meth:`load` read from the partition.
        self.records_read = 0

    def for_shard(self, shard: int, partitions: int) -> KafkaCheckpointStore:
        """The store of one state shard: ids ``<app id>/shard-<n>``, on partition ``n`` of a
        topic of ``partitions``, sharing this store's producer."""
        store = KafkaCheckpointStore(
            self.bootstrap,
            self.topic,
            f"{self.app_id}/shard-{shard}",
            self.key,
            self.chunk_bytes,
            self.timeout_s,
            shard % max(1, partitions),
        )
        store._parent = self
        return store

    @property
    def manifest_key(self) -> bytes:
        return f"{self.app_id}/manifest".encode()

    def chunk_key(self, index: int) -> bytes:
        return f"{self.app_id}/{index}".encode()

    def _get_producer(self) -> Any:
        if self._parent is not None:
            return self._parent._get_producer()
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = open_client(
                KafkaProducer,
                bootstrap_servers=self.bootstrap,
                acks="all",
                max_request_size=2 * CHUNK_BYTES,
                linger_ms=0,
            )
        return self._producer

    def partition_count(self) -> int:
        """Partitions of the checkpoint topic (1 if it cannot be told)."""
        found = self._get_producer().partitions_for(self.topic)
        return len(found) if found else 1

    def save(self, data: bytes, checkpoint: Checkpoint) -> str:
        """Write ``data`` (the encoded ``checkpoint``) and its manifest; return the checkpoint id.

        Returns only when the broker has every record (acks=all); raises otherwise.
        """
        with self._lock:
            return self._save(_slices(data, self.chunk_bytes), checkpoint)

    def save_file(self, path: Path, checkpoint: Checkpoint) -> str:
        """As :meth:`save`, the encoded checkpoint read from ``path`` a chunk at a time: a shard
        at a million actors is over 100 MB, which the worker need not hold whole."""
        with self._lock, open(path, "rb") as f:
            return self._save(iter(lambda: f.read(self.chunk_bytes), b""), checkpoint)

    def _save(self, chunks: Iterable[bytes], checkpoint: Checkpoint) -> str:
        checkpoint_id = f"{time.time_ns():x}"
        digest = hashlib.sha256()
        size = 0

        def hashed() -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        count, first_offset = self._send_chunks(checkpoint_id, hashed())
        self.send_manifest(
            {
                "checkpoint_id": checkpoint_id,
                "chunks": count,
                "first_offset": first_offset,
                "bytes": size,
                "sha256": digest.hexdigest(),
                "offsets": {f"{t}:{p}": o for (t, p), o in sorted(checkpoint.offsets.items())},
                "max_event_time_ns": checkpoint.max_event_time_ns,
                "written_unix_s": checkpoint.written_unix_s,
                "format": FORMAT_VERSION,
            }
        )
        producer = self._get_producer()
        for index in range(count, self._last_chunk_count):
            producer.send(
                self.topic, key=self.chunk_key(index), value=None, partition=self.partition
            )
        self._last_chunk_count = count
        producer.flush(timeout=self.timeout_s)
        return checkpoint_id

    def send_chunks(self, checkpoint_id: str, data: bytes) -> int:
        """The chunks alone (a write that stops here is torn); return how many were sent."""
        return self._send_chunks(checkpoint_id, _slices(data, self.chunk_bytes))[0]

    def _send_chunks(self, checkpoint_id: str, chunks: Iterable[bytes]) -> tuple[int, int]:
        """Send the chunks; how many, and the offset of the first in the partition."""
        producer = self._get_producer()
        headers = [(CHECKPOINT_ID_HEADER, checkpoint_id.encode())]
        futures = []
        for i, chunk in enumerate(_one_or_more(chunks)):
            futures.append(
                producer.send(
                    self.topic,
                    key=self.chunk_key(i),
                    value=chunk,
                    headers=headers,
                    partition=self.partition,
                )
            )
        producer.flush(timeout=self.timeout_s)
        offsets = [future.get(timeout=self.timeout_s).offset for future in futures]
        return len(futures), offsets[0]  # get() raises if the broker refused a chunk

    def send_manifest(self, manifest: dict[str, Any]) -> None:
        producer = self._get_producer()
        future = producer.send(
            self.topic,
            key=self.manifest_key,
            value=json.dumps(manifest).encode(),
            partition=self.partition,
        )
        producer.flush(timeout=self.timeout_s)
        future.get(timeout=self.timeout_s)

    def close(self) -> None:
        if self._parent is None and self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def load(self) -> tuple[Checkpoint, str] | None:
        """The newest checkpoint whose chunks match its manifest, with its id; None if none.

        The partition holds every checkpoint written since compaction last ran (hourly segments:
        a worker that checkpointed a dozen times in the hour leaves a dozen shards' worth), and
        reading them all was most of a takeover. So the newest manifest is looked for at the end
        of the partition, and its chunks read from the offset of its first one; only when they
        do not match it (torn, or a manifest from before ``first_offset``) is the partition read
        from its beginning, for the previous good checkpoint.
        """
        self.records_read = 0
        consumer = self._consumer()
        try:
            newest = self._newest_manifest(consumer)
            if newest is not None and isinstance(newest.get("first_offset"), int):
                wanted = str(newest.get("checkpoint_id", ""))
                _, chunks = self._read(consumer, newest["first_offset"], wanted)
                found = self._choose([newest], chunks, fallback=False)
                if found is not None:
                    return found
            manifests, chunks = self._read(consumer, 0)
        finally:
            consumer.close()
        if not manifests:
            log.info("no checkpoint of %s on %s", self.app_id, self.topic)
            return None
        found = self._choose(manifests, chunks, fallback=True)
        if found is None:
            log.error("no usable Kafka checkpoint of %s on %s", self.app_id, self.topic)
        return found

    def _choose(
        self,
        manifests: list[dict[str, Any]],
        chunks: dict[str, dict[int, bytes]],
        fallback: bool,
    ) -> tuple[Checkpoint, str] | None:
        """The newest of ``manifests`` whose chunks are whole and decode; problems logged."""
        for depth, manifest in enumerate(reversed(manifests)):
            checkpoint_id = str(manifest.get("checkpoint_id", ""))
            problem, data = _assemble(manifest, chunks.pop(checkpoint_id, {}))
            checkpoint = None
            if data is not None:
                checkpoint = decode_checkpoint(data, f"{self.topic} {checkpoint_id}", self.key)
                if checkpoint is None:
                    problem = "undecodable"
            if checkpoint is not None:
                if depth:
                    log.warning(
                        "using the previous good Kafka checkpoint %s of %s",
                        checkpoint_id,
                        self.app_id,
                    )
                return checkpoint, checkpoint_id
            log.error(
                "Kafka checkpoint %s of %s is torn (%s): %s",
                checkpoint_id,
                self.app_id,
                problem,
                "trying an older one" if fallback else "reading the partition for an older one",
            )
        return None

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        consumer = open_client(
            KafkaConsumer,
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=4 * CHUNK_BYTES,
            # An offset before the log's start (never expected) reads from there: more, not less.
            auto_offset_reset="earliest",
        )
        consumer.assign([TopicPartition(self.topic, self.partition)])
        return consumer

    def _newest_manifest(self, consumer: Any) -> dict[str, Any] | None:
        """This store's last manifest, read back from the end of the partition in growing
        windows (it is normally among the last records: only the tombstones of a larger
        previous checkpoint's chunks, and other app ids' records, follow it)."""
        from kafka import TopicPartition

        tp = TopicPartition(self.topic, self.partition)
        end = consumer.end_offsets([tp])[tp]
        begin = consumer.beginning_offsets([tp])[tp]
        stop = end
        window = _TAIL_WINDOW
        while stop > begin:
            start = max(begin, stop - window)
            manifests, _ = self._read(consumer, start, until=stop)
            if manifests:
                return manifests[-1]
            stop = start
            window *= 4
        return None

    def _read(
        self,
        consumer: Any,
        start: int,
        wanted: str | None = None,
        until: int | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, dict[int, bytes]]]:
        """Manifests in log order, and chunks of the latest few (of ``wanted`` alone, if
        given), from ``start`` to ``until`` (the end of the partition if None)."""
        from kafka import TopicPartition

        tp = TopicPartition(self.topic, self.partition)
        end = consumer.end_offsets([tp])[tp] if until is None else until
        consumer.seek(tp, start)
        prefix = f"{self.app_id}/".encode()
        manifests: list[dict[str, Any]] = []
        chunks: dict[str, dict[int, bytes]] = {}
        # A deadline on progress, not on the whole read: a shard of a million actors is hundreds
        # of MB, more than any fixed time on a busy machine (a timeout there meant a cold start,
        # the state lost); a broker that delivers nothing for timeout_s is down.
        deadline = time.monotonic() + self.timeout_s
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing read from {self.topic} for {self.timeout_s}s before its end"
                )
            polled = consumer.poll(timeout_ms=500)
            if polled:
                deadline = time.monotonic() + self.timeout_s
            for r in polled.get(tp, []):
                if r.offset >= end:
                    break
                self.records_read += 1
                if r.key is None or r.value is None or not r.key.startswith(prefix):
                    continue
                name = r.key[len(prefix) :].decode(errors="replace")
                if name == "manifest":
                    manifest = _parse_manifest(r.value)
                    if manifest is None:
                        continue
                    manifests.append(manifest)
                    if wanted is None:
                        keep = {str(m.get("checkpoint_id")) for m in manifests[-_KEEP_MANIFESTS:]}
                        # Chunks without a manifest by now belong to a torn write.
                        chunks = {k: v for k, v in chunks.items() if k in keep}
                elif name.isdigit():
                    ids = [v for k, v in (r.headers or []) if k == CHECKPOINT_ID_HEADER]
                    cid = ids[0].decode(errors="replace") if ids else None
                    if cid is not None and wanted in (None, cid):
                        chunks.setdefault(cid, {})[int(name)] = r.value
        return manifests, chunks


def _parse_manifest(value: bytes) -> dict[str, Any] | None:
    try:
        manifest = json.loads(value)
    except ValueError:
        log.error("checkpoint manifest is not JSON: ignored")
        return None
    return manifest if isinstance(manifest, dict) else None


def _assemble(manifest: dict[str, Any], chunks: dict[int, bytes]) -> tuple[str, bytes | None]:
    """(problem, None) or ("", bytes) for the checkpoint a manifest describes."""
    try:
        count = int(manifest["chunks"])
        sha256 = str(manifest["sha256"])
    except (KeyError, TypeError, ValueError):
        return "manifest without chunks/sha256", None
    missing = [i for i in range(count) if i not in chunks]
    if missing:
        return f"{len(missing)} of {count} chunks missing", None
    data = b"".join(chunks[i] for i in range(count))
    if hashlib.sha256(data).hexdigest() != sha256:
        return "sha256 mismatch", None
    return "", data


def _slices(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def _one_or_more(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, or one empty chunk if there are none: a manifest names at least chunk 0."""
    empty = True
    for chunk in chunks:
        empty = False
        yield chunk
    if empty:
        yield b""
