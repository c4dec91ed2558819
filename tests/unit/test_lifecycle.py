"""tectra.core.lifecycle: the transition graph, journaling order, listeners, warm-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.core.clock import VirtualClock
from tectra.core.lifecycle import (
    ALLOWED_TRANSITIONS,
    FileTransitionJournal,
    Lifecycle,
    LifecycleError,
    MemoryTransitionJournal,
    TransitionEvent,
    TransitionJournal,
    _decode_line,
    _encode_line,
    read_transitions,
    run_warmup,
)
from tectra.schema import LifecycleState as S


def make(journal: TransitionJournal | None = None) -> tuple[Lifecycle, MemoryTransitionJournal]:
    mem = MemoryTransitionJournal()
    clock = VirtualClock(1_000)
    lc = Lifecycle("feed", journal or mem, clock, realtime=VirtualClock(1_700_000_000 * 10**9))
    return lc, mem


def test_happy_path_is_journaled_in_order() -> None:
    lc, journal = make()
    assert lc.state is S.INIT and not lc.can_trade
    for to in (S.WARMUP, S.READY, S.DEGRADED, S.READY, S.HALTED, S.WARMUP, S.READY):
        assert lc.transition(to, f"to {to.name}") is True
        assert lc.state is to
        assert lc.can_trade == (to is S.READY)
    path = [(e.from_state, e.to_state) for e in journal.events]
    assert path == [
        (S.INIT, S.WARMUP),
        (S.WARMUP, S.READY),
        (S.READY, S.DEGRADED),
        (S.DEGRADED, S.READY),
        (S.READY, S.HALTED),
        (S.HALTED, S.WARMUP),
        (S.WARMUP, S.READY),
    ]
    assert [e.seq for e in journal.events] == list(range(1, 8))
    assert journal.events[-1].reason == "to READY"
    assert journal.events[0].component == "feed"
    assert lc.seq == 7


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), S.READY),
        ((), S.HALTED),
        ((), S.DEGRADED),
        ((S.WARMUP,), S.DEGRADED),
        ((S.WARMUP,), S.INIT),
        ((S.WARMUP, S.READY), S.WARMUP),
        ((S.WARMUP, S.READY), S.INIT),
        ((S.WARMUP, S.READY, S.HALTED), S.READY),
        ((S.WARMUP, S.READY, S.HALTED), S.DEGRADED),
        ((S.WARMUP, S.READY, S.DEGRADED), S.WARMUP),
    ],
)
def test_disallowed_transitions_raise_and_change_nothing(path: tuple[S, ...], bad: S) -> None:
    lc, journal = make()
    for to in path:
        lc.transition(to, "setup")
    before = (lc.state, lc.reason, lc.seq, len(journal.events))
    with pytest.raises(LifecycleError) as info:
        lc.transition(bad, "nope")
    assert info.value.from_state is lc.state and info.value.to_state is bad
    assert bad.name in str(info.value)
    assert (lc.state, lc.reason, lc.seq, len(journal.events)) == before


def test_transition_to_current_state_is_a_noop() -> None:
    lc, journal = make()
    lc.transition(S.WARMUP, "go")
    calls: list[TransitionEvent] = []
    lc.add_listener(calls.append)
    assert lc.transition(S.WARMUP, "again") is False
    assert len(journal.events) == 1 and calls == []


def test_noop_on_init() -> None:
    lc, journal = make()
    assert lc.transition(S.INIT, "already") is False
    assert journal.events == []


def test_empty_reason_is_refused() -> None:
    lc, journal = make()
    with pytest.raises(ValueError):
        lc.transition(S.WARMUP, "")
    assert lc.state is S.INIT and journal.events == []


def test_listeners_run_after_journaling() -> None:
    lc, journal = make()
    seen: list[tuple[TransitionEvent, bool, S]] = []
    lc.add_listener(lambda e: seen.append((e, e in journal.events, lc.state)))
    lc.transition(S.WARMUP, "start")
    ((event, journaled, state_then),) = seen
    assert journaled and state_then is S.WARMUP
    assert event.mono_ns == 1_000 and event.real_ns == 1_700_000_000 * 10**9


def test_listener_removal_and_failures() -> None:
    lc, _ = make()
    calls: list[str] = []

    def broken(_: TransitionEvent) -> None:
        raise RuntimeError("listener bug")

    lc.add_listener(broken)
    remove = lc.add_listener(lambda e: calls.append(e.to_state.name))
    lc.transition(S.WARMUP, "a")  # the broken listener does not stop the others
    assert lc.state is S.WARMUP and calls == ["WARMUP"] and lc.listener_errors == 1
    remove()
    remove()  # idempotent
    lc.transition(S.READY, "b")
    assert calls == ["WARMUP"]


def test_journal_failure_means_no_transition() -> None:
    class FailingJournal:
        def append(self, event: TransitionEvent) -> None:
            raise OSError("disk full")

    lc, _ = make(FailingJournal())
    calls: list[TransitionEvent] = []
    lc.add_listener(calls.append)
    with pytest.raises(OSError, match="disk full"):
        lc.transition(S.WARMUP, "start")
    assert lc.state is S.INIT and lc.seq == 0 and calls == []


def test_ready_is_a_health_source() -> None:
    lc, _ = make()
    ok, info = lc.ready()
    assert not ok and info["state"] == "INIT" and info["component"] == "feed"
    lc.transition(S.WARMUP, "warm")
    lc.transition(S.READY, "warmed up")
    ok, info = lc.ready()
    assert ok and info["state"] == "READY" and info["reason"] == "warmed up"
    lc.transition(S.DEGRADED, "stale feed")
    ok, info = lc.ready()
    assert not ok and info["reason"] == "stale feed"


@settings(max_examples=200)
@given(st.lists(st.sampled_from(list(S)), max_size=40))
def test_random_requests_stay_in_the_graph_and_are_journaled(requests: list[S]) -> None:
    clock = VirtualClock()
    journal = MemoryTransitionJournal()
    lc = Lifecycle("prop", journal, clock)
    model = S.INIT
    accepted: list[tuple[S, S]] = []
    for to in requests:
        clock.advance(10)
        if to is model:
            assert lc.transition(to, "r") is False
        elif to in ALLOWED_TRANSITIONS[model]:
            assert lc.transition(to, "r") is True
            accepted.append((model, to))
            model = to
        else:
            with pytest.raises(LifecycleError):
                lc.transition(to, "r")
        assert lc.state is model
    assert [(e.from_state, e.to_state) for e in journal.events] == accepted
    assert [e.seq for e in journal.events] == list(range(1, len(accepted) + 1))
    monos = [e.mono_ns for e in journal.events]
    assert monos == sorted(monos)
    for a, b in zip(journal.events, journal.events[1:], strict=False):
        assert a.to_state is b.from_state


# -- file journal -----------------------------------------------------------------------------


def run_some(journal: TransitionJournal) -> Lifecycle:
    lc = Lifecycle("gateway", journal, VirtualClock(5), realtime=VirtualClock(7))
    lc.transition(S.WARMUP, "start")
    lc.transition(S.READY, "warm")
    lc.transition(S.HALTED, 'kill "all" now,"crc32":1}\nsecond line ✓')
    return lc


def test_file_journal_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "lifecycle.jsonl"
    mem = MemoryTransitionJournal()
    with FileTransitionJournal(path, fsync=True) as journal:
        run_some(journal)
        run_some(mem)
        events, bad = journal.read_all()
    assert bad == 0
    assert events == mem.events
    assert path.read_bytes().count(b"\n") == 3


def test_torn_last_line_is_detected_and_later_appends_survive(tmp_path: Path) -> None:
    path = tmp_path / "lifecycle.jsonl"
    with FileTransitionJournal(path) as journal:
        run_some(journal)
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # crash mid-write of the third record
    events, bad = read_transitions(path)
    assert [e.seq for e in events] == [1, 2] and bad == 1
    # Reopening terminates the torn fragment, so the next record is intact.
    with FileTransitionJournal(path) as journal:
        lc = Lifecycle("gateway", journal, VirtualClock())
        lc.transition(S.WARMUP, "restart")
        events, bad = journal.read_all()
    assert [e.reason for e in events] == ["start", "warm", "restart"] and bad == 1


def test_corrupted_line_fails_its_crc(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with FileTransitionJournal(path) as journal:
        run_some(journal)
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"READY"', b'"HALTED"', 1)  # valid JSON, wrong content
    path.write_bytes(b"\n".join(lines))
    events, bad = read_transitions(path)
    assert [e.seq for e in events] == [1, 3] and bad == 1


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    journal = FileTransitionJournal(tmp_path / "j.jsonl")
    journal.close()
    journal.close()
    lc = Lifecycle("x", journal, VirtualClock())
    with pytest.raises(ValueError, match="closed"):
        lc.transition(S.WARMUP, "start")
    assert lc.state is S.INIT


@given(st.text(min_size=1, max_size=200), st.text(max_size=30))
def test_any_reason_and_component_round_trip(reason: str, component: str) -> None:
    event = TransitionEvent(component, S.READY, S.HALTED, reason, 1, 2, 3)
    line = _encode_line(event)
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    assert _decode_line(line[:-1]) == event


# -- warm-up ----------------------------------------------------------------------------------


def test_run_warmup_pushes_exactly_ticks_in_batches() -> None:
    batch = np.arange(64, dtype=np.int64)
    sizes: list[int] = []
    assert run_warmup(lambda b: sizes.append(len(b)), batch, 1000) == 1000
    assert sum(sizes) == 1000
    assert sizes[:-1] == [64] * 15 and sizes[-1] == 1000 - 15 * 64
    assert run_warmup(lambda b: sizes.append(len(b)), batch, 0) == 0


def test_run_warmup_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run_warmup(lambda b: None, np.zeros(0), 10)
    with pytest.raises(ValueError):
        run_warmup(lambda b: None, np.zeros(4), -1)


def test_warmup_then_ready() -> None:
    lc, journal = make()
    lc.transition(S.WARMUP, "warming")
    total = np.zeros(1, dtype=np.int64)

    def step(b: np.ndarray) -> None:
        total[0] += b.sum()

    ran = run_warmup(step, np.ones(100, dtype=np.int64), 10_000)
    lc.transition(S.READY, f"warm-up ran {ran} ticks")
    assert total[0] == 10_000 and lc.can_trade
    assert journal.events[-1].reason == "warm-up ran 10000 ticks"
