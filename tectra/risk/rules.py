"""The rule catalogue of the pre-trade risk engine: ids, priority order, modes, reason codes and
the mapping of reasons to FIX 4.4.

This module owns:

* `Rule`: every rule, numbered in priority order. The number is `RISK_VERDICT.rule_id` and the
  row of the per-rule counters; it mirrors `RK_RULE_*` in csrc/risk.h (checked when
  `tectra.risk.engine` is imported). The first enforced rule that fails decides the reason.
* `RuleMode` and `resolve_mode`: enforce / dry-run / disabled per rule, overridden per venue and
  per instrument (most specific wins: instrument > venue > default).
* `RULES`: per rule its configuration name, the reasons it can give, whether it takes a mode,
  and what it checks (docs/risk.md is written from it).
* `FixOrdRejReason` and `fix_reject`: RejectReason -> FIX 4.4 OrdRejReason (tag 103) and Text
  (tag 58), for the FIX adapter's ExecutionReport(ExecType=Rejected).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from tectra.schema import RejectReason

__all__ = [
    "CONFIGURABLE_RULES",
    "FIX_REJECT",
    "MODE_NAMES",
    "NUM_RULES",
    "RULES",
    "RULE_BY_NAME",
    "FixOrdRejReason",
    "Rule",
    "RuleInfo",
    "RuleMode",
    "fix_reject",
    "resolve_mode",
]


class Rule(enum.IntEnum):
    """Risk rules in priority order (lower runs first). NONE: no rule decided."""

    NONE = 0
    VALIDATE = 1
    INSTRUMENT = 2
    HALT = 3
    RESTRICTED = 4
    PRICE_BAND = 5
    MAX_QTY = 6
    MAX_NOTIONAL = 7
    CREDIT = 8
    POSITION = 9
    SELF_MATCH = 10
    THROTTLE_SESSION = 11
    THROTTLE_VENUE = 12
    CAPACITY = 13


NUM_RULES: Final[int] = 14
"""Rows of every per-rule array (mode tables, counters); row 0 (Rule.NONE) is unused."""


class RuleMode(enum.IntEnum):
    """How a rule acts. INHERIT only appears in venue/instrument override tables."""

    INHERIT = 0
    ENFORCE = 1  # a failing order is rejected
    DRY_RUN = 2  # a failing order passes; the verdict records the rule and it is counted
    DISABLED = 3  # the rule does not run


MODE_NAMES: Final[Mapping[str, RuleMode]] = MappingProxyType(
    {"enforce": RuleMode.ENFORCE, "dry_run": RuleMode.DRY_RUN, "disabled": RuleMode.DISABLED}
)
"""Mode names as written in limits files and stored in SQLite."""


@dataclass(frozen=True)
class RuleInfo:
    """One rule: its id, configuration name, possible reasons, whether it takes a mode."""

    rule: Rule
    name: str
    reasons: tuple[RejectReason, ...]
    configurable: bool
    description: str


RULES: Final[tuple[RuleInfo, ...]] = (
    RuleInfo(
        Rule.VALIDATE,
        "validate",
        (RejectReason.INVALID_ORDER, RejectReason.UNKNOWN_ORDER),
        False,
        "The request can be interpreted: action, side, order type, qty > 0, limit price > 0, "
        "order id set and not already open, account/session/venue ids within the engine's "
        "capacity, strategy id not 0xFFFFFFFF; a replace names an open order of the same "
        "account, strategy, instrument and side with no replace pending, and leaves qty > 0. "
        "Cancels pass after this rule (risk never blocks a cancel).",
    ),
    RuleInfo(
        Rule.INSTRUMENT,
        "instrument",
        (RejectReason.INVALID_SYMBOL,),
        False,
        "The instrument id is configured in the limits and the order's symbol is its symbol.",
    ),
    RuleInfo(
        Rule.HALT,
        "halt",
        (RejectReason.HALTED,),
        False,
        "Neither the kill switch (the HALTED flag input) nor a halt of the instrument, venue "
        "or account is set.",
    ),
    RuleInfo(
        Rule.RESTRICTED,
        "restricted",
        (RejectReason.RESTRICTED,),
        True,
        "The instrument is not on the restricted list.",
    ),
    RuleInfo(
        Rule.PRICE_BAND,
        "price_band",
        (RejectReason.STALE_REFERENCE, RejectReason.PRICE_BANDS),
        True,
        "A reference price exists and is at most max_ref_age_ns old (else STALE_REFERENCE); "
        "a priced order is within band_bps or band_ticks of it (the wider band wins). A "
        "market order is valued at the reference and is rejected STALE_REFERENCE without one, "
        "whatever this rule's mode.",
    ),
    RuleInfo(
        Rule.MAX_QTY,
        "max_qty",
        (RejectReason.MAX_SIZE,),
        True,
        "qty <= the instrument's max_qty (and the account's, when set).",
    ),
    RuleInfo(
        Rule.MAX_NOTIONAL,
        "max_notional",
        (RejectReason.MAX_NOTIONAL,),
        True,
        "price x qty <= the instrument's max_notional (and the account's, when set). A "
        "product that overflows int64 is rejected whatever the mode.",
    ),
    RuleInfo(
        Rule.CREDIT,
        "credit",
        (RejectReason.CREDIT,),
        True,
        "The account's open + executed notional plus what the order adds <= credit_limit.",
    ),
    RuleInfo(
        Rule.POSITION,
        "position",
        (RejectReason.POSITION,),
        True,
        "Worst case after every open order of the order's side fills, the position in that "
        "direction <= max_position per (account, instrument) and <= max_strategy_position "
        "per (account, strategy, instrument).",
    ),
    RuleInfo(
        Rule.SELF_MATCH,
        "self_match",
        (RejectReason.SELF_MATCH,),
        True,
        "The order would not cross an open order of the same account on the same instrument "
        "(buy price >= lowest open sell, or sell price <= highest open buy).",
    ),
    RuleInfo(
        Rule.THROTTLE_SESSION,
        "throttle_session",
        (RejectReason.RATE_LIMIT,),
        True,
        "The client session's token bucket (rate_per_s, burst) holds a token; accepted orders "
        "spend one.",
    ),
    RuleInfo(
        Rule.THROTTLE_VENUE,
        "throttle_venue",
        (RejectReason.RATE_LIMIT,),
        True,
        "The destination venue's token bucket holds a token; accepted orders spend one.",
    ),
    RuleInfo(
        Rule.CAPACITY,
        "capacity",
        (RejectReason.QUEUE_FULL,),
        False,
        "The engine's order and position tables have room for the order (bounded state: a "
        "full table rejects, it never drops or overwrites).",
    ),
)
"""Every rule, in priority order."""

RULE_BY_NAME: Final[Mapping[str, RuleInfo]] = MappingProxyType({r.name: r for r in RULES})
CONFIGURABLE_RULES: Final[tuple[str, ...]] = tuple(r.name for r in RULES if r.configurable)
"""Rule names that limits files may give a mode."""


def resolve_mode(default: RuleMode, venue: RuleMode, instrument: RuleMode) -> RuleMode:
    """Most specific wins: an instrument override, else a venue override, else the default.

    An unset default means ENFORCE (fail closed). The C engine implements the same rule
    (`mode_of` in csrc/risk.c); this is its reference for tests and tools.
    """
    if instrument != RuleMode.INHERIT:
        return instrument
    if venue != RuleMode.INHERIT:
        return venue
    return default if default != RuleMode.INHERIT else RuleMode.ENFORCE


class FixOrdRejReason(enum.IntEnum):
    """FIX 4.4 OrdRejReason (tag 103) values."""

    BROKER_EXCHANGE_OPTION = 0
    UNKNOWN_SYMBOL = 1
    EXCHANGE_CLOSED = 2
    ORDER_EXCEEDS_LIMIT = 3
    TOO_LATE_TO_ENTER = 4
    UNKNOWN_ORDER = 5
    DUPLICATE_ORDER = 6
    DUPLICATE_OF_VERBALLY_COMMUNICATED_ORDER = 7
    STALE_ORDER = 8
    TRADE_ALONG_REQUIRED = 9
    INVALID_INVESTOR_ID = 10
    UNSUPPORTED_ORDER_CHARACTERISTIC = 11
    SURVEILLANCE_OPTION = 12
    INCORRECT_QUANTITY = 13
    INCORRECT_ALLOCATED_QUANTITY = 14
    UNKNOWN_ACCOUNT = 15
    OTHER = 99


_F = FixOrdRejReason
FIX_REJECT: Final[Mapping[RejectReason, tuple[FixOrdRejReason, str]]] = MappingProxyType(
    {
        RejectReason.INVALID_SYMBOL: (_F.UNKNOWN_SYMBOL, "unknown symbol"),
        RejectReason.PRICE_BANDS: (_F.BROKER_EXCHANGE_OPTION, "price outside the price band"),
        RejectReason.MAX_SIZE: (_F.ORDER_EXCEEDS_LIMIT, "quantity above the maximum order size"),
        RejectReason.MAX_NOTIONAL: (_F.ORDER_EXCEEDS_LIMIT, "notional above the order maximum"),
        RejectReason.CREDIT: (_F.ORDER_EXCEEDS_LIMIT, "credit limit exceeded"),
        RejectReason.POSITION: (_F.ORDER_EXCEEDS_LIMIT, "position limit exceeded"),
        RejectReason.RATE_LIMIT: (_F.OTHER, "order rate limit exceeded"),
        RejectReason.SELF_MATCH: (_F.BROKER_EXCHANGE_OPTION, "would match own resting order"),
        RejectReason.RESTRICTED: (_F.BROKER_EXCHANGE_OPTION, "symbol is restricted"),
        RejectReason.STALE_REFERENCE: (_F.OTHER, "no fresh reference price"),
        RejectReason.HALTED: (_F.EXCHANGE_CLOSED, "trading halted"),
        RejectReason.QUEUE_FULL: (_F.OTHER, "gateway at capacity"),
        RejectReason.DEGRADED: (_F.OTHER, "gateway degraded: orders not executable"),
        RejectReason.DUPLICATE_CL_ORD_ID: (_F.DUPLICATE_ORDER, "duplicate ClOrdID"),
        RejectReason.UNKNOWN_ORDER: (_F.UNKNOWN_ORDER, "unknown order"),
        RejectReason.INVALID_ORDER: (_F.UNSUPPORTED_ORDER_CHARACTERISTIC, "invalid order"),
        RejectReason.VENUE_REJECT: (_F.BROKER_EXCHANGE_OPTION, "rejected by the venue"),
        RejectReason.UNKNOWN: (_F.OTHER, "rejected"),
    }
)
"""RejectReason -> (OrdRejReason, Text) for every reason except NONE/OK."""
del _F

_RULE_NAMES: Final[Mapping[int, str]] = MappingProxyType({int(r.rule): r.name for r in RULES})


def fix_reject(reason: int, rule_id: int = 0) -> tuple[FixOrdRejReason, str]:
    """FIX 4.4 OrdRejReason (103) and Text (58) for a rejected verdict.

    The text names the deciding rule when given ("risk: credit limit exceeded [credit]").
    Unknown reason codes map to OTHER; NONE is not a rejection and raises ValueError.
    """
    try:
        code = RejectReason(int(reason))
    except ValueError:
        code = RejectReason.UNKNOWN
    if code == RejectReason.NONE:
        raise ValueError("reason NONE is not a rejection")
    fix, text = FIX_REJECT[code]
    rule = _RULE_NAMES.get(int(rule_id))
    return fix, f"risk: {text}" + (f" [{rule}]" if rule else "")
