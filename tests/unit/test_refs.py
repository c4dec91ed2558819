"""Tests of tectra.feed.refs: create/attach, last-writer-wins updates, staleness, format checks,
and a reader in this process never seeing a torn row while another process writes."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tectra.feed.refs import (
    RefTable,
    RefTableArgumentError,
    RefTableError,
    RefTableExistsError,
    RefTableFormatError,
    RefTableNotFoundError,
)
from tectra.schema import new_records


def ticks(ids: list[int], k: int, ts: int = 0) -> npt.NDArray[np.void]:
    """TICK rows whose every field derives from k, so a torn row is detectable."""
    t = new_records("TICK", len(ids))
    t["instrument_id"] = ids
    t["seq"] = k
    t["ts_ns"] = ts or k
    t["bid_px"] = k * 100
    t["ask_px"] = k * 100 + 1
    t["bid_qty"] = k * 3
    t["ask_qty"] = k * 5
    t["last_px"] = k * 7
    t["last_update_ns"] = k * 11
    t["exch_ts_ns"] = k * 13
    return t


def consistent(row: np.void) -> bool:
    k = int(row["seq"])
    return (
        int(row["bid_px"]) == k * 100
        and int(row["ask_px"]) == k * 100 + 1
        and int(row["bid_qty"]) == k * 3
        and int(row["ask_qty"]) == k * 5
        and int(row["last_px"]) == k * 7
        and int(row["last_update_ns"]) == k * 11
        and int(row["exch_ts_ns"]) == k * 13
    )


def test_create_update_attach_read(shm_root: Path) -> None:
    with RefTable.create("refs", 16, root=shm_root) as w:
        assert w.read(3) is None and w.is_stale(3, 10, 100)
        assert w.update(ticks([3, 5, 3, 99], k=7)) == 3  # 99 is out of range: skipped
        w.update(ticks([3], k=8, ts=1_000))
        w.touch(5_000)
        with RefTable.attach("refs", root=shm_root) as r:
            row = r.read(3)
            assert row is not None and int(row["bid_px"]) == 800  # last write wins
            assert r.last_update_ns(3) == 1_000
            assert not r.is_stale(3, now_ns=1_500, stale_after_ns=500)
            assert r.is_stale(3, now_ns=1_501, stale_after_ns=500)
            assert r.read(4) is None and r.read(16) is None and r.read(-1) is None
            rows, valid = r.read_many([3, 4, 5, 70])
            assert valid.tolist() == [True, False, True, False]
            assert rows["bid_px"].tolist() == [800, 0, 700, 0]
            assert r.heartbeat_ns == 5_000 and r.rows_written == 4
            assert r.generations()[3] == 6  # three complete writes: even
            with pytest.raises(RefTableError):
                r.update(ticks([1], k=1))
            with pytest.raises(RefTableError):
                r.touch(1)
            with pytest.raises(RefTableArgumentError):
                r.read("3")  # type: ignore[arg-type]
        with pytest.raises(RefTableArgumentError):
            w.update(new_records("TRADE", 1))
    with pytest.raises(RefTableError):
        w.read(3)


def test_create_exists_and_reopen_keeps_rows(shm_root: Path) -> None:
    w = RefTable.create("refs", 8, root=shm_root)
    w.update(ticks([1], k=2))
    with pytest.raises(RefTableExistsError):
        RefTable.create("refs", 8, root=shm_root)
    with pytest.raises(RefTableFormatError):
        RefTable.create("refs", 4, root=shm_root, exist_ok=True)
    again = RefTable.create("refs", 8, root=shm_root, exist_ok=True)
    row = again.read(1)
    assert row is not None and int(row["seq"]) == 2
    w.close()
    again.unlink()
    again.close()
    with pytest.raises(RefTableNotFoundError):
        RefTable.attach("refs", root=shm_root)
    assert not [p for p in shm_root.iterdir() if p.name.endswith(".tmp")]


def test_attach_refuses_foreign_files(shm_root: Path) -> None:
    (shm_root / "junk").write_bytes(b"x" * 4096)
    with pytest.raises(RefTableFormatError):
        RefTable.attach("junk", root=shm_root)
    (shm_root / "tiny").write_bytes(b"x")
    with pytest.raises(RefTableFormatError):
        RefTable.attach("tiny", root=shm_root)
    with pytest.raises(RefTableArgumentError):
        RefTable.attach("../etc", root=shm_root)
    with pytest.raises(RefTableArgumentError):
        RefTable.create("ok", 0, root=shm_root)


def _writer(root: str, stop: float, ready: Any) -> None:
    w = RefTable.create("refs", 4, root=root, exist_ok=True)
    ready.set()
    k = 1
    while time.monotonic() < stop:
        w.update(ticks([0, 1, 0, 1] * 16, k=k))
        k += 1
    w.close()


@pytest.mark.timeout(60)
def test_reader_never_sees_a_torn_row_across_processes(shm_root: Path) -> None:
    RefTable.create("refs", 4, root=shm_root).close()
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_writer, args=(str(shm_root), time.monotonic() + 2.0, ready))
    proc.start()
    try:
        assert ready.wait(20)
        reader = RefTable.attach("refs", root=shm_root)
        reads = 0
        seen: set[int] = set()
        while proc.is_alive() or reads == 0:
            for i in (0, 1):
                row = reader.read(i)
                if row is not None:
                    assert consistent(row), row
                    reads += 1
                    seen.add(int(row["seq"]))
        assert reads > 1000 and len(seen) > 10
        reader.close()
    finally:
        proc.join(30)
    assert proc.exitcode == 0
    assert os.path.exists(shm_root / "refs")
