"""Crash consistency: kill -9 the writer at random points, then recover, verify, count.

Each iteration forks a child that appends to a journal (schema batches and opaque payloads,
tiny segments so rotations and seals are frequent) and reports every acknowledged sequence
number through a pipe the moment `append` returns. The parent SIGKILLs it after a seeded
random delay, reopens the journal (recovery), and checks that it verifies and that every
acknowledged record is there. A process kill loses nothing the kernel has, so that holds for
every fsync policy; `always` additionally covers power loss, which this test cannot cut.
"""

from __future__ import annotations

import os
import random
import select
import signal
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from tectra.journal.format import RecordType
from tectra.journal.reader import JournalReader
from tectra.journal.verify import verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions

from .conftest import trades

ITERATIONS = 120
JOURNALS = 12
ACK = struct.Struct("<Q")


def _options(policy: FsyncPolicy) -> WriterOptions:
    return WriterOptions(
        segment_max_bytes=48 << 10, fsync=policy, batch_interval_s=0.001, index_stride=4
    )


def _child(directory: Path, policy: FsyncPolicy, seed: int, wfd: int) -> None:
    rng = random.Random(seed)
    w = JournalWriter(directory, _options(policy))
    os.write(wfd, ACK.pack(w.next_seq - 1))  # "started": everything before is already durable
    while True:
        r = rng.random()
        if r < 0.1:
            # A big batch: one long write(2), so some kills land in the middle of it.
            n = rng.randint(200, 2000)
            _, last = w.append_records(trades(w.next_seq, n))
        elif r < 0.25:
            last = w.append_batch(trades(w.next_seq, rng.randint(1, 300)))
        elif r < 0.6:
            n = rng.randint(1, 12)
            _, last = w.append_records(trades(w.next_seq, n))
        else:
            payloads = [os.urandom(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))]
            _, last = w.append_payloads(payloads, type_code=RecordType.RAW_PACKET)
        w.tick()
        os.write(wfd, ACK.pack(last))


def _run_once(directory: Path, policy: FsyncPolicy, seed: int) -> int:
    """One child run killed at a random point; returns the highest acknowledged seq."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(rfd)
        try:
            _child(directory, policy, seed, wfd)
        finally:
            os._exit(0)
    os.close(wfd)
    rng = random.Random(seed * 7919)
    acked = 0
    buf = b""
    started = False
    deadline: float | None = None
    try:
        while True:
            timeout = 2.0 if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([rfd], [], [], timeout)
            if not ready:
                break
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            buf += chunk
            if not started:
                started = True
                deadline = time.monotonic() + rng.uniform(0.0, 0.012)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    # Acks the child wrote before it died still count: they were acknowledged.
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        buf += chunk
    os.close(rfd)
    whole = len(buf) // ACK.size * ACK.size
    for (seq,) in ACK.iter_unpack(buf[:whole]):
        acked = max(acked, seq)
    assert started, "child never started"
    return acked


def _seqs(directory: Path) -> np.ndarray:
    parts = [fb.seq.copy() for fb in JournalReader(directory).batches()]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def test_kill_minus_nine_never_loses_an_acknowledged_record(tmp_path: Path) -> None:
    started = time.monotonic()
    policies = [FsyncPolicy.ALWAYS, FsyncPolicy.ALWAYS, FsyncPolicy.BATCH, FsyncPolicy.NONE]
    recovered_torn = sealed_by_recovery = 0
    for i in range(ITERATIONS):
        policy = policies[i % len(policies)]
        directory = tmp_path / f"j{i % JOURNALS}"
        acked = _run_once(directory, policy, seed=1000 + i)
        w = JournalWriter(directory, _options(policy))  # recovery
        recovered_torn += sum(a.action == "truncated" for a in w.recovery.actions)
        sealed_by_recovery += sum(a.action == "sealed" for a in w.recovery.actions)
        durable_end = w.next_seq - 1
        w.close()
        assert durable_end >= acked, (
            f"iteration {i} ({policy}): acknowledged up to seq {acked} but only "
            f"{durable_end} survived; recovery: {w.recovery}"
        )
        report = verify_journal(directory)
        assert report.ok, f"iteration {i} ({policy}):\n{report.format_text()}"
        seqs = _seqs(directory)
        assert np.array_equal(seqs, np.arange(1, seqs.shape[0] + 1, dtype=np.uint64))
    assert time.monotonic() - started < 120
    # Not asserted (a kill rarely lands inside a write), but reported for the curious.
    print(
        f"{ITERATIONS} kills: {sealed_by_recovery} unsealed segments sealed and "
        f"{recovered_torn} torn tails truncated by recovery"
    )


@pytest.mark.parametrize("policy", [FsyncPolicy.ALWAYS])
def test_acknowledged_means_fsynced_under_always(tmp_path: Path, policy: FsyncPolicy) -> None:
    w = JournalWriter(tmp_path / "j", _options(policy))
    for k in range(20):
        w.append_records(trades(w.next_seq, 3))
        assert w.durable_seq == w.written_seq == w.next_seq - 1
        assert w.stats.fsyncs >= k + 1
    w.close()
