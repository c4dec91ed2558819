"""Tests of tectra.feed.snapshot: a stream applied in two halves around snapshot + restore equals
an uninterrupted run (outputs and final state, bit for bit); corrupted, truncated and foreign
files raise typed errors; periodic writing, pruning and warm start with fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tectra.feed.book import BookOutputs, OrderBook
from tectra.feed.snapshot import (
    SnapshotChecksumError,
    SnapshotError,
    SnapshotFormatError,
    SnapshotWriter,
    latest_snapshots,
    load_snapshot,
    read_snapshot,
    warm_start,
    write_snapshot,
)
from tectra.schema import new_records


def stream(n: int, seed: int = 11, n_instr: int = 6) -> npt.NDArray[np.void]:
    """A valid random ITCH stream: adds, executes, cancels, deletes, replaces, trades."""
    rng = np.random.default_rng(seed)
    ev = new_records("ITCH_EVENT", n)
    live: dict[int, list[int]] = {}  # ref -> [instr, side, px, shares]
    next_ref, match = 1, 1
    for i in range(n):
        r = rng.random()
        rec = ev[i]
        if r < 0.45 or len(live) < 5:
            ins, side = int(rng.integers(0, n_instr)), int(rng.integers(0, 2))
            px = (
                100_000
                + (int(rng.integers(-10, 1)) if side == 0 else int(rng.integers(1, 11))) * 100
            )
            sh = int(rng.integers(1, 1000))
            rec["msg_type"], rec["side"] = ord("A"), ord("BS"[side])
            rec["stock_locate"], rec["order_ref"], rec["price"], rec["shares"] = (
                ins,
                next_ref,
                px,
                sh,
            )
            live[next_ref] = [ins, side, px, sh]
            next_ref += 1
            continue
        refs = list(live)
        ref = refs[int(rng.integers(0, len(refs)))]
        ins, side, px, sh = live[ref]
        rec["stock_locate"], rec["order_ref"] = ins, ref
        if r < 0.7:
            rec["msg_type"] = ord("D")
            del live[ref]
        elif r < 0.8:
            k = int(rng.integers(1, sh + 1))
            rec["msg_type"], rec["shares"], rec["ref2"] = ord("E"), k, match
            match += 1
            live[ref][3] -= k
            if live[ref][3] == 0:
                del live[ref]
        elif r < 0.88:
            k = int(rng.integers(1, sh + 1))
            rec["msg_type"], rec["shares"] = ord("X"), k
            live[ref][3] -= k
            if live[ref][3] == 0:
                del live[ref]
        else:
            new_px, new_sh = px + int(rng.integers(-2, 3)) * 100, int(rng.integers(1, 1000))
            rec["msg_type"], rec["ref2"], rec["price"], rec["shares"] = (
                ord("U"),
                next_ref,
                new_px,
                new_sh,
            )
            del live[ref]
            live[next_ref] = [ins, side, new_px, new_sh]
            next_ref += 1
    ev["seq"] = np.arange(1, n + 1)
    ev["ts_ns"] = 5_000 + np.arange(n) * 50
    ev["exch_ts_ns"] = 34_200_000_000_000 + np.arange(n) * 1_000_000
    return ev


def book() -> OrderBook:
    return OrderBook(max_instruments=8, max_orders=5000, max_levels=64, output_capacity=128)


def outputs_bytes(outs: list[BookOutputs]) -> tuple[bytes, bytes, bytes]:
    return tuple(  # type: ignore[return-value]
        np.concatenate([getattr(o, name) for o in outs]).tobytes()
        for name in ("updates", "ticks", "trades")
    )


def test_two_halves_with_snapshot_restore_equal_uninterrupted_run(tmp_path: Path) -> None:
    ev = stream(4000)
    whole = book()
    ref_out = whole.apply_all(ev)

    first = book()
    out_a = first.apply_all(ev[:2345])
    info = write_snapshot(first, tmp_path / "mid.snap", written_ns=123)
    assert info.last_seq == 2345 and info.events == 2345
    del first  # the restored book must not share anything with it
    restored, loaded = load_snapshot(tmp_path / "mid.snap", output_capacity=128)
    assert loaded.last_seq == 2345 and loaded.written_ns == 123 and loaded.out_seq > 0
    # Warm start: replay what comes after the snapshot's last sequence number.
    rest = ev[ev["seq"] > loaded.last_seq]
    out_b = restored.apply_all(rest)
    assert outputs_bytes([out_a, out_b]) == outputs_bytes([ref_out])
    for name, arr in whole.state_arrays().items():
        assert arr.tobytes() == restored.state_arrays()[name].tobytes(), name
    assert restored.counters == whole.counters


def test_corruption_is_detected_and_never_half_loads(tmp_path: Path) -> None:
    b = book()
    b.apply_all(stream(500))
    path = tmp_path / "s.snap"
    write_snapshot(b, path)
    good = path.read_bytes()
    arrays, info = read_snapshot(path)
    assert info.nbytes == len(good) and set(arrays) == {"meta", "orders", "levels", "instruments"}

    for pos in (20, len(good) // 2, len(good) - 40, len(good) - 1):
        bad = bytearray(good)
        bad[pos] ^= 0x40
        path.write_bytes(bytes(bad))
        with pytest.raises(SnapshotChecksumError):
            load_snapshot(path)
    path.write_bytes(good[: len(good) // 3])
    with pytest.raises(SnapshotChecksumError):
        load_snapshot(path)
    path.write_bytes(b"NOTASNAP" + good[8:])
    with pytest.raises(SnapshotFormatError):
        load_snapshot(path)
    path.write_bytes(b"x")
    with pytest.raises(SnapshotFormatError):
        load_snapshot(path)
    with pytest.raises(SnapshotError):
        load_snapshot(tmp_path / "missing.snap")
    path.write_bytes(good)
    assert load_snapshot(path)[0].counters == b.counters


def test_consistent_checksum_but_broken_book_is_refused(tmp_path: Path) -> None:
    b = book()
    b.apply_all(stream(300))
    arrays = b.state_arrays(copy=False)
    arrays["levels"]["qty"][int(arrays["instruments"][0]["side"][0]["off"])] += 1
    write_snapshot(b, tmp_path / "s.snap")  # a valid file of an invalid book
    with pytest.raises(SnapshotFormatError, match="aggregate"):
        load_snapshot(tmp_path / "s.snap")


def test_periodic_writer_prunes_and_warm_start_falls_back(tmp_path: Path) -> None:
    ev = stream(1000)
    b = book()
    writer = SnapshotWriter(tmp_path, every_events=200, keep=2, fsync=False)
    written = []
    for lo in range(0, 1000, 100):
        b.apply(ev[lo : lo + 100])
        info = writer.maybe_write(b)
        if info is not None:
            written.append(info.last_seq)
    assert written == [300, 500, 700, 900]
    files = latest_snapshots(tmp_path)
    assert [p.name for p in files] == [
        "book-00000000000000000900.snap",
        "book-00000000000000000700.snap",
    ]
    assert not list(tmp_path.glob(".*tmp"))
    # Newest corrupted: warm start takes the older one and says why it skipped.
    data = bytearray(files[0].read_bytes())
    data[100] ^= 1
    files[0].write_bytes(bytes(data))
    found = warm_start(tmp_path)
    assert found is not None
    restored, info, skipped = found
    assert info.last_seq == 700 and len(skipped) == 1
    assert isinstance(skipped[0][1], SnapshotChecksumError)
    restored.apply_all(ev[ev["seq"] > 700])
    assert restored.state_arrays()["orders"].tobytes() == b.state_arrays()["orders"].tobytes()
    assert warm_start(tmp_path / "empty") is None
    with pytest.raises(ValueError):
        SnapshotWriter(tmp_path)


def test_venue_time_trigger(tmp_path: Path) -> None:
    ev = stream(300)  # 1 ms of venue time per event
    b = book()
    writer = SnapshotWriter(tmp_path, every_exch_ns=100_000_000, fsync=False)
    hits = []
    for lo in range(0, 300, 25):
        b.apply(ev[lo : lo + 25])
        if writer.maybe_write(b) is not None:
            hits.append(b.last_seq)
    assert hits == [125, 225]
