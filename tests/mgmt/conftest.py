"""Fixtures: an appliance state dir with fake roles, a dev CA, and a running mgmtd."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tectra.core.config import TectraConfig, parse_config
from tectra.mgmt.daemon import MgmtDaemon
from tectra.mgmt.devca import DevCaFiles, create_dev_ca
from tests.mgmt._fakes import FakeRoles

CN_ROLES = {
    "viewer": "viewer",
    "operator": "operator",
    "risk-officer": "risk-officer",
    "admin": "admin",
}


def make_config(
    state_dir: Path, ca: DevCaFiles | None, uid_role: str | None, **mgmt: Any
) -> TectraConfig:
    section: dict[str, Any] = {
        "socket": str(state_dir / "run" / "mgmt.sock"),
        "uid_roles": {str(os.getuid()): uid_role} if uid_role else {},
        "cert_roles": CN_ROLES,
        "role_timeout_s": 1.0,
    }
    if ca is not None:
        section.update(
            tls=True,
            listen_host="127.0.0.1",
            listen_port=0,
            tls_cert=str(ca.server_cert),
            tls_key=str(ca.server_key),
            tls_client_ca=str(ca.ca),
        )
    section.update(mgmt)
    return parse_config(
        {
            "appliance": {"name": "test", "state_dir": str(state_dir)},
            "roles": {r: {"metrics_port": 0} for r in ("feed", "gateway", "kill", "mgmtd")},
            "mgmt": section,
        },
        "test",
    )


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory: pytest.TempPathFactory) -> DevCaFiles:
    return create_dev_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    # unix socket paths must stay under 108 bytes; pytest's tmp_path can be long.
    return tmp_path


@pytest.fixture
def fake_roles(state_dir: Path) -> Iterator[FakeRoles]:
    roles = FakeRoles(state_dir)
    yield roles
    roles.stop()


@pytest.fixture
def start_mgmtd(state_dir: Path, dev_ca: DevCaFiles) -> Iterator[Callable[..., MgmtDaemon]]:
    started: list[MgmtDaemon] = []

    def start(uid_role: str | None = "admin", tls: bool = True, **mgmt: Any) -> MgmtDaemon:
        daemon = MgmtDaemon(make_config(state_dir, dev_ca if tls else None, uid_role, **mgmt))
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for d in started:
        d.stop(0)
