"""The process lifecycle: INIT → WARMUP → READY ⇄ DEGRADED → HALTED, journaled.

This module owns the transition graph, the :class:`Lifecycle` state machine that enforces it,
the small transition journal (an append-only, CRC-checked JSON-lines file, or memory), and the
warm-up driver. Only READY trades; DEGRADED marks orders non-executable (stale feed, lost ring,
failed dependency); HALTED is the kill switch's state and is left only by clearing the halt,
which goes back through WARMUP.

Ordering guarantee: a transition is written to the journal *before* the state changes and
before any listener runs. If the journal write fails, the exception propagates and nothing
changes — a transition that is not on record did not happen.

Roles journal their transitions in the journal format (segments, CRC32C frames, Merkle roots):
`tectra.journal.lifecycle.JournalTransitionJournal`, handed in by the role shell, since this
module may not import the journal. `FileTransitionJournal` (one JSON object per line, ending in
a ``crc32`` of the line's preceding bytes, so a torn last line is detected and counted) stays
for tools and tests that want a dependency-free record and to read files older roles wrote.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, runtime_checkable

import numpy as np

from tectra.core.clock import Clock, RealtimeClock
from tectra.core.log import get_logger
from tectra.schema import LifecycleState

__all__ = [
    "ALLOWED_TRANSITIONS",
    "FileTransitionJournal",
    "Lifecycle",
    "LifecycleError",
    "LifecycleState",
    "MemoryTransitionJournal",
    "TransitionEvent",
    "TransitionJournal",
    "TransitionListener",
    "read_transitions",
    "run_warmup",
]

S = LifecycleState

#: The only transitions a Lifecycle accepts (a transition to the current state is a no-op).
ALLOWED_TRANSITIONS: Final[Mapping[LifecycleState, frozenset[LifecycleState]]] = {
    S.INIT: frozenset({S.WARMUP}),
    S.WARMUP: frozenset({S.READY, S.HALTED}),
    S.READY: frozenset({S.DEGRADED, S.HALTED}),
    S.DEGRADED: frozenset({S.READY, S.HALTED}),
    # Clearing a halt re-warms before trading again: caches and references may be stale.
    S.HALTED: frozenset({S.WARMUP}),
}

JOURNAL_FORMAT_VERSION: Final = 1
_CRC_TAG: Final = b',"crc32":'

_log = get_logger("lifecycle")


class LifecycleError(RuntimeError):
    """A transition the graph does not allow; the state is unchanged."""

    def __init__(self, component: str, from_state: LifecycleState, to_state: LifecycleState):
        self.component = component
        self.from_state = from_state
        self.to_state = to_state
        allowed = ", ".join(s.name for s in sorted(ALLOWED_TRANSITIONS[from_state]))
        super().__init__(
            f"{component}: transition {from_state.name} -> {to_state.name} is not allowed "
            f"(from {from_state.name}: {allowed})"
        )


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """One accepted transition, as journaled.

    ``seq`` counts transitions of one Lifecycle instance from 1 (a process restart starts a
    new run at INIT → WARMUP, seq 1). ``mono_ns`` orders events within a boot; ``real_ns`` is
    for people.
    """

    component: str
    from_state: LifecycleState
    to_state: LifecycleState
    reason: str
    mono_ns: int
    real_ns: int
    seq: int

    def to_json_bytes(self) -> bytes:
        """The journal line body (canonical, ASCII-only JSON, no CRC, no newline)."""
        doc = {
            "v": JOURNAL_FORMAT_VERSION,
            "component": self.component,
            "from": self.from_state.name,
            "to": self.to_state.name,
            "reason": self.reason,
            "mono_ns": self.mono_ns,
            "real_ns": self.real_ns,
            "seq": self.seq,
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii")

    @classmethod
    def from_json_bytes(cls, body: bytes) -> TransitionEvent:
        """Parse a line body; raises ValueError/KeyError/TypeError on anything unexpected."""
        doc = json.loads(body)
        if doc["v"] != JOURNAL_FORMAT_VERSION:
            raise ValueError(f"unsupported journal format version {doc['v']!r}")
        ints = {k: doc[k] for k in ("mono_ns", "real_ns", "seq")}
        if not all(type(v) is int for v in ints.values()):
            raise TypeError("non-integer timestamp or seq")
        if not isinstance(doc["component"], str) or not isinstance(doc["reason"], str):
            raise TypeError("component and reason must be strings")
        return cls(
            component=doc["component"],
            from_state=LifecycleState[doc["from"]],
            to_state=LifecycleState[doc["to"]],
            reason=doc["reason"],
            **ints,
        )


@runtime_checkable
class TransitionJournal(Protocol):
    """Where transitions are recorded; ``append`` returns only once the event is recorded."""

    def append(self, event: TransitionEvent) -> None: ...


class MemoryTransitionJournal:
    """Keeps events in a list: for tests and for roles that need no durable record."""

    def __init__(self) -> None:
        self.events: list[TransitionEvent] = []

    def append(self, event: TransitionEvent) -> None:
        self.events.append(event)


def _encode_line(event: TransitionEvent) -> bytes:
    body = event.to_json_bytes()
    crc = zlib.crc32(body)
    # The CRC covers the exact bytes of `body`; it is spliced in as the last member so the
    # line stays one valid JSON object.
    return body[:-1] + _CRC_TAG + str(crc).encode("ascii") + b"}\n"


def _decode_line(line: bytes) -> TransitionEvent:
    at = line.rfind(_CRC_TAG)
    if at < 0 or not line.endswith(b"}"):
        raise ValueError("no crc32 member")
    crc_text = line[at + len(_CRC_TAG) : -1]
    if not crc_text.isdigit():
        raise ValueError("malformed crc32")
    body = line[:at] + b"}"
    if zlib.crc32(body) != int(crc_text):
        raise ValueError("crc32 mismatch")
    return TransitionEvent.from_json_bytes(body)


def read_transitions(path: Path | str) -> tuple[list[TransitionEvent], int]:
    """Read a transition journal: ``(events in file order, number of torn/corrupt lines)``.

    Corrupt lines are skipped and counted — never silently: callers must look at the count
    (a torn last line after a crash is expected; corruption elsewhere is not).
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last complete record
    events: list[TransitionEvent] = []
    bad = 0
    for line in lines:
        try:
            events.append(_decode_line(line))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return events, bad


class FileTransitionJournal:
    """Append-only JSON-lines transition journal with a CRC32 per line.

    Each event is one ``write(2)`` on an ``O_APPEND`` descriptor. With ``fsync=True`` every
    append is also fsynced before returning (durable across power loss, at the cost of a disk
    flush per transition — transitions are rare, so roles that matter should turn it on).
    """

    def __init__(self, path: Path | str, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o644)
        try:
            self._terminate_torn_tail()
        except BaseException:
            os.close(self._fd)
            raise

    def _terminate_torn_tail(self) -> None:
        # A crash mid-write leaves a last line without its newline. Close it off, so the next
        # record starts on its own line and only the torn fragment reads as corrupt.
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            self._write(b"\n")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def append(self, event: TransitionEvent) -> None:
        line = _encode_line(event)
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"transition journal {self.path} is closed")
            self._write(line)
            if self.fsync:
                os.fsync(self._fd)

    def read_all(self) -> tuple[list[TransitionEvent], int]:
        """``read_transitions`` on this journal's file; logs a warning if lines were skipped."""
        events, bad = read_transitions(self.path)
        if bad:
            _log.warning("transition journal has corrupt lines", path=self.path, corrupt=bad)
        return events, bad

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> FileTransitionJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


TransitionListener = Callable[[TransitionEvent], None]


class Lifecycle:
    """The lifecycle state machine of one component (usually one role process).

    ``transition`` checks the graph, journals, switches state, then notifies listeners (e.g.
    the readiness endpoint, metrics, sd_notify). It is thread-safe; listeners run in the
    transitioning thread while the lock is held, so they see transitions in journal order —
    keep them short. A listener that raises is logged and counted (``listener_errors``); it
    does not undo the transition, which is already on record.
    """

    def __init__(
        self,
        component: str,
        journal: TransitionJournal,
        clock: Clock,
        *,
        realtime: Clock | None = None,
    ) -> None:
        self.component = component
        self._journal = journal
        self._clock = clock
        self._realtime = realtime if realtime is not None else RealtimeClock()
        self._lock = threading.RLock()
        self._listeners: list[TransitionListener] = []
        self._state = LifecycleState.INIT
        self._reason = "process started"
        self._since_ns = clock.now_ns()
        self._seq = 0
        self.listener_errors = 0

    @property
    def state(self) -> LifecycleState:
        return self._state

    @property
    def reason(self) -> str:
        """Why the current state was entered."""
        return self._reason

    @property
    def since_ns(self) -> int:
        """Monotonic time the current state was entered."""
        return self._since_ns

    @property
    def seq(self) -> int:
        """Number of transitions so far (the seq of the last event)."""
        return self._seq

    @property
    def can_trade(self) -> bool:
        """Only READY trades."""
        return self._state is LifecycleState.READY

    def transition(self, to: LifecycleState, reason: str) -> bool:
        """Move to ``to``; returns False (and records nothing) if already there.

        Raises :class:`LifecycleError` for a transition outside the graph, ``ValueError`` for
        an empty reason; either way nothing changes. Journal errors propagate unchanged.
        """
        to = LifecycleState(to)
        if not reason:
            raise ValueError("a lifecycle transition needs a reason")
        with self._lock:
            current = self._state
            if to is current:
                return False
            if to not in ALLOWED_TRANSITIONS[current]:
                raise LifecycleError(self.component, current, to)
            event = TransitionEvent(
                component=self.component,
                from_state=current,
                to_state=to,
                reason=reason,
                mono_ns=self._clock.now_ns(),
                real_ns=self._realtime.now_ns(),
                seq=self._seq + 1,
            )
            self._journal.append(event)  # first: an unrecorded transition did not happen
            self._state = to
            self._reason = reason
            self._since_ns = event.mono_ns
            self._seq = event.seq
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    self.listener_errors += 1
                    _log.error(
                        "lifecycle listener failed",
                        exc_info=True,
                        lifecycle=self.component,
                        listener=getattr(listener, "__qualname__", repr(listener)),
                    )
            return True

    def add_listener(self, listener: TransitionListener) -> Callable[[], None]:
        """Call ``listener(event)`` after every transition; returns a function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def ready(self) -> tuple[bool, dict[str, object]]:
        """Health-source view (see tectra.core.http.HealthSource): ready only in READY."""
        with self._lock:
            return self._state is LifecycleState.READY, {
                "component": self.component,
                "state": self._state.name,
                "reason": self._reason,
                "since_ns": self._since_ns,
                "seq": self._seq,
            }

    def __repr__(self) -> str:
        return f"Lifecycle({self.component!r}, state={self._state.name}, seq={self._seq})"


def run_warmup(step: Callable[[np.ndarray], object], batch: np.ndarray, ticks: int) -> int:
    """Push ``ticks`` synthetic records through ``step`` in batches of ``len(batch)``.

    The last batch is a prefix of ``batch`` so exactly ``ticks`` records run. Returns the
    number run. Warm-up exercises the real hot path (caches, branch predictors, lazily
    initialised numpy/cffi paths) so the first real message is not the slow one. The caller
    moves the lifecycle WARMUP → READY afterwards.
    """
    if ticks < 0:
        raise ValueError(f"ticks must be >= 0, got {ticks}")
    size = len(batch)
    if ticks and size == 0:
        raise ValueError("warm-up batch is empty")
    done = 0
    while done < ticks:
        n = min(size, ticks - done)
        step(batch if n == size else batch[:n])
        done += n
    return done
