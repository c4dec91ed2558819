"""The FIX 4.4 acceptor shell: quickfix ThreadedSocketAcceptor + Application around the codec.

This module owns the client edge's session behaviour:

* logon authentication: Username(553)/Password(554) checked in `fromAdmin` against the
  session's `Credentials`; a failure raises `quickfix.RejectLogon` (the client gets a Logout with
  the reason), is logged (Python logging and the session's quickfix event log) and counted;
* application messages: D/F/G/H decoded by `codec.decode_request` into one ORDER_REQUEST and
  handed to the `OrderSink`; anything malformed or unsupported is answered with a Reject (35=3)
  or BusinessMessageReject (35=j) carrying a reason, counted, and the session stays up;
* PossDupFlag(43)=Y / PossResend(97)=Y: a message whose ClOrdID was already handed to the sink
  is dropped (counted as `poss_dup_ignored`), so a resent order is never executed twice. The
  ClOrdIDs are persisted per session under `state_dir/dedupe` so this holds across restarts;
* sequence numbers, resends and gap fills are quickfix's (FileStore under `state_dir/store`, so
  after a restart, even `kill -9`, each session resumes from its persisted sequence numbers);
* cancel-on-disconnect: when a logged-on session logs out or drops, `sink.cancel_all` is called
  if the session has it enabled;
* outbound: `send_execution_report` / `send_cancel_reject` encode EXECUTION_REPORT records.

Threading. quickfix's ThreadedSocketAcceptor runs one thread per connection (plus one per
listening port): the callbacks of one session, and so its `OrderSink` calls, run on that
session's thread one at a time, in sequence-number order; different sessions call the sink from
different threads (interleaved under the GIL). The sink must therefore be safe to call from
several threads and must not block: it pushes the record onto its queue/ring and returns (a full
queue is the sink's to reject with QUEUE_FULL, never to wait on). `send_execution_report` and
`send_cancel_reject` may be called from any thread, including from inside `on_order`: quickfix
serialises sends per session with its own lock and the bindings release the GIL in C++. A send
writes to the socket before it returns, so it blocks while that client's TCP window is full (a
client that stops reading stalls whoever sends to it; the gateway should not send from its hot
loop to a session it cannot afford to wait for).
(The single-threaded SocketAcceptor of quickfix 1.16 is not used: its `stop()` closes the
listening sockets from the caller's thread while its network thread closes them too, which
crashes the process when clients are connecting at that moment, e.g. after rejected logons.)

Exactly-once at the sink across a crash: quickfix raises its incoming sequence number just after
`fromApp` returns, and the ClOrdID is journalled just after the sink call. A crash inside those
few microseconds makes the client resend that message (PossDup) after restart; a ClOrdID already
in the journal is dropped here, one that missed the journal reaches the sink again and is the
gateway's duplicate-ClOrdID check to catch. Journal writes are flushed (they survive the
process dying), not fsynced (a host crash may lose the last ones).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import quickfix as fix

from adapters.fix.codec import (
    CL_ORD_ID,
    MSG_SEQ_NUM,
    MSG_TYPE,
    SESSION_REJECT_REASON,
    BusinessRejectReason,
    MessageRejectedError,
    Rejection,
    ReportInvalidError,
    RequestKind,
    SessionDefaults,
    SessionRejectReason,
    decode_request,
    encode_cancel_reject,
    encode_execution_report,
    encode_reject,
)
from adapters.fix.settings import (
    FixAcceptorConfig,
    FixSessionConfig,
    acceptor_settings,
    stop_engine,
)
from tectra.schema import OrderAction

__all__ = ["ClOrdIdJournal", "FixAcceptor", "FixSessionError", "OrderSink"]

log = logging.getLogger(__name__)

_KIND_COUNTER: Final[dict[RequestKind, str]] = {
    RequestKind.NEW: "orders_new",
    RequestKind.CANCEL: "orders_cancel",
    RequestKind.REPLACE: "orders_replace",
}
USERNAME: Final[int] = 553
PASSWORD: Final[int] = 554


class OrderSink(Protocol):
    """Where the acceptor hands client requests (the gateway; a test double in tests).

    Every method is called on the session's quickfix thread and must return quickly without
    blocking (see the module docstring on threading). Records are one-record ORDER_REQUEST arrays
    (shape (1,)) the sink may keep; header `ts_ns` is CLOCK_MONOTONIC when the message reached the
    application (the origin for "FIX in -> venue out" latency), header `seq` counts records
    handed on by this acceptor from 1; order_id, instrument_id and venue_id are 0 for the gateway
    to fill in.
    """

    def on_order(self, session_id: int, record: npt.NDArray[np.void]) -> None:
        """A NewOrderSingle, OrderCancelRequest or OrderCancelReplaceRequest (see `action`).

        Answer later with `FixAcceptor.send_execution_report` / `send_cancel_reject`."""

    def on_status_request(self, session_id: int, record: npt.NDArray[np.void]) -> None:
        """An OrderStatusRequest: cl_ord_id (and order_id when the client sent OrderID) name the
        order; `action` is NONE. Answer with an ExecutionReport of ExecType ORDER_STATUS."""

    def cancel_all(self, session_id: int) -> None:
        """Cancel-on-disconnect: the session logged out or dropped; cancel its open orders."""


class FixSessionError(LookupError):
    """A send named a session the acceptor does not have (or has stopped)."""


class _Counters:
    """Event counters, read at scrape time via `snapshot`. Callbacks run on quickfix's thread and
    sends on the caller's, so increments take a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(
            (
                "logons",
                "logon_rejected",
                "logouts",
                "app_messages_in",
                "orders_new",
                "orders_cancel",
                "orders_replace",
                "status_requests",
                "rejects_sent",
                "business_rejects_sent",
                "malformed",
                "poss_dup_ignored",
                "execution_reports_sent",
                "cancel_rejects_sent",
                "outbound_invalid",
                "sends_queued",
                "sink_errors",
                "callback_errors",
                "cancel_on_disconnect",
                "resend_requests_sent",
                "resend_requests_received",
                "sequence_resets_sent",
                "test_requests_received",
            ),
            0,
        )

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class ClOrdIdJournal:
    """ClOrdIDs one session has handed to the sink, newest `capacity` kept, persisted.

    Each line is `<incoming MsgSeqNum> <ClOrdID>`. When quickfix's expected incoming sequence
    number is below the highest one journalled, the store was reset (new session day or a
    ResetSeqNumFlag logon) and the journal starts over with it.
    """

    def __init__(self, path: Path, capacity: int) -> None:
        self._path = path
        self._capacity = capacity
        self._ids: dict[str, None] = {}  # insertion-ordered: oldest first
        self._file: Any = None
        self.max_seq = 0

    def open(self, expected_seq: int) -> None:
        """Load the journal unless the session's sequence numbers were reset since it was
        written (`expected_seq` = quickfix's next expected incoming MsgSeqNum)."""
        self.close()
        entries: list[tuple[int, str]] = []
        if self._path.exists():
            for line in self._path.read_text("ascii", errors="replace").splitlines():
                seq, _, cl_ord_id = line.partition(" ")
                if seq.isdigit() and cl_ord_id:
                    entries.append((int(seq), cl_ord_id))
        if entries and expected_seq < max(seq for seq, _ in entries):
            entries = []
        entries = entries[-self._capacity :]
        self._ids = dict.fromkeys(cl for _, cl in entries)
        self.max_seq = max((seq for seq, _ in entries), default=0)
        # Rewrite compacted, then append: one small file per session.
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text("".join(f"{seq} {cl}\n" for seq, cl in entries), "ascii")
        tmp.replace(self._path)
        self._file = self._path.open("a", encoding="ascii")

    def check_reset(self, expected_seq: int) -> bool:
        """Start over if the sequence numbers went back (a reset); True if it did."""
        if expected_seq >= self.max_seq:
            return False
        self.open(expected_seq)
        return True

    def __contains__(self, cl_ord_id: object) -> bool:
        return cl_ord_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, seq: int, cl_ord_id: str) -> None:
        if cl_ord_id in self._ids:
            return
        self._ids[cl_ord_id] = None
        self.max_seq = max(self.max_seq, seq)
        if len(self._ids) > self._capacity:
            del self._ids[next(iter(self._ids))]
        if self._file is not None:
            self._file.write(f"{seq} {cl_ord_id}\n")
            self._file.flush()  # survives the process dying; fsync per order would cost ms

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Session:
    """Per-session state the callbacks need."""

    def __init__(self, config: FixSessionConfig, dedupe_dir: Path) -> None:
        self.config = config
        self.fix_id = fix.SessionID("FIX.4.4", config.sender_comp_id, config.target_comp_id)
        self.defaults = SessionDefaults(
            config.session_id, config.account, config.account_id, config.strategy_id
        )
        name = f"{config.sender_comp_id}-{config.target_comp_id}.clordids"
        self.journal = ClOrdIdJournal(dedupe_dir / name, config.dedupe_capacity)
        self.logged_on = False


def _reason_name(enum_cls: type[SessionRejectReason | BusinessRejectReason], text: str) -> str:
    try:
        return enum_cls(int(text)).name.lower()
    except ValueError:
        return text


class _Application(fix.Application):  # type: ignore[misc]  # quickfix is untyped
    """quickfix callbacks -> FixAcceptor. Nothing may escape a callback: quickfix would drop the
    connection (and a Python error inside a director call can take the thread down)."""

    def __init__(self, owner: FixAcceptor) -> None:
        super().__init__()
        self._owner = owner

    def onCreate(self, session_id: Any) -> None:  # noqa: N802
        pass

    def onLogon(self, session_id: Any) -> None:  # noqa: N802
        try:
            self._owner._on_logon(session_id)
        except Exception:
            self._owner._callback_error("onLogon")

    def onLogout(self, session_id: Any) -> None:  # noqa: N802
        try:
            self._owner._on_logout(session_id)
        except Exception:
            self._owner._callback_error("onLogout")

    def toAdmin(self, message: Any, session_id: Any) -> None:  # noqa: N802
        try:
            self._owner._to_admin(message)
        except Exception:
            self._owner._callback_error("toAdmin")

    def fromAdmin(self, message: Any, session_id: Any) -> None:  # noqa: N802
        try:
            self._owner._from_admin(message, session_id)
        except fix.RejectLogon:
            raise
        except Exception:
            self._owner._callback_error("fromAdmin")

    def toApp(self, message: Any, session_id: Any) -> None:  # noqa: N802
        # Every report passes here: nothing to do unless a message tap is set (journal capture).
        tap = self._owner.message_tap
        if tap is not None:
            try:
                tap("out", message.toString())
            except Exception:
                self._owner._callback_error("toApp")

    def fromApp(self, message: Any, session_id: Any) -> None:  # noqa: N802
        tap = self._owner.message_tap
        try:
            if tap is not None:
                tap("in", message.toString())
            self._owner._from_app(message, session_id)
        except Exception:
            self._owner._callback_error("fromApp")


class FixAcceptor:
    """quickfix SocketAcceptor for the configured sessions, feeding an `OrderSink`.

    Use as a context manager or call `start()` / `stop()`. Counters: `counters()`.
    """

    def __init__(
        self,
        config: FixAcceptorConfig,
        sink: OrderSink,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.config = config
        self._sink = sink
        self._clock_ns = clock_ns
        self._counters = _Counters()
        self._seq: Iterator[int] = itertools.count(1)
        self.message_tap: Callable[[str, str], None] | None = None
        """Called with ("in" | "out", raw FIX text) for every application message, on the
        session's thread (the gateway journals them when capture is on). Must not block."""
        self._by_key: dict[str, _Session] = {}
        self._by_id: dict[int, _Session] = {}
        for sc in config.sessions:
            state = _Session(sc, config.dedupe_dir)
            self._by_key[sc.key] = state
            self._by_id[sc.session_id] = state
        self._settings = acceptor_settings(config)
        self._store_factory = (
            fix.FileStoreFactory(self._settings)
            if config.store == "file"
            else fix.MemoryStoreFactory()
        )
        self._log_factory = fix.FileLogFactory(self._settings) if config.file_log else None
        self._app = _Application(self)
        self._acceptor = fix.ThreadedSocketAcceptor(
            self._app, self._store_factory, self._settings, self._log_factory
        )
        # The sessions (and their stores) exist once the acceptor is constructed.
        for state in self._by_id.values():
            session = fix.Session.lookupSession(state.fix_id)
            state.journal.open(int(session.getExpectedTargetNum()) if session else 1)
        self._started = False

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Listen on the configured port; returns at once (quickfix runs its own thread)."""
        if self._acceptor is None:
            raise FixSessionError("this acceptor was stopped; create a new FixAcceptor")
        self._acceptor.start()
        self._started = True
        log.info("FIX acceptor listening on port %d (%d sessions)", self.port, len(self._by_id))

    def stop(self, *, logout_timeout_s: float = 2.0) -> None:
        """Log every session out (cancel-on-disconnect applies), wait for the Logout answers up
        to `logout_timeout_s`, and stop listening."""
        if self._started:
            stop_engine(self._acceptor, [s.fix_id for s in self._by_id.values()], logout_timeout_s)
            self._started = False
        # Drop the engine now: quickfix sessions are process-wide and stay registered (blocking a
        # new engine with the same CompIDs) until the C++ object is destroyed.
        self._acceptor = None
        for state in self._by_id.values():
            state.journal.close()

    def __enter__(self) -> FixAcceptor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.config.port

    # ---- queries ------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """A snapshot of every counter (rejects also per reason: reject_<reason>, ...)."""
        return self._counters.snapshot()

    def session_config(self, session_id: int) -> FixSessionConfig:
        return self._state(session_id).config

    def is_logged_on(self, session_id: int) -> bool:
        return self._state(session_id).logged_on

    def next_sequence_numbers(self, session_id: int) -> tuple[int, int]:
        """(next sender MsgSeqNum, next expected target MsgSeqNum) of a session."""
        session = fix.Session.lookupSession(self._state(session_id).fix_id)
        if session is None:
            raise FixSessionError(f"session {session_id} is not running")
        return int(session.getExpectedSenderNum()), int(session.getExpectedTargetNum())

    def _state(self, session_id: int) -> _Session:
        state = self._by_id.get(session_id)
        if state is None:
            raise FixSessionError(f"no FIX session with id {session_id}")
        return state

    # ---- outbound -----------------------------------------------------------------------

    def send_execution_report(
        self, session_id: int, record: np.void | npt.NDArray[np.void], *, text: str = ""
    ) -> bool:
        """Send one EXECUTION_REPORT as an ExecutionReport (35=8).

        True: sent now. False: the client is not logged on; quickfix stored the message and it
        reaches the client as a resend after its next logon. Raises ReportInvalidError for an
        inconsistent record (counted), FixSessionError for an unknown session.
        """
        state = self._state(session_id)
        try:
            msg = encode_execution_report(record, account=state.config.account, text=text)
        except ReportInvalidError:
            self._counters.inc("outbound_invalid")
            raise
        return self._send(state, msg, "execution_reports_sent")

    def send_cancel_reject(
        self,
        session_id: int,
        record: np.void | npt.NDArray[np.void],
        *,
        response_to: OrderAction,
        text: str = "",
    ) -> bool:
        """Send an OrderCancelReject (35=9) for a refused cancel (`response_to` CANCEL) or
        replace (REPLACE). The record's cl_ord_id is the request's, orig_cl_ord_id the order's,
        ord_status the order's current status, reject_reason why. Returns like
        `send_execution_report`."""
        state = self._state(session_id)
        try:
            msg = encode_cancel_reject(
                record, response_to=response_to, account=state.config.account, text=text
            )
        except ReportInvalidError:
            self._counters.inc("outbound_invalid")
            raise
        return self._send(state, msg, "cancel_rejects_sent")

    def _send(self, state: _Session, msg: Any, counter: str) -> bool:
        live = state.logged_on
        try:
            fix.Session.sendToTarget(msg, state.fix_id)
        except fix.SessionNotFound as exc:
            raise FixSessionError(f"session {state.config.session_id} is not running") from exc
        self._counters.inc(counter)
        if not live:
            self._counters.inc("sends_queued")
        return live

    # ---- callbacks (quickfix thread) ----------------------------------------------------

    def _lookup(self, session_id: Any) -> _Session | None:
        return self._by_key.get(str(session_id.toString()))

    def _callback_error(self, where: str) -> None:
        self._counters.inc("callback_errors")
        log.exception("FIX %s callback failed", where)

    def _on_logon(self, session_id: Any) -> None:
        state = self._lookup(session_id)
        self._counters.inc("logons")
        if state is None:
            return
        state.logged_on = True
        session = fix.Session.lookupSession(session_id)
        if session is not None and state.journal.check_reset(int(session.getExpectedTargetNum())):
            log.info(
                "FIX %s: sequence numbers were reset; ClOrdID journal restarted", state.config.key
            )
        log.info("FIX session %s logged on", session_id.toString())

    def _on_logout(self, session_id: Any) -> None:
        state = self._lookup(session_id)
        self._counters.inc("logouts")
        if state is None or not state.logged_on:
            return
        state.logged_on = False
        log.info("FIX session %s logged out", session_id.toString())
        if state.config.cancel_on_disconnect:
            self._counters.inc("cancel_on_disconnect")
            try:
                self._sink.cancel_all(state.config.session_id)
            except Exception:
                self._counters.inc("sink_errors")
                log.exception("sink.cancel_all failed for session %d", state.config.session_id)

    def _to_admin(self, message: Any) -> None:
        header = message.getHeader()
        msg_type = header.getField(MSG_TYPE)
        if msg_type == "3":
            self._counters.inc("rejects_sent")
            if message.isSetField(SESSION_REJECT_REASON):
                reason = _reason_name(SessionRejectReason, message.getField(SESSION_REJECT_REASON))
                self._counters.inc(f"reject_{reason}")
        elif msg_type == "2":
            self._counters.inc("resend_requests_sent")
        elif msg_type == "4":
            self._counters.inc("sequence_resets_sent")

    def _from_admin(self, message: Any, session_id: Any) -> None:
        msg_type = message.getHeader().getField(MSG_TYPE)
        if msg_type == "2":
            self._counters.inc("resend_requests_received")
        elif msg_type == "1":
            self._counters.inc("test_requests_received")
        if msg_type != "A":
            return
        state = self._lookup(session_id)
        creds = state.config.credentials if state is not None else None
        if creds is None:
            return
        username = password = None
        try:
            username = message.getField(USERNAME) if message.isSetField(USERNAME) else None
            password = message.getField(PASSWORD) if message.isSetField(PASSWORD) else None
            if creds.verify(username, password):
                return
        except Exception:  # fail closed: an error while checking is a rejected logon
            log.exception("FIX credential check failed for %s", session_id.toString())
        self._counters.inc("logon_rejected")
        why = "missing Username/Password" if username is None or password is None else "mismatch"
        log.warning(
            "FIX logon rejected for %s: username %r, %s", session_id.toString(), username, why
        )
        raise fix.RejectLogon("invalid username or password")

    def _from_app(self, message: Any, session_id: Any) -> None:
        state = self._lookup(session_id)
        if state is None:  # quickfix only creates configured sessions; belt and braces
            return
        recv_ns = self._clock_ns()
        self._counters.inc("app_messages_in")
        try:
            decoded = decode_request(message, state.defaults, recv_ns)
        except MessageRejectedError as exc:
            self._counters.inc("malformed")
            self._reject(state, message, exc.rejection)
            return
        if decoded.kind == RequestKind.STATUS:
            self._counters.inc("status_requests")
            decoded.record["seq"] = next(self._seq)
            self._hand_off(state, message, decoded.record, status=True)
            return
        if decoded.poss_dup and decoded.cl_ord_id in state.journal:
            self._counters.inc("poss_dup_ignored")
            log.info(
                "FIX %s: PossDup %s already handed on; dropped",
                state.config.key,
                decoded.cl_ord_id,
            )
            return
        self._counters.inc(_KIND_COUNTER[decoded.kind])
        decoded.record["seq"] = next(self._seq)
        if self._hand_off(state, message, decoded.record, status=False):
            state.journal.add(decoded.msg_seq_num, decoded.cl_ord_id)

    def _hand_off(
        self, state: _Session, message: Any, record: npt.NDArray[np.void], *, status: bool
    ) -> bool:
        sid = state.config.session_id
        try:
            if status:
                self._sink.on_status_request(sid, record)
            else:
                self._sink.on_order(sid, record)
        except Exception as exc:
            # The sink must not raise (a full queue is its own reject); if it does, the client
            # still gets an answer and the session stays up.
            self._counters.inc("sink_errors")
            log.exception("FIX sink failed on session %d", sid)
            self._reject(
                state,
                message,
                Rejection(
                    "j",
                    BusinessRejectReason.APPLICATION_NOT_AVAILABLE,
                    f"order not accepted: {type(exc).__name__}",
                ),
            )
            return False
        return True

    def _reject(self, state: _Session, message: Any, rejection: Rejection) -> None:
        header = message.getHeader()
        ref_id = message.getField(CL_ORD_ID) if message.isSetField(CL_ORD_ID) else ""
        reply = encode_reject(
            rejection,
            ref_seq_num=int(header.getField(MSG_SEQ_NUM)),
            ref_msg_type=str(header.getField(MSG_TYPE)),
            ref_id=ref_id[:64],
        )
        log.info("FIX %s: %s (%s)", state.config.key, rejection.text, rejection.counter_name)
        fix.Session.sendToTarget(reply, state.fix_id)
        if rejection.msg_type == "j":  # session Rejects are counted in toAdmin, with quickfix's
            self._counters.inc("business_rejects_sent")
            self._counters.inc(rejection.counter_name)
