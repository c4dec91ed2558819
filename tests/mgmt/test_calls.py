"""mgmtd's calls end to end against fake roles: confirmation, dry runs, reasons, actor
stamping, the audit trail of every mutating call, retries that never apply twice, and
roles that are down."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from tectra.mgmt.audit import AuditQuery
from tectra.mgmt.client import MgmtClient, MgmtClientError, local_channel
from tectra.mgmt.daemon import MgmtDaemon
from tectra.mgmt.v1 import kill_pb2, mgmt_pb2, mgmt_pb2_grpc
from tests.mgmt._fakes import FakeRoles

Start = Callable[..., MgmtDaemon]


def client(daemon: MgmtDaemon, **kw: Any) -> MgmtClient:
    return MgmtClient(local_channel(daemon.paths.socket), timeout_s=5, **kw)


def code_of(fn: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(MgmtClientError) as info:
        fn()
    return info.value.code


def trigger(
    confirm: bool = True, dry_run: bool = False, reason: str = "drill", kill_id: str = ""
) -> Any:
    return mgmt_pb2.KillTriggerRequest(
        trigger=kill_pb2.TriggerRequest(
            kill_id=kill_id,
            reason=reason,
            dry_run=dry_run,
            actor="someone-else",
            target=kill_pb2.KillTarget(scope=kill_pb2.FIRM),
            action=kill_pb2.BLOCK,
        ),
        confirm=confirm,
    )


def test_destructive_calls_need_confirmation_or_dry_run(
    fake_roles: FakeRoles, start_mgmtd: Start
) -> None:
    c = client(start_mgmtd(tls=False))
    K, S, L = (
        mgmt_pb2_grpc.KillServiceStub,
        mgmt_pb2_grpc.SessionsServiceStub,
        mgmt_pb2_grpc.LimitsServiceStub,
    )
    unconfirmed = [
        (K, "Trigger", trigger(confirm=False)),
        (K, "Clear", mgmt_pb2.KillClearRequest(clear=kill_pb2.ClearRequest(reason="r"))),
        (S, "Disconnect", mgmt_pb2.SessionDisconnectRequest(session_id=1)),
        (L, "SetLimit", mgmt_pb2.SetLimitRequest(path="defaults.max_qty", value_json="5")),
        (L, "LoadLimits", mgmt_pb2.ReplaceLimitsRequest(limits_json="{}")),
    ]
    for stub, method, request in unconfirmed:
        with pytest.raises(MgmtClientError) as info:
            c.call(stub, method, request)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "confirm" in info.value.details
    # Nothing reached the roles.
    assert fake_roles.kill.calls == [] and fake_roles.gateway.calls == []
    # A dry run goes through, marked as such, and changes nothing.
    reply = c.call(K, "Trigger", trigger(confirm=False, dry_run=True)).reply
    assert reply.dry_run and not reply.applied and fake_roles.kill.applied == {}


def test_trigger_and_clear_need_a_reason(fake_roles: FakeRoles, start_mgmtd: Start) -> None:
    c = client(start_mgmtd(tls=False))
    assert code_of(
        lambda: c.call(mgmt_pb2_grpc.KillServiceStub, "Trigger", trigger(reason=" "))
    ) == (grpc.StatusCode.INVALID_ARGUMENT)
    clear = mgmt_pb2.KillClearRequest(clear=kill_pb2.ClearRequest(kill_id="k"), confirm=True)
    assert code_of(lambda: c.call(mgmt_pb2_grpc.KillServiceStub, "Clear", clear)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_the_actor_is_the_authenticated_caller_not_what_the_client_says(
    fake_roles: FakeRoles, start_mgmtd: Start
) -> None:
    c = client(start_mgmtd(tls=False))
    res = c.call(mgmt_pb2_grpc.KillServiceStub, "Trigger", trigger(kill_id="k1"))
    sent = fake_roles.kill.calls[-1][1]
    assert sent.actor.startswith("uid:") and sent.actor != "someone-else"
    assert sent.correlation_id == res.correlation_id
    assert res.reply.applied


def test_every_mutating_call_is_audited_with_who_what_args_result(
    fake_roles: FakeRoles, start_mgmtd: Start
) -> None:
    daemon = start_mgmtd(tls=False)
    c = client(daemon)
    ok = c.call(
        mgmt_pb2_grpc.KillServiceStub, "Trigger", trigger(kill_id="k2"), correlation_id="cid-1"
    )
    code_of(
        lambda: c.call(
            mgmt_pb2_grpc.SessionsServiceStub,
            "Disconnect",
            mgmt_pb2.SessionDisconnectRequest(session_id=1),
            correlation_id="cid-2",
        )
    )
    c.call(
        mgmt_pb2_grpc.SessionsServiceStub,
        "Disconnect",
        mgmt_pb2.SessionDisconnectRequest(session_id=1, dry_run=True),
        correlation_id="cid-3",
    )
    c.call(
        mgmt_pb2_grpc.KillServiceStub, "GetStatus", kill_pb2.KillStatusRequest()
    )  # a read: not audited
    records = daemon.audit.query(AuditQuery())
    assert [(r.correlation_id, r.result, r.dry_run) for r in records] == [
        ("cid-1", "OK", False),
        ("cid-2", "FAILED_PRECONDITION", False),
        ("cid-3", "OK", True),
    ]
    first = records[0]
    assert first.method == "/tectra.mgmt.v1.KillService/Trigger"
    assert first.who.startswith("uid:") and first.role == "admin" and first.transport == "unix"
    assert first.args["trigger"]["kill_id"] == "k2" and first.args["confirm"] is True
    assert ok.correlation_id == "cid-1" and '"applied": true' in first.detail
    # On disk, one JSON line each, readable by anyone with the file.
    lines = daemon.paths.audit_log.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["correlation_id"] == "cid-1"


def test_denied_mutating_calls_are_audited_too(fake_roles: FakeRoles, start_mgmtd: Start) -> None:
    daemon = start_mgmtd(uid_role="viewer", tls=False)
    c = client(daemon)
    assert code_of(lambda: c.call(mgmt_pb2_grpc.KillServiceStub, "Trigger", trigger())) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    (rec,) = daemon.audit.query(AuditQuery())
    assert rec.result == "PERMISSION_DENIED" and rec.role == "viewer"
    assert fake_roles.kill.calls == []


def test_audit_query_filters(fake_roles: FakeRoles, start_mgmtd: Start) -> None:
    daemon = start_mgmtd(tls=False)
    c = client(daemon)
    for i in range(3):
        c.call(
            mgmt_pb2_grpc.KillServiceStub,
            "Trigger",
            trigger(kill_id=f"q{i}"),
            correlation_id=f"q{i}",
        )
    c.call(
        mgmt_pb2_grpc.KillServiceStub, "Arm", kill_pb2.ArmRequest(trigger="stale_md", armed=True)
    )
    reply = c.call(
        mgmt_pb2_grpc.AuditServiceStub,
        "Query",
        mgmt_pb2.AuditQueryRequest(method="Trigger", limit=2),
    ).reply
    assert [r.correlation_id for r in reply.records] == ["q1", "q2"]
    reply = c.call(
        mgmt_pb2_grpc.AuditServiceStub, "Query", mgmt_pb2.AuditQueryRequest(correlation_id="q0")
    ).reply
    assert (
        len(reply.records) == 1
        and json.loads(reply.records[0].args_json)["trigger"]["kill_id"] == "q0"
    )


def test_a_retry_with_the_same_correlation_id_is_answered_not_reapplied(
    fake_roles: FakeRoles, start_mgmtd: Start
) -> None:
    daemon = start_mgmtd(tls=False)
    c = client(daemon)
    req = mgmt_pb2.SessionDisconnectRequest(session_id=1, confirm=True, reason="x")
    first = c.call(mgmt_pb2_grpc.SessionsServiceStub, "Disconnect", req, correlation_id="same")
    again = c.call(mgmt_pb2_grpc.SessionsServiceStub, "Disconnect", req, correlation_id="same")
    assert first.reply == again.reply
    assert len(fake_roles.gateway.calls) == 1
    records = daemon.audit.query(AuditQuery(correlation_id="same"))
    assert [r.replayed for r in records] == [False, True]
    # The same id with other arguments is refused, not answered with the old reply.
    other = mgmt_pb2.SessionDisconnectRequest(session_id=2, confirm=True)
    assert (
        code_of(
            lambda: c.call(
                mgmt_pb2_grpc.SessionsServiceStub, "Disconnect", other, correlation_id="same"
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )


def test_client_retries_a_deadline_with_the_same_ids_and_the_kill_applies_once(
    fake_roles: FakeRoles, start_mgmtd: Start
) -> None:
    daemon = start_mgmtd(tls=False, role_timeout_s=5.0)
    fake_roles.kill.delay_s = 0.6  # longer than the client's deadline: the first answer is lost
    c = MgmtClient(local_channel(daemon.paths.socket), timeout_s=0.3, retries=5, backoff_s=0.1)
    res = c.call(mgmt_pb2_grpc.KillServiceStub, "Trigger", trigger(kill_id="once"))
    assert res.attempts > 1
    assert res.reply.kill_id == "once" and res.reply.applied
    # The kill role saw the request once: the retries waited for the first attempt's answer.
    assert [r.kill_id for name, r in fake_roles.kill.calls if name == "Trigger"] == ["once"]


def test_a_role_that_is_down_is_unavailable_and_named(
    fake_roles: FakeRoles, start_mgmtd: Start
) -> None:
    daemon = start_mgmtd(tls=False)
    fake_roles.stop("kill")
    c = client(daemon, retries=0)
    with pytest.raises(MgmtClientError) as info:
        c.call(mgmt_pb2_grpc.KillServiceStub, "GetStatus", kill_pb2.KillStatusRequest())
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and "kill" in info.value.details
    status = c.call(
        mgmt_pb2_grpc.StatusServiceStub, "GetStatus", mgmt_pb2.ApplianceStatusRequest()
    ).reply
    health = {r.role: (r.reachable, r.health) for r in status.roles}
    assert health == {"feed": (True, "ok"), "gateway": (True, "ok"), "kill": (False, "down")}
    assert not status.all_ready


def test_limits_set_changes_one_value_through_an_atomic_load(
    fake_roles: FakeRoles, start_mgmtd: Start
) -> None:
    c = client(start_mgmtd(tls=False))
    L = mgmt_pb2_grpc.LimitsServiceStub
    dry = c.call(
        L,
        "SetLimit",
        mgmt_pb2.SetLimitRequest(path="defaults.max_qty", value_json="500", dry_run=True),
    ).reply
    assert dry.ok and dry.dry_run and fake_roles.gateway.version == 1
    reply = c.call(
        L,
        "SetLimit",
        mgmt_pb2.SetLimitRequest(path="defaults.max_qty", value_json="500", confirm=True),
    ).reply
    assert reply.ok and (reply.previous_version, reply.version) == (1, 2)
    assert fake_roles.gateway.limits["defaults"]["max_qty"] == 500
    assert fake_roles.gateway.limits["description"] == "test"  # the rest untouched
    bad = c.call(
        L,
        "SetLimit",
        mgmt_pb2.SetLimitRequest(path="defaults.max_qty", value_json="-1", confirm=True),
    ).reply
    assert not bad.ok and "max_qty" in bad.error and fake_roles.gateway.version == 2
    assert code_of(
        lambda: c.call(
            L, "SetLimit", mgmt_pb2.SetLimitRequest(path="a..b", value_json="1", confirm=True)
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT)


def test_health_service_reports_serving(fake_roles: FakeRoles, start_mgmtd: Start) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    c = client(start_mgmtd(tls=False, uid_role=None))  # no role needed for health
    reply = c.call(
        health_pb2_grpc.HealthStub,
        "Check",
        health_pb2.HealthCheckRequest(service="tectra.mgmt.v1.KillService"),
    ).reply
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
