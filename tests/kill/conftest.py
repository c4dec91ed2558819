"""Kill-switch test fixtures: an engine on a private shm root and state dir, fake gateways."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tectra.io.killblock import KillBlock, Scope
from tectra.kill.engine import KillEngine, VenueBook, open_block
from tectra.kill.fanout import Fanout
from tectra.kill.ledger import KillLedger
from tectra.kill.state import StateStore
from tectra.kill.subscriber import CancelProgress


@dataclass
class FakeGateway:
    """A KillActions with N open orders per scope; venues confirm on demand."""

    open: int = 10
    confirm_immediately: bool = False
    fail: bool = False
    calls: list[tuple[Scope, int, int]] = field(default_factory=list)
    confirmed: dict[int, int] = field(default_factory=dict)
    failed: dict[int, int] = field(default_factory=dict)
    blocked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel_scope(self, scope: Scope, scope_id: int, kill_id: int) -> int:
        if self.fail:
            raise RuntimeError("venue session down")
        with self.lock:
            self.calls.append((scope, scope_id, kill_id))
            if self.confirm_immediately:
                self.confirmed[kill_id] = self.open
        return self.open

    def confirm(self, kill_id: int, n: int, failed: int = 0) -> None:
        with self.lock:
            self.confirmed[kill_id] = self.confirmed.get(kill_id, 0) + n
            self.failed[kill_id] = self.failed.get(kill_id, 0) + failed

    def cancel_progress(self, kill_id: int) -> CancelProgress:
        with self.lock:
            return CancelProgress(self.confirmed.get(kill_id, 0), self.failed.get(kill_id, 0))

    def open_orders(self, scope: Scope, scope_id: int) -> int:
        return self.open

    def orders_blocked(self, scope: Scope, scope_id: int) -> int:
        return self.blocked


@dataclass
class Rig:
    root: Path
    state_dir: Path
    block: KillBlock
    ledger: KillLedger
    store: StateStore
    engine: KillEngine
    fanout: Fanout | None

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    def close(self) -> None:
        if self.fanout is not None:
            self.fanout.stop()
        self.ledger.close()
        self.block.close()


def make_rig(shm_root: Path, state_dir: Path, *, fanout: bool = False, **kw: Any) -> Rig:
    store = StateStore(state_dir / "kill" / "state.json")
    (state_dir / "kill").mkdir(parents=True, exist_ok=True)
    block = open_block("kill", shm_root, store)
    ledger = KillLedger(state_dir / "kill" / "ledger.jsonl", "kill")
    fo: Fanout | None = None
    if fanout:
        fo = Fanout(state_dir / "run")
    kw.setdefault("venues", VenueBook(["XNAS=1@198.18.0.1:15000", "XNYS=2@198.18.0.9"]))
    engine = KillEngine(block, ledger, store, fanout=fo, **kw)
    if fo is not None:
        fo.start()
    return Rig(shm_root, state_dir, block, ledger, store, engine, fo)


@pytest.fixture
def rig(shm_root: Path, tmp_path: Path) -> Iterator[Rig]:
    r = make_rig(shm_root, tmp_path / "state")
    r.engine.restore()
    yield r
    r.close()


@pytest.fixture
def fan_rig(shm_root: Path, tmp_path: Path) -> Iterator[Rig]:
    r = make_rig(shm_root, tmp_path / "state", fanout=True, ack_timeout_s=1.0)
    r.engine.restore()
    yield r
    r.close()
