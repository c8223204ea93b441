"""Engine checkpoints on local disk, with the source offsets each one covers.

A checkpoint is written atomically (temporary file, fsync, rename), so a worker killed at any
instant finds either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Checkpoint", "CheckpointStore", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

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


class CheckpointStore:
    """One checkpoint file per detector app id."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, checkpoint: Checkpoint) -> None:
        checkpoint.written_unix_s = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(checkpoint, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self) -> Checkpoint | None:
        """The last checkpoint, or None when there is none or it cannot be read."""
        try:
            with open(self.path, "rb") as f:
                checkpoint = pickle.load(f)
        except FileNotFoundError:
            return None
        except Exception as exc:  # a bad file must not keep the worker down
            # Starting cold (a new warm-up) beats crash-looping on a file we cannot read.
            log.error("checkpoint %s unreadable (%s): starting without it", self.path, exc)
            return None
        if not isinstance(checkpoint, Checkpoint) or checkpoint.version != FORMAT_VERSION:
            log.error("checkpoint %s has an unknown format: starting without it", self.path)
            return None
        return checkpoint
