"""A stand-alone kill subscriber for drills, tests and benchmarks: ``python -m tectra.kill.probe``.

It is a `KillSubscriber` in front of a synthetic gateway with ``--open`` open orders per scope
whose cancels the "venue" confirms after ``--confirm-ms``. It checks the whole fan-out path
(local socket and/or NATS, acks back) without a real gateway: run one per simulated host,
optionally inside a network namespace (``--netns``, entered before any thread starts, so the
NATS connection lives there). It prints ``READY <paths>`` on stdout once subscribed and runs
until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tectra.io import netns as nl
from tectra.io.killblock import Scope
from tectra.kill.subscriber import CancelProgress, KillSubscriber

__all__ = ["NatsHosts", "ProbeGateway", "main", "nats_hosts"]


class ProbeGateway:
    """KillActions with a fixed book: every cancel_scope sends OPEN cancels, confirmed after
    CONFIRM_S."""

    def __init__(self, open_orders: int = 100, confirm_s: float = 0.0) -> None:
        self.open = open_orders
        self.confirm_s = confirm_s
        self._sent: dict[int, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def cancel_scope(self, scope: Scope, scope_id: int, kill_id: int) -> int:
        with self._lock:
            self._sent[kill_id] = (self.open, time.monotonic())
        return self.open

    def cancel_progress(self, kill_id: int) -> CancelProgress:
        with self._lock:
            n, at = self._sent.get(kill_id, (0, 0.0))
        return CancelProgress(n if time.monotonic() - at >= self.confirm_s else 0, 0)

    def open_orders(self, scope: Scope, scope_id: int) -> int:
        return self.open

    def orders_blocked(self, scope: Scope, scope_id: int) -> int:
        return 0


@dataclass
class NatsHosts:
    """A hub namespace running nats-server and remote "hosts" (namespaces) joined to it by
    veths, each running one probe subscriber process."""

    hub: str
    port: int
    remotes: dict[str, str]  # probe name -> its namespace
    urls: dict[str, str]  # probe name -> the NATS url it uses (the hub's veth address)
    server: subprocess.Popen[bytes]
    probes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @property
    def local_url(self) -> str:
        """The url from inside the hub namespace."""
        return f"nats://127.0.0.1:{self.port}"


def _wait_port(ns: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with nl.in_namespace(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(0.2)
            s.connect(("127.0.0.1", port))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            s.close()


@contextlib.contextmanager
def nats_hosts(
    names: tuple[str, ...], *, port: int = 4222, open_orders: int = 100, appliance: str = "remote"
) -> Iterator[NatsHosts]:
    """Root only. Namespace ``tectra-hub-<tag>`` runs nats-server on PORT; each name gets its
    own namespace with a veth to the hub (198.18.<i>.1 remote, 198.18.<i>.2 hub) and a probe
    process connected through it, acking as NAME (appliance APPLIANCE-<i>)."""
    server_bin = shutil.which("nats-server")
    if server_bin is None:
        raise FileNotFoundError("nats-server is not installed")
    tag = os.urandom(3).hex()
    hub = f"tectra-hub-{tag}"
    created: list[str] = []
    server: subprocess.Popen[bytes] | None = None
    probes: dict[str, subprocess.Popen[str]] = {}
    try:
        nl.create_namespace(hub)
        created.append(hub)
        nl.set_link_state("lo", True, hub)
        remotes: dict[str, str] = {}
        urls: dict[str, str] = {}
        for i, name in enumerate(names, start=1):
            ns = f"tectra-rmt{i}-{tag}"
            nl.create_namespace(ns)
            created.append(ns)
            hub_if, rmt_if = f"kh{i}{tag}", f"kr{i}{tag}"
            nl.add_veth(hub_if, rmt_if, namespace=hub, peer_namespace=ns)
            nl.add_address(hub_if, f"198.18.{i}.2", 24, hub)
            nl.add_address(rmt_if, f"198.18.{i}.1", 24, ns)
            for ifname, where in ((hub_if, hub), (rmt_if, ns), ("lo", ns)):
                nl.set_link_state(ifname, True, where)
            remotes[name] = ns
            urls[name] = f"nats://198.18.{i}.2:{port}"
        server = subprocess.Popen(
            [server_bin, "-a", "0.0.0.0", "-p", str(port)],
            preexec_fn=lambda: _enter_netns(hub),  # noqa: PLW1509 - setns before exec
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(hub, port)
        for i, name in enumerate(names, start=1):
            probes[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tectra.kill.probe",
                    name,
                    "--nats",
                    urls[name],
                    "--netns",
                    remotes[name],
                    "--appliance",
                    f"{appliance}-{i}",
                    "--open",
                    str(open_orders),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        for name, proc in probes.items():
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"probe {name} did not start: {line!r}")
        yield NatsHosts(hub, port, remotes, urls, server, probes)
    finally:
        for proc in probes.values():
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if server is not None:
            server.terminate()
            server.wait(timeout=5)
        for ns in reversed(created):
            with contextlib.suppress(nl.NetnsError):
                nl.remove_namespace(ns)


def _enter_netns(name: str) -> None:
    from pyroute2 import netns

    netns.setns(name, flags=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("name", help="subscriber name (1-16 ASCII)")
    p.add_argument("--nats", default="", help="nats://HOST:PORT")
    p.add_argument("--run-dir", default="", help="STATE_DIR/run of a local kill role")
    p.add_argument("--appliance", default="probe", help="appliance this probe stands for")
    p.add_argument("--prefix", default="tectra.kill")
    p.add_argument("--netns", default="", help="network namespace to run in")
    p.add_argument("--open", type=int, default=100, help="open orders per scope")
    p.add_argument("--confirm-ms", type=float, default=0.0)
    args = p.parse_args(argv)
    if args.netns:
        _enter_netns(args.netns)
    from pathlib import Path

    sub = KillSubscriber(
        args.name,
        ProbeGateway(args.open, args.confirm_ms / 1000),
        run_dir=Path(args.run_dir) if args.run_dir else None,
        appliance=args.appliance,
        nats_url=args.nats,
        subject_prefix=args.prefix,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sub.start(nats_wait_s=10.0)
    if args.nats and not sub.nats_connected:
        print(f"NATS {args.nats} unreachable", file=sys.stderr, flush=True)
        sub.stop()
        return 1
    print(f"READY {sub.paths}", flush=True)

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    stop.wait()
    sub.stop()
    print(f"STATS {sub.stats}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
