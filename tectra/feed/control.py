"""FeedControl: the feed role's live books, read-only, on its control socket (feed.proto).

`GetBook(symbol, depth)` answers the top levels of each side, the last trade and the book's
sequence numbers, straight from the feed's `OrderBook`. The book is mutated by the feed loop
in C while this runs on a gRPC thread; rather than lock the hot path, a read is taken between
two looks at the book's output sequence and retried if the book moved meanwhile (a seqlock
from the reader's side), so an answer is one consistent state. Under a sustained burst the
last attempt is returned and marked by its `out_seq`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import grpc
import numpy as np

from tectra.feed.book import BookSide, OrderBook
from tectra.mgmt.v1 import feed_pb2, feed_pb2_grpc

DEFAULT_DEPTH: Final = 10
MAX_DEPTH: Final = 100
_ATTEMPTS: Final = 8


class FeedControlServicer(feed_pb2_grpc.FeedControlServicer):  # type: ignore[misc]
    def __init__(self, book: Callable[[], OrderBook | None]) -> None:
        self._book = book
        self.bad_requests = 0

    def _instrument(self, book: OrderBook, symbol: str) -> int | None:
        key = symbol.ljust(8).encode("ascii")
        symbols = book.state_arrays(copy=False)["instruments"]["symbol"]
        hits = np.flatnonzero(symbols == key)
        return int(hits[0]) if hits.size else None

    def GetBook(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        symbol = request.symbol.strip()
        if not symbol or len(symbol) > 8 or not symbol.isascii():
            self.bad_requests += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "symbol: 1-8 ASCII characters")
        depth = request.depth or DEFAULT_DEPTH
        if not 0 < depth <= MAX_DEPTH:
            self.bad_requests += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"depth: 1..{MAX_DEPTH}")
        book = self._book()
        if book is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the feed has no book yet")
        assert book is not None
        instrument = self._instrument(book, symbol)
        if instrument is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no instrument {symbol!r} in the book")
        assert instrument is not None
        reply = feed_pb2.BookReply()
        for _ in range(_ATTEMPTS):
            before = book.out_seq
            reply = self._read(book, instrument, symbol, depth)
            if book.out_seq == before:
                break
        return reply

    def _read(self, book: OrderBook, instrument: int, symbol: str, depth: int) -> Any:
        row = book.state_arrays(copy=False)["instruments"][instrument]
        reply = feed_pb2.BookReply(
            symbol=symbol,
            instrument_id=instrument,
            sequence=book.last_seq,
            out_seq=book.out_seq,
            trading_state=book.trading_state(instrument),
        )
        for side, out in ((BookSide.BID, reply.bids), (BookSide.ASK, reply.asks)):
            for lv in book.levels(instrument, side, depth):
                out.add(price=int(lv["price"]), qty=int(lv["qty"]), orders=int(lv["orders"]))
        if int(row["last_qty"]):
            reply.has_last_trade = True
            reply.last_trade.price = int(row["last_px"])
            reply.last_trade.qty = int(row["last_qty"])
        return reply


def feed_control(book: Callable[[], OrderBook | None]) -> Callable[[grpc.Server], None]:
    """A RoleShell service adder serving FeedControl over BOOK (called per request)."""

    def add(server: grpc.Server) -> None:
        feed_pb2_grpc.add_FeedControlServicer_to_server(FeedControlServicer(book), server)

    return add
