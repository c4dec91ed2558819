"""Fixtures for the FIX tests: acceptors with a test-double sink and real quickfix clients.

quickfix keeps a process-wide registry of sessions, so every test uses CompIDs of its own.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.fix.acceptor import FixAcceptor
from adapters.fix.settings import Credentials, FixAcceptorConfig, FixSessionConfig
from tests.fix.fixsupport import FixTestClient, ImmediateSink, free_port

PASSWORD = "s3cret-pw"
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}N{next(_names)}"


class FixEnv:
    """Builds acceptors and clients under one tmp dir and stops them all at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._acceptors: list[FixAcceptor] = []
        self._clients: list[FixTestClient] = []

    def session(self, session_id: int, **kw: Any) -> FixSessionConfig:
        kw.setdefault("account", "ACC1")
        kw.setdefault("credentials", Credentials.from_password("trader", PASSWORD, iterations=1000))
        return FixSessionConfig(session_id, "TECTRA", unique("CL"), **kw)

    def acceptor_port(self) -> int:
        return free_port()

    def acceptor(
        self, *sessions: FixSessionConfig, sink: ImmediateSink | None = None, **kw: Any
    ) -> tuple[FixAcceptor, ImmediateSink]:
        sink = sink or ImmediateSink()
        config = FixAcceptorConfig(
            port=free_port(), state_dir=self.root / unique("acc"), sessions=sessions, **kw
        )
        acc = FixAcceptor(config, sink)
        sink.bind(acc)
        acc.start()
        self._acceptors.append(acc)
        return acc, sink

    def client(
        self,
        acc_or_port: FixAcceptor | int,
        session: FixSessionConfig,
        *,
        password: str | None = PASSWORD,
        username: str | None = "trader",
        start: bool = True,
        wait: bool = True,
        **kw: Any,
    ) -> FixTestClient:
        port = acc_or_port if isinstance(acc_or_port, int) else acc_or_port.port
        client = FixTestClient(
            port,
            session.target_comp_id,
            session.sender_comp_id,
            self.root / unique("cli"),
            username=username,
            password=password,
            **kw,
        )
        self._clients.append(client)
        if start:
            client.start()
            if wait:
                client.wait_logged_on()
        return client

    def close(self) -> None:
        # quickfix's engine threads wake once a second to notice a stop: stop them in parallel.
        for group in (self._clients, self._acceptors):
            threads = [threading.Thread(target=x.stop) for x in group]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)


@pytest.fixture
def fix_env(tmp_path: Path) -> Iterator[FixEnv]:
    env = FixEnv(tmp_path)
    try:
        yield env
    finally:
        env.close()
