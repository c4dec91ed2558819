"""`tectra-mgmtd` as a process: starts READY, serves the local socket and mutual TLS, stops on
SIGTERM; `tectra-mgmtd devca` writes usable certificates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tectra.mgmt.devca import DEFAULT_CLIENTS

MGMTD = [sys.executable, "-m", "tectra.mgmt.daemon"]
CTL = [sys.executable, "-m", "tectra.mgmt.ctl"]


def test_devca_and_a_real_mgmtd_process(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    made = subprocess.run([*MGMTD, "devca", "--out", str(ca)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    for name in ("ca", "server", *DEFAULT_CLIENTS):
        assert (ca / f"{name}.pem").exists()
    assert (ca / "admin.key").stat().st_mode & 0o777 == 0o600
    state = tmp_path / "s"
    config = tmp_path / "t.toml"
    config.write_text(
        f'[appliance]\nstate_dir = "{state}"\n[roles.mgmtd]\nmetrics_port = 0\n'
        f"[mgmt]\ntls = true\nlisten_port = 0\n"
        f'tls_cert = "{ca}/server.pem"\ntls_key = "{ca}/server.key"\n'
        f'tls_client_ca = "{ca}/ca.pem"\n'
        f'[mgmt.uid_roles]\n"{os.getuid()}" = "viewer"\n[mgmt.cert_roles]\nadmin = "admin"\n'
    )
    proc = subprocess.Popen([*MGMTD, "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        sock = state / "run" / "mgmt.sock"
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        who = subprocess.run(
            [*CTL, "--socket", str(sock), "--json", "whoami"], capture_output=True, text=True
        )
        assert who.returncode == 0, who.stderr
        assert json.loads(who.stdout)["role"] == "viewer"
        # mgmtd is a role too: its own control socket answers READY.
        st = subprocess.run(
            [
                *CTL,
                "--config",
                str(config),
                "--socket",
                str(sock),
                "--json",
                "status",
                "--role",
                "mgmtd",
            ],
            capture_output=True,
            text=True,
        )
        assert json.loads(st.stdout)["roles"][0]["lifecycle"] == "READY", st.stdout + st.stderr
        port = json.loads(st.stdout)["roles"][0]["details"]["tls_port"]
        tls = subprocess.run(
            [
                *CTL,
                "--target",
                f"localhost:{port}",
                "--ca",
                str(ca / "ca.pem"),
                "--cert",
                str(ca / "admin.pem"),
                "--key",
                str(ca / "admin.key"),
                "--json",
                "audit",
            ],
            capture_output=True,
            text=True,
        )
        assert tls.returncode == 0, tls.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert not (state / "run" / "mgmt.sock").exists()
