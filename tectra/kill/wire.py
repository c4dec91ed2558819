"""Kill commands and acks as they cross processes: KILL_COMMAND / KILL_ACK records, the kill-id
mapping, and where they travel (unix socket paths on a host, NATS subjects across hosts).

A command or an ack is one 128-byte schema record (`tectra.schema.KILL_COMMAND`,
`KILL_ACK`), the same bytes over a unix datagram socket and over NATS. Decoding checks the
header's type id and version and every code; a bad datagram raises `WireError` (the receiver
counts it and carries on).

Kill ids: operators and triggers name kills with strings; the control block and the records
carry a u64. `kill_id_u64` maps one to the other deterministically (BLAKE2b-64 of the UTF-8
string, never 0), so every host derives the same number from the same string.

Scopes on the wire use `tectra.schema.KillScope` (FIRM = 1 ...); in memory they are the
control block's `Scope` (FIRM = 0 ...), so `KillCommand.scope` is what `GatewayView` and
`KillActions` take.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tectra.io.killblock import Scope
from tectra.schema import (
    KILL_ACK,
    KILL_COMMAND,
    NAME_WIDTH,
    KillAckStatus,
    KillAction,
    KillReason,
    KillScope,
    SchemaError,
    decode_text,
    encode_text,
    new_records,
    view_records,
)

__all__ = [
    "ENGINE_SOCKET",
    "SUBSCRIBER_DIR",
    "KillAck",
    "KillCommand",
    "WireError",
    "ack_subject",
    "cmd_subject",
    "cmd_wildcard",
    "engine_socket_path",
    "kill_id_u64",
    "origin_of",
    "subscriber_socket_path",
    "to_block_scope",
    "to_wire_scope",
]

SUBSCRIBER_DIR: Final = "kill-subscribers"
ENGINE_SOCKET: Final = "kill-acks.sock"
MAX_NAME: Final = NAME_WIDTH


class WireError(ValueError):
    """A datagram that is not a well-formed KILL_COMMAND / KILL_ACK."""


def kill_id_u64(kill_id: str) -> int:
    """The control block's integer kill id for a string id (deterministic, never 0)."""
    if not isinstance(kill_id, str) or not kill_id:
        raise WireError("kill id must be a non-empty string")
    n = int.from_bytes(hashlib.blake2b(kill_id.encode("utf-8"), digest_size=8).digest(), "little")
    return n or 1


def to_block_scope(scope: KillScope | int) -> Scope:
    try:
        s = KillScope(scope)
    except ValueError:
        raise WireError(f"unknown scope code {scope}") from None
    if s is KillScope.NONE:
        raise WireError("scope is unspecified")
    return Scope(int(s) - 1)


def to_wire_scope(scope: Scope) -> KillScope:
    return KillScope(int(scope) + 1)


def _name(text: str, what: str) -> str:
    if not isinstance(text, str) or not 0 < len(text) <= MAX_NAME or not text.isascii():
        raise WireError(f"{what} must be 1-{MAX_NAME} ASCII characters, got {text!r}")
    return text


@dataclass(frozen=True, slots=True)
class KillCommand:
    """One command fanned out to subscribers (BLOCK, CANCEL_ALL, SLOW, ISOLATE_VENUE, CLEAR)."""

    kill_id: int
    action: KillAction
    scope: Scope
    scope_id: int
    epoch: int = 0
    ack_timeout_ns: int = 0
    slow_max_orders_per_s: int = 0
    reason: KillReason = KillReason.MANUAL
    dry_run: bool = False
    scope_key: str = ""
    issued_by: str = ""
    seq: int = 0  # the issuer's command sequence (header seq)
    sent_ns: int = 0  # CLOCK_MONOTONIC of the issuer (header ts_ns)

    def encode(self) -> bytes:
        r = new_records(KILL_COMMAND, 1)
        try:
            r["seq"] = self.seq
            r["ts_ns"] = self.sent_ns
            r["kill_id"] = self.kill_id
            r["epoch"] = self.epoch
            r["ack_timeout_ns"] = self.ack_timeout_ns
            r["scope_id"] = self.scope_id
            r["slow_max_orders_per_s"] = self.slow_max_orders_per_s
            r["scope"] = int(to_wire_scope(self.scope))
            r["action"] = int(self.action)
            r["reason_code"] = int(self.reason)
            r["dry_run"] = int(self.dry_run)
            r["scope_key"] = encode_text(self.scope_key[:NAME_WIDTH], NAME_WIDTH)
            r["issued_by"] = encode_text(self.issued_by[:32], 32)
        except (OverflowError, SchemaError, ValueError) as exc:
            raise WireError(f"cannot encode kill command: {exc}") from exc
        return r.tobytes()

    @classmethod
    def decode(cls, data: bytes) -> KillCommand:
        try:
            recs = view_records(data, KILL_COMMAND)
            if recs.shape[0] != 1:
                raise WireError(f"expected one KILL_COMMAND, got {recs.shape[0]}")
            r = recs[0]
            return cls(
                kill_id=int(r["kill_id"]),
                action=KillAction(int(r["action"])),
                scope=to_block_scope(int(r["scope"])),
                scope_id=int(r["scope_id"]),
                epoch=int(r["epoch"]),
                ack_timeout_ns=int(r["ack_timeout_ns"]),
                slow_max_orders_per_s=int(r["slow_max_orders_per_s"]),
                reason=KillReason(int(r["reason_code"])),
                dry_run=bool(r["dry_run"]),
                scope_key=decode_text(r["scope_key"]),
                issued_by=decode_text(r["issued_by"]),
                seq=int(r["seq"]),
                sent_ns=int(r["ts_ns"]),
            )
        except WireError:
            raise
        except (SchemaError, ValueError, TypeError) as exc:
            raise WireError(f"malformed KILL_COMMAND: {exc}") from exc


@dataclass(frozen=True, slots=True)
class KillAck:
    """A subscriber's report of what it did with one command (latest wins: higher seq)."""

    kill_id: int
    subscriber: str
    status: KillAckStatus
    action: KillAction
    scope: Scope
    orders_blocked: int = 0
    cancels_sent: int = 0
    cancels_confirmed: int = 0
    cancels_failed: int = 0
    epoch: int = 0
    applied_ns: int = 0
    subscriber_id: int = 0
    seq: int = 0
    sent_ns: int = 0

    @property
    def complete(self) -> bool:
        """Every cancel sent has been confirmed or has failed."""
        return self.cancels_confirmed + self.cancels_failed >= self.cancels_sent

    def encode(self) -> bytes:
        r = new_records(KILL_ACK, 1)
        try:
            r["seq"] = self.seq
            r["ts_ns"] = self.sent_ns
            r["kill_id"] = self.kill_id
            r["epoch"] = self.epoch
            r["applied_ns"] = self.applied_ns
            r["orders_blocked"] = self.orders_blocked
            r["cancels_sent"] = self.cancels_sent
            r["cancels_confirmed"] = self.cancels_confirmed
            r["cancels_failed"] = self.cancels_failed
            r["subscriber_id"] = self.subscriber_id
            r["status"] = int(self.status)
            r["action"] = int(self.action)
            r["scope"] = int(to_wire_scope(self.scope))
            r["subscriber_name"] = encode_text(_name(self.subscriber, "subscriber"), NAME_WIDTH)
        except (OverflowError, SchemaError, ValueError) as exc:
            raise WireError(f"cannot encode kill ack: {exc}") from exc
        return r.tobytes()

    @classmethod
    def decode(cls, data: bytes) -> KillAck:
        try:
            recs = view_records(data, KILL_ACK)
            if recs.shape[0] != 1:
                raise WireError(f"expected one KILL_ACK, got {recs.shape[0]}")
            r = recs[0]
            name = decode_text(r["subscriber_name"])
            return cls(
                kill_id=int(r["kill_id"]),
                subscriber=_name(name, "subscriber"),
                status=KillAckStatus(int(r["status"])),
                action=KillAction(int(r["action"])),
                scope=to_block_scope(int(r["scope"])),
                orders_blocked=int(r["orders_blocked"]),
                cancels_sent=int(r["cancels_sent"]),
                cancels_confirmed=int(r["cancels_confirmed"]),
                cancels_failed=int(r["cancels_failed"]),
                epoch=int(r["epoch"]),
                applied_ns=int(r["applied_ns"]),
                subscriber_id=int(r["subscriber_id"]),
                seq=int(r["seq"]),
                sent_ns=int(r["ts_ns"]),
            )
        except WireError:
            raise
        except (SchemaError, ValueError, TypeError) as exc:
            raise WireError(f"malformed KILL_ACK: {exc}") from exc


# -- where they travel --------------------------------------------------------------------------


def subscriber_socket_path(run_dir: Path, name: str) -> Path:
    """The datagram socket a local subscriber receives commands on."""
    return run_dir / SUBSCRIBER_DIR / f"{_name(name, 'subscriber')}.sock"


def engine_socket_path(run_dir: Path) -> Path:
    """The datagram socket the kill role receives local acks on."""
    return run_dir / ENGINE_SOCKET


class _Token(enum.StrEnum):
    CMD = "cmd"
    ACK = "ack"


def _token(text: str) -> str:
    if not text or any(c in text for c in ".*> \t"):
        raise WireError(f"{text!r} cannot be a NATS subject token")
    return text


def cmd_subject(prefix: str, appliance: str, scope: Scope) -> str:
    """Commands of APPLIANCE's kill role in SCOPE: PREFIX.<appliance>.cmd.<scope>."""
    return f"{prefix}.{_token(appliance)}.{_Token.CMD}.{scope.name.lower()}"


def cmd_wildcard(prefix: str) -> str:
    """Every appliance's commands, every scope."""
    return f"{prefix}.*.{_Token.CMD}.>"


def ack_subject(prefix: str, appliance: str) -> str:
    """Acks for APPLIANCE's kill role."""
    return f"{prefix}.{_token(appliance)}.{_Token.ACK}"


def origin_of(subject: str, prefix: str) -> str:
    """The appliance a command subject came from."""
    rest = subject[len(prefix) + 1 :] if subject.startswith(prefix + ".") else ""
    origin = rest.split(".", 1)[0]
    if not origin:
        raise WireError(f"subject {subject!r} is not under {prefix!r}")
    return origin
