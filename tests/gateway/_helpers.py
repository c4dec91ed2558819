"""Builders shared by the gateway tests: ORDER_REQUEST and EXECUTION_REPORT records."""

from __future__ import annotations

from typing import Any

import numpy as np

from tectra.schema import (
    EXECUTION_REPORT,
    ORDER_REQUEST,
    ExecType,
    OrderAction,
    OrdStatus,
    OrdType,
    Side,
    TimeInForce,
    encode_symbol,
    new_records,
)

NOW = 1_000_000_000
ACC, STRAT, SESSION, VENUE, INSTR = 7, 3, 1, 2, 11
PX = 1_000_000  # 100.0000


def request(
    action: OrderAction,
    order_id: int,
    cl: str,
    *,
    qty: int = 0,
    price: int = PX,
    side: Side = Side.BUY,
    orig_order_id: int = 0,
    orig_cl: str = "",
    ord_type: OrdType = OrdType.LIMIT,
    **fields: Any,
) -> np.ndarray:
    rec = new_records(ORDER_REQUEST, 1)
    r = rec[0]
    r["action"] = action
    r["order_id"] = order_id
    r["orig_order_id"] = orig_order_id
    r["cl_ord_id"] = cl.encode()
    r["orig_cl_ord_id"] = orig_cl.encode()
    r["qty"] = qty
    r["price"] = price
    r["side"] = side
    r["ord_type"] = ord_type
    r["time_in_force"] = TimeInForce.DAY
    r["account_id"] = ACC
    r["strategy_id"] = STRAT
    r["session_id"] = SESSION
    r["venue_id"] = VENUE
    r["instrument_id"] = INSTR
    r["symbol"] = encode_symbol("AAPL")
    for key, value in fields.items():
        r[key] = value
    return rec


def new(order_id: int, cl: str, qty: int = 100, price: int = PX, **kw: Any) -> np.ndarray:
    return request(OrderAction.NEW, order_id, cl, qty=qty, price=price, **kw)


def cancel(order_id: int, cl: str, orig_order_id: int, **kw: Any) -> np.ndarray:
    return request(OrderAction.CANCEL, order_id, cl, price=0, orig_order_id=orig_order_id, **kw)


def replace(
    order_id: int, cl: str, orig_order_id: int, qty: int, price: int = PX, **kw: Any
) -> np.ndarray:
    return request(
        OrderAction.REPLACE, order_id, cl, qty=qty, price=price, orig_order_id=orig_order_id, **kw
    )


def report(
    order_id: int,
    exec_type: ExecType,
    *,
    ord_status: OrdStatus = OrdStatus.NONE,
    last_qty: int = 0,
    last_px: int = 0,
    exec_id: int = 0,
    side: Side = Side.BUY,
    account_id: int = ACC,
    strategy_id: int = STRAT,
    instrument_id: int = INSTR,
    venue_id: int = VENUE,
    **fields: Any,
) -> np.ndarray:
    rec = new_records(EXECUTION_REPORT, 1)
    r = rec[0]
    r["order_id"] = order_id
    r["exec_type"] = exec_type
    r["ord_status"] = ord_status
    r["last_qty"] = last_qty
    r["last_px"] = last_px
    r["exec_id"] = exec_id
    r["side"] = side
    r["account_id"] = account_id
    r["strategy_id"] = strategy_id
    r["instrument_id"] = instrument_id
    r["venue_id"] = venue_id
    for key, value in fields.items():
        r[key] = value
    return rec


def ack(order_id: int) -> np.ndarray:
    return report(order_id, ExecType.NEW, ord_status=OrdStatus.NEW)


def fill(order_id: int, qty: int, px: int = PX, exec_id: int = 0, **kw: Any) -> np.ndarray:
    return report(order_id, ExecType.TRADE, last_qty=qty, last_px=px, exec_id=exec_id, **kw)


def batch(*recs: np.ndarray) -> np.ndarray:
    """Concatenate record arrays keeping the schema dtype (np.concatenate would repack it)."""
    out = np.zeros(sum(r.shape[0] for r in recs), dtype=recs[0].dtype)
    pos = 0
    for r in recs:
        out[pos : pos + r.shape[0]] = r
        pos += r.shape[0]
    return out
