"""Market-data books and normalised output (issue 3, "Books and normalised output").

`book` (order-level books in C, BOOK_UPDATE/TICK/TRADE output), `metrics` (derived metrics and
bars), `refs` (top-of-book reference table in shared memory), `quality` (per-instrument
data-quality counters), `snapshot` (durable book snapshots). Modules are imported directly;
this package imports nothing so that `tectra.feed.refs` readers need not load the book.
"""
