"""The kill switch's core: trigger and clear kills, fan them out, collect acks, fail closed.

`KillEngine` owns the kill role's decisions. It writes the shared-memory control block (the
one-host effect: gateways read it on every order), persists its state after every change, sends
commands to subscribers (`Fanout`) and gathers their acks, isolates venues in the kernel (an
`Isolator`, the TC egress guard in the role), and appends every trigger, action, ack and clear to
the hash-chained ledger.

A trigger, in order (times from the injected monotonic clock):

1. validate (kill id, reason and actor required; the target resolved to a scope id);
2. idempotency: a kill id applied before (persisted set, not just the block's last 64) has no
   second effect — the reply says ``applied=False`` and carries the first one's acks;
3. control block: BLOCK for BLOCK/CANCEL/ISOLATE_VENUE, SLOW for SLOW — effective for the next
   order of every gateway on the host when ``set`` returns (``trigger_to_block_ns``). A full
   scoped table escalates to a firm-wide block (fail closed) and says so;
4. fan-out of the KILL_COMMAND (local sockets, NATS), then the state file (atomic, fsync) and
   the ledger records ``trigger`` and ``action``;
5. acks until every expected subscriber answered or the deadline passed, re-sending to the
   silent ones every ``ack_retry_s`` (counted as retries); the rest are ``missing`` by name;
6. ISOLATE_VENUE: after the cancels were sent (acks in, or the deadline), the venue's
   addresses go into the egress guard;
7. ledger ``ack`` records (one per subscriber) and, if any, the missing names.

Venue cancel confirmations keep arriving after the reply; `tick()` (the role's timer) records
trigger-to-all-cancels-confirmed and the final ack of each subscriber in the ledger.

Fail closed: `restore()` at start reads the state file. A missing file with a non-empty ledger,
or a file that cannot be read, comes up with a firm-wide BLOCK (reason RESTART_FAIL_CLOSED)
that an operator clears like any other kill. Block flags that no persisted kill explains (the
process died between the block write and the state write) are adopted as kills named
``recovered:<scope>:<id>``, so they stay visible and clearable.

Clear: reason and actor required (the risk-officer role check is tectra-mgmtd's). A kill id
clears that kill; no kill id clears every kill in the target (FIRM: every kill). A scope's flags
are removed only when no remaining kill needs them.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from tectra.core.clock import Clock, MonotonicClock, RealtimeClock
from tectra.core.log import get_logger
from tectra.core.metrics import LatencyHistogram
from tectra.io.killblock import Flag, KillBlock, KillBlockFullError, Scope
from tectra.kill.fanout import Fanout
from tectra.kill.journal import KillJournal
from tectra.kill.ledger import KillLedger, LedgerError
from tectra.kill.state import PersistedState, StateCorruptError, StateError, StateStore
from tectra.kill.triggers import Firing, KillActionName, TriggerSet, TriggerStatus
from tectra.kill.wire import KillAck, KillCommand, kill_id_u64
from tectra.schema import KillAckStatus, KillReason
from tectra.schema import KillAction as WireAction

__all__ = [
    "AckView",
    "Action",
    "ActiveKill",
    "ClearRequest",
    "ClearResult",
    "EngineStatus",
    "Isolator",
    "KillEngine",
    "KillEngineError",
    "KillRequestError",
    "Target",
    "TriggerRequest",
    "TriggerResult",
    "Venue",
    "VenueBook",
    "open_block",
]

_KILL_ID_RE: Final = re.compile(r"^[\x21-\x7e]{1,128}$")
_SCOPE_ID_MAX: Final = (1 << 32) - 1  # KILL_COMMAND.scope_id is u32
_SEEN_MAX: Final = 65536


class KillEngineError(Exception):
    """Base of the engine's errors."""


class KillRequestError(KillEngineError, ValueError):
    """A request the engine refuses (missing reason/actor, unknown scope name, bad action)."""


class Action(enum.IntEnum):
    """The proto's KillAction numbering (BLOCK 1, CANCEL 2, SLOW 3, ISOLATE_VENUE 4)."""

    BLOCK = 1
    CANCEL = 2
    SLOW = 3
    ISOLATE_VENUE = 4

    @property
    def wire(self) -> WireAction:
        return {
            Action.BLOCK: WireAction.BLOCK,
            Action.CANCEL: WireAction.CANCEL_ALL,
            Action.SLOW: WireAction.SLOW,
            Action.ISOLATE_VENUE: WireAction.ISOLATE_VENUE,
        }[self]

    @property
    def flag(self) -> Flag:
        return Flag.SLOW if self is Action.SLOW else Flag.BLOCK

    @classmethod
    def from_wire(cls, action: WireAction) -> Action:
        for a in cls:
            if a.wire is action:
                return a
        raise KillRequestError(f"no engine action for wire action {action.name}")


@dataclass(frozen=True, slots=True)
class Venue:
    name: str
    id: int
    address: str
    port: int  # 0: every port


class VenueBook:
    """Venue names and addresses from ``kill.venues`` (NAME=ID@IPV4[:PORT])."""

    def __init__(self, specs: Iterable[str] = ()) -> None:
        self.by_name: dict[str, Venue] = {}
        self.by_id: dict[int, list[Venue]] = {}
        for spec in specs:
            m = re.match(r"^([A-Za-z0-9_-]{1,16})=(\d+)@([0-9.]+)(?::(\d+))?$", spec)
            if m is None:
                raise KillRequestError(f"venue spec {spec!r} is not NAME=ID@IPV4[:PORT]")
            ipaddress.IPv4Address(m[3])
            v = Venue(m[1], int(m[2]), m[3], int(m[4] or 0))
            self.by_name[v.name] = v
            self.by_id.setdefault(v.id, []).append(v)

    def destinations(self, venue_id: int) -> list[Venue]:
        return list(self.by_id.get(venue_id, ()))


@dataclass(frozen=True, slots=True)
class Target:
    scope: Scope
    scope_id: int = 0
    name: str = ""

    def covers(self, other: Target) -> bool:
        return self.scope is Scope.FIRM or (
            self.scope is other.scope and self.scope_id == other.scope_id
        )

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope.name.lower(), "scope_id": self.scope_id, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        return cls(Scope[str(d["scope"]).upper()], int(d["scope_id"]), str(d.get("name", "")))


@dataclass(frozen=True, slots=True)
class TriggerRequest:
    kill_id: str
    target: Target
    action: Action
    reason: str
    actor: str
    dry_run: bool = False
    ack_timeout_s: float = 0.0
    correlation_id: str = ""
    reason_code: KillReason = KillReason.MANUAL


@dataclass(frozen=True, slots=True)
class ClearRequest:
    kill_id: str
    target: Target
    reason: str
    actor: str
    dry_run: bool = False
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class AckView:
    subscriber: str
    ok: bool
    orders_blocked: int
    cancels_sent: int
    cancels_confirmed: int
    latency_ns: int
    error: str
    status: KillAckStatus


@dataclass(frozen=True, slots=True)
class TriggerResult:
    kill_id: str
    applied: bool
    dry_run: bool
    acks: tuple[AckView, ...]
    missing: tuple[str, ...]
    trigger_to_block_ns: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ClearResult:
    ok: bool
    message: str
    cleared: tuple[str, ...] = ()


@dataclass(slots=True)
class ActiveKill:
    kill_id: str
    kid: int
    target: Target
    action: Action
    reason: str
    actor: str
    since_ns: int  # realtime
    reason_code: KillReason = KillReason.MANUAL
    isolated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kill_id": self.kill_id,
            "kid": self.kid,
            "target": self.target.to_dict(),
            "action": self.action.name,
            "reason": self.reason,
            "actor": self.actor,
            "since_ns": self.since_ns,
            "reason_code": int(self.reason_code),
            "isolated": self.isolated,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActiveKill:
        return cls(
            kill_id=str(d["kill_id"]),
            kid=int(d["kid"]),
            target=Target.from_dict(d["target"]),
            action=Action[str(d["action"])],
            reason=str(d["reason"]),
            actor=str(d["actor"]),
            since_ns=int(d["since_ns"]),
            reason_code=KillReason(int(d.get("reason_code", 1))),
            isolated=bool(d.get("isolated", False)),
        )


@dataclass(frozen=True, slots=True)
class EngineStatus:
    blocked_all: bool
    epoch: int
    active: tuple[ActiveKill, ...]
    triggers: tuple[TriggerStatus, ...]
    subscribers: tuple[str, ...]
    paths: str


class Isolator(Protocol):
    """Kernel isolation of a venue (the TC egress guard); returns a human result."""

    def isolate(self, venue_id: int) -> str: ...

    def release(self, venue_id: int) -> str: ...


@dataclass
class _Tracker:
    """Acks of one command."""

    kid: int
    kill_id: str
    action: WireAction
    dry_run: bool
    start_ns: int
    expected: set[str]
    first: dict[str, tuple[KillAck, int]] = field(default_factory=dict)  # name -> (ack, recv)
    latest: dict[str, tuple[KillAck, int]] = field(default_factory=dict)
    ledgered_final: set[str] = field(default_factory=set)
    all_sent_ns: int | None = None
    all_confirmed_ns: int | None = None
    closed: bool = False
    confirm_deadline_ns: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def missing(self) -> list[str]:
        return sorted(self.expected - set(self.first))

    @property
    def cancelling(self) -> bool:
        return self.action in (WireAction.CANCEL_ALL, WireAction.ISOLATE_VENUE) and not self.dry_run


def _flag_name(flag: Flag) -> str:
    return str(flag.name).lower()


def _ack_view(ack: KillAck, recv_ns: int, start_ns: int) -> AckView:
    ok = ack.status in (KillAckStatus.APPLIED, KillAckStatus.ALREADY_APPLIED, KillAckStatus.DRY_RUN)
    if ack.status is KillAckStatus.PARTIAL:
        ok = ack.cancels_failed == 0  # unconfirmed yet is not a failure
    error = "" if ok else f"{ack.status.name.lower()}: {ack.cancels_failed} cancels failed"
    if ack.status is KillAckStatus.FAILED:
        error = "subscriber failed to act"
    return AckView(
        ack.subscriber,
        ok,
        ack.orders_blocked,
        ack.cancels_sent,
        ack.cancels_confirmed,
        recv_ns - start_ns,
        error,
        ack.status,
    )


def open_block(name: str, root: str | os.PathLike[str], store: StateStore) -> KillBlock:
    """Create the control block from the persisted state, or attach the one still in shared
    memory (a process restart: it is newer than the file). An unreadable state file gives a
    clean block here; `KillEngine.restore` then blocks the firm (fail closed)."""
    try:
        saved = store.load()
    except StateCorruptError:
        saved = None
    return KillBlock.create(
        name, root=root, restore=saved.block if saved is not None else None, exist_ok=True
    )


class KillEngine:
    """The kill role's core (thread-safe: gRPC threads, the trigger timer and the ack thread)."""

    def __init__(
        self,
        block: KillBlock,
        ledger: KillLedger,
        store: StateStore,
        *,
        fanout: Fanout | None = None,
        triggers: TriggerSet | None = None,
        isolator: Isolator | None = None,
        venues: VenueBook | None = None,
        expected_subscribers: Iterable[str] = (),
        ack_timeout_s: float = 0.25,
        ack_retry_s: float = 0.05,
        confirm_timeout_s: float = 5.0,
        slow_max_orders_per_s: int = 10,
        clock: Clock | None = None,
        realtime: Clock | None = None,
        issuer: str = "tectra-kill",
        journal: KillJournal | None = None,
    ) -> None:
        self.block = block
        self.journal = journal
        self.ledger = ledger
        self.store = store
        self.fanout = fanout
        if fanout is not None:
            fanout.on_ack = self.on_ack
        self.triggers = triggers or TriggerSet()
        self.isolator = isolator
        self.venues = venues or VenueBook()
        self.expected = tuple(expected_subscribers)
        self.ack_timeout_s = ack_timeout_s
        self.ack_retry_s = ack_retry_s
        self.confirm_timeout_ns = int(confirm_timeout_s * 1e9)
        self.slow_max_orders_per_s = slow_max_orders_per_s
        self.clock = clock or MonotonicClock()
        self.realtime = realtime or RealtimeClock()
        self.issuer = issuer
        self._lock = threading.RLock()
        self._active: dict[str, ActiveKill] = {}
        self._seen: dict[str, None] = {}  # ordered set
        self._trackers: dict[tuple[int, bool, bool], _Tracker] = {}
        self._results: dict[str, TriggerResult] = {}
        self._seq = 0
        self._log = get_logger("kill.engine")
        # metrics (read at scrape time by the role)
        self.trigger_to_block = LatencyHistogram(
            "tectra_kill_trigger_to_block_latency", "Trigger call to the control block set."
        )
        self.trigger_to_cancels_sent = LatencyHistogram(
            "tectra_kill_trigger_to_all_cancels_sent_latency",
            "Trigger to every subscriber's ack of its cancels sent (CANCEL, ISOLATE_VENUE).",
        )
        self.trigger_to_cancels_confirmed = LatencyHistogram(
            "tectra_kill_trigger_to_all_cancels_confirmed_latency",
            "Trigger to every cancel confirmed by the venues, as acked by the subscribers.",
        )
        self.trigger_to_ack = LatencyHistogram(
            "tectra_kill_trigger_to_ack_latency", "Trigger to each subscriber's first ack."
        )
        self.actions: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.counts: dict[str, int] = {
            "retries": 0,
            "duplicates": 0,
            "acks": 0,
            "late_acks": 0,
            "missing_acks": 0,
            "dry_runs": 0,
            "clears": 0,
            "fired": 0,
        }

    # ------------------------------------------------------------------ counters
    def _count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        with self._lock:
            table[key] = table.get(key, 0) + n

    def _fail(self, kind: str, message: str) -> None:
        self._count(self.failures, kind)
        self._log.error("kill failure", kind=kind, error=message)

    # ------------------------------------------------------------------ persistence
    def _snapshot(self) -> PersistedState:
        return PersistedState(
            block=self.block.state(),
            active=[k.to_dict() for k in self._active.values()],
            seen=list(self._seen)[-_SEEN_MAX:],
            triggers=self.triggers.arm_states(),
        )

    def _persist(self) -> None:
        with self._lock:
            snap = self._snapshot()
            try:
                self.store.save(snap)
            except StateError as exc:
                self._fail("persist", str(exc))

    def _ledger(
        self, kind: str, kill_id: str, actor: str, reason: str, payload: dict[str, Any]
    ) -> None:
        try:
            entry = self.ledger.append(
                kind, kill_id, actor, reason, payload, self.realtime.now_ns()
            )
        except LedgerError as exc:
            self._fail("ledger", str(exc))
            return
        if self.journal is not None:
            self.journal.note({"ledger": entry.to_dict()})

    def restore(self) -> str:
        """Load persisted state at start; fail closed when it cannot be trusted. Returns what
        happened, for the log."""
        try:
            saved = self.store.load()
        except StateCorruptError as exc:
            return self._fail_closed(f"kill state unreadable: {exc}")
        if saved is None:
            if self.ledger.entries():
                return self._fail_closed(
                    f"kill state file {self.store.path} missing but the ledger has "
                    f"{len(self.ledger.entries())} records"
                )
            self._persist()
            return "fresh start: no kill state"
        with self._lock:
            try:
                for d in saved.active:
                    k = ActiveKill.from_dict(d)
                    self._active[k.kill_id] = k
            except (KeyError, TypeError, ValueError) as exc:
                return self._fail_closed(f"kill state has a bad active kill: {exc!r}")
            self._seen = dict.fromkeys(saved.seen)
            self.triggers.restore_arm_states(saved.triggers)
            adopted = self._reconcile()
        self._persist()
        what = f"restored {len(self._active)} active kill(s)"
        if adopted:
            what += f", adopted {len(adopted)} unexplained block entries: {adopted}"
        return what

    def _reconcile(self) -> list[str]:
        """Make every flag in the block belong to an active kill (adopt strays)."""
        st = self.block.state()
        keys: list[tuple[Scope, int, Flag]] = [(Scope.FIRM, 0, st.firm)] if st.firm else []
        keys += [(e.scope, e.id, e.flags) for e in st.entries]
        adopted: list[str] = []
        for scope, sid, flags in keys:
            need = self._flags_needed(scope, sid)
            for f in (Flag.BLOCK, Flag.SLOW):
                if f in flags and f not in need:
                    kid_s = f"recovered:{scope.name.lower()}:{sid}:{str(f.name).lower()}"
                    self._active[kid_s] = ActiveKill(
                        kid_s,
                        kill_id_u64(kid_s),
                        Target(scope, sid),
                        Action.SLOW if f is Flag.SLOW else Action.BLOCK,
                        "found in the control block at start without a persisted kill",
                        self.issuer,
                        self.realtime.now_ns(),
                        KillReason.RESTART_FAIL_CLOSED,
                    )
                    adopted.append(kid_s)
        return adopted

    def _fail_closed(self, why: str) -> str:
        kill_id = f"restart-fail-closed:{self.realtime.now_ns()}"
        kid = kill_id_u64(kill_id)
        with self._lock:
            self.block.set(Flag.BLOCK, Scope.FIRM, 0, kill_id=kid)
            self._active[kill_id] = ActiveKill(
                kill_id,
                kid,
                Target(Scope.FIRM),
                Action.BLOCK,
                why,
                self.issuer,
                self.realtime.now_ns(),
                KillReason.RESTART_FAIL_CLOSED,
            )
            self._seen[kill_id] = None
        self._count(self.actions, "block")
        self._fail("restore", why)
        self._persist()
        self._ledger(
            "trigger",
            kill_id,
            self.issuer,
            why,
            {"reason_code": "RESTART_FAIL_CLOSED", "target": Target(Scope.FIRM).to_dict()},
        )
        self._ledger("action", kill_id, self.issuer, why, {"step": "block", "scope": "firm"})
        return f"FAIL CLOSED: {why}"

    # ------------------------------------------------------------------ requests
    def resolve(self, target: Target) -> Target:
        scope, sid, name = target.scope, target.scope_id, target.name.strip()
        if scope is Scope.FIRM:
            return Target(Scope.FIRM, 0, name)
        if name and sid == 0:
            venue = self.venues.by_name.get(name)
            if scope is Scope.VENUE and venue is not None:
                sid = venue.id
            elif name.isdigit():
                sid = int(name)
            else:
                raise KillRequestError(
                    f"cannot resolve {scope.name.lower()} name {name!r} "
                    f"(known venues: {sorted(self.venues.by_name)}); give scope_id"
                )
        if not 0 < sid <= _SCOPE_ID_MAX:
            raise KillRequestError(
                f"{scope.name.lower()} scope needs an id in 1..{_SCOPE_ID_MAX}, got {sid}"
            )
        return Target(scope, sid, name)

    @staticmethod
    def _require(reason: str, actor: str) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise KillRequestError("a reason is required")
        if not isinstance(actor, str) or not actor.strip():
            raise KillRequestError("an actor is required")

    def _validate(self, req: TriggerRequest) -> Target:
        if not isinstance(req.kill_id, str) or not _KILL_ID_RE.match(req.kill_id):
            raise KillRequestError("kill id must be 1-128 printable ASCII characters, no spaces")
        self._require(req.reason, req.actor)
        try:
            action = Action(req.action)
        except ValueError:
            raise KillRequestError(f"unknown action {req.action!r}") from None
        target = self.resolve(req.target)
        if action is Action.ISOLATE_VENUE and target.scope is not Scope.VENUE:
            raise KillRequestError("ISOLATE_VENUE needs a VENUE target")
        if req.ack_timeout_s < 0 or req.ack_timeout_s > 60:
            raise KillRequestError("ack_timeout_s must be within 0..60")
        return target

    def trigger(self, req: TriggerRequest, *, fan_out: bool = True) -> TriggerResult:
        """Apply one kill (see the module docstring for the order of events). FAN_OUT false
        (a mirrored command) changes the block and records it but sends nothing."""
        start = self.clock.now_ns()
        try:
            target = self._validate(req)
        except KillRequestError as exc:
            self._count(self.failures, "bad_request")
            raise exc
        action = Action(req.action)
        kid = kill_id_u64(req.kill_id)
        to_block = 0
        detail = ""
        first: TriggerResult | None = None
        with self._lock:
            dup = not req.dry_run and req.kill_id in self._seen
            if dup:
                self.counts["duplicates"] += 1
                first = self._results.get(req.kill_id)
            elif not req.dry_run:
                try:
                    self.block.set(action.flag, target.scope, target.scope_id, kill_id=kid)
                except KillBlockFullError as exc:
                    # Fail closed: a scope we cannot block is blocked with everything else.
                    self.block.set(Flag.BLOCK, Scope.FIRM, 0, kill_id=kid)
                    detail = f"scoped table full ({exc}); escalated to a firm-wide block"
                    self._fail("block_table_full", detail)
                to_block = self.clock.now_ns() - start
                self._seen[req.kill_id] = None
                self._active[req.kill_id] = ActiveKill(
                    req.kill_id,
                    kid,
                    target,
                    action,
                    req.reason,
                    req.actor,
                    self.realtime.now_ns(),
                    req.reason_code,
                )
                self.actions[action.name.lower()] = self.actions.get(action.name.lower(), 0) + 1
            else:
                self.counts["dry_runs"] += 1
            epoch = self.block.epoch
            if not dup:
                self._seq += 1
                command = KillCommand(
                    kill_id=kid,
                    action=action.wire,
                    scope=target.scope,
                    scope_id=target.scope_id,
                    epoch=epoch,
                    ack_timeout_ns=int(self._ack_timeout(req.ack_timeout_s) * 1e9),
                    slow_max_orders_per_s=(
                        self.slow_max_orders_per_s if action is Action.SLOW else 0
                    ),
                    reason=req.reason_code,
                    dry_run=req.dry_run,
                    scope_key=target.name[:16],
                    issued_by=req.actor[:32],
                    seq=self._seq,
                    sent_ns=start,
                )
                tracker = self._track(command, req.kill_id, start, fan_out)
        if dup:
            self._ledger(
                "trigger",
                req.kill_id,
                req.actor,
                req.reason,
                {"duplicate": True, "applied": False, "correlation_id": req.correlation_id},
            )
            return TriggerResult(
                req.kill_id,
                False,
                False,
                first.acks if first else (),
                first.missing if first else (),
                0,
                "kill id already applied: no second effect",
            )
        if not req.dry_run:
            self.trigger_to_block.record(to_block)
        published = self._publish(command) if fan_out else {"paths": "mirror: not sent"}
        if not req.dry_run:
            self._persist()
        payload: dict[str, Any] = {
            "target": target.to_dict(),
            "action": action.name,
            "dry_run": req.dry_run,
            "kid": f"{kid:016x}",
            "epoch": epoch,
            "trigger_to_block_ns": to_block,
            "reason_code": req.reason_code.name,
            "correlation_id": req.correlation_id,
        }
        self._ledger("trigger", req.kill_id, req.actor, req.reason, payload)
        self._ledger(
            "action",
            req.kill_id,
            req.actor,
            req.reason,
            {
                "step": "dry_run"
                if req.dry_run
                else f"control_block_{str(action.flag.name).lower()}",
                "scope": target.scope.name.lower(),
                "scope_id": target.scope_id,
                "epoch": epoch,
                "fanout": published,
                "detail": detail,
            },
        )
        missing = (
            self._wait(tracker, command, self._ack_timeout(req.ack_timeout_s)) if fan_out else []
        )
        if action is Action.ISOLATE_VENUE and not req.dry_run:
            result = self._isolate(req.kill_id, target.scope_id)
            detail = "; ".join(x for x in (detail, result) if x)
            self._ledger(
                "action",
                req.kill_id,
                req.actor,
                req.reason,
                {"step": "isolate_venue", "venue": target.scope_id, "result": result},
            )
        acks = self._ledger_acks(tracker, req, missing)
        result_obj = TriggerResult(
            req.kill_id, not req.dry_run, req.dry_run, acks, tuple(missing), to_block, detail
        )
        if not req.dry_run:
            with self._lock:
                self._results[req.kill_id] = result_obj
                while len(self._results) > 256:
                    self._results.pop(next(iter(self._results)))
        return result_obj

    def _ack_timeout(self, requested: float) -> float:
        return requested if requested > 0 else self.ack_timeout_s

    def _track(
        self, command: KillCommand, kill_id: str, start: int, fan_out: bool = True
    ) -> _Tracker:
        expected = set(self.expected) if fan_out else set()
        if self.fanout is not None and fan_out:
            expected |= set(self.fanout.local_subscribers())
        tracker = _Tracker(
            command.kill_id,
            kill_id,
            command.action,
            command.dry_run,
            start,
            expected,
            confirm_deadline_ns=start + self.confirm_timeout_ns,
        )
        key = (command.kill_id, command.action is WireAction.CLEAR, command.dry_run)
        self._trackers[key] = tracker
        return tracker

    def _publish(self, command: KillCommand) -> dict[str, Any]:
        try:
            return self._send(command)
        finally:
            if self.journal is not None:  # after the send: capture never delays a command
                self.journal.command(command.encode(), command.sent_ns)

    def _send(self, command: KillCommand) -> dict[str, Any]:
        if self.fanout is None:
            return {"paths": "none"}
        try:
            res = self.fanout.publish(command)
        except Exception as exc:  # a fan-out bug must not undo the block already in force
            self._fail("fanout", repr(exc))
            return {"paths": self.fanout.paths, "error": repr(exc)}
        return {"paths": self.fanout.paths, "local": list(res.local), "nats": res.nats}

    def _wait(self, tracker: _Tracker, command: KillCommand, timeout_s: float) -> list[str]:
        deadline = tracker.start_ns + int(timeout_s * 1e9)
        retry_ns = int(self.ack_retry_s * 1e9)
        next_retry = tracker.start_ns + retry_ns if retry_ns else None
        with tracker.cond:
            while True:
                missing = tracker.missing()
                now = self.clock.now_ns()
                if not missing or now >= deadline:
                    break
                wake = deadline if next_retry is None else min(deadline, next_retry)
                tracker.cond.wait(max(wake - now, 0) / 1e9)
                now = self.clock.now_ns()
                if next_retry is not None and now >= next_retry and tracker.missing():
                    self._retry(command, tracker.missing())
                    next_retry = now + retry_ns
        if missing:
            self._count(self.counts, "missing_acks", len(missing))
        return missing

    def _retry(self, command: KillCommand, missing: list[str]) -> None:
        if self.fanout is None:
            return
        self._count(self.counts, "retries")
        local = set(self.fanout.local_subscribers())
        data = command.encode()
        for name in missing:
            if name in local:
                self.fanout.send_local(name, data)
        remote = [n for n in missing if n not in local]
        if remote and self.fanout.link is not None:
            # NATS subscribers are anonymous to the publisher: send again to all (idempotent).
            self.fanout.publish(command, only_local=())

    def _ledger_acks(
        self, tracker: _Tracker, req: TriggerRequest, missing: list[str]
    ) -> tuple[AckView, ...]:
        with tracker.cond:
            firsts = sorted(tracker.first.items())
        views = []
        for name, (ack, recv) in firsts:
            view = _ack_view(ack, recv, tracker.start_ns)
            views.append(view)
            self._ledger(
                "ack",
                req.kill_id,
                name,
                req.reason,
                {
                    "status": ack.status.name,
                    "orders_blocked": ack.orders_blocked,
                    "cancels_sent": ack.cancels_sent,
                    "cancels_confirmed": ack.cancels_confirmed,
                    "cancels_failed": ack.cancels_failed,
                    "latency_ns": view.latency_ns,
                    "dry_run": tracker.dry_run,
                },
            )
        if missing:
            self._ledger(
                "action",
                req.kill_id,
                self.issuer,
                req.reason,
                {"step": "ack_deadline", "missing": missing},
            )
        return tuple(views)

    def _isolate(self, kill_id: str, venue_id: int) -> str:
        if self.isolator is None:
            self._fail("isolate", "no egress guard configured (kill.egress_interface)")
            return "kernel isolation unavailable: no egress guard configured"
        try:
            result = self.isolator.isolate(venue_id)
        except Exception as exc:  # reported, never fatal: the block and cancels stand
            self._fail("isolate", repr(exc))
            return f"kernel isolation failed: {exc}"
        with self._lock:
            if kill_id in self._active:
                self._active[kill_id].isolated = True
        self._persist()
        return result

    def reapply_isolation(self) -> list[str]:
        """Re-isolate the venues of active ISOLATE_VENUE kills (the egress guard does not
        outlive the role process; the kill does)."""
        with self._lock:
            venues = sorted({k.target.scope_id for k in self._active.values() if k.isolated})
        out = []
        for venue in venues:
            if self.isolator is None:
                self._fail("isolate", "active isolation but no egress guard")
                out.append(f"venue {venue}: kernel isolation unavailable")
                continue
            try:
                out.append(self.isolator.isolate(venue))
            except Exception as exc:
                self._fail("isolate", repr(exc))
                out.append(f"venue {venue}: isolation failed: {exc}")
        return out

    # ------------------------------------------------------------------ acks
    def on_ack(self, ack: KillAck, recv_ns: int) -> None:
        """Called by the fan-out's ack thread (and NATS loop) for every ack."""
        if self.journal is not None:
            self.journal.ack(ack.encode(), recv_ns)
        key = (ack.kill_id, ack.action is WireAction.CLEAR, ack.status is KillAckStatus.DRY_RUN)
        with self._lock:
            self.counts["acks"] += 1
            tracker = self._trackers.get(key)
        if tracker is None:
            self._count(self.counts, "late_acks")
            return
        with tracker.cond:
            prev = tracker.latest.get(ack.subscriber)
            if prev is not None and prev[0].seq >= ack.seq:
                return
            tracker.latest[ack.subscriber] = (ack, recv_ns)
            if ack.subscriber not in tracker.first:
                tracker.first[ack.subscriber] = (ack, recv_ns)
                self.trigger_to_ack.record(recv_ns - tracker.start_ns)
                tracker.expected.add(ack.subscriber)
            if tracker.cancelling:
                everyone = not tracker.missing()
                if everyone and tracker.all_sent_ns is None:
                    tracker.all_sent_ns = recv_ns
                    self.trigger_to_cancels_sent.record(recv_ns - tracker.start_ns)
                done = everyone and all(a.complete for a, _ in tracker.latest.values())
                if done and tracker.all_confirmed_ns is None:
                    tracker.all_confirmed_ns = recv_ns
                    self.trigger_to_cancels_confirmed.record(recv_ns - tracker.start_ns)
            tracker.cond.notify_all()

    def tick(self, now_ns: int | None = None) -> None:
        """Timer work: ledger final cancel confirmations, close finished trackers."""
        now = self.clock.now_ns() if now_ns is None else now_ns
        with self._lock:
            trackers = list(self._trackers.items())
        for key, t in trackers:
            with t.cond:
                finals = [
                    (n, a)
                    for n, (a, _) in t.latest.items()
                    if t.cancelling
                    and n not in t.ledgered_final
                    and a.seq != t.first[n][0].seq
                    and (a.complete or now >= t.confirm_deadline_ns)
                ]
                t.ledgered_final.update(n for n, _ in finals)
                expired = now >= t.confirm_deadline_ns
            for name, ack in finals:
                self._ledger(
                    "ack",
                    t.kill_id,
                    name,
                    "cancel confirmations",
                    {
                        "status": ack.status.name,
                        "cancels_sent": ack.cancels_sent,
                        "cancels_confirmed": ack.cancels_confirmed,
                        "cancels_failed": ack.cancels_failed,
                        "final": True,
                    },
                )
            if expired:
                with self._lock:
                    self._trackers.pop(key, None)

    # ------------------------------------------------------------------ clear
    def clear(self, req: ClearRequest, *, fan_out: bool = True) -> ClearResult:
        try:
            self._require(req.reason, req.actor)
            target = self.resolve(req.target)
        except KillRequestError:
            self._count(self.failures, "bad_request")
            raise
        with self._lock:
            if req.kill_id:
                k = self._active.get(req.kill_id)
                match = [k] if k is not None else []
            else:
                match = [k for k in self._active.values() if target.covers(k.target)]
            if not match:
                what = req.kill_id or f"{target.scope.name.lower()} {target.scope_id}"
                return ClearResult(False, f"no active kill matches {what}")
            ids = tuple(k.kill_id for k in match)
            if req.dry_run:
                self.counts["dry_runs"] += 1
            else:
                for k in match:
                    del self._active[k.kill_id]
                for scope, sid in {(k.target.scope, k.target.scope_id) for k in match}:
                    drop = Flag(0)
                    for k in match:
                        if (k.target.scope, k.target.scope_id) == (scope, sid):
                            drop |= k.action.flag
                    drop &= ~self._flags_needed(scope, sid)
                    if drop:
                        self.block.clear(drop, scope, sid)
                self.counts["clears"] += 1
        if not req.dry_run:
            self._persist()
        self._ledger(
            "clear",
            req.kill_id or "*",
            req.actor,
            req.reason,
            {
                "target": target.to_dict(),
                "cleared": list(ids),
                "dry_run": req.dry_run,
                "correlation_id": req.correlation_id,
                "epoch": self.block.epoch,
            },
        )
        released = []
        if not req.dry_run:
            for k in match:
                if k.isolated and self.isolator is not None and not self._still_isolated(k):
                    try:
                        released.append(self.isolator.release(k.target.scope_id))
                    except Exception as exc:
                        self._fail("release", repr(exc))
                        released.append(f"release failed: {exc}")
            for k in match if fan_out else ():
                self._send_clear(k)
        verb = "would clear" if req.dry_run else "cleared"
        msg = f"{verb} {len(ids)} kill(s): {', '.join(ids)}"
        if released:
            msg += "; " + "; ".join(released)
        return ClearResult(True, msg, ids)

    def _still_isolated(self, k: ActiveKill) -> bool:
        return any(
            a.isolated and a.target.scope_id == k.target.scope_id
            for a in self._active.values()
            if a.action is Action.ISOLATE_VENUE
        )

    def _send_clear(self, k: ActiveKill) -> None:
        if self.fanout is None:
            return
        with self._lock:
            self._seq += 1
            command = KillCommand(
                kill_id=k.kid,
                action=WireAction.CLEAR,
                scope=k.target.scope,
                scope_id=k.target.scope_id,
                epoch=self.block.epoch,
                scope_key=k.target.name[:16],
                issued_by=self.issuer,
                seq=self._seq,
                sent_ns=self.clock.now_ns(),
            )
            self._track(command, k.kill_id, command.sent_ns)
        self._publish(command)

    def _flags_needed(self, scope: Scope, sid: int) -> Flag:
        need = Flag(0)
        for k in self._active.values():
            if k.target.scope is scope and k.target.scope_id == sid:
                need |= k.action.flag
        return need

    # ------------------------------------------------------------------ triggers
    def arm(self, name: str, armed: bool, dry_run: bool, reason: str, actor: str) -> str:
        self._require(reason, actor)
        trigger = self.triggers.arm(name, armed, dry_run)
        self._persist()
        self._ledger(
            "arm" if armed else "disarm",
            "",
            actor,
            reason,
            {"trigger": name, "armed": armed, "dry_run": dry_run},
        )
        state = "armed" if armed else "disarmed"
        mode = " (dry run)" if dry_run else ""
        return f"{name} {state}{mode}, threshold {trigger.settings.threshold}"

    def evaluate(self, now_ns: int | None = None) -> list[Firing]:
        """Evaluate every trigger and act on what fired (dry run: ledger only)."""
        now = self.clock.now_ns() if now_ns is None else now_ns
        with self._lock:
            firings = self.triggers.evaluate(now)
        for f in firings:
            self.on_firing(f)
        return firings

    def on_firing(self, f: Firing) -> TriggerResult | None:
        self._count(self.counts, "fired")
        payload = {
            "trigger": f.trigger,
            "value": f.value,
            "threshold": f.threshold,
            "target": Target(f.scope, f.scope_id).to_dict(),
            "action": f.action.value,
            "dry_run": True,
            "detail": f.detail,
        }
        if f.dry_run:
            self._count(self.counts, "dry_runs")
            self._ledger("trigger", f.kill_id, f"trigger:{f.trigger}", f.detail, payload)
            return None
        action = {
            KillActionName.BLOCK: Action.BLOCK,
            KillActionName.CANCEL: Action.CANCEL,
            KillActionName.SLOW: Action.SLOW,
        }[f.action]
        try:
            return self.trigger(
                TriggerRequest(
                    kill_id=f.kill_id,
                    target=Target(f.scope, f.scope_id),
                    action=action,
                    reason=f.detail,
                    actor=f"trigger:{f.trigger}",
                    reason_code=f.reason,
                )
            )
        except KillEngineError as exc:
            self._fail("trigger_action", str(exc))
            return None

    # ------------------------------------------------------------------ mirror (remote hosts)
    def apply_command(self, command: KillCommand, origin: str) -> bool:
        """BlockApplier for `KillSubscriber`: mirror another appliance's command into this
        host's control block (no fan-out: this host's gateways hear the origin directly)."""
        kill_id = f"{origin or 'remote'}:{command.kill_id:016x}"
        actor = f"mirror:{origin or 'remote'}"
        if command.dry_run:
            return False
        if command.action is WireAction.CLEAR:
            with self._lock:
                known = kill_id in self._active
            if not known:
                return False
            return self.clear(
                ClearRequest(kill_id, Target(command.scope), f"cleared at {origin}", actor),
                fan_out=False,
            ).ok
        try:
            action = Action.from_wire(command.action)
        except KillRequestError:
            return False
        res = self.trigger(
            TriggerRequest(
                kill_id=kill_id,
                target=Target(command.scope, command.scope_id),
                action=Action.BLOCK if action is Action.ISOLATE_VENUE else action,
                reason=f"mirrored from {origin or 'remote'}",
                actor=actor,
                reason_code=command.reason,
            ),
            fan_out=False,
        )
        return res.applied

    # ------------------------------------------------------------------ status
    def status(self) -> EngineStatus:
        with self._lock:
            st = self.block.state()
            subs = set(self.expected)
            if self.fanout is not None:
                subs |= set(self.fanout.local_subscribers())
            return EngineStatus(
                blocked_all=st.blocked_all,
                epoch=st.epoch,
                active=tuple(self._active.values()),
                triggers=tuple(self.triggers.status()),
                subscribers=tuple(sorted(subs)),
                paths=self.fanout.paths if self.fanout is not None else "none",
            )

    def active(self) -> tuple[ActiveKill, ...]:
        with self._lock:
            return tuple(self._active.values())
