"""journal_append: journal write throughput per fsync policy, and what capture costs a feed.

1. Append throughput: 128-byte schema records (ITCH_EVENT) appended in batches to a journal
   on the real disk (not tmpfs), for each fsync policy: one frame per record
   (`append_records`) and one RECORD_BATCH frame per 4096 records (`append_batch`, what the
   journal role does for market data). `always` fsyncs every batch, so it is also reported
   for small batches (the latency-bound case).
2. Capture on vs off: a stand-in feed loop (MoldUDP64 framing of a mixed ITCH 5.0 stream,
   A/D/E/X/U; decode into ITCH_EVENT records; a book-lite update: order table, depth per
   instrument) runs on one core, with and without pushing every decoded batch into the
   journal ring, which the journal writer (`RingDrain` + `JournalWriter`, fsync = batch)
   drains in another process on the other core. Reported: feed records/s off and on and the
   cost in percent; the push alone against a ring drained by a pop-only consumer (the hot-path
   cost of capture, also in ns per record); backpressure refusals (the writer falling
   behind); and whether each captured journal verifies with every record in it. Flat out,
   the feed outruns the writer, so that run shows the writer's ceiling; the paced run offers
   PACED_RATE messages/s, which the writer sustains, and compares the feed core's capacity
   (records per busy second) with and without capture.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import struct
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from benches._stats import median
from tectra.io.shm import RingKind, RingPolicy, ShmRing
from tectra.journal.reader import JournalReader
from tectra.journal.service import RingDrain
from tectra.journal.verify import verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import ITCH_EVENT, new_records

CTX = mp.get_context("fork")
FEED_CPU, WRITER_CPU = 0, min(1, (os.cpu_count() or 1) - 1)
DISK_TMP = "/var/tmp"  # on the block device; /tmp may be tmpfs on some hosts

# ITCH 5.0 message types the stand-in carries: (type, length, share of the stream). Every one
# starts type(1) locate(2) tracking(2) timestamp(6) order_ref(8).
MIX = ((b"A", 36, 0.40), (b"D", 19, 0.25), (b"E", 31, 0.15), (b"X", 23, 0.10), (b"U", 35, 0.10))
INSTRUMENTS = 256
PACKETS_PER_BATCH = 64  # [feed] batch: frames per receive batch
PACED_RATE = 400_000  # messages/s offered in the paced runs: below the writer's ceiling
MAX_BATCH = PACKETS_PER_BATCH * 40


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


def _field(wire: np.ndarray, rows: np.ndarray, at: int, width: int) -> np.ndarray:
    """Big-endian unsigned integer field of `width` bytes at offset `at` of each message."""
    cols = wire[rows[:, None] + (at + np.arange(width))].astype(np.uint64)
    value = np.zeros(rows.shape[0], dtype=np.uint64)
    for k in range(width):
        value = (value << np.uint64(8)) | cols[:, k]
    return value


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


def _feed(packets: list[bytes], ring: ShmRing | None, rate: int = 0) -> tuple[float, float, int]:
    """The stand-in feed: per receive batch, MoldUDP64 framing (a walk over each datagram's
    length prefixes), ITCH decode by message type into ITCH_EVENT records (numpy), a book-lite
    update (order table by reference, depth per instrument and side), then — capture on — one
    push of the batch's records into the journal ring. Returns (records per wall second,
    records per busy second, push refusals); busy time excludes pacing waits."""
    out = new_records(ITCH_EVENT, MAX_BATCH)
    raw_rows = out.view(np.uint8).reshape(MAX_BATCH, ITCH_EVENT.itemsize)
    raw_off = ITCH_EVENT.dtype.fields["raw"][1]  # type: ignore[index]
    order_shares = np.zeros(1 << 21, dtype=np.int64)
    order_locate = np.zeros(1 << 21, dtype=np.int64)
    depth = np.zeros(INSTRUMENTS, dtype=np.int64)
    unpack_len = struct.Struct(">H").unpack_from
    seq = 0
    refused = 0
    busy = 0.0
    clock = time.perf_counter
    started = clock()
    for lo in range(0, len(packets), PACKETS_PER_BATCH):
        batch = packets[lo : lo + PACKETS_PER_BATCH]
        if rate:
            due = started + seq / rate
            while (wait := due - clock()) > 0:
                if wait > 0.0002:
                    time.sleep(wait - 0.0001)
        t0 = clock()
        # framing: where each message starts (the length prefixes make this a walk)
        starts: list[int] = []
        lengths: list[int] = []
        base = 0
        for pkt in batch:
            pos = 20
            end = len(pkt)
            while pos < end:
                (length,) = unpack_len(pkt, pos)
                starts.append(base + pos + 2)
                lengths.append(length)
                pos += 2 + length
            base += end
        wire = np.frombuffer(b"".join(batch), dtype=np.uint8)
        rows = np.array(starts, dtype=np.int64)
        n = rows.shape[0]
        rec = out[:n]
        rec["seq"] = np.arange(seq + 1, seq + n + 1)
        rec["ts_ns"] = time.monotonic_ns()
        types = wire[rows]
        rec["msg_type"] = types
        rec["raw_len"] = lengths
        rec["stock_locate"] = _field(wire, rows, 1, 2)
        rec["exch_ts_ns"] = _field(wire, rows, 5, 6)
        rec["order_ref"] = _field(wire, rows, 11, 8)
        for t, length, _ in MIX:
            sel = np.flatnonzero(types == t[0])
            if not sel.size:
                continue
            r = rows[sel]
            if t == b"A":
                rec["side"][sel] = wire[r + 19]
                rec["shares"][sel] = _field(wire, r, 20, 4)
                rec["price"][sel] = _field(wire, r, 32, 4)
            elif t in (b"E", b"X"):
                rec["shares"][sel] = _field(wire, r, 19, 4)
            elif t == b"U":
                rec["ref2"][sel] = _field(wire, r, 19, 8)
                rec["shares"][sel] = _field(wire, r, 27, 4)
                rec["price"][sel] = _field(wire, r, 31, 4)
            raw_rows[sel, raw_off : raw_off + length] = wire[r[:, None] + np.arange(length)]
        # book-lite: order table by reference, depth per instrument
        refs = (rec["order_ref"] & np.uint64((1 << 21) - 1)).astype(np.int64)
        shares = rec["shares"].astype(np.int64)
        add = types == ord("A")
        order_shares[refs[add]] = shares[add]
        order_locate[refs[add]] = rec["stock_locate"][add]
        dec = (types == ord("E")) | (types == ord("X"))
        order_shares[refs[dec]] -= shares[dec]
        gone = (types == ord("D")) | (types == ord("U"))
        order_shares[refs[gone]] = 0
        depth += np.bincount(
            order_locate[refs], weights=order_shares[refs], minlength=INSTRUMENTS
        ).astype(np.int64)
        if ring is not None:
            done = ring.push(rec)
            while done < n:  # backpressure: the journal is behind
                refused += 1
                done += ring.push(rec[done:])
        seq += n
        busy += clock() - t0
    seconds = clock() - started
    return seq / seconds, seq / busy, refused


def _writer_process(
    root: str, directory: str, expected: int, conn: Connection, journal: bool
) -> None:
    os.sched_setaffinity(0, {WRITER_CPU})
    ring = ShmRing.attach("capture", ITCH_EVENT.dtype, root=root)
    if not journal:  # pop-only consumer: isolates the producer's cost of pushing
        out = np.zeros(4096, dtype=ITCH_EVENT.dtype)
        got = 0
        while got < expected:
            n, _ = ring.pop_into(out)
            got += n
        conn.send((got, 0.0))
        return
    writer = JournalWriter(
        directory, WriterOptions(fsync=FsyncPolicy.BATCH, segment_max_bytes=64 << 20)
    )
    drain = RingDrain(ring, writer)
    started = time.perf_counter()
    got = 0
    while got < expected:
        n, _ = drain.poll()
        writer.tick()
        got += n
        if not n:
            time.sleep(0.0002)
    writer.close()
    conn.send((got, got / (time.perf_counter() - started)))


def _capture_run(packets: list[bytes], journal: bool, total: int, rate: int = 0) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="tectra-bench-capture-", dir=DISK_TMP)
    with tempfile.TemporaryDirectory(prefix="tectra-bench-", dir="/dev/shm") as root:
        ring = ShmRing.create(
            "capture", ITCH_EVENT.dtype, 1 << 16, RingKind.MPMC, RingPolicy.BACKPRESSURE, root=root
        )
        rx, tx = CTX.Pipe(duplex=False)
        proc = CTX.Process(
            target=_writer_process, args=(root, directory + "/j", total, tx, journal)
        )
        proc.start()
        os.sched_setaffinity(0, {FEED_CPU})
        wall_rate, busy_rate, refused = _feed(packets, ring, rate)
        got, writer_rate = rx.recv()
        proc.join()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        ring.close()
        ring.unlink()
    result: dict[str, Any] = {
        "records_per_s": wall_rate,
        "busy_records_per_s": busy_rate,
        "push_refusals": refused,
        "received": got,
    }
    if journal:
        report = verify_journal(directory + "/j")
        count = sum(len(r) for r in JournalReader(directory + "/j").records(ITCH_EVENT.type_id))
        result.update(writer_records_per_s=writer_rate, journal_records=count, verify_ok=report.ok)
    shutil.rmtree(directory, ignore_errors=True)
    return result


def _feed_alone(packets: list[bytes], rate: int = 0) -> tuple[float, float]:
    os.sched_setaffinity(0, {FEED_CPU})
    try:
        wall, busy, _ = _feed(packets, None, rate)
        return wall, busy
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def _cost(on: float, off: float) -> float:
    return round(100 * (1 - on / off), 2)


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
    runs = 1 if quick else 3
    n_messages = 300_000 if quick else 1_500_000
    packets = _wire_packets(n_messages)
    paced = packets[: len(packets) * 2 // 5]
    paced_total = sum(struct.unpack_from(">H", p, 18)[0] for p in paced)
    _feed_alone(packets[:500])  # warm caches and numpy paths
    off = [_feed_alone(packets) for _ in range(runs)]
    push = [_capture_run(packets, False, n_messages) for _ in range(runs)]
    on = [_capture_run(packets, True, n_messages) for _ in range(runs)]
    paced_off = [_feed_alone(paced, PACED_RATE) for _ in range(runs)]
    paced_on = [_capture_run(paced, True, paced_total, PACED_RATE) for _ in range(runs)]
    off_rate = median([w for w, _ in off])
    push_rate = median([r["records_per_s"] for r in push])
    on_rate = median([r["records_per_s"] for r in on])
    paced_off_cap = median([b for _, b in paced_off])
    paced_on_cap = median([r["busy_records_per_s"] for r in paced_on])
    metrics["capture"] = {
        "packets_per_batch": PACKETS_PER_BATCH,
        "messages": n_messages,
        "flat_out": {
            "off_records_per_s": round(off_rate),
            "push_only_records_per_s": round(push_rate),
            "push_only_cost_pct": _cost(push_rate, off_rate),
            "push_ns_per_record": round(1e9 / push_rate - 1e9 / off_rate, 1),
            "on_records_per_s": round(on_rate),
            "on_cost_pct": _cost(on_rate, off_rate),
            "on_vs_off_ratio": round(on_rate / off_rate, 4),
            "writer_records_per_s": round(median([r["writer_records_per_s"] for r in on])),
            "push_refusals": [r["push_refusals"] for r in on],
        },
        "paced": {
            "offered_records_per_s": PACED_RATE,
            "off_capacity_records_per_s": round(paced_off_cap),
            "on_capacity_records_per_s": round(paced_on_cap),
            "cost_pct": _cost(paced_on_cap, paced_off_cap),
            "push_refusals": [r["push_refusals"] for r in paced_on],
        },
        "journal_records": [r["journal_records"] for r in on + paced_on],
        "all_verify_ok": all(r["verify_ok"] for r in on + paced_on),
    }
    return metrics
