"""itch_decode: ITCH 5.0 decode-only throughput from an in-memory buffer, one core.

Input: `adapters.itch.synthetic_mix` (a seeded NASDAQ-like mix: mostly A/D/U/E/X/P, some
F/C/Q/B, every admin type now and then), framed with 2-byte length prefixes.

Measured, each as the median of several runs, pinned to one CPU:
* `c_buffer`: `ItchDecoder.decode` over 1 MiB windows of the stream (the file-replay path);
* `c_blocks`: `ItchDecoder.decode_blocks` over MoldUDP64-sized message blocks (<= 1400 bytes,
  whole messages), 64 blocks per call (one receive batch per call: the network path);
* `reference`: the pure Python/numpy `ReferenceDecoder` on a smaller sample, the baseline;
  `c_over_reference_ratio` compares it with `c_buffer`.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from adapters.itch import ItchDecoder, ReferenceDecoder, frame, synthetic_mix
from benches._stats import median

CPU = (os.cpu_count() or 1) - 1
WINDOW = 1 << 20
BLOCK_BYTES = 1400  # a MoldUDP64 packet's message block under a 1500-byte MTU
BLOCKS_PER_CALL = 64


def _pin() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or a restricted cpuset
        os.sched_setaffinity(0, {CPU})


def _message_starts(buf: np.ndarray) -> np.ndarray:
    """Offsets of every message in a framed buffer (walked once, outside the timed region)."""
    lengths = ItchDecoder().decode(buf)["raw_len"].astype(np.int64) + 2
    return np.concatenate([[0], np.cumsum(lengths)[:-1]])


def _blocks(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-message blocks of at most BLOCK_BYTES: offsets, lengths, first message index."""
    starts = _message_starts(buf)
    offsets, lengths, first = [], [], []
    i, n = 0, starts.size
    ends = np.append(starts[1:], buf.size)
    while i < n:
        # the last message that still ends within BLOCK_BYTES of this block's start
        j = int(np.searchsorted(ends, starts[i] + BLOCK_BYTES, side="right"))
        j = max(j, i + 1)
        offsets.append(starts[i])
        lengths.append(ends[j - 1] - starts[i])
        first.append(i + 1)
        i = j
    return (
        np.array(offsets, dtype=np.uint64),
        np.array(lengths, dtype=np.uint64),
        np.array(first, dtype=np.uint64),
    )


def _time_buffer(dec: ItchDecoder, buf: np.ndarray) -> tuple[float, int]:
    t0 = time.perf_counter_ns()
    pos, seq, msgs = 0, 1, 0
    size = buf.size
    while pos < size:
        out = dec.decode(buf[pos : pos + WINDOW], seq, 0, partial_tail=pos + WINDOW < size)
        msgs += out.size
        pos += dec.consumed
        seq = dec.next_seq
    return (time.perf_counter_ns() - t0) / 1e9, msgs


def _time_blocks(
    dec: ItchDecoder, buf: np.ndarray, blocks: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[float, int]:
    offsets, lengths, first = blocks
    recv = np.zeros(BLOCKS_PER_CALL, dtype=np.int64)
    t0 = time.perf_counter_ns()
    msgs = 0
    for k in range(0, offsets.size, BLOCKS_PER_CALL):
        sl = slice(k, k + BLOCKS_PER_CALL)
        out = dec.decode_blocks(buf, offsets[sl], lengths[sl], first[sl], recv[: lengths[sl].size])
        msgs += out.size
    return (time.perf_counter_ns() - t0) / 1e9, msgs


def run(quick: bool = False) -> dict[str, Any]:
    _pin()
    n = 200_000 if quick else 2_000_000
    n_ref = 20_000 if quick else 100_000
    runs = 3 if quick else 7
    events = synthetic_mix(n, seed=2026)
    buf = frame(events)
    mix = {
        chr(t): int(c)
        for t, c in zip(*np.unique(events["msg_type"], return_counts=True), strict=True)
    }
    blocks = _blocks(buf)

    dec = ItchDecoder(capacity=WINDOW // 14 + 1)
    _time_buffer(dec, buf)  # warm: page in the output array and the input
    buffer_s, got = [], 0
    for _ in range(runs):
        seconds, got = _time_buffer(dec, buf)
        buffer_s.append(seconds)
    assert got == n and dec.stats["bad_length"] == dec.stats["truncated"] == 0

    bdec = ItchDecoder(capacity=BLOCKS_PER_CALL * BLOCK_BYTES // 14 + 1)
    _time_blocks(bdec, buf, blocks)
    blocks_s = []
    for _ in range(runs):
        seconds, got = _time_blocks(bdec, buf, blocks)
        blocks_s.append(seconds)
    assert got == n

    sample = frame(events[:n_ref])
    ref = ReferenceDecoder()
    ref_s = []
    for _ in range(max(1, runs // 2)):
        t0 = time.perf_counter_ns()
        out = ref.decode(sample)
        ref_s.append((time.perf_counter_ns() - t0) / 1e9)
    assert out.size == n_ref

    c_buf = median(buffer_s)
    c_blk = median(blocks_s)
    ref_t = median(ref_s)
    buffer_rate = n / c_buf
    return {
        "messages": n,
        "bytes": int(buf.size),
        "mean_message_bytes": round(buf.size / n, 2),
        "runs": runs,
        "cpu": CPU,
        "mix_pct": {k: round(100 * v / n, 2) for k, v in sorted(mix.items())},
        "c_buffer": {
            "window_bytes": WINDOW,
            "msgs_per_s": round(buffer_rate),
            "MB_per_s": round(buf.size / c_buf / 1e6, 1),
            "ns_per_msg": round(c_buf / n * 1e9, 2),
        },
        "c_blocks": {
            "block_bytes_max": BLOCK_BYTES,
            "blocks_per_call": BLOCKS_PER_CALL,
            "blocks": int(blocks[0].size),
            "msgs_per_s": round(n / c_blk),
            "MB_per_s": round(buf.size / c_blk / 1e6, 1),
            "ns_per_msg": round(c_blk / n * 1e9, 2),
        },
        "reference": {
            "messages": n_ref,
            "msgs_per_s": round(n_ref / ref_t),
            "MB_per_s": round(sample.size / ref_t / 1e6, 2),
        },
        "c_over_reference_ratio": round(buffer_rate / (n_ref / ref_t), 1),
        "target_msgs_per_s": 10_000_000,
        "meets_target": bool(buffer_rate >= 10_000_000 and n / c_blk >= 10_000_000),
    }
