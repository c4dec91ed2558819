"""The shared-memory capture path (csrc/capture.c + tectra.journal.shmtap): steps recorded by
one C call replay bit for bit in both modes, with the writer on a thread or in a child process;
the C block builder writes exactly the STEP_BLOCK layout; a full ring or a failed writer never
blocks, drops are counted and journaled as gaps; bad arrays are typed errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import itch
from adapters.moldudp64 import pack_packets
from tectra.feed.component import FEED_OUTPUTS, FeedComponent, stamped_packets
from tectra.io.receive import PacketBatch
from tectra.journal.capture import OpaqueBatch, normalize_outputs
from tectra.journal.format import RecordType
from tectra.journal.reader import JournalReader
from tectra.journal.reference import VwapComponent, synthetic_trades
from tectra.journal.replay import replay_journal
from tectra.journal.shmtap import (
    CaptureInputError,
    CaptureRing,
    CaptureRingError,
    ShmCaptureTap,
    output_digest,
)
from tectra.journal.stepblock import CapturedStep, decode_step_block, encode_step_block
from tectra.journal.verify import FindingKind, verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import TICK, TRADE, Component, new_records
from tectra.sim.itch_flow import ItchFlow

OPTIONS = WriterOptions(fsync=FsyncPolicy.NONE, segment_max_bytes=1 << 20)


def _tap(tmp_path: Path, how: str, mode: str, **kw: Any) -> ShmCaptureTap:
    comp = int(kw.pop("component", VwapComponent.component_id))
    ring = tmp_path / f"ring-{how}-{mode}"
    if how == "thread":
        writer = kw.pop("writer", None) or JournalWriter(tmp_path / "j", OPTIONS)
        return ShmCaptureTap.in_process(writer, comp, ring_path=ring, mode=mode, **kw)
    return ShmCaptureTap.with_writer_process(
        tmp_path / "j", OPTIONS, comp, ring_path=ring, mode=mode, **kw
    )


def _run_vwap(tap: ShmCaptureTap, steps: int = 300) -> None:
    comp = VwapComponent()
    for i, (batch, now) in enumerate(synthetic_trades(3, batches=steps)):
        tap.record(batch, normalize_outputs(comp.step(batch, now)), now)
        if i % 37 == 0:  # a timer-only step: time passes, no input
            tap.record(batch[:0], normalize_outputs(comp.step(batch[:0], now + 1)), now + 1)


@pytest.mark.parametrize("mode", ["full", "digest"])
@pytest.mark.parametrize("how", ["thread", "process"])
def test_recorded_steps_verify_and_replay_bit_for_bit(tmp_path: Path, how: str, mode: str) -> None:
    tap = _tap(tmp_path, how, mode, capacity=1 << 22, block_steps=32)
    _run_vwap(tap)
    tap.close()
    c = tap.counters
    assert c.dropped_steps == 0 and c.written_steps == c.recorded_steps == c.steps
    assert c.blocks >= c.steps // 32 and not c.error
    assert not (tmp_path / f"ring-{how}-{mode}").exists()  # the ring is removed at close
    report = verify_journal(tmp_path / "j")
    assert report.ok and not report.findings, report.format_text()
    assert all(
        (fb.type == RecordType.STEP_BLOCK).all() for fb in JournalReader(tmp_path / "j").batches()
    )
    replayed = replay_journal(tmp_path / "j", VwapComponent())
    assert replayed.zero and replayed.complete, replayed.format_text()
    assert replayed.steps == c.steps and replayed.expected_outputs > 0


def test_digest_mode_names_the_step_array_and_replayed_records(tmp_path: Path) -> None:
    tap = _tap(tmp_path, "thread", "digest")
    _run_vwap(tap, steps=40)
    tap.close()

    class Off(VwapComponent):
        def step(self, inputs: Any, now_ns: int) -> Any:
            out = super().step(inputs, now_ns)
            if len(out) and now_ns > 0:
                out = out.copy()
                out["last_px"][0] += 1
            return out

    report = replay_journal(tmp_path / "j", Off())
    first = report.first
    assert not report.zero and first is not None
    assert first.kind == "digest" and first.index == 0
    assert [f.field for f in first.fields] == ["xxh64"]  # same record count, other bytes
    assert first.context["first replayed"]["last_px"] > 0  # the records replay produced
    assert "digest" in first.context["capture mode"]


def test_full_mode_names_the_record_and_field(tmp_path: Path) -> None:
    tap = _tap(tmp_path, "thread", "full")
    _run_vwap(tap, steps=40)
    tap.close()

    class Off(VwapComponent):
        def step(self, inputs: Any, now_ns: int) -> Any:
            out = super().step(inputs, now_ns)
            if len(out):
                out = out.copy()
                out["last_px"][0] += 1
            return out

    report = replay_journal(tmp_path / "j", Off())
    assert report.first is not None and report.first.kind == "mismatch"
    assert [f.field for f in report.first.fields] == ["last_px"]


def test_full_ring_never_blocks_counts_drops_and_marks_gaps(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j", OPTIONS)
    release = threading.Event()
    real_append = writer.append

    def stalled_append(*args: Any, **kwargs: Any) -> int:
        release.wait(10)  # the disk stalls
        return real_append(*args, **kwargs)

    writer.append = stalled_append  # type: ignore[method-assign]
    tap = _tap(tmp_path, "thread", "full", writer=writer, capacity=1 << 14, idle_s=0.0005)
    comp = VwapComponent()
    worst = 0.0
    batches = list(synthetic_trades(5, batches=300))
    for i, (batch, now) in enumerate(batches):
        out = normalize_outputs(comp.step(batch, now))
        t0 = time.perf_counter()
        tap.record(batch, out, now)
        worst = max(worst, time.perf_counter() - t0)
        if i == 150:
            release.set()  # the disk recovers; later steps are written again
            assert tap.flush()
    for _batch, now in batches[-1:]:  # steps dropped right before close: a GAP at close
        for k in range(3):
            tap.ring.put(new_records(TRADE, 2000), [], now + k)  # too big for the ring
    tap.close()
    c = tap.counters
    assert worst < 0.05  # never waited for the stalled writer
    assert c.dropped_steps >= 100 and c.gaps >= 2
    assert c.recorded_steps + c.dropped_steps == c.steps == 303
    assert c.written_steps == c.recorded_steps
    report = verify_journal(tmp_path / "j")
    assert report.ok
    gaps = [f for f in report.findings if f.kind is FindingKind.SOURCE_GAP]
    assert len(gaps) == c.gaps
    assert sum(int(f.detail.split("lost ")[1].split()[0]) for f in gaps) == c.dropped_steps
    replayed = replay_journal(tmp_path / "j", VwapComponent())
    assert replayed.zero and not replayed.complete and replayed.gaps == 1
    assert replayed.steps + replayed.steps_not_replayed == c.recorded_steps


def test_a_failing_writer_turns_steps_into_counted_drops(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j", OPTIONS)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    writer.append = broken  # type: ignore[method-assign]
    tap = _tap(tmp_path, "thread", "full", writer=writer, idle_s=0.0005)
    comp = VwapComponent()
    batches = list(synthetic_trades(1, batches=30))
    for batch, now in batches[:10]:
        tap.record(batch, normalize_outputs(comp.step(batch, now)), now)
    assert not tap.flush()
    assert "No space" in tap.error
    for batch, now in batches[10:]:
        assert tap.record(batch, normalize_outputs(comp.step(batch, now)), now) is False
    c = tap.counters  # the first failure may already drop some of the first ten steps
    assert c.dropped_steps >= 20 and c.dropped_steps + c.recorded_steps == c.steps == 30
    tap.close()


def test_a_writer_process_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    JournalWriter(tmp_path / "j", OPTIONS)  # holds the directory's lock: the child cannot
    with pytest.raises(CaptureRingError, match="did not start"):
        _tap(tmp_path, "process", "full")
    assert not (tmp_path / "ring-process-full").exists()


# -- the feed's one-call path -------------------------------------------------------------------


def _feed_batches(steps: int, per_step: int) -> list[PacketBatch]:
    flow = ItchFlow(7, symbols=16)
    events = flow.next_batch(steps * per_step * 12)
    framed = itch.frame(events)
    packets = pack_packets("SESSION001", 1, framed, events["raw_len"].astype(np.int64))
    raw = [bytes(p) for p in packets.packets()]
    out = []
    for lo in range(0, len(raw), per_step):
        group = raw[lo : lo + per_step]
        lengths = np.array([len(p) for p in group], dtype=np.uint32)
        # Packets with holes between them, as a receiver's frame buffers leave them.
        offsets = (np.arange(len(group)) * 2048).astype(np.uint32)
        buf = np.zeros(2048 * len(group), np.uint8)
        for k, p in enumerate(group):
            buf[2048 * k : 2048 * k + len(p)] = np.frombuffer(p, np.uint8)
        out.append(PacketBatch(buf, offsets, lengths, np.zeros(len(group), np.int64)))
    return out


@pytest.mark.parametrize("mode", ["full", "digest"])
def test_feed_steps_recorded_by_one_call_replay_with_zero_diffs(tmp_path: Path, mode: str) -> None:
    tap = _tap(tmp_path, "process", mode, component=int(Component.FEED), outputs=FEED_OUTPUTS)
    feed = FeedComponent()
    outputs = 0
    for i, batch in enumerate(_feed_batches(60, 3)):
        now = 1_000_000 * (i + 1)
        mold, payload, offsets, lengths = stamped_packets(batch, now)
        step = feed.handler.step(mold, now)
        outputs += len(step.updates) + len(step.ticks) + len(step.trades)
        assert tap.record_packets(
            payload, offsets, lengths, now, (step.updates, step.ticks, step.trades)
        )
    tap.close()
    assert outputs > 0 and tap.counters.written_steps == tap.counters.steps
    assert verify_journal(tmp_path / "j").ok
    replayed = replay_journal(tmp_path / "j", FeedComponent())
    assert replayed.zero and replayed.complete, replayed.format_text()
    assert replayed.expected_outputs == outputs


def test_bad_arrays_are_typed_errors_and_counted(tmp_path: Path) -> None:
    tap = _tap(tmp_path, "thread", "full", component=int(Component.FEED), outputs=FEED_OUTPUTS)
    empty = (np.zeros(0, FEED_OUTPUTS[0].dtype), np.zeros(0, TICK.dtype), np.zeros(0, TRADE.dtype))
    payload = np.zeros(100, np.uint8)
    with pytest.raises(CaptureInputError):  # int64 offsets: refused, not misread
        tap.record_packets(payload, np.zeros(1, np.int64), np.ones(1, np.int64), 1, empty)  # type: ignore[arg-type]
    with pytest.raises(CaptureInputError):  # a packet past the end of its buffer
        tap.record_packets(payload, np.array([90], np.uint32), np.array([20], np.uint32), 1, empty)
    with pytest.raises(CaptureInputError):  # outputs of another layout's size
        tap.record_packets(
            payload,
            np.zeros(0, np.uint32),
            np.zeros(0, np.uint32),
            1,
            (np.zeros(3, np.uint8), empty[1], empty[2]),  # type: ignore[arg-type]
        )
    assert tap.input_errors == 3
    assert tap.counters.steps == 0  # refused calls are not steps
    tap.close()
    with pytest.raises(CaptureRingError):
        CaptureRing.create(tmp_path / "bad", capacity=5000)  # not a power of two


def test_xxh64_matches_the_reference_vectors() -> None:
    from tectra._capture import lib

    assert lib.cap_xxh64(b"", 0, 0) == 0xEF46DB3751D8E999
    assert lib.cap_xxh64(b"abc", 3, 0) == 0x44BC2CF5AD770999
    recs = new_records(TRADE, 3)
    assert output_digest(recs) == lib.cap_xxh64(recs.tobytes(), recs.nbytes, 0)


# -- the C block builder writes the STEP_BLOCK layout -------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.binary(max_size=60), max_size=4), st.integers(0, 5), st.integers(0, 3)
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(1, 7),
)
def test_c_blocks_equal_the_python_encoder(
    tmp_path_factory: pytest.TempPathFactory,
    spec: list[tuple[list[bytes], int, int]],
    max_steps: int,
) -> None:
    path = tmp_path_factory.mktemp("ring") / "r"
    ring = CaptureRing.create(path, capacity=1 << 12, outputs=(TRADE, TICK, TRADE))
    consumer = CaptureRing.attach(path)
    out = np.zeros(1 << 12, np.uint8)
    tap = ShmCaptureTap(ring)
    want: list[CapturedStep] = []
    got: list[CapturedStep] = []
    for k, (packets, n_trades, n_ticks) in enumerate(spec, start=1):
        trades, ticks = new_records(TRADE, n_trades), new_records(TICK, n_ticks)
        trades["seq"], ticks["seq"] = k, k
        opaque = OpaqueBatch.from_payloads(int(RecordType.RAW_PACKET), packets)
        payload = opaque.data if opaque.data.size else np.zeros(1, np.uint8)
        offsets = opaque.offsets[:-1].astype(np.uint32)
        lengths = np.diff(opaque.offsets).astype(np.uint32)
        empty = np.zeros(0, TRADE.dtype)
        if tap.record_packets(payload, offsets, lengths, k * 10, (trades, ticks, empty)):
            want.append(
                CapturedStep(k, k * 10, opaque, int(RecordType.RAW_PACKET), [trades, ticks])
            )
        while (taken := consumer.take_block(out, max_steps)) is not None:  # drain to keep room
            block, _info = taken
            assert bytes(block) == encode_step_block(decode_step_block(bytes(block)))
            got += decode_step_block(bytes(block))
    assert [(s.step, s.now_ns) for s in got] == [(s.step, s.now_ns) for s in want]
    for g, w in zip(got, want, strict=True):
        assert g.inputs == w.inputs
        assert [bytes(np.asarray(o).tobytes()) for o in g.outputs] == [
            o.tobytes() for o in w.outputs if len(o)
        ]
    consumer.close()
    ring.close()
