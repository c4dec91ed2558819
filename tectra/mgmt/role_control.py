"""The RoleControl gRPC service every role process serves on a unix socket, and its client.

The server side answers from a snapshot callable owned by the role's shell, so the servicer
never reaches into a component; the client side is what tectractl and tectra-mgmtd use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path

import grpc

from tectra.mgmt.v1 import role_pb2, role_pb2_grpc

StatusSnapshot = Callable[[], role_pb2.RoleStatus]
ServiceAdder = Callable[[grpc.Server], None]
"""Adds a role-specific servicer (GatewayControl, KillControl, ...) to the control server."""


class RoleControlError(RuntimeError):
    """A role's control channel could not be reached or answered badly."""


class _RoleControlServicer(role_pb2_grpc.RoleControlServicer):  # type: ignore[misc]
    def __init__(self, snapshot: StatusSnapshot) -> None:
        self._snapshot = snapshot

    def GetStatus(  # noqa: N802 - gRPC method name
        self, request: role_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> role_pb2.RoleStatus:
        return self._snapshot()


def control_socket_path(state_dir: Path, role: str) -> Path:
    """Where ROLE's control socket lives under the appliance's state directory."""
    return state_dir / "run" / f"{role}.sock"


class RoleControlServer:
    """gRPC server for one role process, bound to a unix socket (permissions: owner only)."""

    def __init__(
        self,
        socket_path: Path,
        snapshot: StatusSnapshot,
        services: Sequence[ServiceAdder] = (),
    ) -> None:
        self._path = socket_path
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        role_pb2_grpc.add_RoleControlServicer_to_server(
            _RoleControlServicer(snapshot), self._server
        )
        for add in services:
            add(self._server)

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # A socket left by a killed predecessor would make bind fail; it is ours to replace.
        self._path.unlink(missing_ok=True)
        if self._server.add_insecure_port(f"unix:{self._path}") == 0:
            raise RoleControlError(f"cannot bind control socket {self._path}")
        self._server.start()
        self._path.chmod(0o600)

    def stop(self, grace_s: float = 0.5) -> None:
        self._server.stop(grace_s).wait()
        self._path.unlink(missing_ok=True)


def fetch_status(socket_path: Path, timeout_s: float = 2.0) -> role_pb2.RoleStatus:
    """Ask the role behind SOCKET_PATH for its status; RoleControlError if unreachable."""
    if not socket_path.exists():
        raise RoleControlError(f"no control socket at {socket_path} (role not running?)")
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = role_pb2_grpc.RoleControlStub(channel)
        try:
            reply: role_pb2.RoleStatus = stub.GetStatus(role_pb2.StatusRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise RoleControlError(f"{socket_path}: {exc.code().name}: {exc.details()}") from exc
    return reply
