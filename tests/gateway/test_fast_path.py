"""The core's scalar fast paths give byte-identical outputs and state to the batch paths.

Two cores see the same random stream of requests (new, cancel, replace, duplicates, unknown
symbols and accounts, risk refusals, kill verdicts) and venue answers (acks, fills, cancels,
rejects from the in-process venue): the reference core runs the batch path for every request
and the original field-by-field `OrderStore.execution_reports`; every step's journal outputs
and the final snapshots must be equal byte for byte.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.gateway.core import KILL_VERDICTS
from tectra.gateway.orders import _STAGED, OrderStore, _internal_only
from tectra.journal.capture import OpaqueBatch
from tectra.schema import EXECUTION_REPORT, OrderAction, OrdStatus, Side, new_records
from tests.gateway._core_harness import PX, Harness, limits_doc, request


def reference_execution_reports(
    store: OrderStore, transitions: npt.NDArray[np.void], now_ns: int
) -> npt.NDArray[np.void]:
    """The record-by-record `execution_reports` the vectorised one replaced."""
    picked: list[tuple[int, int]] = []
    for i in range(int(transitions.shape[0])):
        t = transitions[i]
        slot = store._by_id.get(int(t["order_id"]))
        to_status, from_status = int(t["to_status"]), int(t["from_status"])
        if slot is not None and not _internal_only(from_status, to_status, int(t["source"])):
            picked.append((i, slot))
    out = new_records(EXECUTION_REPORT, len(picked))
    for j, (i, slot) in enumerate(picked):
        t = transitions[i]
        to_status, from_status = int(t["to_status"]), int(t["from_status"])
        r = store.rows[slot]
        o = out[j]
        o["ts_ns"] = int(now_ns)
        o["seq"] = int(t["seq"])
        o["order_id"] = int(t["order_id"])
        o["exec_id"] = int(t["exec_id"])
        for name in ("price", "cum_qty", "leaves_qty", "avg_px", "last_px", "last_qty"):
            o[name] = int(t[name])
        o["order_qty"] = int(t["order_qty"])
        for name in (
            "instrument_id",
            "account_id",
            "strategy_id",
            "session_id",
            "venue_id",
            "side",
            "symbol",
            "cl_ord_id",
            "orig_cl_ord_id",
        ):
            o[name] = r[name]
        o["order_token"] = r["token"]
        o["exec_type"] = int(t["exec_type"])
        o["ord_status"] = to_status
        if from_status == _STAGED and to_status == OrdStatus.REJECTED:
            orig = store._by_id.get(int(r["orig_order_id"]))
            if orig is not None:
                o["ord_status"] = int(store.rows["status"][orig])
        o["reject_reason"] = int(t["reject_reason"])
        request_cl = bytes(t["request_cl_ord_id"])
        if request_cl:
            o["orig_cl_ord_id"] = r["cl_ord_id"]
            o["cl_ord_id"] = request_cl
        o["transact_ns"] = int(t["ts_ns"])
    return out


def _reference(h: Harness) -> Harness:
    core = h.core
    core._one_new = lambda orders, now_ns: None  # type: ignore[method-assign]
    store_cls = type(core.store)

    def patched(self: OrderStore, trans: Any, now_ns: int) -> Any:
        return reference_execution_reports(self, trans, now_ns)

    core.store.execution_reports = patched.__get__(core.store, store_cls)  # type: ignore[method-assign]
    return h


def _outputs(res: Any) -> list[bytes]:
    if res is None:
        return []
    out = []
    for batch in res.journal_outputs():
        if isinstance(batch, OpaqueBatch):
            out.append(batch.data.tobytes() + batch.offsets.tobytes())
        else:
            out.append(batch.tobytes())
    return out


step = st.tuples(
    st.sampled_from(["new", "new", "new", "new", "cancel", "replace", "dup", "badsym", "kill"]),
    st.integers(min_value=0, max_value=1_000),  # picks an order / price offset
    st.integers(min_value=1, max_value=60),  # qty
    st.booleans(),  # side
    st.booleans(),  # pump the venue after this request
)


@settings(max_examples=40, deadline=None)
@given(st.lists(step, min_size=1, max_size=60), st.integers(min_value=1, max_value=3))
def test_fast_path_matches_batch_path(steps: list[tuple[Any, ...]], accts: int) -> None:
    doc = limits_doc(max_qty=50)
    doc["modes"] = {"self_match": "dry_run"}
    fast, ref = Harness(doc, seed_levels=2), _reference(Harness(doc, seed_levels=2))
    live: list[str] = []
    for k, (kind, pick, qty, buy, pump) in enumerate(steps):
        cl = f"C{k}"
        side = Side.BUY if buy else Side.SELL
        price = PX + (pick % 200 - 100) * 100
        account = "ACC1" if accts == 1 else ("ACC2" if k % 2 else "NOPE")
        if kind in ("new", "kill"):
            req = request(cl, side=side, qty=qty, price=price, account=account)
            live.append(cl)
        elif kind == "dup" and live:
            req = request(live[pick % len(live)], side=side, qty=qty, price=price)
        elif kind == "badsym":
            req = request(cl, side=side, qty=qty, price=price, symbol="ZZZ")
        elif kind in ("cancel", "replace") and live:
            orig = live[pick % len(live)]
            if kind == "cancel":
                req = request(cl, action=OrderAction.CANCEL, orig=orig, side=side)
            else:
                req = request(cl, action=OrderAction.REPLACE, orig=orig, qty=qty, side=side)
                live.append(cl)
        else:
            req = request(cl, side=side, qty=qty, price=price)
        for h in (fast, ref):
            if kind == "kill":
                verdict = np.array([1 + pick % 3], np.uint8)
                h.apply(OpaqueBatch(KILL_VERDICTS, verdict, np.array([0, 1], np.int64)))
        a, b = fast.send(req), ref.send(req)
        assert _outputs(a) == _outputs(b), f"step {k} ({kind})"
        if pump:
            a, b = fast.pump(), ref.pump()
            assert _outputs(a) == _outputs(b), f"venue after step {k} ({kind})"
    a, b = fast.pump(), ref.pump()
    assert _outputs(a) == _outputs(b)
    assert fast.core.snapshot() == ref.core.snapshot()
    assert fast.core.counters == ref.core.counters
    assert fast.core.rejects_by_reason == ref.core.rejects_by_reason
