"""Cross-host fan-out with real gateways: two `tectra run gateway` processes, each in its own
network namespace ("host") with its own OUCH venue simulator, a nats-server in a hub namespace
joined to both by veths, and `tectra run kill` in the hub. Each gateway holds resting orders
from a real FIX client; a firm-wide CANCEL through the kill role's KillControl is acked by both
gateways over NATS by name, with cancels sent == their open orders, the venues confirm every
cancel (the clients get their Canceled reports and the kill role's ledger the final counts),
and a third configured subscriber that does not exist is reported missing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tectra.io import netns as nl
from tectra.mgmt.v1 import kill_pb2, kill_pb2_grpc
from tests.fix.fixsupport import FixTestClient, wait_until
from tests.gateway.gateway_env import PASSWORD, REPO, kill_block, write_appliance

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

NATS_PORT = 4222
MONITOR_PORT = 8222
ORDERS = {"nyc_gw": 4, "chi_gw": 3}  # resting orders per gateway (different, so counts are real)


def _setns(name: str) -> Callable[[], None]:
    def enter() -> None:
        from pyroute2 import netns

        netns.setns(name, flags=0)

    return enter


def _spawn(ns: str, args: list[str], log: Path, **kw: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        args,
        cwd=REPO,
        preexec_fn=_setns(ns),  # noqa: PLW1509 - setns before exec, nothing else
        stdout=kw.pop("stdout", log.open("ab")),
        stderr=subprocess.STDOUT,
        **kw,
    )


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Host:
    name: str  # the gateway's kill_name
    ns: str
    nats_url: str


@contextlib.contextmanager
def topology(names: tuple[str, ...]) -> Iterator[tuple[str, list[Host]]]:
    """A hub namespace and one namespace per gateway host, each joined to the hub by a veth
    (198.19.<i>.1 host side, 198.19.<i>.2 hub side). Removed on exit."""
    tag = os.urandom(3).hex()
    hub = f"tectra-kgh-{tag}"
    created: list[str] = []
    try:
        nl.create_namespace(hub)
        created.append(hub)
        nl.set_link_state("lo", True, hub)
        hosts = []
        for i, name in enumerate(names, start=1):
            ns = f"tectra-kg{i}-{tag}"
            nl.create_namespace(ns)
            created.append(ns)
            hub_if, host_if = f"kgh{i}{tag}", f"kgr{i}{tag}"
            nl.add_veth(hub_if, host_if, namespace=hub, peer_namespace=ns)
            nl.add_address(hub_if, f"198.19.{i}.2", 24, hub)
            nl.add_address(host_if, f"198.19.{i}.1", 24, ns)
            for ifname, where in ((hub_if, hub), (host_if, ns), ("lo", ns)):
                nl.set_link_state(ifname, True, where)
            hosts.append(Host(name, ns, f"nats://198.19.{i}.2:{NATS_PORT}"))
        yield hub, hosts
    finally:
        for ns in reversed(created):
            with contextlib.suppress(nl.NetnsError):
                nl.remove_namespace(ns)


def _nats_clients(hub: str) -> list[dict[str, Any]]:
    """nats-server's own view (monitoring endpoint in the hub): connections and their subs."""
    with nl.in_namespace(hub):
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{MONITOR_PORT}/connz?subs=1", timeout=1
            ) as r:
                data = json.loads(r.read())
        except OSError:
            return []
    return list(data.get("connections") or [])


def _start_venue(ns: str, log: Path) -> tuple[subprocess.Popen[str], int]:
    proc = _spawn(
        ns,
        [
            sys.executable,
            "-m",
            "tectra.sim.ouch_venue",
            *("--port", "0", "--symbols", "AAPL"),
            *("--levels", "0", "--band-pct", "0"),  # an empty book, any price accepted
        ],
        log,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, int(info["listening"].rsplit(":", 1)[1])


def _write_kill_config(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "tectra.toml"
    path.write_text(
        f"""
[appliance]
name = "ldn1"
state_dir = "{root / "state"}"
shm_root = "{root / "shm"}"

[roles.kill]
metrics_port = 0

[kill]
nats_url = "nats://127.0.0.1:{NATS_PORT}"
subscribers = {json.dumps(names)}
ack_timeout_s = 2.0
ack_retry_s = 0.2
confirm_timeout_s = 10.0
"""
    )
    return path


def _ledger(stub: Any) -> list[dict[str, Any]]:
    reply = stub.History(kill_pb2.HistoryRequest(limit=0), timeout=5)
    return [json.loads(e.json) for e in reply.entries]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """Unix socket paths (108 bytes) under pytest's long tmp_path do not fit."""
    path = Path(tempfile.mkdtemp(prefix="tkg-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_cancel_reaches_two_gateway_processes_on_other_hosts_over_nats(short_tmp: Path) -> None:
    tmp_path = short_tmp
    server_bin = shutil.which("nats-server")
    if server_bin is None:
        pytest.fail("nats-server is not installed")
    procs: list[subprocess.Popen[Any]] = []
    clients: list[FixTestClient] = []
    blocks = []
    with topology(tuple(ORDERS)) as (hub, hosts):
        try:
            procs.append(
                _spawn(
                    hub,
                    [server_bin, "-a", "0.0.0.0", "-p", str(NATS_PORT), "-m", str(MONITOR_PORT)],
                    tmp_path / "nats.log",
                )
            )
            # Each host: a venue, a gateway on it (own appliance, own kill block, NATS), and a
            # FIX client that logs on inside the host's namespace.
            by_name: dict[str, FixTestClient] = {}
            for i, h in enumerate(hosts, start=1):
                root = tmp_path / h.name
                root.mkdir()
                venue, venue_port = _start_venue(h.ns, root / "venue.log")
                procs.append(venue)
                extra = f'kill_name = "{h.name}"\n\n[kill]\nnats_url = "{h.nats_url}"\n'
                # Host i's client uses FIX session i: quickfix keeps one registry per process, so
                # the two clients need distinct comp ids.
                config, sessions = write_appliance(
                    root, venue_port, sessions=i, static_refs="AAPL=100.00", extra=extra
                )
                blocks.append(kill_block(config))
                procs.append(
                    _spawn(
                        h.ns,
                        [
                            sys.executable,
                            "-m",
                            "tectra",
                            "run",
                            "gateway",
                            "--config",
                            str(root / "tectra.toml"),
                        ],
                        root / "gateway.log",
                    )
                )
                s = sessions[i - 1]
                with nl.in_namespace(h.ns):  # quickfix's threads start (and stay) here
                    client = FixTestClient(
                        config.gateway.fix_port,
                        s["target_comp_id"],
                        s["sender_comp_id"],
                        root / "client",
                        username="trader",
                        password=PASSWORD,
                    )
                    client.start()
                clients.append(client)
                by_name[h.name] = client
            kill_cfg = _write_kill_config(tmp_path / "ldn1", [*ORDERS, "sfo_gw"])
            procs.append(
                _spawn(
                    hub,
                    [sys.executable, "-m", "tectra", "run", "kill", "--config", str(kill_cfg)],
                    tmp_path / "kill.log",
                )
            )
            # Resting orders on each host, each one New at the venue.
            for name, n in ORDERS.items():
                c = by_name[name]
                c.wait_logged_on(30)
                for k in range(n):
                    c.new_order(f"{name}-{k}", qty="10", price=f"{99 - k * 0.01:.2f}")
                for k in range(n):
                    c.wait_app(lambda m, k=k, name=name: m.get(11) == f"{name}-{k}", 15)
                    assert any(m[150] == "0" for m in c.reports(f"{name}-{k}"))
            # Both gateways and the kill role are subscribed at the broker.
            wait_until(
                lambda: sum(1 for c in _nats_clients(hub) if c.get("subscriptions_list")) >= 3,
                20,
                "kill role and both gateways subscribed on nats-server",
            )
            sock = tmp_path / "ldn1" / "state" / "run" / "kill.sock"
            wait_until(sock.exists, 20, "kill role control socket")
            with grpc.insecure_channel(f"unix:{sock}") as channel:
                stub = kill_pb2_grpc.KillControlStub(channel)
                wait_until(
                    lambda: _try(lambda: stub.GetStatus(kill_pb2.KillStatusRequest(), timeout=1)),
                    20,
                    "KillControl answering",
                )
                reply = stub.Trigger(
                    kill_pb2.TriggerRequest(
                        kill_id="drill-xhost-1",
                        target=kill_pb2.KillTarget(scope=kill_pb2.FIRM),
                        action=kill_pb2.CANCEL,
                        reason="cross-host drill",
                        actor="risk@desk",
                    ),
                    timeout=20,
                )
                assert reply.applied
                acks = {a.subscriber: a for a in reply.acks}
                assert set(acks) == set(ORDERS), reply
                for name, n in ORDERS.items():
                    assert acks[name].ok, acks[name]
                    assert acks[name].cancels_sent == n, acks[name]
                assert list(reply.missing) == ["sfo_gw"]
                # The venues confirm every cancel: each client is told Canceled, and the kill
                # role's ledger ends with each gateway's confirmed count.
                for name, n in ORDERS.items():
                    c = by_name[name]
                    for k in range(n):
                        c.wait_app(
                            lambda m, cl=f"{name}-{k}": m.get(11) == cl and m.get(150) == "4",
                            15,
                        )

                def confirmed() -> dict[str, int]:
                    out: dict[str, int] = {}
                    for e in _ledger(stub):
                        if e["kind"] == "ack" and e["kill_id"] == "drill-xhost-1":
                            got = int(e["payload"].get("cancels_confirmed", 0))
                            out[e["actor"]] = max(out.get(e["actor"], 0), got)
                    return out

                wait_until(lambda: confirmed() == ORDERS, 15, "final confirmations in ledger")
                entries = _ledger(stub)
                deadline = [e for e in entries if e["payload"].get("step") == "ack_deadline"]
                assert deadline and deadline[0]["payload"]["missing"] == ["sfo_gw"]
                verdict = stub.Verify(kill_pb2.VerifyRequest(), timeout=5)
                assert verdict.ok, verdict.problems
        finally:
            for client in clients:
                client.stop()
            for proc in reversed(procs):
                _stop(proc)
            for block in blocks:
                block.close()


def _try(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except grpc.RpcError:
        return False
    return True
