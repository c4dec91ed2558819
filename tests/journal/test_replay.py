"""Golden replay: record live, replay through the same step, bit-for-bit; divergences named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tectra.core.clock import VirtualClock
from tectra.journal.capture import OpaqueBatch, Recorder
from tectra.journal.format import ClockDomain, RecordKind, RecordType
from tectra.journal.reader import JournalReader
from tectra.journal.reference import VwapComponent, synthetic_trades
from tectra.journal.replay import (
    ReplayEngine,
    ReplayError,
    ReplayMode,
    ReplayOptions,
    StepView,
    diff_journals,
    replay_journal,
)
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import TICK, TRADE, Component, RecordFlag

STEPS = 600


def record(
    directory: Path, *, steps: int = STEPS, snapshot_at: int | None = 300, seed: int = 7
) -> list[np.ndarray]:
    """Run the reference component live under a Recorder; returns the live outputs."""
    writer = JournalWriter(
        directory, WriterOptions(segment_max_bytes=64 << 10, fsync=FsyncPolicy.NONE)
    )
    rec = Recorder(VwapComponent(), writer)
    outputs = []
    for i, (batch, now) in enumerate(synthetic_trades(seed, batches=steps)):
        if i == snapshot_at:
            rec.snapshot(now)
        outputs.append(np.array(rec.step(batch, now), copy=True))
        if i % 97 == 0:  # a timer-only step: time passes, no input
            rec.step(batch[:0], now + 1)
    writer.close()
    return outputs


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("live")
    record(d)
    return d


def test_golden_instant_replay_is_bit_for_bit(live: Path) -> None:
    report = replay_journal(live, VwapComponent())
    assert report.zero, report.format_text()
    assert report.steps == STEPS + len(range(0, STEPS, 97))
    assert report.expected_outputs == report.actual_outputs > STEPS
    assert "ZERO DIFFS" in report.format_text()


def test_replay_from_snapshot(live: Path) -> None:
    report = replay_journal(live, VwapComponent(), options=ReplayOptions(from_snapshot=True))
    assert report.zero
    assert report.snapshot_steps == {"STRATEGY": 301 + len(range(0, 300, 97))}
    assert report.steps < STEPS


def test_no_snapshot_is_an_error(tmp_path: Path) -> None:
    record(tmp_path / "j", steps=20, snapshot_at=None)
    with pytest.raises(ReplayError, match="no snapshot"):
        replay_journal(tmp_path / "j", VwapComponent(), options=ReplayOptions(from_snapshot=True))


def _mutated_copy(src: Path, dst: Path, seq: int) -> None:
    """Rewrite the journal with the TRADE at `seq` given another price (same seq and times)."""
    w = JournalWriter(dst, WriterOptions(fsync=FsyncPolicy.NONE))
    for fb in JournalReader(src).batches():
        for i in range(len(fb)):
            payload = bytearray(fb.payload(i))
            if int(fb.seq[i]) == seq:
                rec = np.frombuffer(bytes(payload), dtype=TRADE.dtype).copy()
                rec["price"] += 1000
                payload = bytearray(rec.view(np.uint8).tobytes())
            w.append(
                payload,
                type_code=int(fb.type[i]),
                kind=int(fb.kind[i]),
                component=int(fb.component[i]),
                mono_ns=int(fb.mono_ns[i]),
                real_ns=int(fb.real_ns[i]),
                step=int(fb.step[i]),
            )
    w.close()


def test_a_mutated_input_names_the_first_divergence(live: Path, tmp_path: Path) -> None:
    target = None
    for fb in JournalReader(live).batches():
        pick = np.flatnonzero(
            (fb.kind == RecordKind.INPUT) & (fb.step == 250) & (fb.type == TRADE.type_id)
        )
        if pick.size:
            target = (int(fb.seq[pick[0]]), fb.segment.name)
            break
    assert target is not None
    mutated = tmp_path / "mutated"
    _mutated_copy(live, mutated, target[0])
    report = replay_journal(mutated, VwapComponent())
    assert not report.zero
    first = report.first
    assert first is not None
    assert first.step == 250 and first.kind == "mismatch" and first.record_type == "TICK"
    assert first.component == "STRATEGY"
    fields = {f.field for f in first.fields}
    assert "last_px" in fields and fields <= {"last_px"}
    assert str(target[0]) in first.context["input seqs"]
    assert report.by_component == {"STRATEGY": report.divergences}
    assert report.by_type == {"TICK": report.divergences}
    assert first.seq is not None and first.seq > target[0]
    assert "first divergence" in report.format_text()


def test_replayed_outputs_carry_the_replay_flag_and_diff_clean(live: Path, tmp_path: Path) -> None:
    out = tmp_path / "replayed"
    writer = JournalWriter(
        out, WriterOptions(fsync=FsyncPolicy.NONE, clock_domain=ClockDomain.VIRTUAL)
    )
    seen: list[int] = []

    def hook(view: StepView) -> None:
        for o in view.outputs:
            assert isinstance(o, np.ndarray)
            seen.extend((o["flags"] & RecordFlag.REPLAY).tolist())

    report = ReplayEngine(live, VwapComponent(), output_writer=writer, hook=hook).run()
    writer.close()
    assert report.zero and seen and all(seen)
    recs = np.concatenate([fb.records(TICK.type_id) for fb in JournalReader(out).batches()])
    assert (recs["flags"] & RecordFlag.REPLAY).all()
    assert diff_journals(live, out).zero
    assert not diff_journals(live, out, [int(Component.STRATEGY)]).divergences


def test_diff_journals_counts_missing_and_extra(live: Path, tmp_path: Path) -> None:
    short = tmp_path / "short"
    record(short, steps=STEPS - 10)
    report = diff_journals(live, short)
    assert report.by_type and report.first is not None and report.first.kind == "missing"
    assert diff_journals(short, live).first.kind == "extra"  # type: ignore[union-attr]


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def wall(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


@pytest.mark.parametrize(
    ("mode", "speed", "factor"), [("realtime", 1.0, 1.0), ("speed", 100.0, 100.0)]
)
def test_paced_modes_keep_the_recorded_gaps(
    live: Path, mode: str, speed: float, factor: float
) -> None:
    fake = _FakeTime()
    opts = ReplayOptions(mode=ReplayMode(mode), speed=speed, sleep=fake.sleep, wall_clock=fake.wall)
    report = replay_journal(live, VwapComponent(), options=opts)
    assert report.zero
    assert sum(fake.slept) == pytest.approx(report.span_s / factor, rel=1e-6)


def test_step_mode_hook_inspects_state_and_can_stop(live: Path) -> None:
    comp = VwapComponent()
    volumes: list[int] = []

    def hook(view: StepView) -> bool:
        assert view.component is comp
        volumes.append(int(comp.volume.sum()))
        return len(volumes) < 5

    report = ReplayEngine(live, comp, options=ReplayOptions(mode=ReplayMode.STEP), hook=hook).run()
    assert report.steps == 5 and volumes == sorted(volumes)
    with pytest.raises(ReplayError):
        ReplayEngine(live, comp, options=ReplayOptions(mode=ReplayMode.STEP))


def test_steps_generator_drives_one_step_at_a_time(live: Path) -> None:
    clock = VirtualClock()
    engine = ReplayEngine(live, VwapComponent(), clock=clock)
    steps = engine.steps()
    first = next(steps)
    assert clock.now_ns() == first.now_ns and first.step == 1
    second = next(steps)
    assert second.step == 2 and second.now_ns >= first.now_ns


class EchoPackets:
    """Opaque inputs and outputs: echoes each packet reversed, plus a count record."""

    component_id = int(Component.FEED)

    def __init__(self) -> None:
        self.count = 0

    def step(self, inputs: Any, now_ns: int) -> list[Any]:
        assert isinstance(inputs, OpaqueBatch)
        self.count += len(inputs)
        return [
            OpaqueBatch.from_payloads(RecordType.RAW_PACKET, [p[::-1] for p in inputs.payloads()])
        ]

    def snapshot(self) -> bytes:
        return self.count.to_bytes(8, "little")

    def restore(self, state: bytes) -> None:
        self.count = int.from_bytes(state, "little")


def test_opaque_inputs_outputs_and_timer_steps(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path / "j", WriterOptions(fsync=FsyncPolicy.NONE))
    rec = Recorder(EchoPackets(), w)
    for i in range(50):
        packets = [bytes([i, j]) * (j + 1) for j in range(i % 4)]
        rec.step(OpaqueBatch.from_payloads(RecordType.RAW_PACKET, packets), 1000 + i)
    w.close()
    comp = EchoPackets()
    report = replay_journal(tmp_path / "j", comp)
    assert report.zero and report.steps == 50 and comp.count == sum(i % 4 for i in range(50))


class BrokenVwap(VwapComponent):
    """Diverges on purpose after a while: the diff must say where."""

    def step(self, inputs: Any, now_ns: int) -> Any:
        out = super().step(inputs, now_ns)
        if self.out_seq > 500 and len(out):
            out = out[:-1]  # one output missing
        return out


def test_missing_output_is_counted(live: Path) -> None:
    report = replay_journal(live, BrokenVwap())
    assert report.divergences > 0 and report.first is not None
    assert report.first.kind in {"missing", "mismatch"}


def test_batch_frames_replay_bit_for_bit_and_name_divergences(tmp_path: Path) -> None:
    """The same golden property when each step's inputs and outputs are one frame each."""
    live = tmp_path / "live"
    w = JournalWriter(live, WriterOptions(fsync=FsyncPolicy.NONE, segment_max_bytes=32 << 10))
    rec = Recorder(VwapComponent(), w, batch_frames=True)
    for batch, now in synthetic_trades(9, batches=300):
        rec.step(batch, now)
    w.close()
    frames = sum(len(fb) for fb in JournalReader(live).batches())
    assert frames == 600  # one INPUT and one OUTPUT frame per step
    assert replay_journal(live, VwapComponent()).zero
    # Mutate the price of the first trade of step 123 (a whole frame rewritten, CRC fixed).
    mutated = tmp_path / "mutated"
    w = JournalWriter(mutated, WriterOptions(fsync=FsyncPolicy.NONE))
    from tectra.journal.format import decode_record_batch, encode_record_batch

    for fb in JournalReader(live).batches():
        for i in range(len(fb)):
            payload = bytes(fb.payload(i))
            if int(fb.step[i]) == 123 and int(fb.kind[i]) == RecordKind.INPUT:
                recs = decode_record_batch(payload).copy()
                recs["price"][0] += 500
                payload = encode_record_batch(recs)
            w.append(
                payload,
                type_code=int(fb.type[i]),
                kind=int(fb.kind[i]),
                component=int(fb.component[i]),
                mono_ns=int(fb.mono_ns[i]),
                real_ns=int(fb.real_ns[i]),
                step=int(fb.step[i]),
            )
    w.close()
    report = replay_journal(mutated, VwapComponent())
    assert report.first is not None and report.first.step == 123
    assert {f.field for f in report.first.fields} == {"last_px"}
