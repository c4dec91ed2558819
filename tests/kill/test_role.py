"""`tectra run kill` end to end: KillControl over the control socket, a local gateway
subscriber acking, restart while halted comes up halted, metrics exported."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from tectra.io.killblock import Verdict, open_gateway_view
from tectra.kill.subscriber import KillSubscriber
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status
from tectra.mgmt.v1 import kill_pb2, kill_pb2_grpc

from .conftest import FakeGateway


def write_config(tmp_path: Path, shm_root: Path) -> Path:
    cfg = tmp_path / "tectra.toml"
    cfg.write_text(
        f"""
[appliance]
name = "t1"
state_dir = "{tmp_path / "state"}"
shm_root = "{shm_root}"

[roles.kill]
metrics_port = 0
watchdog_s = 0

[kill]
subscribers = ["gw-a", "gw-b"]
ack_timeout_s = 0.3
evaluate_interval_s = 0.01
venues = ["XNAS=1@198.18.0.1:15000"]

[kill.triggers.estop]
armed = true
action = "block"
"""
    )
    return cfg


@contextmanager
def kill_role(cfg: Path, state_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "tectra", "run", "kill", "--config", str(cfg)])
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"kill role exited with {proc.returncode}"
            try:
                if fetch_status(control_socket_path(state_dir, "kill"), 1.0).lifecycle == "READY":
                    break
            except RoleControlError:
                pass
            assert time.monotonic() < deadline, "kill role not READY"
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def stub(state_dir: Path) -> Any:
    channel = grpc.insecure_channel(f"unix:{control_socket_path(state_dir, 'kill')}")
    return channel, kill_pb2_grpc.KillControlStub(channel)


def test_kill_role_serves_killcontrol_and_restarts_halted(tmp_path: Path, shm_root: Path) -> None:
    cfg = write_config(tmp_path, shm_root)
    state = tmp_path / "state"
    gw = FakeGateway(open=7)
    with kill_role(cfg, state):
        sub = KillSubscriber("gw-a", gw, run_dir=state / "run")
        sub.start()
        channel, kc = stub(state)
        try:
            reply = kc.Trigger(
                kill_pb2.TriggerRequest(
                    kill_id="drill-1",
                    target=kill_pb2.KillTarget(scope=kill_pb2.VENUE, scope_name="XNAS"),
                    action=kill_pb2.CANCEL,
                    reason="desk drill",
                    actor="risk@desk",
                ),
                timeout=5,
            )
            assert reply.applied and reply.trigger_to_block_ns > 0
            assert [a.subscriber for a in reply.acks] == ["gw-a"]
            assert reply.acks[0].cancels_sent == 7
            assert list(reply.missing) == ["gw-b"]
            again = kc.Trigger(
                kill_pb2.TriggerRequest(
                    kill_id="drill-1",
                    target=kill_pb2.KillTarget(scope=kill_pb2.VENUE, scope_id=1),
                    action=kill_pb2.CANCEL,
                    reason="retry",
                    actor="risk@desk",
                ),
                timeout=5,
            )
            assert not again.applied
            with pytest.raises(grpc.RpcError) as info:
                kc.Trigger(
                    kill_pb2.TriggerRequest(
                        kill_id="x",
                        target=kill_pb2.KillTarget(scope=kill_pb2.FIRM),
                        action=kill_pb2.BLOCK,
                        actor="a",
                    ),
                    timeout=5,
                )
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "reason" in (info.value.details() or "")
            firm = kc.Trigger(
                kill_pb2.TriggerRequest(
                    kill_id="halt",
                    target=kill_pb2.KillTarget(scope=kill_pb2.FIRM),
                    action=kill_pb2.BLOCK,
                    reason="stop all",
                    actor="risk@desk",
                ),
                timeout=5,
            )
            assert firm.applied
            status = kc.GetStatus(kill_pb2.KillStatusRequest(), timeout=5)
            assert status.blocked_all and {k.kill_id for k in status.active} == {"drill-1", "halt"}
            assert {"gw-a", "gw-b"} <= set(status.subscribers)
            assert any(t.name == "estop" and t.armed for t in status.triggers)
            role = fetch_status(control_socket_path(state, "kill"))
            port = role.metrics_port
            assert role.details["halted"] == "true"
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            assert 'tectra_kill_actions_total{action="cancel"} 1.0' in metrics
            assert "tectra_kill_trigger_to_block_latency" in metrics
            assert 'tectra_kill_events_total{event="missing_acks"} 2.0' in metrics
        finally:
            channel.close()
            sub.stop()

    # restart: the role comes back halted, the ledger verifies, clear needs a reason
    with kill_role(cfg, state):
        assert open_gateway_view("kill", shm_root).check(venue=2).verdict is Verdict.BLOCKED
        channel, kc = stub(state)
        try:
            status = kc.GetStatus(kill_pb2.KillStatusRequest(), timeout=5)
            assert status.blocked_all
            with pytest.raises(grpc.RpcError):
                kc.Clear(kill_pb2.ClearRequest(actor="risk@desk"), timeout=5)
            ok = kc.Clear(kill_pb2.ClearRequest(reason="drill over", actor="risk@desk"), timeout=5)
            assert ok.ok and "cleared 2" in ok.message
            assert open_gateway_view("kill", shm_root).check(venue=1).verdict is Verdict.OK
            hist = kc.History(kill_pb2.HistoryRequest(limit=0), timeout=5)
            kinds = [e.kind for e in hist.entries]
            assert kinds.count("trigger") == 3 and "ack" in kinds and kinds[-1] == "clear"
            ver = kc.Verify(kill_pb2.VerifyRequest(), timeout=5)
            assert ver.ok and ver.records == len(hist.entries)
            armed = kc.Arm(
                kill_pb2.ArmRequest(trigger="max_loss", armed=True, reason="on", actor="r"),
                timeout=5,
            )
            assert armed.ok
            with pytest.raises(grpc.RpcError) as info:
                kc.Arm(kill_pb2.ArmRequest(trigger="nope", armed=True, reason="x", actor="r"))
            assert info.value.code() is grpc.StatusCode.NOT_FOUND
            # the E-stop input: a file
            (state / "run" / "kill.estop").touch()
            deadline = time.monotonic() + 5
            while not kc.GetStatus(kill_pb2.KillStatusRequest(), timeout=5).blocked_all:
                assert time.monotonic() < deadline, "E-stop did not halt"
                time.sleep(0.02)
        finally:
            channel.close()
