"""journal_append: journal write throughput per fsync policy, and what capture costs the feed.

1. Append throughput: 128-byte schema records (ITCH_EVENT) appended in batches to a journal
   on the real disk (not tmpfs), for each fsync policy: one frame per record
   (`append_records`) and one RECORD_BATCH frame per 4096 records (`append_batch`, what the
   journal role does for market data). `always` fsyncs every batch, so it is also reported
   for small batches (the latency-bound case).
2. Capture on vs off, on the real feed: `FeedHandler` (MoldUDP64 session, ITCH 5.0 decode,
   order book) stepping receive batches of a mixed ITCH stream (A/D/E/X/U) held in memory, as
   the feed role's loop does — off: `handler.step(batch, now)`; on: exactly what `FeedLoop`
   does with `feed.capture = true` (`stamped_packets`, step, one
   `ShmCaptureTap.record_packets` C call into the shared-memory capture ring; a writer child
   process journals STEP_BLOCK frames to the real disk, fsync = batch, while the feed runs).
   Two capture modes: `full` (every output record journaled, the feed's default) and
   `digest` (per output array: type, count, XXH64). Off, full and digest alternate, several
   runs each; reported per mode: medians of messages/s, the on/off ratio and the cost in
   percent, ns per step, steps dropped (ring full), the time the writer needed after the feed
   finished, bytes journaled, and that the capture verifies and replays with zero diffs. For
   comparison, one run each of the previous paths: the in-process `CaptureTap` (queue +
   writer thread) and the in-line `Recorder`. Two step sizes: one packet per step (what a
   live feed at moderate rates sees) and 16 packets per step (bursts).
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np

from benches._stats import median
from tectra.feed.component import (
    FEED_OUTPUTS,
    FeedComponent,
    opaque_to_packets,
    packets_to_opaque,
    stamped_packets,
)
from tectra.feed.handler import FeedHandler
from tectra.io.receive import PacketBatch
from tectra.journal.capture import Recorder
from tectra.journal.format import raw_copy
from tectra.journal.replay import replay_journal
from tectra.journal.shmtap import CaptureRing, ShmCaptureTap
from tectra.journal.tap import CaptureTap
from tectra.journal.verify import verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import ITCH_EVENT, Component, new_records

DISK_TMP = "/var/tmp"  # on the block device; /tmp may be tmpfs on some hosts
SHM = Path("/dev/shm")

# ITCH 5.0 message types the stand-in carries: (type, length, share of the stream). Every one
# starts type(1) locate(2) tracking(2) timestamp(6) order_ref(8).
MIX = ((b"A", 36, 0.40), (b"D", 19, 0.25), (b"E", 31, 0.15), (b"X", 23, 0.10), (b"U", 35, 0.10))
INSTRUMENTS = 256


def _wire_packets(n_messages: int, seed: int = 5) -> list[bytes]:
    """MoldUDP64 datagrams (20-byte header, then [u16 length][message]...) of a mixed ITCH
    stream, ~16 messages each."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(MIX), size=n_messages, p=[m[2] for m in MIX])
    refs = rng.integers(1, 1 << 20, n_messages)
    locates = rng.integers(1, INSTRUMENTS, n_messages)
    packets: list[bytes] = []
    seq = 1
    i = 0
    while i < n_messages:
        count = min(int(rng.integers(8, 25)), n_messages - i)
        body = bytearray()
        for j in range(i, i + count):
            t, length, _ = MIX[int(kinds[j])]
            msg = bytearray(length)
            msg[0:1] = t
            struct.pack_into(">HH", msg, 1, int(locates[j]), 0)
            msg[5:11] = (34_200_000_000_000 + j * 1000).to_bytes(6, "big")
            struct.pack_into(">Q", msg, 11, int(refs[j]))
            if t == b"A":
                struct.pack_into(
                    ">cI8sI",
                    msg,
                    19,
                    b"B" if j % 2 else b"S",
                    100 * (j % 50 + 1),
                    b"SYM     ",
                    10_000 + j % 90_000,
                )
            elif t in (b"E", b"X"):
                struct.pack_into(">I", msg, 19, 100)
            elif t == b"U":
                struct.pack_into(">QII", msg, 19, int(refs[j]) + 1, 200, 10_500)
            body += struct.pack(">H", length) + msg
        packets.append(b"SESSION001" + struct.pack(">QH", seq, count) + bytes(body))
        seq += count
        i += count
    return packets


def _append_rate(
    policy: FsyncPolicy, total: int, batch: int, *, batch_frames: bool = False
) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="tectra-bench-journal-", dir=DISK_TMP))
    try:
        recs = new_records(ITCH_EVENT, batch)
        recs["seq"] = np.arange(batch)
        writer = JournalWriter(directory, WriterOptions(fsync=policy, segment_max_bytes=64 << 20))
        started = time.perf_counter()
        done = 0
        append = writer.append_batch if batch_frames else writer.append_records
        while done < total:
            append(recs)
            done += batch
        writer.close()
        seconds = time.perf_counter() - started
        return {
            "records_per_s": round(done / seconds),
            "mb_per_s": round(writer.stats.bytes / seconds / 1e6, 1),
            "batch": batch,
            "records": done,
            "fsyncs": writer.stats.fsyncs,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _steps(packets: list[bytes], per_step: int) -> list[PacketBatch]:
    """Receive batches of `per_step` datagrams, each in one buffer (as recvmmsg leaves them)."""
    out = []
    for lo in range(0, len(packets), per_step):
        group = packets[lo : lo + per_step]
        lengths = np.array([len(p) for p in group], dtype=np.uint32)
        offsets = np.zeros(len(group), dtype=np.uint32)
        offsets[1:] = np.cumsum(lengths)[:-1]
        buf = np.frombuffer(b"".join(group), dtype=np.uint8)
        out.append(PacketBatch(buf, offsets, lengths, np.zeros(len(group), dtype=np.int64)))
    return out


def _feed_writer(directory: Path) -> JournalWriter:
    return JournalWriter(
        directory,
        WriterOptions(journal="feed", component=int(Component.FEED), fsync=FsyncPolicy.BATCH),
    )


def _feed_run(steps: list[PacketBatch], mode: str, directory: Path) -> dict[str, Any]:
    """One pass of the feed over `steps`: mode off | full | digest (the shared-memory capture
    ring, writer process) | tap (the previous in-process CaptureTap) | recorder. Times the
    feed loop only; for the capture paths, also how long the writer needed after it."""
    clock = time.monotonic_ns
    if mode == "off":
        handler = FeedHandler()
        started = time.perf_counter()
        for batch in steps:
            handler.step(batch, clock())
        return {"seconds": time.perf_counter() - started}
    component = FeedComponent()
    handler = component.handler
    if mode in ("full", "digest"):
        ring_path = SHM / f"tectra-bench-capture-{os.getpid()}-{directory.name}"
        shm_tap = ShmCaptureTap.with_writer_process(
            directory,
            WriterOptions(journal="feed", component=int(Component.FEED), fsync=FsyncPolicy.BATCH),
            int(Component.FEED),
            ring_path=ring_path,
            outputs=FEED_OUTPUTS,
            mode=mode,
        )
        started = time.perf_counter()
        for batch in steps:  # exactly FeedLoop._step with capture on
            now = clock()
            mold, payload, offsets, lengths = stamped_packets(batch, now)
            step = handler.step(mold, now)
            shm_tap.record_packets(
                payload, offsets, lengths, now, (step.updates, step.ticks, step.trades)
            )
        seconds = time.perf_counter() - started
        shm_tap.close()
        counters = shm_tap.counters
        return {
            "seconds": seconds,
            "drain_s": time.perf_counter() - started - seconds,
            "dropped": counters.dropped_steps,
            "blocks": counters.blocks,
            "journal_bytes": sum(f.stat().st_size for f in directory.glob("*.tjs")),
        }
    writer = _feed_writer(directory)
    if mode == "recorder":
        recorder = Recorder(component, writer, batch_frames=True)
        started = time.perf_counter()
        for batch in steps:
            recorder.step(packets_to_opaque(batch), clock())
        seconds = time.perf_counter() - started
        writer.close()
        return {"seconds": seconds}
    tap = CaptureTap(writer, int(Component.FEED))
    started = time.perf_counter()
    for batch in steps:  # the previous FeedLoop._step with capture on
        now = clock()
        inputs = packets_to_opaque(batch)
        step = handler.step(opaque_to_packets(inputs, now), now)
        tap.record(inputs, (step.updates, step.ticks, step.trades), now, owned_inputs=True)
    seconds = time.perf_counter() - started
    tap.close()
    return {"seconds": seconds}


def _mode_figures(
    off_s: float, on: list[dict[str, Any]], n: int, messages: int, last: Path
) -> dict[str, Any]:
    on_s = median([r["seconds"] for r in on])
    verified = verify_journal(last)
    replayed = replay_journal(last, FeedComponent())
    return {
        "on_msgs_per_s": round(messages / on_s),
        "on_vs_off_ratio": round(off_s / on_s, 4),
        "cost_pct": round(100 * (1 - off_s / on_s), 2),
        "on_ns_per_step": round(on_s / n * 1e9),
        "capture_ns_per_step": round((on_s - off_s) / n * 1e9),
        "on_runs_msgs_per_s": [round(messages / r["seconds"]) for r in on],
        "dropped_steps": [r["dropped"] for r in on],
        "writer_drain_after_feed_s": [round(r["drain_s"], 3) for r in on],
        "blocks": on[-1]["blocks"],
        "journal_bytes": on[-1]["journal_bytes"],
        "verify_ok": verified.ok,
        "replay_steps": replayed.steps,
        "replay_divergences": replayed.divergences,
        "replay_complete": replayed.complete,
    }


def _capture_compare(packets: list[bytes], per_step: int, runs: int) -> dict[str, Any]:
    steps = _steps(packets, per_step)
    messages = sum(struct.unpack_from(">H", p, 18)[0] for p in packets)
    root = Path(tempfile.mkdtemp(prefix="tectra-bench-capture-", dir=DISK_TMP))
    modes = ("full", "digest")
    try:
        _feed_run(steps[:200], "off", root / "warm")
        off: list[dict[str, Any]] = []
        on: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        for r in range(runs):  # alternate, so drift in machine load hits every mode alike
            off.append(_feed_run(steps, "off", root / f"off{r}"))
            for m in modes if r % 2 == 0 else modes[::-1]:
                if r:
                    shutil.rmtree(root / f"{m}{r - 1}", ignore_errors=True)
                on[m].append(_feed_run(steps, m, root / f"{m}{r}"))
        n = len(steps)
        off_s = median([r["seconds"] for r in off])
        figures = {
            m: _mode_figures(off_s, on[m], n, messages, root / f"{m}{runs - 1}") for m in modes
        }
        tap = _feed_run(steps, "tap", root / "tap")
        recorder = _feed_run(steps, "recorder", root / "recorder")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "packets_per_step": per_step,
        "steps": n,
        "messages": messages,
        "runs": runs,
        "off_msgs_per_s": round(messages / off_s),
        "off_ns_per_step": round(off_s / n * 1e9),
        "off_runs_msgs_per_s": [round(messages / r["seconds"]) for r in off],
        **figures,
        "previous_tap_ns_per_step": round(tap["seconds"] / n * 1e9),
        "previous_tap_cost_pct": round(100 * (1 - off_s / tap["seconds"]), 2),
        "recorder_ns_per_step": round(recorder["seconds"] / n * 1e9),
        "recorder_cost_pct": round(100 * (1 - off_s / recorder["seconds"]), 2),
    }


def _hot_path_costs(packets: list[bytes], number: int) -> dict[str, Any]:
    """What capture adds on the feed thread per one-packet step, timed in isolation (best of
    5 x `number` calls; robust to the load the end-to-end runs see): stamping the batch
    (`stamped_packets`) against the uncaptured conversion (`_as_mold`), and one
    `record_packets` call per mode with the outputs of a busy step (the ring is large enough
    and nobody drains it, so no call is a drop)."""
    from tectra.feed.handler import _as_mold

    steps = _steps(packets[:3000], 1)
    handler = FeedHandler()
    busiest: tuple[Any, Any, Any] | None = None
    for batch in steps:
        st = handler.step(batch, 1)
        outs = (raw_copy(st.updates), raw_copy(st.ticks), raw_copy(st.trades))
        if busiest is None or sum(map(len, outs)) > sum(map(len, busiest)):
            busiest = outs
    assert busiest is not None
    batch = steps[len(steps) // 2]

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9

    out: dict[str, Any] = {
        "output_records": [len(o) for o in busiest],
        "output_bytes": sum(o.nbytes for o in busiest),
        "uncaptured_convert_ns": round(best(lambda: _as_mold(batch))),
        "stamped_packets_ns": round(best(lambda: stamped_packets(batch, 5))),
    }
    for mode in ("full", "digest"):
        path = SHM / f"tectra-bench-hot-{os.getpid()}-{mode}"
        ring = CaptureRing.create(path, capacity=1 << 31, mode=mode, outputs=FEED_OUTPUTS)
        try:
            tap = ShmCaptureTap(ring)
            _m, payload, offsets, lengths = stamped_packets(batch, 5)
            call = functools.partial(tap.record_packets, payload, offsets, lengths, 5, busiest)
            out[f"record_packets_{mode}_ns"] = round(best(call))
        finally:
            ring.close()
    out["capture_on_feed_thread_full_ns"] = (
        out["stamped_packets_ns"] - out["uncaptured_convert_ns"] + out["record_packets_full_ns"]
    )
    return out


def run(quick: bool = False) -> dict[str, Any]:
    metrics: dict[str, Any] = {"record_bytes": ITCH_EVENT.itemsize}
    total = 200_000 if quick else 2_000_000
    metrics["append"] = {
        "fsync_none": _append_rate(FsyncPolicy.NONE, total, 4096),
        "fsync_batch": _append_rate(FsyncPolicy.BATCH, total, 4096),
        "fsync_always": _append_rate(FsyncPolicy.ALWAYS, total // 2, 4096),
        "fsync_always_batch64": _append_rate(FsyncPolicy.ALWAYS, 20_000 if quick else 100_000, 64),
        "fsync_always_batch1": _append_rate(FsyncPolicy.ALWAYS, 500 if quick else 3_000, 1),
        # One RECORD_BATCH frame per 4096 records (what the journal role does for market data).
        "batch_frames_fsync_none": _append_rate(
            FsyncPolicy.NONE, total * 4, 4096, batch_frames=True
        ),
        "batch_frames_fsync_batch": _append_rate(
            FsyncPolicy.BATCH, total * 4, 4096, batch_frames=True
        ),
        "batch_frames_fsync_always": _append_rate(
            FsyncPolicy.ALWAYS, total * 2, 4096, batch_frames=True
        ),
    }
    runs = 2 if quick else 5
    packets = _wire_packets(60_000 if quick else 400_000)
    metrics["capture"] = {
        "one_packet_steps": _capture_compare(packets, 1, runs),
        "sixteen_packet_steps": _capture_compare(packets, 16, runs),
        "hot_path": _hot_path_costs(packets, 2000 if quick else 20000),
    }
    return metrics
