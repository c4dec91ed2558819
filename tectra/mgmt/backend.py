"""How tectra-mgmtd reaches the role processes: gRPC over their control sockets.

Every role serves RoleControl on `<state_dir>/run/<role>.sock`; the gateway adds
GatewayControl, the kill role KillControl, the feed FeedControl. mgmtd keeps one channel per
role (gRPC reconnects by itself after a role restart) and gives every call the configured
deadline. A role that is not running or does not answer is `RoleUnavailableError` naming
the role and the socket; any other error the role returns is passed on with its code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tectra.mgmt.role_control import control_socket_path
from tectra.mgmt.v1 import (
    feed_pb2_grpc,
    gateway_pb2_grpc,
    kill_pb2_grpc,
    role_pb2,
    role_pb2_grpc,
)

T = TypeVar("T")

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class BackendError(RuntimeError):
    """A role answered a control call with an error (code and details kept)."""

    def __init__(self, role: str, code: grpc.StatusCode, details: str) -> None:
        self.role = role
        self.code = code
        self.details = details
        super().__init__(f"{role}: {code.name}: {details}")


class RoleUnavailableError(BackendError):
    """The role's control socket is missing or the role did not answer in time."""


class RoleBackend:
    """Channels and stubs to the roles under one state directory."""

    def __init__(self, state_dir: Path, timeout_s: float = 2.0) -> None:
        self.state_dir = state_dir
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def socket_path(self, role: str) -> Path:
        return control_socket_path(self.state_dir, role)

    def _channel(self, role: str) -> grpc.Channel:
        path = self.socket_path(role)
        if not path.exists():
            raise RoleUnavailableError(
                role, grpc.StatusCode.UNAVAILABLE, f"no control socket at {path} (not running?)"
            )
        with self._lock:
            channel = self._channels.get(role)
            if channel is None:
                channel = grpc.insecure_channel(f"unix:{path}")
                self._channels[role] = channel
            return channel

    def call(
        self, role: str, stub_class: Callable[[grpc.Channel], Any], method: str, request: Any
    ) -> Any:
        """stub_class(channel).method(request) with the deadline; errors typed as above."""
        stub = stub_class(self._channel(role))
        try:
            return getattr(stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code()
            details = exc.details() or ""
            if code in _UNREACHABLE:
                raise RoleUnavailableError(
                    role, code, f"{role} role unreachable at {self.socket_path(role)}: {details}"
                ) from exc
            raise BackendError(role, code, details) from exc

    def role_status(self, role: str) -> role_pb2.RoleStatus:
        status: role_pb2.RoleStatus = self.call(
            role, role_pb2_grpc.RoleControlStub, "GetStatus", role_pb2.StatusRequest()
        )
        return status

    def gateway(self, method: str, request: Any) -> Any:
        return self.call("gateway", gateway_pb2_grpc.GatewayControlStub, method, request)

    def kill(self, method: str, request: Any) -> Any:
        return self.call("kill", kill_pb2_grpc.KillControlStub, method, request)

    def feed(self, method: str, request: Any) -> Any:
        return self.call("feed", feed_pb2_grpc.FeedControlStub, method, request)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
