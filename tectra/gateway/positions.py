"""Positions and P&L per (account, strategy, instrument), from execution-report fills.

This module owns the gateway's books of what was traded:

* `PositionBook(capacity, fees=FeeSchedule(...))`: one row of `POSITION_DTYPE` per
  (account, strategy, instrument) in a fixed-size numpy array: signed net quantity, the signed
  cost basis of the open position, realised P&L, fees, volume. `on_reports(EXECUTION_REPORT
  records)` books every TRADE (and reverses every TRADE_CANCEL); anything else is skipped and
  malformed fills are counted (`PositionIssue`) and ignored.
* Arithmetic, all exact int64 in 1e-4 currency units (price 1e-4 units x shares):
  - `cost` is the signed cost basis of the open position (sum of signed qty x px of the open
    lots; negative for a short). A fill that adds to the position adds qty x px to it.
  - A fill that reduces a position of `net` shares by `q` removes
    `removed = round_div(cost * q, |net|)` (rounded half away from zero, Python ints so the
    product cannot overflow) and realises `-d * px - removed` (d the signed fill quantity).
    Closing the whole position removes exactly `cost`; a flip through zero is a full close
    followed by an open of the rest at the fill price.
  - Hence realised + (net x mark - cost) equals the cash-flow P&L (-sum of d x px + net x mark)
    exactly, for every mark: rounding only moves value between realised and unrealised.
  - `avg_open_px` = round_div(cost, net) (half away from zero), 0 when flat.
  - Fees: `FeeSchedule` gives a fee per share in 1e-4 currency units per venue (a default for
    the rest); a fill costs fee x qty, kept apart from P&L (`fees`, `net_pnl` = realised -
    fees). A bust refunds the fee.
  - Every result is checked to fit int64 before it is stored; a fill that would overflow is
    counted (OVERFLOW) and not booked.
* Unrealised P&L is marked by the caller: `unrealised(marks)` with `marks` a dict or an array
  indexed by instrument id of mid prices (the feed's reference table); a missing or zero mark
  gives 0 and a False in the returned `marked` mask (never a guess).
* `state_arrays()` / `PositionBook.from_state_arrays()` for snapshots; deterministic.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.gateway.orders import MAX_PRICE, MAX_QTY, round_div
from tectra.schema import EXECUTION_REPORT, ExecType, Side

__all__ = [
    "POSITION_DTYPE",
    "FeeSchedule",
    "PositionBook",
    "PositionBookError",
    "PositionIssue",
]

_I64_MIN: Final[int] = -(2**63)
_I64_MAX: Final[int] = 2**63 - 1

POSITION_DTYPE: Final[np.dtype[np.void]] = np.dtype(
    [
        ("used", "u1"),
        ("account_id", "<u4"),
        ("strategy_id", "<u4"),
        ("instrument_id", "<u4"),
        ("net_qty", "<i8"),  # signed: long > 0, short < 0
        ("cost", "<i8"),  # signed cost basis of the open position, 1e-4 currency units
        ("realised_pnl", "<i8"),  # 1e-4 currency units, before fees
        ("fees", "<i8"),  # 1e-4 currency units, total paid
        ("bought_qty", "<i8"),
        ("sold_qty", "<i8"),
        ("fills", "<i8"),
        ("last_px", "<i8"),  # last fill price, 1e-4 units
    ]
)


class PositionBookError(ValueError):
    """A call the book cannot accept (wrong dtype, bad capacity, bad fee, bad state arrays)."""


class PositionIssue(enum.IntEnum):
    """Why a fill was not booked (each counted)."""

    NONE = 0
    BAD_FILL = 1  # last_qty / last_px out of range or unknown side
    TABLE_FULL = 2  # a new (account, strategy, instrument) and no free row
    OVERFLOW = 3  # an int64 result would overflow
    UNKNOWN_BUST = 4  # a bust for a key with no position row


@dataclass(frozen=True)
class FeeSchedule:
    """Fee per share in 1e-4 currency units, per venue id; `default` for other venues.

    Negative values are rebates."""

    default: int = 0
    per_venue: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for value in (self.default, *self.per_venue.values()):
            if not isinstance(value, int) or abs(value) > MAX_PRICE:
                raise PositionBookError(
                    f"fee per share {value!r} must be an int within 1e-4 units of +-{MAX_PRICE}"
                )

    def per_share(self, venue_id: int) -> int:
        return int(self.per_venue.get(int(venue_id), self.default))


def _fits(*values: int) -> bool:
    return all(_I64_MIN <= v <= _I64_MAX for v in values)


class PositionBook:
    """Bounded positions table; see the module docstring for the arithmetic."""

    def __init__(self, capacity: int, fees: FeeSchedule | None = None) -> None:
        if not isinstance(capacity, int) or capacity <= 0:
            raise PositionBookError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.fees = fees if fees is not None else FeeSchedule()
        self.rows: npt.NDArray[np.void] = np.zeros(capacity, dtype=POSITION_DTYPE)
        self.issues = np.zeros(len(PositionIssue), dtype=np.uint64)
        self.fills_booked = 0
        self._index: dict[tuple[int, int, int], int] = {}

    def __len__(self) -> int:
        return len(self._index)

    # ---- updates -----------------------------------------------------------------------------

    def on_reports(self, reports: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
        """Book the TRADE fills (and reverse the TRADE_CANCEL busts) of a batch of
        EXECUTION_REPORT records, in order. Returns a mask of the reports booked."""
        if reports.dtype != EXECUTION_REPORT.dtype:
            raise PositionBookError("on_reports takes EXECUTION_REPORT records")
        et = reports["exec_type"]
        booked = np.zeros(reports.shape[0], dtype=np.bool_)
        fills = np.flatnonzero((et == ExecType.TRADE) | (et == ExecType.TRADE_CANCEL))
        if not fills.size:
            return booked  # acks, cancels, replaces: nothing to book
        # The fills' columns as Python ints at once (a numpy scalar read per field costs more
        # than the booking itself).
        rows = reports[fills]
        columns = zip(
            fills.tolist(),
            rows["account_id"].tolist(),
            rows["strategy_id"].tolist(),
            rows["instrument_id"].tolist(),
            rows["side"].tolist(),
            rows["last_qty"].tolist(),
            rows["last_px"].tolist(),
            rows["venue_id"].tolist(),
            rows["exec_type"].tolist(),
            strict=True,
        )
        for i, account, strategy, instrument, side, qty, px, venue, exec_type in columns:
            issue = self.book_fill(
                account,
                strategy,
                instrument,
                side=side,
                qty=qty,
                px=px,
                venue_id=venue,
                bust=exec_type == ExecType.TRADE_CANCEL,
            )
            if issue is PositionIssue.NONE:
                booked[i] = True
            else:
                self.issues[issue] += 1
        return booked

    def book_fill(
        self,
        account_id: int,
        strategy_id: int,
        instrument_id: int,
        *,
        side: int,
        qty: int,
        px: int,
        venue_id: int = 0,
        bust: bool = False,
    ) -> PositionIssue:
        """Book one fill (a bust: its reversal, an opposite fill at the same price with the fee
        refunded). Returns NONE or why it was not booked (the caller counts)."""
        if not 0 < qty <= MAX_QTY or not 0 < px <= MAX_PRICE:
            return PositionIssue.BAD_FILL
        if side == Side.BUY:
            d = qty
        elif side in (Side.SELL, Side.SELL_SHORT, Side.SELL_SHORT_EXEMPT):
            d = -qty
        else:
            return PositionIssue.BAD_FILL
        fee = self.fees.per_share(venue_id) * qty
        if bust:
            d, fee = -d, -fee
        key = (account_id, strategy_id, instrument_id)
        slot = self._index.get(key)
        if slot is None:
            if bust:
                return PositionIssue.UNKNOWN_BUST
            if len(self._index) >= self.capacity:
                return PositionIssue.TABLE_FULL
            slot = len(self._index)  # rows are never freed: slot order = first-fill order
        row = self.rows[slot]
        net, cost = int(row["net_qty"]), int(row["cost"])
        realised = int(row["realised_pnl"])
        if net == 0 or (net > 0) == (d > 0):
            new_net, new_cost = net + d, cost + d * px
        elif abs(d) <= abs(net):
            removed = cost if abs(d) == abs(net) else round_div(cost * abs(d), abs(net))
            realised += -d * px - removed
            new_net, new_cost = net + d, cost - removed
        else:  # flip through zero: close all `net` at px, open the rest at px
            realised += net * px - cost
            new_net = net + d
            new_cost = new_net * px
        bought = int(row["bought_qty"]) + (d if d > 0 else 0)
        sold = int(row["sold_qty"]) + (-d if d < 0 else 0)
        fees = int(row["fees"]) + fee
        if not _fits(
            new_cost, realised, fees, bought, sold, abs(new_net) * MAX_PRICE + abs(new_cost)
        ):
            return PositionIssue.OVERFLOW
        if slot == len(self._index):
            self._index[key] = slot
            row["used"] = 1
            row["account_id"] = account_id
            row["strategy_id"] = strategy_id
            row["instrument_id"] = instrument_id
        row["net_qty"] = new_net
        row["cost"] = new_cost
        row["realised_pnl"] = realised
        row["fees"] = fees
        row["bought_qty"] = bought
        row["sold_qty"] = sold
        row["fills"] = int(row["fills"]) + 1
        row["last_px"] = px
        self.fills_booked += 1
        return PositionIssue.NONE

    # ---- queries -----------------------------------------------------------------------------

    def slot_of(self, account_id: int, strategy_id: int, instrument_id: int) -> int | None:
        return self._index.get((account_id, strategy_id, instrument_id))

    def position(self, account_id: int, strategy_id: int, instrument_id: int) -> dict[str, int]:
        """One position's figures (zeros when never traded), with avg_open_px."""
        slot = self._index.get((account_id, strategy_id, instrument_id))
        if slot is None:
            names = POSITION_DTYPE.names or ()
            out = dict.fromkeys(names, 0)
            out.update(
                account_id=account_id,
                strategy_id=strategy_id,
                instrument_id=instrument_id,
                avg_open_px=0,
            )
            return out
        row = self.rows[slot]
        out = {name: int(row[name]) for name in POSITION_DTYPE.names or ()}
        net = out["net_qty"]
        out["avg_open_px"] = round_div(out["cost"], net) if net else 0
        return out

    def avg_open_px(self) -> npt.NDArray[np.int64]:
        """Average open price per row, 1e-4 units, round_div(cost, net); 0 when flat."""
        n = len(self._index)
        out = np.zeros(self.capacity, dtype=np.int64)
        for slot in range(n):
            net = int(self.rows["net_qty"][slot])
            if net:
                out[slot] = round_div(int(self.rows["cost"][slot]), net)
        return out

    def unrealised(
        self, marks: Mapping[int, int] | npt.NDArray[np.integer[Any]]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """(unrealised P&L per row = net x mark - cost, marked mask). `marks`: instrument id ->
        mid price (1e-4 units), as a dict or an array indexed by instrument id; rows without a
        positive mark get 0 and False (flat rows are always marked, at 0)."""
        n = len(self._index)
        mark = np.zeros(self.capacity, dtype=np.int64)
        ids = self.rows["instrument_id"][:n].astype(np.int64)
        if isinstance(marks, np.ndarray):
            arr = np.asarray(marks, dtype=np.int64)
            ok = ids < arr.shape[0]
            mark[:n][ok] = arr[ids[ok]]
        else:
            mark[:n] = [int(marks.get(int(i), 0)) for i in ids.tolist()]
        valid = (mark > 0) & (mark <= MAX_PRICE)
        net = self.rows["net_qty"]
        # |net| * MAX_PRICE was checked to fit int64 when net was booked.
        pnl = np.where(valid, net * mark - self.rows["cost"], 0).astype(np.int64)
        flat = net == 0
        pnl[flat] = 0
        marked = valid | flat
        marked[n:] = False
        return pnl, marked

    def totals(
        self, marks: Mapping[int, int] | npt.NDArray[np.integer[Any]] | None = None
    ) -> dict[str, int]:
        """Book-wide realised, fees, net and (with marks) unrealised P&L, 1e-4 units."""
        realised = int(sum(int(x) for x in self.rows["realised_pnl"].tolist()))
        fees = int(sum(int(x) for x in self.rows["fees"].tolist()))
        out = {"realised_pnl": realised, "fees": fees, "net_pnl": realised - fees}
        if marks is not None:
            pnl, marked = self.unrealised(marks)
            out["unrealised_pnl"] = int(sum(int(x) for x in pnl.tolist()))
            out["unmarked_positions"] = int(((~marked)[: len(self._index)]).sum())
        return out

    def counters(self) -> dict[str, int]:
        out = {"fills_booked": self.fills_booked, "positions": len(self._index)}
        for issue in PositionIssue:
            if issue:
                out[f"fill_ignored_{issue.name.lower()}"] = int(self.issues[issue])
        return out

    # ---- snapshots ---------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        per_venue = sorted(self.fees.per_venue.items())
        return {
            "rows": self.rows.copy(),
            "issues": self.issues.copy(),
            "scalars": np.array(
                [self.capacity, self.fills_booked, self.fees.default], dtype=np.int64
            ),
            "fee_venues": np.array([v for v, _ in per_venue], dtype=np.int64),
            "fee_values": np.array([f for _, f in per_venue], dtype=np.int64),
        }

    @classmethod
    def from_state_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> PositionBook:
        try:
            rows = np.asarray(arrays["rows"])
            scalars = [int(x) for x in np.asarray(arrays["scalars"]).tolist()]
            venues = [int(x) for x in np.asarray(arrays["fee_venues"]).tolist()]
            values = [int(x) for x in np.asarray(arrays["fee_values"]).tolist()]
            issues = np.asarray(arrays["issues"], dtype=np.uint64)
        except KeyError as exc:
            raise PositionBookError(f"state arrays lack {exc}") from exc
        if rows.dtype != POSITION_DTYPE or len(scalars) != 3 or rows.shape != (scalars[0],):
            raise PositionBookError("state arrays do not match POSITION_DTYPE / capacity")
        if len(venues) != len(values) or issues.shape != (len(PositionIssue),):
            raise PositionBookError("fee or counter arrays malformed")
        book = cls(scalars[0], FeeSchedule(scalars[2], dict(zip(venues, values, strict=True))))
        book.rows = rows.copy()
        book.issues = issues.copy()
        book.fills_booked = scalars[1]
        used = np.flatnonzero(rows["used"] == 1).tolist()
        if used != list(range(len(used))):
            raise PositionBookError("position rows must be packed from slot 0")
        for slot in used:
            r = rows[slot]
            book._index[(int(r["account_id"]), int(r["strategy_id"]), int(r["instrument_id"]))] = (
                slot
            )
        return book
