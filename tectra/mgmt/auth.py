"""Who is calling tectra-mgmtd: a principal from the transport, and its role from config.

Two transports, two sources of identity, neither taken from anything the caller writes:

* TCP with mutual TLS: the client certificate (verified against the configured CA by gRPC)
  and its subject CN, from the call's auth context. The role comes from `[mgmt.cert_roles]`.
* the local unix socket: the uid the kernel recorded at connect() (SO_PEERCRED, see
  `tectra.mgmt.peercred`). The role comes from `[mgmt.uid_roles]`, by user name or uid.

No identity (a connection that bypassed the front, a certificate without a CN) is None:
the caller gets UNAUTHENTICATED. An identity with no mapped role is `Role.NONE`.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc

from tectra.mgmt.peercred import PeerCred
from tectra.mgmt.rbac import Role

PeerLookup = Callable[[str], PeerCred | None]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    transport: str  # "tls" or "unix"
    name: str  # "cn:<CN>" or "uid:<uid>(<user>)"
    role: Role
    cn: str = ""
    uid: int = -1

    def to_dict(self) -> dict[str, object]:
        return {"who": self.name, "role": self.role.label, "transport": self.transport}


def user_name(uid: int) -> str:
    """The login name of UID, or "" when the passwd database has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


class RoleMap:
    """Config's identity → role tables, resolved once (user names to uids at lookup time)."""

    def __init__(self, uid_roles: Mapping[str, str], cert_roles: Mapping[str, str]) -> None:
        self._uid_roles = {k: Role.parse(v) for k, v in uid_roles.items()}
        self._cert_roles = {k: Role.parse(v) for k, v in cert_roles.items()}

    def for_uid(self, uid: int) -> Role:
        # A numeric entry wins over a name: it cannot be redirected by a passwd change.
        by_uid = self._uid_roles.get(str(uid))
        if by_uid is not None:
            return by_uid
        name = user_name(uid)
        return self._uid_roles.get(name, Role.NONE) if name else Role.NONE

    def for_cn(self, cn: str) -> Role:
        return self._cert_roles.get(cn, Role.NONE)


def _auth_value(auth: Mapping[str, list[bytes]], key: str) -> str:
    values = auth.get(key) or []
    return values[0].decode("utf-8", "replace") if values else ""


def identify(context: grpc.ServicerContext, roles: RoleMap, peers: PeerLookup) -> Principal | None:
    """The principal behind a call, or None when the transport proves nobody."""
    # grpc-stubs types the auth context as str -> bytes; it is str -> list of bytes.
    auth: Mapping[str, list[bytes]] = context.auth_context() or {}  # type: ignore[assignment]
    if _auth_value(auth, "transport_security_type") == "ssl":
        # gRPC only completes the handshake with a certificate chained to our CA
        # (require_client_auth); the CN is the identity.
        cn = _auth_value(auth, "x509_common_name")
        if not cn:
            return None
        return Principal("tls", f"cn:{cn}", roles.for_cn(cn), cn=cn)
    cred = peers(context.peer())
    if cred is None:
        return None
    user = user_name(cred.uid)
    name = f"uid:{cred.uid}({user})" if user else f"uid:{cred.uid}"
    return Principal("unix", name, roles.for_uid(cred.uid), uid=cred.uid)
