"""Triggers: each fires under its injected condition, stays quiet otherwise (boundaries too)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.io.killblock import Scope
from tectra.kill.triggers import (
    EStop,
    ExposureJump,
    LatencySpike,
    MaxDrawdown,
    MaxLoss,
    RejectRate,
    StaleMarketData,
    TriggerError,
    TriggerSet,
    TriggerSettings,
    UnknownTriggerError,
    VenueLinkDown,
)
from tectra.schema import PRICE_SCALE, KillReason

S = 1_000_000_000
T0 = 1_000 * S


def armed(threshold: float, **kw: object) -> TriggerSettings:
    return TriggerSettings(armed=True, threshold=threshold, **kw)  # type: ignore[arg-type]


@given(rejected=st.integers(0, 200), accepted=st.integers(0, 200), thr=st.integers(0, 100))
def test_reject_rate_fires_exactly_above_threshold(rejected: int, accepted: int, thr: int) -> None:
    t = RejectRate(armed(thr / 100, min_samples=1))
    t.observe(accepted, rejected, T0, Scope.VENUE, 3)
    fired = t.evaluate(T0)
    total = accepted + rejected
    expect = total > 0 and rejected / total > thr / 100
    assert bool(fired) == expect
    if fired:
        (f,) = fired
        assert (f.scope, f.scope_id, f.reason) == (Scope.VENUE, 3, KillReason.REJECT_RATE)


def test_reject_rate_window_and_min_samples() -> None:
    t = RejectRate(armed(0.5, window_s=1.0, min_samples=10))
    t.observe(0, 9, T0)
    assert not t.evaluate(T0)  # 9 < min_samples
    t.observe(0, 1, T0 + S // 2)
    assert t.evaluate(T0 + S // 2)
    # the window is (now - 1s, now]: at T0 + 1s the first batch has left it
    t2 = RejectRate(armed(0.5, window_s=1.0, min_samples=1))
    t2.observe(0, 5, T0)
    t2.observe(10, 0, T0 + S // 2)
    assert not t2.evaluate(T0 + S // 2)  # 5/15
    assert not t2.evaluate(T0 + S)  # only the accepts remain


@given(age_ms=st.integers(0, 5000), thr_ms=st.integers(0, 5000))
def test_stale_md_fires_when_age_exceeds_threshold(age_ms: int, thr_ms: int) -> None:
    t = StaleMarketData(armed(thr_ms / 1000))
    t.observe(T0, Scope.SYMBOL, 42)
    fired = t.evaluate(T0 + age_ms * 1_000_000)
    assert bool(fired) == (age_ms > thr_ms)
    if fired:
        assert fired[0].scope_id == 42 and fired[0].value == pytest.approx(age_ms / 1000)


def test_stale_md_refresh_clears_and_refires() -> None:
    t = StaleMarketData(armed(1.0))
    t.observe(T0, Scope.VENUE, 1)
    assert t.evaluate(T0 + 2 * S)
    assert not t.evaluate(T0 + 3 * S)  # latched: one firing per episode
    t.observe(T0 + 3 * S, Scope.VENUE, 1)
    assert not t.evaluate(T0 + 3 * S)
    assert t.evaluate(T0 + 5 * S)
    assert t.fired == 2


@settings(max_examples=50)
@given(
    samples=st.lists(st.integers(0, 10_000_000), min_size=1, max_size=300),
    thr_us=st.integers(0, 10_000),
)
def test_latency_p99_over_threshold(samples: list[int], thr_us: int) -> None:
    import numpy as np

    t = LatencySpike(armed(thr_us / 1e6, min_samples=1))
    t.observe(samples, T0)
    p99 = float(np.percentile(np.array(samples), 99, method="higher"))
    assert bool(t.evaluate(T0)) == (p99 > thr_us * 1000)


def test_latency_needs_min_samples_and_forgets_old_ones() -> None:
    t = LatencySpike(armed(0.001, min_samples=100, window_s=1.0))
    t.observe([5_000_000] * 99, T0)
    assert not t.evaluate(T0)
    t.observe([5_000_000], T0 + 1)
    assert t.evaluate(T0 + 1)
    assert not t.evaluate(T0 + 2 * S)  # the window emptied: quiet, and unlatched
    t.observe([10] * 100, T0 + 2 * S)
    assert not t.evaluate(T0 + 2 * S)


@given(jump=st.integers(0, 2_000_000), thr=st.integers(0, 2_000_000))
def test_exposure_jump_within_window(jump: int, thr: int) -> None:
    t = ExposureJump(armed(thr / 1))  # currency
    base = 5_000_000 * PRICE_SCALE
    t.observe(base, T0, Scope.ACCOUNT, 1)
    t.observe(base + jump * PRICE_SCALE, T0 + S // 2, Scope.ACCOUNT, 1)
    assert bool(t.evaluate(T0 + S // 2)) == (jump > thr)


def test_exposure_slow_drift_outside_window_is_quiet() -> None:
    t = ExposureJump(armed(100.0, window_s=1.0))
    for i in range(10):  # +60 per second for 10 s: never 100 within a second
        t.observe(i * 60 * PRICE_SCALE, T0 + i * S)
        assert not t.evaluate(T0 + i * S)
    t.observe(9 * 60 * PRICE_SCALE + 150 * PRICE_SCALE, T0 + 9 * S + 1)
    assert t.evaluate(T0 + 9 * S + 1)


@given(down_ms=st.integers(0, 3000), grace_ms=st.integers(0, 3000))
def test_venue_down_after_grace(down_ms: int, grace_ms: int) -> None:
    t = VenueLinkDown(armed(grace_ms / 1000))
    t.observe(2, True, T0)
    assert not t.evaluate(T0 + 10 * S)
    t.observe(2, False, T0)
    fired = t.evaluate(T0 + down_ms * 1_000_000)
    assert bool(fired) == (down_ms > grace_ms)
    t.observe(2, True, T0 + 5 * S)
    assert not t.evaluate(T0 + 6 * S)


@given(pnl=st.integers(-100_000, 100_000), limit=st.integers(0, 100_000))
def test_max_loss(pnl: int, limit: int) -> None:
    t = MaxLoss(armed(float(limit)))
    t.observe(pnl * PRICE_SCALE, T0, Scope.STRATEGY, 5)
    fired = t.evaluate(T0)
    assert bool(fired) == (-pnl > limit)
    if fired:
        assert (fired[0].scope, fired[0].scope_id) == (Scope.STRATEGY, 5)


@given(
    path=st.lists(st.integers(-50_000, 50_000), min_size=1, max_size=30),
    limit=st.integers(0, 60_000),
)
def test_max_drawdown_peak_to_current(path: list[int], limit: int) -> None:
    t = MaxDrawdown(armed(float(limit)))
    peak = path[0]
    ever = False
    for i, p in enumerate(path):
        t.observe(p * PRICE_SCALE, T0 + i, Scope.ACCOUNT, 1)
        peak = max(peak, p)
        fired = t.evaluate(T0 + i)
        over = peak - p > limit
        if fired:
            assert over
        ever |= over
    assert (t.fired > 0) == ever


def test_estop_fires_while_pressed() -> None:
    t = EStop(armed(0.0))
    assert not t.evaluate(T0)
    t.observe(True, T0)
    (f,) = t.evaluate(T0)
    assert f.scope is Scope.FIRM and f.reason is KillReason.MANUAL
    t.observe(False, T0 + 1)
    assert not t.evaluate(T0 + 1)


def test_disarmed_computes_but_never_fires_and_dry_run_is_marked() -> None:
    t = MaxLoss(TriggerSettings(armed=False, threshold=10.0))
    t.observe(-20 * PRICE_SCALE, T0, Scope.ACCOUNT, 1)
    assert not t.evaluate(T0)
    assert t.status().value == pytest.approx(20.0)
    t.arm(True, dry_run=True)
    (f,) = t.evaluate(T0)
    assert f.dry_run and f.kill_id == f"max_loss:account:1:{T0}"


def test_trigger_set_by_name_and_bad_input_is_typed() -> None:
    ts = TriggerSet.from_settings({"max_loss": armed(1.0)})
    assert ts.get("max_loss").settings.armed
    with pytest.raises(UnknownTriggerError):
        ts.arm("nope", True)
    with pytest.raises(UnknownTriggerError):
        TriggerSet.from_settings({"nope": armed(1.0)})
    with pytest.raises(TriggerError):
        ts.reject_rate.observe(-1, 0, T0)
    with pytest.raises(TriggerError):
        ts.max_loss.observe(1, T0, Scope.SYMBOL, 1)
    with pytest.raises(TriggerError):
        ts.latency.observe([-1], T0)
    with pytest.raises(TriggerError):
        TriggerSettings(threshold=-1.0)
    assert [s.name for s in ts.status()][:2] == ["estop", "reject_rate"]
