"""Lifecycle transitions in the journal format: the `TransitionJournal` every role uses.

This module owns how a `tectra.core.lifecycle.TransitionEvent` becomes a journal record and
back: one LIFECYCLE_EVENT schema record (`tectra.schema.LIFECYCLE_EVENT`) per transition, one
frame each (own sequence number, CRC32C and Merkle leaf), in a journal of its own per role at
``STATE_DIR/journal/lifecycle-<role>/``. The writer runs with ``fsync = always``: transitions
are rare and an acknowledged one must survive a power loss, because `Lifecycle` changes state
only after `append` returns. Opening the journal runs the writer's recovery, so a torn last
frame left by a ``kill -9`` is truncated and reported (`recovery`), never misread.

Record mapping: header ``seq`` = the transition's seq (per process run, from 1), header
``ts_ns`` and frame ``mono_ns`` = its monotonic time, frame ``real_ns`` = its realtime stamp;
``component`` = the `Component` code of the role name (NONE for names without one, e.g. the
ring demo roles: the segment header's journal name still says which), ``pid`` = the writer's
process. ``reason_text`` holds the reason as ASCII (other characters backslash-escaped), cut
to 80 bytes: the record's width, so a longer reason is kept as its prefix.

`tectra.core` cannot import the journal (it sits below it), so `Lifecycle` stays
journal-agnostic and this class is handed to it by the role shell.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from tectra.core.lifecycle import TransitionEvent
from tectra.journal.format import SEGMENT_HEADER_SIZE, decode_header
from tectra.journal.reader import JournalReader
from tectra.journal.writer import FsyncPolicy, JournalWriter, RecoveryReport, WriterOptions
from tectra.schema import (
    LIFECYCLE_EVENT,
    REASON_TEXT_WIDTH,
    Component,
    LifecycleState,
    new_records,
)

__all__ = [
    "JOURNAL_PREFIX",
    "JournalTransitionJournal",
    "component_code",
    "decode_transitions",
    "encode_transition",
    "lifecycle_journal_directory",
    "read_lifecycle_journal",
]

JOURNAL_PREFIX: Final = "lifecycle-"
_NAME_BYTES: Final = 32  # the segment header's journal-name width


def lifecycle_journal_directory(state_dir: Path | str, role: str) -> Path:
    """Where a role's lifecycle journal lives: STATE_DIR/journal/lifecycle-<role>."""
    return Path(state_dir) / "journal" / f"{JOURNAL_PREFIX}{role}"


def component_code(name: str) -> int:
    """The `Component` code of a lifecycle's name (NONE when the name is not a component)."""
    member = Component.__members__.get(name.upper())
    return int(member) if member is not None else int(Component.NONE)


def _journal_name(component: str) -> str:
    raw = f"{JOURNAL_PREFIX}{component}".encode()[:_NAME_BYTES]
    return raw.decode("utf-8", errors="ignore")


def encode_transition(event: TransitionEvent, *, pid: int = 0) -> npt.NDArray[np.void]:
    """One LIFECYCLE_EVENT record for `event`."""
    rec = new_records(LIFECYCLE_EVENT, 1)
    rec["seq"] = event.seq
    rec["ts_ns"] = event.mono_ns
    rec["component"] = component_code(event.component)
    rec["from_state"] = int(event.from_state)
    rec["to_state"] = int(event.to_state)
    rec["pid"] = pid
    rec["reason_text"] = event.reason.encode("ascii", "backslashreplace")[:REASON_TEXT_WIDTH]
    return rec


def decode_transitions(
    records: npt.NDArray[np.void], real_ns: npt.NDArray[np.int64], fallback_component: str
) -> list[TransitionEvent]:
    """TransitionEvents from LIFECYCLE_EVENT records and their frames' realtime stamps."""
    events: list[TransitionEvent] = []
    for rec, real in zip(records, real_ns.tolist(), strict=True):
        code = int(rec["component"])
        name = (
            Component(code).name.lower()
            if code in Component._value2member_map_ and code != Component.NONE
            else fallback_component
        )
        events.append(
            TransitionEvent(
                component=name,
                from_state=LifecycleState(int(rec["from_state"])),
                to_state=LifecycleState(int(rec["to_state"])),
                reason=bytes(rec["reason_text"]).decode("ascii", errors="replace"),
                mono_ns=int(rec["ts_ns"]),
                real_ns=int(real),
                seq=int(rec["seq"]),
            )
        )
    return events


def _journal_component_name(reader: JournalReader) -> str:
    if reader.manifest is not None:
        journal = reader.manifest.journal
    elif reader.paths:
        with reader.paths[0].open("rb") as f:
            journal = decode_header(f.read(SEGMENT_HEADER_SIZE)).journal
    else:
        return ""
    return journal.removeprefix(JOURNAL_PREFIX)


def read_lifecycle_journal(directory: Path | str) -> list[TransitionEvent]:
    """Every transition in a lifecycle journal, in journal order (all process runs).

    Frames are CRC-checked as they are read (a damaged frame raises
    `tectra.journal.reader.CorruptFrameError`); `tectra journal verify` gives the full report.
    """
    reader = JournalReader(directory)
    fallback = _journal_component_name(reader)
    events: list[TransitionEvent] = []
    for fb in reader.batches():
        pick = np.flatnonzero(fb.type == LIFECYCLE_EVENT.type_id)
        if pick.shape[0]:
            sel = fb.select(pick)
            events.extend(
                decode_transitions(sel.records(LIFECYCLE_EVENT.type_id), sel.real_ns, fallback)
            )
    return events


class JournalTransitionJournal:
    """A role's lifecycle journal (see the module docstring); `append` returns once durable.

    Thread-safe: the writer is used under one lock (a `Lifecycle` already serialises its own
    transitions; the lock covers `close` racing a late transition).
    """

    def __init__(
        self,
        directory: Path | str,
        component: str,
        *,
        fsync: FsyncPolicy = FsyncPolicy.ALWAYS,
        segment_max_bytes: int = 1 << 20,
    ) -> None:
        self.directory = Path(directory)
        self.component = component
        self._code = component_code(component)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.writer = JournalWriter(
            self.directory,
            WriterOptions(
                journal=_journal_name(component),
                component=self._code,
                fsync=fsync,
                segment_max_bytes=segment_max_bytes,
                # A segment is sealed when its process closes it; an age limit would only
                # split a quiet role's handful of transitions across files.
                segment_max_age_s=0.0,
            ),
        )

    @property
    def recovery(self) -> RecoveryReport:
        """What opening found and repaired (a torn tail after a crash is truncated here)."""
        return self.writer.recovery

    def append(self, event: TransitionEvent) -> None:
        rec = encode_transition(event, pid=self._pid)
        with self._lock:
            self.writer.append_records(
                rec, component=self._code, mono_ns=event.mono_ns, real_ns=event.real_ns
            )

    def read_all(self) -> list[TransitionEvent]:
        """Every transition on record in this journal, earlier runs included."""
        return read_lifecycle_journal(self.directory)

    def close(self) -> None:
        """Seal the active segment and release the directory; later appends raise ValueError."""
        with self._lock:
            self.writer.close()

    def __enter__(self) -> JournalTransitionJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
