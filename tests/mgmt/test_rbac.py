"""The RBAC matrix: every role × every RPC, allowed or denied as specified, over both the
mutual-TLS and the local (SO_PEERCRED) transport; no identity → UNAUTHENTICATED."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tectra.mgmt.client import local_channel, tls_channel
from tectra.mgmt.daemon import SERVICE_NAMES, MgmtDaemon
from tectra.mgmt.devca import DevCaFiles, issue_client
from tectra.mgmt.rbac import RBAC_TABLE, Role
from tectra.mgmt.v1 import feed_pb2, gateway_pb2, kill_pb2, mgmt_pb2
from tests.mgmt._fakes import LIMITS, FakeRoles

P = "/tectra.mgmt.v1."
V, OP, R, A, N = "viewer", "operator", "risk-officer", "admin", "none"

# The specification, written out independently of tectra/mgmt/rbac.py.
SPEC: dict[str, str] = {
    f"{P}StatusService/WhoAmI": N,
    "/grpc.health.v1.Health/Check": N,
    "/grpc.health.v1.Health/Watch": N,
    "/grpc.health.v1.Health/List": N,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": V,
    f"{P}StatusService/GetStatus": V,
    f"{P}LimitsService/GetLimits": V,
    f"{P}KillService/GetStatus": V,
    f"{P}KillService/History": V,
    f"{P}KillService/Verify": V,
    f"{P}SessionsService/ListSessions": V,
    f"{P}PositionsService/GetPositions": V,
    f"{P}PositionsService/OrdersSummary": V,
    f"{P}MarketService/GetBook": V,
    f"{P}MetricsService/Summary": V,
    f"{P}KillService/Trigger": OP,
    f"{P}SessionsService/Disconnect": OP,
    f"{P}KillService/Clear": R,
    f"{P}KillService/Arm": R,
    f"{P}LimitsService/SetLimit": R,
    f"{P}LimitsService/LoadLimits": R,
    f"{P}AuditService/Query": A,
}
ORDER = [N, V, OP, R, A]

# One valid request per unary RPC (destructive ones as dry runs, so every allowed call is OK).
UNARY: dict[str, tuple[Any, Any]] = {
    f"{P}StatusService/WhoAmI": (mgmt_pb2.WhoAmIRequest(), mgmt_pb2.WhoAmIReply),
    f"{P}StatusService/GetStatus": (
        mgmt_pb2.ApplianceStatusRequest(),
        mgmt_pb2.ApplianceStatusReply,
    ),
    f"{P}LimitsService/GetLimits": (mgmt_pb2.GetLimitsRequest(), gateway_pb2.LimitsReply),
    f"{P}LimitsService/SetLimit": (
        mgmt_pb2.SetLimitRequest(path="defaults.max_qty", value_json="5000", dry_run=True),
        mgmt_pb2.LimitsChangeReply,
    ),
    f"{P}LimitsService/LoadLimits": (
        mgmt_pb2.ReplaceLimitsRequest(limits_json=json.dumps(LIMITS), dry_run=True),
        mgmt_pb2.LimitsChangeReply,
    ),
    f"{P}KillService/Arm": (
        kill_pb2.ArmRequest(trigger="reject_rate", armed=True),
        kill_pb2.KillReply,
    ),
    f"{P}KillService/Trigger": (
        mgmt_pb2.KillTriggerRequest(trigger=kill_pb2.TriggerRequest(reason="drill", dry_run=True)),
        kill_pb2.TriggerReply,
    ),
    f"{P}KillService/Clear": (
        mgmt_pb2.KillClearRequest(clear=kill_pb2.ClearRequest(reason="drill", dry_run=True)),
        kill_pb2.KillReply,
    ),
    f"{P}KillService/GetStatus": (kill_pb2.KillStatusRequest(), kill_pb2.KillStatusReply),
    f"{P}KillService/History": (kill_pb2.HistoryRequest(), kill_pb2.HistoryReply),
    f"{P}KillService/Verify": (kill_pb2.VerifyRequest(), kill_pb2.VerifyReply),
    f"{P}SessionsService/ListSessions": (
        gateway_pb2.ListSessionsRequest(),
        gateway_pb2.ListSessionsReply,
    ),
    f"{P}SessionsService/Disconnect": (
        mgmt_pb2.SessionDisconnectRequest(session_id=1, dry_run=True),
        gateway_pb2.ActionReply,
    ),
    f"{P}PositionsService/GetPositions": (
        gateway_pb2.PositionsRequest(),
        gateway_pb2.PositionsReply,
    ),
    f"{P}PositionsService/OrdersSummary": (
        gateway_pb2.OrdersSummaryRequest(),
        gateway_pb2.OrdersSummaryReply,
    ),
    f"{P}MarketService/GetBook": (feed_pb2.BookRequest(symbol="AAPL"), feed_pb2.BookReply),
    f"{P}MetricsService/Summary": (mgmt_pb2.MetricsSummaryRequest(), mgmt_pb2.MetricsSummaryReply),
    f"{P}AuditService/Query": (mgmt_pb2.AuditQueryRequest(), mgmt_pb2.AuditQueryReply),
    "/grpc.health.v1.Health/Check": (
        health_pb2.HealthCheckRequest(),
        health_pb2.HealthCheckResponse,
    ),
    "/grpc.health.v1.Health/List": (health_pb2.HealthListRequest(), health_pb2.HealthListResponse),
}


def call_code(channel: grpc.Channel, method: str) -> grpc.StatusCode:
    """The status code METHOD ends with on CHANNEL (streams: after the first message)."""
    try:
        if method in UNARY:
            request, reply = UNARY[method]
            channel.unary_unary(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=reply.FromString,
            )(request, timeout=5)
        elif method.endswith("/Watch"):
            stream = channel.unary_stream(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )(health_pb2.HealthCheckRequest(), timeout=5)
            next(stream)
            stream.cancel()
        else:
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            replies = channel.stream_stream(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )(iter([request]), timeout=5)
            next(replies)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def allowed(role: str, method: str) -> bool:
    return ORDER.index(role) >= ORDER.index(SPEC[method])


def test_the_table_is_the_specification_and_covers_every_served_method(
    fake_roles: FakeRoles, start_mgmtd: Callable[..., MgmtDaemon]
) -> None:
    assert {m: r.minimum.label for m, r in RBAC_TABLE.items()} == SPEC
    # Every method of every service mgmtd serves is in the table (ask reflection).
    from tectra.mgmt.v1 import mgmt_pb2 as m

    served = {
        f"/{svc.full_name}/{meth.name}"
        for svc in m.DESCRIPTOR.services_by_name.values()
        for meth in svc.methods
    }
    served |= {"/grpc.health.v1.Health/" + x for x in ("Check", "Watch", "List")}
    served.add("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert served == set(RBAC_TABLE)
    assert set(SERVICE_NAMES) == {s.full_name for s in m.DESCRIPTOR.services_by_name.values()}
    # Mutating calls are exactly the ones that change something.
    assert {k for k, r in RBAC_TABLE.items() if r.mutating} == {
        f"{P}KillService/Trigger",
        f"{P}KillService/Clear",
        f"{P}KillService/Arm",
        f"{P}SessionsService/Disconnect",
        f"{P}LimitsService/SetLimit",
        f"{P}LimitsService/LoadLimits",
    }


def _assert_matrix(channel: grpc.Channel, role: str) -> None:
    wrong = []
    for method in SPEC:
        code = call_code(channel, method)
        want_ok = allowed(role, method)
        # grpcio-health-checking's servicer does not implement List: past the gate is enough.
        passed = {grpc.StatusCode.OK} | (
            {grpc.StatusCode.UNIMPLEMENTED} if method.endswith("Health/List") else set()
        )
        if (want_ok and code not in passed) or (
            not want_ok and code != grpc.StatusCode.PERMISSION_DENIED
        ):
            wrong.append((method, code.name, "allowed" if want_ok else "denied"))
    assert not wrong, f"role {role}: {wrong}"


@pytest.mark.parametrize("role", ORDER)
def test_matrix_over_the_local_socket(
    role: str, fake_roles: FakeRoles, start_mgmtd: Callable[..., MgmtDaemon]
) -> None:
    daemon = start_mgmtd(uid_role=None if role == N else role, tls=False)
    with local_channel(daemon.paths.socket) as channel:
        _assert_matrix(channel, role)


@pytest.mark.parametrize("role", ORDER)
def test_matrix_over_mutual_tls(
    role: str,
    fake_roles: FakeRoles,
    start_mgmtd: Callable[..., MgmtDaemon],
    dev_ca: DevCaFiles,
    tmp_path: Any,
) -> None:
    daemon = start_mgmtd(uid_role=None)
    if role == N:
        cert, key = issue_client(dev_ca.ca.parent, "stranger")  # a valid cert whose CN has no role
    else:
        cert, key = dev_ca.clients[role]
    with tls_channel(f"localhost:{daemon.tls_port}", dev_ca.ca, cert, key) as channel:
        _assert_matrix(channel, role)


def test_no_identity_is_unauthenticated_on_every_method(
    fake_roles: FakeRoles,
    start_mgmtd: Callable[..., MgmtDaemon],
    dev_ca: DevCaFiles,
    tmp_path: Any,
) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    daemon = start_mgmtd(uid_role="admin")
    # A connection that bypasses the SO_PEERCRED front has no uid.
    internal = daemon.paths.internal_dir / "grpc.sock"
    no_cn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no cn")])
    cert, key = issue_client(dev_ca.ca.parent, "nocn", subject=no_cn)
    for channel in (
        local_channel(internal),
        tls_channel(f"localhost:{daemon.tls_port}", dev_ca.ca, cert, key),
    ):
        with channel:
            codes = {m: call_code(channel, m) for m in SPEC}
        assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes


def test_a_certificate_from_another_ca_never_gets_in(
    fake_roles: FakeRoles, start_mgmtd: Callable[..., MgmtDaemon], dev_ca: DevCaFiles, tmp_path: Any
) -> None:
    from tectra.mgmt.devca import create_dev_ca

    other = create_dev_ca(tmp_path / "other")
    daemon = start_mgmtd()
    cert, key = other.clients["admin"]
    with tls_channel(f"localhost:{daemon.tls_port}", dev_ca.ca, cert, key) as channel:
        assert call_code(channel, f"{P}StatusService/WhoAmI") == grpc.StatusCode.UNAVAILABLE


def test_role_labels_match_config() -> None:
    from tectra.core.config import MGMT_ROLES

    assert tuple(r.label for r in Role if r is not Role.NONE) == MGMT_ROLES
