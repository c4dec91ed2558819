"""The ring demo's two roles: `publisher` writes checksummed RING_PROBE records into a ring at a
paced rate; `consumer` reads them, verifies checksum and sequence, and measures transit latency.

Both run in a RoleShell (lifecycle, /metrics, control socket, sd_notify) like every role, and
work in batches: the per-record work is numpy over the whole batch, counters move once a batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tectra.core.clock import monotonic_ns
from tectra.core.config import TectraConfig
from tectra.core.lifecycle import run_warmup
from tectra.io.ring_metrics import register_ring_metrics
from tectra.io.shm import RingKind, RingNotFoundError, RingPolicy, ShmRing
from tectra.roles.shell import RoleShell
from tectra.schema import LAYOUTS, RING_PROBE, LifecycleState, new_records, probe_checksum

ATTACH_TIMEOUT_S = 30.0
POLL_TIMEOUT_NS = 50_000_000  # consumer wakes at least this often to check for stop
RECOVER_AFTER_NS = 1_000_000_000  # a consumer back in step this long is READY again
PAYLOAD_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: distinct words per seq


def _ring_shape(config: TectraConfig) -> tuple[str, int, RingKind, RingPolicy]:
    name = config.demo.ring
    ring_config = config.ring(name)
    if LAYOUTS[ring_config.record].dtype != RING_PROBE.dtype:
        raise ValueError(f"rings.{name}.record must be RING_PROBE for the demo")
    return (
        name,
        ring_config.capacity,
        RingKind.SPSC if ring_config.kind == "spsc" else RingKind.MPMC,
        RingPolicy.OVERWRITE if ring_config.policy == "overwrite" else RingPolicy.BACKPRESSURE,
    )


def fill_probes(batch: npt.NDArray[np.void], first_seq: int, now_ns: int) -> None:
    """Stamp a batch of probes: consecutive seqs from FIRST_SEQ, send time, payload, checksum."""
    seqs = batch["seq"]
    seqs[:] = np.arange(first_seq, first_seq + len(batch), dtype=np.uint64)
    batch["ts_ns"] = now_ns
    batch["send_ns"] = now_ns
    batch["payload"][:, 0] = seqs * PAYLOAD_MIX
    batch["payload"][:, 1] = ~seqs
    batch["checksum"] = probe_checksum(batch)


@dataclass
class ConsumerTally:
    """What the consumer has seen; updated once per batch."""

    received: int = 0
    lost: int = 0
    checksum_errors: int = 0
    sequence_errors: int = 0
    next_seq: int = 1

    def reader(self, field: str) -> Callable[[], float]:
        """A scrape-time reader of one counter."""
        return lambda: float(getattr(self, field))

    def check(self, batch: npt.NDArray[np.void], lost: int) -> None:
        """Account one pop: BATCH (possibly empty) arrived after LOST records were overrun."""
        n = len(batch)
        self.lost += lost
        if n == 0:
            self.next_seq += lost
            return
        seqs = batch["seq"]
        self.received += n
        self.checksum_errors += int(np.count_nonzero(probe_checksum(batch) != batch["checksum"]))
        # The ring reports loss exactly: the first seq must be where the gap says it is, and a
        # batch is contiguous. Anything else is a sequencing fault worth counting.
        expected_first = self.next_seq + lost
        if int(seqs[0]) != expected_first or int(seqs[-1]) - int(seqs[0]) != n - 1:
            self.sequence_errors += 1
        self.next_seq = int(seqs[-1]) + 1


def run_publisher(config: TectraConfig) -> int:
    name, capacity, kind, policy = _ring_shape(config)
    rate, batch_size = config.demo.rate, config.demo.batch
    shm_root = Path(config.appliance.shm_root)
    with RoleShell("publisher", config, io_path="shm") as shell:
        shell.lifecycle.transition(LifecycleState.WARMUP, "warming the fill path")
        batch = new_records(RING_PROBE, batch_size)
        run_warmup(
            lambda b: fill_probes(b, 1, monotonic_ns()), batch, shell.role_config.warmup_ticks
        )
        # The publisher owns the ring: a file left by a crashed run is replaced, not reused.
        (shm_root / name).unlink(missing_ok=True)
        ring = ShmRing.create(name, RING_PROBE.dtype, capacity, kind, policy, root=shm_root)
        sent = np.zeros(1, dtype=np.int64)  # read at scrape time from the HTTP thread
        shell.metrics.counter_from(
            "tectra_demo_published_records", "Probe records published.", lambda: int(sent[0])
        )
        register_ring_metrics(shell.metrics, lambda: [ring])
        shell.details["ring"] = lambda: f"{name} ({kind.name} {policy.name}, {capacity} slots)"
        shell.ready(f"publishing into ring {name}")
        start_ns = monotonic_ns()
        seq = 1
        try:
            while not shell.stopping:
                shell.heartbeat()
                n = batch_size
                if rate:
                    due = rate * (monotonic_ns() - start_ns) // 1_000_000_000 - (seq - 1)
                    if due <= 0:
                        time.sleep(min(-due / rate, 0.0002) + 0.00002)
                        continue
                    n = min(batch_size, due)
                chunk = batch[:n]
                fill_probes(chunk, seq, monotonic_ns())
                # Latency starts here: ts_ns is outside the checksum, so it can be stamped after
                # the batch is built and measure the ring, not numpy's fill work.
                chunk["ts_ns"] = monotonic_ns()
                done = ring.push(chunk)
                while done < n and not shell.stopping:  # backpressure: wait for room
                    done += ring.push(chunk[done:])
                seq += done
                sent[0] = seq - 1
        finally:
            ring.close()
            _write_summary(config, "publisher", {"published": seq - 1})
    return 0


def _write_summary(config: TectraConfig, role: str, summary: dict[str, object]) -> None:
    """What the role did, left in the state directory for whoever ran it (the demo, tests)."""
    path = Path(config.appliance.state_dir) / "demo" / f"{role}-summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")


def _attach(shell: RoleShell, name: str, shm_root: Path) -> ShmRing | None:
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while not shell.stopping:
        try:
            return ShmRing.attach(name, RING_PROBE.dtype, root=shm_root)
        except RingNotFoundError:
            if time.monotonic() > deadline:
                raise
            shell.wait(0.05)
    return None


def run_consumer(config: TectraConfig) -> int:
    name = config.demo.ring
    shm_root = Path(config.appliance.shm_root)
    tally = ConsumerTally()
    with RoleShell("consumer", config, io_path="shm") as shell:
        shell.lifecycle.transition(LifecycleState.WARMUP, "warming the verify path")
        latency = shell.metrics.latency_histogram(
            "tectra_demo_transit_latency",
            "Publisher push (ts_ns stamped just before it) to consumer pop, per record.",
        )
        probe = new_records(RING_PROBE, 256)
        fill_probes(probe, 1, monotonic_ns())
        run_warmup(lambda b: ConsumerTally().check(b, 0), probe, shell.role_config.warmup_ticks)
        ring = _attach(shell, name, shm_root)
        if ring is None:
            return 0
        for field, what in (
            ("received", "Probe records received."),
            ("lost", "Probe records lost to ring overruns (reported by the ring)."),
            ("checksum_errors", "Probe records whose checksum did not match."),
            ("sequence_errors", "Batches whose sequence numbers did not follow on."),
        ):
            shell.metrics.counter_from(f"tectra_demo_{field}", what, tally.reader(field))
        register_ring_metrics(shell.metrics, lambda: [ring])
        shell.details["ring"] = lambda: name
        shell.ready(f"consuming ring {name}")
        out = new_records(RING_PROBE, 4096)
        last_loss_ns = 0
        started_ns = monotonic_ns()
        try:
            while not shell.stopping:
                shell.heartbeat()
                n, lost = ring.pop_wait_into(out, POLL_TIMEOUT_NS)
                now = monotonic_ns()
                tally.check(out[:n], lost)
                if n:
                    latency.record_batch(now - out["ts_ns"][:n])
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
                    shell.lifecycle.transition(LifecycleState.READY, "consumer back in step")
            # Drain what the (already stopped) publisher left, so the totals reconcile.
            while True:
                n, lost = ring.pop_into(out)
                if not n and not lost:
                    break
                tally.check(out[:n], lost)
        finally:
            ring.close()
            summary = {
                **asdict(tally),
                "seconds": (monotonic_ns() - started_ns) / 1e9,
                "latency_ns": {f"p{q * 100:g}": latency.quantile(q) for q in (0.5, 0.99, 0.999)},
            }
            _write_summary(config, "consumer", summary)
    return 0
