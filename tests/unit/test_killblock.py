"""Kill-switch control block (csrc/killblock.c via tectra.io.killblock)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tectra.io.killblock import (
    UNAVAILABLE_REASON,
    Flag,
    KillBlock,
    KillBlockExistsError,
    KillBlockFormatError,
    KillBlockFullError,
    KillBlockNotFoundError,
    KillState,
    Scope,
    Verdict,
    open_gateway_view,
)


@pytest.fixture
def kb(tmp_path: Path) -> Any:
    with KillBlock.create("kill", root=tmp_path) as block:
        yield block


def test_fresh_block_is_ok_with_epoch_zero(kb: KillBlock) -> None:
    c = kb.check(1, 2, 3, 4)
    assert c.verdict is Verdict.OK and c.reason == "" and c.epoch == 0
    assert kb.epoch == 0


def test_firm_block_and_slow(kb: KillBlock) -> None:
    assert kb.set(Flag.BLOCK, kill_id=1)
    c = kb.check(1, 2, 3, 4)
    assert (c.verdict, c.reason, c.epoch) == (Verdict.BLOCKED, "firm", 1)
    assert kb.clear(Flag.BLOCK)
    assert kb.check().verdict is Verdict.OK
    assert kb.set(Flag.SLOW, kill_id=2)
    assert kb.check(9, 9, 9, 9)[:2] == (Verdict.SLOW, "firm")
    assert kb.clear(Flag.SLOW)
    assert kb.check().verdict is Verdict.OK
    assert kb.epoch == 4


@pytest.mark.parametrize(
    ("scope", "pos"),
    [(Scope.VENUE, 0), (Scope.ACCOUNT, 1), (Scope.STRATEGY, 2), (Scope.SYMBOL, 3)],
)
def test_scoped_set_and_clear(kb: KillBlock, scope: Scope, pos: int) -> None:
    assert kb.set(Flag.BLOCK, scope, 7, kill_id=11)
    hit = [1, 1, 1, 1]
    hit[pos] = 7
    c = kb.check(*hit)
    assert (c.verdict, c.reason) == (Verdict.BLOCKED, scope.name.lower())
    assert kb.check(1, 1, 1, 1).verdict is Verdict.OK  # other ids unaffected
    other = [7, 7, 7, 7]
    other[pos] = 8
    # the same id under another scope does not match this scope
    assert kb.check(*other).verdict is Verdict.OK
    assert kb.clear(Flag.BLOCK, scope, 7)
    assert kb.check(*hit).verdict is Verdict.OK
    assert kb.state().entries == ()


def test_block_wins_over_slow_and_partial_clear(kb: KillBlock) -> None:
    kb.set(Flag.SLOW, Scope.VENUE, 1)
    kb.set(Flag.BLOCK | Flag.SLOW, Scope.SYMBOL, 5)
    assert kb.check(1, 0, 0, 4)[:2] == (Verdict.SLOW, "venue")
    assert kb.check(1, 0, 0, 5)[:2] == (Verdict.BLOCKED, "symbol")
    assert kb.clear(Flag.BLOCK, Scope.SYMBOL, 5)  # SLOW stays on the symbol
    assert kb.check(2, 0, 0, 5)[:2] == (Verdict.SLOW, "symbol")
    assert not kb.clear(Flag.BLOCK, Scope.SYMBOL, 5)  # nothing left to clear


def test_epoch_increments_on_every_change_only(kb: KillBlock) -> None:
    e0 = kb.epoch
    assert kb.set(Flag.BLOCK, Scope.VENUE, 3)
    assert kb.epoch == e0 + 1
    assert not kb.set(Flag.BLOCK, Scope.VENUE, 3)  # no change, no bump
    assert kb.epoch == e0 + 1
    assert not kb.clear(Flag.BLOCK, Scope.ACCOUNT, 3)
    assert kb.epoch == e0 + 1
    assert kb.clear(Flag.BLOCK, Scope.VENUE, 3)
    assert kb.epoch == e0 + 2
    assert kb.check(3).epoch == e0 + 2


def test_same_kill_id_twice_has_one_effect(kb: KillBlock) -> None:
    assert kb.set(Flag.BLOCK, Scope.ACCOUNT, 42, kill_id=900)
    assert kb.epoch == 1
    assert not kb.set(Flag.BLOCK, Scope.ACCOUNT, 42, kill_id=900)
    assert kb.epoch == 1
    kb.clear(Flag.BLOCK, Scope.ACCOUNT, 42, kill_id=901)
    assert kb.epoch == 2
    # a late retry of the already-applied kill does not re-block
    assert not kb.set(Flag.BLOCK, Scope.ACCOUNT, 42, kill_id=900)
    assert kb.epoch == 2 and kb.check(0, 42).verdict is Verdict.OK
    st = kb.state()
    assert st.last_kill_id == 901 and 900 in st.seen_kill_ids


def test_scoped_table_is_bounded(kb: KillBlock) -> None:
    for i in range(64):
        kb.set(Flag.BLOCK, Scope.SYMBOL, i)
    with pytest.raises(KillBlockFullError):
        kb.set(Flag.BLOCK, Scope.SYMBOL, 64)
    kb.clear(Flag.BLOCK, Scope.SYMBOL, 0)
    assert kb.set(Flag.BLOCK, Scope.SYMBOL, 64)
    assert kb.check(symbol=64).verdict is Verdict.BLOCKED
    assert kb.check(symbol=0).verdict is Verdict.OK


def test_bad_arguments(kb: KillBlock) -> None:
    from tectra.io.killblock import KillBlockError

    with pytest.raises(KillBlockError):
        kb.set(Flag(0))
    with pytest.raises(KillBlockError):
        kb.set(Flag.BLOCK, Scope.VENUE, 1 << 56)


def _reader(root: str, go: Any, ready: Any, out: Any) -> None:
    view = open_gateway_view("kill", root)
    first = view.check(5, 6, 7, 8)
    ready.set()
    go.wait(10)
    nxt = view.check(5, 6, 7, 8)  # the very next check after the writer's set returned
    out.put((int(first.verdict), int(nxt.verdict), nxt.reason, nxt.epoch))


@pytest.mark.parametrize("scope", [Scope.FIRM, Scope.VENUE, Scope.SYMBOL])
def test_reader_in_other_process_sees_block_on_next_check(
    kb: KillBlock, tmp_path: Path, scope: Scope
) -> None:
    ctx = mp.get_context("fork")
    go, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_reader, args=(str(tmp_path), go, ready, out))
    proc.start()
    try:
        assert ready.wait(10)
        ident = {Scope.FIRM: 0, Scope.VENUE: 5, Scope.SYMBOL: 8}[scope]
        assert kb.set(Flag.BLOCK, scope, ident, kill_id=77)
        go.set()
        first, nxt, reason, epoch = out.get(timeout=10)
    finally:
        proc.join(10)
    assert proc.exitcode == 0
    assert first == Verdict.OK
    assert nxt == Verdict.BLOCKED and reason == scope.name.lower() and epoch == kb.epoch


def test_attach_missing_and_corrupt_raise_typed(tmp_path: Path) -> None:
    with pytest.raises(KillBlockNotFoundError):
        KillBlock.attach("nope", root=tmp_path)
    (tmp_path / "short").write_bytes(b"x" * 10)
    with pytest.raises(KillBlockFormatError):
        KillBlock.attach("short", root=tmp_path)
    with KillBlock.create("bad", root=tmp_path):
        pass
    raw = bytearray((tmp_path / "bad").read_bytes())
    raw[0:8] = b"NOTMAGIC"
    (tmp_path / "bad").write_bytes(bytes(raw))
    with pytest.raises(KillBlockFormatError):
        KillBlock.attach("bad", root=tmp_path)


def test_create_twice(tmp_path: Path) -> None:
    with KillBlock.create("k", root=tmp_path) as a:
        a.set(Flag.BLOCK, kill_id=3)
        with pytest.raises(KillBlockExistsError):
            KillBlock.create("k", root=tmp_path)
        with KillBlock.create("k", root=tmp_path, exist_ok=True) as b:
            assert b.check().verdict is Verdict.BLOCKED


def test_gateway_view_fails_closed_when_missing(tmp_path: Path) -> None:
    view = open_gateway_view("kill", tmp_path)
    assert not view.available
    c = view.check(1, 2, 3, 4)
    assert (c.verdict, c.reason) == (Verdict.BLOCKED, UNAVAILABLE_REASON)
    b = view.check_batch([1, 2], [1, 2], [1, 2], [1, 2])
    assert b.blocked == 2 and (b.verdicts == Verdict.BLOCKED).all()
    assert b.reason(0) == UNAVAILABLE_REASON
    with KillBlock.create("kill", root=tmp_path):
        assert view.reopen()
        assert view.check(1, 2, 3, 4).verdict is Verdict.OK
    view.close()
    assert view.check().verdict is Verdict.BLOCKED


def test_gateway_view_fails_closed_on_bad_magic(tmp_path: Path) -> None:
    with KillBlock.create("kill", root=tmp_path):
        pass
    path = tmp_path / "kill"
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))
    view = open_gateway_view("kill", tmp_path)
    assert not view.available and view.error
    assert view.check().reason == UNAVAILABLE_REASON


def test_magic_corrupted_after_attach_blocks(kb: KillBlock, tmp_path: Path) -> None:
    view = open_gateway_view("kill", tmp_path)
    assert view.check().verdict is Verdict.OK
    with (tmp_path / "kill").open("r+b") as f:
        f.write(b"\0" * 8)
    c = view.check()
    assert (c.verdict, c.reason) == (Verdict.BLOCKED, UNAVAILABLE_REASON)
    view.close()


def test_batch_equals_single_checks(kb: KillBlock) -> None:
    kb.set(Flag.BLOCK, Scope.VENUE, 1)
    kb.set(Flag.SLOW, Scope.ACCOUNT, 2)
    kb.set(Flag.BLOCK, Scope.STRATEGY, 3)
    kb.set(Flag.SLOW | Flag.BLOCK, Scope.SYMBOL, 4)
    kb.set(Flag.SLOW, Scope.SYMBOL, 5)
    rng = np.random.default_rng(7)
    n = 500
    ids = [rng.integers(0, 7, n, dtype=np.uint64) for _ in range(4)]
    batch = kb.check_batch(*ids)
    singles = [kb.check(*(int(a[i]) for a in ids)) for i in range(n)]
    assert [int(v) for v in batch.verdicts] == [int(s.verdict) for s in singles]
    assert [batch.reason(i) for i in range(n)] == [s.reason for s in singles]
    assert (batch.epochs == kb.epoch).all()
    assert batch.blocked == sum(s.verdict is Verdict.BLOCKED for s in singles)
    assert {int(v) for v in batch.verdicts} == {0, 1, 2}
    kb.set(Flag.BLOCK)
    assert kb.check_batch(*ids).blocked == n


def test_state_persist_and_restore(tmp_path: Path) -> None:
    with KillBlock.create("a", root=tmp_path) as a:
        a.set(Flag.SLOW, kill_id=1)
        a.set(Flag.BLOCK, Scope.VENUE, 9, kill_id=2)
        a.set(Flag.BLOCK, Scope.SYMBOL, 123, kill_id=3)
        saved = json.dumps(a.state().to_dict())
        want = a.state()
    st = KillState.from_dict(json.loads(saved))
    assert st == want and st.firm == Flag.SLOW
    # the kill role comes back (e.g. after a host reboot) from its persisted state
    with KillBlock.create("b", root=tmp_path, restore=st) as b:
        assert b.epoch == st.epoch + 1
        assert b.check(9).verdict is Verdict.BLOCKED
        assert b.check(symbol=123).verdict is Verdict.BLOCKED
        assert b.check(1, 1, 1, 1)[:2] == (Verdict.SLOW, "firm")
        assert not b.set(Flag.BLOCK, Scope.VENUE, 9, kill_id=2)  # idempotency survives
        got = b.state()
        assert got.entries == st.entries and got.last_kill_id == 3
    halted = KillState(firm=Flag.BLOCK, epoch=10, last_kill_id=5)
    with KillBlock.create("c", root=tmp_path, restore=halted) as c:
        assert c.check().verdict is Verdict.BLOCKED  # restart while halted comes up halted
