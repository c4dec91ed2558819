"""The rule catalogue: priority order, modes, resolution, FIX 4.4 mapping."""

from __future__ import annotations

import itertools

import pytest

from tectra._risk import lib
from tectra.risk.rules import (
    CONFIGURABLE_RULES,
    FIX_REJECT,
    NUM_RULES,
    RULES,
    FixOrdRejReason,
    Rule,
    RuleMode,
    fix_reject,
    resolve_mode,
)
from tectra.schema import RejectReason


def test_catalogue_is_in_priority_order_and_matches_c() -> None:
    assert [int(r.rule) for r in RULES] == list(range(1, NUM_RULES))
    assert NUM_RULES == lib.RK_NUM_RULES
    for info in RULES:
        assert getattr(lib, f"RK_RULE_{info.rule.name}") == int(info.rule)
        assert info.name == info.rule.name.lower()
        assert info.reasons and info.description


def test_structural_rules_take_no_mode() -> None:
    assert set(CONFIGURABLE_RULES) == {
        "restricted",
        "price_band",
        "max_qty",
        "max_notional",
        "credit",
        "position",
        "self_match",
        "throttle_session",
        "throttle_venue",
    }


def test_every_rejection_reason_maps_to_fix44() -> None:
    fix44 = set(range(16)) | {99}
    for reason in RejectReason:
        if reason == RejectReason.NONE:
            continue
        code, text = FIX_REJECT[reason]
        assert int(code) in fix44 and text
    assert fix_reject(RejectReason.CREDIT, Rule.CREDIT) == (
        FixOrdRejReason.ORDER_EXCEEDS_LIMIT,
        "risk: credit limit exceeded [credit]",
    )
    assert fix_reject(RejectReason.INVALID_SYMBOL)[0] == FixOrdRejReason.UNKNOWN_SYMBOL
    assert fix_reject(RejectReason.UNKNOWN_ORDER)[0] == FixOrdRejReason.UNKNOWN_ORDER
    assert fix_reject(RejectReason.DUPLICATE_CL_ORD_ID)[0] == FixOrdRejReason.DUPLICATE_ORDER
    assert fix_reject(200) == (FixOrdRejReason.OTHER, "risk: rejected")
    with pytest.raises(ValueError):
        fix_reject(RejectReason.NONE)


def test_every_reason_a_rule_gives_has_a_fix_mapping() -> None:
    for info in RULES:
        for reason in info.reasons:
            assert reason in FIX_REJECT


@pytest.mark.parametrize(
    ("default", "venue", "instrument"), list(itertools.product(RuleMode, repeat=3))
)
def test_resolve_mode_most_specific_wins(
    default: RuleMode, venue: RuleMode, instrument: RuleMode
) -> None:
    got = resolve_mode(default, venue, instrument)
    if instrument != RuleMode.INHERIT:
        assert got == instrument
    elif venue != RuleMode.INHERIT:
        assert got == venue
    elif default != RuleMode.INHERIT:
        assert got == default
    else:
        assert got == RuleMode.ENFORCE  # nothing set: fail closed
