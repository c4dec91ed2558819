"""The gate every tectra-mgmtd call passes: authenticate, authorise, audit, de-duplicate.

A gRPC server interceptor that wraps each method handler, so no servicer can forget a check:

1. identity from the transport (`tectra.mgmt.auth.identify`): none → UNAUTHENTICATED;
2. the RBAC table (`tectra.mgmt.rbac`): role below the method's minimum, or a method not in
   the table → PERMISSION_DENIED;
3. mutating methods: the correlation id from metadata (made here if absent, echoed back in the
   initial metadata), the replay cache (a retry is answered, not re-applied), and one audit
   record with the outcome — for denied calls too.

The servicer reads the caller and correlation id through `current_call()`.
"""

from __future__ import annotations

import contextvars
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from tectra.core.metrics import MetricsRegistry
from tectra.mgmt.audit import AuditError, AuditTrail
from tectra.mgmt.auth import PeerLookup, Principal, RoleMap, identify
from tectra.mgmt.rbac import Rule, rule_for
from tectra.mgmt.replay import ReplayCache, ReplayConflictError

CORRELATION_HEADER: Final = "x-correlation-id"
_MAX_CID: Final = 128


@dataclass(frozen=True, slots=True)
class CallInfo:
    principal: Principal
    method: str
    correlation_id: str


_CURRENT: contextvars.ContextVar[CallInfo] = contextvars.ContextVar("tectra_mgmt_call")


def current_call() -> CallInfo:
    """The caller of the RPC being served (set by the guard in the serving thread)."""
    return _CURRENT.get()


def _metadata_value(context: grpc.ServicerContext, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return ""


def _args(request: object) -> dict[str, Any]:
    if isinstance(request, Message):
        return MessageToDict(request, preserving_proto_field_name=True)
    return {}


def _dry_run(args: dict[str, Any]) -> bool:
    if args.get("dry_run"):
        return True
    return any(isinstance(v, dict) and v.get("dry_run") for v in args.values())


class GuardCounters:
    """Counts calls by method and outcome (the metrics endpoint of mgmtd reads them)."""

    def __init__(self) -> None:
        self.by_outcome: dict[tuple[str, ...], float] = {}

    def count(self, method: str, outcome: str) -> None:
        key = (method, outcome)
        self.by_outcome[key] = self.by_outcome.get(key, 0) + 1

    def register(self, metrics: MetricsRegistry) -> None:
        metrics.counter_from(
            "tectra_mgmt_calls_total",
            "Calls to tectra-mgmtd by method and outcome (gRPC status code name).",
            lambda: dict(self.by_outcome),
            ("method", "outcome"),
        )


class Guard(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        roles: RoleMap,
        peers: PeerLookup,
        audit: AuditTrail,
        replay: ReplayCache[Any] | None = None,
        counters: GuardCounters | None = None,
    ) -> None:
        self._roles = roles
        self._peers = peers
        self._audit = audit
        self._replay: ReplayCache[Any] = replay if replay is not None else ReplayCache()
        self.counters = counters if counters is not None else GuardCounters()

    # -- the checks -------------------------------------------------------------------------

    def _admit(
        self, method: str, request: object, context: grpc.ServicerContext
    ) -> tuple[CallInfo, Rule]:
        principal = identify(context, self._roles, self._peers)
        if principal is None:
            self.counters.count(method, "UNAUTHENTICATED")
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "no identity: use the local socket or a client certificate with a CN",
            )
            raise AssertionError("unreachable")  # context.abort raises
        rule = rule_for(method)
        cid = _metadata_value(context, CORRELATION_HEADER)[:_MAX_CID] or uuid.uuid4().hex
        call = CallInfo(principal, method, cid)
        if rule is None or principal.role < rule.minimum:
            need = rule.minimum.label if rule is not None else "a method in the RBAC table"
            message = f"{principal.name} has role {principal.role.label}; {method} needs {need}"
            if rule is None or rule.mutating:
                self._record(call, request, "PERMISSION_DENIED", message)
            self.counters.count(method, "PERMISSION_DENIED")
            context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        assert rule is not None
        return call, rule

    def _record(
        self, call: CallInfo, request: object, result: str, detail: str, replayed: bool = False
    ) -> None:
        args = _args(request)
        self._audit.append(
            correlation_id=call.correlation_id,
            who=call.principal.name,
            role=call.principal.role.label,
            transport=call.principal.transport,
            method=call.method,
            args=args,
            result=result,
            detail=detail,
            dry_run=_dry_run(args),
            replayed=replayed,
        )

    def _mutating(
        self,
        call: CallInfo,
        behavior: Callable[[Any, grpc.ServicerContext], Any],
        request: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        context.send_initial_metadata(((CORRELATION_HEADER, call.correlation_id),))
        key = (call.principal.name, call.method, call.correlation_id)
        payload = (
            request.SerializeToString(deterministic=True) if isinstance(request, Message) else b""
        )
        try:
            reply, replayed = self._replay.run(key, payload, lambda: behavior(request, context))
        except ReplayConflictError as exc:
            self._record(call, request, "FAILED_PRECONDITION", str(exc))
            self.counters.count(call.method, "FAILED_PRECONDITION")
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except Exception as exc:
            code = context.code() if hasattr(context, "code") else None
            name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            details = context.details() if hasattr(context, "details") else None
            self._record(call, request, name, str(details or exc))
            self.counters.count(call.method, name)
            raise
        summary = json.dumps(_args(reply), sort_keys=True)[:1000] if reply is not None else ""
        self._record(call, request, "OK", summary, replayed=replayed)
        self.counters.count(call.method, "OK")
        return reply

    # -- wrapping handlers --------------------------------------------------------------------

    def _wrap_unary(
        self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                call, rule = self._admit(method, request, context)
                token = _CURRENT.set(call)
                try:
                    if rule.mutating:
                        return self._mutating(call, behavior, request, context)
                    reply = behavior(request, context)
                    self.counters.count(method, "OK")
                    return reply
                finally:
                    _CURRENT.reset(token)
            except AuditError as exc:
                # Fail closed: a change that cannot be recorded is not made.
                self.counters.count(method, "AUDIT_FAILED")
                context.abort(grpc.StatusCode.UNAVAILABLE, f"audit trail unavailable: {exc}")
                raise

        return handle

    def _wrap_stream(
        self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call, _rule = self._admit(method, None, context)
            token = _CURRENT.set(call)
            try:
                self.counters.count(method, "OK")
                yield from behavior(request, context)
            finally:
                _CURRENT.reset(token)

        return handle

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(method, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return None
