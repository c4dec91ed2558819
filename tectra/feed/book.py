"""Order-level books for many instruments: the Python face of `csrc/book.c` (`tectra._book`).

This module owns:

* the state arrays of a book (`meta`, `orders`, `levels`, `instruments`), allocated here as
  numpy buffers and mutated only by C, with their dtypes (`ORDER_DTYPE`, `LEVEL_DTYPE`,
  `INSTRUMENT_DTYPE`) checked against the C structs at import;
* `OrderBook`: one C call per batch of `ITCH_EVENT` records (`apply`), writing the normalised
  `BOOK_UPDATE` / `TICK` / `TRADE` records into reusable output buffers; read-only queries
  (`top`, `levels`, `top_levels`, `order`, `counters`); `state_arrays` / `from_state_arrays`
  for snapshots (`tectra.feed.snapshot`); `check_invariants` (vectorised, for tests and loads).

The book is a pure state machine: the inputs carry their own times (header ts_ns = receive
time, exch_ts_ns = venue time), nothing reads a clock, so the same events give bit-identical
outputs and state. docs/books.md describes the structures, capacities and counters.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from tectra._book import ffi, lib
from tectra.schema import BOOK_UPDATE, ITCH_EVENT, TICK, TRADE, RecordLayout, Side

__all__ = [
    "COUNTER_NAMES",
    "INSTRUMENT_DTYPE",
    "LEVEL_DTYPE",
    "LEVEL_VIEW_DTYPE",
    "ORDER_DTYPE",
    "STATE_ARRAY_NAMES",
    "STATE_DTYPES",
    "BookArgumentError",
    "BookError",
    "BookOutputs",
    "BookSide",
    "BookStateError",
    "OrderBook",
    "OrderInfo",
]

Records = npt.NDArray[np.void]


class BookError(Exception):
    """Base of every order book error."""


class BookArgumentError(BookError, ValueError):
    """A bad argument at the boundary: capacity, instrument id, side, array dtype or shape."""


class BookStateError(BookError):
    """State arrays that do not form a consistent book (wrong layout, sizes or invariants)."""


class BookSide(enum.IntEnum):
    """Index of a side in the C structures (not a schema code; see `Side` for those)."""

    BID = 0
    ASK = 1


# --------------------------------------------------------------------------------------------
# State array layouts: mirrors of the C structs in csrc/book.h, verified below.
# --------------------------------------------------------------------------------------------

ORDER_DTYPE: Final = np.dtype(
    {
        "names": ["ref", "price", "shares", "instrument", "side", "reserved"],
        "formats": ["<u8", "<i8", "<u4", "<u2", "u1", "u1"],
        "offsets": [0, 8, 16, 20, 22, 23],
        "itemsize": 24,
    }
)
"""One order table slot; ref 0 = empty. side is a `BookSide` index."""

LEVEL_DTYPE: Final = np.dtype(
    {
        "names": ["price", "qty", "orders", "reserved"],
        "formats": ["<i8", "<i8", "<u4", "<u4"],
        "offsets": [0, 8, 16, 20],
        "itemsize": 24,
    }
)
"""One slot of the level arena (in a free block, qty links the free list)."""

LEVEL_VIEW_DTYPE: Final = np.dtype([("price", "<i8"), ("qty", "<i8"), ("orders", "<u4")])
"""What `OrderBook.levels` returns: one L2 level, best first."""

_SIDE_DTYPE: Final = np.dtype(
    {
        "names": ["off", "cap", "n", "reserved"],
        "formats": ["<u4", "<u4", "<u4", "<u4"],
        "offsets": [0, 4, 8, 12],
        "itemsize": 16,
    }
)

INSTRUMENT_DTYPE: Final = np.dtype(
    {
        "names": [
            "side",
            "symbol",
            "last_px",
            "last_qty",
            "top_ts_ns",
            "top_exch_ts_ns",
            "live_orders",
            "trading_state",
            "reserved",
        ],
        "formats": [
            (_SIDE_DTYPE, (2,)),
            "S8",
            "<i8",
            "<i8",
            "<i8",
            "<i8",
            "<u8",
            "u1",
            ("u1", (7,)),
        ],
        "offsets": [0, 32, 40, 48, 56, 64, 72, 80, 81],
        "itemsize": 88,
    }
)
"""Per-instrument state: a level block per side (bid, ask), symbol, last trade, top times."""

STATE_ARRAY_NAMES: Final = ("meta", "orders", "levels", "instruments")
STATE_DTYPES: Final[Mapping[str, np.dtype[Any]]] = {
    "meta": np.dtype("<u8"),
    "orders": ORDER_DTYPE,
    "levels": LEVEL_DTYPE,
    "instruments": INSTRUMENT_DTYPE,
}

COUNTER_NAMES: Final[tuple[str, ...]] = tuple(
    name[len("BK_C_") :].lower()
    for name, _ in sorted(
        ((n, getattr(lib, n)) for n in dir(lib) if n.startswith("BK_C_") and n != "BK_C_COUNT"),
        key=lambda item: int(item[1]),
    )
)
"""Counter names in C index order (from csrc/book.h's BK_C_* causes)."""


def _check_c_layouts() -> None:
    """Refuse to import if a numpy mirror drifted from its C struct (sizes and offsets)."""
    checks: list[tuple[str, np.dtype[Any], dict[str, str]]] = [
        ("bk_order_t", ORDER_DTYPE, {"reserved": "_reserved"}),
        ("bk_level_t", LEVEL_DTYPE, {"reserved": "_reserved"}),
        ("bk_side_t", _SIDE_DTYPE, {"reserved": "_reserved"}),
        ("bk_instrument_t", INSTRUMENT_DTYPE, {"reserved": "_reserved"}),
    ]
    for layout, ctype in (
        (ITCH_EVENT, "bk_itch_event_t"),
        (BOOK_UPDATE, "bk_book_update_t"),
        (TICK, "bk_tick_t"),
        (TRADE, "bk_trade_t"),
    ):
        checks.append((ctype, layout.dtype, {}))
    problems: list[str] = []
    for ctype, dt, renames in checks:
        if ffi.sizeof(ctype) != dt.itemsize:
            problems.append(f"{ctype}: C {ffi.sizeof(ctype)} bytes, numpy {dt.itemsize}")
        assert dt.fields is not None
        for name, (_sub, offset, *_rest) in dt.fields.items():
            c_name = renames.get(name, name)
            if ffi.offsetof(ctype, c_name) != offset:
                problems.append(f"{ctype}.{c_name}: C offset {ffi.offsetof(ctype, c_name)}")
    if len(COUNTER_NAMES) != lib.BK_C_COUNT:
        problems.append(f"{len(COUNTER_NAMES)} counter names for BK_C_COUNT={lib.BK_C_COUNT}")
    if problems:
        raise ImportError("tectra._book does not match tectra.feed.book: " + "; ".join(problems))


_check_c_layouts()


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookOutputs:
    """What one `OrderBook.apply` call produced, in output-sequence order per array.

    The arrays are views of the book's reusable output buffers: valid until the next `apply`
    on the same book (copy or push them to a ring before that). `consumed` < the number of
    events given only if an output buffer filled; call `apply` again with `events[consumed:]`.
    """

    consumed: int
    updates: Records  # BOOK_UPDATE
    ticks: Records  # TICK
    trades: Records  # TRADE


class OrderInfo(NamedTuple):
    """A live order as the book holds it."""

    ref: int
    instrument: int
    side: Side
    price: int
    shares: int


def _side_index(side: int | str | Side | BookSide) -> int:
    if isinstance(side, BookSide):
        return int(side)
    code = ord(side) if isinstance(side, str) and len(side) == 1 else side
    if code == Side.BUY:
        return 0
    if code == Side.SELL:
        return 1
    raise BookArgumentError(f"side must be Side.BUY or Side.SELL ('B'/'S'), got {side!r}")


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BookArgumentError(f"{name} must be an int, got {value!r}")
    if int(value) <= 0:
        raise BookArgumentError(f"{name} must be > 0, got {value}")
    return int(value)


def _records_buffer(layout: RecordLayout, n: int) -> Records:
    return _prefaulted(np.zeros(n, dtype=layout.dtype))


def _prefaulted(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Touch every page now: np.zeros maps pages lazily, and first-touch faults on the hot
    path cost a third of the first batches' throughput."""
    raw = arr.reshape(-1).view(np.uint8)
    raw[::4096] = raw[::4096]
    return arr


class OrderBook:
    """Order-level books of up to `max_instruments` instruments (ITCH stock locate = id).

    Capacities are fixed at creation (see docs/books.md for what happens when exceeded):

    * `max_orders` live orders (the hash table has at least 4/3 as many slots); an add beyond
      it is refused and counted as `order_table_full`.
    * `max_levels` price levels per side of one instrument (power of two, 8..32768); a new
      level beyond it is refused as `depth_full`.
    * `level_pool` level slots shared by all sides (default 256 per instrument, at least
      4 * max_levels; rounded up to a multiple of max_levels). Sides take power-of-two
      blocks (8 levels first, doubling as they grow) from a buddy allocator; a side that
      cannot get a block is refused as `level_pool_full`.
    * `output_capacity` events: a batch of that many always completes in one `apply` call.

    One thread at a time may call `apply`; queries read the same arrays and belong to that
    thread too (or run between batches).
    """

    __slots__ = (
        "_apply_c",
        "_b",
        "_from_buffer",
        "_instruments",
        "_levels",
        "_meta",
        "_orders",
        "_out",
        "_output_capacity",
        "_ptrs",
        "_ticks",
        "_trades",
        "_updates",
    )

    def __init__(
        self,
        max_instruments: int = 16384,
        max_orders: int = 1_000_000,
        max_levels: int = 4096,
        *,
        level_pool: int | None = None,
        output_capacity: int = 4096,
    ) -> None:
        max_instruments = _positive_int("max_instruments", max_instruments)
        max_orders = _positive_int("max_orders", max_orders)
        max_levels = _positive_int("max_levels", max_levels)
        if max_instruments > lib.BK_MAX_INSTRUMENTS:
            raise BookArgumentError(
                f"max_instruments must be <= {lib.BK_MAX_INSTRUMENTS} (ITCH stock locate is "
                f"16 bits), got {max_instruments}"
            )
        lo, hi = 1 << lib.BK_MIN_CLASS, 1 << lib.BK_MAX_CLASS
        if max_levels & (max_levels - 1) or not lo <= max_levels <= hi:
            raise BookArgumentError(
                f"max_levels must be a power of two in [{lo}, {hi}], got {max_levels}"
            )
        pool = (
            max(256 * max_instruments, 4 * max_levels)
            if level_pool is None
            else _positive_int("level_pool", level_pool)
        )
        pool = -(-pool // max_levels) * max_levels  # whole top blocks of the buddy allocator
        if pool >= lib.BK_NONE:
            raise BookArgumentError(f"level_pool must be < {lib.BK_NONE}, got {pool}")
        if max_orders >= lib.BK_FREE_MARK:
            raise BookArgumentError(f"max_orders must be < {lib.BK_FREE_MARK}, got {max_orders}")
        # Load factor <= 3/4 keeps linear-probing runs short even when the book is full.
        table_size = _next_pow2(max_orders * 4 // 3 + 1)
        meta = np.zeros(lib.BK_META_WORDS, dtype="<u8")
        rc = lib.bk_init_meta(
            ffi.from_buffer("uint64_t[]", meta),
            table_size,
            max_orders,
            pool,
            max_instruments,
            max_levels,
        )
        if rc < 0:
            raise BookArgumentError(
                f"capacities rejected by the C book: instruments={max_instruments}, "
                f"orders={max_orders}, levels={max_levels}, pool={pool}"
            )
        instruments = np.zeros(max_instruments, dtype=INSTRUMENT_DTYPE)
        lib.bk_init_instruments(ffi.from_buffer("bk_instrument_t[]", instruments), max_instruments)
        self._bind(
            meta=meta,
            orders=_prefaulted(np.zeros(table_size, dtype=ORDER_DTYPE)),
            levels=_prefaulted(np.zeros(pool, dtype=LEVEL_DTYPE)),
            instruments=instruments,
            output_capacity=output_capacity,
        )

    def _bind(
        self,
        *,
        meta: npt.NDArray[np.uint64],
        orders: Records,
        levels: Records,
        instruments: Records,
        output_capacity: int,
    ) -> None:
        cap = _positive_int("output_capacity", output_capacity)
        self._meta = meta
        self._orders = orders
        self._levels = levels
        self._instruments = instruments
        # cffi buffers must outlive the C handle that stores their addresses.
        self._ptrs = (
            ffi.from_buffer("bk_order_t[]", orders),
            ffi.from_buffer("bk_level_t[]", levels),
            ffi.from_buffer("bk_instrument_t[]", instruments),
            ffi.from_buffer("uint64_t[]", meta),
        )
        self._b = ffi.new("bk_book_t *")
        rc = lib.bk_bind(
            self._b,
            self._ptrs[0],
            orders.shape[0],
            self._ptrs[1],
            levels.shape[0],
            self._ptrs[2],
            instruments.shape[0],
            self._ptrs[3],
            meta.shape[0],
        )
        if rc < 0:
            raise BookStateError(
                "state arrays do not match their meta words (layout version, table, arena or "
                f"instrument sizes): {errno.errorcode.get(-rc, rc)}"
            )
        self._output_capacity = cap
        self._updates = _records_buffer(BOOK_UPDATE, cap * lib.BK_MAX_UPDATES_PER_EVENT)
        self._ticks = _records_buffer(TICK, cap * lib.BK_MAX_TICKS_PER_EVENT)
        self._trades = _records_buffer(TRADE, cap * lib.BK_MAX_TRADES_PER_EVENT)
        out = ffi.new("bk_out_t *")
        out.updates = ffi.from_buffer("bk_book_update_t[]", self._updates)
        out.updates_cap = self._updates.shape[0]
        out.ticks = ffi.from_buffer("bk_tick_t[]", self._ticks)
        out.ticks_cap = self._ticks.shape[0]
        out.trades = ffi.from_buffer("bk_trade_t[]", self._trades)
        out.trades_cap = self._trades.shape[0]
        self._out = (out, out.updates, out.ticks, out.trades)
        self._apply_c = lib.bk_apply
        self._from_buffer = ffi.from_buffer

    # ------------------------------------------------------------------ hot path

    def apply(self, events: Records) -> BookOutputs:
        """Apply a batch of ITCH_EVENT records in one C call (see `BookOutputs`)."""
        if (
            not isinstance(events, np.ndarray)
            or events.dtype != ITCH_EVENT.dtype
            or events.ndim != 1
            or not events.flags.c_contiguous
        ):
            raise BookArgumentError(
                "events must be a 1-D C-contiguous array of ITCH_EVENT records, got "
                f"{type(events).__name__} {getattr(events, 'dtype', None)}"
            )
        out = self._out[0]
        out.n_updates = 0
        out.n_ticks = 0
        out.n_trades = 0
        n = events.shape[0]
        ptr = self._from_buffer("bk_itch_event_t[]", events) if n else ffi.NULL
        consumed: int = self._apply_c(self._b, ptr, n, out)
        if consumed < 0:  # only on a broken binding: arguments are checked above
            raise BookError(f"bk_apply failed: {errno.errorcode.get(-consumed, consumed)}")
        return BookOutputs(
            consumed=consumed,
            updates=self._updates[: out.n_updates],
            ticks=self._ticks[: out.n_ticks],
            trades=self._trades[: out.n_trades],
        )

    def apply_all(self, events: Records) -> BookOutputs:
        """Apply every event, calling `apply` as often as the output buffers need, and return
        copies of all outputs (allocates: for replay, tests and tools, not the hot path)."""
        updates: list[Records] = []
        ticks: list[Records] = []
        trades: list[Records] = []
        done = 0
        n = int(events.shape[0]) if isinstance(events, np.ndarray) else 0
        while True:
            res = self.apply(events[done:])
            updates.append(res.updates.copy())
            ticks.append(res.ticks.copy())
            trades.append(res.trades.copy())
            done += res.consumed
            if done >= n:
                break
        return BookOutputs(
            consumed=done,
            updates=np.concatenate(updates),
            ticks=np.concatenate(ticks),
            trades=np.concatenate(trades),
        )

    # ------------------------------------------------------------------ queries

    def _instrument(self, instrument: int) -> int:
        if isinstance(instrument, bool) or not isinstance(instrument, int | np.integer):
            raise BookArgumentError(f"instrument must be an int, got {instrument!r}")
        i = int(instrument)
        if not 0 <= i < self.max_instruments:
            raise BookArgumentError(f"instrument {i} outside [0, {self.max_instruments})")
        return i

    def top(self, instrument: int) -> tuple[int, int, int, int]:
        """(bid_px, bid_qty, ask_px, ask_qty) of the best levels; an empty side is (0, 0)."""
        row = self._instruments[self._instrument(instrument)]
        out: list[int] = []
        for s in (0, 1):
            off, _cap, n = (int(x) for x in row["side"][s][["off", "cap", "n"]].tolist())
            if n:
                lv = self._levels[off + n - 1]
                out += [int(lv["price"]), int(lv["qty"])]
            else:
                out += [0, 0]
        return out[0], out[1], out[2], out[3]

    def levels(
        self, instrument: int, side: int | str | Side | BookSide, depth: int | None = None
    ) -> npt.NDArray[np.void]:
        """L2 levels of one side, best first (a copy, LEVEL_VIEW_DTYPE), at most `depth`."""
        row = self._instruments[self._instrument(instrument)]
        s = _side_index(side)
        off = int(row["side"][s]["off"])
        n = int(row["side"][s]["n"])
        if depth is not None:
            if depth < 0:
                raise BookArgumentError(f"depth must be >= 0, got {depth}")
            take = min(n, depth)
        else:
            take = n
        out = np.zeros(take, dtype=LEVEL_VIEW_DTYPE)
        if take:
            block = self._levels[off + n - take : off + n][::-1]
            for name in ("price", "qty", "orders"):
                out[name] = block[name]
        return out

    def top_levels(
        self, instruments: npt.ArrayLike, depth: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
        """(px, qty, orders) of the best `depth` levels of both sides of many instruments,
        each shaped (n, 2, depth) with side 0 = bid, 1 = ask; zero past a side's depth."""
        ids = np.ascontiguousarray(instruments, dtype=np.uint32).reshape(-1)
        if depth < 0:
            raise BookArgumentError(f"depth must be >= 0, got {depth}")
        shape = (ids.shape[0], 2, depth)
        px = np.zeros(shape, dtype=np.int64)
        qty = np.zeros(shape, dtype=np.int64)
        orders = np.zeros(shape, dtype=np.uint32)
        if ids.size and depth:
            rc = lib.bk_top_levels(
                self._b,
                ffi.from_buffer("uint32_t[]", ids),
                ids.shape[0],
                depth,
                ffi.from_buffer("int64_t[]", px),
                ffi.from_buffer("int64_t[]", qty),
                ffi.from_buffer("uint32_t[]", orders),
            )
            if rc < 0:
                raise BookArgumentError(f"an instrument id is >= {self.max_instruments}")
        return px, qty, orders

    def order(self, ref: int) -> OrderInfo | None:
        """The live order with this reference, or None."""
        if not 0 < int(ref) < 1 << 64:
            return None
        slot = int(lib.bk_find_order(self._b, int(ref)))
        if slot < 0:
            return None
        o = self._orders[slot]
        return OrderInfo(
            ref=int(o["ref"]),
            instrument=int(o["instrument"]),
            side=Side.BUY if int(o["side"]) == BookSide.BID else Side.SELL,
            price=int(o["price"]),
            shares=int(o["shares"]),
        )

    def symbol(self, instrument: int) -> bytes:
        """The 8-byte symbol from the stock directory (b'' until registered)."""
        return bytes(self._instruments[self._instrument(instrument)]["symbol"])

    def trading_state(self, instrument: int) -> int:
        """The `TradingState` code last set by a trading action (0 = unknown)."""
        return int(self._instruments[self._instrument(instrument)]["trading_state"])

    def live_orders_of(self, instrument: int) -> int:
        return int(self._instruments[self._instrument(instrument)]["live_orders"])

    @property
    def counters(self) -> dict[str, int]:
        """Every counter by cause (see COUNTER_NAMES and docs/books.md)."""
        base = lib.BK_M_COUNTERS
        values = self._meta[base : base + len(COUNTER_NAMES)].tolist()
        return dict(zip(COUNTER_NAMES, (int(v) for v in values), strict=True))

    def counter_array(self) -> npt.NDArray[np.uint64]:
        """Read-only view of the counters in COUNTER_NAMES order (for a metrics scrape)."""
        base = lib.BK_M_COUNTERS
        view = self._meta[base : base + len(COUNTER_NAMES)].view()
        view.flags.writeable = False
        return view

    @property
    def max_instruments(self) -> int:
        return int(self._meta[lib.BK_M_MAX_INSTR])

    @property
    def max_orders(self) -> int:
        return int(self._meta[lib.BK_M_MAX_ORDERS])

    @property
    def max_levels(self) -> int:
        return int(self._meta[lib.BK_M_MAX_LEVELS])

    @property
    def level_pool(self) -> int:
        return int(self._meta[lib.BK_M_ARENA_SIZE])

    @property
    def output_capacity(self) -> int:
        return self._output_capacity

    @property
    def live_orders(self) -> int:
        return int(self._meta[lib.BK_M_LIVE_ORDERS])

    @property
    def last_seq(self) -> int:
        """Header seq (MoldUDP64 sequence number) of the last applied event; 0 before any."""
        return int(self._meta[lib.BK_M_LAST_SEQ])

    @property
    def last_exch_ts_ns(self) -> int:
        """Venue timestamp (exch_ts_ns) of the last applied event: the venue clock."""
        return int(self._meta[lib.BK_M_LAST_EXCH_TS].view(np.int64))

    @property
    def out_seq(self) -> int:
        """Sequence number of the last output record written (outputs count from 1)."""
        return int(self._meta[lib.BK_M_OUT_SEQ])

    # ------------------------------------------------------------------ state

    def state_arrays(self, *, copy: bool = True) -> dict[str, npt.NDArray[Any]]:
        """The whole book as plain arrays (`STATE_ARRAY_NAMES`); copies unless copy=False,
        whose views change with every `apply`."""
        arrays: dict[str, npt.NDArray[Any]] = {
            "meta": self._meta,
            "orders": self._orders,
            "levels": self._levels,
            "instruments": self._instruments,
        }
        return {k: v.copy() if copy else v for k, v in arrays.items()}

    @classmethod
    def from_state_arrays(
        cls,
        arrays: Mapping[str, npt.NDArray[Any]],
        *,
        output_capacity: int = 4096,
        copy: bool = True,
        verify: bool = True,
    ) -> OrderBook:
        """A book over previously saved state arrays. Raises BookStateError unless the arrays
        have the right dtypes and sizes and (with verify) satisfy every invariant; a book is
        either returned whole or not at all."""
        missing = [k for k in STATE_ARRAY_NAMES if k not in arrays]
        if missing:
            raise BookStateError(f"state arrays missing: {missing}")
        prepared: dict[str, npt.NDArray[Any]] = {}
        for name in STATE_ARRAY_NAMES:
            arr = arrays[name]
            want = STATE_DTYPES[name]
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != want:
                raise BookStateError(
                    f"state array {name!r} must be 1-D of dtype {want}, got "
                    f"{getattr(arr, 'dtype', type(arr).__name__)}"
                )
            arr = np.array(arr, copy=True) if copy else np.ascontiguousarray(arr)
            if not arr.flags.writeable:
                arr = arr.copy()
            prepared[name] = arr
        meta = prepared["meta"]
        if meta.shape[0] != lib.BK_META_WORDS or int(meta[lib.BK_M_LAYOUT]) != (
            lib.BK_LAYOUT_VERSION
        ):
            raise BookStateError(
                f"meta must be {lib.BK_META_WORDS} words of layout version {lib.BK_LAYOUT_VERSION}"
            )
        book = cls.__new__(cls)
        book._bind(
            meta=meta,
            orders=prepared["orders"],
            levels=prepared["levels"],
            instruments=prepared["instruments"],
            output_capacity=output_capacity,
        )
        if verify:
            problems = book.check_invariants()
            if problems:
                raise BookStateError("inconsistent book state: " + "; ".join(problems[:5]))
        return book

    def check_invariants(self) -> list[str]:
        """Every violated invariant (empty when the book is consistent), vectorised:

        levels sorted best-first with no duplicate prices; no zero/negative quantities or
        counts; each level's qty and order count equal the sum/count of its live orders; each
        order reachable by its reference; per-instrument and total live counts agree; blocks
        inside the used arena.
        """
        problems: list[str] = []
        meta = self._meta
        orders = self._orders
        live = orders[orders["ref"] != 0]
        n_instr = self.max_instruments
        if live.shape[0] != int(meta[lib.BK_M_LIVE_ORDERS]):
            problems.append(f"{live.shape[0]} orders in the table, meta says {self.live_orders}")
        if live.shape[0] > self.max_orders:
            problems.append("more live orders than max_orders")
        bad = (
            (live["shares"] == 0)
            | (live["price"] <= 0)
            | (live["side"] > 1)
            | (live["instrument"] >= n_instr)
        )
        if bad.any():
            problems.append(f"{int(bad.sum())} orders with zero shares, bad price/side/instrument")
        unreachable = sum(
            1 for ref in live["ref"].tolist() if lib.bk_find_order(self._b, int(ref)) < 0
        )
        if unreachable:
            problems.append(f"{unreachable} orders not reachable from their hash slot")
        per_instr = np.bincount(live["instrument"].astype(np.int64), minlength=n_instr)[:n_instr]
        if not np.array_equal(per_instr, self._instruments["live_orders"].astype(np.int64)):
            problems.append("per-instrument live order counts disagree with the order table")

        # Gather every level with its (instrument, side) into flat arrays.
        sides = self._instruments["side"]  # (n_instr, 2)
        off = sides["off"].astype(np.int64).reshape(-1)
        cap = sides["cap"].astype(np.int64).reshape(-1)
        cnt = sides["n"].astype(np.int64).reshape(-1)
        used = int(meta[lib.BK_M_ARENA_USED])
        has = cap > 0
        if (cnt > cap).any() or (cap > self.max_levels).any():
            problems.append("a side holds more levels than its block or max_levels")
            return problems
        if (has & ((off + cap > used) | (cap & (cap - 1) != 0))).any():
            problems.append("a side's block lies outside the used arena or is not a power of 2")
            return problems
        problems += self._arena_problems(off[has], cap[has], used)
        total = int(cnt.sum())
        starts = np.repeat(off, cnt)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        lv = self._levels[starts + within]
        key_side = np.repeat(np.arange(off.shape[0], dtype=np.int64), cnt)  # instr*2 + side
        if (lv["qty"] <= 0).any() or (lv["orders"] == 0).any():
            problems.append("a level with qty <= 0 or no orders")
        # Stored worst..best: bids strictly ascending, asks strictly descending.
        if total > 1:
            same = key_side[1:] == key_side[:-1]
            step = np.diff(lv["price"])
            is_bid = (key_side[1:] % 2) == 0
            wrong = same & np.where(is_bid, step <= 0, step >= 0)
            if wrong.any():
                problems.append(f"{int(wrong.sum())} levels out of order or duplicated")
        # Aggregate live orders by (instrument*2+side, price) and compare with the levels.
        o_key = live["instrument"].astype(np.int64) * 2 + live["side"].astype(np.int64)
        o_px = live["price"]
        order_idx = np.lexsort((o_px, o_key))
        o_key, o_px = o_key[order_idx], o_px[order_idx]
        o_sh = live["shares"][order_idx].astype(np.int64)
        if o_key.size:
            boundary = np.flatnonzero((np.diff(o_key) != 0) | (np.diff(o_px) != 0)) + 1
            starts_g = np.concatenate(([0], boundary))
            agg_key, agg_px = o_key[starts_g], o_px[starts_g]
            agg_qty = np.add.reduceat(o_sh, starts_g)
            agg_cnt = np.diff(np.concatenate((starts_g, [o_key.size])))
        else:
            agg_key = agg_px = agg_qty = agg_cnt = np.zeros(0, dtype=np.int64)
        l_idx = np.lexsort((lv["price"], key_side))
        l_key, l_px = key_side[l_idx], lv["price"][l_idx]
        l_qty = lv["qty"][l_idx]
        l_cnt = lv["orders"][l_idx].astype(np.int64)
        if not (
            np.array_equal(agg_key, l_key)
            and np.array_equal(agg_px, l_px)
            and np.array_equal(agg_qty, l_qty)
            and np.array_equal(agg_cnt, l_cnt)
        ):
            problems.append("levels do not equal the aggregate of the live orders")
        return problems

    def _arena_problems(
        self, off: npt.NDArray[np.int64], cap: npt.NDArray[np.int64], used: int
    ) -> list[str]:
        """Every arena slot below the bump pointer lies in exactly one block: a side's, or a
        well-formed free-list node of the right class."""
        cover = np.zeros(used + 1, dtype=np.int64)
        np.add.at(cover, off, 1)
        np.add.at(cover, off + cap, -1)
        levels = self._levels
        top = self.max_levels.bit_length() - 1
        budget = used // (1 << lib.BK_MIN_CLASS) + 1  # more nodes than that means a cycle
        for cls in range(lib.BK_MIN_CLASS, top + 1):
            node, prev = int(self._meta[lib.BK_M_FREE_HEAD + cls]), int(lib.BK_NONE)
            while node != lib.BK_NONE:
                budget -= 1
                size = 1 << cls
                if budget < 0 or node % size or node + size > used:
                    return [f"free list of class {cls} is corrupt at slot {node}"]
                lv = levels[node]
                if int(lv["orders"]) != lib.BK_FREE_MARK or int(lv["reserved"]) != cls:
                    return [f"free block {node} of class {cls} is not marked free"]
                if int(lv["price"]) != prev:
                    return [f"free list of class {cls} has a broken back link at {node}"]
                cover[node] += 1
                cover[node + size] -= 1
                prev, node = node, int(lv["qty"])
        if not (np.cumsum(cover)[:used] == 1).all():
            return ["arena blocks overlap or leak (used + free blocks do not tile the arena)"]
        return []

    def __repr__(self) -> str:
        return (
            f"OrderBook(instruments={self.max_instruments}, orders={self.live_orders}/"
            f"{self.max_orders}, max_levels={self.max_levels}, last_seq={self.last_seq})"
        )
