"""`tectractl kill verify`: exit 0 on an intact ledger, 1 naming the line of a tampered one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tectra.kill.ledger import KillLedger

TECTRACTL = [sys.executable, "-m", "tectra.mgmt.ctl"]


def _ledger(path: Path) -> None:
    with KillLedger(path, "kill") as ledger:
        for i, kind in enumerate(("arm", "trigger", "action", "ack", "clear")):
            ledger.append(kind, "K7", "risk-officer", f"drill {i}", {"step": i}, 1_000 + i)


def test_intact_ledger_verifies_with_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _ledger(path)
    run = subprocess.run(
        [*TECTRACTL, "kill", "verify", "--ledger", str(path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 records" in run.stdout and "OK" in run.stdout


def test_tampered_ledger_fails_with_exit_1_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _ledger(path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("drill 2", "drill X")
    path.write_text("\n".join(lines) + "\n")
    run = subprocess.run(
        [*TECTRACTL, "--json", "kill", "verify", "--ledger", str(path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert report["ok"] is False
    assert any(f["line"] == 3 for f in report["findings"])
