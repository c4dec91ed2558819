"""An appliance on one host for gateway tests: the OUCH venue simulator process, a kill control
block, limits, FIX sessions and a config; the gateway runs in-process or as a role process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapters.fix.settings import Credentials
from tectra.core.config import TectraConfig, load_config
from tectra.io.killblock import KillBlock
from tectra.sim.lab import limits_toml, start_venue, stop_process

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret"

LIMITS_TOML = limits_toml(
    {"AAPL": 1, "MSFT": 2}, {"ACC1": 1, "ACC2": 2}, restricted=("GME",), description="gateway e2e"
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def venue_process(*args: str) -> Iterator[dict[str, Any]]:
    """The venue simulator (AAPL, MSFT, seeded liquidity) on an ephemeral port; yields its
    start-up JSON plus "port" and "proc"."""
    venue = start_venue(
        ("AAPL", "MSFT"), "--seed", "7", "--levels", "3", "--level-qty", "100", *args, cwd=REPO
    )
    try:
        yield {**venue.info, "port": venue.port, "proc": venue.proc}
    finally:
        stop_process(venue.proc, 10)


def write_appliance(
    root: Path,
    venue_port: int,
    *,
    sessions: int = 2,
    capture: bool = False,
    references: str = "static",
    static_refs: str = "AAPL=100.00,MSFT=200.00",
    extra: str = "",
) -> tuple[TectraConfig, list[dict[str, Any]]]:
    """Config, limits and FIX sessions under `root`; returns (config, session tables)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "limits.toml").write_text(LIMITS_TOML)
    creds = Credentials.from_password("trader", PASSWORD, iterations=1000)
    tables = []
    lines = ['store = "file"', "file_log = false", ""]
    for i in range(1, sessions + 1):
        t = {
            "session_id": i,
            "sender_comp_id": "TECTRA",
            "target_comp_id": f"CL{os.getpid() % 10000}X{i}",
            "account": f"ACC{min(i, 2)}",
            "cancel_on_disconnect": True,
        }
        tables.append(t)
        lines += [
            "[[sessions]]",
            *(f"{k} = {json.dumps(v)}" for k, v in t.items()),
            f'credentials = {{ username = "trader", password_hash = "{creds.password_hash}" }}',
            "",
        ]
    (root / "fix-sessions.toml").write_text("\n".join(lines))
    fix_port = free_port()
    (root / "tectra.toml").write_text(
        f"""
[appliance]
name = "gw-test"
state_dir = "{root / "state"}"
shm_root = "{root / "shm"}"

[roles.gateway]
metrics_port = 0

[gateway]
fix_port = {fix_port}
fix_sessions = "{root / "fix-sessions.toml"}"
venue_port = {venue_port}
limits_file = "{root / "limits.toml"}"
references = "{references}"
static_references = "{static_refs}"
capture = {"true" if capture else "false"}
{extra}
"""
    )
    config = load_config(root / "tectra.toml")
    return config, tables


def kill_block(config: TectraConfig) -> KillBlock:
    Path(config.appliance.shm_root).mkdir(parents=True, exist_ok=True)
    return KillBlock.create(
        config.kill.control_block, root=config.appliance.shm_root, exist_ok=True
    )
