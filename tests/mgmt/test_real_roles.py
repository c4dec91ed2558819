"""tectractl → tectra-mgmtd → the real roles: the OUCH venue simulator, `tectra run kill`,
`tectra run gateway` and `tectra-mgmtd` as processes on one appliance config, driven by
`tectractl --config ... --json` as an operator would (status, sessions, limits show/set/load,
positions, a kill that refuses a FIX order HALTED, clear, ledger verify, audit)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tectra.demo import Appliance
from tests.fix.fixsupport import FixTestClient
from tests.gateway.gateway_env import PASSWORD, REPO, venue_process, write_appliance

pytestmark = pytest.mark.timeout(180)

CTL = [sys.executable, "-m", "tectra.mgmt.ctl"]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """Unix socket paths (108 bytes) under pytest's long tmp_path do not fit."""
    path = Path(tempfile.mkdtemp(prefix="tmr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Ctl:
    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str, code: int = 0) -> Any:
        run = subprocess.run(
            [*CTL, "--config", str(self.config), "--json", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == code, (args, run.returncode, run.stdout, run.stderr)
        return json.loads(run.stdout) if run.stdout.strip() else {}


def test_tectractl_through_mgmtd_against_the_real_roles(short_tmp: Path) -> None:
    root = short_tmp
    extra = f"""
[roles.kill]
metrics_port = 0
[roles.mgmtd]
metrics_port = 0

[kill]
subscribers = ["gateway"]

[mgmt.uid_roles]
"{os.getuid()}" = "admin"
"""
    with venue_process("--levels", "0", "--band-pct", "0") as venue:
        config, sessions = write_appliance(root, venue["port"], sessions=1, extra=extra)
        cfg = root / "tectra.toml"
        appliance = Appliance(cfg, root / "state", roles=("kill", "gateway", "mgmtd"))
        (root / "state").mkdir(exist_ok=True)
        client: FixTestClient | None = None
        try:
            appliance.start()
            appliance.wait_ready()
            ctl = Ctl(cfg)

            status = ctl("status")
            roles = {r["role"]: r for r in status["roles"]}
            assert status["source"] == "mgmtd"
            assert {"kill", "gateway"} <= set(roles)
            assert all(roles[r]["lifecycle"] == "READY" for r in ("kill", "gateway"))

            s = sessions[0]
            client = FixTestClient(
                config.gateway.fix_port,
                s["target_comp_id"],
                s["sender_comp_id"],
                root / "client",
                username="trader",
                password=PASSWORD,
            )
            client.start()
            client.wait_logged_on(30)

            listed = ctl("sessions", "list")
            assert [x["session_id"] for x in listed["sessions"]] == [1]
            assert listed["sessions"][0]["logged_on"] is True

            shown = ctl("limits", "show")
            assert shown["limits"]["instruments"]["AAPL"]["id"] == 1
            version = shown["version"]

            # one value, confirmed
            ctl("limits", "set", "instruments.AAPL.max_qty", "500", "--reason", "t", code=5)
            ctl("limits", "set", "instruments.AAPL.max_qty", "500", "--reason", "tighter", "--yes")
            after = ctl("limits", "show")
            assert after["limits"]["instruments"]["AAPL"]["max_qty"] == 500
            assert after["version"] != version
            client.new_order("Q1", qty="600", price="99.00")
            rep = client.wait_app(lambda m: m.get(11) == "Q1", 10)
            assert rep[150] == "8"

            # a whole file
            doc = after["limits"]
            doc["instruments"]["MSFT"]["max_qty"] = 77
            (root / "new-limits.json").write_text(json.dumps(doc))
            ctl("limits", "load", str(root / "new-limits.json"), "--reason", "file", "--yes")
            loaded = ctl("limits", "show")
            assert loaded["limits"]["instruments"]["MSFT"]["max_qty"] == 77
            assert loaded["limits"]["instruments"]["AAPL"]["max_qty"] == 500

            client.new_order("P1", qty="10", price="99.00")
            rep = client.wait_app(lambda m: m.get(11) == "P1", 10)
            assert rep[150] == "0", str(sorted(rep.items()))
            pos = ctl("positions")
            assert "positions" in pos
            metrics = {r["role"]: r for r in ctl("metrics")["roles"]}
            assert metrics["gateway"]["reachable"] and metrics["kill"]["reachable"]

            # kill: block, a FIX order is refused HALTED, clear, trading resumes
            trig = ctl(
                "kill",
                "trigger",
                "--scope",
                "firm",
                "--action",
                "block",
                "--reason",
                "e2e",
                "--yes",
                "--kill-id",
                "e2e-1",
            )
            assert trig["applied"] is True
            assert [a["subscriber"] for a in trig["acks"]] == ["gateway"]
            client.new_order("H1", qty="10", price="99.00")
            rep = client.wait_app(lambda m: m.get(11) == "H1", 10)
            assert rep[150] == "8" and "HALTED" in rep.get(58, ""), rep
            st = ctl("kill", "status")
            assert [k["kill_id"] for k in st["active"]] == ["e2e-1"]
            ctl("kill", "clear", "--reason", "e2e over", "--yes")
            client.new_order("A1", qty="10", price="98.50")
            rep = client.wait_app(lambda m: m.get(11) == "A1", 10)
            assert rep[150] == "0", str(sorted(rep.items()))

            # a symbol by name: resolved through the gateway's limits (AAPL is id 1)
            sym = ("kill", "trigger", "--scope", "symbol", "--reason", "sym", "--yes")
            ctl(*sym, "--name", "TSLA", code=5)
            trig = ctl(*sym, "--name", "AAPL", "--kill-id", "e2e-2")
            assert trig["applied"] is True
            (active,) = ctl("kill", "status")["active"]
            assert (active["target"]["scope"], active["target"]["scope_id"]) == ("SYMBOL", "1")
            client.new_order("S1", qty="10", price="99.00")
            client.new_order("S2", symbol="MSFT", qty="10", price="199.00")
            rep = client.wait_app(lambda m: m.get(11) == "S1", 10)
            assert rep[150] == "8" and "HALTED" in rep.get(58, ""), rep
            assert client.wait_app(lambda m: m.get(11) == "S2", 10)[150] == "0"
            ctl("kill", "clear", "--scope", "symbol", "--name", "AAPL", "--reason", "x", "--yes")
            assert ctl("kill", "status")["active"] == []

            hist = ctl("kill", "history", "--limit", "20")
            kinds = [e["kind"] for e in hist["entries"]]
            assert kinds.count("trigger") == 2 and "clear" in kinds and "ack" in kinds
            verified = ctl("kill", "verify")
            assert verified["ok"] is True and verified["records"] >= 4

            audit = ctl("audit", "--limit", "100")
            records = audit["records"]
            methods = [e["method"].rsplit("/", 1)[-1] for e in records]
            for m in ("SetLimit", "LoadLimits", "Trigger", "Clear"):
                assert m in methods, methods
            assert all(e["who"].startswith(f"uid:{os.getuid()}") for e in records), records
            assert {e["result"] for e in records} == {
                "OK",
                "FAILED_PRECONDITION",
                "INVALID_ARGUMENT",
            }
        finally:
            if client is not None:
                client.stop()
            appliance.stop()
    # The kill role captured the drill in its journal (trigger, action, ack, clear as NOTEs,
    # the command and the ack as records), and the journal verifies.
    verify = subprocess.run(
        [sys.executable, "-m", "tectra", "journal", "verify", str(root / "state/journal/kill")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
