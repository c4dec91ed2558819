"""The light capture path: CaptureTap + STEP_BLOCK frames replay bit for bit; a full queue
never blocks, drops are counted and journaled as a gap that verify and replay report."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.journal.capture import OpaqueBatch, normalize_outputs
from tectra.journal.format import FormatError, RecordType
from tectra.journal.reader import JournalReader
from tectra.journal.reference import VwapComponent, synthetic_trades
from tectra.journal.replay import ReplayOptions, iter_steps, replay_journal
from tectra.journal.stepblock import CapturedStep, decode_step_block, encode_step_block
from tectra.journal.tap import CaptureTap
from tectra.journal.verify import FindingKind, verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import TICK, TRADE, Component, new_records

STEPS = 500


def _writer(directory: Path, **kw: Any) -> JournalWriter:
    return JournalWriter(
        directory, WriterOptions(segment_max_bytes=kw.pop("segment", 256 << 10), **kw)
    )


def run_live(directory: Path, *, steps: int = STEPS, **tap_kw: Any) -> tuple[CaptureTap, list[Any]]:
    """The reference component live, each step handed to a tap; returns the tap (closed)."""
    comp = VwapComponent()
    tap = CaptureTap(_writer(directory, fsync=FsyncPolicy.NONE), comp.component_id, **tap_kw)
    outputs = []
    for i, (batch, now) in enumerate(synthetic_trades(3, batches=steps)):
        out = normalize_outputs(comp.step(batch, now))
        tap.record(batch, out, now)
        outputs.append(out)
        if i % 61 == 0:  # a timer-only step: time passes, no input
            out = normalize_outputs(comp.step(batch[:0], now + 1))
            tap.record(batch[:0], out, now + 1)
    tap.close()
    return tap, outputs


def test_tapped_steps_replay_bit_for_bit(tmp_path: Path) -> None:
    tap, _ = run_live(tmp_path / "j", block_steps=64)
    c = tap.counters
    assert c.dropped_steps == 0 and c.written_steps == c.steps == STEPS + len(range(0, STEPS, 61))
    assert c.blocks >= c.steps // 64
    report = verify_journal(tmp_path / "j")
    assert report.ok and not report.findings, report.format_text()
    frames = list(JournalReader(tmp_path / "j").batches())
    assert all((fb.type == RecordType.STEP_BLOCK).all() for fb in frames)
    replayed = replay_journal(tmp_path / "j", VwapComponent())
    assert replayed.zero and replayed.complete, replayed.format_text()
    assert replayed.steps == c.steps and replayed.expected_outputs > 0


def test_a_mutated_output_is_named_as_the_divergence(tmp_path: Path) -> None:
    run_live(tmp_path / "j", steps=50, block_steps=16)

    class Off(VwapComponent):
        def step(self, inputs: Any, now_ns: int) -> Any:
            out = super().step(inputs, now_ns)
            if now_ns > 0 and len(out):
                out = out.copy()
                out["last_px"][0] += 1
            return out

    report = replay_journal(tmp_path / "j", Off())
    assert not report.zero and report.first is not None
    assert report.first.kind == "mismatch"


def test_full_queue_never_blocks_counts_drops_and_marks_a_gap(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "j", fsync=FsyncPolicy.NONE)
    release = threading.Event()
    real_append = writer.append

    def stalled_append(*args: Any, **kwargs: Any) -> int:
        release.wait(10)  # the disk stalls
        return real_append(*args, **kwargs)

    writer.append = stalled_append  # type: ignore[method-assign]
    comp = VwapComponent()
    tap = CaptureTap(writer, comp.component_id, max_queued_steps=8, block_steps=4, idle_s=0.0005)
    worst = 0.0
    for i, (batch, now) in enumerate(synthetic_trades(5, batches=200)):
        out = normalize_outputs(comp.step(batch, now))
        t0 = time.perf_counter()
        tap.record(batch, out, now)
        worst = max(worst, time.perf_counter() - t0)
        if i == 100:
            release.set()  # the disk recovers; later steps are written again
            assert tap.flush()
    tap.close()
    c = tap.counters
    assert worst < 0.05  # never waited for the stalled writer
    assert c.dropped_steps >= 90 and c.gaps >= 1  # the stall, maybe a short run after it
    assert c.recorded_steps + c.dropped_steps == c.steps == 200
    assert c.written_steps == c.recorded_steps
    report = verify_journal(tmp_path / "j")
    assert report.ok  # an intact journal ...
    gaps = [f for f in report.findings if f.kind is FindingKind.SOURCE_GAP]
    assert len(gaps) == c.gaps  # ... that says where it is incomplete, and by how much
    assert sum(int(f.detail.split("lost ")[1].split()[0]) for f in gaps) == c.dropped_steps
    replayed = replay_journal(tmp_path / "j", VwapComponent())
    assert replayed.zero and not replayed.complete
    assert replayed.gaps == 1 and replayed.steps_lost >= 90  # replay stops at the first gap
    assert replayed.steps + replayed.steps_not_replayed == c.recorded_steps
    assert "GAPS" in replayed.format_text()


def test_a_failing_writer_turns_steps_into_counted_drops(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "j")

    def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    writer.append = broken  # type: ignore[method-assign]
    tap = CaptureTap(writer, int(Component.DEMO), idle_s=0.0005)
    comp = VwapComponent()
    batches = list(synthetic_trades(1, batches=30))
    for batch, now in batches[:10]:
        tap.record(batch, normalize_outputs(comp.step(batch, now)), now)
    assert not tap.flush()
    assert isinstance(tap.error, OSError)
    for batch, now in batches[10:]:
        assert tap.record(batch, normalize_outputs(comp.step(batch, now)), now) is False
    # The 20 after the failure are dropped; of the first 10, those the failed write held are
    # dropped too (how many depends on when the writer thread picked them up). None vanish.
    c = tap.counters
    assert c.dropped_steps >= 20 and "No space" in c.error
    assert c.recorded_steps + c.dropped_steps == c.steps == 30
    tap.close()


def test_replay_from_a_later_snapshot_is_not_blocked_by_blocks(tmp_path: Path) -> None:
    run_live(tmp_path / "j", steps=40, block_steps=8)
    with pytest.raises(Exception, match="no snapshot"):
        replay_journal(tmp_path / "j", VwapComponent(), options=ReplayOptions(from_snapshot=True))


# -- STEP_BLOCK layout --------------------------------------------------------------------------


def _trades(n: int, base: int) -> np.ndarray:
    recs = new_records(TRADE, n)
    recs["seq"] = np.arange(base, base + n)
    recs["price"] = base
    return recs


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.binary(max_size=40), max_size=4),
            st.integers(0, 5),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_step_block_round_trip(spec: list[tuple[list[bytes], int, int]]) -> None:
    steps = []
    for k, (packets, n_trades, n_ticks) in enumerate(spec, start=1):
        ticks = new_records(TICK, n_ticks)
        ticks["seq"] = k
        steps.append(
            CapturedStep(
                k * 3,
                k * 1000,
                OpaqueBatch.from_payloads(int(RecordType.RAW_PACKET), packets),
                int(RecordType.RAW_PACKET),
                [_trades(n_trades, k), ticks],
            )
        )
    payload = encode_step_block(steps)
    assert len(payload) % 8 == 0
    back = decode_step_block(payload)
    assert [(s.step, s.now_ns, s.input_type) for s in back] == [
        (s.step, s.now_ns, s.input_type) for s in steps
    ]
    for got, want in zip(back, steps, strict=True):
        assert got.inputs == want.inputs
        nonempty = [o for o in want.outputs if len(o)]
        assert len(got.outputs) == len(nonempty)
        for g, w in zip(got.outputs, nonempty, strict=True):
            assert isinstance(g, np.ndarray) and g.tobytes() == np.asarray(w).tobytes()


def test_damaged_step_block_is_a_typed_error_and_a_verify_finding(tmp_path: Path) -> None:
    step = CapturedStep(1, 5, _trades(3, 1), TRADE.type_id, [_trades(2, 9)])
    payload = bytearray(encode_step_block([step]))
    with pytest.raises(FormatError):
        decode_step_block(bytes(payload[:20]))
    payload[4:8] = (999).to_bytes(4, "little")  # more chunks than the block holds
    with pytest.raises(FormatError):
        decode_step_block(bytes(payload))
    with _writer(tmp_path / "j") as writer:
        writer.append(bytes(payload), type_code=RecordType.STEP_BLOCK, component=1, step=1)
    report = verify_journal(tmp_path / "j")
    assert not report.ok
    assert any("STEP_BLOCK" in f.detail for f in report.errors())


def test_iter_steps_mixes_per_step_frames_and_blocks(tmp_path: Path) -> None:
    """A journal may hold both layouts (e.g. the Recorder before, the tap after)."""
    from tectra.journal.capture import Recorder

    writer = _writer(tmp_path / "j", fsync=FsyncPolicy.NONE)
    batches = list(synthetic_trades(9, batches=30))
    rec = Recorder(VwapComponent(), writer)
    for batch, now in batches[:15]:
        rec.step(batch, now)
    comp = rec.component
    tap = CaptureTap(writer, comp.component_id, block_steps=4)
    tap.steps = rec.steps  # continue the step numbering
    for batch, now in batches[15:]:
        tap.record(batch, normalize_outputs(comp.step(batch, now)), now)
    tap.close()
    steps = [g.step for g in iter_steps(tmp_path / "j")]
    assert steps == list(range(1, 31))
    report = replay_journal(tmp_path / "j", VwapComponent())
    assert report.zero and report.complete and report.steps == 30


def test_steps_dropped_at_the_very_end_are_marked_at_close(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "j", fsync=FsyncPolicy.NONE)
    release = threading.Event()
    real_append = writer.append

    def stalled_append(*args: Any, **kwargs: Any) -> int:
        release.wait(10)
        return real_append(*args, **kwargs)

    writer.append = stalled_append  # type: ignore[method-assign]
    comp = VwapComponent()
    tap = CaptureTap(writer, comp.component_id, max_queued_steps=4, block_steps=2)
    for batch, now in synthetic_trades(2, batches=20):
        tap.record(batch, normalize_outputs(comp.step(batch, now)), now)
    release.set()
    tap.close()
    assert tap.dropped_steps >= 15
    gaps = [f for f in verify_journal(tmp_path / "j").findings if f.kind is FindingKind.SOURCE_GAP]
    assert len(gaps) == 1 and f"lost {tap.dropped_steps} steps before step 21" in gaps[0].detail
