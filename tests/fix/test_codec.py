"""Codec: quickfix messages <-> ORDER_REQUEST / EXECUTION_REPORT, exactly, with typed rejects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
import quickfix as fix

from adapters.fix.codec import (
    BusinessRejectReason,
    MessageRejectedError,
    Rejection,
    ReportInvalidError,
    RequestKind,
    SessionDefaults,
    SessionRejectReason,
    avg_px,
    decode_request,
    encode_cancel_reject,
    encode_execution_report,
    encode_reject,
    format_utc_timestamp,
    parse_utc_timestamp,
)
from tectra.schema import (
    EXECUTION_REPORT,
    ExecType,
    OrderAction,
    OrdStatus,
    OrdType,
    RejectReason,
    Side,
    TimeInForce,
    encode_symbol,
    new_records,
    record_to_dict,
)

DEFAULTS = SessionDefaults(session_id=3, account="ACC1", account_id=77, strategy_id=9)
NOS = [
    (11, "ORD-1"),
    (55, "AAPL"),
    (54, "1"),
    (38, "100"),
    (40, "2"),
    (44, "12.3456"),
    (60, "20240102-13:30:00.123456"),
]


def msg(
    msg_type: str, fields: Iterable[tuple[int, str]], header: Iterable[tuple[int, str]] = ()
) -> Any:
    m = fix.Message()
    m.getHeader().setField(35, msg_type)
    m.getHeader().setField(34, "12")
    for tag, value in header:
        m.getHeader().setField(tag, value)
    for tag, value in fields:
        m.setField(tag, value)
    return m


def replace(fields: list[tuple[int, str]], **changes: str | None) -> list[tuple[int, str]]:
    updates = {int(k[1:]): v for k, v in changes.items()}
    out = [(t, updates.get(t, v)) for t, v in fields if updates.get(t, v) is not None]
    out += [(t, v) for t, v in updates.items() if v is not None and t not in dict(fields)]
    return out  # type: ignore[return-value]


def rejected(m: Any) -> Rejection:
    with pytest.raises(MessageRejectedError) as info:
        decode_request(m, DEFAULTS, 1)
    return info.value.rejection


# ---- inbound ------------------------------------------------------------------------------


def test_new_order_single_maps_every_field_exactly() -> None:
    d = decode_request(msg("D", NOS), DEFAULTS, recv_ns=555)
    r = record_to_dict(d.record[0])
    assert d.kind == RequestKind.NEW and d.cl_ord_id == "ORD-1" and not d.poss_dup
    assert d.record.shape == (1,)
    assert r["action"] == OrderAction.NEW and r["side"] == Side.BUY
    assert r["ord_type"] == OrdType.LIMIT and r["time_in_force"] == TimeInForce.DAY
    assert r["price"] == 123_456 and r["qty"] == 100 and r["symbol"] == "AAPL"
    assert (r["session_id"], r["account"], r["account_id"], r["strategy_id"]) == (3, "ACC1", 77, 9)
    assert r["ts_ns"] == 555 and r["cl_ord_id"] == "ORD-1"
    assert r["transact_ns"] == 1_704_202_200_123_456_000


@pytest.mark.parametrize(
    ("text", "fixed"),
    [
        ("12.3456", 123_456),
        ("0.0001", 1),
        ("100", 1_000_000),
        ("7.5000000", 75_000),
        ("99999.99", 999_999_900),
    ],
)
def test_prices_are_exact(text: str, fixed: int) -> None:
    d = decode_request(msg("D", replace(NOS, t44=text)), DEFAULTS, 1)
    assert int(d.record[0]["price"]) == fixed


@pytest.mark.parametrize(
    ("changes", "kind", "reason", "tag", "words"),
    [
        (
            {"t44": "12.34567"},
            "3",
            SessionRejectReason.VALUE_IS_INCORRECT,
            44,
            "more than 4 decimal",
        ),
        ({"t44": "1e3"}, "3", SessionRejectReason.INCORRECT_DATA_FORMAT, 44, "not a decimal"),
        ({"t44": "0"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 44, "greater than zero"),
        (
            {"t44": None},
            "j",
            BusinessRejectReason.CONDITIONALLY_REQUIRED_FIELD_MISSING,
            None,
            "required",
        ),
        ({"t40": "1"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 44, "market order"),
        ({"t40": "3"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 40, "not supported"),
        ({"t11": "X" * 21}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 11, "longer than 20"),
        ({"t11": None}, "3", SessionRejectReason.REQUIRED_TAG_MISSING, 11, "ClOrdID"),
        ({"t54": "7"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 54, "not supported"),
        ({"t55": None}, "3", SessionRejectReason.REQUIRED_TAG_MISSING, 55, "Symbol"),
        ({"t55": "TOOLONGSYM"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 55, "1 to 8"),
        ({"t38": "10.5"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 38, "whole positive"),
        ({"t38": "0"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 38, "greater than zero"),
        ({"t38": None}, "3", SessionRejectReason.REQUIRED_TAG_MISSING, 38, "OrderQty"),
        ({"t59": "6"}, "3", SessionRejectReason.VALUE_IS_INCORRECT, 59, "GTD"),
        ({"t1": "OTHER"}, "j", BusinessRejectReason.NOT_AUTHORIZED, None, "not this session"),
        ({"t60": "2024-01-02"}, "3", SessionRejectReason.INCORRECT_DATA_FORMAT, 60, "UTCTimestamp"),
    ],
)
def test_malformed_orders_are_rejected_with_a_reason(
    changes: dict[str, str | None], kind: str, reason: int, tag: int | None, words: str
) -> None:
    r = rejected(msg("D", replace(NOS, **changes)))
    assert (r.msg_type, r.reason, r.ref_tag) == (kind, reason, tag)
    assert words in r.text


def test_quantity_with_zero_decimals_is_whole() -> None:
    d = decode_request(msg("D", replace(NOS, t38="300.00")), DEFAULTS, 1)
    assert int(d.record[0]["qty"]) == 300


def test_market_order_and_time_in_force_and_sides() -> None:
    fields = replace(NOS, t40="1", t44=None, t59="3", t54="5")
    r = decode_request(msg("D", fields), DEFAULTS, 1).record[0]
    assert (int(r["ord_type"]), int(r["price"]), int(r["time_in_force"])) == (
        OrdType.MARKET,
        0,
        TimeInForce.IOC,
    )
    assert int(r["side"]) == Side.SELL_SHORT


def test_unbound_session_takes_the_orders_account() -> None:
    d = decode_request(msg("D", [*NOS, (1, "DESK7")]), SessionDefaults(1), 1)
    assert record_to_dict(d.record[0])["account"] == "DESK7"


def test_cancel_replace_status_and_poss_dup() -> None:
    cancel = [
        (11, "C-2"),
        (41, "ORD-1"),
        (37, "42"),
        (55, "AAPL"),
        (54, "1"),
        (60, "20240102-13:30:01"),
    ]
    d = decode_request(msg("F", cancel, header=[(43, "Y")]), DEFAULTS, 1)
    r = record_to_dict(d.record[0])
    assert d.kind == RequestKind.CANCEL and d.poss_dup
    assert (r["action"], r["orig_cl_ord_id"], r["orig_order_id"], r["qty"], r["price"]) == (
        OrderAction.CANCEL,
        "ORD-1",
        42,
        0,
        0,
    )
    repl = [*replace(NOS, t11="R-3", t38="250", t44="12.5"), (41, "ORD-1")]
    d = decode_request(msg("G", repl, header=[(97, "Y")]), DEFAULTS, 1)
    r = record_to_dict(d.record[0])
    assert d.kind == RequestKind.REPLACE and d.poss_dup
    assert (r["action"], r["qty"], r["price"], r["orig_cl_ord_id"]) == (
        OrderAction.REPLACE,
        250,
        125_000,
        "ORD-1",
    )
    d = decode_request(
        msg("H", [(11, "ORD-1"), (37, "NONE"), (55, "AAPL"), (54, "2")]), DEFAULTS, 1
    )
    r = record_to_dict(d.record[0])
    assert d.kind == RequestKind.STATUS and r["action"] == OrderAction.NONE and r["order_id"] == 0
    long_orig = [(11, "C-3"), (41, "Y" * 21), (55, "AAPL"), (54, "1")]
    assert rejected(msg("F", long_orig)).ref_tag == 41


def test_unsupported_message_type_is_a_business_reject() -> None:
    r = rejected(msg("AF", [(584, "1"), (585, "7")]))
    assert (r.msg_type, r.reason) == ("j", BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE)


def test_timestamps_round_trip_exactly() -> None:
    ns = parse_utc_timestamp("20240229-23:59:59.999999999")
    assert ns % 1_000_000_000 == 999_999_999
    assert format_utc_timestamp(ns) == "20240229-23:59:59.999"
    assert parse_utc_timestamp("20240102-13:30:00") == 1_704_202_200 * 10**9
    with pytest.raises(ValueError):
        parse_utc_timestamp("20240230-00:00:00")


def test_avg_px_rounds_half_away_from_zero() -> None:
    assert avg_px(100 * 102_500 + 200 * 102_600, 300) == 102_567
    assert avg_px(3, 2) == 2 and avg_px(-3, 2) == -2 and avg_px(5, 3) == 2
    assert avg_px(123, 0) == 0


# ---- outbound -----------------------------------------------------------------------------


def report(**fields: Any) -> np.ndarray:  # type: ignore[type-arg]
    er = new_records(EXECUTION_REPORT, 1)
    base = {
        "order_id": 42,
        "exec_id": 7,
        "exec_type": ExecType.NEW,
        "ord_status": OrdStatus.NEW,
        "side": Side.SELL,
        "symbol": encode_symbol("MSFT"),
        "cl_ord_id": b"ORD-1",
        "price": 1_234_500,
        "order_qty": 300,
        "leaves_qty": 300,
        "transact_ns": 1_704_202_200_123_000_000,
    }
    base.update(fields)
    for key, value in base.items():
        er[0][key] = value
    return er


def fields_of(m: Any) -> dict[int, str]:
    return {int(p.split("=")[0]): p.split("=", 1)[1] for p in m.toString().split("\x01") if p}


def test_execution_report_new_and_partial_and_full_fill() -> None:
    f = fields_of(encode_execution_report(report(), account="ACC1"))
    assert (f[35], f[37], f[17], f[150], f[39], f[54], f[55]) == (
        "8",
        "42",
        "7",
        "0",
        "0",
        "2",
        "MSFT",
    )
    assert (f[38], f[44], f[151], f[14], f[6], f[1]) == ("300", "123.45", "300", "0", "0", "ACC1")
    assert f[60] == "20240102-13:30:00.123" and 31 not in f and 32 not in f

    part = report(
        exec_type=ExecType.TRADE,
        ord_status=OrdStatus.PARTIALLY_FILLED,
        last_qty=100,
        last_px=1_234_500,
        cum_qty=100,
        leaves_qty=200,
        avg_px=1_234_500,
        venue_order_id=9001,
    )
    f = fields_of(encode_execution_report(part))
    assert (f[150], f[39], f[32], f[31], f[14], f[151], f[6], f[198]) == (
        "F",
        "1",
        "100",
        "123.45",
        "100",
        "200",
        "123.45",
        "9001",
    )
    done = report(
        exec_type=ExecType.TRADE,
        ord_status=OrdStatus.FILLED,
        last_qty=200,
        last_px=1_234_600,
        cum_qty=300,
        leaves_qty=0,
        avg_px=avg_px(100 * 1_234_500 + 200 * 1_234_600, 300),
    )
    f = fields_of(encode_execution_report(done))
    assert (f[39], f[14], f[151], f[6], f[31]) == ("2", "300", "0", "123.4567", "123.46")


def test_reject_report_carries_ord_rej_reason_and_text() -> None:
    er = report(exec_type=ExecType.REJECTED, ord_status=OrdStatus.REJECTED, leaves_qty=0)
    er[0]["reject_reason"] = RejectReason.MAX_NOTIONAL
    f = fields_of(encode_execution_report(er, text="limit 1000000"))
    assert (f[150], f[39], f[103], f[58]) == ("8", "8", "3", "MAX_NOTIONAL: limit 1000000")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"leaves_qty": 299}, "LeavesQty 299"),
        ({"ord_status": OrdStatus.FILLED, "leaves_qty": 0}, "FILLED needs"),
        ({"ord_status": OrdStatus.PARTIALLY_FILLED, "leaves_qty": 300}, "PARTIALLY_FILLED needs"),
        (
            {
                "exec_type": ExecType.TRADE,
                "ord_status": OrdStatus.PARTIALLY_FILLED,
                "cum_qty": 100,
                "leaves_qty": 200,
            },
            "LastQty",
        ),
        ({"exec_type": ExecType.CANCELED, "ord_status": OrdStatus.CANCELED}, "LeavesQty 0"),
        ({"avg_px": 5}, "AvgPx set before any fill"),
        ({"exec_id": 0}, "exec_id is 0"),
        ({"exec_type": ExecType.REJECTED}, "go together"),
        ({"exec_type": 0x5A}, "not a FIX ExecType"),
        ({"cl_ord_id": b""}, "cl_ord_id is empty"),
    ],
)
def test_inconsistent_reports_never_reach_the_wire(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ReportInvalidError, match=words):
        encode_execution_report(report(**fields))


def test_cancel_reject() -> None:
    er = report(cl_ord_id=b"C-2", orig_cl_ord_id=b"ORD-1", ord_status=OrdStatus.FILLED)
    er[0]["reject_reason"] = RejectReason.UNKNOWN_ORDER
    f = fields_of(encode_cancel_reject(er, response_to=OrderAction.REPLACE))
    assert (f[35], f[11], f[41], f[39], f[434], f[102], f[37]) == (
        "9",
        "C-2",
        "ORD-1",
        "2",
        "2",
        "1",
        "42",
    )
    with pytest.raises(ReportInvalidError):
        encode_cancel_reject(report(), response_to=OrderAction.CANCEL)  # no OrigClOrdID
    with pytest.raises(ReportInvalidError):
        encode_cancel_reject(er, response_to=OrderAction.NEW)


def test_reject_messages() -> None:
    r = Rejection("3", SessionRejectReason.VALUE_IS_INCORRECT, "Price(44): bad", 44)
    f = fields_of(encode_reject(r, ref_seq_num=12, ref_msg_type="D"))
    assert (f[35], f[45], f[372], f[373], f[371], f[58]) == (
        "3",
        "12",
        "D",
        "5",
        "44",
        "Price(44): bad",
    )
    b = Rejection("j", BusinessRejectReason.NOT_AUTHORIZED, "no")
    f = fields_of(encode_reject(b, ref_seq_num=13, ref_msg_type="D", ref_id="ORD-9"))
    assert (f[35], f[380], f[379], f[372]) == ("j", "6", "ORD-9", "D")
    assert r.counter_name == "reject_value_is_incorrect"
    assert b.counter_name == "business_reject_not_authorized"
