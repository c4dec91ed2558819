"""The order store behind the journal Component protocol, snapshots, determinism, and the
reports OuchOrderTracker produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adapters.ouch42 import (
    Accepted,
    Canceled,
    CancelReject,
    Executed,
    OuchOrderTracker,
    Replaced,
)
from tectra.gateway.orders import (
    ORDER_TRANSITION_TYPE,
    TRANSITION_DTYPE,
    OrderStateComponent,
    OrderStore,
    OrderStoreError,
    pack_arrays,
    unpack_arrays,
)
from tectra.gateway.positions import FeeSchedule, PositionBook
from tectra.journal.capture import Component, OpaqueBatch, Recorder
from tectra.journal.replay import ReplayOptions, replay_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import EXECUTION_REPORT, ExecType, OrdStatus, RejectReason, Side
from tests.gateway._helpers import (
    ACC,
    INSTR,
    NOW,
    PX,
    STRAT,
    ack,
    batch,
    cancel,
    fill,
    new,
    replace,
    report,
)


def scenario() -> list[np.ndarray]:
    return [
        batch(new(1, "A", 100), new(2, "B", 50, side=Side.SELL), new(3, "A", 5)),
        batch(ack(1), ack(2), fill(1, 30, PX + 1), fill(9, 1)),
        batch(replace(4, "A2", 1, 120, PX - 5), cancel(5, "BX", 2)),
        batch(report(4, ExecType.REPLACED, price=PX - 5), fill(2, 10, PX, side=Side.SELL)),
        batch(fill(4, 90, PX - 5), report(2, ExecType.CANCELED)),
    ]


def run(component: OrderStateComponent, steps: list[np.ndarray], start: int = 0) -> list[bytes]:
    outs = []
    for k, inputs in enumerate(steps, start):
        client, trans = component.step(inputs, NOW + k)
        outs.append(client.tobytes() + trans.data.tobytes())
    return outs


def make() -> OrderStateComponent:
    return OrderStateComponent(OrderStore(16), PositionBook(8, FeeSchedule(default=2)))


def test_component_protocol_and_outputs() -> None:
    comp = make()
    assert isinstance(comp, Component)
    client, trans = comp.step(scenario()[0], NOW)
    assert client.dtype == EXECUTION_REPORT.dtype
    assert isinstance(trans, OpaqueBatch) and trans.type_code == ORDER_TRANSITION_TYPE
    rows = np.frombuffer(trans.data.tobytes(), dtype=TRANSITION_DTYPE)
    assert rows["order_id"].tolist() == [1, 2]
    # two PENDING_NEW reports, then the duplicate-ClOrdID reject
    assert client["exec_type"].tolist() == [ExecType.PENDING_NEW] * 2 + [ExecType.REJECTED]
    assert client["reject_reason"][2] == RejectReason.DUPLICATE_CL_ORD_ID
    assert client["ord_status"][2] == OrdStatus.REJECTED
    with pytest.raises(OrderStoreError):
        comp.step(np.zeros(1, dtype=TRANSITION_DTYPE), NOW)


def test_whole_scenario_state_and_positions() -> None:
    comp = make()
    run(comp, scenario())
    store, book = comp.store, comp.positions
    assert store.status(1) is OrdStatus.REPLACED
    assert store.status(4) is OrdStatus.FILLED
    assert store.status(2) is OrdStatus.CANCELED
    row = store.order(4)
    assert row is not None and row["cum_qty"] == 120
    assert store.counters()["report_ignored_unknown_order"] == 1
    assert book is not None
    p = book.position(ACC, STRAT, INSTR)
    assert p["net_qty"] == 120 - 10  # the fill for unknown order 9 is not booked
    assert p["fees"] == 2 * (30 + 10 + 90)


def test_determinism_same_inputs_identical_state_and_outputs() -> None:
    a, b = make(), make()
    assert run(a, scenario()) == run(b, scenario())
    sa, sb = a.store.state_arrays(), b.store.state_arrays()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert a.snapshot() == b.snapshot()


def test_snapshot_restore_midway_gives_identical_continuation() -> None:
    steps = scenario()
    whole = make()
    expected = run(whole, steps)
    first = make()
    run(first, steps[:2])
    snap = first.snapshot()
    second = make()
    second.restore(snap)
    assert second.snapshot() == snap
    assert run(second, steps[2:], 2) == expected[2:]
    assert second.snapshot() == whole.snapshot()


def test_pack_arrays_rejects_garbage() -> None:
    blob = pack_arrays({"x": np.arange(3), "rows": np.zeros(2, dtype=TRANSITION_DTYPE)})
    back = unpack_arrays(blob)
    assert back["x"].tolist() == [0, 1, 2] and back["rows"].dtype == TRANSITION_DTYPE
    with pytest.raises(OrderStoreError):
        unpack_arrays(b"nope")
    with pytest.raises(OrderStoreError):
        unpack_arrays(blob[:-5])
    with pytest.raises(OrderStoreError):
        OrderStore.from_state_arrays({"rows": np.zeros(1)})


# ---- fed by the OUCH tracker -----------------------------------------------------------------


def accepted(token: str, shares: int, price: int, ref: int) -> Accepted:
    return Accepted(
        timestamp=1,
        token=token,
        side=Side.BUY,
        shares=shares,
        stock="AAPL",
        price=price,
        time_in_force=99_999,
        firm="",
        display="A",
        order_ref=ref,
        capacity="A",
        intermarket_sweep="N",
        minimum_quantity=0,
        cross_type="N",
        order_state="L",
    )


def test_reports_from_ouch_tracker() -> None:
    tracker = OuchOrderTracker(venue_id=2)
    store = OrderStore(8)

    def send(req: np.ndarray, token: str, orig: str = "") -> None:
        acc, _ = store.on_requests(req, NOW)
        assert acc.all()
        tracker.on_request(req[0], token, orig)

    def venue(*msgs: object) -> np.ndarray:
        reps = tracker.on_messages(msgs, NOW)  # type: ignore[arg-type]
        return store.on_reports(reps, NOW)

    send(new(1, "C1", 100, 1_000_000), "T1")
    venue(accepted("T1", 100, 1_000_000, 501))
    t = venue(Executed(2, "T1", 40, 1_000_100, "A", 9001))
    assert (t["cum_qty"][0], t["leaves_qty"][0], t["avg_px"][0]) == (40, 60, 1_000_100)
    send(replace(2, "C2", 1, 150, 999_900), "T2", "T1")
    t = venue(
        Replaced(
            timestamp=3,
            token="T2",
            side=Side.BUY,
            shares=110,
            stock="AAPL",
            price=999_900,
            time_in_force=99_999,
            firm="",
            display="A",
            order_ref=502,
            capacity="A",
            intermarket_sweep="N",
            minimum_quantity=0,
            cross_type="N",
            order_state="L",
            previous_token="T1",
        )
    )
    assert t["to_status"].tolist() == [OrdStatus.REPLACED, OrdStatus.PARTIALLY_FILLED]
    assert (t["cum_qty"][1], t["leaves_qty"][1], t["price"][1]) == (40, 110, 999_900)
    send(cancel(3, "X3", 2), "", "T2")
    t = venue(CancelReject(4, "T2"))
    assert t["to_status"].tolist() == [OrdStatus.PARTIALLY_FILLED]
    send(cancel(4, "X4", 2), "", "T2")
    t = venue(Canceled(5, "T2", 110, "U"))
    assert t["to_status"].tolist() == [OrdStatus.CANCELED]
    assert store.report_issues.sum() == 0
    row = store.order(2)
    assert row is not None and row["token"] == b"T2"


# ---- journaled live, replayed bit for bit ----------------------------------------------------


def test_journal_record_and_replay_bit_for_bit(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j", WriterOptions(fsync=FsyncPolicy.NONE))
    rec = Recorder(make(), writer)
    steps = scenario()
    for k, inputs in enumerate(steps):
        if k == 2:
            rec.snapshot(NOW + k)
        rec.step(inputs, NOW + k)
    writer.close()
    report_all = replay_journal(tmp_path / "j", make())
    assert report_all.zero, report_all.format_text()
    assert report_all.steps == len(steps)
    report_snap = replay_journal(tmp_path / "j", make(), options=ReplayOptions(from_snapshot=True))
    assert report_snap.zero, report_snap.format_text()
