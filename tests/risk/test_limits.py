"""Limits files, validation messages, the SQLite store, versions and atomic application."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tectra.risk import limits as limits_mod
from tectra.risk.limits import (
    DEFAULT_PARAMS,
    LimitsError,
    LimitsSpec,
    LimitsStore,
    compile_limits,
)
from tectra.risk.rules import Rule, RuleMode
from tests.risk._helpers import AAPL, MSFT, base_doc, doc_with

TOML = """
description = "desk limits"
restricted = ["GME"]

[defaults]
tick_size = "0.01"
max_qty = 10_000
max_notional = 1_000_000
band_bps = 500
band_ticks = 0
max_ref_age_ns = 5_000_000_000
credit_limit = "5000000.50"
max_position = 50_000
max_strategy_position = 20_000
session_rate_per_s = 100
session_burst = 200
venue_rate_per_s = 1000
venue_burst = 2000

[modes]
self_match = "dry_run"

[instruments.AAPL]
id = 1
max_qty = 5000
band_ticks = 3

[instruments.AAPL.modes]
price_band = "disabled"

[instruments.GME]
id = 9

[accounts.ACC7]
id = 7
credit_limit = 250000
max_notional = "12.5"

[venues.XNAS]
id = 2
rate_per_s = 500
burst = 50

[venues.XNAS.modes]
throttle_venue = "dry_run"

[sessions.CLIENT1]
id = 3
burst = 10
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def refused(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(LimitsError) as info:
        LimitsSpec.from_document(doc)
    return list(info.value.problems)


# ---- parsing and compilation ---------------------------------------------------------------


def test_toml_file_round_trip_and_compiled_arrays(tmp_path: Path) -> None:
    store = LimitsStore(tmp_path / "limits.db")
    assert store.version() == 0
    assert store.apply_file(write(tmp_path, "l.toml", TOML)) == 1
    lim = store.load()
    assert lim.version == 1
    assert lim.spec.description == "desk limits"
    row = dict(zip(limits_mod.INSTRUMENT_COLUMNS, lim.instruments[1].tolist(), strict=True))
    assert row["known"] == 1 and row["max_qty"] == 5000 and row["band_ticks"] == 3
    assert row["tick_size"] == 100 and row["max_notional"] == 1_000_000 * 10_000
    assert row["restricted"] == 0
    assert lim.instruments[9, limits_mod.INSTRUMENT_COLUMNS.index("restricted")] == 1
    assert lim.instruments[0, 0] == 0  # id 0 not configured
    acct = dict(zip(limits_mod.ACCOUNT_COLUMNS, lim.accounts[7].tolist(), strict=True))
    assert acct == {
        "credit_limit": 250_000 * 10_000,
        "max_position": 50_000,
        "max_strategy_position": 20_000,
        "max_qty": 0,
        "max_notional": 125_000,
    }
    assert lim.account_default.tolist() == [50_000_005_000, 50_000, 20_000, 0, 0]
    assert lim.venues[2].tolist() == [500, 50]
    assert lim.venue_default.tolist() == [1000, 2000]
    assert lim.sessions[3].tolist() == [100, 10]
    assert lim.mode(Rule.SELF_MATCH) == RuleMode.DRY_RUN
    assert lim.mode(Rule.PRICE_BAND, instrument_id=1) == RuleMode.DISABLED
    assert lim.mode(Rule.THROTTLE_VENUE, venue_id=2) == RuleMode.DRY_RUN
    assert lim.mode(Rule.THROTTLE_VENUE, venue_id=1) == RuleMode.ENFORCE
    assert lim.mode(Rule.HALT) == RuleMode.ENFORCE
    assert lim.instrument_id("AAPL") == 1 and lim.account_ids["ACC7"] == 7
    for arr in (lim.instruments, lim.accounts, lim.modes_default, lim.modes_instrument):
        assert not arr.flags.writeable
    # The spec survives the trip through SQLite and back to a document.
    again = LimitsSpec.from_document(lim.spec.to_document())
    assert again.digest() == lim.spec.digest() == store.history()[0].sha256


def test_json_file_is_accepted(tmp_path: Path) -> None:
    store = LimitsStore(tmp_path / "limits.db")
    path = write(tmp_path, "l.json", json.dumps(base_doc()))
    assert store.apply_file(path) == 1
    assert store.load().symbols == {"AAPL": 1, "MSFT": 2, "TSLA": 3}


def test_the_example_message_from_the_brief() -> None:
    doc = doc_with({"accounts.ACC7": {"id": 7, "max_notional": -5}})
    assert "accounts.ACC7.max_notional = -5: must be > 0" in refused(doc)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"defaults.max_qty": 0}, "defaults.max_qty = 0: must be > 0"),
        ({"defaults.max_qty": 1.5}, "defaults.max_qty = 1.5: must be an integer, not a float"),
        (
            {"defaults.credit_limit": 1e9},
            "defaults.credit_limit = 1000000000.0: must be an integer or a decimal string, "
            "not a float",
        ),
        ({"defaults.max_qty": "10"}, 'defaults.max_qty = "10": must be an integer'),
        ({"defaults.max_qty": True}, "defaults.max_qty = True: must be an integer, not bool"),
        ({"defaults.band_bps": -1}, "defaults.band_bps = -1: must be >= 0"),
        ({"defaults.tick_size": "0.00001"}, 'defaults.tick_size = "0.00001": price'),
        ({"defaults.max_qtty": 5}, "defaults.max_qtty: unknown parameter"),
        ({"instruments.AAPL.max_qyt": 5}, "instruments.AAPL.max_qyt: unknown parameter"),
        (
            {"instruments.MSFT.id": AAPL},
            "instruments.MSFT.id = 1: already used by instruments.AAPL",
        ),
        (
            {"instruments.NVDA": {"max_qty": 5}},
            "instruments.NVDA.id: missing (an integer id is required)",
        ),
        ({"instruments.TOOLONGSYM": {"id": 40}}, "instruments.TOOLONGSYM: symbol"),
        ({"venues.XNAS.id": -1}, "venues.XNAS.id = -1: must be in [0, 65536)"),
        ({"sessions.S1.burst": 0}, "sessions.S1.burst = 0: must be > 0"),
        ({"sessions.S1.rate_per_s": 10**10}, "sessions.S1.rate_per_s = 10000000000: must be <="),
        ({"modes.credit": "off"}, 'modes.credit = "off": must be one of enforce, dry_run'),
        ({"modes.halt": "disabled"}, "modes.halt: rule halt is always enforced"),
        ({"modes.credits": "enforce"}, "modes.credits: unknown rule"),
        ({"instruments.AAPL.modes.halt": "dry_run"}, "instruments.AAPL.modes.halt: rule halt"),
        ({"accounts.ACC1.modes": {}}, "accounts.ACC1.modes: unknown parameter"),
        ({"restricted": ["GME", 5]}, "restricted[1] = 5: must be a symbol string"),
        ({"restricted": "GME"}, 'restricted = "GME": must be a list of symbols'),
        ({"version": 3}, "version: unknown top-level key"),
        (
            {"defaults.band_bps": 0},
            "instruments.AAPL: band_bps and band_ticks are both 0",
        ),
    ],
)
def test_bad_entries_are_named(changes: dict[str, Any], message: str) -> None:
    problems = refused(doc_with(changes))
    assert any(p.startswith(message) for p in problems), problems


def test_missing_defaults_are_each_named() -> None:
    doc = base_doc()
    del doc["defaults"]["credit_limit"]
    del doc["defaults"]["venue_burst"]
    problems = refused(doc)
    assert "defaults.credit_limit: missing (every default limit must be set)" in problems
    assert "defaults.venue_burst: missing (every default limit must be set)" in problems
    assert refused({"instruments": {}})[0].startswith("defaults: missing table")
    assert set(DEFAULT_PARAMS) == set(base_doc()["defaults"])


def test_every_problem_is_reported_at_once() -> None:
    doc = doc_with({"defaults.max_qty": -1, "accounts.ACC1.credit_limit": 0, "modes.x": "y"})
    assert len(refused(doc)) == 3


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    store = LimitsStore(tmp_path / "limits.db")
    cases = [
        write(tmp_path, "bad.toml", "[defaults\nmax_qty = 1"),
        write(tmp_path, "bad.json", "{"),
        write(tmp_path, "list.json", "[1, 2]"),
        write(tmp_path, "limits.yaml", "defaults: {}"),
        tmp_path / "absent.toml",
    ]
    for path in cases:
        with pytest.raises(LimitsError) as info:
            store.apply_file(path)
        assert str(path) in str(info.value)
    assert store.version() == 0


# ---- the store -----------------------------------------------------------------------------


def test_load_before_any_apply_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(LimitsError, match="no limits have been applied"):
        LimitsStore(tmp_path / "limits.db").load()


def test_versions_increase_and_a_bad_file_keeps_the_old_limits(tmp_path: Path) -> None:
    store = LimitsStore(tmp_path / "limits.db")
    good = write(tmp_path, "good.toml", TOML)
    assert store.apply_file(good) == 1
    assert store.apply_document(doc_with({"defaults.max_qty": 77}), source="ops") == 2
    before = store.load()
    bad = write(tmp_path, "bad.toml", TOML.replace("max_qty = 5000", "max_qty = -3"))
    with pytest.raises(LimitsError, match=r"instruments\.AAPL\.max_qty = -3: must be > 0"):
        store.apply_file(bad)
    after = store.load()
    assert after.version == 2 == store.version()
    assert after.spec.digest() == before.spec.digest()
    assert np.array_equal(after.instruments, before.instruments)
    assert [(h.version, h.source) for h in store.history()] == [(1, str(good)), (2, "ops")]
    # A reopened store sees the same version.
    assert LimitsStore(tmp_path / "limits.db").load().version == 2


def test_a_failure_inside_the_transaction_rolls_everything_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LimitsStore(tmp_path / "limits.db")
    store.apply_document(base_doc())
    before = store.load()
    real = limits_mod._write_spec

    def half_then_fail(conn: sqlite3.Connection, spec: LimitsSpec) -> None:
        real(conn, spec)  # every table rewritten ...
        raise RuntimeError("disk full")  # ... and then the commit never happens

    monkeypatch.setattr(limits_mod, "_write_spec", half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        store.apply_document(doc_with({"defaults.max_qty": 3, "restricted": ["AAPL"]}))
    monkeypatch.undo()
    after = store.load()
    assert after.version == 1 == store.version()
    assert after.spec.digest() == before.spec.digest()


def test_hand_edited_rows_are_refused_on_load(tmp_path: Path) -> None:
    store = LimitsStore(tmp_path / "limits.db")
    store.apply_document(base_doc())
    with sqlite3.connect(tmp_path / "limits.db") as conn:
        conn.execute("UPDATE limits_instruments SET max_qty = -4 WHERE name = 'MSFT'")
    with pytest.raises(LimitsError, match=r"instruments\.MSFT\.max_qty = -4"):
        store.load()


def test_readers_see_whole_versions_while_a_writer_applies(tmp_path: Path) -> None:
    """Every load() returns one applied version exactly (never a mix of two)."""
    store = LimitsStore(tmp_path / "limits.db")
    docs = {
        v: doc_with({"defaults.max_qty": 100 + v, "instruments.MSFT.max_qty": 200 + v})
        for v in range(1, 31)
    }
    store.apply_document(docs[1])
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        reader_store = LimitsStore(tmp_path / "limits.db")
        while not stop.is_set():
            lim = reader_store.load()
            got = (int(lim.instruments[AAPL, 3]), int(lim.instruments[MSFT, 3]))
            if got != (100 + lim.version, 200 + lim.version):
                errors.append(f"version {lim.version} read {got}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for v in range(2, 31):
        assert store.apply_document(docs[v]) == v
    stop.set()
    for t in threads:
        t.join()
    assert errors == []


def test_compile_is_pure() -> None:
    spec = LimitsSpec.from_document(base_doc())
    a, b = compile_limits(spec, 4), compile_limits(spec, 4)
    for name in ("instruments", "accounts", "sessions", "venues", "modes_default"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
