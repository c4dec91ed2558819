"""Role processes end to end: `tectra run publisher|consumer` under the role shell, as systemd
would run them (NOTIFY_SOCKET, WATCHDOG_USEC), observed through their real endpoints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tectra.demo import DemoOptions, write_demo_config
from tectra.journal.lifecycle import read_lifecycle_journal
from tectra.journal.verify import verify_journal
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status
from tectra.schema import LifecycleState

TECTRA = [sys.executable, "-m", "tectra"]
TECTRACTL = [sys.executable, "-m", "tectra.mgmt.ctl"]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_ready(state_dir: Path, role: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{role} exited with {proc.returncode}"
        try:
            if fetch_status(control_socket_path(state_dir, role), 1.0).lifecycle == "READY":
                return
        except RoleControlError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{role} not READY in time")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[list[str]]:
    """A stand-in for systemd's notify socket, read continuously as systemd does (a unix
    datagram queue is only ~10 deep, so an unread socket would block the sender)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.05)
    messages: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield messages
    done.set()
    reader.join()
    sock.close()


def test_roles_serve_health_metrics_status_and_notify_systemd(
    tmp_path: Path, shm_root: Path, notify_socket: list[str]
) -> None:
    config, ports = write_demo_config(tmp_path, shm_root, DemoOptions(rate=200_000, batch=64))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    procs = {
        role: subprocess.Popen([*TECTRA, "run", role, "--config", str(config)], env=env)
        for role in ("consumer", "publisher")
    }
    try:
        for role, proc in procs.items():
            _wait_ready(tmp_path, role, proc)
        for role in procs:
            base = f"http://127.0.0.1:{ports[role]}"
            assert _get(f"{base}/health/live")[0] == 200
            status, body = _get(f"{base}/health/ready")
            assert status == 200 and json.loads(body)["state"] == "READY"
            assert _get(f"{base}/nope")[0] == 404
        time.sleep(0.5)
        metrics = _get(f"http://127.0.0.1:{ports['consumer']}/metrics")[1]
        received = [
            ln for ln in metrics.splitlines() if ln.startswith("tectra_demo_received_total")
        ]
        assert received and float(received[0].split()[-1]) > 0
        assert 'tectra_ring_pushed_total{ring="demo"}' in metrics
        assert "tectra_demo_transit_latency_seconds_bucket" in metrics

        ctl = subprocess.run(
            [*TECTRACTL, "--config", str(config), "--json", "status"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert ctl.returncode == 0, ctl.stderr
        rows = {row["role"]: row for row in json.loads(ctl.stdout)["roles"]}
        assert rows["publisher"]["lifecycle"] == "READY"
        assert rows["consumer"]["io_path"] == "shm"
        assert rows["publisher"]["pid"] == procs["publisher"].pid
        if len(os.sched_getaffinity(0)) >= 2:
            assert rows["publisher"]["cpus"] == [min(os.sched_getaffinity(0))]

        time.sleep(0.3)  # > one watchdog interval (WATCHDOG_USEC / 2)
        for role in ("publisher", "consumer"):  # upstream first, so the consumer can drain
            procs[role].send_signal(signal.SIGTERM)
            assert procs[role].wait(timeout=20) == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    time.sleep(0.2)
    notes = list(notify_socket)
    assert sum("READY=1" in m for m in notes) == 2
    assert any("WATCHDOG=1" in m for m in notes)
    assert sum("STOPPING=1" in m for m in notes) == 2

    published = json.loads((tmp_path / "demo" / "publisher-summary.json").read_text())
    consumed = json.loads((tmp_path / "demo" / "consumer-summary.json").read_text())
    assert consumed["checksum_errors"] == 0 and consumed["sequence_errors"] == 0
    assert consumed["received"] + consumed["lost"] == published["published"] > 0

    events = read_lifecycle_journal(tmp_path / "journal" / "lifecycle-consumer")
    assert verify_journal(tmp_path / "journal" / "lifecycle-consumer").ok
    assert [e.to_state for e in events][:2] == [LifecycleState.WARMUP, LifecycleState.READY]

    after = subprocess.run(
        [*TECTRACTL, "--config", str(config), "status"], capture_output=True, text=True, check=False
    )
    assert after.returncode == 1 and "DOWN" in after.stdout


def test_unknown_roles_are_refused_with_exit_2(tmp_path: Path, shm_root: Path) -> None:
    config, _ = write_demo_config(tmp_path, shm_root, DemoOptions())
    nope = subprocess.run(
        [*TECTRA, "run", "nope", "--config", str(config)], capture_output=True, text=True
    )
    assert nope.returncode == 2 and "unknown role 'nope'; available: " in nope.stderr
    available = nope.stderr.split("available: ", 1)[1].split()
    assert {"consumer,", "feed,", "gateway,", "journal,", "kill,", "mgmtd,"} <= set(available)


def test_bad_config_is_refused_naming_key_and_value(tmp_path: Path, shm_root: Path) -> None:
    config, _ = write_demo_config(tmp_path, shm_root, DemoOptions())
    config.write_text(config.read_text().replace("capacity = 65536", "capacity = 1000"))
    run = subprocess.run(
        [*TECTRA, "run", "consumer", "--config", str(config)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "rings.demo.capacity" in run.stderr and "1000" in run.stderr


def test_demo_ring_stage_runs_end_to_end_and_reconciles() -> None:
    run = subprocess.run(
        [*TECTRA, "demo", "--stage", "ring", "--seconds", "2", "--rate", "200000", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and set(summary) == {"ring", "ok"}
    ring = summary["ring"]
    assert ring["received"] + ring["lost"] == ring["published"] > 100_000


def test_demo_feed_stage_delivers_every_message_despite_drops() -> None:
    # As root this crosses two network namespaces on the best receive path (XDP here);
    # otherwise loopback sockets. Either way the venue drops packets and nothing may be lost.
    run = subprocess.run(
        [
            *TECTRA,
            "demo",
            "--stage",
            "feed",
            "--feed-seconds",
            "2",
            "--feed-rate",
            "100000",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    feed = json.loads(run.stdout.strip().splitlines()[-1])["feed"]
    assert feed["ok"] is True
    assert feed["delivered"] == feed["published"] > 50_000
    assert feed["lost"] == 0
    assert feed["gaps"] > 0 and feed["retransmitted"] > 0
    assert feed["io_path"] == ("xdp" if os.geteuid() == 0 else "socket")
    # The run was captured; the journal verifies and replays with zero diffs.
    assert feed["journal_verified"] is True and len(feed["segment_merkle_roots"]) >= 1
    assert feed["replay_steps"] > 0 and feed["replay_divergences"] == 0
