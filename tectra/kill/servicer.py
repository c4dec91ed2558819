"""KillControl (tectra/mgmt/v1/kill.proto) served by the kill role on its control socket.

A thin mapping between protobuf messages and `KillEngine` calls; no decisions here. A request
the engine refuses (missing reason or actor, unknown scope name, bad action) is
INVALID_ARGUMENT with the engine's reason and is counted; an unknown trigger in Arm is
NOT_FOUND. Authentication and the role check (risk-officer for Clear) are tectra-mgmtd's: it
passes who the caller was as ``actor``.
"""

from __future__ import annotations

from typing import Any

import grpc

from tectra.io.killblock import Scope
from tectra.kill.engine import (
    Action,
    ActiveKill,
    ClearRequest,
    KillEngine,
    KillRequestError,
    Target,
    TriggerRequest,
)
from tectra.kill.ledger import LedgerError, verify_ledger
from tectra.kill.triggers import UnknownTriggerError
from tectra.mgmt.v1 import kill_pb2, kill_pb2_grpc

__all__ = ["KillControlServicer", "kill_control_adder"]


def _target(msg: Any) -> Target:
    scope = int(msg.scope)
    if scope == kill_pb2.KILL_SCOPE_UNSPECIFIED:
        raise KillRequestError("target scope is required")
    try:
        block_scope = Scope(scope - 1)
    except ValueError:
        raise KillRequestError(f"unknown scope {scope}") from None
    return Target(block_scope, int(msg.scope_id), str(msg.scope_name))


def _target_msg(t: Target) -> Any:
    scope: Any = int(t.scope) + 1
    return kill_pb2.KillTarget(scope=scope, scope_id=t.scope_id, scope_name=t.name)


def _active_msg(k: ActiveKill) -> Any:
    action: Any = int(k.action)
    return kill_pb2.ActiveKill(
        kill_id=k.kill_id,
        target=_target_msg(k.target),
        action=action,
        reason=k.reason,
        actor=k.actor,
        since_ns=k.since_ns,
    )


class KillControlServicer(kill_pb2_grpc.KillControlServicer):  # type: ignore[misc]
    def __init__(self, engine: KillEngine) -> None:
        self.engine = engine
        self.rejected = 0

    def _invalid(self, context: grpc.ServicerContext, exc: Exception) -> None:
        self.rejected += 1
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def Trigger(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            action = int(request.action)
            if action == kill_pb2.KILL_ACTION_UNSPECIFIED:
                raise KillRequestError("action is required")
            try:
                engine_action = Action(action)
            except ValueError:
                raise KillRequestError(f"unknown action {action}") from None
            res = self.engine.trigger(
                TriggerRequest(
                    kill_id=str(request.kill_id),
                    target=_target(request.target),
                    action=engine_action,
                    reason=str(request.reason),
                    actor=str(request.actor),
                    dry_run=bool(request.dry_run),
                    ack_timeout_s=float(request.ack_timeout_s),
                    correlation_id=str(request.correlation_id),
                )
            )
        except KillRequestError as exc:
            self._invalid(context, exc)
            raise AssertionError("unreachable") from exc  # abort raises
        return kill_pb2.TriggerReply(
            kill_id=res.kill_id,
            applied=res.applied,
            dry_run=res.dry_run,
            acks=[
                kill_pb2.Ack(
                    subscriber=a.subscriber,
                    ok=a.ok,
                    orders_blocked=a.orders_blocked,
                    cancels_sent=a.cancels_sent,
                    cancels_confirmed=a.cancels_confirmed,
                    latency_ns=a.latency_ns,
                    error=a.error,
                )
                for a in res.acks
            ],
            missing=list(res.missing),
            trigger_to_block_ns=res.trigger_to_block_ns,
        )

    def Clear(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            res = self.engine.clear(
                ClearRequest(
                    kill_id=str(request.kill_id),
                    target=_target(request.target)
                    if request.HasField("target")
                    else Target(Scope.FIRM),
                    reason=str(request.reason),
                    actor=str(request.actor),
                    dry_run=bool(request.dry_run),
                    correlation_id=str(request.correlation_id),
                )
            )
        except KillRequestError as exc:
            self._invalid(context, exc)
            raise AssertionError("unreachable") from exc
        return kill_pb2.KillReply(ok=res.ok, message=res.message)

    def Arm(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            msg = self.engine.arm(
                str(request.trigger),
                bool(request.armed),
                bool(request.dry_run),
                str(request.reason),
                str(request.actor),
            )
        except UnknownTriggerError as exc:
            self.rejected += 1
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise AssertionError("unreachable") from exc
        except KillRequestError as exc:
            self._invalid(context, exc)
            raise AssertionError("unreachable") from exc
        return kill_pb2.KillReply(ok=True, message=msg)

    def GetStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        st = self.engine.status()
        return kill_pb2.KillStatusReply(
            blocked_all=st.blocked_all,
            epoch=st.epoch,
            active=[_active_msg(k) for k in st.active],
            triggers=[
                kill_pb2.TriggerState(
                    name=t.name,
                    armed=t.armed,
                    dry_run=t.dry_run,
                    threshold=t.threshold,
                    value=t.value,
                    fired=t.fired,
                    detail=t.detail,
                )
                for t in st.triggers
            ],
            subscribers=list(st.subscribers),
        )

    def History(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        entries = self.engine.ledger.entries()
        limit = int(request.limit)
        if limit > 0:
            entries = entries[-limit:]
        return kill_pb2.HistoryReply(
            entries=[
                kill_pb2.LedgerEntry(
                    seq=e.seq, kind=e.kind, json=e.to_line().decode("ascii").rstrip(), hash=e.hash
                )
                for e in entries
            ]
        )

    def Verify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        ledger = self.engine.ledger
        try:
            report = verify_ledger(
                ledger.path, ledger.name, expected_head=str(request.expected_head) or None
            )
        except LedgerError as exc:
            return kill_pb2.VerifyReply(ok=False, problems=[str(exc)])
        return kill_pb2.VerifyReply(
            ok=report.ok,
            records=report.records,
            head=report.head_hash or "",
            problems=[str(f) for f in report.findings],
        )


def kill_control_adder(engine: KillEngine) -> Any:
    """A RoleShell service adder putting KillControl on the role's control socket."""

    def add(server: grpc.Server) -> None:
        kill_pb2_grpc.add_KillControlServicer_to_server(KillControlServicer(engine), server)

    return add
