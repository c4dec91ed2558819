"""Restart the acceptor process with kill -9 and resume from the persisted sequence numbers.

The acceptor runs in a child process whose sink journals (append + flush) every order it is
handed, as the gateway's journal would. A real quickfix client keeps sending while the acceptor
is dead (quickfix stores those messages); after the restart the acceptor asks for them with a
ResendRequest and the client resends them with PossDupFlag=Y. Every ClOrdID must reach the sink
exactly once, and the client must get an ExecutionReport for every order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.fix.conftest import PASSWORD, FixEnv
from tests.fix.fixsupport import wait_until

REPO = Path(__file__).resolve().parents[2]


def _start(config: Path, journal: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests/fix/acceptor_proc.py"), str(config), str(journal)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", f"acceptor process did not start: {line!r}"
    return proc


def _kill9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_kill_9_resumes_with_no_order_lost_or_duplicated(fix_env: FixEnv, tmp_path: Path) -> None:
    session = fix_env.session(5, cancel_on_disconnect=False)
    creds = session.credentials
    assert creds is not None
    port = fix_env.acceptor_port()
    config = tmp_path / "acceptor.json"
    config.write_text(
        json.dumps(
            {
                "port": port,
                "state_dir": str(tmp_path / "state"),
                "sessions": [
                    {
                        "session_id": session.session_id,
                        "sender_comp_id": session.sender_comp_id,
                        "target_comp_id": session.target_comp_id,
                        "account": session.account,
                        "cancel_on_disconnect": False,
                        "credentials": {
                            "username": creds.username,
                            "password_hash": creds.password_hash,
                        },
                    }
                ],
            }
        )
    )
    journal = tmp_path / "sink.jsonl"
    proc = _start(config, journal)
    client = fix_env.client(port, session, password=PASSWORD)
    try:
        # 1. Steady state, then kill -9 while idle; orders sent while it is dead are resent.
        for i in range(5):
            client.new_order(f"K{i}")
        wait_until(lambda: all(client.reports(f"K{i}") for i in range(5)), what="K0-K4 acked")
        _kill9(proc)
        wait_until(lambda: not client.logged_on(), what="client sees the drop")
        for i in range(5, 8):
            client.new_order(f"K{i}")  # stored by the client's quickfix until it is back
        proc = _start(config, journal)
        client.wait_logged_on(timeout=15)

        # 2. kill -9 in the middle of a stream of orders, restart at once.
        stream = [f"M{i}" for i in range(150)]

        def send_stream() -> None:
            for cl in stream:
                client.new_order(cl)
                time.sleep(0.004)

        sender = threading.Thread(target=send_stream)
        sender.start()
        wait_until(lambda: len(client.reports("M40")) > 0, what="stream under way")
        _kill9(proc)
        proc = _start(config, journal)
        sender.join(timeout=30)

        every = [f"K{i}" for i in range(8)] + stream
        wait_until(
            lambda: all(client.reports(cl) for cl in every), timeout=30, what="every order acked"
        )
        seen = [json.loads(line)["cl"] for line in journal.read_text().splitlines()]
        assert sorted(seen) == sorted(every), "each order reached the sink exactly once"
        resent = {m[11] for m in client.app_out if m.get(43) == "Y" and 11 in m}
        assert {"K5", "K6", "K7"} <= resent  # they came through the resend, marked PossDup
        assert any(cl.startswith("M") for cl in resent)  # so did the stream's tail
        assert client.logged_on()
    finally:
        client.stop()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
