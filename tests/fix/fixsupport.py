"""Shared helpers for the FIX tests: a recording quickfix client, a test-double OrderSink, ports.

`ImmediateSink` plays the gateway: it acks every order at once (ExecutionReport New), fills
orders on symbols listed in `fill_symbols` (one fill) or `partial_symbols` (two fills at
different prices, so CumQty/LeavesQty/AvgPx move), cancels and replaces open orders, refuses
cancels of unknown orders with an OrderCancelReject, and records everything it was handed.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import quickfix as fix

from adapters.fix.acceptor import FixAcceptor
from adapters.fix.codec import avg_px
from adapters.fix.settings import FixInitiatorConfig, initiator_settings, stop_engine
from tectra.schema import (
    EXECUTION_REPORT,
    ExecType,
    OrderAction,
    OrdStatus,
    RejectReason,
    decode_symbol,
    decode_text,
    new_records,
    record_to_dict,
)

Msg = dict[int, str]
TICK = 100  # 0.01 in 1e-4 units


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def parse(raw: str) -> Msg:
    out: Msg = {}
    for part in raw.split("\x01"):
        if part:
            tag, _, value = part.partition("=")
            out[int(tag)] = value
    return out


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class _ClientApp(fix.Application):  # type: ignore[misc]
    def __init__(self, client: FixTestClient) -> None:
        super().__init__()
        self.c = client

    def onCreate(self, session_id: Any) -> None:
        pass

    def onLogon(self, session_id: Any) -> None:
        self.c._event("logon")

    def onLogout(self, session_id: Any) -> None:
        self.c._event("logout")

    def toAdmin(self, message: Any, session_id: Any) -> None:
        if message.getHeader().getField(35) == "A" and self.c.username is not None:
            message.setField(553, self.c.username)
            message.setField(554, self.c.password or "")
        self.c._record(self.c.admin_out, message)

    def fromAdmin(self, message: Any, session_id: Any) -> None:
        self.c._record(self.c.admin_in, message)

    def toApp(self, message: Any, session_id: Any) -> None:
        # quickfix strips PossDupFlag/OrigSendingTime from new messages; an application-level
        # possible duplicate is marked here, after the header was filled in.
        if message.isSetField(11):
            for tag, value in self.c.header_patches.pop(message.getField(11), ()):
                message.getHeader().setField(tag, value)
        self.c._record(self.c.app_out, message)

    def fromApp(self, message: Any, session_id: Any) -> None:
        self.c._record(self.c.app_in, message)


class FixTestClient:
    """A real quickfix SocketInitiator that records every message it sends and receives."""

    def __init__(
        self,
        port: int,
        sender: str,
        target: str,
        state_dir: Path,
        *,
        username: str | None = None,
        password: str | None = None,
        heartbeat_s: int = 30,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.admin_in: list[Msg] = []
        self.admin_out: list[Msg] = []
        self.app_in: list[Msg] = []
        self.app_out: list[Msg] = []
        self.events: list[str] = []
        self.header_patches: dict[str, list[tuple[int, str]]] = {}
        self._cond = threading.Condition()
        cfg = FixInitiatorConfig(
            "127.0.0.1",
            port,
            sender,
            target,
            state_dir=state_dir,
            heartbeat_s=heartbeat_s,
            reconnect_s=1,
            extra=dict(extra or {}),
        )
        self.settings = initiator_settings(cfg)
        self.app = _ClientApp(self)
        self.initiator = fix.ThreadedSocketInitiator(
            self.app,
            fix.FileStoreFactory(self.settings),
            self.settings,
            fix.FileLogFactory(self.settings),
        )
        self.sid = fix.SessionID("FIX.4.4", sender, target)
        self._started = False

    def _record(self, where: list[Msg], message: Any) -> None:
        msg = parse(message.toString())
        with self._cond:
            where.append(msg)
            self._cond.notify_all()

    def _event(self, name: str) -> None:
        with self._cond:
            self.events.append(name)
            self._cond.notify_all()

    def start(self) -> FixTestClient:
        self.initiator.start()
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            stop_engine(self.initiator, [self.sid])
            self._started = False
        self.initiator = None  # destroys the C++ engine: its session leaves quickfix's registry

    @property
    def session(self) -> Any:
        return fix.Session.lookupSession(self.sid)

    def logged_on(self) -> bool:
        s = self.session
        return bool(s is not None and s.isLoggedOn())

    def wait_logged_on(self, timeout: float = 10.0) -> None:
        wait_until(self.logged_on, timeout, "client logon")

    def wait(self, where: list[Msg], pred: Callable[[Msg], bool], timeout: float = 10.0) -> Msg:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in where:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching message; last few: {where[-5:]}")
                self._cond.wait(left)

    def wait_app(self, pred: Callable[[Msg], bool], timeout: float = 10.0) -> Msg:
        return self.wait(self.app_in, pred, timeout)

    def wait_admin(self, pred: Callable[[Msg], bool], timeout: float = 10.0) -> Msg:
        return self.wait(self.admin_in, pred, timeout)

    def reports(self, cl_ord_id: str) -> list[Msg]:
        with self._cond:
            return [m for m in self.app_in if m.get(35) == "8" and m.get(11) == cl_ord_id]

    def send(
        self,
        msg_type: str,
        fields: Iterable[tuple[int, str]],
        header: Iterable[tuple[int, str]] = (),
    ) -> None:
        m = fix.Message()
        m.getHeader().setField(35, msg_type)
        fields = list(fields)
        patch = list(header)
        if patch:
            self.header_patches[dict(fields)[11]] = patch
        for tag, value in fields:
            m.setField(tag, value)
        assert fix.Session.sendToTarget(m, self.sid) is not None

    def new_order(
        self,
        cl_ord_id: str,
        *,
        symbol: str = "AAPL",
        side: str = "1",
        qty: str = "100",
        price: str | None = "10.25",
        ord_type: str = "2",
        header: Iterable[tuple[int, str]] = (),
        drop: Iterable[int] = (),
        extra: Iterable[tuple[int, str]] = (),
    ) -> None:
        fields = [
            (11, cl_ord_id),
            (55, symbol),
            (54, side),
            (38, qty),
            (40, ord_type),
            (60, "20240102-13:30:00.123"),
        ]
        if price is not None:
            fields.append((44, price))
        fields += list(extra)
        skip = set(drop)
        self.send("D", [(t, v) for t, v in fields if t not in skip], header)

    def cancel(self, cl_ord_id: str, orig: str, *, symbol: str = "AAPL", side: str = "1") -> None:
        self.send(
            "F",
            [(11, cl_ord_id), (41, orig), (55, symbol), (54, side), (60, "20240102-13:30:01")],
        )

    def replace(
        self, cl_ord_id: str, orig: str, *, qty: str, price: str, symbol: str = "AAPL"
    ) -> None:
        self.send(
            "G",
            [
                (11, cl_ord_id),
                (41, orig),
                (55, symbol),
                (54, "1"),
                (38, qty),
                (40, "2"),
                (44, price),
                (60, "20240102-13:30:02"),
            ],
        )


# --------------------------------------------------------------------------------------------
# Test-double OrderSink
# --------------------------------------------------------------------------------------------


class _Order:
    def __init__(self, order_id: int, rec: np.void) -> None:
        self.order_id = order_id
        self.cl_ord_id = decode_text(rec["cl_ord_id"])
        self.side = int(rec["side"])
        self.symbol = bytes(rec["symbol"])
        self.qty = int(rec["qty"])
        self.price = int(rec["price"])
        self.cum = 0
        self.notional = 0
        self.status = OrdStatus.NEW


class ImmediateSink:
    """Acks (and optionally fills) each order at once through the acceptor it is bound to."""

    def __init__(
        self,
        *,
        fill_symbols: Iterable[str] = ("FILL",),
        partial_symbols: Iterable[str] = ("PART",),
        journal: Path | None = None,
    ) -> None:
        self.acceptor: FixAcceptor | None = None
        self.fill_symbols = set(fill_symbols)
        self.partial_symbols = set(partial_symbols)
        self.seen: list[dict[str, Any]] = []
        self.status_requests: list[dict[str, Any]] = []
        self.cancel_all_calls: list[int] = []
        self.orders: dict[str, _Order] = {}
        self._ids = itertools.count(1)
        self._exec_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._journal = journal.open("a") if journal is not None else None

    def bind(self, acceptor: FixAcceptor) -> ImmediateSink:
        self.acceptor = acceptor
        return self

    # -- OrderSink --

    def on_order(self, session_id: int, record: npt.NDArray[np.void]) -> None:
        rec = record[0]
        d = record_to_dict(rec)
        with self._lock:
            self.seen.append(d)
        if self._journal is not None:  # what a gateway journal would hold: survives kill -9
            self._journal.write(json.dumps({"cl": d["cl_ord_id"], "seq": d["seq"]}) + "\n")
            self._journal.flush()
        action = OrderAction(int(rec["action"]))
        if action == OrderAction.NEW:
            self._new(session_id, rec)
        elif action == OrderAction.CANCEL:
            self._cancel(session_id, rec)
        elif action == OrderAction.REPLACE:
            self._replace(session_id, rec)

    def on_status_request(self, session_id: int, record: npt.NDArray[np.void]) -> None:
        rec = record[0]
        self.status_requests.append(record_to_dict(rec))
        order = self.orders.get(decode_text(rec["cl_ord_id"]))
        if order is None:
            er = self._report(None, ExecType.ORDER_STATUS, OrdStatus.REJECTED, rec=rec)
            er[0]["reject_reason"] = RejectReason.UNKNOWN_ORDER
        else:
            er = self._report(order, ExecType.ORDER_STATUS, order.status)
        self._send(session_id, er)

    def cancel_all(self, session_id: int) -> None:
        with self._lock:
            self.cancel_all_calls.append(session_id)

    # -- behaviour --

    def _report(
        self,
        order: _Order | None,
        exec_type: ExecType,
        status: OrdStatus,
        *,
        rec: np.void | None = None,
        last_qty: int = 0,
        last_px: int = 0,
    ) -> npt.NDArray[np.void]:
        er = new_records(EXECUTION_REPORT, 1)
        e = er[0]
        e["exec_id"] = next(self._exec_ids)
        e["exec_type"] = exec_type
        e["ord_status"] = status
        if order is None:
            assert rec is not None
            e["cl_ord_id"] = rec["cl_ord_id"]
            e["side"] = rec["side"]
            e["symbol"] = rec["symbol"]
            return er
        e["order_id"] = order.order_id
        e["cl_ord_id"] = order.cl_ord_id.encode()
        e["side"] = order.side
        e["symbol"] = order.symbol
        e["price"] = order.price
        e["order_qty"] = order.qty
        e["cum_qty"] = order.cum
        terminal = status in (OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED)
        e["leaves_qty"] = 0 if terminal else order.qty - order.cum
        e["avg_px"] = avg_px(order.notional, order.cum)
        e["last_qty"] = last_qty
        e["last_px"] = last_px
        return er

    def _send(self, session_id: int, er: npt.NDArray[np.void]) -> None:
        assert self.acceptor is not None
        self.acceptor.send_execution_report(session_id, er)

    def _new(self, session_id: int, rec: np.void) -> None:
        order = _Order(next(self._ids), rec)
        self.orders[order.cl_ord_id] = order
        self._send(session_id, self._report(order, ExecType.NEW, OrdStatus.NEW))
        symbol = decode_symbol(rec["symbol"])
        if symbol in self.fill_symbols:
            self._fill(session_id, order, order.qty, order.price)
        elif symbol in self.partial_symbols:
            first = order.qty // 3
            self._fill(session_id, order, first, order.price)
            self._fill(session_id, order, order.qty - first, order.price + TICK)

    def _fill(self, session_id: int, order: _Order, qty: int, px: int) -> None:
        order.cum += qty
        order.notional += qty * px
        order.status = OrdStatus.FILLED if order.cum == order.qty else OrdStatus.PARTIALLY_FILLED
        er = self._report(order, ExecType.TRADE, order.status, last_qty=qty, last_px=px)
        self._send(session_id, er)

    def _cancel_reject(self, session_id: int, rec: np.void, action: OrderAction) -> None:
        assert self.acceptor is not None
        er = new_records(EXECUTION_REPORT, 1)
        e = er[0]
        e["cl_ord_id"] = rec["cl_ord_id"]
        e["orig_cl_ord_id"] = rec["orig_cl_ord_id"]
        e["ord_status"] = OrdStatus.REJECTED
        e["reject_reason"] = RejectReason.UNKNOWN_ORDER
        self.acceptor.send_cancel_reject(session_id, er, response_to=action)

    def _cancel(self, session_id: int, rec: np.void) -> None:
        order = self.orders.get(decode_text(rec["orig_cl_ord_id"]))
        if order is None or order.status in (OrdStatus.FILLED, OrdStatus.CANCELED):
            self._cancel_reject(session_id, rec, OrderAction.CANCEL)
            return
        order.status = OrdStatus.CANCELED
        er = self._report(order, ExecType.CANCELED, OrdStatus.CANCELED)
        er[0]["orig_cl_ord_id"] = order.cl_ord_id.encode()
        er[0]["cl_ord_id"] = rec["cl_ord_id"]
        self._send(session_id, er)

    def _replace(self, session_id: int, rec: np.void) -> None:
        orig = decode_text(rec["orig_cl_ord_id"])
        order = self.orders.get(orig)
        if order is None or order.status in (OrdStatus.FILLED, OrdStatus.CANCELED):
            self._cancel_reject(session_id, rec, OrderAction.REPLACE)
            return
        order.cl_ord_id = decode_text(rec["cl_ord_id"])
        order.qty = int(rec["qty"])
        order.price = int(rec["price"])
        self.orders[order.cl_ord_id] = order
        er = self._report(order, ExecType.REPLACED, order.status)
        er[0]["orig_cl_ord_id"] = orig.encode()
        self._send(session_id, er)
