"""The client side of tectra-mgmtd: channels (local socket or mutual TLS) and safe retries.

A call carries a correlation id in the `x-correlation-id` metadata. Only UNAVAILABLE and
DEADLINE_EXCEEDED are retried — the two codes after which the caller cannot know whether
the call happened — and every retry reuses the same correlation id (and the request
unchanged, so a kill trigger keeps its kill id): mgmtd's replay cache and the kill role's
kill-id check make the retry return the first answer instead of acting twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from tectra.mgmt.guard import CORRELATION_HEADER

RETRYABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class MgmtClientError(RuntimeError):
    """The call failed for good: the last gRPC code and details, and the correlation id."""

    def __init__(self, code: grpc.StatusCode, details: str, correlation_id: str, attempts: int):
        self.code = code
        self.details = details
        self.correlation_id = correlation_id
        self.attempts = attempts
        super().__init__(f"{code.name}: {details}")


@dataclass(frozen=True, slots=True)
class CallResult:
    reply: Any
    correlation_id: str
    attempts: int


def local_channel(socket_path: Path) -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{socket_path}")


def tls_channel(
    target: str, ca: Path, cert: Path, key: Path, server_name: str | None = None
) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, creds, options=options)


class MgmtClient:
    """Calls on one channel with a per-attempt deadline and bounded, idempotent retries."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.channel = channel
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep

    def call(
        self,
        stub_class: Callable[[grpc.Channel], Any],
        method: str,
        request: Any,
        *,
        correlation_id: str | None = None,
    ) -> CallResult:
        cid = correlation_id or uuid.uuid4().hex
        fn = getattr(stub_class(self.channel), method)
        attempt = 0
        while True:
            attempt += 1
            try:
                reply = fn(request, timeout=self.timeout_s, metadata=((CORRELATION_HEADER, cid),))
            except grpc.RpcError as exc:
                code = exc.code()
                if code in RETRYABLE and attempt <= self.retries:
                    self._sleep(self.backoff_s * (2 ** (attempt - 1)))
                    continue
                raise MgmtClientError(code, exc.details() or "", cid, attempt) from exc
            return CallResult(reply, cid, attempt)

    def close(self) -> None:
        self.channel.close()
