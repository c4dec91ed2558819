"""Seeded synthetic ITCH 5.0 order flow: a trading day for many symbols as ITCH_EVENT batches.

This module owns the generator's market model and nothing about transport:

* a universe of symbols (stock locate 1..n; `symbols` is the S8 table indexed by locate) with a
  mid price each, moving by a random walk on the 0.01 tick (100 in 1e-4 units), a per-symbol
  activity weight (a few names carry most of the flow) and a trading state;
* its own book of live orders (reference, locate, side, price, remaining shares), so every
  cancel (X partial, D), execution (E, C) and replace (U) references a live order and never
  more shares than remain. Resting buys stay strictly below the mid and sells strictly above,
  so books never cross: when the mid moves through resting orders, they are executed first,
  best price and oldest order first (a sweep), which is also how prices move on a real book;
* the day's script: start of day (system events O, S, stock directory R and trading action T
  for every symbol, start of market hours Q), then flow — adds (A, F) at a geometric distance
  from the mid, deletes, partial cancels, replaces, executions walking the queue at the touch
  (E, some C at a price one tick better for the resting order), hidden trades at the mid (P)
  and occasional halts (H) that reopen through quotation-only and a halt cross (Q) — then the
  close: NOII (I) rounds, a closing cross (Q) per symbol and the end-of-day system events.

Deterministic for a seed: events are generated in fixed-size chunks whatever sizes the caller
asks for, so `next_batch` call patterns never change the stream. Vectorised per chunk (numpy
over the order book), encoded with `adapters.itch.pack_events` and its builders.
Header seq numbers the stream from 1 (the MoldUDP64 sequence number when published as one
session from the start); header ts_ns stays 0 (there is no receive time before the wire);
exch_ts_ns is the simulated exchange clock, ns since midnight.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from adapters import itch
from tectra.schema import ITCH_EVENT, new_records

__all__ = ["ORDER_DTYPE", "TICK", "FlowConfig", "ItchFlow"]

Records = npt.NDArray[np.void]
I64 = npt.NDArray[np.int64]

TICK: Final[int] = 100  # $0.01 in 1e-4 units
_NS: Final[int] = 1_000_000_000
_HOUR: Final[int] = 3600 * _NS
_B: Final[int] = ord("B")
_S: Final[int] = ord("S")

ORDER_DTYPE: Final[np.dtype[np.void]] = np.dtype(
    [
        ("order_ref", "<u8"),
        ("stock_locate", "<u2"),
        ("side", "u1"),
        ("price", "<i8"),
        ("shares", "<i8"),
    ]
)
"""A live order of the generator's book (what `ItchFlow.live_orders` returns)."""

# Flow event kinds, in the order of FlowConfig.mix.
_KINDS: Final[str] = "AFDXUECP"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowConfig:
    """Shape of the generated day. Rates are in simulated exchange time."""

    messages: int | None = None
    """Flow messages (adds, cancels, executions, ...) before the close; None: the day never
    closes. Start-of-day, sweeps, halts and the close come on top."""
    chunk: int = 8192
    """Flow events generated per step of the model (orders added in a chunk can be acted on
    from the next one)."""
    rate_per_s: float = 250_000.0
    """Mean message rate of the simulated exchange clock (exch_ts_ns spacing)."""
    mix: tuple[float, ...] = (0.40, 0.02, 0.36, 0.04, 0.08, 0.06, 0.005, 0.02)
    """Relative weights of A, F, D, X, U, E, C, P. D's weight is scaled by the book size over
    its target, which keeps the number of live orders near `orders_per_symbol` per symbol."""
    orders_per_symbol: int = 120
    price_range: tuple[float, float] = (5.0, 400.0)
    """Opening mids are log-uniform in this dollar range."""
    volatility_ticks: float = 0.6
    """Standard deviation of a symbol's mid move per chunk, in ticks (times a per-symbol
    factor between 0.5 and 2)."""
    depth_p: float = 0.35
    """Adds sit 1 + Geometric(depth_p) - 1 ticks from the mid (mean ~1/depth_p)."""
    odd_lot_p: float = 0.1
    halt_p: float = 0.0005
    """Per trading symbol per chunk: chance of a halt (H), reopened 2 to 6 chunks later."""
    mpids: tuple[str, ...] = ("TECT", "GSCO", "MSCO", "UBSS", "NITE", "VIRT")
    """Attributions of F (add with MPID) messages."""
    open_ns: int = 9 * _HOUR + 30 * 60 * _NS
    close_ns: int = 16 * _HOUR
    noii_rounds: int = 3

    def __post_init__(self) -> None:
        if self.messages is not None and self.messages < 0:
            raise ValueError("messages must be >= 0 or None")
        if self.chunk < 1 or self.rate_per_s <= 0 or self.orders_per_symbol < 1:
            raise ValueError("chunk, rate_per_s and orders_per_symbol must be positive")
        if len(self.mix) != len(_KINDS) or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError(f"mix needs {len(_KINDS)} non-negative weights ({_KINDS})")
        if not 0 < self.price_range[0] < self.price_range[1]:
            raise ValueError("price_range must be (low, high) with 0 < low < high")
        if not 0 < self.depth_p <= 1 or not 0 <= self.odd_lot_p <= 1 or not 0 <= self.halt_p <= 1:
            raise ValueError("depth_p, odd_lot_p and halt_p are probabilities")
        if not self.mpids or any(len(m) != 4 for m in self.mpids):
            raise ValueError("mpids are 4-character MPIDs")


def _symbol_names(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct tickers of 2 to 5 capital letters, drawn from the seed."""
    names: list[str] = []
    seen: set[str] = set()
    letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    while len(names) < n:
        size = int(rng.integers(2, 6))
        name = letters[rng.integers(0, 26, size)].tobytes().decode("ascii")
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


class ItchFlow:
    """A seeded ITCH 5.0 day. `next_batch(n)` returns the next n ITCH_EVENT records (raw bytes
    packed), fewer only once the day has ended (`done`)."""

    def __init__(
        self,
        seed: int,
        symbols: int | Sequence[str] = 64,
        *,
        config: FlowConfig | None = None,
        messages: int | None = None,
    ) -> None:
        cfg = config or FlowConfig()
        if messages is not None:
            cfg = dataclasses.replace(cfg, messages=messages)
        self.config = cfg
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        names = _symbol_names(rng, symbols) if isinstance(symbols, int) else list(symbols)
        if not 1 <= len(names) <= 0xFFFE:
            raise ValueError("1 to 65534 symbols")
        if len(set(names)) != len(names):
            raise ValueError("symbol names must be distinct")
        n = len(names)
        self.n_symbols = n
        self._symbols = itch.symbol_table(["", *names])  # index = stock locate
        lo, hi = np.log(cfg.price_range[0]), np.log(cfg.price_range[1])
        dollars = np.exp(rng.uniform(lo, hi, n))
        self._mid = np.zeros(n + 1, dtype=np.int64)  # 1e-4 units, on the tick
        self._mid[1:] = np.maximum(np.rint(dollars * 100).astype(np.int64), 20) * TICK
        self._vol = np.zeros(n + 1)
        self._vol[1:] = rng.uniform(0.5, 2.0, n) * cfg.volatility_ticks
        weight = 1.0 / np.arange(1, n + 1) ** 0.8  # Zipf-like: a few names carry most flow
        self._weight = np.zeros(n + 1)
        self._weight[1:] = rng.permutation(weight)
        self._state = np.full(n + 1, ord("T"), dtype=np.uint8)
        self._halt_left = np.zeros(n + 1, dtype=np.int64)
        self._orders = np.zeros(0, dtype=ORDER_DTYPE)
        self._next_ref = 1
        self._match = 1
        self._seq = 1
        self._ts = cfg.open_ns - 6 * _HOUR - 30 * 60 * _NS  # 03:00, start of messages
        self._flow_left = cfg.messages
        self._phase = "open"
        self._queue: deque[Records] = deque()
        self._queued = 0
        self._mpids = np.array([m.encode("ascii") for m in cfg.mpids], dtype="S4")
        self.type_counts: dict[str, int] = {}

    # ---- public -----------------------------------------------------------------------------

    @property
    def symbols(self) -> npt.NDArray[np.bytes_]:
        """S8 symbol table indexed by stock locate (entry 0 unused, b'')."""
        return self._symbols

    @property
    def done(self) -> bool:
        """The day has ended and every event has been handed out."""
        return self._phase == "done" and self._queued == 0

    @property
    def next_seq(self) -> int:
        """Header seq the next generated record will get (queued records included)."""
        return self._seq

    def live_orders(self) -> Records:
        """The generator's live orders (ORDER_DTYPE), as of the last generated chunk."""
        return self._orders.copy()

    def mids(self) -> I64:
        """Current mid per stock locate (1e-4 units; entry 0 unused)."""
        return self._mid.copy()

    def next_batch(self, n: int) -> Records:
        """The next `n` records of the day (fewer once it has ended)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        while self._queued < n and self._phase != "done":
            self._generate()
        take: list[Records] = []
        need = n
        while need and self._queue:
            head = self._queue[0]
            if head.size <= need:
                take.append(self._queue.popleft())
                need -= head.size
            else:
                take.append(head[:need])
                self._queue[0] = head[need:]
                need = 0
        out = np.concatenate(take) if take else new_records(ITCH_EVENT, 0)
        self._queued -= out.size
        return out

    # ---- the model --------------------------------------------------------------------------

    def _generate(self) -> None:
        if self._phase == "open":
            self._start_of_day()
            self._phase = "flow"
        elif self._phase == "flow":
            if self._flow_left is not None and self._flow_left <= 0:
                self._close()
                self._phase = "done"
                return
            k = self.config.chunk
            if self._flow_left is not None:
                k = min(k, self._flow_left)
                self._flow_left -= k
            self._flow_chunk(k)

    def _emit(self, events: Records) -> None:
        if not events.size:
            return
        events["seq"] = np.arange(self._seq, self._seq + events.size, dtype=np.uint64)
        self._seq += events.size
        self._queue.append(events)
        self._queued += events.size
        codes, counts = np.unique(events["msg_type"], return_counts=True)
        for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
            key = chr(code)
            self.type_counts[key] = self.type_counts.get(key, 0) + count

    def _clock(self, n: int) -> I64:
        """n exchange timestamps from the current clock on (exponential spacing)."""
        gaps = self._rng.exponential(_NS / self.config.rate_per_s, n).astype(np.int64)
        ts = self._ts + np.cumsum(gaps)
        if n:
            self._ts = int(ts[-1])
        return ts

    def _start_of_day(self) -> None:
        cfg = self.config
        n = self.n_symbols
        loc = np.arange(1, n + 1)
        names = self._symbols[1:]
        t0 = self._ts
        parts = [
            itch.system_event(t0, code="O"),
            itch.system_event(t0 + _HOUR, code="S"),
            itch.stock_directory(t0 + _HOUR + 1000 * loc, loc, names),
            itch.trading_action(t0 + _HOUR + 1000 * (n + loc), loc, names, state="T"),
            itch.system_event(cfg.open_ns, code="Q"),
        ]
        self._ts = cfg.open_ns
        self._emit(np.concatenate(parts))

    def _trading(self) -> npt.NDArray[np.bool_]:
        t: npt.NDArray[np.bool_] = self._state == ord("T")
        t[0] = False
        return t

    def _halts(self) -> list[Records]:
        """Reopen symbols whose halt is over (quotation only, halt cross, trading) and halt a
        few trading ones (news pending)."""
        rng = self._rng
        out: list[Records] = []
        halted = np.flatnonzero(self._state[1:] != ord("T")) + 1
        self._halt_left[halted] -= 1
        reopen = halted[self._halt_left[halted] <= 0]
        for loc in reopen.tolist():
            sym = self._symbols[loc]
            t = self._clock(3)
            cross = new_records(ITCH_EVENT, 1)
            cross["msg_type"] = ord("Q")
            cross["stock_locate"] = loc
            cross["exch_ts_ns"] = t[1]
            cross["shares"] = int(rng.integers(1, 50)) * 100
            cross["price"] = self._mid[loc]
            cross["ref2"] = self._matches(1)
            cross["aux"] = ord("H")
            itch.pack_events(cross, symbols=self._symbols)
            out += [
                itch.trading_action(t[0], loc, sym, state="Q", reason="T1"),
                cross,
                itch.trading_action(t[2], loc, sym, state="T", reason="T1"),
            ]
            self._state[loc] = ord("T")
        trading = np.flatnonzero(self._trading())
        new = trading[rng.random(trading.size) < self.config.halt_p]
        new = new[np.isin(new, reopen, invert=True)]
        for loc in new.tolist():
            out.append(
                itch.trading_action(self._clock(1), loc, self._symbols[loc], state="H", reason="T1")
            )
            self._state[loc] = ord("H")
            self._halt_left[loc] = int(rng.integers(2, 7))
        return out

    def _flow_chunk(self, k: int) -> None:
        rng = self._rng
        cfg = self.config
        halt_events = self._halts()
        trading = self._trading()
        # 1. the mids move; resting orders they pass through are executed (the sweep)
        steps = np.rint(rng.normal(0.0, 1.0, self._mid.size) * self._vol).astype(np.int64)
        steps[~trading] = 0
        self._mid = np.maximum(self._mid + steps * TICK, 20 * TICK)
        o = self._orders
        mid_of = self._mid[o["stock_locate"]]
        crossed = np.where(o["side"] == _B, o["price"] >= mid_of, o["price"] <= mid_of)
        crossed &= trading[o["stock_locate"]]
        sweep_rows = self._priority(np.flatnonzero(crossed))
        # 2. the flow's kinds; D leans against the book's size to keep it near its target
        w = np.asarray(cfg.mix, dtype=float)
        target = cfg.orders_per_symbol * max(int(trading.sum()), 1)
        w[2] *= min(o.size / target, 3.0) if o.size else 0.0
        kinds = rng.choice(len(_KINDS), size=k, p=w / w.sum())
        available = np.ones(o.size, dtype=bool)
        available[sweep_rows] = False
        live_trading = trading[o["stock_locate"]]
        # 3. executions walk the queue at the touch of the chosen book sides
        exec_slots = np.flatnonzero((kinds == 5) | (kinds == 6))
        exec_rows, exec_last = self._touch_rows(exec_slots.size, available & live_trading)
        available[exec_rows] = False
        kinds[exec_slots[exec_rows.size :]] = 0  # no book to hit: an add instead
        exec_slots = exec_slots[: exec_rows.size]
        # 4. replaces, partial cancels and deletes pick distinct live orders
        u_slots, u_rows = self._pick(kinds, 4, available & live_trading)
        available[u_rows] = False
        x_slots, x_rows = self._pick(kinds, 3, available & (o["shares"] >= 2))
        available[x_rows] = False
        d_slots, d_rows = self._pick(kinds, 2, available)
        # 5. adds (including slots that found no order to act on) and hidden trades
        add_slots = np.flatnonzero((kinds == 0) | (kinds == 1))
        p_slots = np.flatnonzero(kinds == 7)
        if not trading.any():  # everything halted: no adds or trades, only cancels
            kinds[add_slots] = -1
            kinds[p_slots] = -1
            add_slots = p_slots = add_slots[:0]
        # 6. assemble: halts, sweep, then the flow in its drawn order
        n_sweep = sweep_rows.size
        ev = new_records(ITCH_EVENT, n_sweep + k)
        ev["exch_ts_ns"] = self._clock(ev.size)
        sw = ev[:n_sweep]
        sw["msg_type"] = ord("E")
        sw["stock_locate"] = o["stock_locate"][sweep_rows]
        sw["order_ref"] = o["order_ref"][sweep_rows]
        sw["shares"] = o["shares"][sweep_rows]
        sw["ref2"] = self._matches(n_sweep)
        ev[:n_sweep] = sw
        fl = ev[n_sweep:]
        remove = np.zeros(o.size, dtype=bool)
        remove[sweep_rows] = True
        self._fill_executions(
            fl, kinds=kinds, slots=exec_slots, rows=exec_rows, last=exec_last, remove=remove
        )
        self._fill_deletes(fl, d_slots, d_rows, remove)
        self._fill_cancels(fl, x_slots, x_rows)
        new_orders = [self._fill_adds(fl, kinds, add_slots, trading)]
        new_orders.append(self._fill_replaces(fl, u_slots, u_rows, remove))
        self._fill_trades(fl, p_slots, trading)
        ev[n_sweep:] = fl
        ev = ev[np.concatenate([np.ones(n_sweep, bool), kinds >= 0])]
        itch.pack_events(ev, symbols=self._symbols, mpid=self._f_mpids(ev))
        self._orders = np.concatenate([self._orders[~remove], *new_orders])
        self._emit(np.concatenate([*halt_events, ev]) if halt_events else ev)

    # ---- pieces of a chunk ------------------------------------------------------------------

    def _priority(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """`rows` of the book in execution priority per book side: best price, then oldest."""
        o = self._orders[rows]
        signed = np.where(o["side"] == _B, -o["price"], o["price"])
        key = o["stock_locate"].astype(np.int64) * 2 + (o["side"] == _S)
        order = np.lexsort((o["order_ref"], signed, key))
        return rows[order]

    def _touch_rows(
        self, n: int, eligible: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """n executions: book sides drawn by activity, each walking its queue from the best
        order. Returns the orders hit (priority order within a side, round-robin across sides)
        and whether each is the last hit on its side (the only one that may be partial)."""
        rows = self._priority(np.flatnonzero(eligible))
        if not n or not rows.size:
            return np.zeros(0, np.intp), np.zeros(0, bool)
        o = self._orders[rows]
        key = o["stock_locate"].astype(np.int64) * 2 + (o["side"] == _S)
        keys, start, size = np.unique(key, return_index=True, return_counts=True)
        p = self._weight[keys // 2]
        chosen = self._rng.choice(keys.size, size=n, p=p / p.sum())
        chosen.sort(kind="stable")
        rank = np.arange(n) - np.searchsorted(chosen, chosen, side="left")
        ok = rank < size[chosen]
        chosen, rank = chosen[ok], rank[ok]
        hits = np.bincount(chosen, minlength=keys.size)
        last = rank == hits[chosen] - 1
        picked = rows[start[chosen] + rank]
        order = np.lexsort((chosen, rank))  # queue order within a side, sides interleaved
        return picked[order], last[order]

    def _pick(
        self, kinds: npt.NDArray[np.int64], kind: int, eligible: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Distinct random eligible orders for the slots of `kind`; slots left without an
        order become adds."""
        slots = np.flatnonzero(kinds == kind)
        pool = np.flatnonzero(eligible)
        m = min(slots.size, pool.size)
        rows = self._rng.choice(pool, size=m, replace=False) if m else pool[:0]
        kinds[slots[m:]] = 0
        return slots[:m], rows

    def _matches(self, n: int) -> npt.NDArray[np.uint64]:
        out = np.arange(self._match, self._match + n, dtype=np.uint64)
        self._match += n
        return out

    def _fill_executions(
        self,
        fl: Records,
        *,
        kinds: npt.NDArray[np.int64],
        slots: npt.NDArray[np.intp],
        rows: npt.NDArray[np.intp],
        last: npt.NDArray[np.bool_],
        remove: npt.NDArray[np.bool_],
    ) -> None:
        if not slots.size:
            return
        rng = self._rng
        o = self._orders
        remaining = o["shares"][rows]
        partial = last & (rng.random(rows.size) < 0.5) & (remaining >= 2)
        shares = np.where(partial, rng.integers(1, np.maximum(remaining, 2)), remaining)
        is_c = kinds[slots] == 6
        side = o["side"][rows]
        price = o["price"][rows]
        better = np.where(side == _B, price - TICK, price + TICK)  # better for the resting side
        is_c &= better > 0
        e = fl[slots]
        e["msg_type"] = np.where(is_c, ord("C"), ord("E"))
        kinds[slots] = np.where(is_c, 6, 5)
        e["stock_locate"] = o["stock_locate"][rows]
        e["order_ref"] = o["order_ref"][rows]
        e["shares"] = shares
        e["ref2"] = self._matches(slots.size)
        e["price"] = np.where(is_c, better, 0)
        e["aux"] = np.where(is_c, np.where(rng.random(slots.size) < 0.9, ord("Y"), ord("N")), 0)
        fl[slots] = e
        o["shares"][rows] -= shares
        remove[rows[o["shares"][rows] == 0]] = True

    def _fill_deletes(
        self,
        fl: Records,
        slots: npt.NDArray[np.intp],
        rows: npt.NDArray[np.intp],
        remove: npt.NDArray[np.bool_],
    ) -> None:
        d = fl[slots]
        d["msg_type"] = ord("D")
        d["stock_locate"] = self._orders["stock_locate"][rows]
        d["order_ref"] = self._orders["order_ref"][rows]
        fl[slots] = d
        remove[rows] = True

    def _fill_cancels(
        self, fl: Records, slots: npt.NDArray[np.intp], rows: npt.NDArray[np.intp]
    ) -> None:
        o = self._orders
        remaining = o["shares"][rows]
        cancel = self._rng.integers(1, np.maximum(remaining, 2))  # leaves at least one share
        x = fl[slots]
        x["msg_type"] = ord("X")
        x["stock_locate"] = o["stock_locate"][rows]
        x["order_ref"] = o["order_ref"][rows]
        x["shares"] = cancel
        fl[slots] = x
        o["shares"][rows] -= cancel

    def _new_prices(self, loc: I64, side: npt.NDArray[np.uint8]) -> I64:
        """Limit prices 1, 2, ... ticks from the mid on the order's side (never through it)."""
        mid = self._mid[loc]
        dist = self._rng.geometric(self.config.depth_p, loc.size).astype(np.int64)
        dist = np.minimum(dist, mid // TICK - 1)  # a buy stays above zero
        return np.where(side == _B, mid - dist * TICK, mid + dist * TICK)

    def _new_shares(self, n: int) -> I64:
        rng = self._rng
        lots = rng.geometric(0.35, n).astype(np.int64) * 100
        odd = rng.integers(1, 100, n)
        return np.where(rng.random(n) < self.config.odd_lot_p, odd, lots)

    def _draw_locates(self, n: int, trading: npt.NDArray[np.bool_]) -> I64:
        p = np.where(trading, self._weight, 0.0)
        return self._rng.choice(p.size, size=n, p=p / p.sum()).astype(np.int64)

    def _new_refs(self, n: int) -> npt.NDArray[np.uint64]:
        refs = np.arange(self._next_ref, self._next_ref + n, dtype=np.uint64)
        self._next_ref += n
        return refs

    def _fill_adds(
        self,
        fl: Records,
        kinds: npt.NDArray[np.int64],
        slots: npt.NDArray[np.intp],
        trading: npt.NDArray[np.bool_],
    ) -> Records:
        n = slots.size
        new = np.zeros(n, dtype=ORDER_DTYPE)
        if not n:
            return new
        loc = self._draw_locates(n, trading)
        side = np.where(self._rng.random(n) < 0.5, _B, _S).astype(np.uint8)
        new["order_ref"] = self._new_refs(n)
        new["stock_locate"] = loc
        new["side"] = side
        new["price"] = self._new_prices(loc, side)
        new["shares"] = self._new_shares(n)
        a = fl[slots]
        a["msg_type"] = np.where(kinds[slots] == 1, ord("F"), ord("A"))
        for name in ("order_ref", "stock_locate", "side", "price", "shares"):
            a[name] = new[name]
        fl[slots] = a
        return new

    def _fill_replaces(
        self,
        fl: Records,
        slots: npt.NDArray[np.intp],
        rows: npt.NDArray[np.intp],
        remove: npt.NDArray[np.bool_],
    ) -> Records:
        n = slots.size
        new = np.zeros(n, dtype=ORDER_DTYPE)
        if not n:
            return new
        o = self._orders
        loc = o["stock_locate"][rows].astype(np.int64)
        side = o["side"][rows]
        new["order_ref"] = self._new_refs(n)
        new["stock_locate"] = loc
        new["side"] = side
        new["price"] = self._new_prices(loc, side)
        new["shares"] = self._new_shares(n)
        u = fl[slots]
        u["msg_type"] = ord("U")
        u["stock_locate"] = loc
        u["order_ref"] = o["order_ref"][rows]
        u["ref2"] = new["order_ref"]
        u["shares"] = new["shares"]
        u["price"] = new["price"]
        fl[slots] = u
        remove[rows] = True
        return new

    def _fill_trades(
        self, fl: Records, slots: npt.NDArray[np.intp], trading: npt.NDArray[np.bool_]
    ) -> None:
        n = slots.size
        if not n:
            return
        loc = self._draw_locates(n, trading)
        p = fl[slots]
        p["msg_type"] = ord("P")
        p["stock_locate"] = loc
        p["side"] = np.where(self._rng.random(n) < 0.5, _B, _S)
        p["shares"] = self._new_shares(n)
        p["price"] = self._mid[loc]  # a hidden order inside the spread, at the mid
        p["ref2"] = self._matches(n)
        fl[slots] = p

    def _f_mpids(self, ev: Records) -> npt.NDArray[np.bytes_] | bytes:
        n_f = int((ev["msg_type"] == ord("F")).sum())
        if not n_f:  # pack_events refuses an empty MPID array; one MPID for no F is the same
            return bytes(self._mpids[0])
        return self._mpids[self._rng.integers(0, self._mpids.size, n_f)]

    def _close(self) -> None:
        """NOII rounds, a closing cross per trading symbol, then the end-of-day events."""
        cfg = self.config
        rng = self._rng
        loc = np.flatnonzero(self._trading()).astype(np.int64)
        names = self._symbols[loc]
        start = max(self._ts + 1, cfg.close_ns - 10 * 60 * _NS)
        parts: list[Records] = []
        t = start
        paired = rng.integers(1, 500, loc.size) * 100
        for _ in range(cfg.noii_rounds if loc.size else 0):
            imbalance = rng.integers(0, 200, loc.size) * 100
            direction = np.where(
                imbalance == 0, "N", np.where(rng.random(loc.size) < 0.5, "B", "S")
            )
            ref = self._mid[loc]
            near = ref + rng.integers(-2, 3, loc.size) * TICK
            far = ref + rng.integers(-5, 6, loc.size) * TICK
            times = t + np.arange(loc.size) * 1000
            parts.append(
                itch.noii(
                    times,
                    loc,
                    names,
                    paired_shares=paired,
                    imbalance_shares=imbalance,
                    direction=direction,
                    far_price=np.maximum(far, TICK),
                    near_price=np.maximum(near, TICK),
                    reference_price=ref,
                    cross_type="C",
                    price_variation=" ",
                )
            )
            t += 60 * _NS
        close = max(cfg.close_ns, t)
        if loc.size:
            cross = new_records(ITCH_EVENT, loc.size)
            cross["msg_type"] = ord("Q")
            cross["stock_locate"] = loc
            cross["exch_ts_ns"] = close + np.arange(loc.size) * 1000
            cross["shares"] = paired
            cross["price"] = self._mid[loc]
            cross["ref2"] = self._matches(loc.size)
            cross["aux"] = ord("C")
            itch.pack_events(cross, symbols=self._symbols)
            parts.append(cross)
        end = close + loc.size * 1000 + _NS
        parts += [
            itch.system_event(end, code="M"),
            itch.system_event(end + 4 * _HOUR, code="E"),
            itch.system_event(end + 4 * _HOUR + 5 * 60 * _NS, code="C"),
        ]
        self._ts = end + 4 * _HOUR + 5 * 60 * _NS
        self._emit(np.concatenate(parts))
