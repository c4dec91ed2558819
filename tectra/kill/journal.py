"""The kill role's journal capture: every command sent, ack received and ledger record, in a
journal (`tectra.journal.writer`) under ``STATE_DIR/journal/kill``.

What goes in, as frames of component KILL:

* every KILL_COMMAND the engine fans out (triggers, retries excluded, clears) — the schema
  record, byte for byte what the subscribers got;
* every KILL_ACK the engine receives (first acks and the later progress acks) — the record as
  the subscriber sent it (re-encoded from the decoded ack: the same bytes);
* every ledger record (trigger, action, ack, clear, arm/disarm) as a NOTE frame (0xF030,
  UTF-8 JSON ``{"ledger": <the ledger record>}``), so the journal has the kill ids, reasons,
  actors and outcomes the 128-byte records cannot carry.

The kill path never waits for the journal: callers only put an item on a bounded queue (the
control-block write has happened long before), and one writer thread appends, in order, with
the ``[journal]`` fsync policy. A full queue drops the item and counts it (``dropped``); a
writer error is counted and logged, and the thread keeps going — the hash-chained ledger stays
the kill switch's record of authority, the journal is capture for replay and research.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tectra.core.clock import monotonic_ns
from tectra.core.log import get_logger
from tectra.journal.format import RecordKind, RecordType
from tectra.journal.writer import JournalWriter, WriterOptions
from tectra.schema import KILL_ACK, KILL_COMMAND, Component

__all__ = ["JOURNAL_NAME", "KillJournal", "KillJournalStats"]

JOURNAL_NAME: Final = "kill"
_QUEUE_MAX: Final = 65536
_STOP: Final = object()

_log = get_logger("kill.journal")


@dataclass
class KillJournalStats:
    commands: int = 0
    acks: int = 0
    notes: int = 0
    dropped: int = 0
    errors: int = 0


class KillJournal:
    """A journal writer on its own thread; `command`, `ack` and `note` never block."""

    def __init__(self, directory: Path, options: WriterOptions | None = None) -> None:
        opts = options or WriterOptions()
        self.options = WriterOptions(
            **{
                **{f: getattr(opts, f) for f in opts.__dataclass_fields__},
                "journal": JOURNAL_NAME,
                "component": int(Component.KILL),
            }
        )
        self.directory = Path(directory)
        self.stats = KillJournalStats()
        self._queue: queue.Queue[Any] = queue.Queue(_QUEUE_MAX)
        self._writer: JournalWriter | None = None
        self._thread: threading.Thread | None = None
        self._tick_s = max(min(self.options.batch_interval_s, 0.25), 0.001)

    def start(self) -> None:
        """Open (and recover) the journal, then start the writer thread."""
        self._writer = JournalWriter(self.directory, self.options)
        self._thread = threading.Thread(target=self._run, name="kill-journal", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write everything queued, seal and close (idempotent)."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    # ------------------------------------------------------------------ producers
    def _put(self, item: tuple[int, bytes, int]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1

    def command(self, record: bytes, mono_ns: int) -> None:
        """One encoded KILL_COMMAND (as sent)."""
        self.stats.commands += 1
        self._put((KILL_COMMAND.type_id, record, mono_ns))

    def ack(self, record: bytes, recv_ns: int) -> None:
        """One encoded KILL_ACK (as received; mono_ns = when the kill role received it)."""
        self.stats.acks += 1
        self._put((KILL_ACK.type_id, record, recv_ns))

    def note(self, body: dict[str, Any]) -> None:
        """A NOTE frame: UTF-8 JSON (canonical: sorted keys, no spaces)."""
        self.stats.notes += 1
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._put((int(RecordType.NOTE), data.encode("utf-8"), monotonic_ns()))

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        writer = self._writer
        assert writer is not None
        stop = False
        try:
            while not stop:
                try:
                    items = [self._queue.get(timeout=self._tick_s)]
                except queue.Empty:
                    items = []
                while True:  # drain what is queued: one writev (and fsync) for all of it
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if any(i is _STOP for i in items):
                    stop = True
                    items = [i for i in items if i is not _STOP]
                try:
                    with writer.group():
                        for type_code, payload, mono in items:
                            writer.append(
                                payload,
                                type_code=type_code,
                                kind=RecordKind.EVENT,
                                mono_ns=mono,
                            )
                    writer.tick()
                except Exception as exc:  # counted and logged; the ledger still has it all
                    self.stats.errors += 1
                    _log.error("kill journal append failed", error=repr(exc))
        finally:
            try:
                writer.close()
            except Exception as exc:
                self.stats.errors += 1
                _log.error("kill journal close failed", error=repr(exc))
