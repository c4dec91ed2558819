"""Property tests (hypothesis): each rule against its definition, rule composition and modes,
fail-closed arithmetic, determinism, snapshots and state invariants under random streams."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tectra.risk.engine import RiskEngine
from tectra.risk.rules import RULE_BY_NAME, Rule, RuleMode, resolve_mode
from tectra.schema import (
    ExecType,
    KillScope,
    OrderAction,
    OrdType,
    RejectReason,
    Side,
    Verdict,
    encode_symbol,
)
from tests.risk._helpers import (
    AAPL,
    ACC,
    ACC2,
    MSFT,
    NOW,
    PX,
    SESSION,
    SMALL,
    VENUE,
    cat,
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

PROPS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODES = st.sampled_from(["enforce", "dry_run", "disabled"])
OFF = ("max_qty", "max_notional", "credit", "position", "self_match", "price_band")


def only(*keep: str, **changes: Any) -> dict[str, Any]:
    """base limits with every limit rule but `keep` disabled, plus dotted-path changes."""
    modes = {f"modes.{r}": "disabled" for r in OFF if r not in keep}
    return doc_with({**modes, **changes})


# ---- per rule ---------------------------------------------------------------------------


@PROPS
@given(
    limit=st.integers(1, 10**6),
    qtys=st.lists(st.integers(1, 2 * 10**6), min_size=1, max_size=30),
    mode=MODES,
)
def test_max_qty_rejects_exactly_the_orders_above_the_limit(
    limit: int, qtys: list[int], mode: str
) -> None:
    eng = make_engine(only("max_qty", **{"defaults.max_qty": limit, "modes.max_qty": mode}))
    v = eng.check(orders(len(qtys), qty=qtys), NOW)
    for qty, verdict in zip(qtys, v, strict=True):
        over = qty > limit and mode == "enforce"
        assert verdict_tuple(verdict) == (
            (Verdict.REJECT, RejectReason.MAX_SIZE, Rule.MAX_QTY, 0)
            if over
            else (
                (Verdict.PASS, RejectReason.MAX_SIZE, Rule.MAX_QTY, 1)
                if qty > limit and mode == "dry_run"
                else (Verdict.PASS, 0, 0, 0)
            )
        )


@settings(PROPS, max_examples=300)
@given(
    price=st.one_of(st.integers(1, 2**63 - 1), st.integers(1, 2**32)),
    qty=st.one_of(st.integers(1, 2**63 - 1), st.integers(1, 2**32)),
    limit=st.integers(1, 2**62 // 10_000),
    mode=MODES,
    market=st.booleans(),
)
def test_notional_overflow_never_passes(
    price: int, qty: int, limit: int, mode: str, market: bool
) -> None:
    refs = fresh_refs()
    if market:
        refs.set(AAPL, 0, 0, price, NOW)  # the market order is valued at this reference
    eng = make_engine(
        only("max_notional", **{"defaults.max_notional": limit, "modes.max_notional": mode}),
        refs=refs,
    )
    o = one(
        price=0 if market else price, qty=qty, ord_type=OrdType.MARKET if market else OrdType.LIMIT
    )
    got = verdict_tuple(eng.check(o, NOW)[0])
    notional = price * qty  # Python ints do not overflow
    if notional > 2**63 - 1 or (notional > limit * 10_000 and mode == "enforce"):
        assert got == (Verdict.REJECT, RejectReason.MAX_NOTIONAL, Rule.MAX_NOTIONAL, 0)
    else:
        assert got[0] == Verdict.PASS


@PROPS
@given(
    rate=st.integers(1, 2000),
    burst=st.integers(1, 40),
    gaps=st.lists(
        st.one_of(st.just(0), st.integers(0, 2_000_000), st.integers(0, 2_000_000_000)),
        min_size=1,
        max_size=120,
    ),
    per_batch=st.integers(1, 4),
)
def test_throttle_never_admits_more_than_burst_plus_rate_times_elapsed(
    rate: int, burst: int, gaps: list[int], per_batch: int
) -> None:
    eng = make_engine(
        only(
            **{
                "sessions.S1.rate_per_s": rate,
                "sessions.S1.burst": burst,
                "modes.throttle_venue": "disabled",
            }
        )
    )
    now = NOW
    t0 = None
    admitted = 0
    tokens = burst * 10**9  # the model: nano-tokens, full at first use
    last = NOW
    for gap in gaps:
        now += gap
        if t0 is None:
            t0 = now
            last = now
        tokens = min(burst * 10**9, tokens + (now - last) * rate)
        last = now
        v = eng.check(orders(per_batch, qty=1), now)
        for verdict in v:
            model_pass = tokens >= 10**9
            if model_pass:
                tokens -= 10**9
            assert (verdict["verdict"] == Verdict.PASS) == model_pass
            if verdict["verdict"] == Verdict.PASS:
                admitted += 1
            else:
                assert verdict_tuple(verdict) == (
                    Verdict.REJECT,
                    RejectReason.RATE_LIMIT,
                    Rule.THROTTLE_SESSION,
                    0,
                )
        assert admitted * 10**9 <= burst * 10**9 + rate * (now - t0)
        eng.on_execution(cat([report(int(i), ExecType.CANCELED) for i in v["order_id"]]))


# ---- exposure rules over random order / fill / cancel streams --------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("new"),
            st.integers(1, 400),  # qty
            st.integers(-400, 400),  # price offset, well inside the band
            st.sampled_from([Side.BUY, Side.SELL, Side.SELL_SHORT]),
            st.integers(1, 3),  # strategy
        ),
        st.tuples(st.just("fill"), st.integers(0, 10**6), st.integers(1, 100)),
        st.tuples(st.just("cancel"), st.integers(0, 10**6)),
    ),
    min_size=1,
    max_size=60,
)


class _Book:
    """The test's own record of live orders: id -> [side, price, leaves, cum, strategy]."""

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}

    def pick(self, k: int) -> int | None:
        if not self.live:
            return None
        keys = sorted(self.live)
        return keys[k % len(keys)]


def _apply_op(eng: RiskEngine, book: _Book, op: tuple[Any, ...]) -> None:
    if op[0] == "fill":
        oid = book.pick(op[1])
        if oid is None:
            return
        side, px, leaves, cum, strat = book.live[oid]
        qty = min(leaves, op[2])
        eng.on_execution(fill(oid, qty, cum + qty, px=px, side=side, strategy_id=strat))
        book.live[oid][2] -= qty
        book.live[oid][3] += qty
        if book.live[oid][2] == 0:
            del book.live[oid]
    elif op[0] == "cancel":
        oid = book.pick(op[1])
        if oid is not None:
            eng.on_execution(report(oid, ExecType.CANCELED))
            del book.live[oid]


@PROPS
@given(limit=st.integers(100, 200_000), ops=OPS)
def test_credit_is_never_exceeded_by_accepted_orders(
    limit: int, ops: list[tuple[Any, ...]]
) -> None:
    eng = make_engine(only("credit", **{"accounts.ACC1.credit_limit": limit}))
    book = _Book()
    for op in ops:
        if op[0] == "new":
            _, qty, off, side, strat = op
            acct = eng.account(ACC)
            used = acct["open_notional"] + acct["executed_notional"]
            o = one(qty=qty, price=PX + off, side=side, strategy_id=strat)
            got = verdict_tuple(eng.check(o, NOW)[0])
            over = used + (PX + off) * qty > limit * 10_000
            assert got == (
                (Verdict.REJECT, RejectReason.CREDIT, Rule.CREDIT, 0)
                if over
                else (Verdict.PASS, 0, 0, 0)
            )
            if not over:
                norm = Side.BUY if side == Side.BUY else Side.SELL
                book.live[int(o["order_id"][0])] = [norm, PX + off, qty, 0, strat]
        else:
            _apply_op(eng, book, op)
        acct = eng.account(ACC)
        assert acct["open_notional"] + acct["executed_notional"] <= limit * 10_000
    eng.check_invariants()


@PROPS
@given(
    max_pos=st.integers(1, 1500),
    max_strat=st.integers(1, 1500),
    ops=OPS,
)
def test_position_limit_is_never_exceeded_counting_open_orders(
    max_pos: int, max_strat: int, ops: list[tuple[Any, ...]]
) -> None:
    eng = make_engine(
        only(
            "position",
            **{
                "accounts.ACC1.max_position": max_pos,
                "accounts.ACC1.max_strategy_position": max_strat,
            },
        )
    )
    book = _Book()
    for op in ops:
        if op[0] == "new":
            _, qty, off, side, strat = op
            buy = side == Side.BUY

            def worst(s: int | None, qty: int = qty, buy: bool = buy) -> int:
                pos, ob, os_ = eng.position(ACC, AAPL, s)
                return pos + ob + qty if buy else os_ + qty - pos

            over = worst(None) > max_pos or worst(strat) > max_strat
            o = one(qty=qty, price=PX + off, side=side, strategy_id=strat)
            got = verdict_tuple(eng.check(o, NOW)[0])
            assert got == (
                (Verdict.REJECT, RejectReason.POSITION, Rule.POSITION, 0)
                if over
                else (Verdict.PASS, 0, 0, 0)
            )
            if not over:
                book.live[int(o["order_id"][0])] = [
                    Side.BUY if buy else Side.SELL,
                    PX + off,
                    qty,
                    0,
                    strat,
                ]
        else:
            _apply_op(eng, book, op)
        for s, cap in [(None, max_pos), *((k, max_strat) for k in (1, 2, 3))]:
            pos, ob, os_ = eng.position(ACC, AAPL, s)
            assert pos + ob <= cap and os_ - pos <= cap
    eng.check_invariants()


RESTING = st.lists(
    st.tuples(
        st.sampled_from([ACC, ACC2]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.one_of(st.none(), st.integers(-300, 300)),  # None: a market order
    ),
    max_size=25,
)


@PROPS
@given(
    resting=RESTING,
    cancels=st.lists(st.integers(0, 100), max_size=10),
    side=st.sampled_from([Side.BUY, Side.SELL, Side.SELL_SHORT]),
    offset=st.one_of(st.none(), st.integers(-300, 300)),
)
def test_self_match_rejects_exactly_the_crossing_orders(
    resting: list[tuple[int, int, int | None]],
    cancels: list[int],
    side: int,
    offset: int | None,
) -> None:
    eng = make_engine(only())  # self-match disabled while the book is built
    live: dict[int, tuple[int, int, int | None]] = {}
    for acct, s, off in resting:
        market = off is None
        o = one(
            account_id=acct,
            side=s,
            price=0 if market else PX + (off or 0),
            ord_type=OrdType.MARKET if market else OrdType.LIMIT,
        )
        assert eng.check(o, NOW)[0]["verdict"] == Verdict.PASS
        live[int(o["order_id"][0])] = (acct, s, off)
    for k in cancels:
        if live:
            oid = sorted(live)[k % len(live)]
            eng.on_execution(
                report(oid, ExecType.CANCELED, account_id=live[oid][0], side=live[oid][1])
            )
            del live[oid]
    eng.set_limits(limits_of(doc_with({"modes.self_match": "enforce"}), version=2))
    buy = side == Side.BUY
    inf = float("inf")

    def px(off: int | None, is_buy: bool) -> float:
        return (inf if is_buy else -inf) if off is None else PX + off

    mine = [(s, off) for a, s, off in live.values() if a == ACC]
    new_px = px(offset, buy)
    if buy:
        crosses = any(s == Side.SELL and px(off, False) <= new_px for s, off in mine)
    else:
        crosses = any(s == Side.BUY and px(off, True) >= new_px for s, off in mine)
    o = one(
        side=side,
        price=0 if offset is None else PX + offset,
        ord_type=OrdType.MARKET if offset is None else OrdType.LIMIT,
    )
    got = verdict_tuple(eng.check(o, NOW)[0])
    assert got == (
        (Verdict.REJECT, RejectReason.SELF_MATCH, Rule.SELF_MATCH, 0)
        if crosses
        else (Verdict.PASS, 0, 0, 0)
    )
    eng.check_invariants()


# ---- composition and modes --------------------------------------------------------------

LIMIT_RULES = (
    "restricted",
    "price_band",
    "max_qty",
    "max_notional",
    "credit",
    "position",
    "self_match",
    "throttle_session",
    "throttle_venue",
)
REASON = {
    "restricted": RejectReason.RESTRICTED,
    "price_band": RejectReason.PRICE_BANDS,
    "max_qty": RejectReason.MAX_SIZE,
    "max_notional": RejectReason.MAX_NOTIONAL,
    "credit": RejectReason.CREDIT,
    "position": RejectReason.POSITION,
    "self_match": RejectReason.SELF_MATCH,
    "throttle_session": RejectReason.RATE_LIMIT,
    "throttle_venue": RejectReason.RATE_LIMIT,
}


@settings(PROPS, max_examples=300)
@given(
    failing=st.sets(st.sampled_from(LIMIT_RULES)),
    modes=st.fixed_dictionaries(dict.fromkeys(LIMIT_RULES, MODES)),
    halted=st.booleans(),
    bad_symbol=st.booleans(),
)
def test_the_first_failing_rule_in_priority_order_decides(
    failing: set[str], modes: dict[str, str], halted: bool, bad_symbol: bool
) -> None:
    # Throttles that must fail get one token, spent by a setup order on another instrument.
    throttle = {}
    if "throttle_session" in failing:
        throttle |= {"sessions.S1.rate_per_s": 1, "sessions.S1.burst": 1}
    if "throttle_venue" in failing:
        throttle |= {"venues.XNAS.rate_per_s": 1, "venues.XNAS.burst": 1}
    eng = make_engine(doc_with(throttle))
    setup = [one(instrument_id=MSFT, side=Side.SELL, price=PX + 100)]
    if "self_match" in failing:  # a resting sell of the same account that a buy crosses
        setup.append(one(side=Side.SELL, price=PX - 100, session_id=3, venue_id=3))
    for o in setup:
        assert eng.check(o, NOW)[0]["verdict"] == Verdict.PASS

    changes: dict[str, Any] = dict(throttle)
    changes |= {f"modes.{r}": m for r, m in modes.items()}
    if "restricted" in failing:
        changes["restricted"] = ["AAPL"]
    if "max_qty" in failing:
        changes["instruments.AAPL.max_qty"] = 5
    if "max_notional" in failing:
        changes["defaults.max_notional"] = 1
    if "credit" in failing:
        changes["accounts.ACC1.credit_limit"] = 1
    if "position" in failing:
        changes |= {"accounts.ACC1.max_position": 1, "accounts.ACC1.max_strategy_position": 1}
    eng.set_limits(limits_of(doc_with(changes), version=2))
    before = eng.counters().per_rule.copy()

    fields: dict[str, Any] = {"price": PX * 106 // 100 if "price_band" in failing else PX}
    if bad_symbol:
        fields["symbol"] = encode_symbol("MSFT")
    got = verdict_tuple(eng.check(one(**fields), NOW, halted=halted)[0])

    expected = (Verdict.PASS, 0, 0, 0)
    dry: tuple[int, int] | None = None
    decided = None
    if bad_symbol:
        expected, decided = (
            (Verdict.REJECT, RejectReason.INVALID_SYMBOL, Rule.INSTRUMENT, 0),
            "instrument",
        )
    elif halted:
        expected, decided = (Verdict.REJECT, RejectReason.HALTED, Rule.HALT, 0), "halt"
    else:
        for name in LIMIT_RULES:  # priority order
            if name not in failing or modes[name] == "disabled":
                continue
            rule = RULE_BY_NAME[name].rule
            if modes[name] == "enforce":
                expected, decided = (Verdict.REJECT, REASON[name], rule, 0), name
                break
            dry = dry or (REASON[name], rule)
        if decided is None and dry:
            expected = (Verdict.PASS, dry[0], dry[1], 1)
    assert got == expected
    delta = eng.counters().per_rule - before
    denies = {r.name.lower() for r in Rule if delta[r, 2]}
    assert denies == ({decided} if decided else set())
    assert (delta[:, 3] <= 1).all() and (delta[:, 2] <= delta[:, 1]).all()


@PROPS
@given(
    default=st.sampled_from([RuleMode.ENFORCE, RuleMode.DRY_RUN, RuleMode.DISABLED]),
    venue=st.sampled_from(list(RuleMode)),
    instrument=st.sampled_from(list(RuleMode)),
    rule=st.sampled_from(["restricted", "max_qty"]),
)
def test_mode_resolution_instrument_over_venue_over_default(
    default: RuleMode, venue: RuleMode, instrument: RuleMode, rule: str
) -> None:
    names = {
        RuleMode.ENFORCE: "enforce",
        RuleMode.DRY_RUN: "dry_run",
        RuleMode.DISABLED: "disabled",
    }
    # Make exactly `rule` fail for the default order.
    fail = {"restricted": ["AAPL"]} if rule == "restricted" else {"instruments.AAPL.max_qty": 1}
    changes: dict[str, Any] = {**fail, f"modes.{rule}": names[default]}
    if venue != RuleMode.INHERIT:
        changes[f"venues.XNAS.modes.{rule}"] = names[venue]
    if instrument != RuleMode.INHERIT:
        changes[f"instruments.AAPL.modes.{rule}"] = names[instrument]
    eng = make_engine(doc_with(changes))
    mode = resolve_mode(default, venue, instrument)
    assert eng.limits.mode(RULE_BY_NAME[rule].rule, venue_id=VENUE, instrument_id=AAPL) == mode
    got = verdict_tuple(eng.check(one(), NOW)[0])
    r = RULE_BY_NAME[rule].rule
    reason = RULE_BY_NAME[rule].reasons[0]
    assert (
        got
        == {
            RuleMode.ENFORCE: (Verdict.REJECT, reason, r, 0),
            RuleMode.DRY_RUN: (Verdict.PASS, reason, r, 1),
            RuleMode.DISABLED: (Verdict.PASS, 0, 0, 0),
        }[mode]
    )


# ---- determinism, batching, snapshots, invariants ---------------------------------------------

STREAM_DOC = doc_with(
    {
        "defaults.max_qty": 200,
        "defaults.max_notional": 20_000,
        "accounts.ACC1.credit_limit": 9_000,
        "accounts.ACC1.max_position": 120,
        "accounts.ACC1.max_strategy_position": 70,
        "sessions.S1.rate_per_s": 20,
        "sessions.S1.burst": 5,
        "modes.self_match": "dry_run",
        "restricted": ["TSLA"],
        "instruments.MSFT.modes": {"max_qty": "dry_run", "price_band": "disabled"},
    }
)


def _mostly(common: list[Any], rare: list[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(common * 6 + rare)


ORDER = st.fixed_dictionaries(
    {
        "action": _mostly([OrderAction.NEW], [OrderAction.REPLACE] * 3 + [OrderAction.CANCEL, 0]),
        "orig": st.integers(0, 10**6),
        "account_id": _mostly([ACC], [ACC2, ACC2, 15, 16]),
        "instrument_id": _mostly([AAPL, MSFT], [3, 40]),
        "strategy_id": st.integers(1, 3),
        "session_id": _mostly([SESSION], [2]),
        "side": _mostly([Side.BUY, Side.SELL], [Side.SELL_SHORT, 0]),
        "ord_type": _mostly([OrdType.LIMIT], [OrdType.MARKET, OrdType.STOP_LIMIT, 0]),
        "price": st.one_of(
            st.integers(-60_000, 60_000).map(lambda d: PX + d),
            st.integers(-5, 5),
            st.integers(-200, 200).map(lambda d: PX + d),
        ),
        "qty": st.one_of(
            st.integers(1, 250), st.integers(1, 30), st.integers(-2, 0), st.just(2**62)
        ),
    }
)
EVENT = st.one_of(
    st.tuples(
        st.just("batch"),
        st.lists(ORDER, min_size=1, max_size=8),
        st.one_of(st.just(0), st.integers(0, 50_000_000), st.integers(0, 300_000_000)),
    ),
    st.tuples(
        st.just("report"),
        st.sampled_from(
            [
                ExecType.TRADE,
                ExecType.TRADE,
                ExecType.CANCELED,
                ExecType.REJECTED,
                ExecType.REPLACED,
                ExecType.EXPIRED,
                ExecType.TRADE_CANCEL,
                ExecType.NEW,
            ]
        ),
        st.integers(0, 10**6),
        st.integers(0, 120),
        st.integers(0, 400),
    ),
    st.tuples(st.just("halt"), st.integers(0, 3), st.sampled_from([False, False, True])),
    st.tuples(st.just("refs"), st.integers(-2_000_000_000, 0)),
)


def _build(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Concrete inputs (record arrays) from drawn events; ids refer to earlier orders."""
    issued: list[int] = []
    out: list[tuple[Any, ...]] = []
    now = NOW
    next_id = 1
    for ev in events:
        if ev[0] == "batch":
            now += ev[2]
            rows = []
            for f in ev[1]:
                orig = issued[f["orig"] % len(issued)] if issued else 0
                o = one(
                    order_id=next_id,
                    orig_order_id=orig
                    if f["action"] in (OrderAction.REPLACE, OrderAction.CANCEL)
                    else 0,
                    **{k: v for k, v in f.items() if k != "orig"},
                )
                issued.append(next_id)
                next_id += 1
                rows.append(o)
            out.append(("batch", cat(rows), now, bool(ev[2] % 7 == 0)))
        elif ev[0] == "report":
            _, et, k, qty, cum = ev
            oid = issued[k % len(issued)] if issued else 1
            side = Side.BUY if k % 2 else Side.SELL
            out.append(
                (
                    "report",
                    report(
                        oid, et, last_qty=qty, last_px=PX, cum_qty=cum, leaves_qty=qty, side=side
                    ),
                )
            )
        elif ev[0] == "halt":
            out.append(ev)
        else:
            out.append(("refs", now + ev[1]))
    return out


def _run(
    eng: RiskEngine, refs: Any, inputs: list[tuple[Any, ...]], *, singles: bool = False
) -> list[bytes]:
    trace: list[bytes] = []
    for item in inputs:
        if item[0] == "batch":
            _, batch, now, halted = item
            if singles:
                parts = [
                    strip_latency(eng.check(batch[i : i + 1], now, halted=halted))
                    for i in range(len(batch))
                ]
                trace.append(b"".join(p.tobytes() for p in parts))
            else:
                trace.append(strip_latency(eng.check(batch, now, halted=halted)).tobytes())
        elif item[0] == "report":
            trace.append(str(eng.on_execution(item[1])).encode())
        elif item[0] == "halt":
            scope = [KillScope.SYMBOL, KillScope.VENUE, KillScope.ACCOUNT, KillScope.SYMBOL][
                item[1]
            ]
            eng.set_halt(scope, 1 if item[1] < 3 else 2, item[2])
        else:
            refs.set(AAPL, PX - 100, PX + 100, PX, item[1])
            refs.set(MSFT, 0, 0, PX, item[1])
        eng.check_invariants()
    return trace


@settings(PROPS, max_examples=200)
@given(events=st.lists(EVENT, min_size=1, max_size=40), cut=st.integers(0, 40))
def test_same_inputs_give_bit_identical_verdicts_and_state(
    events: list[tuple[Any, ...]], cut: int
) -> None:
    inputs = _build(events)
    runs = []
    for singles in (False, False, True):
        refs = fresh_refs()
        eng = RiskEngine(limits_of(STREAM_DOC), refs, SMALL)
        trace = _run(eng, refs, inputs, singles=singles)
        runs.append((trace, eng.state_arrays()))
    (t1, s1), (t2, s2), (t3, s3) = runs
    assert t1 == t2 == t3  # a batch is exactly its orders one at a time
    for name in s1:
        assert s1[name].tobytes() == s2[name].tobytes(), name
        if name not in ("counters", "meta"):  # batch counts differ when split
            assert s1[name].tobytes() == s3[name].tobytes(), name

    # Snapshot at `cut`, restore, continue: the same as never stopping.
    cut = min(cut, len(inputs))
    refs = fresh_refs()
    eng = RiskEngine(limits_of(STREAM_DOC), refs, SMALL)
    head = _run(eng, refs, inputs[:cut])
    restored = RiskEngine.from_state_arrays(eng.state_arrays(), eng.limits, refs)
    tail = _run(restored, refs, inputs[cut:])
    assert head + tail == t1
    final = restored.state_arrays()
    for name in final:
        assert final[name].tobytes() == s1[name].tobytes(), name


def test_exact_copy_keeps_padding() -> None:
    eng = make_engine()
    v = eng.check(orders(2), NOW)
    assert exact_copy(v).tobytes() == v.tobytes()
