"""Order tokens: encoding, monotonic never-reused allocation across restarts and `kill -9`,
fail-closed state, and the ClOrdID <-> token map with duplicate refusal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.ouch42 import is_valid_token
from tectra.gateway.tokens import (
    AssignStatus,
    ClOrdIdMap,
    TokenAllocator,
    TokenStoreError,
    TokenStoreErrorReason,
    VenueSessionTokens,
    decode_token,
    encode_token,
    token_capacity,
)
from tectra.schema import RejectReason

REPO = Path(__file__).resolve().parents[2]


@given(st.integers(0, 62**14 - 1))
def test_encoding_round_trips_and_is_a_valid_ouch_token(n: int) -> None:
    token = encode_token(n)
    assert len(token) == 14 and is_valid_token(token)
    assert decode_token(token) == n


@given(st.integers(0, 62**12 - 2))
def test_token_order_is_number_order(n: int) -> None:
    assert encode_token(n, "GW") < encode_token(n + 1, "GW")


def test_prefix_and_capacity() -> None:
    assert encode_token(1, "AB") == "AB000000000001"
    assert token_capacity("AB") == 62**12
    with pytest.raises(TokenStoreError):
        encode_token(1, "A-")
    with pytest.raises(TokenStoreError):
        encode_token(1, "ABCDE")
    with pytest.raises(TokenStoreError) as info:
        encode_token(62**12, "AB")
    assert info.value.reason is TokenStoreErrorReason.EXHAUSTED


def test_allocation_is_monotonic_and_persists_before_use(tmp_path: Path) -> None:
    path = tmp_path / "t.hwm"
    with TokenAllocator(path, venue="XNAS", session="20240102", block_size=10) as alloc:
        tokens = [alloc.next_token() for _ in range(25)]
        assert tokens == sorted(tokens) and len(set(tokens)) == 25
        assert alloc.reservations == 3
        # The persisted mark always covers every token handed out.
        assert decode_token(tokens[-1]) < alloc.high_water
        assert f"hwm={alloc.high_water}" in path.read_text()
        batch = alloc.next_tokens(30)
        assert alloc.reservations == 4  # one write for the whole batch
        assert batch[0] > tokens[-1]


def test_restart_never_reuses_and_skips_the_unused_block(tmp_path: Path) -> None:
    path = tmp_path / "t.hwm"
    with TokenAllocator(path, venue="V", session="S", block_size=100) as alloc:
        first = alloc.next_tokens(5)
    with TokenAllocator(path, venue="V", session="S", block_size=100) as alloc:
        again = alloc.next_token()
    assert decode_token(again) == 101  # the unused rest of block 1..100 is never trusted
    assert again not in first


def test_state_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "t.hwm"
    with TokenAllocator(path, venue="V", session="S") as alloc:
        alloc.next_token()
    text = path.read_text()
    path.write_text(text.replace("hwm=1025", "hwm=1024"))  # checksum now wrong
    with pytest.raises(TokenStoreError) as info:
        TokenAllocator(path, venue="V", session="S")
    assert info.value.reason is TokenStoreErrorReason.CORRUPT
    path.write_text(text)
    with pytest.raises(TokenStoreError) as info:
        TokenAllocator(path, venue="V", session="OTHER")
    assert info.value.reason is TokenStoreErrorReason.MISMATCH
    with pytest.raises(TokenStoreError) as info:
        TokenAllocator(path, venue="V", session="S", prefix="GW")
    assert info.value.reason is TokenStoreErrorReason.MISMATCH
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(TokenStoreError) as info:
        TokenAllocator(path, venue="V", session="S")
    assert info.value.reason is TokenStoreErrorReason.CORRUPT


def test_one_process_per_session(tmp_path: Path) -> None:
    path = tmp_path / "t.hwm"
    with TokenAllocator(path, venue="V", session="S"):
        with pytest.raises(TokenStoreError) as info:
            TokenAllocator(path, venue="V", session="S")
        assert info.value.reason is TokenStoreErrorReason.LOCKED
    with TokenAllocator(path, venue="V", session="S"):
        pass  # released on close


def test_exhaustion_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "t.hwm"
    body = f"tectra-order-tokens 1 venue=V session=S prefix=ABCD hwm={62**10 - 2}"
    path.write_text(f"{body} crc={zlib.crc32(body.encode()):08x}\n")
    with TokenAllocator(path, venue="V", session="S", prefix="ABCD") as alloc:
        alloc.next_tokens(2)
        with pytest.raises(TokenStoreError) as info:
            alloc.next_token()
        assert info.value.reason is TokenStoreErrorReason.EXHAUSTED


CHILD = textwrap.dedent(
    """
    import sys
    from tectra.gateway.tokens import VenueSessionTokens
    state = sys.argv[1]
    with VenueSessionTokens(state, venue="XNAS", session="D1", block_size=8) as vt:
        i = 0
        while True:
            res = vt.assign(f"CL{i}")
            # Printed only after assign returned: the pair is durable by then.
            print(res.cl_ord_id, res.token, flush=True)
            i += 1
    """
)


def test_kill_9_restart_never_reuses_a_token(tmp_path: Path) -> None:
    state = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    seen: dict[str, str] = {}
    try:
        assert child.stdout is not None
        while len(seen) < 150:
            line = child.stdout.readline()
            assert line, "child died early"
            cl, token = line.split()
            seen[cl] = token
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(set(seen.values())) == len(seen)
    with VenueSessionTokens(state, venue="XNAS", session="D1", block_size=8) as vt:
        fresh = [vt.assign(f"NEW{i}") for i in range(50)]
        assert all(r.ok for r in fresh)
        new_tokens = [r.token for r in fresh]
        assert min(new_tokens) > max(seen.values())  # strictly after anything handed out
        assert not set(new_tokens) & set(seen.values())
        # Every ClOrdID the child acknowledged is still known: resubmitting it is refused.
        for cl, token in seen.items():
            again = vt.assign(cl)
            assert again.status is AssignStatus.DUPLICATE and again.token == token


def test_duplicate_cl_ord_ids_rejected_with_typed_result(tmp_path: Path) -> None:
    with VenueSessionTokens(tmp_path, venue="V", session="S") as vt:
        first = vt.assign("ORDER-1")
        assert first.ok and first.reject_reason is RejectReason.NONE
        dup = vt.assign("ORDER-1")
        assert dup.status is AssignStatus.DUPLICATE
        assert dup.reject_reason is RejectReason.DUPLICATE_CL_ORD_ID
        assert dup.token == first.token
        batch = vt.assign_many(["A", "B", "A", "", "x" * 21, "tab\there"])
        assert [r.status for r in batch] == [
            AssignStatus.OK,
            AssignStatus.OK,
            AssignStatus.DUPLICATE,
            AssignStatus.INVALID,
            AssignStatus.INVALID,
            AssignStatus.INVALID,
        ]
        assert batch[2].token == batch[0].token
        assert vt.cl_ord_id_for(batch[1].token) == "B" and vt.token_for("A") == batch[0].token
    with VenueSessionTokens(tmp_path, venue="V", session="S") as vt:
        assert vt.assign("B").status is AssignStatus.DUPLICATE  # rebuilt from the log


def test_map_is_bounded_and_refuses_when_full(tmp_path: Path) -> None:
    with VenueSessionTokens(tmp_path, venue="V", session="S", max_entries=2) as vt:
        assert [r.status for r in vt.assign_many(["a", "b", "c"])] == [
            AssignStatus.OK,
            AssignStatus.OK,
            AssignStatus.FULL,
        ]
        assert vt.assign("d").reject_reason is RejectReason.QUEUE_FULL


def test_torn_log_tail_is_cut_and_corruption_fails_closed(tmp_path: Path) -> None:
    log = tmp_path / "map.clordid"
    m = ClOrdIdMap(log)
    m.add([("A", "00000000000001"), ("B", "00000000000002")])
    m.close()
    with log.open("ab") as fh:
        fh.write(b"C\t000000000")  # crash mid-write: no newline
    m = ClOrdIdMap(log)
    assert len(m) == 2 and m.token_for("C") is None
    m.add([("C", "00000000000003")])
    m.close()
    assert ClOrdIdMap(log).token_for("C") == "00000000000003"
    data = log.read_bytes()
    log.write_bytes(data.replace(b"B\t", b"X\t", 1))
    with pytest.raises(TokenStoreError) as info:
        ClOrdIdMap(log)
    assert info.value.reason is TokenStoreErrorReason.CORRUPT


def test_log_token_beyond_high_water_is_corruption(tmp_path: Path) -> None:
    with VenueSessionTokens(tmp_path, venue="V", session="S", block_size=4) as vt:
        vt.assign("A")
    m = ClOrdIdMap(tmp_path / "tokens-V-S.clordid")
    m.add([("Z", encode_token(10_000))])
    m.close()
    with pytest.raises(TokenStoreError) as info:
        VenueSessionTokens(tmp_path, venue="V", session="S", block_size=4)
    assert info.value.reason is TokenStoreErrorReason.CORRUPT
    # The failed open released its lock.
    with TokenAllocator(tmp_path / "tokens-V-S.hwm", venue="V", session="S"):
        pass


def test_session_names_with_dots_keep_separate_files(tmp_path: Path) -> None:
    with VenueSessionTokens(tmp_path, venue="V", session="2024.01.02") as vt:
        vt.assign("A")
    assert (tmp_path / "tokens-V-2024.01.02.hwm").exists()
    assert (tmp_path / "tokens-V-2024.01.02.clordid").exists()
