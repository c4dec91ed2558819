"""The `journal` role: drains the journal ring into segments (`tectra run journal`).

This module owns the process side of journaling: it attaches (or creates) the configured ring
(``[journal] ring`` → ``[rings.NAME]``), pops records in batches and appends them with one
write per batch, calls the writer's periodic duties (the ``batch`` fsync, age rotation), and
exports its counters as metrics read at scrape time. Producers never wait on the disk: they
push into the ring and carry on; the writer sits on its own core.

Market-data layouts (ITCH_EVENT, TICK, BOOK_UPDATE, TRADE) are journaled one RECORD_BATCH
frame per pop, so the writer's cost is per byte and keeps up with the feed; order-path and
control layouts one frame per record.

Ring slots are fixed-size records of the ring's layout. A producer may also place a record of
another layout that fits in a slot (its header type_id says which): the writer journals that
layout's bytes. A slot whose type this build does not know is journaled whole as
UNKNOWN_RECORD and counted, never dropped. Loss reported by the ring (overwrite policy) is
journaled as a GAP frame carrying the count, and the role goes DEGRADED until it has been
clean for a second. Frame component ids come from the record type (feed, gateway, risk, kill;
lifecycle events carry their own).

Lifecycle: INIT → WARMUP (the framing and hashing path runs on synthetic records) → READY once
the journal is recovered and the ring attached.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.core.clock import monotonic_ns
from tectra.core.config import ConfigError, TectraConfig
from tectra.core.lifecycle import run_warmup
from tectra.io.ring_metrics import register_ring_metrics
from tectra.io.shm import RingKind, RingPolicy, ShmRing
from tectra.journal.format import RecordType, encode_frames_fixed, raw_view
from tectra.journal.merkle import leaf_hash
from tectra.journal.writer import JournalCorruptError, JournalWriter, WriterOptions
from tectra.roles.shell import RoleShell
from tectra.schema import (
    LAYOUTS,
    LIFECYCLE_EVENT,
    Component,
    LifecycleState,
    RecordLayout,
    SchemaError,
    layout_by_type_id,
    new_records,
)

__all__ = [
    "RingDrain",
    "component_for_type",
    "frames_per_pop",
    "journal_directory",
    "run_journal",
]

RECOVER_AFTER_NS: Final = 1_000_000_000
_GAP: Final = struct.Struct("<Q")

_COMPONENT_BY_TYPE: Final[dict[str, Component]] = {
    "RING_PROBE": Component.DEMO,
    "TICK": Component.FEED,
    "BOOK_UPDATE": Component.FEED,
    "TRADE": Component.FEED,
    "ITCH_EVENT": Component.FEED,
    "ORDER_REQUEST": Component.GATEWAY,
    "EXECUTION_REPORT": Component.GATEWAY,
    "RISK_VERDICT": Component.RISK,
    "KILL_COMMAND": Component.KILL,
    "KILL_ACK": Component.KILL,
}


def component_for_type(layout: RecordLayout) -> int:
    """The frame component of ring-drained records of `layout` (NONE when unmapped)."""
    return int(_COMPONENT_BY_TYPE.get(layout.name, Component.NONE))


# High-rate market-data layouts are journaled one frame per ring pop (RECORD_BATCH): the
# writer's cost is then per byte, not per record, and keeps up with the feed. Order-path and
# control records stay one frame each, so every one has its own sequence, CRC and Merkle leaf.
_BATCHED_LAYOUTS: Final = frozenset({"RING_PROBE", "TICK", "BOOK_UPDATE", "TRADE", "ITCH_EVENT"})


def frames_per_pop(layout: RecordLayout) -> bool:
    """True when ring records of `layout` are journaled as one RECORD_BATCH frame per pop."""
    return layout.name in _BATCHED_LAYOUTS


def journal_directory(config: TectraConfig) -> Path:
    """Where the journal role keeps the journal of its ring: STATE_DIR/journal/RING."""
    return Path(config.appliance.state_dir) / "journal" / config.journal.ring


@dataclass
class DrainCounters:
    """Read at scrape time; written by the drain loop only."""

    records: int = 0
    batches: int = 0
    lost: int = 0
    unknown: int = 0


class RingDrain:
    """Pops a ring into a writer, a batch at a time (the role's loop body, testable alone)."""

    def __init__(
        self,
        ring: ShmRing,
        writer: JournalWriter,
        batch: int = 4096,
        *,
        batch_frames: bool | None = None,
    ) -> None:
        """`batch_frames`: journal each pop as one RECORD_BATCH frame; None chooses by the
        ring's layout (`frames_per_pop`)."""
        self.ring = ring
        self.writer = writer
        self.layout = _layout_of(ring.dtype)
        self.batch_frames = frames_per_pop(self.layout) if batch_frames is None else batch_frames
        self.counters = DrainCounters()
        self._out = np.zeros(batch, dtype=ring.dtype)

    def poll(self) -> tuple[int, int]:
        """One pop and append; returns (records journaled, records the ring reported lost)."""
        n, lost = self.ring.pop_into(self._out)
        if lost:
            self.writer.append(
                _GAP.pack(lost), type_code=RecordType.GAP, component=int(Component.JOURNAL)
            )
            self.counters.lost += lost
        if n:
            self._append(self._out[:n])
            self.counters.records += n
            self.counters.batches += 1
        return n, lost

    def _append(self, recs: npt.NDArray[np.void]) -> None:
        layout = self.layout
        types = recs["type_id"]
        versions = recs["version"]
        if (types == layout.type_id).all() and (versions == layout.version).all():
            comps = self._components(layout, recs)
            if self.batch_frames and isinstance(comps, int):
                self.writer.append_batch(recs, component=comps)
            else:
                self.writer.append_records(recs, component=comps)
            return
        # Mixed slot contents: journal each run of one type as that type.
        cuts = np.flatnonzero((types[1:] != types[:-1]) | (versions[1:] != versions[:-1])) + 1
        with self.writer.group():
            for run in np.split(np.arange(recs.shape[0]), cuts):
                part = recs[run]
                try:
                    own = layout_by_type_id(int(part["type_id"][0]), int(part["version"][0]))
                except SchemaError:
                    own = None
                if own is None or own.itemsize > layout.itemsize:
                    self.counters.unknown += len(part)
                    self.writer.append_payloads(
                        [bytes(r) for r in raw_view(part)], type_code=RecordType.UNKNOWN_RECORD
                    )
                    continue
                if own is not layout:
                    raw = np.frombuffer(raw_view(part).tobytes(), dtype=np.uint8)
                    rows = raw.reshape(len(part), layout.itemsize)[:, : own.itemsize]
                    part = np.ascontiguousarray(rows).view(own.dtype).reshape(len(part))
                self.writer.append_records(part, component=self._components(own, part))

    @staticmethod
    def _components(layout: RecordLayout, recs: npt.NDArray[np.void]) -> Any:
        if layout is LIFECYCLE_EVENT:
            return recs["component"].astype(np.uint8)
        return component_for_type(layout)

    def drain(self) -> int:
        """Pop until the ring is empty; returns records journaled."""
        total = 0
        while True:
            n, lost = self.poll()
            total += n
            if not n and not lost:
                return total


def _layout_of(dtype: np.dtype[Any]) -> RecordLayout:
    for layout in LAYOUTS.values():
        if layout.dtype == dtype:
            return layout
    raise SchemaError(f"ring dtype {dtype} is not a schema layout")


def _warm(batch: npt.NDArray[np.void]) -> None:
    frames = encode_frames_fixed(
        batch, type_codes=1, kind=0, component=0, first_seq=1, mono_ns=0, real_ns=0, step=0
    )
    flen = frames.shape[0] // max(1, batch.shape[0])
    view = frames.data
    for i in range(0, frames.shape[0], flen):
        leaf_hash(view[i : i + flen])


def run_journal(config: TectraConfig) -> int:
    """The journal role's main: returns the process exit code."""
    jc = config.journal
    ring_config = config.ring(jc.ring)
    layout = LAYOUTS.get(ring_config.record)
    if layout is None:
        raise ConfigError(f"rings.{jc.ring}.record", ring_config.record, "unknown record layout")
    shm_root = Path(config.appliance.shm_root)
    directory = journal_directory(config)
    with RoleShell("journal", config, io_path="shm") as shell:
        shell.lifecycle.transition(LifecycleState.WARMUP, "warming the framing path")
        run_warmup(_warm, new_records(layout, 256), shell.role_config.warmup_ticks)
        try:
            writer = JournalWriter(
                directory,
                WriterOptions.from_config(jc, journal=jc.ring, component=int(Component.JOURNAL)),
            )
        except JournalCorruptError as exc:
            shell.log.error("journal is damaged; refusing to append", error=str(exc))
            return 1
        if not writer.recovery.clean:
            shell.log.warning("journal recovered after a crash", report=str(writer.recovery))
        ring = ShmRing.create(
            jc.ring,
            layout.dtype,
            ring_config.capacity,
            RingKind.SPSC if ring_config.kind == "spsc" else RingKind.MPMC,
            RingPolicy.OVERWRITE if ring_config.policy == "overwrite" else RingPolicy.BACKPRESSURE,
            root=shm_root,
            exist_ok=True,
        )
        drain = RingDrain(ring, writer)
        stats, counters = writer.stats, drain.counters
        m = shell.metrics
        m.counter_from("tectra_journal_records", "Frames appended.", lambda: stats.records)
        m.counter_from("tectra_journal_bytes", "Frame bytes written.", lambda: stats.bytes)
        m.counter_from("tectra_journal_writes", "writev calls.", lambda: stats.writes)
        m.counter_from("tectra_journal_fsyncs", "fdatasync calls.", lambda: stats.fsyncs)
        m.counter_from(
            "tectra_journal_segments_sealed", "Segments sealed.", lambda: stats.segments_sealed
        )
        m.counter_from(
            "tectra_journal_ring_lost_records",
            "Records the ring lost before the journal read them (journaled as GAP).",
            lambda: counters.lost,
        )
        m.counter_from(
            "tectra_journal_unknown_records",
            "Ring slots of a type this build does not know (journaled as UNKNOWN_RECORD).",
            lambda: counters.unknown,
        )
        m.counter_from(
            "tectra_journal_recovered_bytes_dropped",
            "Bytes of torn frames truncated by recovery at start-up.",
            lambda: stats.recovered_bytes_dropped,
        )
        m.gauge_from(
            "tectra_journal_undurable_records",
            "Frames written but not yet fsynced (fsync = batch/none).",
            lambda: writer.written_seq - writer.durable_seq,
        )
        register_ring_metrics(m, lambda: [ring])
        shell.details["journal"] = lambda: f"{directory} (fsync={jc.fsync})"
        shell.ready(f"journaling ring {jc.ring} into {directory}")
        idle_s = min(0.005, max(jc.batch_interval_s / 2, 0.0005))
        last_loss_ns = 0
        try:
            while not shell.stopping:
                shell.heartbeat()
                n, lost = drain.poll()
                writer.tick()
                now = monotonic_ns()
                if lost:
                    last_loss_ns = now
                    if shell.lifecycle.state is LifecycleState.READY:
                        shell.lifecycle.transition(
                            LifecycleState.DEGRADED, f"ring overrun: {lost} records lost"
                        )
                elif (
                    shell.lifecycle.state is LifecycleState.DEGRADED
                    and now - last_loss_ns > RECOVER_AFTER_NS
                ):
                    shell.lifecycle.transition(LifecycleState.READY, "journal back in step")
                if not n and not lost:
                    time.sleep(idle_s)  # the disk is not the hot path: do not spin a core
            drain.drain()
        finally:
            writer.close()
            ring.close()
            shell.log.info(
                "journal closed",
                records=stats.records,
                segments=len(writer.manifest.segments),
                journal_root=writer.manifest.journal_root,
            )
    return 0
