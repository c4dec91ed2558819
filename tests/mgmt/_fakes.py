"""Fake role servers for mgmtd tests: the roles' protos are the contract, these honour it.

Each fake serves RoleControl plus the role's own service on `<state_dir>/run/<role>.sock`,
exactly where mgmtd looks, and records every request it gets.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tectra.mgmt.role_control import control_socket_path
from tectra.mgmt.v1 import (
    feed_pb2,
    feed_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    kill_pb2,
    kill_pb2_grpc,
    role_pb2,
    role_pb2_grpc,
)

LIMITS = {"description": "test", "defaults": {"max_qty": 10000}, "instruments": {}}


class FakeRole(role_pb2_grpc.RoleControlServicer):
    def __init__(self, role: str, lifecycle: str = "READY", metrics_port: int = 0) -> None:
        self.role = role
        self.lifecycle = lifecycle
        self.metrics_port = metrics_port

    def GetStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        return role_pb2.RoleStatus(
            role=self.role,
            appliance="test",
            pid=1234,
            lifecycle=self.lifecycle,
            io_path="socket",
            metrics_port=self.metrics_port,
        )


class FakeGateway(gateway_pb2_grpc.GatewayControlServicer):
    def __init__(self) -> None:
        self.version = 1
        self.limits: dict[str, Any] = json.loads(json.dumps(LIMITS))
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def ListSessions(self, request: Any, context: grpc.ServicerContext) -> Any:
        return gateway_pb2.ListSessionsReply(
            sessions=[
                gateway_pb2.FixSession(
                    session_id=1,
                    sender_comp_id="GW",
                    target_comp_id="C1",
                    account="ACC1",
                    logged_on=True,
                    open_orders=3,
                )
            ]
        )

    def DisconnectSession(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(("DisconnectSession", request))
        if request.session_id != 1:
            return gateway_pb2.ActionReply(ok=False, message="no such session")
        return gateway_pb2.ActionReply(
            ok=True, message="logged out", count=0 if request.dry_run else 1
        )

    def GetPositions(self, request: Any, context: grpc.ServicerContext) -> Any:
        return gateway_pb2.PositionsReply(
            positions=[
                gateway_pb2.Position(
                    account="ACC1", symbol="AAPL", net_qty=100, avg_open_px=1_500_000
                )
            ]
        )

    def GetLimits(self, request: Any, context: grpc.ServicerContext) -> Any:
        return gateway_pb2.LimitsReply(version=self.version, limits_json=json.dumps(self.limits))

    def LoadLimits(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(("LoadLimits", request))
        doc = json.loads(request.limits_json)
        qty = doc.get("defaults", {}).get("max_qty")
        if not isinstance(qty, int) or qty <= 0:
            return gateway_pb2.LoadLimitsReply(
                ok=False, version=self.version, error=f"defaults.max_qty: bad value {qty!r}"
            )
        if request.dry_run:
            return gateway_pb2.LoadLimitsReply(ok=True, version=self.version)
        with self.lock:
            self.limits = doc
            self.version += 1
            return gateway_pb2.LoadLimitsReply(ok=True, version=self.version)

    def OrdersSummary(self, request: Any, context: grpc.ServicerContext) -> Any:
        return gateway_pb2.OrdersSummaryReply(open_orders=3, by_status={"NEW": 3})


class FakeKill(kill_pb2_grpc.KillControlServicer):
    def __init__(self) -> None:
        self.applied: dict[str, Any] = {}
        self.calls: list[tuple[str, Any]] = []
        self.delay_s = 0.0

    def Trigger(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(("Trigger", request))
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        applied = request.kill_id not in self.applied and not request.dry_run
        if applied:
            self.applied[request.kill_id] = request
        return kill_pb2.TriggerReply(
            kill_id=request.kill_id,
            applied=applied,
            dry_run=request.dry_run,
            acks=[kill_pb2.Ack(subscriber="host/gateway", ok=True, orders_blocked=1)],
            trigger_to_block_ns=42_000,
        )

    def Clear(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(("Clear", request))
        if not request.dry_run:
            self.applied.pop(request.kill_id, None)
        return kill_pb2.KillReply(ok=True, message="cleared")

    def Arm(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(("Arm", request))
        return kill_pb2.KillReply(ok=True, message=f"{request.trigger} armed={request.armed}")

    def GetStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        return kill_pb2.KillStatusReply(
            blocked_all=bool(self.applied),
            epoch=len(self.applied),
            active=[
                kill_pb2.ActiveKill(kill_id=k, reason=r.reason, actor=r.actor, action=r.action)
                for k, r in self.applied.items()
            ],
            triggers=[kill_pb2.TriggerState(name="reject_rate", armed=True, threshold=0.5)],
            subscribers=["host/gateway"],
        )

    def History(self, request: Any, context: grpc.ServicerContext) -> Any:
        return kill_pb2.HistoryReply(
            entries=[kill_pb2.LedgerEntry(seq=1, kind="trigger", json="{}", hash="ab")]
        )

    def Verify(self, request: Any, context: grpc.ServicerContext) -> Any:
        return kill_pb2.VerifyReply(ok=True, records=1, head="ab")


class FakeFeed(feed_pb2_grpc.FeedControlServicer):
    def GetBook(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.symbol != "AAPL":
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown symbol {request.symbol}")
        return feed_pb2.BookReply(
            symbol="AAPL",
            instrument_id=1,
            bids=[feed_pb2.BookLevel(price=1_500_000, qty=100, orders=1)],
            asks=[feed_pb2.BookLevel(price=1_501_000, qty=200, orders=2)],
            sequence=77,
        )


class FakeRoles:
    """gateway, kill and feed fakes on their control sockets under STATE_DIR."""

    def __init__(
        self, state_dir: Path, roles: tuple[str, ...] = ("gateway", "kill", "feed")
    ) -> None:
        self.state_dir = state_dir
        self.gateway = FakeGateway()
        self.kill = FakeKill()
        self.feed = FakeFeed()
        self.status: dict[str, FakeRole] = {r: FakeRole(r) for r in roles}
        self.servers: dict[str, grpc.Server] = {}
        for role in roles:
            self.start(role)

    def start(self, role: str) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        role_pb2_grpc.add_RoleControlServicer_to_server(self.status[role], server)
        if role == "gateway":
            gateway_pb2_grpc.add_GatewayControlServicer_to_server(self.gateway, server)
        elif role == "kill":
            kill_pb2_grpc.add_KillControlServicer_to_server(self.kill, server)
        elif role == "feed":
            feed_pb2_grpc.add_FeedControlServicer_to_server(self.feed, server)
        path = control_socket_path(self.state_dir, role)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        assert server.add_insecure_port(f"unix:{path}")
        server.start()
        self.servers[role] = server

    def stop(self, role: str | None = None) -> None:
        for name in [role] if role else list(self.servers):
            self.servers.pop(name).stop(0).wait()
            control_socket_path(self.state_dir, name).unlink(missing_ok=True)
