"""Reference prices for the price-band rule: the source protocol and an in-memory table.

This module owns:

* `ReferenceSource`: what the risk engine needs from market data, `get(instrument_id) ->
  (bid_px, ask_px, last_px, updated_ns) | None` (prices 1e-4 units, updated_ns CLOCK_MONOTONIC
  of the last change, None when the instrument has no reference). The feed's shared-memory
  top-of-book table implements it too. `BatchReferenceSource` adds `fill`, one call per batch.
* `InMemoryReferences`: a table indexed by instrument id, filled by `set` or from TICK
  records; the engine reads it in place (no copy per batch).
* `reference_price`: the price a reference gives (mid, or last when a side is empty); the
  Python mirror of `rk_reference_price` in csrc/risk.c.

Staleness is not decided here: the engine compares updated_ns with its `now_ns` input and the
instrument's max_ref_age_ns, so the decision stays inside the deterministic step.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tectra.schema import TICK

__all__ = [
    "REF_COLUMNS",
    "REF_MISSING",
    "BatchReferenceSource",
    "InMemoryReferences",
    "Reference",
    "ReferenceSource",
    "gather_references",
    "reference_price",
]

Reference = tuple[int, int, int, int]
"""(bid_px, ask_px, last_px, updated_ns); an empty side or no trade yet is 0."""

REF_COLUMNS: Final[tuple[str, ...]] = ("bid_px", "ask_px", "last_px", "updated_ns")
"""Columns of a reference row as the C engine reads it (RK_REF_COLS)."""
REF_MISSING: Final[int] = -(2**63)
"""updated_ns of a row with no reference (RK_REF_MISSING)."""


@runtime_checkable
class ReferenceSource(Protocol):
    """Anything that can give the current reference of an instrument."""

    def get(self, instrument_id: int) -> Reference | None:
        """(bid_px, ask_px, last_px, updated_ns) of the instrument, or None if it has none."""
        ...


@runtime_checkable
class BatchReferenceSource(ReferenceSource, Protocol):
    """A source that fills a batch's references in one call (the hot path's preference)."""

    def fill(self, instrument_ids: npt.NDArray[np.uint32], out: npt.NDArray[np.int64]) -> None:
        """Row i of out (shape (n, 4), REF_COLUMNS) = reference of instrument_ids[i];
        updated_ns = REF_MISSING where there is none."""
        ...


def gather_references(
    source: ReferenceSource, instrument_ids: npt.NDArray[np.uint32], out: npt.NDArray[np.int64]
) -> None:
    """Fill per-order reference rows from any source (one `get` per order if it cannot batch)."""
    if isinstance(source, BatchReferenceSource):
        source.fill(instrument_ids, out)
        return
    for i, iid in enumerate(instrument_ids.tolist()):
        ref = source.get(int(iid))
        if ref is None:
            out[i] = (0, 0, 0, REF_MISSING)
        else:
            out[i] = ref


def reference_price(bid_px: int, ask_px: int, last_px: int) -> int:
    """Mid when both sides are set (rounded toward zero), else last; 0 when none."""
    if bid_px > 0 and ask_px > 0:
        return (bid_px + ask_px) // 2
    return last_px if last_px > 0 else 0


class InMemoryReferences:
    """References in a numpy table indexed by instrument id (REF_COLUMNS per row).

    Written by the owner's thread (set / update_from_ticks) between batches; the engine reads
    the table in place during a batch. Instrument ids at or above `capacity` have no reference.
    """

    def __init__(self, capacity: int = 65536) -> None:
        if not 1 <= capacity <= 1 << 24:
            raise ValueError(f"capacity {capacity} outside [1, 2**24]")
        self._table = np.zeros((capacity, len(REF_COLUMNS)), dtype=np.int64)
        self._table[:, 3] = REF_MISSING

    @property
    def capacity(self) -> int:
        return int(self._table.shape[0])

    @property
    def table(self) -> npt.NDArray[np.int64]:
        """The live table (C-contiguous int64, shape (capacity, 4)); the engine's input."""
        return self._table

    def _row(self, instrument_id: int) -> int:
        if not 0 <= instrument_id < self._table.shape[0]:
            raise ValueError(f"instrument id {instrument_id} outside [0, {self.capacity})")
        return instrument_id

    def set(
        self, instrument_id: int, bid_px: int, ask_px: int, last_px: int, updated_ns: int
    ) -> None:
        """Set one instrument's reference (prices in 1e-4 units, 0 = empty side / no trade)."""
        for name, px in (("bid_px", bid_px), ("ask_px", ask_px), ("last_px", last_px)):
            if px < 0:
                raise ValueError(f"{name} {px} is negative")
        if updated_ns == REF_MISSING:
            raise ValueError("updated_ns must be a time")
        self._table[self._row(instrument_id)] = (bid_px, ask_px, last_px, updated_ns)

    def clear(self, instrument_id: int) -> None:
        """Forget one instrument's reference (orders on it then fail STALE_REFERENCE)."""
        self._table[self._row(instrument_id)] = (0, 0, 0, REF_MISSING)

    def get(self, instrument_id: int) -> Reference | None:
        if not 0 <= instrument_id < self._table.shape[0]:
            return None
        bid, ask, last, updated = (int(x) for x in self._table[instrument_id])
        return None if updated == REF_MISSING else (bid, ask, last, updated)

    def fill(self, instrument_ids: npt.NDArray[np.uint32], out: npt.NDArray[np.int64]) -> None:
        ids = instrument_ids.astype(np.int64)
        inside = ids < self._table.shape[0]
        out[inside] = self._table[ids[inside]]
        out[~inside] = (0, 0, 0, REF_MISSING)

    def update_from_ticks(self, ticks: npt.NDArray[np.void]) -> None:
        """Apply TICK records in order (the last tick of an instrument wins)."""
        if ticks.dtype != TICK.dtype:
            raise ValueError("expected TICK records")
        ids = ticks["instrument_id"].astype(np.int64)
        keep = ids < self._table.shape[0]
        ticks, ids = ticks[keep], ids[keep]
        # Last occurrence of each id: unique over the reversed array.
        _, rev_first = np.unique(ids[::-1], return_index=True)
        last = ids.size - 1 - rev_first
        rows = np.stack(
            [
                ticks["bid_px"][last],
                ticks["ask_px"][last],
                ticks["last_px"][last],
                ticks["last_update_ns"][last],
            ],
            axis=1,
        )
        self._table[ids[last]] = rows
