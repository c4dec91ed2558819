"""A gateway core wired to the in-process OUCH venue simulator, for the core's tests."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from tectra.gateway.core import GatewayCore, GatewayCoreConfig, StepResult
from tectra.gateway.tokens import GatewayTokens
from tectra.journal.capture import OpaqueBatch
from tectra.journal.format import RecordType
from tectra.risk.engine import EngineConfig, RiskEngine
from tectra.risk.limits import LimitsSpec, compile_limits
from tectra.risk.references import InMemoryReferences
from tectra.schema import OrderAction, OrdType, Side, TimeInForce, encode_symbol, new_records
from tectra.sim.ouch_venue import OuchVenue, VenueConfig

USER = "GW1"
PX = 1_000_000  # 100.00
T0 = 1_000_000_000_000
ACCT = "ACC1"

LIMITS: dict[str, Any] = {
    "description": "gateway core tests",
    "defaults": {
        "tick_size": "0.01",
        "max_qty": 10_000,
        "max_notional": 100_000_000,
        "band_bps": 1000,
        "band_ticks": 0,
        "max_ref_age_ns": 5_000_000_000,
        "credit_limit": 1_000_000_000,
        "max_position": 1_000_000,
        "max_strategy_position": 1_000_000,
        "session_rate_per_s": 1_000_000,
        "session_burst": 1_000_000,
        "venue_rate_per_s": 1_000_000,
        "venue_burst": 1_000_000,
    },
    "modes": {},
    "instruments": {"AAPL": {"id": 1}, "MSFT": {"id": 2}},
    "accounts": {"ACC1": {"id": 1}, "ACC2": {"id": 2}},
    "venues": {"SIM": {"id": 1}},
    "sessions": {},
    "restricted": ["GME"],
}


def limits_doc(**defaults: Any) -> dict[str, Any]:
    doc = copy.deepcopy(LIMITS)
    doc["defaults"].update(defaults)
    return doc


class Harness:
    """core <-> venue in one thread; `now` advances 1 µs per call."""

    def __init__(self, doc: dict[str, Any] | None = None, *, seed_levels: int = 3) -> None:
        self.now = T0
        self.refs = InMemoryReferences(64)
        limits = compile_limits(LimitsSpec.from_document(doc or LIMITS), 1)
        risk = RiskEngine(limits, self.refs, EngineConfig(max_instruments=64, max_batch=1024))
        self.tokens = GatewayTokens(None, venue="SIM", session="T1")
        self.core = GatewayCore(
            GatewayCoreConfig(venue_id=1, session_accounts={1: 1, 2: 2}),
            risk,
            self.refs,
            self.tokens,
        )
        self.venue = OuchVenue(
            VenueConfig(symbols=("AAPL", "MSFT"), seed_levels=seed_levels, seed_qty=100)
        )
        self.venue.seed_liquidity(self.now)
        self.venue.on_login(USER, self.now)
        self._seq = 1  # next venue sequence number to read
        self.results: list[StepResult] = []
        for iid, sym in ((1, "AAPL"), (2, "MSFT")):
            ref = self.venue.reference_prices[sym]
            self.refs.set(iid, ref - 100, ref + 100, ref, self.now)

    def tick(self) -> int:
        self.now += 1000
        return self.now

    def ref(self, symbol: str) -> int:
        return self.venue.reference_prices[symbol]

    def send(self, reqs: np.ndarray) -> StepResult:
        res = self.core.apply(reqs, self.tick())
        assert res is not None
        self.results.append(res)
        for payload in res.venue_out:
            self.venue.on_message(USER, payload, self.now)
        return res

    def apply(self, inputs: Any) -> StepResult | None:
        res = self.core.apply(inputs, self.tick())
        if res is not None:
            self.results.append(res)
            for payload in res.venue_out:
                self.venue.on_message(USER, payload, self.now)
        return res

    def pump(self) -> StepResult:
        """Deliver the venue's replies so far to the core."""
        self.venue.poll(self.now)
        store = self.venue.store_for(USER)
        payloads = []
        while self._seq < store.next_sequence:
            data = store.get(self._seq)
            assert data is not None
            payloads.append(data)
            self._seq += 1
        res = self.core.apply(
            OpaqueBatch.from_payloads(RecordType.VENUE_MESSAGE, payloads), self.tick()
        )
        assert res is not None
        self.results.append(res)
        return res


def request(
    cl: str,
    *,
    action: OrderAction = OrderAction.NEW,
    side: Side = Side.BUY,
    qty: int = 10,
    price: int = PX,
    symbol: str = "AAPL",
    session: int = 1,
    account: str = ACCT,
    orig: str = "",
) -> np.ndarray:
    """One ORDER_REQUEST as the FIX acceptor hands it to the gateway."""
    r = new_records("ORDER_REQUEST", 1)
    r["action"] = action
    r["side"] = side
    r["ord_type"] = OrdType.LIMIT
    r["time_in_force"] = TimeInForce.DAY
    r["symbol"] = encode_symbol(symbol)
    r["cl_ord_id"] = cl.encode()
    r["orig_cl_ord_id"] = orig.encode()
    r["qty"] = qty if action != OrderAction.CANCEL else 0
    r["price"] = price if action != OrderAction.CANCEL else 0
    r["session_id"] = session
    r["account"] = account.encode()
    return r
