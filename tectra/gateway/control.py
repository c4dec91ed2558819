"""GatewayControl (tectra/mgmt/v1/gateway.proto) served on the gateway's control socket.

tectra-mgmtd authenticates and authorises callers before calling this; the socket itself is
owner-only (0600). Every mutating call is logged with the actor mgmtd names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import grpc

from adapters.fix.acceptor import FixSessionError
from tectra.gateway.service import GatewayService
from tectra.mgmt.role_control import ServiceAdder
from tectra.mgmt.v1 import gateway_pb2, gateway_pb2_grpc
from tectra.risk.limits import LimitsError

__all__ = ["GatewayControlServicer", "add_gateway_control"]

log = logging.getLogger(__name__)


class GatewayControlServicer(gateway_pb2_grpc.GatewayControlServicer):  # type: ignore[misc]
    """`get()` returns the service, or None while the gateway is still starting (UNAVAILABLE)."""

    def __init__(self, get: Callable[[], GatewayService | None]) -> None:
        self._get = get

    def _service(self, context: grpc.ServicerContext) -> GatewayService:
        svc = self._get()
        if svc is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the gateway is starting")
        assert svc is not None
        return svc

    def ListSessions(  # noqa: N802 - gRPC method name
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        svc = self._service(context)
        return gateway_pb2.ListSessionsReply(
            sessions=[gateway_pb2.FixSession(**s) for s in svc.sessions()]
        )

    def DisconnectSession(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        svc = self._service(context)
        sid = int(request.session_id)
        known = {s["session_id"]: s for s in svc.sessions()}
        if sid not in known:
            return gateway_pb2.ActionReply(ok=False, message=f"no FIX session {sid}")
        if request.dry_run:
            up = known[sid]["logged_on"]
            return gateway_pb2.ActionReply(
                ok=True,
                message=f"dry run: would log out session {sid}"
                + (f" ({known[sid]['open_orders']} open orders)" if up else " (not logged on)"),
                count=int(up),
            )
        log.info("disconnect session %d by %s: %s", sid, request.actor, request.reason)
        try:
            done = svc.disconnect(sid, request.reason or "operator disconnect")
        except FixSessionError as exc:
            return gateway_pb2.ActionReply(ok=False, message=str(exc))
        return gateway_pb2.ActionReply(
            ok=True,
            message="logged out" if done else "session was not logged on",
            count=int(done),
        )

    def GetPositions(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        svc = self._service(context)
        return gateway_pb2.PositionsReply(
            positions=[gateway_pb2.Position(**p) for p in svc.positions(request.account)]
        )

    def GetLimits(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        svc = self._service(context)
        version, doc = svc.limits_document()
        return gateway_pb2.LimitsReply(version=version, limits_json=json.dumps(doc, indent=1))

    def LoadLimits(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        svc = self._service(context)
        try:
            doc = json.loads(request.limits_json)
            if not isinstance(doc, dict):
                raise LimitsError(["the limits document must be a table"])
            version = svc.load_limits(
                doc, source=f"grpc:{request.actor or '?'}:{request.reason}", dry_run=request.dry_run
            )
        except (ValueError, LimitsError) as exc:
            return gateway_pb2.LoadLimitsReply(
                ok=False, version=svc.core.risk.limits.version, error=str(exc)
            )
        log.info("limits v%d loaded by %s: %s", version, request.actor, request.reason)
        return gateway_pb2.LoadLimitsReply(ok=True, version=version)

    def OrdersSummary(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        svc = self._service(context)
        s = svc.orders_summary()
        risk = svc.risk_observations(take_latencies=request.take_latencies)
        return gateway_pb2.OrdersSummaryReply(
            open_orders=s["open_orders"],
            by_status=s["by_status"],
            rejects_by_reason=s["rejects_by_reason"],
            counters={k: int(v) for k, v in s["counters"].items()},
            recent_step_ns=risk["recent_step_ns"],
            exposure_by_account=risk["exposure_by_account"],
            pnl_by_account=risk["pnl_by_account"],
            venue_up=risk["venue_up"],
            venue_id=risk["venue_id"],
        )


def add_gateway_control(get: Callable[[], GatewayService | None]) -> ServiceAdder:
    """A `ServiceAdder` for RoleShell(services=...)."""

    def add(server: grpc.Server) -> None:
        gateway_pb2_grpc.add_GatewayControlServicer_to_server(GatewayControlServicer(get), server)

    return add
