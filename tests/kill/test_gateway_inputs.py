"""The kill role's gateway input: what GatewayControl.OrdersSummary reports reaches the
reject-rate, latency, exposure, P&L and venue-link triggers; an absent or failing gateway is
counted, never fatal."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tectra.io.killblock import Scope
from tectra.kill.inputs import GatewayActivity
from tectra.kill.triggers import TriggerSet
from tectra.mgmt.v1 import gateway_pb2, gateway_pb2_grpc

S = 1_000_000_000


class FakeGateway(gateway_pb2_grpc.GatewayControlServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.reply = gateway_pb2.OrdersSummaryReply()
        self.fail = False
        self.took: list[bool] = []

    def OrdersSummary(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.took.append(request.take_latencies)
        if self.fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        return self.reply


def serve(path: Path) -> tuple[grpc.Server, FakeGateway]:
    fake = FakeGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gateway_pb2_grpc.add_GatewayControlServicer_to_server(fake, server)
    server.add_insecure_port(f"unix:{path}")
    server.start()
    return server, fake


def summary(requests: int, rejects: dict[str, int], **kw: Any) -> Any:
    return gateway_pb2.OrdersSummaryReply(
        counters={"requests": requests}, rejects_by_reason=rejects, **kw
    )


def test_observations_reach_the_triggers(tmp_path: Path) -> None:
    sock = tmp_path / "gateway.sock"
    server, fake = serve(sock)
    try:
        src = GatewayActivity(sock, min_interval_s=0)
        t = TriggerSet()
        fake.reply = summary(100, {"MAX_SIZE": 5, "HALTED": 50})
        src.poll(t, 1 * S)  # baseline only
        fake.reply = summary(
            200,
            {"MAX_SIZE": 65, "HALTED": 90},
            recent_step_ns=[1000, 2000, 3_000_000],
            exposure_by_account={7: 1_000_000},
            pnl_by_account={7: -50_000},
            venue_up=False,
            venue_id=3,
        )
        src.poll(t, 2 * S)
        assert fake.took == [True, True]
        rate = {k: v for k, v, _ in t.reject_rate.values(2 * S)}
        # 100 new requests, 60 refused by risk (HALTED is the kill's own doing, not counted).
        assert rate[(Scope.FIRM, 0)] == 0.6
        assert any(v >= 3_000_000 for _, v, _ in t.latency.values(2 * S))
        assert {k: v for k, v, _ in t.venue_down.values(3 * S)}[(Scope.VENUE, 3)] == S
        assert src.polls == 2 and src.errors == 0
    finally:
        server.stop(0)


def test_absent_or_failing_gateway_is_counted(tmp_path: Path) -> None:
    t = TriggerSet()
    missing = GatewayActivity(tmp_path / "none.sock", min_interval_s=0)
    missing.poll(t, S)
    assert "no gateway control socket" in missing.error
    sock = tmp_path / "gateway.sock"
    server, fake = serve(sock)
    try:
        src = GatewayActivity(sock, min_interval_s=0)
        fake.fail = True
        src.poll(t, S)
        assert src.errors == 1 and "UNAVAILABLE" in src.error
        fake.fail = False
        fake.reply = summary(10, {})
        src.poll(t, 2 * S)
        assert src.error == "" and src.polls == 1
    finally:
        server.stop(0)


def test_polls_are_rate_limited(tmp_path: Path) -> None:
    sock = tmp_path / "gateway.sock"
    server, fake = serve(sock)
    try:
        src = GatewayActivity(sock, min_interval_s=0.25)
        t = TriggerSet()
        for k in range(10):
            src.poll(t, S + k * 50_000_000)  # every 50 ms for 0.5 s
        assert len(fake.took) == 2
    finally:
        server.stop(0)
