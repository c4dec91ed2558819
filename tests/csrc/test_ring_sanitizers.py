"""Sanitizer build of the ring: csrc/ring.c with the C driver tests/csrc/ring_sanitize.c under
ASAN+UBSAN. The driver runs all four ring variants with threads and fork()ed processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.csrc.sanitized import CC, NO_CC, run_sanitized


@pytest.mark.skipif(CC is None, reason=NO_CC)
@pytest.mark.timeout(300)
def test_ring_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    out = run_sanitized("ring", tmp_path, threads=True)
    # All four variants ran, with threads and across fork().
    for variant in ("spsc/backpressure", "spsc/overwrite", "mpmc/backpressure", "mpmc/overwrite"):
        assert f"threads {variant}" in out
        assert f"fork    {variant}" in out
