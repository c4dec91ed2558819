"""Builders shared by the risk tests: a permissive limits document, small engines, order and
execution-report records."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from tectra.risk.engine import EngineConfig, RiskEngine
from tectra.risk.limits import Limits, LimitsSpec, compile_limits
from tectra.risk.references import InMemoryReferences
from tectra.schema import (
    ExecType,
    OrderAction,
    OrdType,
    Side,
    encode_symbol,
    new_records,
)

PX = 1_000_000  # 100.00 in 1e-4 units: the reference mid of AAPL in every test
NOW = 10_000_000_000  # now_ns of most tests (references are stamped at NOW)
AAPL, MSFT, TSLA = 1, 2, 3
SYMBOLS = {AAPL: "AAPL", MSFT: "MSFT", TSLA: "TSLA"}
ACC, ACC2 = 1, 2
SESSION, VENUE = 1, 1

SMALL = EngineConfig(
    max_accounts=16,
    max_instruments=64,
    max_sessions=8,
    max_venues=8,
    max_orders=512,
    position_capacity=512,
    max_batch=1024,
)


def base_doc() -> dict[str, Any]:
    """Generous limits: every rule enforced, nothing fails for the default order."""
    return {
        "description": "test limits",
        "defaults": {
            "tick_size": "0.01",
            "max_qty": 1_000_000,
            "max_notional": 1_000_000_000,
            "band_bps": 500,
            "band_ticks": 0,
            "max_ref_age_ns": 1_000_000_000,
            "credit_limit": 100_000_000_000,
            "max_position": 10_000_000,
            "max_strategy_position": 10_000_000,
            "session_rate_per_s": 1_000_000,
            "session_burst": 1_000_000,
            "venue_rate_per_s": 1_000_000,
            "venue_burst": 1_000_000,
        },
        "modes": {},
        "instruments": {
            "AAPL": {"id": AAPL},
            "MSFT": {"id": MSFT},
            "TSLA": {"id": TSLA},
        },
        "accounts": {"ACC1": {"id": ACC}, "ACC2": {"id": ACC2}},
        "venues": {"XNAS": {"id": VENUE}},
        "sessions": {"S1": {"id": SESSION}},
        "restricted": [],
    }


def doc_with(changes: Mapping[str, Any], doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `doc` (default base_doc()) with dotted paths set: {"defaults.max_qty": 5}."""
    out = copy.deepcopy(doc if doc is not None else base_doc())
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def limits_of(doc: Mapping[str, Any], version: int = 1) -> Limits:
    return compile_limits(LimitsSpec.from_document(doc), version)


def fresh_refs(now: int = NOW) -> InMemoryReferences:
    refs = InMemoryReferences(64)
    for iid in SYMBOLS:
        refs.set(iid, PX - 100, PX + 100, PX, now)
    return refs


def make_engine(
    doc: Mapping[str, Any] | None = None,
    refs: InMemoryReferences | None = None,
    config: EngineConfig = SMALL,
) -> RiskEngine:
    return RiskEngine(limits_of(doc or base_doc()), refs or fresh_refs(), config)


_ids = itertools.count(1)


def next_id() -> int:
    return next(_ids)


def orders(n: int = 1, **fields: Any) -> np.ndarray:
    """n NEW LIMIT BUY orders of 10 AAPL @ 100.00 for ACC (fields override, scalars or lists).
    Order ids are unique across the test session unless given."""
    o = new_records("ORDER_REQUEST", n)
    o["order_id"] = [next_id() for _ in range(n)]
    o["seq"] = o["order_id"]
    o["price"] = PX
    o["qty"] = 10
    o["instrument_id"] = AAPL
    o["account_id"] = ACC
    o["strategy_id"] = 7
    o["session_id"] = SESSION
    o["venue_id"] = VENUE
    o["action"] = OrderAction.NEW
    o["side"] = Side.BUY
    o["ord_type"] = OrdType.LIMIT
    for key, value in fields.items():
        o[key] = value
    if "symbol" not in fields:
        o["symbol"] = [encode_symbol(SYMBOLS.get(int(i), "ZZZZ")) for i in o["instrument_id"]]
    return o


def one(**fields: Any) -> np.ndarray:
    return orders(1, **fields)


def report(order_id: int, exec_type: ExecType, **fields: Any) -> np.ndarray:
    """One EXECUTION_REPORT for order_id (account ACC, AAPL, strategy 7, BUY unless given)."""
    r = new_records("EXECUTION_REPORT", 1)
    r["order_id"] = order_id
    r["exec_type"] = exec_type
    r["instrument_id"] = AAPL
    r["account_id"] = ACC
    r["strategy_id"] = 7
    r["side"] = Side.BUY
    for key, value in fields.items():
        r[key] = value
    return r


def fill(order_id: int, qty: int, cum: int, px: int = PX, **fields: Any) -> np.ndarray:
    return report(order_id, ExecType.TRADE, last_qty=qty, last_px=px, cum_qty=cum, **fields)


def verdict_tuple(v: np.ndarray) -> tuple[int, int, int, int]:
    """(verdict, reason_code, rule_id, dry_run) of one verdict record."""
    return int(v["verdict"]), int(v["reason_code"]), int(v["rule_id"]), int(v["dry_run"])


def exact_copy(v: np.ndarray) -> np.ndarray:
    """A writable copy including padding bytes (ndarray.copy() of a structured array with gaps
    does not promise to copy the gaps, and byte-level comparisons need them)."""
    return np.frombuffer(bytearray(v.tobytes()), dtype=v.dtype)


def strip_latency(v: np.ndarray) -> np.ndarray:
    """An exact copy with decision_ns zeroed (the only field a clock writes)."""
    out = exact_copy(v)
    out["decision_ns"] = 0
    return out


def cat(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate record arrays keeping the schema dtype (np.concatenate packs the fields of
    a dtype with gaps into a new layout, which the engine rightly refuses)."""
    out = np.zeros(sum(len(p) for p in parts), dtype=parts[0].dtype)
    i = 0
    for p in parts:
        out[i : i + len(p)] = p
        i += len(p)
    return out
