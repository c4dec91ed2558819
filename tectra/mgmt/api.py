"""The servicers of tectra-mgmtd's public API (mgmt.proto), one class per service.

They run behind `tectra.mgmt.guard.Guard`: by the time a method runs, the caller is
authenticated and authorised, and mutating calls are being audited and de-duplicated. A
servicer checks the request (confirmation for destructive calls, required reasons), stamps the
authenticated caller as `actor` (a client-sent actor is never trusted), forwards to the
role through `RoleBackend`, and maps role errors to gRPC codes: a role that is down →
UNAVAILABLE naming it; any other role error keeps the role's code.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any, NoReturn, TypeVar

import grpc

from tectra.mgmt.audit import AuditQuery, AuditTrail
from tectra.mgmt.backend import BackendError, RoleBackend, RoleUnavailableError
from tectra.mgmt.guard import current_call
from tectra.mgmt.limits_edit import LimitsEditError, apply_change, parse_value
from tectra.mgmt.metrics_summary import ScrapeError, scrape, summarise
from tectra.mgmt.v1 import feed_pb2, gateway_pb2, kill_pb2, mgmt_pb2, mgmt_pb2_grpc

T = TypeVar("T")

HEALTH_BY_LIFECYCLE = {
    "READY": "ok",
    "INIT": "starting",
    "WARMUP": "starting",
    "DEGRADED": "degraded",
    "HALTED": "halted",
}


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


def _forward(context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except RoleUnavailableError as exc:
        _abort(context, grpc.StatusCode.UNAVAILABLE, exc.details)
    except BackendError as exc:
        _abort(context, exc.code, f"{exc.role} role: {exc.details}")


def require_confirmation(
    context: grpc.ServicerContext, what: str, *, confirm: bool, dry_run: bool
) -> None:
    """Destructive calls go ahead only when confirmed, or as a dry run."""
    if not (confirm or dry_run):
        _abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{what} is destructive: confirm it (confirm=true, tectractl --yes) "
            "or try it first with dry_run (tectractl --dry-run)",
        )


def require_reason(context: grpc.ServicerContext, what: str, reason: str) -> None:
    if not reason.strip():
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{what} needs a reason")


class StatusServicer(mgmt_pb2_grpc.StatusServiceServicer):  # type: ignore[misc]
    def __init__(self, backend: RoleBackend, appliance: str, roles: Sequence[str]) -> None:
        self._backend = backend
        self._appliance = appliance
        self._roles = tuple(roles)
        self._pool = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="mgmtd-status")

    def _one(self, role: str) -> Any:
        try:
            status = self._backend.role_status(role)
        except BackendError as exc:
            return mgmt_pb2.RoleHealth(role=role, reachable=False, health="down", error=exc.details)
        return mgmt_pb2.RoleHealth(
            role=role,
            reachable=True,
            health=HEALTH_BY_LIFECYCLE.get(status.lifecycle, "unknown"),
            status=status,
        )

    def GetStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        roles = list(request.roles) or list(self._roles)
        rows = list(self._pool.map(self._one, roles))
        return mgmt_pb2.ApplianceStatusReply(
            appliance=self._appliance,
            roles=rows,
            all_ready=bool(rows) and all(r.health == "ok" for r in rows),
        )

    def WhoAmI(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        p = current_call().principal
        return mgmt_pb2.WhoAmIReply(principal=p.name, transport=p.transport, role=p.role.label)


class LimitsServicer(mgmt_pb2_grpc.LimitsServiceServicer):  # type: ignore[misc]
    def __init__(self, backend: RoleBackend) -> None:
        self._backend = backend
        # One read-modify-write at a time through mgmtd, so two `limits set` cannot lose one
        # another's change between GetLimits and LoadLimits.
        self._edit = threading.Lock()

    def GetLimits(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _forward(
            context, lambda: self._backend.gateway("GetLimits", gateway_pb2.LimitsRequest())
        )

    def _load(
        self, context: grpc.ServicerContext, doc_json: str, reason: str, dry_run: bool, prev: int
    ) -> Any:
        reply = _forward(
            context,
            lambda: self._backend.gateway(
                "LoadLimits",
                gateway_pb2.LoadLimitsRequest(
                    limits_json=doc_json,
                    actor=current_call().principal.name,
                    reason=reason,
                    dry_run=dry_run,
                ),
            ),
        )
        return mgmt_pb2.LimitsChangeReply(
            ok=reply.ok,
            dry_run=dry_run,
            version=reply.version,
            previous_version=prev,
            error=reply.error,
            limits_json=doc_json,
        )

    def SetLimit(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        require_confirmation(
            context, "limits set", confirm=request.confirm, dry_run=request.dry_run
        )
        with self._edit:
            current = self.GetLimits(gateway_pb2.LimitsRequest(), context)
            try:
                doc = json.loads(current.limits_json or "{}")
                if not isinstance(doc, dict):
                    raise LimitsEditError("the active limits document is not a table")
                value = None if request.remove else parse_value(request.value_json)
                new = apply_change(doc, request.path, value, remove=request.remove)
            except (LimitsEditError, json.JSONDecodeError) as exc:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return self._load(
                context,
                json.dumps(new, sort_keys=True),
                request.reason,
                request.dry_run,
                current.version,
            )

    def LoadLimits(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        require_confirmation(
            context, "limits load", confirm=request.confirm, dry_run=request.dry_run
        )
        try:
            doc = json.loads(request.limits_json)
        except json.JSONDecodeError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"limits_json is not JSON: {exc}")
        if not isinstance(doc, dict):
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "limits_json must be a JSON object")
        with self._edit:
            prev = self.GetLimits(gateway_pb2.LimitsRequest(), context).version
            return self._load(context, request.limits_json, request.reason, request.dry_run, prev)


# Kill scopes whose names are the limits' own tables: the gateway's GetLimits is the one place
# that maps a symbol or an account name to the id every gateway's control block uses.
_LIMITS_TABLE_OF_SCOPE = {kill_pb2.SYMBOL: "instruments", kill_pb2.ACCOUNT: "accounts"}


class KillServicer(mgmt_pb2_grpc.KillServiceServicer):  # type: ignore[misc]
    def __init__(self, backend: RoleBackend) -> None:
        self._backend = backend

    def _resolve(self, context: grpc.ServicerContext, target: Any) -> None:
        """Fill `scope_id` of a SYMBOL/ACCOUNT target given by name from the active limits
        (instruments.NAME.id / accounts.NAME.id); refuse an unknown name before anything acts.
        Numeric names and explicit ids pass through; venue names are the kill role's own
        (kill.venues)."""
        table = _LIMITS_TABLE_OF_SCOPE.get(target.scope)
        name = target.scope_name.strip()
        if table is None or not name or target.scope_id or name.isdigit():
            return
        reply = _forward(
            context, lambda: self._backend.gateway("GetLimits", gateway_pb2.LimitsRequest())
        )
        try:
            entries = json.loads(reply.limits_json or "{}").get(table) or {}
        except (json.JSONDecodeError, AttributeError):
            entries = {}
        entry = entries.get(name) if isinstance(entries, dict) else None
        sid = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(sid, int) or isinstance(sid, bool) or sid <= 0:
            known = sorted(entries) if isinstance(entries, dict) else []
            what = "symbol" if table == "instruments" else "account"
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown {what} {name!r}: not in the active limits ({table}: "
                f"{', '.join(known[:20]) or 'none'}); nothing was done",
            )
        target.scope_id = sid

    def Arm(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if not request.trigger:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "arm needs a trigger name")
        call = current_call()
        fwd = kill_pb2.ArmRequest()
        fwd.CopyFrom(request)
        fwd.actor = call.principal.name
        fwd.correlation_id = call.correlation_id
        return _forward(context, lambda: self._backend.kill("Arm", fwd))

    def Trigger(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        t = request.trigger
        require_confirmation(context, "kill trigger", confirm=request.confirm, dry_run=t.dry_run)
        require_reason(context, "kill trigger", t.reason)
        call = current_call()
        fwd = kill_pb2.TriggerRequest()
        fwd.CopyFrom(t)
        self._resolve(context, fwd.target)
        fwd.actor = call.principal.name
        fwd.correlation_id = call.correlation_id
        # A retry carries the same correlation id, so a derived kill id is the same too.
        fwd.kill_id = t.kill_id or f"mgmt-{call.correlation_id}"
        return _forward(context, lambda: self._backend.kill("Trigger", fwd))

    def Clear(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        c = request.clear
        require_confirmation(context, "kill clear", confirm=request.confirm, dry_run=c.dry_run)
        require_reason(context, "kill clear", c.reason)
        call = current_call()
        fwd = kill_pb2.ClearRequest()
        fwd.CopyFrom(c)
        if not fwd.kill_id:
            self._resolve(context, fwd.target)
        fwd.actor = call.principal.name
        fwd.correlation_id = call.correlation_id
        return _forward(context, lambda: self._backend.kill("Clear", fwd))

    def GetStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _forward(context, lambda: self._backend.kill("GetStatus", request))

    def History(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _forward(context, lambda: self._backend.kill("History", request))

    def Verify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _forward(context, lambda: self._backend.kill("Verify", request))


class SessionsServicer(mgmt_pb2_grpc.SessionsServiceServicer):  # type: ignore[misc]
    def __init__(self, backend: RoleBackend) -> None:
        self._backend = backend

    def ListSessions(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _forward(context, lambda: self._backend.gateway("ListSessions", request))

    def Disconnect(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        require_confirmation(
            context, "session disconnect", confirm=request.confirm, dry_run=request.dry_run
        )
        fwd = gateway_pb2.DisconnectSessionRequest(
            session_id=request.session_id,
            reason=request.reason,
            actor=current_call().principal.name,
            dry_run=request.dry_run,
        )
        return _forward(context, lambda: self._backend.gateway("DisconnectSession", fwd))


class PositionsServicer(mgmt_pb2_grpc.PositionsServiceServicer):  # type: ignore[misc]
    def __init__(self, backend: RoleBackend) -> None:
        self._backend = backend

    def GetPositions(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _forward(context, lambda: self._backend.gateway("GetPositions", request))

    def OrdersSummary(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _forward(context, lambda: self._backend.gateway("OrdersSummary", request))


class MarketServicer(mgmt_pb2_grpc.MarketServiceServicer):  # type: ignore[misc]
    def __init__(self, backend: RoleBackend) -> None:
        self._backend = backend

    def GetBook(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        sym = request.symbol.strip()
        if not sym or len(sym) > 8 or not sym.isascii():
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "symbol: 1-8 ASCII characters")
        if request.depth < 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "depth must be >= 0")
        fwd = feed_pb2.BookRequest(symbol=sym, depth=request.depth)
        return _forward(context, lambda: self._backend.feed("GetBook", fwd))


class MetricsServicer(mgmt_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, backend: RoleBackend, metrics_host: str, roles: Sequence[str]) -> None:
        self._backend = backend
        self._host = metrics_host
        self._roles = tuple(roles)

    def _one(self, role: str) -> Any:
        out = mgmt_pb2.RoleMetrics(role=role)
        try:
            port = self._backend.role_status(role).metrics_port
        except BackendError as exc:
            out.error = exc.details
            return out
        if not port:
            out.error = "the role reports no metrics port"
            return out
        out.url = f"http://{self._host}:{port}/metrics"
        try:
            families = summarise(scrape(out.url, self._backend.timeout_s))
        except ScrapeError as exc:
            out.error = str(exc)
            return out
        out.reachable = True
        for f in families:
            out.families.add(
                name=f.name,
                type=f.type,
                value=f.value,
                series=f.series,
                count=f.count,
                p50=f.p50,
                p99=f.p99,
            )
        return out

    def Summary(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        roles = list(request.roles) or list(self._roles)
        return mgmt_pb2.MetricsSummaryReply(roles=[self._one(r) for r in roles])


class AuditServicer(mgmt_pb2_grpc.AuditServiceServicer):  # type: ignore[misc]
    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    def Query(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.limit < 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "limit must be >= 0")
        q = AuditQuery(
            since_ns=request.since_ns,
            until_ns=request.until_ns,
            who=request.who,
            method=request.method,
            correlation_id=request.correlation_id,
            limit=request.limit or 100,
        )
        reply = mgmt_pb2.AuditQueryReply()
        for rec in self._trail.query(q):
            reply.records.add(
                seq=rec.seq,
                ts_ns=rec.ts_ns,
                correlation_id=rec.correlation_id,
                who=rec.who,
                role=rec.role,
                transport=rec.transport,
                method=rec.method,
                args_json=json.dumps(rec.args, sort_keys=True),
                result=rec.result,
                detail=rec.detail,
                dry_run=rec.dry_run,
                replayed=rec.replayed,
            )
        return reply


def add_servicers(
    server: grpc.Server,
    backend: RoleBackend,
    trail: AuditTrail,
    *,
    appliance: str,
    roles: Sequence[str],
    metrics_host: str,
) -> None:
    """Every mgmt.proto service on SERVER."""
    mgmt_pb2_grpc.add_StatusServiceServicer_to_server(
        StatusServicer(backend, appliance, roles), server
    )
    mgmt_pb2_grpc.add_LimitsServiceServicer_to_server(LimitsServicer(backend), server)
    mgmt_pb2_grpc.add_KillServiceServicer_to_server(KillServicer(backend), server)
    mgmt_pb2_grpc.add_SessionsServiceServicer_to_server(SessionsServicer(backend), server)
    mgmt_pb2_grpc.add_PositionsServiceServicer_to_server(PositionsServicer(backend), server)
    mgmt_pb2_grpc.add_MarketServiceServicer_to_server(MarketServicer(backend), server)
    mgmt_pb2_grpc.add_MetricsServiceServicer_to_server(
        MetricsServicer(backend, metrics_host, roles), server
    )
    mgmt_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(trail), server)
