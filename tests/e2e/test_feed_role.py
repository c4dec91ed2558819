"""The `feed` role as a process on loopback sockets: it says DEGRADED when the feed goes
silent, READY again once data flows, publishes on its md rings and the reference table, and
leaves a snapshot behind on a clean stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tectra.feed.refs import RefTable
from tectra.io.shm import ShmRing
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status
from tectra.schema import TICK
from tectra.sim.itch_flow import ItchFlow
from tectra.sim.mold_publisher import MoldPublisher, PublisherConfig


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(tmp_path: Path, shm_root: Path, udp: int, retrans: int) -> Path:
    rings = "".join(
        f'[rings.md-{name}]\ncapacity = 4096\nkind = "spsc"\npolicy = "overwrite"\n'
        f'record = "{record}"\n\n'
        for name, record in (("book", "BOOK_UPDATE"), ("tick", "TICK"), ("trade", "TRADE"))
    )
    path = tmp_path / "tectra.toml"
    path.write_text(
        f'[appliance]\nname = "t"\nstate_dir = "{tmp_path}"\nshm_root = "{shm_root}"\n\n'
        f"[roles.feed]\ncpus = []\nmetrics_port = {_free(socket.SOCK_STREAM)}\n"
        "watchdog_s = 0\nwarmup_ticks = 100\n\n"
        f'[feed]\nio = "socket"\ninterface = "lo"\nbind_address = "127.0.0.1"\n'
        f'udp_port = {udp}\nretrans_host = "127.0.0.1"\nretrans_port = {retrans}\n'
        'md_ring = "md"\nrefs_table = "refs"\nstale_after_s = 1.0\nsnapshot_interval_s = 60.0\n\n'
        f"{rings}"
    )
    return path


def _wait_state(state_dir: Path, want: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    reason = ""
    while time.monotonic() < deadline:
        try:
            status = fetch_status(control_socket_path(state_dir, "feed"), 1.0)
        except RoleControlError:
            time.sleep(0.05)
            continue
        if status.lifecycle == want:
            return str(status.lifecycle_reason)
        reason = f"{status.lifecycle}: {status.lifecycle_reason}"
        time.sleep(0.05)
    raise AssertionError(f"feed not {want} within {seconds}s (last: {reason})")


def test_feed_role_lifecycle_outputs_and_snapshot(tmp_path: Path, shm_root: Path) -> None:
    udp, retrans = _free(socket.SOCK_DGRAM), _free(socket.SOCK_DGRAM)
    config = _config(tmp_path, shm_root, udp, retrans)
    feed = subprocess.Popen(
        [sys.executable, "-m", "tectra", "run", "feed", "--config", str(config)]
    )
    try:
        _wait_state(tmp_path, "READY", 60)
        assert fetch_status(control_socket_path(tmp_path, "feed")).io_path == "socket"
        assert "silent" in _wait_state(tmp_path, "DEGRADED", 10)

        flow = ItchFlow(4, symbols=8)
        venue = PublisherConfig(
            dest=("127.0.0.1", udp), retrans_bind=("127.0.0.1", retrans), rate=20_000.0
        )
        with MoldPublisher(venue, symbols=flow.symbols) as publisher:
            publisher.run(flow, seconds=1.5, end=False)
            assert "whole" in _wait_state(tmp_path, "READY", 10)

        ticks = ShmRing.attach("md-tick", TICK.dtype, root=shm_root)
        assert ticks.stats().pushed > 0
        ticks.close()
        refs = RefTable.attach("refs", root=shm_root)
        rows = [refs.read(i) for i in range(1, 9)]
        refs.close()
        assert any(row is not None and row["bid_qty"] > 0 for row in rows)

        feed.send_signal(signal.SIGTERM)
        assert feed.wait(timeout=20) == 0
    finally:
        if feed.poll() is None:
            feed.kill()
    assert list((tmp_path / "feed" / "snapshots").glob("book-*.snap")), "no snapshot on stop"
