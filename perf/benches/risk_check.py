"""risk_check: one order at a time through every pre-trade risk rule, the gateway's path.

Setup (shared with risk_batch): 256 instruments, 32 accounts x 2 strategies, 16 sessions,
4 venues, every rule enforced with limits the stream never reaches, references fresh, so every
order runs all thirteen rules and is accepted (the verdicts are checked). Buys rest below the
reference and sells above it (no self-match), prices inside the band. Accepted orders are
released in chunks by execution reports outside the timed region (3 cancels : 1 fill), so
the open-order table stays at steady state.

Timed: `RiskEngine.check(one_order, now_ns)`, a batch of one through the Python API, with
time.perf_counter_ns just before and after the call (the order record is prepared before).
Also reported: the engine's own decision_ns (its entry to verdicts written, what the verdict
records carry). The first 5 000 orders are warm-up and not reported. risk_batch measures the
same stream in batches.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from benches._stats import latency_summary
from tectra.risk.engine import EngineConfig, RiskEngine
from tectra.risk.limits import LimitsSpec, compile_limits
from tectra.risk.references import InMemoryReferences
from tectra.schema import ExecType, OrderAction, OrdType, Side, Verdict, encode_symbol, new_records

PX = 1_000_000  # 100.00
N_INSTR, N_ACCT, N_STRAT, N_SESS, N_VENUE = 256, 32, 2, 16, 4
BIG = 10**15


def limits_document() -> dict[str, Any]:
    """Every rule enforced; limits far above what the stream reaches."""
    return {
        "defaults": {
            "tick_size": "0.01",
            "max_qty": 1_000_000,
            "max_notional": 10**12,
            "band_bps": 500,
            "band_ticks": 0,
            "max_ref_age_ns": 10_000_000_000,
            "credit_limit": 10**14,
            "max_position": BIG,
            "max_strategy_position": BIG,
            "session_rate_per_s": 10**9,
            "session_burst": 10**9,
            "venue_rate_per_s": 10**9,
            "venue_burst": 10**9,
        },
        "restricted": ["ZZZZ"],
        "instruments": {f"S{i:03d}": {"id": i} for i in range(1, N_INSTR + 1)},
        "accounts": {f"A{i}": {"id": i} for i in range(1, N_ACCT + 1)},
        "venues": {f"V{i}": {"id": i} for i in range(1, N_VENUE + 1)},
        "sessions": {f"C{i}": {"id": i} for i in range(1, N_SESS + 1)},
    }


def make_engine(max_batch: int = 4096) -> tuple[RiskEngine, InMemoryReferences]:
    limits = compile_limits(LimitsSpec.from_document(limits_document()), 1)
    refs = InMemoryReferences(1024)
    cfg = EngineConfig(
        max_accounts=128,
        max_instruments=1024,
        max_sessions=32,
        max_venues=8,
        max_orders=1 << 16,
        position_capacity=1 << 16,
        max_batch=max_batch,
    )
    return RiskEngine(limits, refs, cfg), refs


def refresh(refs: InMemoryReferences, now: int) -> None:
    table = refs.table
    table[1 : N_INSTR + 1, 0] = PX - 100
    table[1 : N_INSTR + 1, 1] = PX + 100
    table[1 : N_INSTR + 1, 2] = PX
    table[1 : N_INSTR + 1, 3] = now


def make_orders(n: int, seed: int = 1, first_id: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    o = new_records("ORDER_REQUEST", n)
    ids = np.arange(first_id, first_id + n, dtype=np.uint64)
    o["order_id"] = ids
    o["seq"] = ids
    inst = rng.integers(1, N_INSTR + 1, n)
    o["instrument_id"] = inst
    symbols = np.array([encode_symbol(f"S{i:03d}") for i in range(N_INSTR + 1)], dtype="S8")
    o["symbol"] = symbols[inst]
    o["account_id"] = rng.integers(1, N_ACCT + 1, n)
    o["strategy_id"] = rng.integers(1, N_STRAT + 1, n)
    o["session_id"] = rng.integers(1, N_SESS + 1, n)
    o["venue_id"] = rng.integers(1, N_VENUE + 1, n)
    buy = rng.random(n) < 0.5
    o["side"] = np.where(buy, Side.BUY, Side.SELL)
    ticks = rng.integers(1, 400, n) * 100  # 0.01 .. 3.99 away from the reference
    o["price"] = np.where(buy, PX - 200 - ticks, PX + 200 + ticks)
    o["qty"] = rng.integers(1, 100, n)
    o["action"] = OrderAction.NEW
    o["ord_type"] = OrdType.LIMIT
    return o


def make_reports(orders: np.ndarray) -> np.ndarray:
    """One report per order: a full fill for every fourth, a cancel for the others."""
    r = new_records("EXECUTION_REPORT", len(orders))
    for name in ("order_id", "instrument_id", "account_id", "strategy_id", "side", "price"):
        r[name] = orders[name]
    is_fill = (orders["order_id"] % 4) == 0
    r["exec_type"] = np.where(is_fill, ExecType.TRADE, ExecType.CANCELED)
    r["last_qty"] = np.where(is_fill, orders["qty"], 0)
    r["cum_qty"] = r["last_qty"]
    r["last_px"] = np.where(is_fill, orders["price"], 0)
    return r


def _pin_last_cpu() -> set[int]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(before)})
    return before


def run(quick: bool = False) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    chunk = 1024
    engine, refs = make_engine()
    now = 1_000_000_000
    refresh(refs, now)
    orders = make_orders(n + 5_000, seed=11)
    reports = make_reports(orders)
    warm = 5_000  # warm-up: page faults, caches, branch predictors (not reported)
    call_ns = np.empty(n, dtype=np.int64)
    decision_ns = np.empty(n, dtype=np.int64)
    passed = 0
    before = _pin_last_cpu()
    try:
        singles = [orders[i : i + 1] for i in range(len(orders))]
        for i, one in enumerate(singles):
            now += 1_000
            t0 = time.perf_counter_ns()
            v = engine.check(one, now)
            t1 = time.perf_counter_ns()
            passed += int(v["verdict"][0] == Verdict.PASS)
            if i >= warm:
                call_ns[i - warm] = t1 - t0
                decision_ns[i - warm] = engine.last_decision_ns
            if i % chunk == chunk - 1:  # release outside the timed region
                engine.on_execution(reports[i - chunk + 1 : i + 1])
                refresh(refs, now)
        tail = len(orders) % chunk
        if tail:
            engine.on_execution(reports[len(orders) - tail :])
    finally:
        os.sched_setaffinity(0, before)
    engine.check_invariants()
    counters = engine.counters().engine()
    pass_ratio = passed / len(orders)
    if pass_ratio < 0.999:
        raise RuntimeError(f"only {pass_ratio:.4f} of the orders passed: not every rule ran")
    return {
        "orders": n,
        "rules_per_order": 13,
        "pass_ratio": round(pass_ratio, 6),
        "check_call": latency_summary(call_ns),
        "engine_decision": latency_summary(decision_ns),
        "reports_applied": counters["reports_applied"],
        "target_p99_ns": 10_000,
        "meets_target": bool(np.percentile(call_ns, 99) < 10_000),
    }
