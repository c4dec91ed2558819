"""Sanitizer build of the capture ring: csrc/capture.c with the C driver
tests/csrc/capture_sanitize.c under ASAN+UBSAN — a producer thread and a consumer thread, both
modes, wrap-around, drops and bad arguments, every step checked byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.csrc.sanitized import CC, NO_CC, run_sanitized


@pytest.mark.skipif(CC is None, reason=NO_CC)
@pytest.mark.timeout(300)
def test_capture_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    out = run_sanitized("capture", tmp_path, threads=True)
    assert "mode 0:" in out and "mode 1:" in out
