"""Sanitizer build of the order book: csrc/book.c with the C driver tests/csrc/book_sanitize.c
under ASAN+UBSAN. The driver runs valid and malformed streams through books whose order table,
level arena and depth limits are all exceeded, checks every invariant after each batch, and
hammers the seqlocked reference rows with a writer and two reader threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.csrc.sanitized import CC, NO_CC, REPO, compile_c, run_sanitized


@pytest.mark.skipif(CC is None, reason=NO_CC)
@pytest.mark.timeout(300)
def test_book_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    out = run_sanitized("book", tmp_path, threads=True)
    for label in ("roomy ", "roomy+malformed", "tiny-table", "tiny-arena", "tiny-depth"):
        assert f"stream  {label}" in out
    assert "threads refs" in out


@pytest.mark.skipif(CC is None, reason=NO_CC)
def test_book_compiles_warning_free(tmp_path: Path) -> None:
    compile_c([REPO / "csrc" / "book.c"], tmp_path / "book.o", ["-O2", "-Wpedantic", "-c"])
