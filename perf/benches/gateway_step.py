"""gateway_step: the gateway core's per-order CPU, in process, against the venue's state machine.

Path measured: `GatewayCore.apply` for one client request (the request step: enrich, tokens,
risk, order store, OUCH encode) and for the venue's answers to it (the venue step: OUCH decode,
tracker, order store, positions, risk exposure, client reports), with no sockets, FIX or
threads. The venue is `tectra.sim.ouch_venue.OuchVenue` (the simulator process's matching
engine) driven in the same thread: each request's OUCH bytes go to it, and whatever it sequenced
in answer (Accepted, Executed pairs when the stream crosses, Canceled, Replaced, rejects) is
handed back to the core as one VENUE_MESSAGE batch, as the venue link does with one socket read.

The stream mirrors `gateway_e2e`'s load generator: 80/10/10 new/cancel/replace on a random live
order, four symbols, quantities 100..1000, prices 99.00..101.00 around a static reference of
100.00 (so buys and sells cross and fill), self-match in dry-run, every other rule enabled with
limits far above the stream. Seeded: two runs do the same work.

Reported: request-step and venue-step p50/p99/p999 (CLOCK_MONOTONIC around `apply`), the
per-order CPU (both steps' mean per request), venue messages per venue step, and orders/s of the
whole loop (core + the in-process venue). A warm-up of `--warmup` requests is not measured.

Knobs: `perf/run.py gateway_step [--quick] -- --orders 20000 --warmup 2000 --seed 1`.
`--profile` prints a cProfile of the measured loop to stderr (sorted by own time).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benches._stats import latency_summary
from tectra.gateway.core import GatewayCore, GatewayCoreConfig
from tectra.gateway.tokens import GatewayTokens
from tectra.journal.capture import OpaqueBatch
from tectra.journal.format import RecordType
from tectra.risk.engine import EngineConfig, RiskEngine
from tectra.risk.limits import LimitsSpec, compile_limits
from tectra.risk.references import InMemoryReferences
from tectra.schema import (
    OrderAction,
    OrdType,
    Side,
    TimeInForce,
    encode_symbol,
    new_records,
)
from tectra.sim.ouch_venue import OuchVenue, VenueConfig

SYMBOLS = ("TECA", "TECB", "TECC", "TECD")
PX = 1_000_000  # 100.00 in 1e-4 units
TICK = 100  # 0.01
USER = "GW1"
T0 = 1_000_000_000_000

BIG = 10**12
LIMITS: dict[str, Any] = {
    "description": "gateway_step benchmark: limits the stream never reaches",
    "defaults": {
        "tick_size": "0.01",
        "max_qty": 1_000_000,
        "max_notional": BIG,
        "band_bps": 1000,
        "band_ticks": 0,
        "max_ref_age_ns": 10**12,
        "credit_limit": BIG,
        "max_position": BIG,
        "max_strategy_position": BIG,
        "session_rate_per_s": 10**9,
        "session_burst": 10**9,
        "venue_rate_per_s": 10**9,
        "venue_burst": 10**9,
    },
    "modes": {"self_match": "dry_run"},
    "instruments": {s: {"id": i} for i, s in enumerate(SYMBOLS, 1)},
    "accounts": {"ACC1": {"id": 1}},
    "venues": {"SIM": {"id": 1}},
    "sessions": {},
    "restricted": [],
}


def parse_args(argv: Sequence[str], quick: bool) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="perf/run.py gateway_step --")
    ap.add_argument("--orders", type=int, default=3000 if quick else 20_000)
    ap.add_argument("--warmup", type=int, default=500 if quick else 2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    return ap.parse_args(list(argv))


class Loop:
    """A gateway core and the venue's state machine in one thread."""

    def __init__(self, order_capacity: int) -> None:
        self.now = T0
        refs = InMemoryReferences(64)
        limits = compile_limits(LimitsSpec.from_document(LIMITS), 1)
        risk = RiskEngine(limits, refs, EngineConfig(max_instruments=64, max_batch=1024))
        self.core = GatewayCore(
            GatewayCoreConfig(venue_id=1, session_accounts={1: 1}, order_capacity=order_capacity),
            risk,
            refs,
            GatewayTokens(None, venue="SIM", session="B1"),
        )
        self.venue = OuchVenue(VenueConfig(symbols=SYMBOLS, seed_levels=0))
        self.venue.on_login(USER, self.now)
        self.refs = refs
        self._seq = 1
        self._restamp()

    def _restamp(self) -> None:
        for iid in range(1, len(SYMBOLS) + 1):
            self.refs.set(iid, PX - TICK, PX + TICK, PX, self.now)

    def request_step(self, req: np.ndarray) -> int:
        self.now += 20_000
        t0 = time.perf_counter_ns()
        res = self.core.apply(req, self.now)
        dt = time.perf_counter_ns() - t0
        assert res is not None
        for payload in res.venue_out:
            self.venue.on_message(USER, payload, self.now)
        return dt

    def venue_step(self) -> tuple[int, int]:
        """(ns, messages) for the venue's answers so far as one batch; (0, 0) if none."""
        self.venue.poll(self.now)
        store = self.venue.store_for(USER)
        payloads = []
        while self._seq < store.next_sequence:
            data = store.get(self._seq)
            assert data is not None
            payloads.append(data)
            self._seq += 1
        if not payloads:
            return 0, 0
        batch = OpaqueBatch.from_payloads(RecordType.VENUE_MESSAGE, payloads)
        self.now += 20_000
        t0 = time.perf_counter_ns()
        self.core.apply(batch, self.now)
        return time.perf_counter_ns() - t0, len(payloads)


def requests(n: int, seed: int) -> list[np.ndarray]:
    """The load generator's mix as ORDER_REQUEST records (one per request)."""
    rng = random.Random(seed)
    live: list[tuple[str, int, str, int, int]] = []
    out = []
    for i in range(n):
        cl = f"S{i}"
        u = rng.random()
        r = new_records("ORDER_REQUEST", 1)
        r["ord_type"] = OrdType.LIMIT
        r["time_in_force"] = TimeInForce.DAY
        r["session_id"] = 1
        r["account"] = b"ACC1"
        r["cl_ord_id"] = cl.encode()
        if u < 0.8 or not live:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            sym = SYMBOLS[rng.randrange(len(SYMBOLS))]
            qty = 100 * (1 + rng.randrange(10))
            px = PX + TICK * (rng.randrange(201) - 100)
            live.append((cl, side, sym, qty, px))
            live = live[-10_000:]
            r["action"] = OrderAction.NEW
        else:
            j = rng.randrange(len(live))
            orig, side, sym, qty, px = live[j]
            r["orig_cl_ord_id"] = orig.encode()
            if u < 0.9:
                r["action"] = OrderAction.CANCEL
                live[j] = live[-1]
                live.pop()
                qty, px = 0, 0
            else:
                r["action"] = OrderAction.REPLACE
                qty = 100 * (1 + rng.randrange(10))
                px = PX + TICK * (rng.randrange(201) - 100)
                live[j] = (cl, side, sym, qty, px)
        r["side"] = side
        r["symbol"] = encode_symbol(sym)
        r["qty"] = qty
        r["price"] = px
        out.append(r)
    return out


def run(quick: bool = False, argv: Sequence[str] = ()) -> dict[str, Any]:
    args = parse_args(argv, quick)
    total = args.warmup + args.orders
    reqs = requests(total, args.seed)
    loop = Loop(order_capacity=2 * total + 16)
    req_ns = np.zeros(args.orders, np.int64)
    ven_ns: list[int] = []
    ven_msgs: list[int] = []
    profiler = None
    t_start = 0
    for i, req in enumerate(reqs):
        if i == args.warmup:
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            t_start = time.perf_counter_ns()
        if i % 1000 == 0:
            loop._restamp()
        dt = loop.request_step(req)
        vt, vm = loop.venue_step()
        if i >= args.warmup:
            req_ns[i - args.warmup] = dt
            if vm:
                ven_ns.append(vt)
                ven_msgs.append(vm)
    elapsed = time.perf_counter_ns() - t_start
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    ven = np.array(ven_ns, np.int64)
    return {
        "request_step": latency_summary(req_ns),
        "venue_step": latency_summary(ven),
        "venue_messages_per_step_mean": round(float(np.mean(ven_msgs)), 3),
        "core_cpu_per_order_mean_ns": round(float((req_ns.sum() + ven.sum()) / args.orders), 1),
        "loop_orders_per_s": round(args.orders / (elapsed / 1e9), 1),
        "core_counters": dict(sorted(loop.core.counters.items())),
        "setup": {
            "orders": args.orders,
            "warmup": args.warmup,
            "seed": args.seed,
            "mix": "80/10/10 new/cancel/replace, 4 symbols, 99.00..101.00, qty 100..1000",
            "venue": "tectra.sim.ouch_venue.OuchVenue in process, empty book, no band",
            "clock": "perf_counter_ns around GatewayCore.apply",
        },
    }
