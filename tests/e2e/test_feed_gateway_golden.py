"""Golden replay of a recorded feed + gateway session.

One host, real processes and sockets: the OUCH venue simulator publishes its book as ITCH over
MoldUDP64 to the feed role (loopback socket path), the feed builds books and publishes the
reference table, the gateway (references = feed) takes a FIX client's orders through risk to the
venue — its resting orders appear in the venue's ITCH and so in the feed's books and in the
references the gateway judges the next orders against. Both the feed and the gateway capture
every step. Afterwards each capture verifies and replays bit for bit through the same step
functions (zero diffs), and the gateway's journal shows it took its references from the feed.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tectra.core.config import load_config
from tectra.feed.component import FeedComponent
from tectra.gateway.replay import replay_component
from tectra.gateway.service import GatewayService
from tectra.journal.replay import ReplayOptions, replay_journal
from tectra.journal.verify import verify_journal
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status
from tests.fix.fixsupport import FixTestClient, wait_until
from tests.gateway.gateway_env import LIMITS_TOML, PASSWORD, REPO, kill_block

pytestmark = pytest.mark.timeout(180)


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(root: Path, udp: int, retrans: int, venue_port: int) -> Path:
    from adapters.fix.settings import Credentials

    creds = Credentials.from_password("trader", PASSWORD, iterations=1000)
    (root / "limits.toml").write_text(LIMITS_TOML)
    (root / "fix.toml").write_text(
        'store = "file"\nfile_log = false\n\n[[sessions]]\nsession_id = 1\n'
        'sender_comp_id = "TECTRA"\ntarget_comp_id = "GOLDEN1"\naccount = "ACC1"\n'
        f'credentials = {{ username = "trader", password_hash = "{creds.password_hash}" }}\n'
    )
    rings = "".join(
        f'[rings.md-{name}]\ncapacity = 4096\nkind = "spsc"\npolicy = "overwrite"\n'
        f'record = "{record}"\n\n'
        for name, record in (("book", "BOOK_UPDATE"), ("tick", "TICK"), ("trade", "TRADE"))
    )
    path = root / "tectra.toml"
    path.write_text(
        f'[appliance]\nname = "golden"\nstate_dir = "{root}"\nshm_root = "{root / "shm"}"\n\n'
        f"[roles.feed]\nmetrics_port = 0\nwatchdog_s = 0\nwarmup_ticks = 100\n\n"
        f'[feed]\nio = "socket"\ninterface = "lo"\nbind_address = "127.0.0.1"\n'
        f'udp_port = {udp}\nretrans_host = "127.0.0.1"\nretrans_port = {retrans}\n'
        'md_ring = "md"\nrefs_table = "refs"\nstale_after_s = 5.0\nsnapshot_interval_s = 0\n'
        "capture = true\n\n"
        f"{rings}"
        f'[gateway]\nfix_port = {_free(socket.SOCK_STREAM)}\nfix_sessions = "{root / "fix.toml"}"\n'
        f'venue_port = {venue_port}\nlimits_file = "{root / "limits.toml"}"\n'
        'references = "feed"\ncapture = true\n'
    )
    return path


def _feed_ready(state_dir: Path) -> bool:
    try:
        return fetch_status(control_socket_path(state_dir, "feed"), 1.0).lifecycle == "READY"
    except RoleControlError:
        return False


def test_feed_and_gateway_session_replays_bit_for_bit(tmp_path: Path) -> None:
    (tmp_path / "shm").mkdir()
    udp, retrans = _free(socket.SOCK_DGRAM), _free(socket.SOCK_DGRAM)
    venue = subprocess.Popen(
        [sys.executable, "-m", "tectra.sim.ouch_venue", "--port", "0", "--symbols",
         "AAPL,MSFT", "--seed", "5", "--levels", "3", "--level-qty", "100",
         "--mold-dest", f"127.0.0.1:{udp}", "--mold-retrans-port", str(retrans),
         "--mold-heartbeat-ms", "100"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    feed = gw = client = None
    block = None
    marks: dict[int, int] = {}
    try:
        assert venue.stdout is not None
        info = json.loads(venue.stdout.readline())
        ref = info["reference_prices"]["AAPL"] / 10_000
        cfg_path = _config(tmp_path, udp, retrans, int(info["listening"].rsplit(":", 1)[1]))
        config = load_config(cfg_path)
        block = kill_block(config)
        feed = subprocess.Popen(
            [sys.executable, "-m", "tectra", "run", "feed", "--config", str(cfg_path)], cwd=REPO
        )
        wait_until(lambda: _feed_ready(tmp_path), 60, "feed READY")
        gw = GatewayService(config)
        gw.start()
        wait_until(lambda: gw is not None and gw.venue_up, 10, "venue login")
        # The references come from the feed: the seeded book's mid.
        wait_until(lambda: gw is not None and 1 in gw.marks(), 10, "feed references")
        client = FixTestClient(
            config.gateway.fix_port, "GOLDEN1", "TECTRA", tmp_path / "cli",
            username="trader", password=PASSWORD,
        )  # fmt: skip
        client.start()
        client.wait_logged_on()
        client.new_order("G1", qty="150", price=f"{ref + 0.02:.2f}")  # takes two ask levels
        client.wait_app(lambda m: m.get(11) == "G1" and m.get(39) == "2")
        client.new_order("G2", qty="50", price=f"{ref - 0.50:.2f}")  # rests: a new bid level
        client.wait_app(lambda m: m.get(11) == "G2" and m.get(150) == "0")
        client.new_order("G3", qty="10", price=f"{ref * 1.5:.2f}")  # outside the price band
        client.wait_app(lambda m: m.get(11) == "G3" and m.get(150) == "8")
        time.sleep(0.5)  # the feed sees the trades and the new level; the gateway re-reads
        client.cancel("G4", "G2")
        client.wait_app(lambda m: m.get(11) == "G4" and m.get(150) == "4")
        time.sleep(0.3)
        marks = gw.marks()
    finally:
        if client is not None:
            client.stop()
        if gw is not None:
            gw.stop()
        if feed is not None and feed.poll() is None:
            feed.send_signal(signal.SIGTERM)
            feed.wait(30)
        venue.terminate()
        venue.wait(10)
        if block is not None:
            block.close()

    feed_dir, gw_dir = tmp_path / "journal" / "feed", tmp_path / "journal" / "gateway"
    for d in (feed_dir, gw_dir):
        report = verify_journal(d)
        assert report.ok, report.format_text()
    feed_diff = replay_journal(feed_dir, FeedComponent())
    assert feed_diff.zero and feed_diff.steps > 0, feed_diff.format_text()
    gw_diff = replay_journal(gw_dir, replay_component(), options=ReplayOptions(from_snapshot=True))
    assert gw_diff.zero and gw_diff.steps > 0, gw_diff.format_text()
    # The gateway judged orders against what the feed published: after the client's resting
    # bid at ref - 0.50 was cancelled and two ask levels were taken, the feed's mid is where
    # the venue's book is, not the static seed.
    assert marks and abs(marks[1] - round(ref * 10_000)) <= 1_000
