"""RiskEngine unit tests: each rule by example, fail-closed cases, modes, the execution
lifecycle (fills, cancels, rejects, replaces, busts), snapshots and the API boundary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tectra.risk.engine import (
    STATE_ARRAY_NAMES,
    EngineConfig,
    RiskArgumentError,
    RiskEngine,
    RiskStateError,
)
from tectra.risk.references import REF_MISSING, InMemoryReferences, Reference
from tectra.risk.rules import Rule
from tectra.schema import (
    ExecType,
    KillScope,
    OrderAction,
    OrdType,
    RecordFlag,
    RejectReason,
    Side,
    Verdict,
    encode_symbol,
    new_records,
)
from tests.risk._helpers import (
    AAPL,
    ACC,
    ACC2,
    MSFT,
    NOW,
    PX,
    SMALL,
    VENUE,
    base_doc,
    doc_with,
    exact_copy,
    fill,
    fresh_refs,
    limits_of,
    make_engine,
    one,
    orders,
    report,
    strip_latency,
    verdict_tuple,
)

PASS = (Verdict.PASS, 0, 0, 0)


def rejected(reason: RejectReason, rule: Rule) -> tuple[int, int, int, int]:
    return (Verdict.REJECT, reason, rule, 0)


def judge(
    engine: RiskEngine, now: int = NOW, halted: bool = False, **fields: Any
) -> tuple[int, ...]:
    v = engine.check(one(**fields), now, halted=halted)
    return verdict_tuple(v[0])


# ---- verdict records -----------------------------------------------------------------------


def test_verdict_record_fields() -> None:
    eng = make_engine()
    o = orders(2, flags=[RecordFlag.REPLAY, RecordFlag.SNAPSHOT | RecordFlag.SYNTHETIC])
    v = eng.check(o, NOW)
    assert v.dtype == new_records("RISK_VERDICT", 0).dtype
    assert list(v["type_id"]) == [0x21, 0x21] and list(v["version"]) == [1, 1]
    assert list(v["order_id"]) == list(o["order_id"])
    assert list(v["request_seq"]) == list(o["seq"])
    assert list(v["seq"]) == [1, 2]  # the engine's own verdict sequence
    assert list(v["ts_ns"]) == [NOW, NOW]
    assert list(v["flags"]) == [RecordFlag.REPLAY, RecordFlag.SYNTHETIC]  # SNAPSHOT not carried
    assert list(v["account_id"]) == [ACC, ACC] and list(v["instrument_id"]) == [AAPL, AAPL]
    assert (v["decision_ns"] > 0).all() and v["decision_ns"][0] == eng.last_decision_ns
    assert eng.last_limits_version == 1


def test_step_is_check_without_the_clock() -> None:
    a, b = make_engine(), make_engine()
    o = orders(5, price=[PX, PX * 2, PX, PX, PX], qty=[1, 2, 3, 0, 5])
    refs = fresh_refs().table
    va = exact_copy(a.step(o, refs, NOW, refs_by_instrument=True))
    vb = strip_latency(b.check(o, NOW))
    assert (va["decision_ns"] == 0).all()
    assert va.tobytes() == vb.tobytes()
    # Per-order reference rows give the same answer as the by-instrument table.
    c = make_engine()
    rows = np.ascontiguousarray(refs[o["instrument_id"].astype(np.int64)])
    assert c.step(o, rows, NOW).tobytes() == va.tobytes()


def test_out_buffer_and_batch_limits() -> None:
    eng = make_engine()
    out = new_records("RISK_VERDICT", 4)
    got = eng.check(orders(3), NOW, out=out)
    assert got.base is out or np.shares_memory(got, out)
    assert (out["verdict"][:3] == Verdict.PASS).all() and out["verdict"][3] == 0
    big = orders(SMALL.max_batch + 1, qty=1, order_id=np.arange(1, SMALL.max_batch + 2) + 10**9)
    with pytest.raises(RiskArgumentError, match="max_batch"):
        eng.check(big, NOW)
    with pytest.raises(RiskArgumentError, match="ORDER_REQUEST"):
        eng.check(new_records("RISK_VERDICT", 1), NOW)
    with pytest.raises(RiskArgumentError, match="contiguous"):
        eng.check(orders(4)[::2], NOW)
    with pytest.raises(RiskArgumentError, match="RISK_VERDICT"):
        eng.check(orders(2), NOW, out=new_records("RISK_VERDICT", 1))
    assert eng.check(orders(0), NOW).shape == (0,)


# ---- VALIDATE --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"qty": 0},
        {"qty": -5},
        {"side": 0},
        {"side": ord("X")},
        {"action": 0},
        {"action": 9},
        {"ord_type": 0},
        {"price": 0},
        {"price": -PX},
        {"order_id": 0},
        {"account_id": SMALL.max_accounts},
        {"session_id": SMALL.max_sessions},
        {"venue_id": SMALL.max_venues},
        {"strategy_id": 0xFFFFFFFF},
    ],
)
def test_malformed_requests_are_invalid(fields: dict[str, Any]) -> None:
    assert judge(make_engine(), **fields) == rejected(RejectReason.INVALID_ORDER, Rule.VALIDATE)


def test_duplicate_open_order_id_is_invalid() -> None:
    eng = make_engine()
    assert judge(eng, order_id=5_000_001) == PASS
    assert judge(eng, order_id=5_000_001) == rejected(RejectReason.INVALID_ORDER, Rule.VALIDATE)


def test_cancels_always_pass_and_change_nothing() -> None:
    eng = make_engine(doc_with({"restricted": ["AAPL"]}))
    v = eng.check(
        one(action=OrderAction.CANCEL, orig_order_id=123, qty=0, price=0), NOW, halted=True
    )
    assert verdict_tuple(v[0]) == PASS
    assert eng.account(ACC)["open_orders"] == 0
    assert judge(eng, action=OrderAction.CANCEL, order_id=0) == rejected(
        RejectReason.INVALID_ORDER, Rule.VALIDATE
    )


# ---- INSTRUMENT, HALT, RESTRICTED ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"instrument_id": 40},  # not configured
        {"instrument_id": 63},  # within the engine but not in the limits
        {"instrument_id": 1000},  # beyond both
        {"instrument_id": AAPL, "symbol": encode_symbol("MSFT")},  # symbol does not match
    ],
)
def test_unknown_instruments_are_invalid_symbols(fields: dict[str, Any]) -> None:
    assert judge(make_engine(), **fields) == rejected(RejectReason.INVALID_SYMBOL, Rule.INSTRUMENT)


def test_kill_flag_and_halts() -> None:
    eng = make_engine()
    assert judge(eng, halted=True) == rejected(RejectReason.HALTED, Rule.HALT)
    for scope, ident, other in (
        (KillScope.SYMBOL, AAPL, {"instrument_id": MSFT}),
        (KillScope.VENUE, VENUE, {"venue_id": 2}),
        (KillScope.ACCOUNT, ACC, {"account_id": ACC2}),
    ):
        eng.set_halt(scope, ident, True)
        assert judge(eng) == rejected(RejectReason.HALTED, Rule.HALT)
        assert judge(eng, **other) == PASS
        eng.set_halt(scope, ident, False)
        assert judge(eng) == PASS
    with pytest.raises(RiskArgumentError):
        eng.set_halt(KillScope.FIRM, 0, True)
    with pytest.raises(RiskArgumentError):
        eng.set_halt(KillScope.SYMBOL, SMALL.max_instruments, True)


def test_restricted_list() -> None:
    eng = make_engine(doc_with({"restricted": ["MSFT", "NOTCONF"]}))
    assert judge(eng, instrument_id=MSFT) == rejected(RejectReason.RESTRICTED, Rule.RESTRICTED)
    assert judge(eng) == PASS


# ---- PRICE_BAND and references ---------------------------------------------------------------


def test_price_band_bps() -> None:
    eng = make_engine()  # 500 bps around the mid of 100.00
    assert judge(eng, price=PX * 105 // 100) == PASS
    assert judge(eng, price=PX * 105 // 100 + 1) == rejected(
        RejectReason.PRICE_BANDS, Rule.PRICE_BAND
    )
    # (Another account: a sell at 95 would cross the buy at 105 resting for ACC.)
    assert judge(eng, price=PX * 95 // 100, side=Side.SELL, account_id=ACC2) == PASS
    assert judge(eng, price=PX * 95 // 100 - 1, side=Side.SELL, account_id=ACC2) == rejected(
        RejectReason.PRICE_BANDS, Rule.PRICE_BAND
    )


def test_price_band_ticks_and_the_wider_band_wins() -> None:
    eng = make_engine(doc_with({"instruments.AAPL.band_bps": 0, "instruments.AAPL.band_ticks": 3}))
    assert judge(eng, price=PX + 300) == PASS  # 3 ticks of 0.01
    assert judge(eng, price=PX + 301) == rejected(RejectReason.PRICE_BANDS, Rule.PRICE_BAND)
    both = make_engine(doc_with({"instruments.AAPL.band_bps": 1, "instruments.AAPL.band_ticks": 3}))
    assert judge(both, price=PX + 300) == PASS  # ticks wider than 1 bp (= 100 units)
    assert judge(both, price=PX + 301) == rejected(RejectReason.PRICE_BANDS, Rule.PRICE_BAND)


def test_reference_is_mid_or_last() -> None:
    refs = fresh_refs()
    eng = make_engine(refs=refs)
    refs.set(AAPL, 0, 0, PX * 2, NOW)  # no book: last
    assert judge(eng, price=PX * 2) == PASS
    assert judge(eng, price=PX) == rejected(RejectReason.PRICE_BANDS, Rule.PRICE_BAND)
    refs.set(AAPL, PX * 2, 0, PX, NOW)  # one side empty: last
    assert judge(eng, price=PX) == PASS
    refs.set(AAPL, PX * 2 - 200, PX * 2 + 200, PX, NOW)  # both sides: mid
    assert judge(eng, price=PX * 2) == PASS


@pytest.mark.parametrize(
    "ref",
    [
        None,  # missing
        (0, 0, 0, NOW),  # present but priceless
        (PX, PX, PX, NOW - 1_000_000_001),  # one ns older than max_ref_age_ns
    ],
)
def test_missing_or_stale_references_reject(ref: Reference | None) -> None:
    refs = fresh_refs()
    if ref is None:
        refs.clear(AAPL)
    else:
        refs.set(AAPL, *ref)
    eng = make_engine(refs=refs)
    stale = rejected(RejectReason.STALE_REFERENCE, Rule.PRICE_BAND)
    assert judge(eng) == stale
    assert judge(eng, ord_type=OrdType.MARKET, price=0) == stale


def test_reference_exactly_at_max_age_is_fresh() -> None:
    refs = fresh_refs()
    refs.set(AAPL, PX, PX, PX, NOW - 1_000_000_000)
    assert judge(make_engine(refs=refs)) == PASS


def test_market_orders_need_a_reference_whatever_the_band_mode() -> None:
    refs = fresh_refs()
    refs.clear(AAPL)
    for mode in ("dry_run", "disabled"):
        eng = make_engine(doc_with({"modes.price_band": mode}), refs=refs)
        assert judge(eng) == (
            (Verdict.PASS, RejectReason.STALE_REFERENCE, Rule.PRICE_BAND, 1)
            if mode == "dry_run"
            else PASS
        )
        assert judge(eng, ord_type=OrdType.MARKET, price=0) == rejected(
            RejectReason.STALE_REFERENCE, Rule.PRICE_BAND
        )


def test_market_orders_are_valued_at_the_reference() -> None:
    eng = make_engine(doc_with({"defaults.max_notional": 1000}))  # 1000.00 per order
    assert judge(eng, ord_type=OrdType.MARKET, price=0, qty=10) == PASS
    assert judge(eng, ord_type=OrdType.MARKET, price=0, qty=11) == rejected(
        RejectReason.MAX_NOTIONAL, Rule.MAX_NOTIONAL
    )


def test_a_generic_reference_source_is_used_through_get() -> None:
    class Feed:
        def __init__(self) -> None:
            self.calls = 0

        def get(self, instrument_id: int) -> Reference | None:
            self.calls += 1
            return (PX, PX, PX, NOW) if instrument_id == AAPL else None

    feed = Feed()
    eng = RiskEngine(limits_of(base_doc()), feed, SMALL)
    v = eng.check(orders(2, instrument_id=[AAPL, MSFT]), NOW)
    assert [verdict_tuple(x) for x in v] == [
        PASS,
        rejected(RejectReason.STALE_REFERENCE, Rule.PRICE_BAND),
    ]
    assert feed.calls == 2


def test_in_memory_references_from_ticks() -> None:
    refs = InMemoryReferences(8)
    ticks = new_records("TICK", 3)
    ticks["instrument_id"] = [1, 2, 1]
    ticks["bid_px"] = [10, 20, 11]
    ticks["ask_px"] = [12, 22, 13]
    ticks["last_px"] = [11, 21, 12]
    ticks["last_update_ns"] = [5, 6, 7]
    refs.update_from_ticks(ticks)
    assert refs.get(1) == (11, 13, 12, 7)  # the last tick wins
    assert refs.get(2) == (20, 22, 21, 6)
    assert refs.get(3) is None and refs.get(100) is None
    out = np.zeros((3, 4), dtype=np.int64)
    refs.fill(np.array([2, 3, 99], dtype=np.uint32), out)
    assert out[0].tolist() == [20, 22, 21, 6] and out[1, 3] == REF_MISSING == out[2, 3]


# ---- MAX_QTY, MAX_NOTIONAL -------------------------------------------------------------------


def test_max_qty_instrument_and_account_caps() -> None:
    eng = make_engine(doc_with({"instruments.AAPL.max_qty": 100, "accounts.ACC2.max_qty": 50}))
    assert judge(eng, qty=100) == PASS
    assert judge(eng, qty=101) == rejected(RejectReason.MAX_SIZE, Rule.MAX_QTY)
    assert judge(eng, qty=50, account_id=ACC2) == PASS
    assert judge(eng, qty=51, account_id=ACC2) == rejected(RejectReason.MAX_SIZE, Rule.MAX_QTY)


def test_max_notional_and_overflow() -> None:
    eng = make_engine(doc_with({"defaults.max_notional": 1000, "accounts.ACC2.max_notional": 500}))
    assert judge(eng, qty=10) == PASS  # 100.00 x 10 = 1000.00
    assert judge(eng, qty=11) == rejected(RejectReason.MAX_NOTIONAL, Rule.MAX_NOTIONAL)
    assert judge(eng, qty=5, account_id=ACC2) == PASS
    assert judge(eng, qty=6, account_id=ACC2) == rejected(
        RejectReason.MAX_NOTIONAL, Rule.MAX_NOTIONAL
    )
    off = {f"modes.{r}": "disabled" for r in ("max_notional", "price_band", "max_qty", "credit")}
    wide = make_engine(doc_with(off))
    assert judge(wide, price=2**40, qty=2**22) == PASS  # 2**62: fits
    assert judge(wide, price=2**40, qty=2**23, account_id=ACC2) == rejected(
        RejectReason.MAX_NOTIONAL, Rule.MAX_NOTIONAL
    )  # 2**63: overflows, rejected although the rule is disabled
    assert wide.counters().per_rule[Rule.MAX_NOTIONAL].tolist() == [1, 1, 1, 0]


def test_credit_overflow_rejects_even_when_disabled() -> None:
    eng = make_engine(
        doc_with(
            {
                "modes.max_notional": "disabled",
                "modes.price_band": "disabled",
                "modes.max_qty": "disabled",
                "modes.credit": "disabled",
            }
        )
    )
    assert judge(eng, price=2**61, qty=3) == PASS  # 1.5 * 2**62: fits
    assert judge(eng, price=2**61, qty=1) == rejected(RejectReason.CREDIT, Rule.CREDIT)


# ---- CREDIT -----------------------------------------------------------------------------


def test_credit_counts_open_and_executed_notional() -> None:
    eng = make_engine(doc_with({"accounts.ACC1.credit_limit": 3000}))  # 30 @ 100.00
    first = one(qty=20)
    assert verdict_tuple(eng.check(first, NOW)[0]) == PASS
    assert judge(eng, qty=11) == rejected(RejectReason.CREDIT, Rule.CREDIT)
    assert judge(eng, qty=10) == PASS  # exactly at the limit
    assert eng.account(ACC)["open_notional"] == 30 * PX
    oid = int(first["order_id"][0])
    eng.on_execution(fill(oid, 20, 20))  # open -> executed: still used
    assert eng.account(ACC)["open_notional"] == 10 * PX
    assert eng.account(ACC)["executed_notional"] == 20 * PX
    assert judge(eng, qty=1) == rejected(RejectReason.CREDIT, Rule.CREDIT)
    assert judge(eng, qty=1, account_id=ACC2) == PASS


def test_cancel_releases_credit() -> None:
    eng = make_engine(doc_with({"accounts.ACC1.credit_limit": 1000}))
    o = one(qty=10)
    eng.check(o, NOW)
    assert judge(eng, qty=1) == rejected(RejectReason.CREDIT, Rule.CREDIT)
    assert eng.on_execution(report(int(o["order_id"][0]), ExecType.CANCELED)) == 1
    assert eng.account(ACC)["open_notional"] == 0
    assert judge(eng, qty=10) == PASS


# ---- POSITION ---------------------------------------------------------------------------


def test_position_counts_open_orders_in_the_worst_case_direction() -> None:
    eng = make_engine(
        doc_with({"accounts.ACC1.max_position": 100, "accounts.ACC1.max_strategy_position": 60})
    )
    a = one(qty=60)
    assert verdict_tuple(eng.check(a, NOW)[0]) == PASS
    assert judge(eng, qty=1) == rejected(RejectReason.POSITION, Rule.POSITION)  # strategy 7: 60
    assert judge(eng, qty=40, strategy_id=8) == PASS  # account: 100
    assert judge(eng, qty=1, strategy_id=9) == rejected(RejectReason.POSITION, Rule.POSITION)
    # Sells are judged in their own direction: open buys do not offset them.
    assert judge(eng, qty=60, side=Side.SELL, price=PX + 1000, strategy_id=9) == PASS
    eng.on_execution(fill(int(a["order_id"][0]), 60, 60))  # long 60 (strategy 7)
    assert eng.position(ACC, AAPL) == (60, 40, 60)
    assert eng.position(ACC, AAPL, 7) == (60, 0, 0)
    # Short worst case = open sells - position = 60 - 60 = 0: 100 more may be sold.
    assert judge(eng, qty=60, side=Side.SELL, price=PX + 1000, strategy_id=10) == PASS
    assert judge(eng, qty=40, side=Side.SELL, price=PX + 1000, strategy_id=11) == PASS
    assert judge(eng, qty=1, side=Side.SELL, price=PX + 1000, strategy_id=12) == rejected(
        RejectReason.POSITION, Rule.POSITION
    )


def test_short_sell_codes_count_as_sells() -> None:
    eng = make_engine(doc_with({"accounts.ACC1.max_position": 10}))
    assert judge(eng, qty=10, side=Side.SELL_SHORT, price=PX + 500) == PASS
    assert judge(eng, qty=1, side=Side.SELL_SHORT_EXEMPT, price=PX + 500) == rejected(
        RejectReason.POSITION, Rule.POSITION
    )
    assert eng.position(ACC, AAPL) == (0, 0, 10)


# ---- SELF_MATCH -------------------------------------------------------------------------


def test_self_match() -> None:
    eng = make_engine()
    assert judge(eng, side=Side.SELL, price=PX + 1000) == PASS  # resting sell @ 100.10
    assert judge(eng, side=Side.BUY, price=PX + 999) == PASS  # below it
    sm = rejected(RejectReason.SELF_MATCH, Rule.SELF_MATCH)
    assert judge(eng, side=Side.BUY, price=PX + 1000) == sm  # touches it
    assert judge(eng, side=Side.BUY, price=PX + 1000, account_id=ACC2) == PASS  # other account
    assert judge(eng, side=Side.BUY, price=PX + 1000, instrument_id=MSFT) == PASS
    assert judge(eng, side=Side.SELL, price=PX + 999) == sm  # crosses the resting buy @ 100.0999
    assert judge(eng, side=Side.BUY, ord_type=OrdType.MARKET, price=0) == sm


def test_self_match_best_price_follows_cancels() -> None:
    eng = make_engine()
    sells = orders(3, side=Side.SELL, price=[PX + 100, PX + 200, PX + 300])
    eng.check(sells, NOW)
    sm = rejected(RejectReason.SELF_MATCH, Rule.SELF_MATCH)
    assert judge(eng, price=PX + 100) == sm
    eng.on_execution(report(int(sells["order_id"][0]), ExecType.CANCELED, side=Side.SELL))
    assert judge(eng, price=PX + 199) == PASS
    assert judge(eng, price=PX + 200) == sm
    eng.on_execution(report(int(sells["order_id"][1]), ExecType.EXPIRED, side=Side.SELL))
    eng.on_execution(report(int(sells["order_id"][2]), ExecType.DONE_FOR_DAY, side=Side.SELL))
    assert judge(eng, price=PX + 5000) == PASS
    eng.check_invariants()


def test_resting_market_orders_cross_everything() -> None:
    eng = make_engine()
    assert judge(eng, side=Side.SELL, ord_type=OrdType.MARKET, price=0) == PASS
    assert judge(eng, price=PX - 4000) == rejected(RejectReason.SELF_MATCH, Rule.SELF_MATCH)


# ---- THROTTLES --------------------------------------------------------------------------


def test_session_and_venue_token_buckets() -> None:
    eng = make_engine(
        doc_with(
            {
                "sessions.S1.rate_per_s": 2,
                "sessions.S1.burst": 3,
                "venues.XNAS.rate_per_s": 1,
                "venues.XNAS.burst": 4,
            }
        )
    )
    rl_s = rejected(RejectReason.RATE_LIMIT, Rule.THROTTLE_SESSION)
    rl_v = rejected(RejectReason.RATE_LIMIT, Rule.THROTTLE_VENUE)
    got = [judge(eng, qty=1) for _ in range(4)]
    assert got == [PASS, PASS, PASS, rl_s]
    assert judge(eng, now=NOW + 499_999_999, qty=1) == rl_s
    assert judge(eng, now=NOW + 500_000_000, qty=1) == PASS  # 2/s: one token per 0.5 s
    # The venue bucket (burst 4, 1/s) holds 0.5 token now: session 2 is refused by it.
    assert judge(eng, now=NOW + 500_000_000, qty=1, session_id=2) == rl_v
    assert judge(eng, now=NOW + 999_999_999, qty=1, session_id=2) == rl_v
    assert judge(eng, now=NOW + 1_000_000_000, qty=1, session_id=2) == PASS
    assert judge(eng, now=NOW + 1_000_000_000, qty=1, session_id=2, venue_id=2) == PASS


def test_rejected_orders_spend_no_tokens_and_time_going_back_refills_nothing() -> None:
    eng = make_engine(doc_with({"sessions.S1.rate_per_s": 1, "sessions.S1.burst": 1}))
    assert judge(eng, qty=0) == rejected(RejectReason.INVALID_ORDER, Rule.VALIDATE)
    assert judge(eng, price=PX * 2) == rejected(RejectReason.PRICE_BANDS, Rule.PRICE_BAND)
    assert judge(eng) == PASS
    assert judge(eng, now=NOW - 5_000_000_000) == rejected(
        RejectReason.RATE_LIMIT, Rule.THROTTLE_SESSION
    )


# ---- CAPACITY ---------------------------------------------------------------------------


def test_full_order_table_rejects_queue_full() -> None:
    cfg = EngineConfig(
        max_accounts=4,
        max_instruments=8,
        max_sessions=2,
        max_venues=2,
        max_orders=3,
        position_capacity=8,
        max_batch=16,
    )
    eng = make_engine(config=cfg)
    v = eng.check(orders(4, price=[PX, PX - 1, PX - 2, PX - 3]), NOW)
    assert [verdict_tuple(x) for x in v] == [PASS] * 3 + [
        rejected(RejectReason.QUEUE_FULL, Rule.CAPACITY)
    ]
    eng.on_execution(report(int(v["order_id"][0]), ExecType.CANCELED))
    assert judge(eng) == PASS


def test_full_position_table_rejects_queue_full() -> None:
    cfg = EngineConfig(
        max_accounts=4,
        max_instruments=8,
        max_sessions=2,
        max_venues=2,
        max_orders=16,
        position_capacity=4,
        max_batch=16,  # 3 keys at most: one (account, instrument) + 2
    )
    eng = make_engine(config=cfg)
    assert judge(eng, strategy_id=1) == PASS  # 2 keys
    assert judge(eng, strategy_id=2) == PASS  # 3 keys
    assert judge(eng, strategy_id=1) == PASS  # existing keys
    assert judge(eng, strategy_id=3) == rejected(RejectReason.QUEUE_FULL, Rule.CAPACITY)
    eng.check_invariants()


# ---- modes ------------------------------------------------------------------------------


def test_dry_run_records_the_first_hit_and_passes() -> None:
    eng = make_engine(
        doc_with(
            {
                "modes.max_qty": "dry_run",
                "modes.max_notional": "dry_run",
                "defaults.max_qty": 5,
                "defaults.max_notional": 100,
            }
        )
    )
    assert judge(eng, qty=10) == (Verdict.PASS, RejectReason.MAX_SIZE, Rule.MAX_QTY, 1)
    assert eng.account(ACC)["open_orders"] == 1  # a dry-run pass is a real order
    k = eng.counters().per_rule
    assert k[Rule.MAX_QTY].tolist() == [1, 1, 0, 1]
    assert k[Rule.MAX_NOTIONAL].tolist() == [1, 1, 0, 1]
    assert eng.counters().engine()["dry_run_passed"] == 1


def test_an_enforced_rule_after_a_dry_run_hit_rejects() -> None:
    doc = {"modes.max_qty": "dry_run", "defaults.max_qty": 5, "defaults.max_notional": 600}
    eng = make_engine(doc_with(doc))
    assert judge(eng, qty=5) == PASS
    assert judge(eng, qty=10) == rejected(RejectReason.MAX_NOTIONAL, Rule.MAX_NOTIONAL)
    k = eng.counters().per_rule
    assert k[Rule.MAX_QTY].tolist() == [2, 1, 0, 1]  # the dry-run hit is still counted
    assert k[Rule.MAX_NOTIONAL].tolist() == [2, 1, 1, 0]
    assert eng.account(ACC)["open_orders"] == 1


def test_mode_resolution_instrument_over_venue_over_default() -> None:
    doc = doc_with(
        {
            "restricted": ["AAPL", "MSFT", "TSLA"],
            "modes.restricted": "disabled",
            "venues.XNAS.modes": {"restricted": "dry_run"},
            "venues.ARCA": {"id": 2},
            "instruments.AAPL.modes": {"restricted": "enforce"},
        }
    )
    eng = make_engine(doc)
    rs = rejected(RejectReason.RESTRICTED, Rule.RESTRICTED)
    dry = (Verdict.PASS, RejectReason.RESTRICTED, Rule.RESTRICTED, 1)
    assert judge(eng, instrument_id=AAPL, venue_id=VENUE) == rs  # instrument override
    assert judge(eng, instrument_id=AAPL, venue_id=2) == rs
    assert judge(eng, instrument_id=MSFT, venue_id=VENUE) == dry  # venue override
    assert judge(eng, instrument_id=MSFT, venue_id=2) == PASS  # default: disabled
    assert judge(eng, instrument_id=MSFT, venue_id=5) == PASS  # unconfigured venue: default


def test_disabled_rules_are_not_evaluated() -> None:
    eng = make_engine(
        doc_with({"modes.self_match": "disabled", "modes.throttle_venue": "disabled"})
    )
    judge(eng, side=Side.SELL, price=PX + 10)
    assert judge(eng, price=PX + 10) == PASS
    k = eng.counters().per_rule
    assert k[Rule.SELF_MATCH, 0] == 0 and k[Rule.THROTTLE_VENUE, 0] == 0
    assert k[Rule.THROTTLE_SESSION, 0] == 2


# ---- limits swap --------------------------------------------------------------------------


def test_set_limits_takes_effect_next_batch_and_is_checked() -> None:
    eng = make_engine()
    assert judge(eng, qty=50) == PASS
    eng.set_limits(limits_of(doc_with({"defaults.max_qty": 20}), version=2))
    assert judge(eng, qty=50) == rejected(RejectReason.MAX_SIZE, Rule.MAX_QTY)
    assert eng.last_limits_version == 2 and eng.limits.version == 2
    too_big = limits_of(doc_with({"instruments.BIG": {"id": SMALL.max_instruments}}), version=3)
    with pytest.raises(RiskArgumentError, match="instrument id 64"):
        eng.set_limits(too_big)
    assert eng.limits.version == 2  # the old limits stay


# ---- execution reports -----------------------------------------------------------------------


def test_partial_fills_then_cancel() -> None:
    eng = make_engine()
    o = one(qty=100)
    eng.check(o, NOW)
    oid = int(o["order_id"][0])
    assert eng.on_execution(fill(oid, 30, 30, px=PX - 100)) == 1
    assert eng.account(ACC) == {
        "open_notional": 70 * PX,
        "executed_notional": 30 * (PX - 100),
        "open_orders": 1,
        "fills": 1,
    }
    assert eng.position(ACC, AAPL) == (30, 70, 0) == eng.position(ACC, AAPL, 7)
    assert eng.on_execution(fill(oid, 30, 30)) == 0  # duplicate (cum_qty not beyond)
    assert eng.counters().engine()["reports_duplicate"] == 1
    assert eng.on_execution(report(oid, ExecType.CANCELED)) == 1
    assert eng.account(ACC)["open_notional"] == 0 and eng.open_order(oid) is None
    assert eng.position(ACC, AAPL) == (30, 0, 0)
    assert eng.on_execution(report(oid, ExecType.CANCELED)) == 0  # already gone
    eng.check_invariants()


def test_full_fill_removes_the_order_and_reports_that_change_nothing() -> None:
    eng = make_engine()
    o = one(qty=10, side=Side.SELL)
    eng.check(o, NOW)
    oid = int(o["order_id"][0])
    for et in (ExecType.NEW, ExecType.PENDING_CANCEL, ExecType.ORDER_STATUS):
        assert eng.on_execution(report(oid, et)) == 0
    assert eng.on_execution(fill(oid, 10, 10, side=Side.SELL)) == 1
    assert eng.open_order(oid) is None
    assert eng.position(ACC, AAPL) == (-10, 0, 0)
    assert eng.account(ACC)["open_orders"] == 0


def test_venue_reject_releases_everything() -> None:
    eng = make_engine()
    o = one(qty=10)
    eng.check(o, NOW)
    assert eng.on_execution(report(int(o["order_id"][0]), ExecType.REJECTED)) == 1
    assert eng.account(ACC)["open_notional"] == 0 and eng.position(ACC, AAPL) == (0, 0, 0)


def test_fills_of_unknown_orders_still_move_positions_and_busts_reverse_them() -> None:
    eng = make_engine()
    assert eng.on_execution(fill(999_999_999, 5, 5, side=Side.SELL)) == 1
    assert eng.position(ACC, AAPL) == (-5, 0, 0)
    assert eng.account(ACC)["executed_notional"] == 5 * PX
    assert (
        eng.on_execution(
            report(999_999_999, ExecType.TRADE_CANCEL, last_qty=5, last_px=PX, side=Side.SELL)
        )
        == 1
    )
    assert eng.position(ACC, AAPL) == (0, 0, 0) and eng.account(ACC)["executed_notional"] == 0
    assert eng.counters().engine()["reports_unknown"] == 1
    bad = fill(1, 5, 5, account_id=SMALL.max_accounts)
    assert eng.on_execution(bad) == 0
    assert eng.counters().engine()["state_errors"] == 1


def test_replace_reserves_the_worse_of_old_and_new_until_confirmed() -> None:
    eng = make_engine(doc_with({"accounts.ACC1.credit_limit": 5000}))
    o = one(qty=20)
    eng.check(o, NOW)
    oid = int(o["order_id"][0])
    eng.on_execution(fill(oid, 5, 5))  # 15 open
    r = one(action=OrderAction.REPLACE, orig_order_id=oid, qty=40, price=PX + 100)
    rid = int(r["order_id"][0])
    assert verdict_tuple(eng.check(r, NOW)[0]) == PASS
    new_open = 35 * (PX + 100)
    # Reserved: the original's 15 @ 100 plus the growth up to 35 @ 100.01.
    assert eng.account(ACC)["open_notional"] == new_open
    assert eng.position(ACC, AAPL) == (5, 35, 0)
    assert eng.open_order(rid)["status"] == 2  # pending
    # A second replace while one is pending is refused; so is one of another side.
    assert judge(eng, action=OrderAction.REPLACE, orig_order_id=oid, qty=30) == rejected(
        RejectReason.INVALID_ORDER, Rule.VALIDATE
    )
    assert judge(eng, action=OrderAction.REPLACE, orig_order_id=12345, qty=30) == rejected(
        RejectReason.UNKNOWN_ORDER, Rule.VALIDATE
    )
    assert (
        eng.on_execution(report(rid, ExecType.REPLACED, leaves_qty=35, cum_qty=5, order_qty=40))
        == 1
    )
    assert eng.open_order(oid) is None
    entry = eng.open_order(rid)
    assert entry is not None and entry["status"] == 1 and entry["leaves"] == 35
    assert eng.account(ACC)["open_notional"] == new_open
    eng.on_execution(fill(rid, 35, 40, px=PX + 100))
    assert eng.position(ACC, AAPL) == (40, 0, 0) and eng.account(ACC)["open_notional"] == 0
    eng.check_invariants()


def test_replace_down_and_rejected_replace_keeps_the_original() -> None:
    eng = make_engine()
    o = one(qty=20)
    eng.check(o, NOW)
    oid = int(o["order_id"][0])
    r = one(action=OrderAction.REPLACE, orig_order_id=oid, qty=10)
    eng.check(r, NOW)
    assert eng.account(ACC)["open_notional"] == 20 * PX  # shrinking reserves nothing more
    assert eng.on_execution(report(int(r["order_id"][0]), ExecType.REJECTED)) == 1
    assert eng.open_order(int(r["order_id"][0])) is None
    assert eng.open_order(oid)["link"] == -1
    assert eng.account(ACC)["open_notional"] == 20 * PX
    # Replaced under the original id, then confirmed smaller.
    r2 = one(action=OrderAction.REPLACE, orig_order_id=oid, qty=10)
    eng.check(r2, NOW)
    eng.on_execution(report(oid, ExecType.REPLACED, leaves_qty=10, cum_qty=0))
    assert eng.account(ACC)["open_notional"] == 10 * PX
    assert eng.open_order(int(r2["order_id"][0]))["leaves"] == 10
    eng.check_invariants()


def test_cancel_or_fill_of_the_original_drops_a_pending_replace() -> None:
    eng = make_engine()
    o = one(qty=20)
    eng.check(o, NOW)
    oid = int(o["order_id"][0])
    r = one(action=OrderAction.REPLACE, orig_order_id=oid, qty=30)
    eng.check(r, NOW)
    eng.on_execution(fill(oid, 20, 20))  # filled before the replace reached the venue
    assert eng.open_order(oid) is None and eng.open_order(int(r["order_id"][0])) is None
    assert eng.account(ACC)["open_notional"] == 0 and eng.position(ACC, AAPL) == (20, 0, 0)
    # Cancel of the chain under the new id removes both.
    o2 = one(qty=20)
    eng.check(o2, NOW)
    r2 = one(action=OrderAction.REPLACE, orig_order_id=int(o2["order_id"][0]), qty=30)
    eng.check(r2, NOW)
    eng.on_execution(report(int(r2["order_id"][0]), ExecType.CANCELED))
    assert eng.account(ACC)["open_orders"] == 0 and eng.account(ACC)["open_notional"] == 0
    eng.check_invariants()


def test_a_fill_under_the_new_id_confirms_the_replace() -> None:
    eng = make_engine()
    o = one(qty=20)
    eng.check(o, NOW)
    oid = int(o["order_id"][0])
    r = one(action=OrderAction.REPLACE, orig_order_id=oid, qty=30)
    eng.check(r, NOW)
    rid = int(r["order_id"][0])
    eng.on_execution(fill(rid, 10, 10))
    assert eng.open_order(oid) is None
    assert eng.open_order(rid)["leaves"] == 20
    assert eng.account(ACC)["open_notional"] == 20 * PX
    eng.check_invariants()


def test_replace_validation() -> None:
    eng = make_engine()
    o = one(qty=20)
    eng.check(o, NOW)
    oid = int(o["order_id"][0])
    eng.on_execution(fill(oid, 5, 5))
    bad = rejected(RejectReason.INVALID_ORDER, Rule.VALIDATE)
    assert judge(eng, action=OrderAction.REPLACE, orig_order_id=oid, qty=5) == bad  # <= filled
    assert judge(eng, action=OrderAction.REPLACE, orig_order_id=oid, side=Side.SELL) == bad
    assert judge(eng, action=OrderAction.REPLACE, orig_order_id=oid, account_id=ACC2) == bad
    assert judge(eng, action=OrderAction.REPLACE, orig_order_id=oid, strategy_id=1) == bad
    assert judge(eng, action=OrderAction.REPLACE, orig_order_id=oid, qty=6) == PASS


def test_reports_must_be_execution_reports() -> None:
    with pytest.raises(RiskArgumentError):
        make_engine().on_execution(orders(1))


# ---- snapshots ------------------------------------------------------------------------------


def test_snapshot_round_trip_continues_identically() -> None:
    a = make_engine()
    a.check(orders(20, side=[Side.BUY, Side.SELL] * 10, price=[PX - 50, PX + 50] * 10), NOW)
    snap = a.state_arrays()
    assert set(snap) == set(STATE_ARRAY_NAMES)
    b = RiskEngine.from_state_arrays(snap, a.limits, fresh_refs())
    later = orders(10, price=PX + 50)
    va = strip_latency(a.check(later, NOW + 1))
    vb = strip_latency(b.check(later, NOW + 1))
    assert va.tobytes() == vb.tobytes()
    for name in STATE_ARRAY_NAMES:
        assert a.state_arrays()[name].tobytes() == b.state_arrays()[name].tobytes(), name


def test_corrupt_snapshots_are_refused() -> None:
    a = make_engine()
    a.check(orders(5), NOW)
    lim = a.limits
    snap = a.state_arrays()
    with pytest.raises(RiskStateError, match="lacks"):
        RiskEngine.from_state_arrays(
            {k: v for k, v in snap.items() if k != "meta"}, lim, fresh_refs()
        )
    bad = dict(snap, meta=snap["meta"].astype(np.int32))
    with pytest.raises(RiskStateError, match="dtype"):
        RiskEngine.from_state_arrays(bad, lim, fresh_refs())
    bad = dict(snap, order_index=snap["order_index"][:-1].copy())
    with pytest.raises(RiskStateError, match="shape"):
        RiskEngine.from_state_arrays(bad, lim, fresh_refs())
    accounts = snap["accounts"].copy()
    accounts["open_notional"][ACC] += 1
    with pytest.raises(RiskStateError, match="open notional"):
        RiskEngine.from_state_arrays(dict(snap, accounts=accounts), lim, fresh_refs())
    index = snap["order_index"].copy()
    index[index >= 0] = -1
    with pytest.raises(RiskStateError, match="state check failed"):
        RiskEngine.from_state_arrays(dict(snap, order_index=index), lim, fresh_refs())
    positions = snap["positions"].copy()
    positions["open_buy"][positions["used"] == 1] += 1
    with pytest.raises(RiskStateError, match="open_buy"):
        RiskEngine.from_state_arrays(dict(snap, positions=positions), lim, fresh_refs())
    meta = snap["meta"].copy()
    meta[0] = 99
    with pytest.raises(RiskStateError):
        RiskEngine.from_state_arrays(dict(snap, meta=meta), lim, fresh_refs())


def test_counters_are_live_read_only_views() -> None:
    eng = make_engine()
    k = eng.counters()
    assert not k.per_rule.flags.writeable
    before = int(k.per_rule[Rule.VALIDATE, 0])
    eng.check(orders(3), NOW)
    assert int(k.per_rule[Rule.VALIDATE, 0]) == before + 3
    rows = k.rows()
    assert rows[0][0] == "validate" and len(rows) == 13
    assert k.engine()["orders"] == 3 and k.engine()["batches"] == 1
