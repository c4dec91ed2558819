"""The roles `tectra run ROLE` can start, by name.

A role entry takes the loaded config and returns the process exit code. Roles of later
milestones (feed, gateway, kill, journal) register here as they land; naming one that is not
built yet is a typed error, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from tectra.core.config import TectraConfig

RoleEntry = Callable[[TectraConfig], int]

PLANNED_ROLES: Final[tuple[str, ...]] = ()


class UnknownRoleError(LookupError):
    """The named role does not exist or is not part of this build."""


def _feed(config: TectraConfig) -> int:
    from tectra.feed.service import run_feed

    return run_feed(config)


def _gateway(config: TectraConfig) -> int:
    from tectra.gateway.role import run_gateway

    return run_gateway(config)


def _journal(config: TectraConfig) -> int:
    from tectra.journal.service import run_journal

    return run_journal(config)


def _mgmtd(config: TectraConfig) -> int:
    from tectra.mgmt.daemon import run_mgmtd

    return run_mgmtd(config)


def _kill(config: TectraConfig) -> int:
    from tectra.kill.role import run_kill

    return run_kill(config)


def _publisher(config: TectraConfig) -> int:
    from tectra.roles.ring_demo import run_publisher

    return run_publisher(config)


def _consumer(config: TectraConfig) -> int:
    from tectra.roles.ring_demo import run_consumer

    return run_consumer(config)


ROLES: Final[dict[str, RoleEntry]] = {
    "feed": _feed,
    "gateway": _gateway,
    "journal": _journal,
    "kill": _kill,
    "mgmtd": _mgmtd,
    "publisher": _publisher,
    "consumer": _consumer,
}


def role_entry(name: str) -> RoleEntry:
    try:
        return ROLES[name]
    except KeyError:
        if name in PLANNED_ROLES:
            raise UnknownRoleError(
                f"role {name!r} is not in this build yet; available: {', '.join(sorted(ROLES))}"
            ) from None
        raise UnknownRoleError(
            f"unknown role {name!r}; available: {', '.join(sorted(ROLES))}"
        ) from None
