"""Tests for tectra.schema: layouts, sizes, the schema lock, codes and value helpers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tectra import schema
from tectra.schema import (
    LAYOUTS,
    RING_PROBE,
    TICK,
    FieldSpec,
    RecordLayout,
    SchemaError,
)

REPO = Path(__file__).resolve().parents[2]
LOCK_PATH = REPO / "tests" / "golden" / "schema_lock.json"
DOCS_PATH = REPO / "docs" / "schemas.md"
DOCS_BEGIN = "<!-- BEGIN GENERATED: python -m tectra.schema markdown -->"
DOCS_END = "<!-- END GENERATED -->"

ALL_LAYOUTS = pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _fields(layout: RecordLayout) -> list[tuple[str, np.dtype[Any], int]]:
    assert layout.dtype.fields is not None
    return [(name, sub, off) for name, (sub, off, *_) in layout.dtype.fields.items()]


# ------------------------------------------------------------------------------------------
# The schema lock: a layout may not change without a version bump
# ------------------------------------------------------------------------------------------


def _format_findings(findings: list[schema.LockFinding]) -> str:
    lines = [
        f"  [{'BLOCKING' if f.blocking else 'stale'}] {f.subject}: {f.message}" for f in findings
    ]
    return "\n".join(lines)


def test_schema_matches_lock() -> None:
    """Fails when any layout differs from tests/golden/schema_lock.json.

    A changed layout must bump its version and SCHEMA_VERSION; then rerun with
    TECTRA_UPDATE_SCHEMA_LOCK=1 to rewrite the lock (refused while a bump is missing).
    """
    lock = json.loads(LOCK_PATH.read_text()) if LOCK_PATH.exists() else None
    if os.environ.get(schema.LOCK_UPDATE_ENV) == "1":
        try:
            new_lock = schema.updated_lock(lock)
        except SchemaError as exc:
            pytest.fail(str(exc))
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        LOCK_PATH.write_text(json.dumps(new_lock, indent=2) + "\n")
        return
    if lock is None:
        pytest.fail(
            f"{LOCK_PATH} is missing: create it with "
            f"{schema.LOCK_UPDATE_ENV}=1 .venv/bin/pytest tests/unit/test_schema.py"
        )
    findings = schema.compare_to_lock(lock)
    assert not findings, (
        "tectra/schema.py and tests/golden/schema_lock.json disagree:\n"
        + _format_findings(findings)
        + f"\nBump versions for BLOCKING items, then run with {schema.LOCK_UPDATE_ENV}=1."
    )
    # Nothing hand-edited in the lock beyond what the checker compares.
    assert lock == schema.updated_lock(lock)


@pytest.fixture
def lock() -> dict[str, Any]:
    """A lock matching the code as it is, so these tests do not depend on the golden file."""
    return schema.lock_document()


def _tick_with(
    *, version: int | None = None, rename: str | None = None, itemsize: int | None = None
) -> RecordLayout:
    specs = [
        dataclasses.replace(f, name=rename) if rename and f.name == "bid_px" else f
        for f in TICK.fields
    ]
    dtype = np.dtype(
        {
            "names": [f.name for f in specs],
            "formats": [f.numpy_format for f in specs],
            "offsets": [f.offset for f in specs],
            "itemsize": itemsize or TICK.itemsize,
        }
    )
    return dataclasses.replace(
        TICK,
        version=TICK.version if version is None else version,
        dtype=dtype,
        fields=tuple(specs),
    )


def _patched(**layouts: RecordLayout) -> MappingProxyType[str, RecordLayout]:
    copy = dict(LAYOUTS)
    copy.update(layouts)
    return MappingProxyType(copy)


def test_lock_check_is_clean_for_unchanged_code(lock: dict[str, Any]) -> None:
    assert schema.compare_to_lock(lock) == []


def test_lock_check_reports_changed_layout_without_version_bump(
    lock: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "LAYOUTS", _patched(TICK=_tick_with(rename="bid_price")))
    findings = schema.compare_to_lock(lock)
    blocking = [f for f in findings if f.blocking]
    assert [f.subject for f in blocking] == ["TICK"]
    message = blocking[0].message
    assert "-bid_px <i8 @40" in message
    assert "+bid_price <i8 @40" in message
    assert f"bump TICK's version to {TICK.version + 1}" in message
    assert schema.LOCK_UPDATE_ENV in message
    with pytest.raises(SchemaError, match="refusing to rewrite"):
        schema.updated_lock(lock)


def test_lock_check_reports_itemsize_change_without_bump(lock: dict[str, Any]) -> None:
    layouts = _patched(TICK=_tick_with(itemsize=192))
    blocking = [f for f in schema.compare_to_lock(lock, layouts) if f.blocking]
    assert [f.subject for f in blocking] == ["TICK"]
    assert "itemsize 128 -> 192" in blocking[0].message


def test_lock_check_needs_schema_version_bump_too(lock: dict[str, Any]) -> None:
    layouts = _patched(TICK=_tick_with(version=TICK.version + 1, rename="bid_price"))
    findings = schema.compare_to_lock(lock, layouts)
    blocking = [f for f in findings if f.blocking]
    assert [f.subject for f in blocking] == ["SCHEMA_VERSION"]
    assert f"bump SCHEMA_VERSION to {schema.SCHEMA_VERSION + 1}" in blocking[0].message


def test_lock_update_allowed_after_both_bumps(lock: dict[str, Any]) -> None:
    layouts = _patched(TICK=_tick_with(version=TICK.version + 1, rename="bid_price"))
    version = schema.SCHEMA_VERSION + 1
    findings = schema.compare_to_lock(lock, layouts, version)
    assert findings and not any(f.blocking for f in findings)
    new_lock = schema.updated_lock(lock, layouts, version)
    assert new_lock["layouts"]["TICK"]["version"] == TICK.version + 1
    assert new_lock["schema_version"] == version
    assert schema.compare_to_lock(new_lock, layouts, version) == []


def test_lock_check_semantic_only_bump_is_allowed(lock: dict[str, Any]) -> None:
    # Same bytes, new meaning (e.g. a unit changed): bumping the version is how that is said.
    layouts = _patched(TICK=_tick_with(version=TICK.version + 1))
    findings = schema.compare_to_lock(lock, layouts, schema.SCHEMA_VERSION + 1)
    assert findings and not any(f.blocking for f in findings)


def test_lock_check_version_going_back_is_blocking(lock: dict[str, Any]) -> None:
    lock["layouts"]["TICK"]["version"] = TICK.version + 1
    lock["schema_version"] = schema.SCHEMA_VERSION + 1
    subjects = {f.subject for f in schema.compare_to_lock(lock) if f.blocking}
    assert subjects == {"TICK", "SCHEMA_VERSION"}


def test_lock_check_type_id_change_without_bump(lock: dict[str, Any]) -> None:
    layouts = _patched(TICK=dataclasses.replace(TICK, type_id=0x0013))
    blocking = [f for f in schema.compare_to_lock(lock, layouts) if f.blocking]
    assert [f.subject for f in blocking] == ["TICK"]
    assert "type_id 16 -> 19" in blocking[0].message


def test_lock_check_added_and_removed_layouts_need_schema_bump(lock: dict[str, Any]) -> None:
    extra = dataclasses.replace(RING_PROBE, name="RING_PROBE_WIDE", type_id=0x0003)
    added = _patched(RING_PROBE_WIDE=extra)
    assert [f.subject for f in schema.compare_to_lock(lock, added) if f.blocking] == [
        "SCHEMA_VERSION"
    ]
    assert not any(
        f.blocking for f in schema.compare_to_lock(lock, added, schema.SCHEMA_VERSION + 1)
    )

    removed = MappingProxyType({k: v for k, v in LAYOUTS.items() if k != "TRADE"})
    assert [f.subject for f in schema.compare_to_lock(lock, removed) if f.blocking] == [
        "SCHEMA_VERSION"
    ]
    new_lock = schema.updated_lock(lock, removed, schema.SCHEMA_VERSION + 1)
    assert new_lock["retired_type_ids"] == [schema.TRADE.type_id]


def test_lock_check_type_ids_are_never_reused(lock: dict[str, Any]) -> None:
    lock["retired_type_ids"] = [0x0003]
    reuse = dataclasses.replace(RING_PROBE, name="RING_PROBE_WIDE", type_id=0x0003)
    findings = schema.compare_to_lock(lock, _patched(RING_PROBE_WIDE=reuse), 99)
    blocking = [f for f in findings if f.blocking]
    assert [f.subject for f in blocking] == ["RING_PROBE_WIDE"]
    assert "never reused" in blocking[0].message


def test_lock_check_enum_renumbering_needs_schema_bump(lock: dict[str, Any]) -> None:
    lock["enums"]["Side"]["BUY"] = 1
    blocking = [f for f in schema.compare_to_lock(lock) if f.blocking]
    assert [f.subject for f in blocking] == ["SCHEMA_VERSION"]
    assert "enum Side" in blocking[0].message


def test_lock_check_new_enum_member_only_makes_lock_stale(lock: dict[str, Any]) -> None:
    del lock["enums"]["RejectReason"]["VENUE_REJECT"]
    findings = schema.compare_to_lock(lock)
    assert [(f.subject, f.blocking) for f in findings] == [("RejectReason", False)]


def test_malformed_lock_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="malformed"):
        schema.compare_to_lock({"layouts": {}})


# ------------------------------------------------------------------------------------------
# Sizes, alignment and the common header
# ------------------------------------------------------------------------------------------

EXPECTED_SIZES = {
    "RING_PROBE": 64,
    "LIFECYCLE_EVENT": 128,
    "TICK": 128,
    "BOOK_UPDATE": 128,
    "TRADE": 128,
    "ITCH_EVENT": 128,
    "ORDER_REQUEST": 192,
    "RISK_VERDICT": 64,
    "EXECUTION_REPORT": 256,
    "KILL_COMMAND": 128,
    "KILL_ACK": 128,
}


def test_registry_holds_the_documented_records() -> None:
    assert {name: lay.itemsize for name, lay in LAYOUTS.items()} == EXPECTED_SIZES


@ALL_LAYOUTS
def test_ring_records_are_whole_cache_lines(layout: RecordLayout) -> None:
    assert layout.itemsize % 8 == 0
    if layout.crosses_ring:
        assert layout.itemsize % 64 == 0


@ALL_LAYOUTS
def test_int64_fields_are_8_byte_aligned(layout: RecordLayout) -> None:
    for name, sub, offset in _fields(layout):
        if sub.base.kind in "iu":
            assert offset % sub.base.itemsize == 0, name
            if sub.base.itemsize == 8:
                assert offset % 8 == 0, name


@ALL_LAYOUTS
def test_fields_are_explicit_little_endian_integers_or_bytes(layout: RecordLayout) -> None:
    for name, sub, _ in _fields(layout):
        assert sub.base.kind in "iuS", name
        if sub.base.kind in "iu" and sub.base.itemsize > 1:
            assert sub.base.str.startswith("<"), name


@ALL_LAYOUTS
def test_fields_do_not_overlap(layout: RecordLayout) -> None:
    spans = sorted((off, off + sub.itemsize) for _, sub, off in _fields(layout))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    assert spans[-1][1] <= layout.itemsize


@ALL_LAYOUTS
def test_common_header_first(layout: RecordLayout) -> None:
    head = sorted(_fields(layout), key=lambda f: f[2])[:5]
    assert [(n, s.str, o) for n, s, o in head] == [
        ("type_id", "<u2", 0),
        ("version", "<u2", 2),
        ("flags", "<u4", 4),
        ("seq", "<u8", 8),
        ("ts_ns", "<i8", 16),
    ]
    assert schema.HEADER_DTYPE.itemsize == schema.HEADER_SIZE == 24


@ALL_LAYOUTS
def test_every_field_documented(layout: RecordLayout) -> None:
    assert layout.doc
    assert [f.name for f in layout.fields] == list(layout.dtype.names or ())
    assert all(f.doc for f in layout.fields)


@ALL_LAYOUTS
def test_time_fields_are_int64_ns(layout: RecordLayout) -> None:
    for name, sub, _ in _fields(layout):
        if name.endswith("_ns"):
            assert sub.str == "<i8", name


@ALL_LAYOUTS
def test_symbol_fields_are_8_bytes_beside_an_instrument_id(layout: RecordLayout) -> None:
    names = {n: s for n, s, _ in _fields(layout)}
    if "symbol" in names:
        assert names["symbol"].str == "|S8"
        assert names["instrument_id"].str == "<u4"


def test_ring_probe_is_one_cache_line() -> None:
    assert RING_PROBE.itemsize == 64
    assert RING_PROBE.dtype.fields is not None
    assert RING_PROBE.dtype.fields["payload"][0].shape == (3,)


def test_type_ids_unique_and_resolvable() -> None:
    ids = [lay.type_id for lay in LAYOUTS.values()]
    assert len(ids) == len(set(ids))
    assert 0 not in ids
    for layout in LAYOUTS.values():
        assert schema.layout_by_type_id(layout.type_id) is layout
        assert schema.layout_by_type_id(layout.type_id, layout.version) is layout


def test_unknown_type_id_and_version_are_refused() -> None:
    with pytest.raises(SchemaError, match="unknown record type_id"):
        schema.layout_by_type_id(0)
    with pytest.raises(SchemaError, match="not supported"):
        schema.layout_by_type_id(TICK.type_id, TICK.version + 1)


def test_schema_version_covers_layout_versions() -> None:
    assert all(lay.version <= schema.SCHEMA_VERSION for lay in LAYOUTS.values())


# ------------------------------------------------------------------------------------------
# A layout error fails loudly
# ------------------------------------------------------------------------------------------


def _layout_with(body: list[FieldSpec], itemsize: int, *, crosses_ring: bool = True) -> Any:
    specs = [*RING_PROBE.fields[:5], *body]
    dtype = np.dtype(
        {
            "names": [f.name for f in specs],
            "formats": [f.numpy_format for f in specs],
            "offsets": [f.offset for f in specs],
            "itemsize": itemsize,
        }
    )
    return RecordLayout("BROKEN", 0x7FFF, 1, dtype, crosses_ring, "doc", tuple(specs))


@pytest.mark.parametrize(
    ("body", "itemsize", "match"),
    [
        ([FieldSpec("x", "<i8", 24, "d")], 72, "not a multiple of 64"),
        ([FieldSpec("x", "<i8", 28, "d")], 64, "not aligned to 8"),
        ([FieldSpec("x", "<f8", 24, "d")], 64, "no floats"),
        ([FieldSpec("x", ">i8", 24, "d")], 64, "little-endian"),
        ([FieldSpec("x", "<i8", 24, "d"), FieldSpec("y", "<i4", 28, "d")], 64, "overlaps"),
        ([FieldSpec("BadName", "<i8", 24, "d")], 64, "lower_snake_case"),
        ([FieldSpec("x", "<i8", 24, "")], 64, "undocumented"),
        ([FieldSpec("x", "i1", 24, "d", codes=schema.RejectReason)], 64, "do not fit"),
    ],
)
def test_invalid_layouts_raise(body: list[FieldSpec], itemsize: int, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        _layout_with(body, itemsize)


def test_layout_without_header_raises() -> None:
    dtype = np.dtype({"names": ["x"], "formats": ["<i8"], "offsets": [0], "itemsize": 64})
    with pytest.raises(SchemaError, match="common header"):
        RecordLayout("NO_HEADER", 0x7FFE, 1, dtype, True)


def test_registry_refuses_duplicate_type_ids() -> None:
    twin = dataclasses.replace(RING_PROBE, name="TWIN")
    with pytest.raises(SchemaError, match="used by both"):
        schema.build_registry([RING_PROBE, twin])


def test_module_import_fails_on_a_bad_offset() -> None:
    source = Path(schema.__file__).read_text()
    good = 'F("bid_qty", "<i8", 48,'
    assert good in source
    broken = source.replace(good, 'F("bid_qty", "<i8", 44,')
    module = types.ModuleType("tectra_schema_broken")
    sys.modules[module.__name__] = module
    try:
        # The exec'd copy has its own SchemaError class; it is still a ValueError.
        with pytest.raises(ValueError, match="layout TICK: field 'bid_qty': offset 44"):
            exec(compile(broken, "schema_broken.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


# ------------------------------------------------------------------------------------------
# Allocation and reading
# ------------------------------------------------------------------------------------------


@ALL_LAYOUTS
def test_new_records_fill_the_header(layout: RecordLayout) -> None:
    records = schema.new_records(layout.name, 5)
    assert records.dtype == layout.dtype
    assert records.shape == (5,)
    assert (records["type_id"] == layout.type_id).all()
    assert (records["version"] == layout.version).all()
    raw = records.view(np.uint8).reshape(5, layout.itemsize)
    assert not raw[:, 4:].any()  # everything after type_id/version is zero
    assert schema.new_records(layout, 0).shape == (0,)


def test_new_records_refuses_bad_arguments() -> None:
    with pytest.raises(SchemaError, match="unknown record layout"):
        schema.new_records("NOPE", 1)
    with pytest.raises(SchemaError, match=">= 0"):
        schema.new_records("TICK", -1)


def test_view_records_round_trip_and_refusals() -> None:
    records = schema.new_records("TRADE", 4)
    records["seq"] = np.arange(1, 5)
    view = schema.view_records(records.tobytes(), "TRADE")
    assert (view["seq"] == [1, 2, 3, 4]).all()
    assert np.shares_memory(schema.view_records(records, "TRADE"), records)
    assert (schema.view_records(records.view(np.uint8), "TRADE") == records).all()

    with pytest.raises(SchemaError, match="whole number"):
        schema.view_records(records.tobytes()[:-1], "TRADE")
    with pytest.raises(SchemaError, match="expected TRADE"):
        schema.view_records(schema.new_records("TICK", 1).tobytes(), "TRADE")
    records["version"][2] = 9
    with pytest.raises(SchemaError, match="record 2 of 4"):
        schema.view_records(records.tobytes(), "TRADE")


def test_mixed_stream_can_be_walked_by_header() -> None:
    stream = b"".join(
        schema.new_records(name, 1).tobytes() for name in ("TICK", "RISK_VERDICT", "KILL_ACK")
    )
    offset, seen = 0, []
    while offset < len(stream):
        header = np.frombuffer(stream, schema.HEADER_DTYPE, count=1, offset=offset)[0]
        layout = schema.layout_by_type_id(int(header["type_id"]), int(header["version"]))
        seen.append(layout.name)
        offset += layout.itemsize
    assert seen == ["TICK", "RISK_VERDICT", "KILL_ACK"]


def test_record_to_dict_decodes_codes_and_text() -> None:
    rec = schema.new_records("ORDER_REQUEST", 1)
    rec["side"] = schema.Side.BUY
    rec["ord_type"] = schema.OrdType.LIMIT
    rec["symbol"] = schema.encode_symbol("AAPL")
    rec["cl_ord_id"] = schema.encode_text("ORD-1", schema.CL_ORD_ID_WIDTH)
    rec["price"] = schema.price_to_fixed("189.25")
    rec["time_in_force"] = 200  # not a TimeInForce value: kept as an int
    out = schema.record_to_dict(rec[0])
    assert out["side"] is schema.Side.BUY
    assert out["ord_type"] is schema.OrdType.LIMIT
    assert out["symbol"] == "AAPL"
    assert out["cl_ord_id"] == "ORD-1"
    assert out["price"] == 1_892_500
    assert out["time_in_force"] == 200
    assert out["account"] == ""


# ------------------------------------------------------------------------------------------
# RING_PROBE checksum
# ------------------------------------------------------------------------------------------


def _reference_checksum(words: list[int]) -> int:
    h = 0xCBF29CE484222325
    for w in words:
        h = ((h ^ (w & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(INT64_MIN, INT64_MAX)


@given(st.lists(st.tuples(u64, i64, u64, u64, u64), min_size=1, max_size=20))
def test_probe_checksum_matches_reference(rows: list[tuple[int, int, int, int, int]]) -> None:
    records = schema.new_records(RING_PROBE, len(rows))
    for i, (seq, send_ns, a, b, c) in enumerate(rows):
        records["seq"][i] = seq
        records["send_ns"][i] = send_ns
        records["payload"][i] = [a, b, c]
    got = schema.probe_checksum(records)
    assert got.dtype == np.uint64
    assert [int(x) for x in got] == [_reference_checksum(list(row)) for row in rows]


@given(st.tuples(u64, i64, u64, u64, u64), st.integers(0, 4), st.integers(0, 63))
def test_probe_checksum_detects_any_single_bit_flip(
    row: tuple[int, int, int, int, int], word: int, bit: int
) -> None:
    records = schema.new_records(RING_PROBE, 1)
    records["seq"], records["send_ns"] = row[0], row[1]
    records["payload"][0] = row[2:]
    records["checksum"] = schema.probe_checksum(records)
    raw = records.view(np.uint64).reshape(
        -1
    )  # words: 0 type/version/flags, 1 seq, 2 ts_ns, 3 send_ns, 4-6 payload, 7 checksum
    raw[[1, 3, 4, 5, 6][word]] ^= np.uint64(1 << bit)
    assert schema.probe_checksum(records)[0] != records["checksum"][0]


def test_probe_checksum_refuses_other_records() -> None:
    with pytest.raises(SchemaError):
        schema.probe_checksum(schema.new_records("TICK", 1))


# ------------------------------------------------------------------------------------------
# Fingerprints
# ------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_sensitive() -> None:
    base: Any = {
        "names": ["a", "b"],
        "formats": ["<i8", "<u4"],
        "offsets": [0, 8],
        "itemsize": 16,
    }
    fp = schema.dtype_fingerprint(np.dtype(base))
    assert fp == schema.dtype_fingerprint(np.dtype(base.copy()))
    assert len(fp) == 64 and int(fp, 16) >= 0
    variants: list[Any] = [
        {**base, "names": ["a", "c"]},
        {**base, "formats": ["<i8", "<i4"]},
        {**base, "formats": [">i8", "<u4"]},
        {**base, "offsets": [0, 12]},
        {**base, "itemsize": 24},
    ]
    for variant in variants:
        assert schema.dtype_fingerprint(np.dtype(variant)) != fp, variant


def test_fingerprint_ignores_declaration_order() -> None:
    one = np.dtype({"names": ["a", "b"], "formats": ["<i8", "<i8"], "offsets": [0, 8]})
    two = np.dtype({"names": ["b", "a"], "formats": ["<i8", "<i8"], "offsets": [8, 0]})
    assert schema.dtype_fingerprint(one) == schema.dtype_fingerprint(two)


# ------------------------------------------------------------------------------------------
# Codes
# ------------------------------------------------------------------------------------------


def test_lifecycle_state_values_are_fixed() -> None:
    assert {s.name: int(s) for s in schema.LifecycleState} == {
        "INIT": 0,
        "WARMUP": 1,
        "READY": 2,
        "DEGRADED": 3,
        "HALTED": 4,
    }


def test_protocol_codes_are_ascii_code_points() -> None:
    assert chr(schema.Side.BUY) == "B" and chr(schema.Side.SELL) == "S"
    assert chr(schema.OrdType.LIMIT) == "2"
    assert chr(schema.TimeInForce.IOC) == "3"
    assert chr(schema.ExecType.TRADE) == "F" and chr(schema.ExecType.REJECTED) == "8"
    assert chr(schema.OrdStatus.PARTIALLY_FILLED) == "1"
    assert chr(schema.OrdStatus.FILLED) == "2"
    assert chr(schema.TradeKind.EXECUTED) == "E"
    assert chr(schema.TradingState.HALTED) == "H"


def test_reject_taxonomy_and_kill_codes() -> None:
    required = {
        "INVALID_SYMBOL",
        "PRICE_BANDS",
        "MAX_SIZE",
        "MAX_NOTIONAL",
        "CREDIT",
        "POSITION",
        "RATE_LIMIT",
        "SELF_MATCH",
        "RESTRICTED",
        "STALE_REFERENCE",
        "HALTED",
        "QUEUE_FULL",
        "DEGRADED",
        "UNKNOWN",
    }
    assert required <= set(schema.RejectReason.__members__)
    assert schema.RejectReason["OK"] is schema.RejectReason.NONE
    assert int(schema.RejectReason.NONE) == 0
    assert {"FIRM", "VENUE", "ACCOUNT", "STRATEGY", "SYMBOL"} <= set(schema.KillScope.__members__)
    assert {"BLOCK", "CANCEL_ALL", "SLOW", "ISOLATE_VENUE", "CLEAR"} <= set(
        schema.KillAction.__members__
    )


def test_zeroed_records_are_not_valid_orders_or_commands() -> None:
    order = schema.new_records("ORDER_REQUEST", 1)[0]
    assert order["action"] == schema.OrderAction.NONE and order["side"] == schema.Side.NONE
    kill = schema.new_records("KILL_COMMAND", 1)[0]
    assert kill["action"] == schema.KillAction.NONE and kill["scope"] == schema.KillScope.NONE


# ------------------------------------------------------------------------------------------
# Symbols and text
# ------------------------------------------------------------------------------------------

symbols = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8)


@given(symbols)
def test_symbol_round_trip(symbol: str) -> None:
    raw = schema.encode_symbol(symbol)
    assert len(raw) == 8 and raw.startswith(symbol.encode())
    assert raw[len(symbol) :] == b" " * (8 - len(symbol))
    assert schema.decode_symbol(raw) == symbol
    assert schema.encode_symbol(schema.decode_symbol(raw)) == raw


@given(symbols)
def test_symbol_survives_a_record_field(symbol: str) -> None:
    rec = schema.new_records("TICK", 1)
    rec["symbol"] = schema.encode_symbol(symbol)
    assert schema.decode_symbol(rec["symbol"][0]) == symbol


@pytest.mark.parametrize("bad", ["", "TOOLONGSY", "A B", "ÄPPL", "A\x00", 7])
def test_bad_symbols_are_refused(bad: Any) -> None:
    with pytest.raises(SchemaError):
        schema.encode_symbol(bad)


@pytest.mark.parametrize("bad", [b"", b"        ", b"AB\xffC", b"123456789"])
def test_bad_symbol_bytes_are_refused(bad: bytes) -> None:
    with pytest.raises(SchemaError):
        schema.decode_symbol(bad)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20))
def test_text_round_trip(text: str) -> None:
    raw = schema.encode_text(text, 20)
    assert len(raw) == 20
    assert schema.decode_text(raw) == text.rstrip("\x00")


def test_text_too_long_or_not_ascii_is_refused() -> None:
    with pytest.raises(SchemaError, match="longer"):
        schema.encode_text("x" * 21, 20)
    with pytest.raises(SchemaError, match="ASCII"):
        schema.encode_text("é", 20)


# ------------------------------------------------------------------------------------------
# Prices
# ------------------------------------------------------------------------------------------


@given(i64)
def test_fixed_price_round_trip(value: int) -> None:
    text = schema.fixed_to_str(value)
    assert schema.price_to_fixed(text) == value
    assert schema.price_to_fixed(Decimal(text)) == value
    assert schema.fixed_to_str(np.int64(value)) == text


@given(st.decimals(min_value=-(10**14), max_value=10**14, places=4))
def test_decimal_prices_are_exact(price: Decimal) -> None:
    expected = int(price.scaleb(4))
    assert schema.price_to_fixed(price) == expected
    assert schema.price_to_fixed(str(price)) == expected


@given(st.integers(-(10**15), 10**15).filter(lambda n: n % 10 != 0))
def test_more_than_four_decimals_is_refused(n: int) -> None:
    sign = "-" if n < 0 else ""
    text = f"{sign}{abs(n) // 10**5}.{abs(n) % 10**5:05d}"
    with pytest.raises(SchemaError, match="more than 4 decimal"):
        schema.price_to_fixed(text)
    with pytest.raises(SchemaError, match="more than 4 decimal"):
        schema.price_to_fixed(Decimal(text))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12.34", 123_400),
        ("-0.0001", -1),
        ("0", 0),
        ("-0", 0),
        (".5", 5_000),
        ("5.", 50_000),
        ("+1.2", 12_000),
        ("1.23450000", 12_345),  # trailing zeros are not extra precision
        ("922337203685477.5807", INT64_MAX),
        ("-922337203685477.5808", INT64_MIN),
    ],
)
def test_price_examples(text: str, value: int) -> None:
    assert schema.price_to_fixed(text) == value


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "1e5",
        "1_000",
        " 1",
        "1.2.3",
        "--1",
        "NaN",
        "inf",
        "0x10",
        "922337203685477.5808",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1E+30"),
        1.5,
        np.float64(2.0),
        True,
        None,
    ],
)
def test_bad_prices_raise_schema_error(bad: Any) -> None:
    with pytest.raises(SchemaError):
        schema.price_to_fixed(bad)
    assert issubclass(SchemaError, ValueError)


def test_integer_prices_are_whole_units() -> None:
    assert schema.price_to_fixed(12) == 120_000
    assert schema.price_to_fixed(np.int64(-3)) == -30_000


def test_fixed_to_str_examples_and_refusals() -> None:
    assert schema.fixed_to_str(123_400) == "12.34"
    assert schema.fixed_to_str(1_000_000) == "100"
    assert schema.fixed_to_str(-5) == "-0.0005"
    assert schema.fixed_to_str(INT64_MIN) == "-922337203685477.5808"
    for bad in (2**63, 1.5, True):
        with pytest.raises(SchemaError):
            schema.fixed_to_str(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Generated artefacts: docs tables and C header
# ------------------------------------------------------------------------------------------


def test_docs_tables_match_the_code() -> None:
    text = DOCS_PATH.read_text()
    assert DOCS_BEGIN in text and DOCS_END in text, "docs/schemas.md lost its generated markers"
    generated = text.split(DOCS_BEGIN, 1)[1].split(DOCS_END, 1)[0].strip()
    assert generated == schema.render_markdown().strip(), (
        "docs/schemas.md is out of date: replace the generated block with the output of "
        "`PYTHONPATH=. .venv/bin/python -m tectra.schema markdown`"
    )


def _compile(tmp_path: Path, compiler: str, header: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tectra_schema.h").write_text(header)
    src = tmp_path / "check.c"
    src.write_text('#include "tectra_schema.h"\nint main(void) { return 0; }\n')
    return subprocess.run(
        [compiler, "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", str(src)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_c_header_matches_numpy_layouts(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler")
    header = schema.render_c_header()
    result = _compile(tmp_path, compiler, header)
    assert result.returncode == 0, result.stderr
    # The static asserts bite: a wrong offset in the header must not compile.
    bad = header.replace(
        "offsetof(tectra_tick_t, bid_qty) == 48", "offsetof(tectra_tick_t, bid_qty) == 44"
    )
    assert bad != header
    assert _compile(tmp_path, compiler, bad).returncode != 0


def test_cli_prints_generated_artefacts(capsys: pytest.CaptureFixture[str]) -> None:
    runs: list[tuple[str, Callable[[], str]]] = [
        ("markdown", schema.render_markdown),
        ("c-header", schema.render_c_header),
    ]
    for arg, render in runs:
        assert schema.main([arg]) == 0
        assert capsys.readouterr().out == render()
    assert schema.main(["nope"]) == 2
