"""tectractl over mgmtd: tables, --json, exit codes, mutual TLS flags, offline fallbacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tectra.mgmt import ctl
from tectra.mgmt.daemon import MgmtDaemon
from tectra.mgmt.devca import DevCaFiles
from tests.mgmt._fakes import FakeRoles

Start = Callable[..., MgmtDaemon]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ctl.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_table_and_json_and_exit_codes(
    fake_roles: FakeRoles, start_mgmtd: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(start_mgmtd(tls=False).paths.socket)
    code, out, _ = run(capsys, "--socket", sock, "status")
    assert code == 0 and "gateway" in out and "READY" in out
    fake_roles.status["feed"].lifecycle = "DEGRADED"
    code, out, _ = run(capsys, "--socket", sock, "--json", "status")
    rows = {r["role"]: r for r in json.loads(out)["roles"]}
    assert (
        code == 1 and rows["feed"]["health"] == "degraded" and json.loads(out)["source"] == "mgmtd"
    )


def test_kill_drill_through_tectractl(
    fake_roles: FakeRoles, start_mgmtd: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(start_mgmtd(tls=False).paths.socket)
    base = ("--socket", sock)
    code, _, err = run(capsys, *base, "kill", "trigger", "--reason", "drill")
    assert code == ctl.EXIT_REFUSED and "confirm" in err
    code, out, _ = run(
        capsys, *base, "kill", "trigger", "--reason", "drill", "--kill-id", "K1", "--yes"
    )
    assert code == 0 and "K1: applied" in out and "host/gateway" in out
    code, out, _ = run(capsys, *base, "--json", "kill", "status")
    assert code == 0 and json.loads(out)["active"][0]["kill_id"] == "K1"
    code, out, _ = run(
        capsys, *base, "kill", "clear", "--kill-id", "K1", "--reason", "done", "--yes"
    )
    assert code == 0 and "cleared" in out
    code, out, _ = run(capsys, *base, "kill", "verify", "--online")
    assert code == 0 and "OK" in out
    code, out, _ = run(capsys, *base, "audit", "--method", "Kill")
    assert code == 0 and "Trigger" in out and "Clear" in out


def test_denied_is_exit_4_and_unreachable_is_exit_3(
    fake_roles: FakeRoles, start_mgmtd: Start, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sock = str(start_mgmtd(uid_role="viewer", tls=False).paths.socket)
    code, _, err = run(capsys, "--socket", sock, "kill", "trigger", "--reason", "x", "--yes")
    assert code == ctl.EXIT_DENIED and "PERMISSION_DENIED" in err
    code, _, err = run(
        capsys,
        "--socket",
        str(tmp_path / "nope.sock"),
        "--retries",
        "1",
        "--timeout",
        "0.3",
        "--via-mgmtd" if False else "whoami",
    )
    assert code == ctl.EXIT_UNREACHABLE and "2 attempt(s)" in err


def test_mutual_tls_flags(
    fake_roles: FakeRoles,
    start_mgmtd: Start,
    dev_ca: DevCaFiles,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = start_mgmtd(uid_role=None)
    cert, key = dev_ca.clients["risk-officer"]
    tls = (
        "--target",
        f"localhost:{daemon.tls_port}",
        "--ca",
        str(dev_ca.ca),
        "--cert",
        str(cert),
        "--key",
        str(key),
    )
    code, out, _ = run(capsys, *tls, "whoami")
    assert code == 0 and "cn:risk-officer via tls: role risk-officer" in out
    code, out, _ = run(
        capsys, *tls, "limits", "set", "defaults.max_qty", "750", "--yes", "--reason", "tighten"
    )
    assert code == 0 and "1 -> 2" in out
    code, _, err = run(capsys, *tls, "audit")
    assert code == ctl.EXIT_DENIED
    code, _, err = run(capsys, "--target", "localhost:1", "whoami")
    assert code == ctl.EXIT_USAGE and "--ca" in err


def test_limits_load_export_and_views(
    fake_roles: FakeRoles, start_mgmtd: Start, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sock = ("--socket", str(start_mgmtd(tls=False).paths.socket))
    f = tmp_path / "limits.toml"
    f.write_text('description = "file"\n[defaults]\nmax_qty = 42\n')
    code, out, _ = run(capsys, *sock, "limits", "load", str(f), "--dry-run")
    assert code == 0 and "dry run" in out and fake_roles.gateway.version == 1
    code, out, _ = run(capsys, *sock, "limits", "load", str(f), "--yes")
    assert code == 0 and fake_roles.gateway.limits["defaults"]["max_qty"] == 42
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaults": {"max_qty": 0}}')
    code, out, _ = run(capsys, *sock, "limits", "load", str(bad), "--yes")
    assert code == 1 and "refused" in out
    exported = tmp_path / "out.json"
    code, _, _ = run(capsys, *sock, "limits", "export", "--out", str(exported))
    assert code == 0 and json.loads(exported.read_text())["description"] == "file"
    code, out, _ = run(capsys, *sock, "sessions", "list")
    assert code == 0 and "ACC1" in out
    code, out, _ = run(capsys, *sock, "sessions", "disconnect", "1", "--yes")
    assert code == 0 and "logged out" in out
    code, out, _ = run(capsys, *sock, "positions")
    assert code == 0 and "150.0000" in out
    code, out, _ = run(capsys, *sock, "book", "AAPL")
    assert code == 0 and "150.1000" in out
    code, _, err = run(capsys, *sock, "book", "MSFT")
    assert code == ctl.EXIT_REFUSED and "NOT_FOUND" in err


def test_status_without_mgmtd_reads_the_roles_directly(
    fake_roles: FakeRoles, state_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "t.toml"
    config.write_text(f'[appliance]\nstate_dir = "{state_dir}"\n[roles.gateway]\n[roles.kill]\n')
    code, out, err = run(capsys, "--config", str(config), "--json", "status")
    assert code == 0 and "directly" in err and json.loads(out)["source"] == "direct"


def test_kill_scope_names_resolve_through_the_limits(
    fake_roles: FakeRoles, start_mgmtd: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_roles.gateway.limits["instruments"] = {"AAPL": {"id": 7}}
    fake_roles.gateway.limits["accounts"] = {"ACC1": {"id": 3}}
    base = ("--socket", str(start_mgmtd(tls=False).paths.socket))
    trig = ("kill", "trigger", "--reason", "r", "--yes")
    code, _, err = run(capsys, *base, *trig, "--scope", "symbol", "--name", "AAPL")
    assert code == 0, err
    sent = fake_roles.kill.calls[-1][1].target
    assert (sent.scope_id, sent.scope_name) == (7, "AAPL")
    code, _, err = run(capsys, *base, *trig, "--scope", "account", "--name", "ACC1")
    assert code == 0 and fake_roles.kill.calls[-1][1].target.scope_id == 3
    # unknown names are refused before anything acts (exit 5), naming what is known
    n = len(fake_roles.kill.calls)
    code, _, err = run(capsys, *base, *trig, "--scope", "symbol", "--name", "TSLA")
    assert code == ctl.EXIT_REFUSED and "unknown symbol 'TSLA'" in err and "AAPL" in err
    code, _, err = run(capsys, *base, *trig, "--scope", "account", "--name", "AAPL")
    assert code == ctl.EXIT_REFUSED and "unknown account" in err
    clear = ("kill", "clear", "--reason", "r", "--yes", "--scope", "symbol", "--name", "NOPE")
    code, _, err = run(capsys, *base, *clear)
    assert code == ctl.EXIT_REFUSED
    assert len(fake_roles.kill.calls) == n
    # explicit ids and numeric names pass through untouched
    code, _, _ = run(capsys, *base, *trig, "--scope", "symbol", "--id", "9")
    assert code == 0 and fake_roles.kill.calls[-1][1].target.scope_id == 9
