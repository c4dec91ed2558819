"""Fuzzing the ITCH decoders: arbitrary bytes, mutated real streams and structured garbage
(plausible length prefixes and type bytes) through the C decoder and the reference decoder.

Properties: never a crash or an exception; both decoders agree record for record and counter
for counter; consumed <= len and every consumed byte is accounted for (decoded, skipped or
dropped); seq advances once per framed message; small output capacities resumed call by call
give the same records as one call. The corpus in tests/corpus/itch/ (inputs that once mattered,
with their expected counters in expected.json) is replayed first. To add an input, drop the
.bin file there and run with ITCH_CORPUS_UPDATE=1 to record its counters.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import itch
from adapters.itch import ItchDecoder, ReferenceDecoder, frame
from tectra.schema import ITCH_EVENT, new_records

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "itch"
EXPECTED = CORPUS / "expected.json"
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE = frame(itch.synthetic_mix(400, seed=11, n_symbols=8)).tobytes()
LENGTHS = sorted(set(itch.MESSAGE_LENGTHS.values()))
TYPE_BYTES = [ord(c) for c in itch.MESSAGES] + [0, ord("Z"), ord("a"), 0xFF]


def check(buf: bytes, *, first_seq: int = 1, partial_tail: bool = False) -> dict[str, int]:
    c, ref = ItchDecoder(capacity=1), ReferenceDecoder()
    a = c.decode(buf, first_seq, 17, partial_tail=partial_tail).copy()
    b = ref.decode(buf, first_seq, 17, partial_tail=partial_tail)
    assert a.tobytes() == b.tobytes()
    st_c = c.stats
    assert st_c == ref.stats and c.type_counts == ref.type_counts
    assert (c.consumed, c.next_seq) == (ref.consumed, ref.next_seq)
    assert c.consumed <= len(buf)
    assert c.consumed == st_c["bytes"] + st_c["bytes_skipped"] + st_c["bytes_dropped"]
    assert (c.next_seq - first_seq) % 2**64 == st_c["messages"] + st_c["unknown_type"]
    assert st_c["messages"] == a.size and st_c["out_full"] == 0
    if not partial_tail:
        assert c.consumed == len(buf) and st_c["blocks"] == 1
    assert frame(a).size == st_c["bytes"]
    return st_c


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


def test_corpus_is_present_and_recorded() -> None:
    files = corpus_files()
    assert len(files) >= 8
    expected = json.loads(EXPECTED.read_text())
    assert sorted(expected) == sorted(p.name for p in files)


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_replays_with_its_recorded_counters(path: Path) -> None:
    data = path.read_bytes()
    stats = check(data)
    expected = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    if os.environ.get("ITCH_CORPUS_UPDATE") == "1":
        expected[path.name] = stats
        EXPECTED.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    assert stats == expected[path.name]
    check(data, partial_tail=True)
    check(data, first_seq=2**64 - 3)  # seq wraps like a uint64 in both decoders


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 20_000), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 20_000), st.integers(1, 40)),
    st.tuples(st.just("insert"), st.integers(0, 20_000), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("truncate"), st.integers(0, 20_000), st.just(0)),
)


def mutate(base: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    data = bytearray(base)
    for kind, pos, arg in ops:
        at = pos % (len(data) + 1)
        if kind == "set" and data:
            data[at % len(data)] = arg
        elif kind == "delete":
            del data[at : at + arg]
        elif kind == "insert":
            data[at:at] = arg
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """Length prefixes and type bytes that look right often enough to reach deep paths."""
    parts = []
    for _ in range(draw(st.integers(0, 30))):
        t = draw(st.sampled_from(TYPE_BYTES))
        spec = itch.MESSAGE_LENGTHS.get(chr(t))
        length = draw(
            st.one_of(
                st.just(spec or 12),
                st.sampled_from(LENGTHS),
                st.integers(0, 70),
                st.just(0xFFFF),
            )
        )
        body = draw(st.binary(min_size=0, max_size=max(0, min(length, 60) - 1)))
        msg = bytes([t]) + body
        parts.append(length.to_bytes(2, "big") + msg)
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@PROPS
@given(buf=st.binary(max_size=700), partial=st.booleans())
def test_arbitrary_bytes(buf: bytes, partial: bool) -> None:
    check(buf, partial_tail=partial)


@PROPS
@given(ops=st.lists(mutation, min_size=1, max_size=6), partial=st.booleans())
def test_mutated_streams(ops: list[tuple[str, int, Any]], partial: bool) -> None:
    check(mutate(BASE, ops), partial_tail=partial)


@PROPS
@given(buf=framed_garbage(), partial=st.booleans())
def test_structured_garbage(buf: bytes, partial: bool) -> None:
    check(buf, partial_tail=partial)


@PROPS
@given(
    ops=st.lists(mutation, max_size=4),
    cuts=st.lists(st.integers(0, 20_000), max_size=12),
    seqs=st.lists(st.integers(0, 2**64 - 1), min_size=13, max_size=13),
)
def test_blocks_agree_and_keep_bad_data_inside_its_block(
    ops: list[tuple[str, int, Any]], cuts: list[int], seqs: list[int]
) -> None:
    buf = mutate(BASE[:3_000], ops)
    edges = sorted({0, len(buf), *(c % (len(buf) + 1) for c in cuts)})
    offsets, lengths = edges[:-1], list(np.diff(edges))
    n = len(offsets)
    c, ref = ItchDecoder(capacity=1), ReferenceDecoder()
    a = c.decode_blocks(buf, offsets, lengths, seqs[:n], list(range(n)))
    b = ref.decode_blocks(buf, offsets, lengths, seqs[:n], list(range(n)))
    assert a.tobytes() == b.tobytes() and c.stats == ref.stats
    st_c = c.stats
    assert st_c["blocks"] == n
    assert st_c["bytes"] + st_c["bytes_skipped"] + st_c["bytes_dropped"] == len(buf)
    # Each block decodes exactly as it would alone.
    for k, (off, ln) in enumerate(zip(offsets, lengths, strict=True)):
        alone = ReferenceDecoder().decode(buf[off : off + ln], seqs[k], k)
        got = a[a["ts_ns"] == k]
        assert got.tobytes() == alone.tobytes()


@pytest.fixture(scope="module")
def shim() -> Any:
    return importlib.import_module("tectra._itch")


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(mutation, max_size=4), cap=st.integers(1, 9))
def test_small_capacity_resumed_equals_one_call(
    shim: Any, ops: list[tuple[str, int, Any]], cap: int
) -> None:
    ffi, lib = shim.ffi, shim.lib
    buf = mutate(BASE[:2_000], ops)
    hdr = ffi.new("itch_header_t *", {"type_id": ITCH_EVENT.type_id, "version": 1})
    stats = ffi.new("itch_stats_t *")
    consumed, next_seq = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    pos, seq, parts = 0, 1, []
    for _ in range(len(buf) + 2):
        out = new_records(ITCH_EVENT, cap + 2)
        out["seq"] = 0xDEAD
        chunk = buf[pos:]
        n = lib.itch_decode(
            hdr,
            ffi.from_buffer("uint8_t[]", chunk),
            len(chunk),
            seq,
            0,
            0,
            ffi.cast("itch_event_t *", ffi.from_buffer(out)),
            cap,
            stats,
            consumed,
            next_seq,
        )
        assert 0 <= n <= cap and (out["seq"][cap:] == 0xDEAD).all()
        parts.append(out[:n])
        pos, seq = pos + consumed[0], next_seq[0]
        if pos == len(buf):
            break
    whole = ReferenceDecoder().decode(buf)
    assert np.concatenate(parts).tobytes() == whole.tobytes()
