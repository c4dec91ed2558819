"""The pre-trade risk engine: the Python face of csrc/risk.c (`tectra._risk`).

This module owns:

* the engine's state arrays (accounts, positions, open orders and their hash index, token
  buckets, halt flags, per-rule counters, meta words), allocated here as numpy buffers and
  mutated only by C; their dtypes are checked against the C structs at import, as are the
  ORDER_REQUEST / RISK_VERDICT / EXECUTION_REPORT layouts against tectra.schema;
* `RiskEngine`: `step` (the deterministic state machine: orders + references + now_ns ->
  verdicts), `check` (the gateway's call: references from the source, decision latency
  measured around the C call and stamped into the verdicts), `on_execution` (fills, cancels,
  rejects, expiries, replaces, busts), `set_limits` (swap a compiled `Limits` snapshot by
  reference, effective from the next batch), halts, `counters`, `state_arrays` /
  `from_state_arrays` and `check_invariants`.

One engine belongs to one thread (the gateway's order thread). Another thread may call
`set_limits` at any time: a batch reads the active snapshot once, so every order of the batch
is judged against exactly one limits version (`last_limits_version`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from tectra._risk import ffi, lib
from tectra.risk.limits import ACCOUNT_COLUMNS, INSTRUMENT_COLUMNS, THROTTLE_COLUMNS, Limits
from tectra.risk.references import (
    REF_COLUMNS,
    REF_MISSING,
    InMemoryReferences,
    ReferenceSource,
    gather_references,
)
from tectra.risk.rules import NUM_RULES, RULES, Rule, RuleMode
from tectra.schema import EXECUTION_REPORT, ORDER_REQUEST, RISK_VERDICT, KillScope

__all__ = [
    "ACCOUNT_STATE_DTYPE",
    "BUCKET_DTYPE",
    "COUNTER_COLUMNS",
    "META_NAMES",
    "ORDER_DTYPE",
    "POSITION_DTYPE",
    "STATE_ARRAY_NAMES",
    "EngineConfig",
    "RiskArgumentError",
    "RiskEngine",
    "RiskError",
    "RiskStateError",
    "RuleCounters",
]

Records = npt.NDArray[np.void]
I64 = npt.NDArray[np.int64]


class RiskError(Exception):
    """Base of every risk engine error."""


class RiskArgumentError(RiskError, ValueError):
    """A bad argument at the boundary: record dtype, batch size, ids beyond capacity."""


class RiskStateError(RiskError):
    """State arrays that do not form a consistent engine state (layout, sizes, invariants)."""


def _i64(*fields: str | tuple[str, int]) -> np.dtype[np.void]:
    spec: list[tuple[Any, ...]] = []
    for f in fields:
        spec.append((f[0], "<i8", (f[1],)) if isinstance(f, tuple) else (f, "<i8"))
    return np.dtype(spec)


ACCOUNT_STATE_DTYPE: Final = _i64("open_notional", "executed_notional", "open_orders", "fills")
"""Per account id: open notional (sum of its open orders'), gross executed notional, counts."""
POSITION_DTYPE: Final = _i64(
    "used",
    "account",
    "strategy",
    "instrument",
    "position",
    "open_buy",
    "open_sell",
    "n_buy",
    "n_sell",
    "best_buy",
    "best_sell",
    "head_buy",
    "head_sell",
    ("reserved", 3),
)
"""One (account, strategy, instrument) key; strategy -1 is the per (account, instrument) row,
which also holds the self-match lists (n_*, best_*, head_*)."""
ORDER_DTYPE: Final = _i64(
    "order_id",
    "status",
    "account",
    "strategy",
    "instrument",
    "side",
    "val_px",
    "sm_px",
    "order_qty",
    "leaves",
    "cum",
    "open_notional",
    "open_qty",
    "link",
    "prev",
    "next",
    "agg_slot",
    "strat_slot",
    ("reserved", 2),
)
"""One open order (order_id 0: free slot)."""
BUCKET_DTYPE: Final = _i64("tokens", "last_ns", "primed", "reserved")
"""One token bucket (tokens in nano-tokens, 1e9 per order)."""

STATE_ARRAY_NAMES: Final[tuple[str, ...]] = (
    "accounts",
    "positions",
    "orders",
    "order_index",
    "session_buckets",
    "venue_buckets",
    "halt_instruments",
    "halt_venues",
    "halt_accounts",
    "counters",
    "meta",
)
COUNTER_COLUMNS: Final[tuple[str, ...]] = ("evaluated", "hits", "denies", "dry_run")
META_NAMES: Final[tuple[str, ...]] = (
    "layout",
    "verdict_seq",
    "free_head",
    "live_orders",
    "positions",
    "orders",
    "passed",
    "rejected",
    "dry_run_passed",
    "reports",
    "reports_applied",
    "reports_unknown",
    "reports_duplicate",
    "state_errors",
    "batches",
    "reserved",
)
"""Names of the meta words (RK_M_* in csrc/risk.h)."""

_ORDER_DT: Final = ORDER_REQUEST.dtype
_VERDICT_DT: Final = RISK_VERDICT.dtype
_REPORT_DT: Final = EXECUTION_REPORT.dtype


def _verify_layouts() -> None:
    """The C structs and these dtypes / the schema must agree field by field."""
    pairs: list[tuple[str, np.dtype[np.void]]] = [
        ("rk_account_state_t", ACCOUNT_STATE_DTYPE),
        ("rk_position_t", POSITION_DTYPE),
        ("rk_order_t", ORDER_DTYPE),
        ("rk_bucket_t", BUCKET_DTYPE),
        ("rk_order_request_t", _ORDER_DT),
        ("rk_risk_verdict_t", _VERDICT_DT),
        ("rk_execution_report_t", _REPORT_DT),
    ]
    for ctype, dt in pairs:
        if ffi.sizeof(ctype) != dt.itemsize:
            raise RiskStateError(f"{ctype}: C size {ffi.sizeof(ctype)} != {dt.itemsize}")
        assert dt.fields is not None
        for name, (_sub, offset, *_rest) in dt.fields.items():
            if ffi.offsetof(ctype, name) != offset:
                raise RiskStateError(f"{ctype}.{name}: C offset differs from the dtype's")
    rows = [
        ("rk_instrument_limits_t", INSTRUMENT_COLUMNS),
        ("rk_account_limits_t", ACCOUNT_COLUMNS),
        ("rk_throttle_limits_t", THROTTLE_COLUMNS),
    ]
    for ctype, cols in rows:
        if ffi.sizeof(ctype) != 8 * len(cols) or any(
            ffi.offsetof(ctype, c) != 8 * i for i, c in enumerate(cols)
        ):
            raise RiskStateError(f"{ctype}: columns differ from tectra.risk.limits")
    if lib.RK_NUM_RULES != NUM_RULES or any(
        getattr(lib, f"RK_RULE_{r.name}") != int(r) for r in Rule
    ):
        raise RiskStateError("rule ids differ between csrc/risk.h and tectra.risk.rules")
    if len(META_NAMES) != lib.RK_META_WORDS or len(COUNTER_COLUMNS) != lib.RK_CTR_COLS:
        raise RiskStateError("meta words or counter columns differ from csrc/risk.h")
    if len(REF_COLUMNS) != lib.RK_REF_COLS or lib.RK_REF_MISSING != REF_MISSING:
        raise RiskStateError("reference row layout differs from csrc/risk.h")
    for mode in RuleMode:
        if getattr(lib, f"RK_MODE_{mode.name}") != int(mode):
            raise RiskStateError("rule modes differ from csrc/risk.h")


_verify_layouts()


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class EngineConfig:
    """Capacities of an engine's state (fixed for its life; bounded everything).

    Ids at or beyond a capacity are rejected INVALID_ORDER (accounts, sessions, venues) or
    INVALID_SYMBOL (instruments). `max_orders` bounds open orders (a full table rejects
    QUEUE_FULL); `position_capacity` is the position table size (power of two, filled at
    most 3/4: (account, instrument) and (account, strategy, instrument) keys).
    """

    max_accounts: int = 4096
    max_instruments: int = 65536
    max_sessions: int = 1024
    max_venues: int = 256
    max_orders: int = 1 << 16
    position_capacity: int = 1 << 16
    max_batch: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_accounts", "max_instruments", "max_sessions", "max_venues"):
            value = getattr(self, name)
            if not 1 <= value <= 1 << 24:
                raise RiskArgumentError(f"{name} = {value}: must be in [1, 2**24]")
        if not 1 <= self.max_orders <= 1 << 26:
            raise RiskArgumentError(f"max_orders = {self.max_orders}: must be in [1, 2**26]")
        cap = self.position_capacity
        if cap < 4 or cap & (cap - 1) or cap > 1 << 26:
            raise RiskArgumentError(f"position_capacity = {cap}: a power of two in [4, 2**26]")
        if not 1 <= self.max_batch <= 1 << 20:
            raise RiskArgumentError(f"max_batch = {self.max_batch}: must be in [1, 2**20]")

    @property
    def index_capacity(self) -> int:
        return _pow2_at_least(2 * self.max_orders)


class RuleCounters(NamedTuple):
    """Live, read-only views the metrics layer reads at scrape time (never copied per order).

    `per_rule[rule, col]`: rows are `Rule` values, columns `COUNTER_COLUMNS` (evaluated, hits,
    denies, dry_run). `meta[i]`: engine-wide words named by `META_NAMES`.
    """

    per_rule: I64
    meta: I64

    def rows(self) -> list[tuple[str, int, int, int, int]]:
        """(rule name, evaluated, hits, denies, dry_run) per rule, in priority order."""
        snap = self.per_rule.copy()
        out = []
        for r in RULES:
            row = snap[int(r.rule)]
            out.append((r.name, int(row[0]), int(row[1]), int(row[2]), int(row[3])))
        return out

    def engine(self) -> dict[str, int]:
        """The meta words by name (a copy)."""
        snap = self.meta.copy()
        return {name: int(snap[i]) for i, name in enumerate(META_NAMES) if name != "reserved"}


class _ActiveLimits(NamedTuple):
    limits: Limits
    version: int
    cdata: Any  # rk_limits_t *
    keep: tuple[Any, ...]  # from_buffer objects the pointers come from


def _ptr(ctype: str, arr: npt.NDArray[Any]) -> tuple[Any, Any]:
    buf = ffi.from_buffer(arr)
    return ffi.cast(ctype, buf), buf


def _compile_cdata(limits: Limits) -> _ActiveLimits:
    c = ffi.new("rk_limits_t *")
    keep: list[Any] = []

    def bind(attr: str, ctype: str, arr: npt.NDArray[Any]) -> None:
        if not arr.flags.c_contiguous:
            raise RiskArgumentError(f"limits array {attr} is not C-contiguous")
        p, buf = _ptr(ctype, arr)
        keep.append(buf)
        setattr(c, attr, p)

    c.version = limits.version
    bind("instruments", "const rk_instrument_limits_t *", limits.instruments)
    c.n_instruments = limits.instruments.shape[0]
    bind("accounts", "const rk_account_limits_t *", limits.accounts)
    c.n_accounts = limits.accounts.shape[0]
    bind("account_default", "const rk_account_limits_t *", limits.account_default)
    bind("sessions", "const rk_throttle_limits_t *", limits.sessions)
    c.n_sessions = limits.sessions.shape[0]
    bind("session_default", "const rk_throttle_limits_t *", limits.session_default)
    bind("venues", "const rk_throttle_limits_t *", limits.venues)
    c.n_venues = limits.venues.shape[0]
    bind("venue_default", "const rk_throttle_limits_t *", limits.venue_default)
    bind("modes_default", "const uint8_t *", limits.modes_default)
    bind("modes_venue", "const uint8_t *", limits.modes_venue)
    bind("modes_instrument", "const uint8_t *", limits.modes_instrument)
    return _ActiveLimits(limits, limits.version, c, (c, *keep))


def _new_arrays(cfg: EngineConfig) -> dict[str, npt.NDArray[Any]]:
    return {
        "accounts": np.zeros(cfg.max_accounts, dtype=ACCOUNT_STATE_DTYPE),
        "positions": np.zeros(cfg.position_capacity, dtype=POSITION_DTYPE),
        "orders": np.zeros(cfg.max_orders, dtype=ORDER_DTYPE),
        "order_index": np.zeros(cfg.index_capacity, dtype=np.int64),
        "session_buckets": np.zeros(cfg.max_sessions, dtype=BUCKET_DTYPE),
        "venue_buckets": np.zeros(cfg.max_venues, dtype=BUCKET_DTYPE),
        "halt_instruments": np.zeros(cfg.max_instruments, dtype=np.uint8),
        "halt_venues": np.zeros(cfg.max_venues, dtype=np.uint8),
        "halt_accounts": np.zeros(cfg.max_accounts, dtype=np.uint8),
        "counters": np.zeros((NUM_RULES, len(COUNTER_COLUMNS)), dtype=np.int64),
        "meta": np.zeros(len(META_NAMES), dtype=np.int64),
    }


def _expected_dtypes() -> dict[str, np.dtype[Any]]:
    return {
        "accounts": ACCOUNT_STATE_DTYPE,
        "positions": POSITION_DTYPE,
        "orders": ORDER_DTYPE,
        "order_index": np.dtype(np.int64),
        "session_buckets": BUCKET_DTYPE,
        "venue_buckets": BUCKET_DTYPE,
        "halt_instruments": np.dtype(np.uint8),
        "halt_venues": np.dtype(np.uint8),
        "halt_accounts": np.dtype(np.uint8),
        "counters": np.dtype(np.int64),
        "meta": np.dtype(np.int64),
    }


_clock = time.perf_counter_ns  # CLOCK_MONOTONIC on Linux: decision latency only, never a verdict
# Hot-path aliases (attribute lookups on ffi/lib cost more than the C call they wrap).
_from_buffer = ffi.from_buffer
_check_batch = lib.rk_check_batch
_stamp = lib.rk_stamp_decision
_ORDER_CTYPE = ffi.typeof("rk_order_request_t[]")
_REF_BY_INSTRUMENT = int(lib.RK_REF_BY_INSTRUMENT)
_KILL_HALTED = int(lib.RK_KILL_HALTED)


class RiskEngine:
    """Pre-trade risk for one order thread. See the module docstring and docs/risk.md."""

    def __init__(
        self,
        limits: Limits,
        references: ReferenceSource,
        config: EngineConfig | None = None,
        *,
        _arrays: Mapping[str, npt.NDArray[Any]] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        cfg = self.config
        fresh = _arrays is None
        self._arrays = dict(_arrays) if _arrays is not None else _new_arrays(cfg)
        a = self._arrays
        st = ffi.new("rk_state_t *")
        keep: list[Any] = [st]
        for attr, ctype, name in (
            ("accounts", "rk_account_state_t *", "accounts"),
            ("positions", "rk_position_t *", "positions"),
            ("orders", "rk_order_t *", "orders"),
            ("order_index", "int64_t *", "order_index"),
            ("session_buckets", "rk_bucket_t *", "session_buckets"),
            ("venue_buckets", "rk_bucket_t *", "venue_buckets"),
            ("halt_instruments", "uint8_t *", "halt_instruments"),
            ("halt_venues", "uint8_t *", "halt_venues"),
            ("halt_accounts", "uint8_t *", "halt_accounts"),
            ("counters", "int64_t *", "counters"),
            ("meta", "int64_t *", "meta"),
        ):
            p, buf = _ptr(ctype, a[name])
            keep.append(buf)
            setattr(st, attr, p)
        st.n_accounts = cfg.max_accounts
        st.position_capacity = cfg.position_capacity
        st.max_orders = cfg.max_orders
        st.index_capacity = cfg.index_capacity
        st.n_sessions = cfg.max_sessions
        st.n_venues = cfg.max_venues
        st.n_instruments = cfg.max_instruments
        self._st = st
        self._keep = tuple(keep)
        if fresh and lib.rk_state_init(st) != 0:
            raise RiskStateError("rk_state_init refused the configuration")

        # Preallocated outputs and scratch, with their C pointers cached: the per-call cost
        # of check() is a handful of attribute reads and one C call.
        self._out = np.zeros(cfg.max_batch, dtype=_VERDICT_DT)
        self._out_one = self._out[:1]
        self._max_batch = cfg.max_batch
        self._out_ptr, self._out_buf = _ptr("rk_risk_verdict_t *", self._out)
        self._ref_rows = np.zeros((cfg.max_batch, len(REF_COLUMNS)), dtype=np.int64)
        self._ref_rows_ptr, self._ref_rows_buf = _ptr("int64_t *", self._ref_rows)
        self.references = references
        self._ref_table: npt.NDArray[np.int64] | None = None
        self._ref_table_ptr: Any = ffi.NULL
        self._ref_table_buf: Any = None
        self._ref_table_rows = 0
        if isinstance(references, InMemoryReferences):
            self._ref_table = references.table
            self._ref_table_rows = references.table.shape[0]
            self._ref_table_ptr, self._ref_table_buf = _ptr("int64_t *", references.table)
        self._active: _ActiveLimits = self._compile(limits)
        self.last_limits_version = 0
        self.last_decision_ns = 0
        self._counters = RuleCounters(_readonly(a["counters"]), _readonly(a["meta"]))

    # ---- limits --------------------------------------------------------------------------

    def _compile(self, limits: Limits) -> _ActiveLimits:
        cfg = self.config
        # Refuse limits this engine could not honour (ids beyond its state): the old limits
        # stay active, nothing is silently unusable.
        for what, ids, cap in (
            ("instrument", limits.symbols.values(), cfg.max_instruments),
            ("account", limits.account_ids.values(), cfg.max_accounts),
            ("venue", limits.venue_ids.values(), cfg.max_venues),
            ("session", limits.session_ids.values(), cfg.max_sessions),
        ):
            bad = [i for i in ids if i >= cap]
            if bad:
                raise RiskArgumentError(
                    f"limits v{limits.version}: {what} id {bad[0]} >= the engine's capacity {cap}"
                )
        return _compile_cdata(limits)

    def set_limits(self, limits: Limits) -> None:
        """Make `limits` active from the next batch (any thread; the swap is one reference
        assignment, and a running batch keeps the snapshot it started with)."""
        self._active = self._compile(limits)

    @property
    def limits(self) -> Limits:
        return self._active.limits

    # ---- the order path ------------------------------------------------------------------

    def _orders_ptr(self, orders: Records) -> Any:
        if orders.dtype is not _ORDER_DT and orders.dtype != _ORDER_DT:
            raise RiskArgumentError("orders must be ORDER_REQUEST records")
        try:
            return _from_buffer(_ORDER_CTYPE, orders)
        except (BufferError, TypeError, ValueError) as exc:
            raise RiskArgumentError(f"orders must be a C-contiguous array: {exc}") from exc

    def _out_for(self, n: int, out: Records | None) -> tuple[Records, Any]:
        if out is None:
            if n > self.config.max_batch:
                raise RiskArgumentError(
                    f"batch of {n} > max_batch {self.config.max_batch}: pass out= or split it"
                )
            return self._out, self._out_ptr
        if out.dtype != _VERDICT_DT or out.shape[0] < n or not out.flags.c_contiguous:
            raise RiskArgumentError(f"out must be >= {n} C-contiguous RISK_VERDICT records")
        return out, ffi.from_buffer("rk_risk_verdict_t[]", out, require_writable=True)

    def _run(
        self,
        orders: Records,
        now_ns: int,
        *,
        refs_ptr: Any,
        n_refs: int,
        ref_mode: int,
        halted: bool,
        out: Records | None,
        t0: int,
    ) -> Records:
        n = orders.shape[0]
        optr = self._orders_ptr(orders)
        out_arr, out_ptr = self._out_for(n, out)
        active = self._active  # read once: the whole batch sees this one version
        rc = lib.rk_check_batch(
            self._st,
            active.cdata,
            optr,
            n,
            refs_ptr,
            n_refs,
            ref_mode,
            now_ns,
            lib.RK_KILL_HALTED if halted else 0,
            out_ptr,
        )
        if rc < 0:
            raise RiskArgumentError(f"rk_check_batch refused the batch ({rc})")
        if t0:
            dt = _clock() - t0
            lib.rk_stamp_decision(out_ptr, n, dt)
            self.last_decision_ns = dt
        self.last_limits_version = active.version
        return out_arr[:n]

    def step(
        self,
        orders: Records,
        refs: I64,
        now_ns: int,
        *,
        halted: bool = False,
        refs_by_instrument: bool = False,
        out: Records | None = None,
    ) -> Records:
        """The deterministic step: judge `orders` (ORDER_REQUEST records, in order) at time
        `now_ns` against references `refs` (int64 rows of REF_COLUMNS: one per order, or
        with refs_by_instrument one per instrument id) and the kill flag `halted`.

        Returns the verdicts (a view of an internal buffer valid until the next call, unless
        `out` is given); decision_ns is 0. Same state + limits + inputs -> same bytes.
        """
        if refs.dtype != np.int64 or refs.ndim != 2 or refs.shape[1] != len(REF_COLUMNS):
            raise RiskArgumentError("refs must be int64 rows of (bid, ask, last, updated_ns)")
        if not refs.flags.c_contiguous:
            raise RiskArgumentError("refs must be C-contiguous")
        if not refs_by_instrument and refs.shape[0] < orders.shape[0]:
            raise RiskArgumentError("refs needs one row per order")
        ptr = ffi.from_buffer("int64_t[]", refs) if refs.size else ffi.NULL
        mode = lib.RK_REF_BY_INSTRUMENT if refs_by_instrument else lib.RK_REF_PER_ORDER
        return self._run(
            orders,
            now_ns,
            refs_ptr=ptr,
            n_refs=refs.shape[0],
            ref_mode=mode,
            halted=halted,
            out=out,
            t0=0,
        )

    def check(
        self, orders: Records, now_ns: int, *, halted: bool = False, out: Records | None = None
    ) -> Records:
        """The gateway's call: `step` with references from the engine's source, and the
        decision latency (entry of this call to verdicts written) stamped into every verdict's
        decision_ns and kept in `last_decision_ns`. A batch of one is the single-order path.

        `halted` is the kill switch state read by the caller from the kill control block.
        """
        t0 = _clock()
        if out is None and self._ref_table is not None and orders.dtype is _ORDER_DT:
            # The gateway's path, kept to a handful of operations: cached pointers, module-level
            # aliases, one C call for the batch and one to stamp the latency.
            n = orders.shape[0]
            if n <= self._max_batch:
                try:
                    optr = _from_buffer(_ORDER_CTYPE, orders)
                except (BufferError, TypeError, ValueError) as exc:
                    raise RiskArgumentError(f"orders must be C-contiguous: {exc}") from exc
                active = self._active  # read once: the whole batch sees this one version
                rc = _check_batch(
                    self._st,
                    active.cdata,
                    optr,
                    n,
                    self._ref_table_ptr,
                    self._ref_table_rows,
                    _REF_BY_INSTRUMENT,
                    now_ns,
                    _KILL_HALTED if halted else 0,
                    self._out_ptr,
                )
                if rc < 0:
                    raise RiskArgumentError(f"rk_check_batch refused the batch ({rc})")
                dt = _clock() - t0
                _stamp(self._out_ptr, n, dt)
                self.last_decision_ns = dt
                self.last_limits_version = active.version
                return self._out_one if n == 1 else self._out[:n]
        if self._ref_table is not None:
            return self._run(
                orders,
                now_ns,
                refs_ptr=self._ref_table_ptr,
                n_refs=self._ref_table_rows,
                ref_mode=lib.RK_REF_BY_INSTRUMENT,
                halted=halted,
                out=out,
                t0=t0,
            )
        n = orders.shape[0]
        if n > self.config.max_batch:
            raise RiskArgumentError(f"batch of {n} > max_batch {self.config.max_batch}")
        rows = self._ref_rows[:n]
        gather_references(self.references, orders["instrument_id"], rows)
        return self._run(
            orders,
            now_ns,
            refs_ptr=self._ref_rows_ptr,
            n_refs=n,
            ref_mode=lib.RK_REF_PER_ORDER,
            halted=halted,
            out=out,
            t0=t0,
        )

    def on_execution(self, reports: Records) -> int:
        """Apply EXECUTION_REPORT records in order: fills move open exposure to executed and
        move positions; cancels, rejects, expiries and done-for-day release open exposure;
        replaces swap the reserved exposure for the new order's; busts reverse a fill.
        Returns how many reports changed state."""
        if reports.dtype != _REPORT_DT:
            raise RiskArgumentError("reports must be EXECUTION_REPORT records")
        try:
            ptr = ffi.from_buffer("rk_execution_report_t[]", reports)
        except (BufferError, TypeError, ValueError) as exc:
            raise RiskArgumentError(f"reports must be a C-contiguous array: {exc}") from exc
        rc = int(lib.rk_apply_reports(self._st, ptr, reports.shape[0]))
        if rc < 0:
            raise RiskArgumentError(f"rk_apply_reports refused the batch ({rc})")
        return rc

    # ---- halts (control plane) -----------------------------------------------------------

    def set_halt(self, scope: KillScope, scope_id: int, halted: bool) -> None:
        """Halt or resume one instrument (SYMBOL), venue or account. The firm-wide kill state
        is not stored here: it is the `halted` input of every check/step."""
        arrays = {
            KillScope.SYMBOL: "halt_instruments",
            KillScope.VENUE: "halt_venues",
            KillScope.ACCOUNT: "halt_accounts",
        }
        name = arrays.get(scope)
        if name is None:
            raise RiskArgumentError(f"halts are per SYMBOL, VENUE or ACCOUNT, not {scope.name}")
        arr = self._arrays[name]
        if not 0 <= scope_id < arr.shape[0]:
            raise RiskArgumentError(f"{scope.name} id {scope_id} outside [0, {arr.shape[0]})")
        arr[scope_id] = 1 if halted else 0

    # ---- queries (control plane, tests) --------------------------------------------------

    def counters(self) -> RuleCounters:
        """Per-rule and engine-wide counters as live read-only views (for the scrape)."""
        return self._counters

    def account(self, account_id: int) -> dict[str, int]:
        """Open/executed notional and counts of one account."""
        row = self._arrays["accounts"][account_id]
        return {name: int(row[name]) for name in ACCOUNT_STATE_DTYPE.names or ()}

    def position(
        self, account_id: int, instrument_id: int, strategy_id: int | None = None
    ) -> tuple[int, int, int]:
        """(position, open_buy, open_sell) of (account, instrument), all strategies by
        default; zeros when never traded."""
        p = self._arrays["positions"]
        strat = -1 if strategy_id is None else strategy_id
        hit = np.flatnonzero(
            (p["used"] == 1)
            & (p["account"] == account_id)
            & (p["strategy"] == strat)
            & (p["instrument"] == instrument_id)
        )
        if hit.size == 0:
            return (0, 0, 0)
        row = p[hit[0]]
        return int(row["position"]), int(row["open_buy"]), int(row["open_sell"])

    def open_order(self, order_id: int) -> dict[str, int] | None:
        """The open-order entry of `order_id`, or None."""
        o = self._arrays["orders"]
        hit = np.flatnonzero((o["status"] != 0) & (o["order_id"] == order_id))
        if hit.size == 0:
            return None
        row = o[hit[0]]
        return {n: int(row[n]) for n in ORDER_DTYPE.names or () if n != "reserved"}

    # ---- snapshots -----------------------------------------------------------------------

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """A copy of every state array (STATE_ARRAY_NAMES), for snapshots and replay."""
        return {name: self._arrays[name].copy() for name in STATE_ARRAY_NAMES}

    @classmethod
    def from_state_arrays(
        cls,
        arrays: Mapping[str, npt.NDArray[Any]],
        limits: Limits,
        references: ReferenceSource,
        *,
        max_batch: int = 4096,
    ) -> RiskEngine:
        """An engine continuing from `state_arrays()` output (copied). RiskStateError if the
        arrays are missing, mis-shaped or inconsistent: a bad snapshot never starts."""
        missing = [n for n in STATE_ARRAY_NAMES if n not in arrays]
        if missing:
            raise RiskStateError(f"snapshot lacks {missing}")
        want = _expected_dtypes()
        for name in STATE_ARRAY_NAMES:
            if arrays[name].dtype != want[name]:
                raise RiskStateError(f"snapshot array {name} has dtype {arrays[name].dtype}")
        acc = arrays["accounts"]
        try:
            cfg = EngineConfig(
                max_accounts=acc.shape[0],
                max_instruments=arrays["halt_instruments"].shape[0],
                max_sessions=arrays["session_buckets"].shape[0],
                max_venues=arrays["venue_buckets"].shape[0],
                max_orders=arrays["orders"].shape[0],
                position_capacity=arrays["positions"].shape[0],
                max_batch=max_batch,
            )
        except RiskArgumentError as exc:
            raise RiskStateError(f"snapshot sizes: {exc}") from exc
        shapes = {
            "order_index": (cfg.index_capacity,),
            "halt_venues": (cfg.max_venues,),
            "halt_accounts": (cfg.max_accounts,),
            "counters": (NUM_RULES, len(COUNTER_COLUMNS)),
            "meta": (len(META_NAMES),),
        }
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise RiskStateError(f"snapshot array {name} has shape {arrays[name].shape}")
        copies = {n: np.ascontiguousarray(arrays[n]).copy() for n in STATE_ARRAY_NAMES}
        engine = cls(limits, references, cfg, _arrays=copies)
        engine.check_invariants()
        return engine

    def check_invariants(self) -> None:
        """RiskStateError unless the state is consistent: the C structural checks (free
        list, index, links, self-match lists, position keys) plus exposure sums (every
        account's open notional and every position's open quantities equal the sums over
        its open orders)."""
        where = ffi.new("int64_t *")
        if lib.rk_state_check(self._st, where) != 0:
            raise RiskStateError(f"state check failed at check {int(where[0])} (csrc/risk.c)")
        a = self._arrays
        o = a["orders"]
        live = o[o["status"] != 0]
        acct = np.zeros(self.config.max_accounts, dtype=np.int64)
        np.add.at(acct, live["account"], live["open_notional"])
        if not np.array_equal(acct, a["accounts"]["open_notional"]):
            raise RiskStateError("account open notional differs from its open orders' sum")
        count = np.bincount(live["account"], minlength=self.config.max_accounts)
        if not np.array_equal(count, a["accounts"]["open_orders"]):
            raise RiskStateError("account open order count differs from its open orders")
        for side, col in ((66, "open_buy"), (83, "open_sell")):
            sums = np.zeros(self.config.position_capacity, dtype=np.int64)
            rows = live[live["side"] == side]
            np.add.at(sums, rows["agg_slot"], rows["open_qty"])
            np.add.at(sums, rows["strat_slot"], rows["open_qty"])
            if not np.array_equal(sums, a["positions"][col]):
                raise RiskStateError(f"position {col} differs from its open orders' sum")


def _readonly(arr: I64) -> I64:
    view = arr.view()
    view.flags.writeable = False
    return view
