"""The gateway service: the I/O shell around `GatewayCore` (`tectra run gateway`).

It owns the edges: the FIX acceptor (client sessions, quickfix threads), the venue link
(SoupBinTCP reader thread), the kill control block view, the reference prices (the feed's
shared-memory table or static ones), the risk limits store, the durable order tokens, the
optional journal capture, and the metrics.

Threading and ordering. Every core step runs under one lock (`self.lock`, shared with the venue
link): a FIX thread handling a client's order, the venue reader delivering venue messages, the
kill subscriber asking for a mass cancel, or the control plane reloading limits. Inside the lock
a step's outputs are acted on in order (venue bytes first, then client reports), so the venue
sees messages in the order the core produced them and a client sees its reports in order.
Client sends inside the lock can block while that client's TCP window is full (quickfix writes
before returning); a client that stops reading slows the gateway. That is the price of strict
report ordering without another queue, and is written here so nobody is surprised.

Latency figures: `tectra_gateway_fix_to_venue_ns` is CLOCK_MONOTONIC from the FIX message
reaching the application (quickfix `fromApp`) to the OUCH bytes written to the venue socket;
`tectra_gateway_step_ns` is the core step alone.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import queue
import struct
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adapters.fix.acceptor import FixAcceptor, FixSessionError
from adapters.fix.codec import ReportInvalidError
from adapters.fix.settings import FixAcceptorConfig
from adapters.ouch42 import (
    EnterOrder,
    OuchError,
    Rejected,
    ReplaceOrder,
    decode_inbound,
    encode,
)
from adapters.soupbintcp import SoupClientConfig
from tectra.core.config import TectraConfig
from tectra.core.metrics import MetricsRegistry
from tectra.gateway.core import (
    KILL_BLOCKED,
    KILL_OK,
    KILL_SLOW,
    KILL_VENUE_DOWN,
    KILL_VERDICTS,
    LIMITS_UPDATE,
    SESSION_DOWN,
    VENUE_MESSAGE,
    GatewayCore,
    GatewayCoreConfig,
    StepResult,
)
from tectra.gateway.recovery import Recovered, last_step, recover_core_state
from tectra.gateway.tokens import GatewayTokens
from tectra.io.killblock import GatewayView, Scope, Verdict, open_gateway_view
from tectra.journal.capture import OpaqueBatch, Recorder
from tectra.journal.format import RecordKind, RecordType
from tectra.kill.subscriber import CancelProgress
from tectra.risk.engine import EngineConfig, RiskEngine
from tectra.risk.limits import LimitsError, LimitsSpec, LimitsStore, compile_limits
from tectra.risk.references import InMemoryReferences
from tectra.schema import (
    EXECUTION_REPORT,
    KILL_COMMAND,
    TICK,
    ExecType,
    KillScope,
    OrderAction,
    OrdStatus,
    Side,
    new_records,
    price_to_fixed,
)

__all__ = ["GatewayService", "GatewayServiceError", "parse_static_references"]

log = logging.getLogger(__name__)

REF_REFRESH_NS = 1_000_000  # re-read references at most this often on the order path
STATIC_RESTAMP_NS = 500_000_000
VENUE_LOGIN_WAIT_S = 2.0
LINK_DOWN_REASON = "O"  # OUCH 4.2 reject reason "Other": the venue link was down
_SESSION_CUTOFF = struct.Struct("<IQ")  # SESSION_DOWN payload: session id, order-id cutoff
_KILL_OF_VERDICT = {
    int(Verdict.OK): KILL_OK,
    int(Verdict.SLOW): KILL_SLOW,
    int(Verdict.BLOCKED): KILL_BLOCKED,
}


class GatewayServiceError(RuntimeError):
    """The gateway cannot start with this configuration (the message says why)."""


def parse_static_references(text: str) -> dict[str, int]:
    """'AAPL=150.00,MSFT=300' -> {symbol: price in 1e-4 units}; GatewayServiceError if bad."""
    out: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        sym, sep, px = item.partition("=")
        try:
            price = price_to_fixed(px.strip())
        except (ValueError, ArithmeticError) as exc:
            raise GatewayServiceError(f"static_references: {item!r}: {exc}") from exc
        if not sep or not sym.strip() or price <= 0:
            raise GatewayServiceError(f"static_references: {item!r} is not SYMBOL=PRICE > 0")
        out[sym.strip()] = price
    return out


class _Recording:
    """Adapts the core to the journal Recorder: step() journals, apply results are kept."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.component_id: int = core.component_id
        self.last: StepResult | None = None

    def step(self, inputs: Any, now_ns: int) -> list[Any]:
        self.last = self.core.apply(inputs, now_ns)
        return [] if self.last is None else self.last.journal_outputs()

    def snapshot(self) -> bytes:
        return self.core.snapshot()

    def restore(self, state: bytes) -> None:
        self.core.restore(state)


class GatewayService:
    """FIX acceptor -> GatewayCore -> venue link, and back (see the module docstring)."""

    def __init__(
        self,
        config: TectraConfig,
        *,
        metrics: MetricsRegistry | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        gw = config.gateway
        self.config = config
        self.clock = clock
        self.state_dir = Path(config.appliance.state_dir)
        self.lock = threading.Lock()
        # ---- limits -------------------------------------------------------------------
        (self.state_dir / "risk").mkdir(parents=True, exist_ok=True)
        self.limits_store = LimitsStore(self.state_dir / "risk" / "limits.sqlite")
        if gw.limits_file is not None:
            self._apply_limits_file(gw.limits_file)
        if self.limits_store.version() == 0:
            raise GatewayServiceError(
                "no risk limits: set gateway.limits_file or load limits with tectractl"
            )
        limits = self.limits_store.load()
        # ---- FIX sessions -------------------------------------------------------------
        if gw.fix_sessions is None:
            raise GatewayServiceError("gateway.fix_sessions is not set: no client sessions")
        try:
            doc = tomllib.loads(gw.fix_sessions.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GatewayServiceError(f"gateway.fix_sessions: {exc}") from exc
        doc["port"] = gw.fix_port
        doc.setdefault("state_dir", str(self.state_dir / "fix"))
        self.fix_config = FixAcceptorConfig.from_mapping(doc)
        accounts: dict[int, int] = {}
        for s in self.fix_config.sessions:
            acct = s.account_id or limits.account_ids.get(s.account, 0)
            if acct:
                accounts[s.session_id] = acct
        # ---- references, tokens, risk, core ---------------------------------------------
        engine_cfg = EngineConfig()
        self.refs = InMemoryReferences(engine_cfg.max_instruments)
        self.static_refs = (
            parse_static_references(gw.static_references) if gw.references == "static" else {}
        )
        self._ref_table: Any = None
        self._last_ref_refresh = 0
        self._ref_seen: dict[int, int] = {}
        self.tokens = GatewayTokens(
            self.state_dir / "gateway" / "tokens",
            venue=gw.venue_name,
            session=gw.venue_username,
            fsync=gw.tokens_fsync,
        )
        self.core = GatewayCore(
            GatewayCoreConfig(
                venue_id=gw.venue_id,
                session_accounts=accounts,
                order_capacity=gw.order_capacity,
                send_pending=gw.send_pending,
                slow_rate_per_s=gw.slow_rate_per_s,
            ),
            RiskEngine(limits, self.refs, engine_cfg),
            self.refs,
            self.tokens,
        )
        self._recording = _Recording(self.core)
        self.recorder: Recorder | None = None
        self.recovered: Recovered | None = None
        self._journal: Any = None
        if gw.capture:
            from tectra.journal.writer import JournalWriter, WriterOptions

            self._journal = JournalWriter(
                self.state_dir / "journal" / "gateway",
                WriterOptions.from_config(
                    config.journal, journal="gateway", component=self.core.component_id
                ),
            )
            self.recorder = Recorder(self._recording, self._journal, batch_frames=True)
            self.recovered = self._recover(limits.version)
        # ---- kill view ----------------------------------------------------------------
        self.kill_view: GatewayView = open_gateway_view(
            config.kill.control_block, root=config.appliance.shm_root
        )
        if not self.kill_view.available:
            log.warning("kill control block unavailable (%s): orders blocked", self.kill_view.error)
        # ---- edges --------------------------------------------------------------------
        from tectra.gateway.venue_link import VenueLink

        self.venue = VenueLink(
            gw.venue_host,
            gw.venue_port,
            SoupClientConfig(
                username=gw.venue_username,
                password=gw.venue_password,
                session=gw.venue_session,
                reconnect_delay_ns=200_000_000,
            ),
            self.lock,
            self._on_venue_messages,
            state_path=self.state_dir / "gateway" / f"venue-{gw.venue_name}.seq",
            # Recovered state includes exactly the venue messages the old process applied.
            exact_first_sequence=(
                1 + self.core.counters.get("venue_messages_in", 0) if self.recovered else None
            ),
        )
        self.acceptor = FixAcceptor(self.fix_config, self, clock_ns=clock)
        # With capture, the raw FIX messages in and out are journaled too (EVENT frames: for
        # the record and incident review; replay runs on the decoded requests).
        self._fix_messages: collections.deque[tuple[str, str, int]] = collections.deque()
        if gw.capture:
            self.acceptor.message_tap = self._tap_fix
        from tectra.kill.subscriber import KillSubscriber

        self.kill_subscriber = KillSubscriber(
            gw.kill_name,
            self,
            run_dir=self.state_dir / "run",
            appliance=config.appliance.name,
            nats_url=config.kill.nats_url,
            subject_prefix=config.kill.subject_prefix,
            confirm_timeout_s=config.kill.confirm_timeout_s,
        )
        self.send_errors = 0
        self.venue_refused = 0
        self._status_exec = 0
        self._cod: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._cod_thread = threading.Thread(target=self._cod_loop, name="gateway-cod", daemon=True)
        # Decision latencies since the kill role last asked (its latency-spike trigger).
        self._recent_steps: collections.deque[int] = collections.deque(maxlen=8192)
        self.metrics = metrics or MetricsRegistry()
        self.fix_to_venue = self.metrics.latency_histogram(
            "tectra_gateway_fix_to_venue_ns",
            "FIX message at the application -> OUCH bytes written to the venue socket (ns).",
        )
        self.step_latency = self.metrics.latency_histogram(
            "tectra_gateway_step_ns", "One gateway core step on a client request batch (ns)."
        )
        self._register_metrics()
        self._started = False
        self._snapshot_ns = 0

    # ---- recovery --------------------------------------------------------------------------

    def _recover(self, limits_version: int) -> Recovered | None:
        """Rebuild the core from the capture of a previous run (`tectra.gateway.recovery`)."""
        journal_dir = self.state_dir / "journal" / "gateway"
        assert self.recorder is not None
        rec = recover_core_state(journal_dir)
        self.recorder.steps = last_step(journal_dir, self.core.component_id)
        if rec is None:
            return None
        self.core.restore(rec.snapshot)
        log.warning(
            "gateway state recovered from its capture: %d steps replayed, %d open orders, "
            "%d divergences",
            rec.steps,
            self.core.open_orders(),
            rec.divergences,
        )
        if self.core.risk.limits.version != limits_version:
            # Limits changed while the gateway was down: the store's version wins, as an input.
            version, doc = limits_version, self.limits_store.load().spec.to_document()
            payload = json.dumps({"version": version, "document": doc}, sort_keys=True).encode()
            self.recorder.step(OpaqueBatch.from_payloads(LIMITS_UPDATE, [payload]), self.clock())
        return rec

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            self._refresh_refs(self.clock(), force=True)
            if self.recorder is not None:
                self._snapshot_ns = self.clock()
                self.recorder.snapshot(self._snapshot_ns)  # replay starts from this state
        self.venue.start()
        self._cod_thread.start()
        self.kill_subscriber.start(nats_wait_s=0.5)
        # Give the venue login a moment before clients can log on, so the first orders of the
        # day are not refused VENUE_REJECT just because the gateway started a few ms earlier.
        deadline = time.monotonic() + VENUE_LOGIN_WAIT_S
        while not self.venue.logged_in and time.monotonic() < deadline:
            time.sleep(0.01)
        self.acceptor.start()
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.acceptor.stop()  # sessions log out: cancel-on-disconnect is queued
        self._cod.put(None)
        self._cod_thread.join(timeout=10)  # ... and applied before the venue link goes
        self.kill_subscriber.stop()
        self.venue.stop()
        with self.lock:
            if self._journal is not None:
                self._journal_fix_messages()
                self._journal.close()
            self.tokens.close()
            self.kill_view.close()

    @property
    def venue_up(self) -> bool:
        return self.venue.logged_in

    # ---- limits --------------------------------------------------------------------------

    def _apply_limits_file(self, path: Path) -> None:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise GatewayServiceError(f"gateway.limits_file: {exc}") from exc
        digest = hashlib.sha256(text).hexdigest()
        history = self.limits_store.history()
        if history and history[-1].source == f"{path}#{digest}":
            return  # this exact file is what is active
        try:
            self.limits_store.apply_document(
                tomllib.loads(text.decode()), source=f"{path}#{digest}"
            )
        except (LimitsError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise GatewayServiceError(f"gateway.limits_file {path}: {exc}") from exc

    def load_limits(self, document: dict[str, Any], *, source: str, dry_run: bool) -> int:
        """Validate and apply a whole limits document atomically (store, then the engine as a
        journaled step). LimitsError (naming the bad entry) leaves the old limits active."""
        spec = LimitsSpec.from_document(document)  # raises before anything changes
        compile_limits(spec, 0)
        if dry_run:
            return self.core.risk.limits.version
        version = self.limits_store.apply_spec(spec, source=source)
        update = {"version": version, "document": spec.to_document()}
        payload = json.dumps(update, sort_keys=True).encode()
        with self.lock:
            self._step(OpaqueBatch.from_payloads(LIMITS_UPDATE, [payload]), self.clock())
        return version

    def limits_document(self) -> tuple[int, dict[str, Any]]:
        limits = self.core.risk.limits
        return limits.version, limits.spec.to_document()

    # ---- the step, under the lock ----------------------------------------------------------

    def _tap_fix(self, direction: str, text: str) -> None:
        # deque.append is atomic: safe from any quickfix thread without the gateway lock.
        self._fix_messages.append((direction, text, self.clock()))

    def _journal_fix_messages(self) -> None:
        """Raw FIX messages tapped since the last step, as EVENT frames (lock held)."""
        msgs = self._fix_messages
        while msgs:
            direction, text, ts = msgs.popleft()
            self._journal.append(
                f"{direction} {text}".encode("ascii", "replace"),
                type_code=RecordType.FIX_MESSAGE,
                kind=RecordKind.EVENT,
                component=self.core.component_id,
                mono_ns=ts,
            )

    def _step(self, inputs: Any, now_ns: int) -> StepResult | None:
        if self.recorder is not None:
            if self._fix_messages:
                self._journal_fix_messages()
            self.recorder.step(inputs, now_ns)
            return self._recording.last
        return self.core.apply(inputs, now_ns)

    def _act(self, res: StepResult | None, t_in: int = 0) -> None:
        """Venue bytes first, then client reports and cancel rejects (lock held)."""
        if res is None:
            return
        out = res.venue_out
        if len(out) > 1:  # a mass cancel or a batch: one socket write
            refused = [] if self.venue.send_many(out) else list(out)
        else:
            refused = [p for p in out if not self.venue.send(p)]
        if refused:
            self._refused(refused)
        if t_in and res.venue_out:
            self.fix_to_venue.record(self.clock() - t_in)
        for rep in res.client_reports:
            self._send_report(rep)
        for rep, to in zip(res.cancel_rejects, res.cancel_reject_to.tolist(), strict=True):
            try:
                self.acceptor.send_cancel_reject(
                    int(rep["session_id"]), rep, response_to=OrderAction(to)
                )
            except (FixSessionError, ReportInvalidError):
                self.send_errors += 1

    def _refused(self, payloads: list[bytes]) -> None:
        """The link dropped between the venue check and the send: the venue never saw these.
        New orders and replaces are answered as if the venue rejected them (a journaled venue
        input, so replay agrees); a refused cancel leaves its order pending until the venue's
        replay after reconnect settles it."""
        self.venue_refused += len(payloads)
        rejects = []
        for p in payloads:
            try:
                msg = decode_inbound(p)
            except OuchError:
                continue
            token = getattr(msg, "replacement_token", None) or getattr(msg, "token", "")
            if isinstance(msg, EnterOrder | ReplaceOrder) and token:
                rejects.append(encode(Rejected(0, token, LINK_DOWN_REASON)))
        if rejects:
            res = self._step(OpaqueBatch.from_payloads(VENUE_MESSAGE, rejects), self.clock())
            self._act(res)

    def _send_report(self, rep: Any) -> None:
        session = int(rep["session_id"])
        if not session:
            return
        try:
            self.acceptor.send_execution_report(session, rep)
        except (FixSessionError, ReportInvalidError):
            self.send_errors += 1
            log.exception("could not send an execution report to session %d", session)

    # ---- references --------------------------------------------------------------------------

    def _refresh_refs(self, now_ns: int, *, force: bool = False) -> None:
        """Bring the core's references up to date as a TICK step (journaled, so replay judges
        orders against the same prices). Lock held."""
        if not force and now_ns - self._last_ref_refresh < REF_REFRESH_NS:
            return
        self._last_ref_refresh = now_ns
        symbols = self.core.risk.limits.symbols
        if self.static_refs:
            stale = [
                (symbols[s], px)
                for s, px in self.static_refs.items()
                if s in symbols and now_ns - self._ref_seen.get(symbols[s], 0) > STATIC_RESTAMP_NS
            ]
            if not stale:
                return
            ticks = new_records(TICK, len(stale))
            for k, (iid, px) in enumerate(stale):
                t = ticks[k]
                t["instrument_id"], t["bid_px"], t["ask_px"], t["last_px"] = iid, px, px, px
                t["last_update_ns"] = now_ns
                self._ref_seen[iid] = now_ns
            self._step(ticks, now_ns)
            return
        if self._ref_table is None:
            from tectra.feed.refs import RefTable, RefTableError

            try:
                self._ref_table = RefTable.attach(
                    self.config.feed.refs_table, root=self.config.appliance.shm_root
                )
            except RefTableError:
                return  # no feed yet: references stay missing, orders fail closed
        ids = np.fromiter(symbols.values(), dtype=np.int64, count=len(symbols))
        rows, valid = self._ref_table.read_many(ids)
        fresh = valid & (rows["last_update_ns"] != [self._ref_seen.get(int(i), -1) for i in ids])
        if fresh.any():
            ticks = new_records(TICK, int(fresh.sum()))
            ticks[:] = rows[fresh]
            ticks["instrument_id"] = ids[fresh]
            for iid, ts in zip(ids[fresh].tolist(), ticks["last_update_ns"].tolist(), strict=True):
                self._ref_seen[iid] = ts
            self._step(ticks, now_ns)

    def marks(self) -> dict[int, int]:
        """Mark price per instrument id: the reference mid, else last (for unrealised P&L)."""
        out: dict[int, int] = {}
        table = self.refs.table
        for iid in self.core.risk.limits.symbols.values():
            bid, ask, last = (int(x) for x in table[iid][:3])
            px = (bid + ask) // 2 if bid > 0 and ask > 0 else last
            if px > 0:
                out[iid] = px
        return out

    # ---- OrderSink (quickfix threads) ------------------------------------------------------

    def _kill_verdict(self, record: npt.NDArray[np.void]) -> int:
        if not self.venue.logged_in:
            return KILL_VENUE_DOWN
        r = record[0]
        limits = self.core.risk.limits
        sym = bytes(r["symbol"]).rstrip(b" \0").decode("ascii", "replace")
        account = int(r["account_id"]) or limits.account_ids.get(
            bytes(r["account"]).rstrip(b"\0").decode("ascii", "replace"), 0
        )
        check = self.kill_view.check(
            self.config.gateway.venue_id,
            account,
            int(r["strategy_id"]),
            limits.symbols.get(sym, 0),
        )
        return _KILL_OF_VERDICT.get(int(check.verdict), KILL_BLOCKED)

    def on_order(self, session_id: int, record: npt.NDArray[np.void]) -> None:
        t_in = int(record[0]["ts_ns"])
        with self.lock:
            now = self.clock()
            self._refresh_refs(now)
            verdict = self._kill_verdict(record)
            if verdict != KILL_OK:
                self._step(
                    OpaqueBatch(
                        KILL_VERDICTS, np.array([verdict], np.uint8), np.array([0, 1], np.int64)
                    ),
                    now,
                )
            t0 = self.clock()
            res = self._step(record, now)
            dt = self.clock() - t0
            self.step_latency.record(dt)
            self._recent_steps.append(dt)
            self._act(res, t_in)

    def on_status_request(self, session_id: int, record: npt.NDArray[np.void]) -> None:
        r = record[0]
        with self.lock:
            oid = self.core.store.order_id_for(session_id, bytes(r["cl_ord_id"]))
            rep = new_records(EXECUTION_REPORT, 1)
            o = rep[0]
            o["session_id"] = session_id
            o["cl_ord_id"] = r["cl_ord_id"]
            o["exec_type"] = ExecType.ORDER_STATUS
            # Status answers change no state (they are not core steps): their ExecIDs come from
            # their own range (bit 62), apart from the core's (bit 63) and venue match numbers.
            self._status_exec += 1
            o["exec_id"] = (1 << 62) | self._status_exec
            o["side"] = int(r["side"]) or int(Side.BUY)
            o["symbol"] = r["symbol"]
            row = None if oid is None else self.core.store.order(oid)
            if row is None:
                o["ord_status"] = OrdStatus.REJECTED
                o["order_qty"] = 0
            else:
                for name in ("order_id", "price", "order_qty", "cum_qty", "leaves_qty", "avg_px"):
                    o[name] = row[name]
                o["side"], o["symbol"] = row["side"], row["symbol"]
                o["ord_status"] = row["status"]
            self._send_report(o)

    def cancel_all(self, session_id: int) -> None:
        """Cancel-on-disconnect. quickfix calls this from its logout path while it holds the
        session's lock, and the gateway lock's holder may be sending to that very session: so
        this only queues the work (never blocks) for the cancel-on-disconnect thread. The
        order id reached now bounds what is cancelled, so a late cancel never catches orders
        the client sends after logging on again."""
        self._cod.put((session_id, self.core.next_order_id))

    def _cod_loop(self) -> None:
        while True:
            item = self._cod.get()
            if item is None:
                return
            try:
                self._cancel_on_disconnect(*item)
            except Exception:  # one bad event must not end cancel-on-disconnect for good
                self.send_errors += 1
                log.exception("cancel-on-disconnect of session %d failed", item[0])

    def _cancel_on_disconnect(self, session_id: int, cutoff: int) -> None:
        payload = _SESSION_CUTOFF.pack(session_id, cutoff)
        with self.lock:
            res = self._step(OpaqueBatch.from_payloads(SESSION_DOWN, [payload]), self.clock())
            self._act(res)

    # ---- venue (reader thread, lock held) ------------------------------------------------

    def _on_venue_messages(self, payloads: Sequence[bytes], now_ns: int) -> None:
        res = self._step(OpaqueBatch.from_payloads(VENUE_MESSAGE, payloads), now_ns)
        self._act(res)
        self._refresh_refs(now_ns)

    # ---- kill actions (the kill subscriber) -------------------------------------------

    def cancel_scope(self, scope: int, scope_id: int, kill_id: int) -> int:
        """Mass cancel of every open order in a kill scope (`tectra.io.killblock.Scope`);
        returns the cancels sent. The venue's confirmations are counted per kill id."""
        cmd = new_records(KILL_COMMAND, 1)
        cmd["kill_id"] = kill_id
        cmd["scope"] = KillScope[Scope(scope).name]
        cmd["scope_id"] = scope_id
        with self.lock:
            res = self._step(cmd, self.clock())
            self._act(res)
            return 0 if res is None else len(res.venue_out)

    def cancels_confirmed(self, kill_id: int) -> int:
        return self.cancel_progress(kill_id).confirmed

    def cancel_progress(self, kill_id: int) -> CancelProgress:
        """(confirmed, failed) of the cancels kill KILL_ID caused (filled first = failed)."""
        with self.lock:
            prog = self.core.kills.get(kill_id)
            return (
                CancelProgress(0, 0)
                if prog is None
                else CancelProgress(prog.confirmed, prog.failed)
            )

    def orders_blocked(self, scope: int = 0, scope_id: int = 0) -> int:
        """New orders the kill block refused since start (all scopes: not counted per scope)."""
        return self.core.counters.get("kill_blocked", 0)

    def open_orders(self, scope: int = 0, scope_id: int = 0) -> int:
        with self.lock:
            return self.core.open_orders(KillScope[Scope(scope).name], scope_id)

    # ---- control plane -------------------------------------------------------------------

    def sessions(self) -> list[dict[str, Any]]:
        out = []
        live = self.core.store.live_mask()
        rows = self.core.store.rows
        for s in self.fix_config.sessions:
            try:
                nxt = self.acceptor.next_sequence_numbers(s.session_id)
            except FixSessionError:
                nxt = (0, 0)
            out.append(
                {
                    "session_id": s.session_id,
                    "sender_comp_id": s.sender_comp_id,
                    "target_comp_id": s.target_comp_id,
                    "account": s.account,
                    "logged_on": self.acceptor.is_logged_on(s.session_id),
                    "next_sender_seq": nxt[0],
                    "next_target_seq": nxt[1],
                    "open_orders": int((live & (rows["session_id"] == s.session_id)).sum()),
                    "cancel_on_disconnect": s.cancel_on_disconnect,
                }
            )
        return out

    def disconnect(self, session_id: int, reason: str) -> bool:
        """Log a client session out (cancel-on-disconnect then applies if enabled)."""
        import quickfix as fix

        state = self.acceptor._state(session_id)  # FixSessionError if unknown
        session = fix.Session.lookupSession(state.fix_id)
        if session is None or not session.isLoggedOn():
            return False
        session.logout(reason)
        return True

    def positions(self, account: str = "") -> list[dict[str, Any]]:
        limits = self.core.risk.limits
        names = {v: k for k, v in limits.account_ids.items()}
        symbols = {v: k for k, v in limits.symbols.items()}
        want = limits.account_ids.get(account) if account else None
        marks = self.marks()
        out = []
        with self.lock:
            book = self.core.positions
            rows = book.rows[book.rows["used"] == 1]
            for r in rows:
                acct, strat, iid = (
                    int(r["account_id"]),
                    int(r["strategy_id"]),
                    int(r["instrument_id"]),
                )
                if want is not None and acct != want:
                    continue
                net, cost = int(r["net_qty"]), int(r["cost"])
                mark = marks.get(iid, 0)
                out.append(
                    {
                        "account": names.get(acct, str(acct)),
                        "account_id": acct,
                        "strategy_id": strat,
                        "symbol": symbols.get(iid, str(iid)),
                        "net_qty": net,
                        "avg_open_px": (2 * cost + net) // (2 * net) if net else 0,
                        "realised_pnl": int(r["realised_pnl"]),
                        "unrealised_pnl": net * mark - cost if mark else 0,
                        "fees": int(r["fees"]),
                        "marked": bool(mark),
                        "mark_px": mark,
                        "bought_qty": int(r["bought_qty"]),
                        "sold_qty": int(r["sold_qty"]),
                    }
                )
        return out

    def risk_observations(self, *, take_latencies: bool = False) -> dict[str, Any]:
        """What the kill switch's triggers watch: decision latencies since the last call,
        exposure (open + executed notional) and P&L (realised + unrealised - fees) per account,
        and the venue link."""
        steps = []
        while take_latencies and self._recent_steps:
            steps.append(self._recent_steps.popleft())
        pnl: dict[int, int] = {}
        for p in self.positions():
            acct = int(p["account_id"])
            pnl[acct] = pnl.get(acct, 0) + p["realised_pnl"] + p["unrealised_pnl"] - p["fees"]
        with self.lock:
            exposure = {}
            for acct in sorted({*self.core.risk.limits.account_ids.values(), *pnl}):
                a = self.core.risk.account(acct)
                exposure[acct] = a["open_notional"] + a["executed_notional"]
        return {
            "recent_step_ns": steps,
            "exposure_by_account": exposure,
            "pnl_by_account": pnl,
            "venue_up": self.venue.logged_in,
            "venue_id": self.config.gateway.venue_id,
        }

    def orders_summary(self) -> dict[str, Any]:
        with self.lock:
            rows = self.core.store.rows[self.core.store.rows["used"] == 1]
            statuses, counts = np.unique(rows["status"], return_counts=True)
            by_status = {
                OrdStatus(int(s)).name if int(s) in OrdStatus._value2member_map_ else str(s): int(c)
                for s, c in zip(statuses.tolist(), counts.tolist(), strict=True)
            }
            return {
                "open_orders": self.core.open_orders(),
                "by_status": by_status,
                "rejects_by_reason": dict(self.core.rejects_by_reason),
                "counters": {**self.core.counters, **self.core.store.counters()},
            }

    # ---- metrics ---------------------------------------------------------------------------

    def _register_metrics(self) -> None:
        m = self.metrics
        m.counter_from(
            "tectra_gateway_events",
            "Gateway core counters (requests, venue messages, kill blocks, mass cancels, ...).",
            lambda: {(k,): v for k, v in self.core.counters.items()},
            labels=["event"],
        )
        m.counter_from(
            "tectra_gateway_rejects",
            "Client requests refused, by reason.",
            lambda: {(k,): v for k, v in self.core.rejects_by_reason.items()},
            labels=["reason"],
        )
        m.counter_from(
            "tectra_gateway_fix",
            "FIX acceptor counters (logons, rejects by reason, messages, ...).",
            lambda: {(k,): v for k, v in self.acceptor.counters().items()},
            labels=["event"],
        )
        m.counter_from(
            "tectra_risk_rule",
            "Pre-trade risk per rule: orders evaluated, rule hits, denies, dry-run hits.",
            lambda: {
                (name, what): v
                for name, *values in self.core.risk.counters().rows()
                for what, v in zip(("evaluated", "hits", "denies", "dry_run"), values, strict=True)
            },
            labels=["rule", "what"],
        )
        m.counter_from(
            "tectra_gateway_send_failures",
            "Reports that could not be sent to a client (by cause) and venue sends refused "
            "because the link dropped (answered as venue rejects).",
            lambda: {("client_report",): self.send_errors, ("venue_refused",): self.venue_refused},
            labels=["cause"],
        )
        m.gauge_from(
            "tectra_gateway_open_orders",
            "Live orders in the order store.",
            self.core.open_orders,
        )
        m.gauge_from(
            "tectra_gateway_venue_up",
            "1 when the venue session is logged in.",
            lambda: int(self.venue.logged_in),
        )
        m.gauge_from(
            "tectra_gateway_limits_version",
            "Risk limits version in force.",
            lambda: self.core.risk.limits.version,
        )
        m.gauge_from(
            "tectra_gateway_kill_view_available",
            "1 when the kill control block is readable (0: every new order is blocked).",
            lambda: int(self.kill_view.available),
        )

    # ---- housekeeping (the role's loop) ------------------------------------------------

    def housekeeping(self) -> None:
        """Off the order path: reattach a missing kill block, refresh references."""
        if not self.kill_view.available and self.kill_view.reopen():
            log.info("kill control block attached")
        with self.lock:
            now = self.clock()
            self._refresh_refs(now)
            if self._journal is not None:
                self._journal_fix_messages()
                self._journal.tick()  # fsync = batch: sync on time even when idle
            every = int(self.config.gateway.snapshot_interval_s * 1e9)
            if self.recorder is not None and every and now - self._snapshot_ns >= every:
                # Replay (and a later restore) can start here instead of at the beginning.
                self.recorder.snapshot(now)
                self._snapshot_ns = now
