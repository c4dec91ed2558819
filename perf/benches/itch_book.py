"""itch_book: decode + order book + normalised output, one core, from an in-memory buffer.

Input: a seeded, book-consistent ITCH 5.0 day from `tectra.sim.itch_flow.ItchFlow` (every
execution, cancel and replace references a live order), framed as NASDAQ's 2-byte-length
format. Timed per run: the C decoder over 64 KiB windows, `OrderBook.apply` on each decoded
batch, and the BookUpdate/Tick/Trade outputs pushed onto in-process overwrite rings (the md
rings the feed publishes on). Decode alone is timed in the same run as the ratio baseline.
Median of several runs, a fresh book each run, pinned to one CPU.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import Any

import numpy as np

from adapters.itch import ItchDecoder, frame
from benches._stats import median
from tectra.feed.book import OrderBook
from tectra.io.shm import RingKind, RingPolicy, ShmRing
from tectra.schema import BOOK_UPDATE, TICK, TRADE
from tectra.sim.itch_flow import ItchFlow

CPU = (os.cpu_count() or 1) - 1
WINDOW = 64 << 10  # about one receive batch of MoldUDP64 packets


def _pin() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {CPU})


def _decode_only(dec: ItchDecoder, buf: np.ndarray) -> tuple[float, int]:
    t0 = time.perf_counter_ns()
    pos, seq, msgs = 0, 1, 0
    while pos < buf.size:
        out = dec.decode(buf[pos : pos + WINDOW], seq, 0, partial_tail=pos + WINDOW < buf.size)
        msgs += out.size
        pos += dec.consumed
        seq = dec.next_seq
    return (time.perf_counter_ns() - t0) / 1e9, msgs


def _decode_book_publish(
    dec: ItchDecoder, buf: np.ndarray, rings: dict[str, ShmRing]
) -> tuple[float, dict[str, int]]:
    book = OrderBook(max_instruments=1024, max_orders=1 << 20, output_capacity=16384)
    counts = {"messages": 0, "updates": 0, "ticks": 0, "trades": 0}
    t0 = time.perf_counter_ns()
    pos, seq = 0, 1
    while pos < buf.size:
        events = dec.decode(buf[pos : pos + WINDOW], seq, 0, partial_tail=pos + WINDOW < buf.size)
        pos += dec.consumed
        seq = dec.next_seq
        done = 0
        while done < events.size:
            out = book.apply(events[done:])
            done += out.consumed
            rings["book"].push(out.updates)
            rings["tick"].push(out.ticks)
            rings["trade"].push(out.trades)
            counts["updates"] += out.updates.size
            counts["ticks"] += out.ticks.size
            counts["trades"] += out.trades.size
        counts["messages"] += events.size
    seconds = (time.perf_counter_ns() - t0) / 1e9
    problems = book.check_invariants()
    if problems:
        raise AssertionError(f"book invariants broken: {problems[:3]}")
    return seconds, counts | {"unknown_ref": book.counters.get("unknown_ref", 0)}


def run(quick: bool = False) -> dict[str, Any]:
    _pin()
    n = 300_000 if quick else 3_000_000
    runs = 3 if quick else 5
    events = ItchFlow(2026, symbols=256).next_batch(n)
    buf = frame(events)
    dec = ItchDecoder(capacity=WINDOW // 14 + 1)
    with tempfile.TemporaryDirectory(prefix="tectra-bench-", dir="/dev/shm") as root:
        rings = {
            name: ShmRing.create(
                name, dtype, 1 << 16, RingKind.SPSC, RingPolicy.OVERWRITE, root=root
            )
            for name, dtype in (
                ("book", BOOK_UPDATE.dtype),
                ("tick", TICK.dtype),
                ("trade", TRADE.dtype),
            )
        }
        _decode_book_publish(dec, buf, rings)  # warm-up: page in book tables and rings
        full, counts = [], {}
        for _ in range(runs):
            seconds, counts = _decode_book_publish(dec, buf, rings)
            full.append(seconds)
        for ring in rings.values():
            ring.close()
    decode = [_decode_only(dec, buf)[0] for _ in range(runs)]
    full_rate = n / median(full)
    decode_rate = n / median(decode)
    return {
        "messages": n,
        "symbols": 256,
        "runs": runs,
        "cpu": CPU,
        "outputs_per_run": counts,
        "decode_book_publish": {
            "msgs_per_s": round(full_rate),
            "ns_per_msg": round(1e9 / full_rate, 1),
            "runs_msgs_per_s": [round(n / s) for s in full],
        },
        "decode_only": {"msgs_per_s": round(decode_rate)},
        "book_and_publish_share_pct": round(100 * (1 - full_rate / decode_rate), 1),
        "target_msgs_per_s": 3_000_000,
        "meets_target": bool(full_rate >= 3_000_000),
    }
