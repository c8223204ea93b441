"""Signed-in browser sessions, held in memory: a random cookie maps to the supervisor's token."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from suptech.console.client import Access

__all__ = ["Session", "Sessions"]


@dataclass
class Session:
    token: str
    access: Access
    lang: str
    tz: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    last_used: float = field(default_factory=time.monotonic)


class Sessions:
    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._by_id: dict[str, Session] = {}

    def create(self, session: Session) -> str:
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = session
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._by_id.get(sid)
        now = time.monotonic()
        if s is None or now - s.last_used > self._idle_s:
            self._by_id.pop(sid, None)
            return None
        s.last_used = now
        return s

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)
