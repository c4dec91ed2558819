"""Role-based access control for tectra-mgmtd: the roles, and the one table of RPC → minimum role.

Roles are ordered (viewer < operator < risk-officer < admin): a caller may call an RPC when
its role is at least the RPC's minimum. `NONE` is an authenticated caller with no role in
the config; it may only ask who it is and whether mgmtd is healthy. An RPC missing from the
table is refused for everyone (fail closed), and a test checks every served method is listed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class Role(enum.IntEnum):
    """A caller's role; the integer order is the privilege order."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    RISK_OFFICER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        """The role's name in config files and messages (risk-officer, not RISK_OFFICER)."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> Role:
        """A role from its label; ValueError naming the known labels otherwise."""
        for role in cls:
            if role.label == text and role is not Role.NONE:
                return role
        known = ", ".join(r.label for r in cls if r is not Role.NONE)
        raise ValueError(f"unknown role {text!r}; known: {known}")


ROLE_LABELS: Final = tuple(r.label for r in Role if r is not Role.NONE)


@dataclass(frozen=True, slots=True)
class Rule:
    """What an RPC needs: a minimum role; `mutating` calls go to the audit trail."""

    minimum: Role
    mutating: bool = False


_P: Final = "/tectra.mgmt.v1."

#: The RBAC table. Keys are full gRPC method names.
RBAC_TABLE: Final[Mapping[str, Rule]] = {
    # who am I / is mgmtd alive: any authenticated caller, so a misconfigured caller can
    # find out why it is denied elsewhere.
    f"{_P}StatusService/WhoAmI": Rule(Role.NONE),
    "/grpc.health.v1.Health/Check": Rule(Role.NONE),
    "/grpc.health.v1.Health/Watch": Rule(Role.NONE),
    "/grpc.health.v1.Health/List": Rule(Role.NONE),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Rule(Role.VIEWER),
    # read-only views
    f"{_P}StatusService/GetStatus": Rule(Role.VIEWER),
    f"{_P}LimitsService/GetLimits": Rule(Role.VIEWER),
    f"{_P}KillService/GetStatus": Rule(Role.VIEWER),
    f"{_P}KillService/History": Rule(Role.VIEWER),
    f"{_P}KillService/Verify": Rule(Role.VIEWER),
    f"{_P}SessionsService/ListSessions": Rule(Role.VIEWER),
    f"{_P}PositionsService/GetPositions": Rule(Role.VIEWER),
    f"{_P}PositionsService/OrdersSummary": Rule(Role.VIEWER),
    f"{_P}MarketService/GetBook": Rule(Role.VIEWER),
    f"{_P}MetricsService/Summary": Rule(Role.VIEWER),
    # operator: stop things (an E-stop must never wait for a risk officer), drop a session
    f"{_P}KillService/Trigger": Rule(Role.OPERATOR, mutating=True),
    f"{_P}SessionsService/Disconnect": Rule(Role.OPERATOR, mutating=True),
    # risk officer: anything that loosens or re-shapes the safety net
    f"{_P}KillService/Clear": Rule(Role.RISK_OFFICER, mutating=True),
    f"{_P}KillService/Arm": Rule(Role.RISK_OFFICER, mutating=True),
    f"{_P}LimitsService/SetLimit": Rule(Role.RISK_OFFICER, mutating=True),
    f"{_P}LimitsService/LoadLimits": Rule(Role.RISK_OFFICER, mutating=True),
    # admin: the audit trail holds every caller's actions and arguments
    f"{_P}AuditService/Query": Rule(Role.ADMIN),
}


def rule_for(method: str) -> Rule | None:
    """The rule of METHOD, or None: not in the table, refused for everyone."""
    return RBAC_TABLE.get(method)


def allowed(role: Role, method: str) -> bool:
    """Whether ROLE may call METHOD (False for methods not in the table)."""
    rule = rule_for(method)
    return rule is not None and role >= rule.minimum
