"""Sanitizer build of the ITCH decoder: csrc/itch.c with the C driver
tests/csrc/itch_sanitize.c under ASAN+UBSAN, run over the corpus in tests/corpus/itch/ plus a
realistic stream. The driver copies inputs into exact-size heap buffers and allocates exactly
out_cap output records, so any out-of-bounds read or write is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.itch import frame, synthetic_mix
from tests.csrc.sanitized import CC, NO_CC, REPO, run_sanitized

CORPUS = REPO / "tests" / "corpus" / "itch"


@pytest.mark.skipif(CC is None, reason=NO_CC)
@pytest.mark.timeout(300)
def test_itch_decoder_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    stream = tmp_path / "mix.bin"
    stream.write_bytes(frame(synthetic_mix(5_000, seed=1)).tobytes())
    inputs = [*sorted(CORPUS.glob("*.bin")), stream]
    assert len(inputs) > 8
    out = run_sanitized("itch", tmp_path, [str(p) for p in inputs])
    for path in inputs:
        assert f"itch_sanitize: {path} ok" in out
