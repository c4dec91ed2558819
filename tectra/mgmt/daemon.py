"""tectra-mgmtd: the management daemon — one gRPC server, two authenticated ways in.

* local: `[mgmt].socket` (default STATE_DIR/run/mgmt.sock) is served by the SO_PEERCRED front
  (`tectra.mgmt.peercred`), which relays to the gRPC server's internal socket in a 0700
  directory; the caller is its uid.
* remote (`[mgmt].tls = true`): TCP with mutual TLS on listen_host:listen_port; the caller is
  its client certificate's CN.

Every call passes `tectra.mgmt.guard.Guard` (authentication, the RBAC table, audit, replay
cache). The server also carries the standard gRPC health service (grpc.health.v1; SERVING
once started, NOT_SERVING while stopping) and server reflection.

`tectra-mgmtd [--config FILE]` runs it in a role shell (lifecycle, /metrics, systemd notify,
its own RoleControl socket STATE_DIR/run/mgmtd.sock), exactly as `tectra run mgmtd` does;
`tectra-mgmtd devca --out DIR` writes a development CA and certificates.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tectra.core.config import ConfigError, TectraConfig, load_config
from tectra.core.log import get_logger
from tectra.core.metrics import MetricsRegistry
from tectra.mgmt.api import add_servicers
from tectra.mgmt.audit import AuditError, AuditTrail
from tectra.mgmt.auth import RoleMap
from tectra.mgmt.backend import RoleBackend
from tectra.mgmt.devca import DEFAULT_CLIENTS, create_dev_ca
from tectra.mgmt.guard import Guard
from tectra.mgmt.peercred import PeerCredFront
from tectra.mgmt.v1 import mgmt_pb2

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

SERVICE_NAMES: Final = tuple(s.full_name for s in mgmt_pb2.DESCRIPTOR.services_by_name.values())


class MgmtdError(RuntimeError):
    """mgmtd cannot start: a listener, certificate or the audit trail is unusable."""


@dataclass(frozen=True, slots=True)
class MgmtPaths:
    """Where mgmtd's files are, with the `""` = default rules of `[mgmt]` applied."""

    socket: Path
    internal_dir: Path
    audit_log: Path
    tls_cert: Path
    tls_key: Path
    tls_client_ca: Path

    @classmethod
    def from_config(cls, config: TectraConfig) -> MgmtPaths:
        m = config.mgmt
        state = Path(config.appliance.state_dir)
        tls = state / "mgmt" / "tls"
        return cls(
            socket=m.socket or state / "run" / "mgmt.sock",
            internal_dir=state / "run" / "mgmtd-internal",
            audit_log=m.audit_log or state / "mgmt" / "audit.jsonl",
            tls_cert=m.tls_cert or tls / "server.pem",
            tls_key=m.tls_key or tls / "server.key",
            tls_client_ca=m.tls_client_ca or tls / "ca.pem",
        )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MgmtdError(f"cannot read {what} {path}: {exc.strerror}") from exc


def managed_roles(config: TectraConfig) -> list[str]:
    """The roles mgmtd reports on: every configured role but itself."""
    return [r for r in config.roles if r != "mgmtd"]


class MgmtDaemon:
    """The gRPC server with its listeners; `start()` then `stop()`."""

    def __init__(self, config: TectraConfig, metrics: MetricsRegistry | None = None) -> None:
        m = config.mgmt
        self.config = config
        self.paths = MgmtPaths.from_config(config)
        self.log = get_logger("mgmtd")
        try:
            self.audit = AuditTrail(self.paths.audit_log)
        except AuditError as exc:
            raise MgmtdError(str(exc)) from exc
        self.backend = RoleBackend(Path(config.appliance.state_dir), m.role_timeout_s)
        self.front = PeerCredFront(self.paths.socket, self.paths.internal_dir / "grpc.sock")
        self.guard = Guard(
            RoleMap(dict(m.uid_roles), dict(m.cert_roles)), self.front.lookup, self.audit
        )
        if metrics is not None:
            self.guard.counters.register(metrics)
            metrics.gauge_from(
                "tectra_mgmt_local_connections",
                "Open connections through mgmtd's local (SO_PEERCRED) socket.",
                self.front.open_connections,
            )
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="mgmtd"),
            interceptors=[self.guard],
        )
        add_servicers(
            self.server,
            self.backend,
            self.audit,
            appliance=config.appliance.name,
            roles=managed_roles(config),
            metrics_host=config.metrics.host,
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.tls_port = 0

    def _bind(self) -> None:
        internal = self.paths.internal_dir
        internal.mkdir(parents=True, exist_ok=True)
        # Only mgmtd's own user may reach the un-fronted socket.
        internal.chmod(0o700)
        sock = internal / "grpc.sock"
        sock.unlink(missing_ok=True)
        if self.server.add_insecure_port(f"unix:{sock}") == 0:
            raise MgmtdError(f"cannot bind internal socket {sock}")
        m = self.config.mgmt
        if m.tls:
            creds = grpc.ssl_server_credentials(
                [(_read(self.paths.tls_key, "TLS key"), _read(self.paths.tls_cert, "TLS cert"))],
                root_certificates=_read(self.paths.tls_client_ca, "client CA"),
                require_client_auth=True,
            )
            host = f"[{m.listen_host}]" if ":" in m.listen_host else m.listen_host
            try:
                self.tls_port = self.server.add_secure_port(f"{host}:{m.listen_port}", creds)
            except RuntimeError as exc:
                raise MgmtdError(f"cannot listen on {host}:{m.listen_port}: {exc}") from exc
            if self.tls_port == 0:
                raise MgmtdError(f"cannot listen on {host}:{m.listen_port}")

    def start(self) -> None:
        self._bind()
        self.server.start()
        self.front.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.log.info(
            "mgmtd listening",
            socket=str(self.paths.socket),
            tls_port=self.tls_port,
            audit=str(self.paths.audit_log),
        )

    def stop(self, grace_s: float = 1.0) -> None:
        self.health.enter_graceful_shutdown()
        self.front.stop()
        self.server.stop(grace_s).wait()
        self.backend.close()
        self.audit.close()
        (self.paths.internal_dir / "grpc.sock").unlink(missing_ok=True)


def run_mgmtd(config: TectraConfig) -> int:
    """The mgmtd role: the daemon inside a role shell, until SIGTERM."""
    from tectra.roles.shell import RoleShell

    with RoleShell("mgmtd", config, io_path="grpc") as shell:
        daemon = MgmtDaemon(config, shell.metrics)
        daemon.start()
        shell.details["socket"] = lambda: str(daemon.paths.socket)
        shell.details["tls_port"] = lambda: str(daemon.tls_port)
        shell.details["audit_log"] = lambda: str(daemon.paths.audit_log)
        shell.ready("serving the management API")
        try:
            while not shell.wait(0.5):
                shell.heartbeat()
        finally:
            daemon.stop()
    return EXIT_OK


def _cmd_devca(args: argparse.Namespace) -> int:
    files = create_dev_ca(args.out, args.client or DEFAULT_CLIENTS)
    print(f"CA          {files.ca}")
    print(f"server      {files.server_cert} {files.server_key}")
    for name, (cert, key) in files.clients.items():
        print(f"client {name:<12} {cert} {key}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    return run_mgmtd(load_config(args.config))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tectra-mgmtd", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="appliance TOML config")
    parser.set_defaults(func=_cmd_run)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="serve (the default)")
    run.set_defaults(func=_cmd_run)
    devca = sub.add_parser("devca", help="write a development CA and certificates")
    devca.add_argument("--out", type=Path, required=True, help="directory to write into")
    devca.add_argument(
        "--client", action="append", help="client CN (repeatable; default: one per role)"
    )
    devca.set_defaults(func=_cmd_devca)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"tectra-mgmtd: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MgmtdError as exc:
        print(f"tectra-mgmtd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
