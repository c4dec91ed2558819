"""Unit tests for tectra.io.shm: naming, validation, header layout, the four ring variants."""

from __future__ import annotations

import os
import re
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tectra import schema
from tectra._ring import lib
from tectra.io.shm import (
    DEFAULT_ROOT,
    RingArgumentError,
    RingClosedError,
    RingError,
    RingExistsError,
    RingFormatError,
    RingKind,
    RingNotFoundError,
    RingPolicy,
    RingStats,
    ShmRing,
    dtype_fingerprint,
)

# Test records, 64 bytes, defined here so these tests do not depend on tectra.schema.
REC = np.dtype([("seq", "<u8"), ("send_ns", "<i8"), ("payload", "<u8", (5,)), ("checksum", "<u8")])
VARIANTS = [(k, p) for k in RingKind for p in RingPolicy]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "rings.md"


def records(first: int, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=REC)
    seq = np.arange(first, first + n, dtype=np.uint64)
    out["seq"] = seq
    out["payload"] = seq[:, None] * np.arange(1, 6, dtype=np.uint64)
    out["checksum"] = seq ^ np.uint64(0xA5A5)
    return out


def make(root: Path, kind=RingKind.SPSC, policy=RingPolicy.BACKPRESSURE, cap=64, name="r"):
    return ShmRing.create(name, REC, cap, kind, policy, root=root)


# ---------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_across_runs() -> None:
    # A golden value: the fingerprint is stored in ring files, so it must never drift.
    assert dtype_fingerprint(REC) == 0x94833281F885F353
    assert dtype_fingerprint(REC) == dtype_fingerprint(np.dtype(REC.descr))
    # One definition of "the same layout": the schema's sha256 fingerprint, cut to 64 bits.
    assert dtype_fingerprint(REC) == int(schema.dtype_fingerprint(REC)[:16], 16)


def test_fingerprint_sees_names_formats_offsets_and_size() -> None:
    base = dtype_fingerprint(REC)
    renamed = np.dtype(
        [("sequence", "<u8"), ("send_ns", "<i8"), ("payload", "<u8", (5,)), ("checksum", "<u8")]
    )
    retyped = np.dtype(
        [("seq", "<i8"), ("send_ns", "<i8"), ("payload", "<u8", (5,)), ("checksum", "<u8")]
    )
    big_endian = np.dtype(
        [("seq", ">u8"), ("send_ns", "<i8"), ("payload", "<u8", (5,)), ("checksum", "<u8")]
    )
    shuffled = np.dtype(
        {"names": ["seq", "send_ns"], "formats": ["<u8", "<i8"], "offsets": [8, 0], "itemsize": 64}
    )
    padded = np.dtype({"names": ["seq", "send_ns"], "formats": ["<u8", "<i8"], "itemsize": 64})
    shape = np.dtype(
        [("seq", "<u8"), ("send_ns", "<i8"), ("payload", "<u8", (4,)), ("pad", "<u8", (2,))]
    )
    prints = [dtype_fingerprint(d) for d in (renamed, retyped, big_endian, shuffled, padded, shape)]
    assert base not in prints
    assert len(set(prints)) == len(prints)


# ---------------------------------------------------------------------- create / attach


@pytest.mark.parametrize(("kind", "policy"), VARIANTS)
def test_records_cross_from_one_handle_to_another(shm_root: Path, kind, policy) -> None:
    with (
        make(shm_root, kind, policy) as producer,
        ShmRing.attach("r", REC, root=shm_root) as consumer,
    ):
        assert (consumer.kind, consumer.policy, consumer.capacity) == (kind, policy, 64)
        assert consumer.dtype == REC and consumer.name == "r"
        sent = records(0, 40)
        assert producer.push(sent) == 40
        assert consumer.depth == 40
        got = consumer.pop(100)
        np.testing.assert_array_equal(got, sent)
        assert consumer.stats() == RingStats(
            capacity=64, depth=0, pushed=40, popped=40, overruns=0, full=0
        )


def test_ring_lives_under_root_by_name_and_root_is_created(shm_root: Path) -> None:
    root = shm_root / "a" / "b"
    with ShmRing.create("md.itch-1", REC, 8, root=root) as ring:
        assert ring.path == root / "md.itch-1"
        assert ring.path.is_file()
        assert sorted(p.name for p in root.iterdir()) == ["md.itch-1"]  # no temp files left
    assert Path("/dev/shm/tectra") == DEFAULT_ROOT


def test_create_refuses_an_existing_name_unless_exist_ok(shm_root: Path) -> None:
    with make(shm_root, cap=16) as first:
        first.push(records(0, 3))
        with pytest.raises(RingExistsError):
            make(shm_root, cap=16)
        with ShmRing.create("r", REC, 16, root=shm_root, exist_ok=True) as again:
            np.testing.assert_array_equal(again.pop(10), records(0, 3))  # attached, contents kept
        with pytest.raises(RingFormatError, match="capacity"):
            ShmRing.create("r", REC, 32, root=shm_root, exist_ok=True)
        with pytest.raises(RingFormatError):
            ShmRing.create("r", REC, 16, RingKind.MPMC, root=shm_root, exist_ok=True)


def test_attach_missing_ring_raises_not_found(shm_root: Path) -> None:
    with pytest.raises(RingNotFoundError):
        ShmRing.attach("nope", REC, root=shm_root)


def test_attach_with_another_dtype_is_refused(shm_root: Path) -> None:
    other = np.dtype([("seq", "<u8"), ("px", "<i8"), ("payload", "<u8", (5,)), ("checksum", "<u8")])
    with make(shm_root):
        with pytest.raises(RingFormatError, match="fingerprint"):
            ShmRing.attach("r", other, root=shm_root)
        with pytest.raises(RingFormatError, match=r"128-byte|64-byte"):
            ShmRing.attach("r", np.dtype([("a", "<u8", (16,))]), root=shm_root)


@pytest.mark.parametrize("capacity", [0, 1, 3, 48, 100, -64, 2**33])
def test_capacity_must_be_a_power_of_two(shm_root: Path, capacity: int) -> None:
    with pytest.raises(RingArgumentError, match="power of two"):
        ShmRing.create("r", REC, capacity, root=shm_root)


def test_capacity_must_be_an_int(shm_root: Path) -> None:
    for bad in (True, 64.0, "64"):
        with pytest.raises(RingArgumentError):
            ShmRing.create("r", REC, bad, root=shm_root)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dtype",
    [np.dtype([("a", "<u4")]), np.dtype([("a", "<u8"), ("b", "<u4")]), np.dtype("O"), np.dtype([])],
)
def test_record_size_must_be_a_positive_multiple_of_8_without_objects(
    shm_root: Path, dtype
) -> None:
    with pytest.raises(RingArgumentError):
        ShmRing.create("r", dtype, 8, root=shm_root)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "x" * 200, "sp ace", 7])
def test_names_are_plain_file_names(shm_root: Path, name) -> None:
    with pytest.raises(RingArgumentError, match="name"):
        ShmRing.create(name, REC, 8, root=shm_root)


def test_kind_and_policy_are_validated(shm_root: Path) -> None:
    with pytest.raises(RingArgumentError):
        ShmRing.create("r", REC, 8, 5, root=shm_root)  # type: ignore[arg-type]
    with pytest.raises(RingArgumentError):
        ShmRing.create("r", REC, 8, RingKind.SPSC, 9, root=shm_root)  # type: ignore[arg-type]
    with ShmRing.create("r", REC, 8, 1, 1, root=shm_root) as ring:  # type: ignore[arg-type]
        assert (ring.kind, ring.policy) == (RingKind.MPMC, RingPolicy.OVERWRITE)


# ---------------------------------------------------------------------- header layout


def documented_offsets() -> dict[str, int]:
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*`(\w+)`", DOCS.read_text(), re.MULTILINE)
    return {field: int(off) for off, _size, field in rows}


def test_docs_describe_the_header_the_code_defines() -> None:
    doc = documented_offsets()
    constants = {
        n[len("TR_OFF_") :].lower(): getattr(lib, n) for n in dir(lib) if n.startswith("TR_OFF_")
    }
    assert len(constants) == 18
    for field, offset in constants.items():
        assert doc.get(field) == offset, (
            f"docs/rings.md says {field} at {doc.get(field)}, C at {offset}"
        )
    assert lib.TR_HEADER_SIZE == 512


def test_header_bytes_on_disk(shm_root: Path) -> None:
    before = time.time_ns()
    with make(shm_root, RingKind.MPMC, RingPolicy.OVERWRITE, cap=32) as ring:
        ring.push(records(0, 5))
        raw = ring.path.read_bytes()
    u32 = lambda off: struct.unpack_from("<I", raw, off)[0]  # noqa: E731
    u64 = lambda off: struct.unpack_from("<Q", raw, off)[0]  # noqa: E731
    assert raw[:8] == b"TECTRARG"
    assert u32(lib.TR_OFF_LAYOUT_VERSION) == lib.TR_LAYOUT_VERSION == 1
    assert u32(lib.TR_OFF_HEADER_SIZE) == 512
    assert u32(lib.TR_OFF_RECORD_SIZE) == 64
    assert (u32(lib.TR_OFF_KIND), u32(lib.TR_OFF_POLICY)) == (1, 1)
    assert u64(lib.TR_OFF_CAPACITY) == 32
    assert u64(lib.TR_OFF_FINGERPRINT) == dtype_fingerprint(REC)
    assert before <= u64(lib.TR_OFF_CREATED_NS) <= time.time_ns()
    assert u64(lib.TR_OFF_SEQ_OFFSET) == 512
    assert u64(lib.TR_OFF_RECORDS_OFFSET) == 512 + 32 * 8  # already a multiple of 64
    assert u64(lib.TR_OFF_TOTAL_BYTES) == len(raw) == 512 + 32 * 8 + 32 * 64
    assert (u64(lib.TR_OFF_PROD), u64(lib.TR_OFF_PUSHED)) == (5, 5)
    # Every hot word on its own cache line.
    hot = [
        lib.TR_OFF_PROD,
        lib.TR_OFF_PUSHED,
        lib.TR_OFF_CONS,
        lib.TR_OFF_POPPED,
        lib.TR_OFF_OVERRUNS,
        lib.TR_OFF_FULL,
    ]
    assert len({off // 64 for off in hot}) == len(hot) and all(off >= 64 for off in hot)
    # Records start 64-byte aligned and hold the pushed bytes verbatim.
    recs = np.frombuffer(raw, dtype=REC, count=32, offset=u64(lib.TR_OFF_RECORDS_OFFSET))
    np.testing.assert_array_equal(recs[:5], records(0, 5))


def test_small_capacity_still_aligns_records(shm_root: Path) -> None:
    with make(shm_root, cap=2) as ring:
        raw = ring.path.read_bytes()
        assert struct.unpack_from("<Q", raw, lib.TR_OFF_RECORDS_OFFSET)[0] % 64 == 0
        ring.push(records(0, 1))
        assert ring.peek(1).ctypes.data % 64 == 0


def corrupt(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    ("offset", "data", "match"),
    [
        (0, b"NOTARING", "not a ring"),
        (lib.TR_OFF_LAYOUT_VERSION, struct.pack("<I", 99), "version"),
        (lib.TR_OFF_CAPACITY, struct.pack("<Q", 48), "inconsistent"),
        (lib.TR_OFF_CAPACITY, struct.pack("<Q", 1 << 20), "inconsistent"),
        (lib.TR_OFF_KIND, struct.pack("<I", 7), "inconsistent"),
        (0, bytes(8), "not initialized"),
    ],
)
def test_a_bad_header_is_a_format_error(
    shm_root: Path, offset: int, data: bytes, match: str
) -> None:
    make(shm_root).close()
    corrupt(shm_root / "r", offset, data)
    with pytest.raises(RingFormatError, match=match):
        ShmRing.attach("r", REC, root=shm_root)


def test_a_short_file_is_a_format_error(shm_root: Path) -> None:
    (shm_root / "tiny").write_bytes(b"TECTRARG")
    with pytest.raises(RingFormatError, match="smaller"):
        ShmRing.attach("tiny", REC, root=shm_root)


# ---------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("kind", list(RingKind))
def test_backpressure_accepts_a_prefix_and_counts_the_rest_as_full(shm_root: Path, kind) -> None:
    with make(shm_root, kind) as ring:
        assert ring.push(records(0, 100)) == 64
        assert ring.push(records(64, 5)) == 0
        assert ring.stats().full == 36 + 5
        out = np.zeros(10, REC)
        assert ring.pop_into(out) == (10, 0)
        np.testing.assert_array_equal(out, records(0, 10))
        assert ring.push(records(64, 20)) == 10
        got = ring.pop(1000)
        np.testing.assert_array_equal(got["seq"], np.arange(10, 74))
        assert ring.stats() == RingStats(
            capacity=64, depth=0, pushed=74, popped=74, overruns=0, full=51
        )


@pytest.mark.parametrize("kind", list(RingKind))
def test_overwrite_never_refuses_and_reports_exact_loss(shm_root: Path, kind) -> None:
    with make(shm_root, kind, RingPolicy.OVERWRITE) as ring:
        assert ring.push(records(0, 100)) == 100
        assert ring.depth == 64
        out = np.zeros(10, REC)
        seqs = np.zeros(10, np.uint64)
        assert ring.pop_into(out, seqs) == (10, 36)  # 0..35 overwritten
        np.testing.assert_array_equal(seqs, np.arange(36, 46))
        np.testing.assert_array_equal(out, records(36, 10))
        # One batch bigger than the ring: only its last 64 records can survive.
        assert ring.push(records(100, 300)) == 300
        n, lost = ring.pop_into(np.zeros(100, REC), seqs := np.zeros(100, np.uint64))
        assert (n, lost) == (64, 400 - 64 - 46)
        np.testing.assert_array_equal(seqs[:n], np.arange(336, 400))
        assert ring.stats() == RingStats(
            capacity=64, depth=0, pushed=400, popped=74, overruns=326, full=0
        )


@pytest.mark.parametrize(("kind", "policy"), VARIANTS)
def test_seqs_are_ring_positions(shm_root: Path, kind, policy) -> None:
    with make(shm_root, kind, policy, cap=8) as ring:
        for first in (0, 5, 10):
            ring.push(records(first, 5))
            out, seqs = np.zeros(8, REC), np.zeros(8, np.uint64)
            n, _ = ring.pop_into(out, seqs)
            np.testing.assert_array_equal(seqs[:n], out["seq"][:n])


def test_peek_gives_read_only_views_up_to_the_wrap(shm_root: Path) -> None:
    with make(shm_root, cap=8) as ring:
        ring.push(records(0, 6))
        ring.release(6)  # consume without reading: the read cursor is now at slot 6
        assert ring.push(records(6, 5)) == 5  # slots 6, 7, then 0, 1, 2
        view = ring.peek(100)
        assert view["seq"].tolist() == [6, 7]
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view["seq"][0] = 1
        ring.release(2)
        assert ring.peek(2)["seq"].tolist() == [8, 9]
        assert ring.peek(0).shape == (0,)
        with pytest.raises(RingArgumentError):
            ring.release(4)  # only 3 readable
        ring.release(3)
        assert ring.stats().popped == 11 and ring.depth == 0


@pytest.mark.parametrize(
    ("kind", "policy"), [v for v in VARIANTS if v != (RingKind.SPSC, RingPolicy.BACKPRESSURE)]
)
def test_peek_is_only_for_spsc_backpressure(shm_root: Path, kind, policy) -> None:
    with make(shm_root, kind, policy) as ring:
        ring.push(records(0, 1))
        with pytest.raises(RingError, match="peek"):
            ring.peek(1)
        with pytest.raises(RingError):
            ring.release(1)


def test_peek_views_survive_close(shm_root: Path) -> None:
    ring = make(shm_root)
    ring.push(records(0, 4))
    view = ring.peek(4)
    ring.close()  # the mapping must stay while the view exists
    assert view["seq"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(("kind", "policy"), VARIANTS)
def test_pop_wait_times_out_then_wakes_on_a_push_from_another_thread(
    shm_root: Path, kind, policy
) -> None:
    with make(shm_root, kind, policy) as ring, ShmRing.attach("r", REC, root=shm_root) as producer:
        out = np.zeros(4, REC)
        t0 = time.monotonic_ns()
        assert ring.pop_wait_into(out, 20_000_000) == (0, 0)
        assert time.monotonic_ns() - t0 >= 20_000_000
        assert ring.pop_wait_into(out, 0) == (0, 0)
        timer = threading.Timer(0.05, lambda: producer.push(records(7, 3)))
        timer.start()  # only works if pop_wait releases the GIL while it spins
        seqs = np.zeros(4, np.uint64)
        n, lost = ring.pop_wait_into(out, 5_000_000_000, seqs)
        assert n >= 1 and lost == 0  # MPMC publishes slot by slot: the first may come alone
        got, positions = out["seq"][:n].tolist(), seqs[:n].tolist()
        timer.join()
        while len(got) < 3:
            n, lost = ring.pop_wait_into(out, 1_000_000_000, seqs)
            assert n >= 1 and lost == 0
            got += out["seq"][:n].tolist()
            positions += seqs[:n].tolist()
        assert got == [7, 8, 9] and positions == [0, 1, 2]
        with pytest.raises(RingArgumentError):
            ring.pop_wait_into(out, -1)


def test_empty_batches_are_fine(shm_root: Path) -> None:
    with make(shm_root) as ring:
        assert ring.push(np.zeros(0, REC)) == 0
        assert ring.pop_into(np.zeros(0, REC)) == (0, 0)
        assert ring.pop(0).shape == (0,)
        assert ring.pop(5).shape == (0,)


def test_inputs_are_validated_at_the_boundary(shm_root: Path) -> None:
    other = np.dtype([("x", "<u8", (8,))])
    with make(shm_root) as ring:
        data = records(0, 8)
        for bad in (np.zeros(4, other), data[::2], data.reshape(2, 4), data.tolist(), b"x" * 64):
            with pytest.raises(RingArgumentError):
                ring.push(bad)  # type: ignore[arg-type]
        ring.push(data)
        readonly = np.zeros(4, REC)
        readonly.flags.writeable = False
        for bad in (
            np.zeros(4, other),
            np.zeros(8, REC)[::2],
            np.zeros((2, 2), REC),
            readonly,
            [0],
        ):
            with pytest.raises(RingArgumentError):
                ring.pop_into(bad)  # type: ignore[arg-type]
            with pytest.raises(RingArgumentError):
                ring.pop_wait_into(bad, 0)  # type: ignore[arg-type]
        out = np.zeros(4, REC)
        for seqs in (np.zeros(3, np.uint64), np.zeros(4, np.int64), np.zeros(8, np.uint64)[::2]):
            with pytest.raises(RingArgumentError, match="seqs"):
                ring.pop_into(out, seqs)
        assert ring.depth == 8  # nothing was consumed by the rejected calls


def test_closed_rings_refuse_work_and_close_is_idempotent(shm_root: Path) -> None:
    ring = make(shm_root)
    with ring:
        ring.push(records(0, 2))
    assert ring.closed
    ring.close()
    for call in (
        lambda: ring.push(records(0, 1)),
        lambda: ring.pop_into(np.zeros(1, REC)),
        lambda: ring.pop_wait_into(np.zeros(1, REC), 0),
        lambda: ring.peek(1),
        lambda: ring.release(0),
        ring.stats,
    ):
        with pytest.raises(RingClosedError):
            call()
    assert "closed" in repr(ring)
    with ShmRing.attach("r", REC, root=shm_root) as again:  # the ring outlives a handle
        assert again.depth == 2


def test_stats_from_another_thread_races_close_safely(shm_root: Path) -> None:
    # A metrics scrape thread reads stats() while the owner closes the ring: the scrape must get
    # numbers or RingClosedError, never touch unmapped memory.
    for i in range(50):
        ring = make(shm_root, name=f"s{i}")
        ring.push(records(0, 3))
        seen: list[int] = []

        def scrape(ring: ShmRing = ring, seen: list[int] = seen) -> None:
            while True:
                try:
                    seen.append(ring.stats().pushed)
                except RingClosedError:
                    return

        thread = threading.Thread(target=scrape)
        thread.start()
        time.sleep(0.0005)
        ring.close()
        thread.join(5)
        assert not thread.is_alive()
        assert set(seen) <= {3}


def test_unlink_removes_the_name_but_not_attached_mappings(shm_root: Path) -> None:
    with make(shm_root) as ring, ShmRing.attach("r", REC, root=shm_root) as other:
        ring.unlink()
        with pytest.raises(RingNotFoundError):
            ShmRing.attach("r", REC, root=shm_root)
        with pytest.raises(RingNotFoundError):
            ring.unlink()
        ring.push(records(0, 3))
        assert other.pop(5)["seq"].tolist() == [0, 1, 2]
    with make(shm_root) as fresh:  # the name is free again
        assert fresh.depth == 0


def test_exceptions_form_a_small_typed_family() -> None:
    for exc in (
        RingFormatError,
        RingExistsError,
        RingNotFoundError,
        RingArgumentError,
        RingClosedError,
    ):
        assert issubclass(exc, RingError)
    assert issubclass(RingArgumentError, ValueError)
    assert not issubclass(RingError, OSError)


def test_file_permissions_keep_other_users_out(shm_root: Path) -> None:
    with make(shm_root) as ring:
        assert os.stat(ring.path).st_mode & 0o007 == 0
