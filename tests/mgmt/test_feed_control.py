"""FeedControl.GetBook over a real OrderBook on a real gRPC unix socket."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from tectra.feed.book import OrderBook
from tectra.feed.control import feed_control
from tectra.mgmt.v1 import feed_pb2, feed_pb2_grpc
from tectra.schema import new_records


def events(*rows: dict[str, Any]) -> Any:
    ev = new_records("ITCH_EVENT", len(rows))
    for i, row in enumerate(rows):
        ev[i]["seq"] = i + 1
        ev[i]["ts_ns"] = 1000 + 100 * i
        for key, value in row.items():
            ev[i][key] = ord(value) if isinstance(value, str) and len(value) == 1 else value
    return ev


def add(ref: int, px: int, shares: int, side: str) -> dict[str, Any]:
    return {
        "msg_type": "A",
        "order_ref": ref,
        "price": px,
        "shares": shares,
        "side": side,
        "stock_locate": 3,
    }


@pytest.fixture
def stub(tmp_path: Path) -> Any:
    book = OrderBook(max_instruments=8, max_orders=64, max_levels=8)
    raw = bytearray(56)
    raw[0:1] = b"R"
    raw[11:19] = b"AAPL    "
    book.apply(
        events(
            {"msg_type": "R", "stock_locate": 3, "raw": bytes(raw)},
            add(1, 1_500_000, 100, "B"),
            add(2, 1_499_000, 50, "B"),
            add(3, 1_501_000, 30, "S"),
            add(4, 1_501_000, 20, "S"),
            {"msg_type": "E", "order_ref": 3, "shares": 10, "ref2": 77, "stock_locate": 3},
        )
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    feed_control(lambda: book)(server)
    sock = tmp_path / "feed.sock"
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    channel = grpc.insecure_channel(f"unix:{sock}")
    yield feed_pb2_grpc.FeedControlStub(channel)
    channel.close()
    server.stop(0)


def test_top_levels_last_trade_and_sequence(stub: Any) -> None:
    r = stub.GetBook(feed_pb2.BookRequest(symbol="AAPL", depth=5), timeout=5)
    assert [(lv.price, lv.qty, lv.orders) for lv in r.bids] == [
        (1_500_000, 100, 1),
        (1_499_000, 50, 1),
    ]
    assert [(lv.price, lv.qty, lv.orders) for lv in r.asks] == [(1_501_000, 40, 2)]
    assert r.has_last_trade and (r.last_trade.price, r.last_trade.qty) == (1_501_000, 10)
    assert r.instrument_id == 3 and r.sequence == 6
    one = stub.GetBook(feed_pb2.BookRequest(symbol="AAPL", depth=1), timeout=5)
    assert len(one.bids) == 1


@pytest.mark.parametrize(
    ("symbol", "depth", "code"),
    [
        ("MSFT", 0, grpc.StatusCode.NOT_FOUND),
        ("", 0, grpc.StatusCode.INVALID_ARGUMENT),
        ("TOOLONGSYM", 0, grpc.StatusCode.INVALID_ARGUMENT),
        ("AAPL", 1000, grpc.StatusCode.INVALID_ARGUMENT),
        ("AAPL", -1, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_requests_get_typed_errors(
    stub: Any, symbol: str, depth: int, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.GetBook(feed_pb2.BookRequest(symbol=symbol, depth=depth), timeout=5)
    assert info.value.code() == code
