"""The gateway's deterministic core: client requests -> kill check -> risk -> order state ->
OUCH bytes, and venue messages -> execution reports, positions and risk exposure.

`GatewayCore` is a journal `Component` (`tectra.journal.capture`): `step(inputs, now_ns)` is a
pure function of (state, inputs, now_ns); the service shell around it (`tectra.gateway.service`)
owns sockets, clocks, files and threads. One step takes one kind of input:

| input | what it is | outputs |
|---|---|---|
| ORDER_REQUEST records | client New / Cancel / Replace (FIX acceptor) | `StepResult` |
| `OpaqueBatch(VENUE_MESSAGE)` | OUCH 4.2 outbound messages, in sequence | `StepResult` |
| TICK records | reference updates (feed top of book, or static) | nothing |
| `OpaqueBatch(KILL_VERDICTS)` | kill verdicts for the *next* request batch | nothing |
| `OpaqueBatch(LIMITS_UPDATE)` | a limits reload (version + document) | nothing |
| KILL_COMMAND records | mass cancel in a scope (CANCEL_ALL / ISOLATE_VENUE) | `StepResult` |
| `OpaqueBatch(SESSION_DOWN)` | client sessions dropped: cancel-on-disconnect | `StepResult` |

The order of a request batch's checks (each refusal is one client REJECTED report with the
reason, never a silent drop):

1. enrich: gateway order id, instrument id (limits' symbol table), venue id, account id
   (limits' account table, else the session's configured id), original order id of a cancel or
   replace (by the session's OrigClOrdID);
2. tokens: a NEW or REPLACE takes a fresh OUCH token for its ClOrdID; a ClOrdID the session used
   before (even by a rejected order, even before a restart) is DUPLICATE_CL_ORD_ID;
3. kill: BLOCKED -> HALTED; SLOW -> a per-session token bucket (`slow_rate_per_s`), RATE_LIMIT
   when empty. Cancels are never blocked or slowed;
4. risk: `RiskEngine.step` (every rule, references from the TICK inputs); cancels skip risk;
5. order state: `OrderStore.on_requests` (state machine checks); exposure risk reserved for an
   order the store then refuses is released at once (a synthetic REJECTED report to risk);
6. OUCH: `OuchOrderTracker.on_request` encodes Enter / Replace / Cancel; one it cannot express
   is rejected back through the store and risk.

Outputs are `StepResult` fields, in the order the service acts on them: venue bytes first (the
latency path), then the client's reports and cancel rejects, then verdicts and transitions (the
journal's). PENDING_* reports are not sent to clients unless `send_pending` (FIX 4.4 allows
either; the first answer a client sees is then the venue's).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from adapters.ouch42 import OuchError, OuchOrderTracker, decode_outbound
from tectra.gateway.orders import (
    ORDER_TRANSITION_TYPE,
    OrderStore,
    pack_arrays,
    request_rejects,
    unpack_arrays,
)
from tectra.gateway.positions import PositionBook
from tectra.gateway.tokens import GatewayTokens, MemoryAllocator, TokenAssignment
from tectra.journal.capture import OpaqueBatch
from tectra.journal.format import RecordType
from tectra.risk.engine import RiskEngine
from tectra.risk.limits import LimitsSpec, compile_limits
from tectra.risk.references import InMemoryReferences
from tectra.schema import (
    EXECUTION_REPORT,
    KILL_COMMAND,
    ORDER_REQUEST,
    ORDER_TOKEN_WIDTH,
    RISK_VERDICT,
    TICK,
    Component,
    ExecType,
    KillScope,
    OrderAction,
    OrdStatus,
    RejectReason,
    Verdict,
    new_records,
)

__all__ = [
    "KILL_VERDICTS",
    "LIMITS_UPDATE",
    "SESSION_DOWN",
    "GatewayCore",
    "GatewayCoreConfig",
    "KillProgress",
    "StepResult",
    "TokenSource",
]

KILL_VERDICTS: Final[int] = 0xF041
"""Opaque input: one byte per order of the next request batch (0 OK, 1 SLOW, 2 BLOCKED,
3 venue down)."""
SESSION_DOWN: Final[int] = 0xF042
"""Opaque input: client sessions that logged out or dropped (cancel-on-disconnect), one payload
each: u32 session id, then optionally u64 cutoff — only orders with a smaller order id are
cancelled (the order id the gateway was at when the session dropped: orders the client sends
after logging on again are not caught by a cancel that is applied late)."""
LIMITS_UPDATE: Final[int] = 0xF043
"""Opaque input: JSON {"version": v, "document": limits document}: a limits reload, journaled
so that replay judges every order against the version live did."""
VENUE_MESSAGE: Final[int] = int(RecordType.VENUE_MESSAGE)

KILL_OK: Final[int] = 0
KILL_SLOW: Final[int] = 1
KILL_BLOCKED: Final[int] = 2
KILL_VENUE_DOWN: Final[int] = 3
"""Not a kill: the venue session is down, so nothing can be sent (new orders and cancels are
refused VENUE_REJECT rather than left pending)."""

_U32 = struct.Struct("<I")
_SESSION_CUTOFF = struct.Struct("<IQ")
_OUCH_CANCEL = np.dtype([("type", "S1"), ("token", f"S{ORDER_TOKEN_WIDTH}"), ("shares", ">u4")])
"""OUCH 4.2 Cancel Order: 'X', Order Token (14, space padded), Shares (u32 big-endian)."""
EXEC_ID_BASE: Final = np.uint64(1 << 63)
_PENDING_EXEC: Final[frozenset[int]] = frozenset(
    {int(ExecType.PENDING_NEW), int(ExecType.PENDING_CANCEL), int(ExecType.PENDING_REPLACE)}
)
_PENDING_NEW: Final = np.uint8(ExecType.PENDING_NEW)
_PENDING_CANCEL: Final = np.uint8(ExecType.PENDING_CANCEL)
_PENDING_REPLACE: Final = np.uint8(ExecType.PENDING_REPLACE)
_NO_REPORTS: Final = new_records(EXECUTION_REPORT, 0)
_NO_ACTIONS: Final = np.zeros(0, np.uint8)
_NO_VERDICTS: Final = new_records(RISK_VERDICT, 0)


class TokenSource(Protocol):
    """Where OUCH tokens come from (`tectra.gateway.tokens.GatewayTokens`)."""

    @property
    def next_number(self) -> int: ...

    def assign(self, fix_session: int, cl_ord_ids: Sequence[str]) -> list[TokenAssignment]: ...


@dataclass(frozen=True)
class GatewayCoreConfig:
    """What the core needs to know besides limits: venue identity and client sessions."""

    venue_id: int = 1
    session_accounts: Mapping[int, int] = field(default_factory=dict)
    """FIX session id -> account id used when the order's Account is not in the limits."""
    order_capacity: int = 100_000
    position_capacity: int = 65_536
    send_pending: bool = False
    slow_rate_per_s: int = 10
    slow_burst: int = 5
    first_order_id: int = 1


@dataclass
class StepResult:
    """One step's outputs (see the module docstring)."""

    venue_out: list[bytes]
    client_reports: npt.NDArray[np.void]
    cancel_rejects: npt.NDArray[np.void]
    cancel_reject_to: npt.NDArray[np.uint8]
    verdicts: npt.NDArray[np.void]
    transitions: npt.NDArray[np.void]

    def journal_outputs(self) -> list[Any]:
        """The outputs as journal batches (what replay compares)."""
        return [
            OpaqueBatch.from_payloads(VENUE_MESSAGE, self.venue_out),
            self.client_reports,
            self.cancel_rejects,
            self.verdicts,
            OpaqueBatch.from_payloads(
                ORDER_TRANSITION_TYPE, [t.tobytes() for t in self.transitions]
            ),
        ]


@dataclass
class KillProgress:
    """What a mass cancel of one kill id did: cancels sent and venue-confirmed so far."""

    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    pending: set[int] = field(default_factory=set)


def _empty_result(trans: npt.NDArray[np.void] | None = None) -> StepResult:
    from tectra.gateway.orders import TRANSITION_DTYPE

    return StepResult(
        [],
        new_records(EXECUTION_REPORT, 0),
        new_records(EXECUTION_REPORT, 0),
        np.zeros(0, np.uint8),
        new_records(RISK_VERDICT, 0),
        trans if trans is not None else np.zeros(0, dtype=TRANSITION_DTYPE),
    )


def _concat(dtype_layout: Any, parts: Sequence[npt.NDArray[np.void]]) -> npt.NDArray[np.void]:
    # Field by field into zeroed records: np.concatenate could leave padding bytes undefined.
    out = new_records(dtype_layout, sum(int(p.shape[0]) for p in parts))
    pos = 0
    for part in parts:
        n = int(part.shape[0])
        out[pos : pos + n] = part
        pos += n
    return out


def _take(reqs: npt.NDArray[np.void], idx: npt.NDArray[np.int64]) -> npt.NDArray[np.void]:
    """reqs[idx] as fresh, zeroed-padding ORDER_REQUEST records (C-contiguous for risk)."""
    out = new_records(ORDER_REQUEST, int(idx.size))
    out[:] = reqs[idx]
    return out


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0 ").decode("ascii", "replace")


class GatewayCore:
    """Kill check, risk, order state, OUCH encoding and positions as one deterministic step."""

    component_id: int = int(Component.GATEWAY)

    def __init__(
        self,
        config: GatewayCoreConfig,
        risk: RiskEngine,
        references: InMemoryReferences,
        tokens: TokenSource,
    ) -> None:
        self.config = config
        self.risk = risk
        self.refs = references
        self.tokens = tokens
        self.store = OrderStore(config.order_capacity)
        self.positions = PositionBook(config.position_capacity)
        self.tracker = OuchOrderTracker(venue_id=config.venue_id)
        self.next_order_id = config.first_order_id
        self.next_exec_id = 1
        self.counters: dict[str, int] = {}
        self.rejects_by_reason: dict[str, int] = {}
        self.kills: dict[int, KillProgress] = {}
        self._kill_verdicts: npt.NDArray[np.uint8] | None = None
        self._slow_tokens: dict[int, tuple[int, int]] = {}  # session -> (milli-tokens, t_ns)
        self.last_cancels_sent = 0

    # ---- helpers -----------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _reject_count(self, reasons: npt.NDArray[np.uint16]) -> None:
        for code in reasons.tolist():
            name = RejectReason(code).name if code in RejectReason._value2member_map_ else "?"
            self.rejects_by_reason[name] = self.rejects_by_reason.get(name, 0) + 1

    def _new_ids(self, n: int) -> npt.NDArray[np.uint64]:
        ids = np.arange(self.next_order_id, self.next_order_id + n, dtype=np.uint64)
        self.next_order_id += n
        return ids

    def _slow_allows(self, session: int, now_ns: int) -> bool:
        rate = max(1, self.config.slow_rate_per_s)
        cap = max(1, self.config.slow_burst) * 1000
        tokens, last = self._slow_tokens.get(session, (cap, now_ns))
        tokens = min(cap, tokens + (max(0, now_ns - last) * rate) // 1_000_000)
        if tokens >= 1000:
            self._slow_tokens[session] = (tokens - 1000, now_ns)
            return True
        self._slow_tokens[session] = (tokens, now_ns)
        return False

    # ---- the step ----------------------------------------------------------------------------

    def step(self, inputs: Any, now_ns: int) -> list[Any]:
        """Journal form of `apply`: the outputs as batches."""
        result = self.apply(inputs, now_ns)
        return [] if result is None else result.journal_outputs()

    def apply(self, inputs: Any, now_ns: int) -> StepResult | None:
        """Apply one input batch (see the module docstring); None for state-only inputs.
        Client reports without an execution id (all but venue fills) get a gateway one."""
        result = self._dispatch(inputs, now_ns)
        if result is not None and result.client_reports.shape[0]:
            ids = result.client_reports["exec_id"]
            missing = np.flatnonzero(ids == 0)
            if missing.size:
                # High bit set: never equal to a venue match number (those stay below 2**63).
                first = self.next_exec_id
                self.next_exec_id += int(missing.size)
                ids[missing] = EXEC_ID_BASE + np.arange(
                    first, first + missing.size, dtype=np.uint64
                )
        return result

    def _dispatch(self, inputs: Any, now_ns: int) -> StepResult | None:
        if isinstance(inputs, OpaqueBatch):
            if inputs.type_code == VENUE_MESSAGE:
                return self.on_venue(inputs.payloads(), now_ns)
            if inputs.type_code == KILL_VERDICTS:
                self._kill_verdicts = inputs.data.copy()
                return None
            if inputs.type_code == LIMITS_UPDATE:
                for payload in inputs.payloads():
                    self.set_limits_document(json.loads(payload))
                return None
            if inputs.type_code == SESSION_DOWN:
                downs = []
                for p in inputs.payloads():
                    if len(p) == _SESSION_CUTOFF.size:
                        downs.append(_SESSION_CUTOFF.unpack(p))
                    else:
                        downs.append((_U32.unpack(p[: _U32.size])[0], 0))
                return self.cancel_sessions(downs, now_ns)
            raise ValueError(f"gateway core: unknown opaque input 0x{inputs.type_code:04x}")
        dtype = getattr(inputs, "dtype", None)
        if dtype == ORDER_REQUEST.dtype:
            return self.on_requests(inputs, now_ns)
        if dtype == TICK.dtype:
            if inputs.shape[0]:
                self.refs.update_from_ticks(inputs)
            return None
        if dtype == KILL_COMMAND.dtype:
            return self.on_kill(inputs, now_ns)
        raise ValueError(f"gateway core: cannot step {type(inputs).__name__} inputs")

    def set_limits_document(self, update: Mapping[str, Any]) -> None:
        """Apply {"version", "document"} (see LIMITS_UPDATE); raises LimitsError if invalid."""
        spec = LimitsSpec.from_document(update["document"])
        self.risk.set_limits(compile_limits(spec, int(update["version"])))

    # ---- client requests -------------------------------------------------------------------

    def on_requests(self, orders: npt.NDArray[np.void], now_ns: int) -> StepResult:
        n = int(orders.shape[0])
        kill = self._kill_verdicts
        self._kill_verdicts = None
        if kill is not None and kill.shape[0] != n:
            # Verdicts taken for another batch cannot be matched to these orders: fail closed.
            kill = np.full(n, KILL_BLOCKED, np.uint8)
        if n == 1 and kill is None and int(orders["action"][0]) == OrderAction.NEW:
            fast = self._one_new(orders, now_ns)
            if fast is not None:
                return fast
        reqs = new_records(ORDER_REQUEST, n)
        reqs[:] = orders
        reqs["order_id"] = self._new_ids(n)
        reqs["venue_id"] = self.config.venue_id
        reasons = np.zeros(n, dtype=np.uint16)
        limits = self.risk.limits
        symbols = limits.symbols
        accounts = limits.account_ids
        new_or_replace: dict[int, list[int]] = {}
        for i in range(n):
            r = reqs[i]
            action = int(r["action"])
            session = int(r["session_id"])
            if int(r["account_id"]) == 0:
                acct = accounts.get(_text(bytes(r["account"])))
                if acct is None:
                    acct = self.config.session_accounts.get(session)
                if acct is None:
                    reasons[i] = RejectReason.INVALID_ORDER
                    continue
                r["account_id"] = acct
            if action == OrderAction.NEW:
                sym = _text(bytes(r["symbol"]))
                r["instrument_id"] = symbols.get(sym, 0)
            elif action in (OrderAction.CANCEL, OrderAction.REPLACE):
                orig = self.store.order_id_for(session, bytes(r["orig_cl_ord_id"]))
                if orig is None:
                    reasons[i] = RejectReason.UNKNOWN_ORDER
                    continue
                r["orig_order_id"] = orig
                slot = self.store.slot_of(orig)
                assert slot is not None
                row = self.store.rows[slot]
                r["instrument_id"] = row["instrument_id"]
                r["symbol"] = row["symbol"]
                r["strategy_id"] = row["strategy_id"]
            else:
                reasons[i] = RejectReason.INVALID_ORDER
                continue
            if action != OrderAction.CANCEL:
                new_or_replace.setdefault(session, []).append(i)
        # Tokens (and day-wide ClOrdID uniqueness) for NEW and REPLACE, one write per session.
        tokens: dict[int, str] = {}
        for session, idx in new_or_replace.items():
            cls = [_text(bytes(reqs[i]["cl_ord_id"])) for i in idx]
            for i, got in zip(idx, self.tokens.assign(session, cls), strict=True):
                if got.ok:
                    tokens[i] = got.token
                else:
                    reasons[i] = got.reject_reason
        # Kill verdicts: blocked orders are HALTED, slowed ones throttled; cancels always pass.
        if kill is not None:
            for i in np.flatnonzero(kill != KILL_OK).tolist():
                if kill[i] == KILL_VENUE_DOWN:
                    if not reasons[i]:
                        reasons[i] = RejectReason.VENUE_REJECT
                        self._count("venue_down")
                    continue
                if reasons[i] or int(reqs[i]["action"]) == OrderAction.CANCEL:
                    continue
                if kill[i] == KILL_BLOCKED:
                    reasons[i] = RejectReason.HALTED
                    self._count("kill_blocked")
                elif not self._slow_allows(int(reqs[i]["session_id"]), now_ns):
                    reasons[i] = RejectReason.RATE_LIMIT
                    self._count("kill_slowed")
        # Risk: every rule for NEW/REPLACE still standing.
        to_risk = np.flatnonzero((reasons == 0) & (reqs["action"] != OrderAction.CANCEL)).astype(
            np.int64
        )
        verdicts = new_records(RISK_VERDICT, 0)
        if to_risk.size:
            batch = reqs if to_risk.size == n else _take(reqs, to_risk)
            out = self.risk.step(batch, self.refs.table, now_ns, refs_by_instrument=True)
            verdicts = new_records(RISK_VERDICT, int(out.shape[0]))
            verdicts[:] = out
            failed = verdicts["verdict"] != Verdict.PASS
            reasons[to_risk[failed]] = verdicts["reason_code"][failed]
        # Order state for what passed.
        passed = np.flatnonzero(reasons == 0).astype(np.int64)
        trans_parts: list[npt.NDArray[np.void]] = []
        venue_out: list[bytes] = []
        release: list[int] = []
        if passed.size:
            batch = reqs if passed.size == n else _take(reqs, passed)
            accepted, store_reasons = self.store.on_requests(batch, now_ns)
            trans_parts.append(self.store.last_transitions.copy())
            for j, i in enumerate(passed.tolist()):
                if not accepted[j]:
                    reasons[i] = store_reasons[j]
                    if int(reqs[i]["action"]) != OrderAction.CANCEL:
                        release.append(i)
                    continue
                r = reqs[i]
                action = int(r["action"])
                token = tokens.get(i, "")
                orig_token = ""
                if action != OrderAction.NEW:
                    slot = self.store.slot_of(int(r["orig_order_id"]))
                    assert slot is not None
                    orig_token = _text(bytes(self.store.rows["token"][slot]))
                try:
                    data = self.tracker.on_request(r, token, orig_token)
                except OuchError:
                    # Accepted by state and risk but not expressible in OUCH: undo both.
                    reasons[i] = RejectReason.INVALID_ORDER
                    self._count("ouch_refused")
                    trans_parts.append(self._undo(r, now_ns))
                    continue
                if token:
                    self.store.set_token(int(r["order_id"]), token.encode("ascii"))
                venue_out.append(data)
        if release:
            self.risk.on_execution(self._synthetic_rejects(reqs[release], now_ns))
        return self._finish(reqs, reasons, venue_out, verdicts, trans_parts, now_ns=now_ns)

    def _finish(
        self,
        reqs: npt.NDArray[np.void],
        reasons: npt.NDArray[np.uint16],
        venue_out: list[bytes],
        verdicts: npt.NDArray[np.void],
        trans_parts: list[npt.NDArray[np.void]],
        *,
        now_ns: int,
    ) -> StepResult:
        """A request batch's client reports, refusals and counters (both paths share it)."""
        n = int(reqs.shape[0])
        transitions = _concat_transitions(trans_parts)
        client = self._client_reports(transitions, now_ns)
        self._count("requests", n)
        self._count("venue_messages_out", len(venue_out))
        if n == 1:
            if not reasons[0]:
                return StepResult(
                    venue_out, client, _NO_REPORTS, _NO_ACTIONS, verdicts, transitions
                )
            refused = np.zeros(1, np.int64)
        else:
            refused = np.flatnonzero(reasons)
            if not refused.size:  # the common case: nothing refused, nothing to report yet
                return StepResult(
                    venue_out, client, _NO_REPORTS, _NO_ACTIONS, verdicts, transitions
                )
        self._reject_count(reasons[refused])
        is_cxl = reqs["action"][refused] != OrderAction.NEW
        rej = request_rejects(reqs[refused[~is_cxl]], reasons[refused[~is_cxl]], now_ns)
        cxl_idx = refused[is_cxl]
        cxl = request_rejects(reqs[cxl_idx], reasons[cxl_idx], now_ns)
        for k, i in enumerate(cxl_idx.tolist()):
            status = self.store.status(int(reqs[i]["orig_order_id"]))
            cxl[k]["ord_status"] = int(status) if status is not None else int(OrdStatus.REJECTED)
            cxl[k]["order_id"] = int(reqs[i]["orig_order_id"])
        cxl_to = reqs["action"][cxl_idx].astype(np.uint8)
        return StepResult(
            venue_out,
            _concat(EXECUTION_REPORT, [client, rej]) if client.shape[0] else rej,
            cxl,
            cxl_to,
            verdicts,
            transitions,
        )

    def _one_new(self, orders: npt.NDArray[np.void], now_ns: int) -> StepResult | None:
        """`on_requests` for the common batch: one NEW order and no kill verdict, in plain
        Python scalars. Same steps, same state changes and byte-identical outputs as the batch
        path (tests/gateway/test_fast_path.py compares them); None, before changing anything,
        for what it does not handle (the batch path does)."""
        o = orders[0]
        session = int(o["session_id"])
        limits = self.risk.limits
        acct = int(o["account_id"])
        if acct == 0:
            found = limits.account_ids.get(_text(bytes(o["account"])))
            if found is None:
                found = self.config.session_accounts.get(session)
            if found is None:
                return None
            acct = found
        reqs = new_records(ORDER_REQUEST, 1)
        reqs[:] = orders
        r = reqs[0]
        r["order_id"] = self.next_order_id
        self.next_order_id += 1
        r["venue_id"] = self.config.venue_id
        r["account_id"] = acct
        r["instrument_id"] = limits.symbols.get(_text(bytes(r["symbol"])), 0)
        reasons = np.zeros(1, dtype=np.uint16)
        got = self.tokens.assign(session, [_text(bytes(r["cl_ord_id"]))])[0]
        verdicts = new_records(RISK_VERDICT, 0)
        trans_parts: list[npt.NDArray[np.void]] = []
        venue_out: list[bytes] = []
        if not got.ok:
            reasons[0] = got.reject_reason
        else:
            out = self.risk.step(reqs, self.refs.table, now_ns, refs_by_instrument=True)
            verdicts = new_records(RISK_VERDICT, int(out.shape[0]))
            verdicts[:] = out
            if int(verdicts["verdict"][0]) != Verdict.PASS:
                reasons[0] = verdicts["reason_code"][0]
        if not reasons[0]:
            accepted, store_reasons = self.store.on_requests(reqs, now_ns)
            trans_parts.append(self.store.last_transitions.copy())
            if not accepted[0]:
                reasons[0] = store_reasons[0]
                self.risk.on_execution(self._synthetic_rejects(reqs[[0]], now_ns))
            else:
                try:
                    data = self.tracker.on_request(r, got.token, "")
                except OuchError:
                    reasons[0] = RejectReason.INVALID_ORDER
                    self._count("ouch_refused")
                    trans_parts.append(self._undo(r, now_ns))
                else:
                    self.store.set_token(int(r["order_id"]), got.token.encode("ascii"))
                    venue_out.append(data)
        return self._finish(reqs, reasons, venue_out, verdicts, trans_parts, now_ns=now_ns)

    def _client_reports(self, transitions: npt.NDArray[np.void], now_ns: int) -> Any:
        """The client's reports for these transitions (PENDING_* ones only if send_pending)."""
        if not self.config.send_pending:
            et = transitions["exec_type"]
            if et.shape[0] == 1:
                if int(et[0]) in _PENDING_EXEC:
                    return _NO_REPORTS
            else:
                keep = (et != _PENDING_NEW) & (et != _PENDING_CANCEL) & (et != _PENDING_REPLACE)
                if not keep.all():
                    transitions = transitions[keep]
        if not transitions.shape[0]:
            return _NO_REPORTS
        return self.store.execution_reports(transitions, now_ns)

    @staticmethod
    def _synthetic_rejects(reqs: npt.NDArray[np.void], now_ns: int) -> npt.NDArray[np.void]:
        """REJECTED reports for requests refused after risk reserved their exposure."""
        reasons = np.full(reqs.shape[0], RejectReason.INVALID_ORDER, np.uint16)
        return request_rejects(reqs, reasons, now_ns)

    def _undo(self, req: Any, now_ns: int) -> npt.NDArray[np.void]:
        """Take back a request the store accepted but OUCH could not carry."""
        one = new_records(ORDER_REQUEST, 1)
        one[0] = req
        rep = self._synthetic_rejects(one, now_ns)
        if int(req["action"]) == OrderAction.CANCEL:
            # A refused cancel: the order goes back to the status it had (cancel reject).
            slot = self.store.slot_of(int(req["orig_order_id"]))
            if slot is None:
                return self.store.on_reports(new_records(EXECUTION_REPORT, 0), now_ns)
            rep[0]["order_id"] = int(req["orig_order_id"])
            rep[0]["ord_status"] = int(self.store.rows["prev_status"][slot])
            return self.store.on_reports(rep, now_ns)
        trans = self.store.on_reports(rep, now_ns)
        self.risk.on_execution(rep)
        return trans

    # ---- venue messages --------------------------------------------------------------------

    def on_venue(self, payloads: Sequence[bytes], now_ns: int) -> StepResult:
        msgs = []
        for p in payloads:
            try:
                msgs.append(decode_outbound(p))
            except OuchError:
                self._count("venue_malformed")
        reports = self.tracker.on_messages(msgs, now_ns)
        trans = self.store.on_reports(reports, now_ns)
        applied = reports[self.store.last_report_issues == 0]
        if applied.shape[0]:
            self.positions.on_reports(applied)
            self.risk.on_execution(applied)
        self._count("venue_messages_in", len(payloads))
        self._follow_kills(trans)
        client = self._client_reports(trans, now_ns)
        # A refused cancel/replace comes back as REJECTED with the order still live: FIX wants
        # an OrderCancelReject for it, not an ExecutionReport.
        is_cxl = (client["exec_type"] == ExecType.REJECTED) & (
            client["ord_status"] != OrdStatus.REJECTED
        )
        if not is_cxl.any():
            # The common case: `client` is already a fresh array of zeroed records.
            return StepResult([], client, _NO_REPORTS, _NO_ACTIONS, _NO_VERDICTS, trans)
        from_status = dict(zip(trans["seq"].tolist(), trans["from_status"].tolist(), strict=True))
        cxl = client[is_cxl]
        cxl_to = np.array(
            [
                OrderAction.CANCEL
                if from_status.get(int(s)) == OrdStatus.PENDING_CANCEL
                else OrderAction.REPLACE
                for s in cxl["seq"].tolist()
            ],
            dtype=np.uint8,
        )
        return StepResult(
            [],
            _concat(EXECUTION_REPORT, [client[~is_cxl]]),
            _concat(EXECUTION_REPORT, [cxl]),
            cxl_to,
            new_records(RISK_VERDICT, 0),
            trans,
        )

    def _follow_kills(self, trans: npt.NDArray[np.void]) -> None:
        if not self.kills or not trans.shape[0]:
            return
        done = trans["to_status"] == OrdStatus.CANCELED
        final = np.isin(
            trans["to_status"],
            [OrdStatus.FILLED, OrdStatus.REJECTED, OrdStatus.EXPIRED, OrdStatus.DONE_FOR_DAY],
        )
        for oid, ok, fin in zip(
            trans["order_id"].tolist(), done.tolist(), final.tolist(), strict=True
        ):
            for prog in self.kills.values():
                if oid in prog.pending and (ok or fin):
                    prog.pending.discard(oid)
                    if ok:
                        prog.confirmed += 1
                    else:
                        prog.failed += 1

    # ---- mass cancel -----------------------------------------------------------------------

    def _scope_mask(self, scope: int, scope_id: int) -> npt.NDArray[np.bool_]:
        rows = self.store.rows
        live: npt.NDArray[np.bool_] = self.store.live_mask() & (rows["token"] != b"")
        if scope == KillScope.FIRM:
            return live
        column = {
            KillScope.VENUE: "venue_id",
            KillScope.ACCOUNT: "account_id",
            KillScope.STRATEGY: "strategy_id",
            KillScope.SYMBOL: "instrument_id",
        }.get(KillScope(scope))
        if column is None:
            return np.zeros_like(live)
        mask: npt.NDArray[np.bool_] = live & (rows[column] == scope_id)
        return mask

    def open_orders(self, scope: int = KillScope.FIRM, scope_id: int = 0) -> int:
        return int(self._scope_mask(scope, scope_id).sum())

    def on_kill(self, commands: npt.NDArray[np.void], now_ns: int) -> StepResult:
        results = []
        for c in commands:
            kill_id = int(c["kill_id"])
            mask = self._scope_mask(int(c["scope"]), int(c["scope_id"]))
            results.append(self._cancel_rows(np.flatnonzero(mask), f"K{kill_id}", kill_id, now_ns))
        return _merge(results)

    def cancel_sessions(self, sessions: Sequence[tuple[int, int]], now_ns: int) -> StepResult:
        """Cancel-on-disconnect: every live order of each (session, cutoff); cutoff 0 = all."""
        rows = self.store.rows
        results = []
        for s, cutoff in sessions:
            mask = self.store.live_mask() & (rows["token"] != b"") & (rows["session_id"] == s)
            if cutoff:
                mask &= rows["order_id"] < cutoff
            results.append(self._cancel_rows(np.flatnonzero(mask), f"D{s}", 0, now_ns))
        return _merge(results)

    def _cancel_rows(
        self, slots: npt.NDArray[np.intp], tag: str, kill_id: int, now_ns: int
    ) -> StepResult:
        """Cancel every order in `slots` at the venue, as one batch of OUCH Cancel Order
        messages (shares 0) built in numpy. These are the gateway's own cancels, not a client's
        request: the orders stay as they are here until the venue's Canceled arrives, which
        reaches the client as an unsolicited cancel (ClOrdID the order's own). That keeps the
        per-order cost to a few array operations, so a kill cancels 10 000 orders in one step.
        `tag` names the cause in the counters (K: kill, D: disconnect)."""
        rows = self.store.rows
        n = int(slots.shape[0])
        if kill_id:
            self.kills.setdefault(kill_id, KillProgress())
        self.last_cancels_sent = n
        if not n:
            return _empty_result()
        msgs = np.zeros(n, dtype=_OUCH_CANCEL)
        msgs["type"] = b"X"
        msgs["token"] = np.char.ljust(rows["token"][slots], ORDER_TOKEN_WIDTH)
        buf = msgs.tobytes()
        size = _OUCH_CANCEL.itemsize
        venue_out = [buf[i : i + size] for i in range(0, n * size, size)]
        if kill_id:
            prog = self.kills.setdefault(kill_id, KillProgress())
            prog.pending.update(rows["order_id"][slots].tolist())
            prog.sent += n
        self.last_cancels_sent = n
        self._count("mass_cancels_sent", n)
        self._count(f"mass_cancel_{'kill' if tag.startswith('K') else 'disconnect'}", n)
        res = _empty_result()
        res.venue_out = venue_out
        return res

    # ---- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        arrays: dict[str, npt.NDArray[Any]] = {
            f"orders.{k}": v for k, v in self.store.state_arrays().items()
        }
        arrays.update({f"positions.{k}": v for k, v in self.positions.state_arrays().items()})
        arrays.update({f"risk.{k}": v for k, v in self.risk.state_arrays().items()})
        arrays["refs"] = self.refs.table.copy()
        tracker = json.dumps(self.tracker.state(), sort_keys=True).encode()
        arrays["tracker"] = np.frombuffer(tracker, np.uint8)
        cfg = dataclasses.asdict(self.config)
        cfg["session_accounts"] = sorted(self.config.session_accounts.items())
        meta = {
            "next_order_id": self.next_order_id,
            "next_exec_id": self.next_exec_id,
            "next_token": self.tokens.next_number,
            # venue_messages_in: how many sequenced venue messages the state includes, so a
            # recovered gateway resumes the venue session right after them.
            "counters": dict(sorted(self.counters.items())),
            "rejects_by_reason": dict(sorted(self.rejects_by_reason.items())),
            "limits_version": self.risk.limits.version,
            "limits": self.risk.limits.spec.to_document(),
            "config": cfg,
            "engine": dataclasses.asdict(self.risk.config),
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        return pack_arrays(arrays)

    def restore(self, state: bytes) -> None:
        arrays = unpack_arrays(state)

        def part(prefix: str) -> dict[str, npt.NDArray[Any]]:
            return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}

        meta = json.loads(arrays["meta"].tobytes())
        cfg = dict(meta["config"])
        cfg["session_accounts"] = {int(k): int(v) for k, v in cfg["session_accounts"]}
        self.config = GatewayCoreConfig(**cfg)
        limits = compile_limits(LimitsSpec.from_document(meta["limits"]), meta["limits_version"])
        self.store = OrderStore.from_state_arrays(part("orders."))
        self.positions = PositionBook.from_state_arrays(part("positions."))
        if arrays["refs"].shape != self.refs.table.shape:
            self.refs = InMemoryReferences(int(arrays["refs"].shape[0]))
        self.refs.table[:] = arrays["refs"]
        self.risk = RiskEngine.from_state_arrays(
            part("risk."), limits, self.refs, max_batch=int(meta["engine"]["max_batch"])
        )
        self.next_order_id = int(meta["next_order_id"])
        self.next_exec_id = int(meta["next_exec_id"])
        self.counters = {str(k): int(v) for k, v in meta.get("counters", {}).items()}
        self.rejects_by_reason = {
            str(k): int(v) for k, v in meta.get("rejects_by_reason", {}).items()
        }
        self.tracker = OuchOrderTracker.from_state(json.loads(arrays["tracker"].tobytes()))
        if isinstance(self.tokens, GatewayTokens) and isinstance(
            self.tokens.allocator, MemoryAllocator
        ):
            # Replay: hand out exactly the numbers the live run did after this snapshot. (A live
            # restart keeps its durable allocator, which only ever moves forward.)
            self.tokens.allocator = MemoryAllocator(int(meta["next_token"]))


def _concat_transitions(parts: Sequence[npt.NDArray[np.void]]) -> npt.NDArray[np.void]:
    from tectra.gateway.orders import TRANSITION_DTYPE

    if len(parts) == 1:
        return parts[0]
    out = np.zeros(sum(int(p.shape[0]) for p in parts), dtype=TRANSITION_DTYPE)
    pos = 0
    for p in parts:
        out[pos : pos + p.shape[0]] = p
        pos += int(p.shape[0])
    return out


def _merge(results: Sequence[StepResult]) -> StepResult:
    if len(results) == 1:
        return results[0]
    res = _empty_result(_concat_transitions([r.transitions for r in results]))
    res.venue_out = [b for r in results for b in r.venue_out]
    res.client_reports = _concat(EXECUTION_REPORT, [r.client_reports for r in results])
    return res
