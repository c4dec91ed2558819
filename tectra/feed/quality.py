"""Market-data quality counters per instrument, read by the metrics layer at scrape time.

This module owns `FeedQuality`: per-instrument uint64 counters and current-state flags for

* crossed (bid > ask) and locked (bid == ask) books, counted per episode (entering the state)
  from the TICK records of each batch (`observe_ticks`);
* stale instruments: seen before, not halted/paused, and no TICK for longer than a limit
  (`check_stale(now_ns, ...)`, time passed in by the caller's clock), counted per episode;
* gaps, resends and drops, which only the MoldUDP64 session knows: the caller reports them
  with `record_session` (feed-wide, and per instrument when it can attribute them, e.g. the
  decoded messages of a retransmission).

`arrays()` exposes read-only views (no copies, no per-message Python) for a Prometheus
collector; `summary()` gives the feed-wide figures the lifecycle uses (stale/gapped ->
DEGRADED).
"""

from __future__ import annotations

import enum
import importlib
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.schema import TradingState

__all__ = ["QUALITY_COUNTERS", "FeedQuality", "SessionEvent"]

QUALITY_COUNTERS: Final[tuple[str, ...]] = (
    "crossed",
    "locked",
    "stale",
    "gaps",
    "resends",
    "drops",
)

# The per-tick fold in C (csrc/mold.c mold_observe_ticks); imported by name (typed as Any).
_mold = importlib.import_module("tectra._mold")

# TICK fields the C fold reads, with the dtype each must have there.
_TICK_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("instrument_id", "<u4"),
    ("bid_qty", "<i8"),
    ("ask_qty", "<i8"),
    ("bid_px", "<i8"),
    ("ask_px", "<i8"),
    ("ts_ns", "<i8"),
    ("trading_state", "u1"),
)
_FIELD_OFFSETS: dict[np.dtype[np.void], npt.NDArray[np.int64] | None] = {}


def _field_offsets(dtype: np.dtype[np.void]) -> npt.NDArray[np.int64] | None:
    """Byte offsets of `_TICK_FIELDS` in a record dtype, or None when it lacks one of them
    (or has it with another type): such records take the numpy path."""
    if dtype not in _FIELD_OFFSETS:
        fields: dict[str, Any] = dict(dtype.fields or {})
        offsets: list[int] = []
        for name, fmt in _TICK_FIELDS:
            spec = fields.get(name)
            if spec is None or spec[0] != np.dtype(fmt):
                _FIELD_OFFSETS[dtype] = None
                break
            offsets.append(int(spec[1]))
        else:
            _FIELD_OFFSETS[dtype] = np.array(offsets, dtype=np.int64)
    return _FIELD_OFFSETS[dtype]


# No quotes are expected while halted or paused, so silence then is not staleness.
_QUIET_STATES: Final = np.array([TradingState.HALTED, TradingState.PAUSED], dtype=np.uint8)


class SessionEvent(enum.Enum):
    """What the MoldUDP64 session observed."""

    GAPS = "gaps"  # messages missing from the sequence (count of messages)
    RESENDS = "resends"  # messages recovered by retransmission
    DROPS = "drops"  # duplicates / unusable messages discarded


class FeedQuality:
    """Per-instrument data-quality counters for `max_instruments` instruments."""

    def __init__(self, max_instruments: int) -> None:
        if max_instruments <= 0:
            raise ValueError(f"max_instruments must be > 0, got {max_instruments}")
        self.max_instruments = max_instruments
        self._counts = {
            name: np.zeros(max_instruments, dtype=np.uint64) for name in QUALITY_COUNTERS
        }
        self._totals = dict.fromkeys(QUALITY_COUNTERS, 0)
        self.crossed_now = np.zeros(max_instruments, dtype=bool)
        self.locked_now = np.zeros(max_instruments, dtype=bool)
        self.stale_now = np.zeros(max_instruments, dtype=bool)
        self.last_update_ns = np.full(max_instruments, -1, dtype=np.int64)  # -1: never
        self.trading_state = np.zeros(max_instruments, dtype=np.uint8)

    # ------------------------------------------------------------------ inputs

    def observe_ticks(self, ticks: npt.NDArray[np.void]) -> None:
        """Fold in a batch of TICK records (in output order)."""
        if not ticks.shape[0]:
            return
        offsets = _field_offsets(ticks.dtype) if ticks.ndim == 1 else None
        if offsets is not None and ticks.flags.c_contiguous:
            self._observe_c(ticks, offsets)
            return
        ids = ticks["instrument_id"].astype(np.int64)
        if (ids >= self.max_instruments).any():
            keep = ids < self.max_instruments
            ticks, ids = ticks[keep], ids[keep]
            if not ids.size:
                return
        two = (ticks["bid_qty"] > 0) & (ticks["ask_qty"] > 0)
        crossed = two & (ticks["bid_px"] > ticks["ask_px"])
        locked = two & (ticks["bid_px"] == ticks["ask_px"])
        order = np.argsort(ids, kind="stable")
        sid = ids[order]
        first = np.concatenate(([True], sid[1:] != sid[:-1]))
        last = np.concatenate((sid[1:] != sid[:-1], [True]))
        for name, flags, now in (
            ("crossed", crossed[order], self.crossed_now),
            ("locked", locked[order], self.locked_now),
        ):
            # The state before each tick: the previous tick of the same instrument, or the
            # state carried from earlier batches for its first tick.
            prev = np.concatenate(([False], flags[:-1]))
            prev[first] = now[sid[first]]
            entered = flags & ~prev
            if entered.any():
                np.add.at(self._counts[name], sid[entered], np.uint64(1))
                self._totals[name] += int(entered.sum())
            now[sid[last]] = flags[last]
        np.maximum.at(self.last_update_ns, sid, ticks["ts_ns"][order].astype(np.int64))
        self.trading_state[sid[last]] = ticks["trading_state"][order][last]
        self.stale_now[sid] = False

    def _observe_c(self, ticks: npt.NDArray[np.void], offsets: npt.NDArray[np.int64]) -> None:
        """`observe_ticks` as one C pass in tick order (the same counts and states)."""
        ffi, lib = _mold.ffi, _mold.lib
        entered = np.zeros(2, dtype=np.uint64)
        lib.mold_observe_ticks(
            ffi.from_buffer("uint8_t[]", ticks),
            ticks.shape[0],
            ticks.dtype.itemsize,
            ffi.from_buffer("int64_t[]", offsets),
            self.max_instruments,
            ffi.from_buffer("uint64_t[]", self._counts["crossed"]),
            ffi.from_buffer("uint64_t[]", self._counts["locked"]),
            ffi.from_buffer("uint8_t[]", self.crossed_now),
            ffi.from_buffer("uint8_t[]", self.locked_now),
            ffi.from_buffer("uint8_t[]", self.stale_now),
            ffi.from_buffer("int64_t[]", self.last_update_ns),
            ffi.from_buffer("uint8_t[]", self.trading_state),
            ffi.from_buffer("uint64_t[]", entered),
        )
        crossed, locked = entered.tolist()
        self._totals["crossed"] += crossed
        self._totals["locked"] += locked

    def check_stale(self, now_ns: int, stale_after_ns: int) -> npt.NDArray[np.int64]:
        """Mark instruments stale whose last TICK is older than stale_after_ns (instruments
        never seen, halted or paused excluded); returns the ids that just became stale."""
        seen = self.last_update_ns >= 0
        quiet = np.isin(self.trading_state, _QUIET_STATES)
        stale = seen & ~quiet & (now_ns - self.last_update_ns > stale_after_ns)
        newly = np.flatnonzero(stale & ~self.stale_now)
        if newly.size:
            self._counts["stale"][newly] += np.uint64(1)
            self._totals["stale"] += int(newly.size)
        self.stale_now[:] = stale
        return newly

    def record_session(
        self, event: SessionEvent, count: int = 1, instruments: npt.ArrayLike | None = None
    ) -> None:
        """Count MoldUDP64 session events. Without `instruments`, `count` messages feed-wide
        (a gap's instruments are unknown until retransmitted); with them, one per listed id
        (repeats count again) and the feed-wide total grows by their number."""
        name = SessionEvent(event).value
        if instruments is None:
            if count < 0:
                raise ValueError(f"count must be >= 0, got {count}")
            self._totals[name] += int(count)
            return
        ids = np.asarray(instruments, dtype=np.int64).reshape(-1)
        ids = ids[(ids >= 0) & (ids < self.max_instruments)]
        np.add.at(self._counts[name], ids, np.uint64(1))
        self._totals[name] += int(ids.size)

    # ------------------------------------------------------------------ scrape

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Read-only views: every counter (uint64 per instrument), the current crossed /
        locked / stale flags and the last update time (-1 = never)."""
        views: dict[str, npt.NDArray[np.generic]] = dict(self._counts)
        views.update(
            crossed_now=self.crossed_now,
            locked_now=self.locked_now,
            stale_now=self.stale_now,
            last_update_ns=self.last_update_ns,
        )
        out: dict[str, npt.NDArray[np.generic]] = {}
        for name, arr in views.items():
            view = arr.view()
            view.flags.writeable = False
            out[name] = view
        return out

    def totals(self) -> dict[str, int]:
        """Feed-wide totals of every counter (session events included when unattributed)."""
        return dict(self._totals)

    def summary(self) -> dict[str, int]:
        """What the lifecycle needs: instruments crossed / stale now, plus the totals."""
        return {
            "crossed_now": int(self.crossed_now.sum()),
            "locked_now": int(self.locked_now.sum()),
            "stale_now": int(self.stale_now.sum()),
            **{f"{k}_total": v for k, v in self._totals.items()},
        }
