"""Idempotent retries for mutating calls: one answer per (caller, method, correlation id).

A client that lost an answer (deadline, dropped connection) retries with the same correlation
id. If the first attempt succeeded, the retry gets the stored answer and nothing is applied
again; if the first attempt is still running, the retry waits for it instead of racing it; if
the first attempt failed, the retry runs. A correlation id reused with different arguments is
refused (it would otherwise silently return the answer to a different question).
Bounded: the oldest entries go first beyond `capacity`, and entries expire after `ttl_s`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")

ReplayKey = tuple[str, str, str]  # (principal, method, correlation id)


class ReplayConflictError(ValueError):
    """The correlation id was used before with different arguments."""


@dataclass
class _Entry(Generic[R]):
    digest: str
    created: float
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    reply: R | None = None


class ReplayCache(Generic[R]):
    def __init__(self, capacity: int = 4096, ttl_s: float = 600.0, wait_s: float = 30.0) -> None:
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._wait_s = wait_s
        self._entries: OrderedDict[ReplayKey, _Entry[R]] = OrderedDict()
        self._lock = threading.Lock()
        self.replays = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _claim(self, key: ReplayKey, digest: str) -> tuple[_Entry[R], bool]:
        """The entry for KEY and whether this caller owns (must run) it."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry.created > self._ttl_s:
                entry = None
            if entry is not None:
                if entry.digest != digest:
                    raise ReplayConflictError(
                        f"correlation id {key[2]!r} was already used for {key[1]} with "
                        "different arguments"
                    )
                return entry, False
            entry = _Entry(digest, now)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
            return entry, True

    def run(self, key: ReplayKey, request_bytes: bytes, fn: Callable[[], R]) -> tuple[R, bool]:
        """fn() once per key; returns (reply, replayed). Exceptions propagate, not stored."""
        digest = hashlib.sha256(request_bytes).hexdigest()
        for _ in range(3):
            entry, owner = self._claim(key, digest)
            if owner:
                break
            entry.done.wait(self._wait_s)
            if entry.ok and entry.reply is not None:
                self.replays += 1
                return entry.reply, True
            # The first attempt failed (its entry is gone) or is stuck: try to run it ourselves.
            with self._lock:
                if self._entries.get(key) is entry and entry.done.is_set():
                    del self._entries[key]
        else:
            raise TimeoutError(f"an earlier attempt of {key[2]!r} is still running")
        try:
            reply = fn()
        except BaseException:
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            entry.done.set()
            raise
        entry.reply = reply
        entry.ok = True
        entry.done.set()
        return reply, False
