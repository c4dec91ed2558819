"""ring: one producer process → one consumer process over a shared-memory ring.

Throughput: 64-byte RING_PROBE records pushed and popped in batches, median of several runs,
for each ring variant, with an os.pipe carrying the same bytes as the baseline in the same run.
Latency: one record at a time (paced, so no queueing), send_ns stamped just before push and
compared with CLOCK_MONOTONIC just after the consumer's pop returns it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from benches._stats import latency_summary, median
from tectra.io.shm import RingKind, RingPolicy, ShmRing
from tectra.schema import LAYOUTS

PROBE = LAYOUTS["RING_PROBE"].dtype
PRODUCER_CPU, CONSUMER_CPU = 0, min(1, (os.cpu_count() or 1) - 1)
CTX = mp.get_context("fork")


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def _produce(root: str, total: int, batch: int, start_conn: Connection) -> None:
    _pin(PRODUCER_CPU)
    ring = ShmRing.attach("bench", PROBE, root=root)
    records = np.zeros(batch, dtype=PROBE)
    ramp = np.arange(batch, dtype=np.uint64)
    start_conn.send(time.monotonic_ns())
    sent = 0
    while sent < total:
        n = min(batch, total - sent)
        chunk = records[:n]
        np.add(ramp[:n], sent, out=chunk["seq"])
        done = 0
        while done < n:  # backpressure: push the rest when the consumer frees room
            done += ring.push(chunk[done:])
        sent += n
    ring.close()


def _consume(root: str, total: int, batch: int, result_conn: Connection) -> None:
    _pin(CONSUMER_CPU)
    ring = ShmRing.attach("bench", PROBE, root=root)
    out = np.zeros(batch * 4, dtype=PROBE)
    got = lost = 0
    in_order = True
    expected = 0
    while got + lost < total:
        n, gap = ring.pop_into(out)
        lost += gap  # a pop may report loss with no records: count it either way
        expected += gap
        if n == 0:
            continue
        seqs = out["seq"]
        # Cheap per-batch integrity: first and last sequence must bracket a contiguous run.
        in_order &= int(seqs[0]) == expected and int(seqs[n - 1]) == expected + n - 1
        expected += n
        got += n
    result_conn.send((time.monotonic_ns(), got, lost, in_order))
    ring.close()


def ring_throughput(kind: RingKind, policy: RingPolicy, total: int, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tectra-bench-", dir="/dev/shm") as root:
        ring = ShmRing.create("bench", PROBE, 1 << 16, kind, policy, root=root)
        start_rx, start_tx = CTX.Pipe(duplex=False)
        result_rx, result_tx = CTX.Pipe(duplex=False)
        consumer = CTX.Process(target=_consume, args=(root, total, batch, result_tx))
        producer = CTX.Process(target=_produce, args=(root, total, batch, start_tx))
        consumer.start()
        producer.start()
        t0 = start_rx.recv()
        t1, got, lost, in_order = result_rx.recv()
        producer.join()
        consumer.join()
        stats = ring.stats()
        ring.close()
        ring.unlink()
    seconds = (t1 - t0) / 1e9
    return {
        "records_per_s": got / seconds,
        "lost": lost,
        "in_order": in_order,
        "full_refusals": stats.full,
    }


def _pipe_writer(fd: int, total: int, batch: int) -> None:
    _pin(PRODUCER_CPU)
    payload = np.zeros(batch, dtype=PROBE).tobytes()
    for _ in range(total // batch):
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    os.close(fd)


def pipe_throughput(total: int, batch: int) -> float:
    """Baseline: the same 64-byte records through a kernel pipe, in the same batches."""
    rfd, wfd = os.pipe()
    writer = CTX.Process(target=_pipe_writer, args=(wfd, total, batch))
    t0 = time.monotonic_ns()
    writer.start()
    os.close(wfd)
    _pin(CONSUMER_CPU)
    want = (total // batch) * batch * PROBE.itemsize
    got = 0
    while got < want:
        chunk = os.read(rfd, 1 << 20)
        if not chunk:
            break
        got += len(chunk)
    t1 = time.monotonic_ns()
    writer.join()
    os.close(rfd)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return (got / PROBE.itemsize) / ((t1 - t0) / 1e9)


def _latency_producer(root: str, samples: int, gap_ns: int) -> None:
    _pin(PRODUCER_CPU)
    ring = ShmRing.attach("lat", PROBE, root=root)
    one = np.zeros(1, dtype=PROBE)
    for i in range(samples):
        one["seq"][0] = i
        deadline = time.monotonic_ns() + gap_ns
        while time.monotonic_ns() < deadline:  # pace: measure transfer, not queueing
            pass
        one["send_ns"][0] = time.monotonic_ns()
        while ring.push(one) == 0:
            pass
    ring.close()


def ring_latency(samples: int, gap_ns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tectra-bench-", dir="/dev/shm") as root:
        ring = ShmRing.create("lat", PROBE, 1024, RingKind.SPSC, RingPolicy.BACKPRESSURE, root=root)
        producer = CTX.Process(target=_latency_producer, args=(root, samples, gap_ns))
        _pin(CONSUMER_CPU)
        out = np.zeros(1, dtype=PROBE)
        lat = np.empty(samples, dtype=np.int64)
        producer.start()
        got = 0
        while got < samples:
            n, _ = ring.pop_wait_into(out, 1_000_000_000)
            now = time.monotonic_ns()
            if n:
                lat[got] = now - int(out["send_ns"][0])
                got += 1
        producer.join()
        ring.close()
        ring.unlink()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    # The first records include page faults and cache warm-up; report steady state.
    return latency_summary(lat[samples // 100 :])


def run(quick: bool = False) -> dict[str, Any]:
    total = 2_000_000 if quick else 20_000_000
    runs = 1 if quick else 5
    batch = 1024
    variants = {
        "spsc_backpressure": (RingKind.SPSC, RingPolicy.BACKPRESSURE),
        "spsc_overwrite": (RingKind.SPSC, RingPolicy.OVERWRITE),
        "mpmc_backpressure": (RingKind.MPMC, RingPolicy.BACKPRESSURE),
    }
    metrics: dict[str, Any] = {"record_bytes": PROBE.itemsize, "batch": batch, "runs": runs}
    pipe_rates = [pipe_throughput(total, batch) for _ in range(runs)]
    metrics["pipe_baseline"] = {"records_per_s": round(median(pipe_rates))}
    for label, (kind, policy) in variants.items():
        outcomes = [ring_throughput(kind, policy, total, batch) for _ in range(runs)]
        rate = median([o["records_per_s"] for o in outcomes])
        metrics[label] = {
            "records_per_s": round(rate),
            "bytes_per_s": round(rate * PROBE.itemsize),
            "vs_pipe_ratio": round(rate / metrics["pipe_baseline"]["records_per_s"], 2),
            "lost_records": sum(o["lost"] for o in outcomes),
            "all_in_order": all(o["in_order"] for o in outcomes),
            "runs_records_per_s": [round(o["records_per_s"]) for o in outcomes],
        }
    metrics["latency_one_record"] = ring_latency(20_000 if quick else 200_000, gap_ns=20_000)
    return metrics
