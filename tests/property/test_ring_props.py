"""Property tests for the ring contract: random interleavings of batch pushes and pops compared
with a model in Python (a bounded FIFO for backpressure, a cursor over surviving records for
overwrite), through several handles on the same ring, for all four variants."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.io.shm import RingKind, RingPolicy, RingStats, ShmRing

REC = np.dtype([("seq", "<u8"), ("send_ns", "<i8"), ("payload", "<u8", (5,)), ("checksum", "<u8")])
K = np.arange(1, 6, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
_names = itertools.count()

PROPS = settings(max_examples=150, deadline=None)


def records(first: int, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=REC)
    seq = np.arange(first, first + n, dtype=np.uint64)
    out["seq"] = seq
    out["send_ns"] = seq.astype(np.int64) * 3
    out["payload"] = seq[:, None] * K
    out["checksum"] = np.bitwise_xor.reduce(out["payload"], axis=1) ^ seq
    return out


def intact(recs: np.ndarray) -> bool:
    expect = np.bitwise_xor.reduce(recs["payload"], axis=1) ^ recs["seq"]
    return bool(
        np.array_equal(recs["checksum"], expect)
        and np.array_equal(recs["payload"], recs["seq"][:, None] * K)
        and np.array_equal(recs["send_ns"], recs["seq"].astype(np.int64) * 3)
    )


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    path = Path(tempfile.mkdtemp(prefix="tectra-ring-props-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Handles:
    """Two producer and two consumer handles on one fresh ring, used in turn (never at once)."""

    def __init__(self, root: Path, cap: int, kind: RingKind, policy: RingPolicy) -> None:
        self.name = f"p{next(_names)}"
        self.first = ShmRing.create(self.name, REC, cap, kind, policy, root=root)
        self.all = [self.first] + [ShmRing.attach(self.name, REC, root=root) for _ in range(3)]

    def producer(self, i: int) -> ShmRing:
        return self.all[i % 2]

    def consumer(self, i: int) -> ShmRing:
        return self.all[2 + i % 2]

    def close(self) -> None:
        self.first.unlink()
        for ring in self.all:
            ring.close()


# An op: ("push", n, handle) or ("pop", n, handle), or for SPSC backpressure ("peek", n, keep).
sizes = st.integers(min_value=0, max_value=80)
ops_strategy = st.lists(
    st.tuples(st.sampled_from(["push", "pop", "peek"]), sizes, st.integers(0, 3)),
    max_size=60,
)
capacities = st.sampled_from([2, 4, 8, 16, 64])


@PROPS
@given(cap=capacities, kind=st.sampled_from(list(RingKind)), ops=ops_strategy)
def test_backpressure_is_a_bounded_fifo_that_never_loses_or_duplicates(
    root: Path, cap: int, kind: RingKind, ops: list[tuple[str, int, int]]
) -> None:
    rings = Handles(root, cap, kind, RingPolicy.BACKPRESSURE)
    try:
        model: deque[int] = deque()
        next_seq = pushed = popped = full = 0
        for op, n, h in ops:
            if op == "push":
                accepted = rings.producer(h).push(records(next_seq, n))
                assert accepted == min(n, cap - len(model))  # a prefix, as much as fits
                model.extend(range(next_seq, next_seq + accepted))
                next_seq += accepted  # the refused rest is re-sent next time, same numbers
                pushed += accepted
                full += n - accepted
            elif op == "peek" and kind is RingKind.SPSC:
                ring = rings.consumer(h)
                view = ring.peek(n)
                contiguous = cap - popped % cap  # peek stops at the wrap
                want = list(itertools.islice(model, min(n, len(model), contiguous)))
                assert view["seq"].tolist() == want
                assert intact(view)
                keep = len(want) * h // 3  # release all, some or none of what was seen
                ring.release(keep)
                for _ in range(keep):
                    model.popleft()
                popped += keep
            else:
                out, seqs = np.zeros(n, REC), np.zeros(n, np.uint64)
                got, lost = rings.consumer(h).pop_into(out, seqs)
                want = [model.popleft() for _ in range(min(n, len(model)))]
                assert lost == 0
                assert out["seq"][:got].tolist() == want  # FIFO, nothing skipped or repeated
                assert seqs[:got].tolist() == want  # positions == sequence numbers here
                assert intact(out[:got])
                popped += got
            assert rings.first.stats() == RingStats(
                capacity=cap, depth=len(model), pushed=pushed, popped=popped, overruns=0, full=full
            )
    finally:
        rings.close()


@PROPS
@given(cap=capacities, kind=st.sampled_from(list(RingKind)), ops=ops_strategy)
def test_overwrite_delivers_exactly_the_surviving_records_and_counts_the_rest(
    root: Path, cap: int, kind: RingKind, ops: list[tuple[str, int, int]]
) -> None:
    rings = Handles(root, cap, kind, RingPolicy.OVERWRITE)
    try:
        tail = head = popped = overruns = 0
        for op, n, h in ops:
            if op == "push":
                assert rings.producer(h).push(records(tail, n)) == n  # never refuses
                tail += n
            else:
                # Model: only the last `cap` records pushed can still be in the ring.
                # A pop with no room is a no-op: it does not even notice losses.
                start = max(head, tail - cap) if n else head
                want_lost = start - head
                want = list(range(start, start + min(n, tail - start)))
                out, seqs = np.zeros(n, REC), np.zeros(n, np.uint64)
                got, lost = rings.consumer(h).pop_into(out, seqs)
                assert lost == want_lost
                assert out["seq"][:got].tolist() == want
                assert seqs[:got].tolist() == want
                assert intact(out[:got])
                head = start + got
                popped += got
                overruns += lost
            assert rings.first.stats() == RingStats(
                capacity=cap,
                depth=min(tail - head, cap),
                pushed=tail,
                popped=popped,
                overruns=overruns,
                full=0,
            )
        # Every record ever pushed is delivered, lost, or still waiting: nothing vanishes.
        out = np.zeros(cap, REC)
        got, lost = rings.consumer(0).pop_into(out)
        assert popped + got + overruns + lost == tail
    finally:
        rings.close()


@pytest.mark.parametrize("kind", list(RingKind))
def test_first_overrun_is_at_step_12(root: Path, kind: RingKind) -> None:
    """Capacity 64, 8 written then 3 read per step (steps from 0). Before the write of step 12
    the consumer lags by 12*8 - 12*3 = 60 records; writing 8 makes 68 > 64, so 4 are lost."""
    rings = Handles(root, 64, kind, RingPolicy.OVERWRITE)
    producer, consumer = rings.first, rings.consumer(0)
    try:
        out, seqs = np.zeros(3, REC), np.zeros(3, np.uint64)
        expected = 0
        first_loss: tuple[int, int] | None = None
        for step in range(40):
            lag_before_write = producer.stats().pushed - (
                consumer.stats().popped + consumer.stats().overruns
            )
            assert lag_before_write == 5 * step
            assert producer.push(records(step * 8, 8)) == 8
            got, lost = consumer.pop_into(out, seqs)
            assert got == 3
            expected += lost
            assert out["seq"].tolist() == [expected, expected + 1, expected + 2]
            assert intact(out)
            expected += 3
            if lost:
                first_loss = (step, lost)
                break
        assert first_loss == (12, 4)
        assert lag_before_write == 60
        assert out["seq"].tolist() == [40, 41, 42]  # 36..39 were overwritten
        assert consumer.stats().overruns == 4
    finally:
        rings.close()
