"""Sanitizer build of the risk engine: csrc/risk.c with the C driver tests/csrc/risk_sanitize.c
under ASAN+UBSAN. The driver feeds seeded random order and execution-report streams (malformed
and extreme values included) over small tables, checking state invariants, exposure sums,
batch == one-at-a-time and determinism after every call."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.csrc.sanitized import CC, NO_CC, REPO, compile_c, run_sanitized


@pytest.mark.skipif(CC is None, reason=NO_CC)
@pytest.mark.timeout(300)
def test_risk_engine_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    out = run_sanitized("risk", tmp_path)
    for scenario in ("enforced small tables", "random modes", "determinism"):
        assert scenario in out


@pytest.mark.skipif(CC is None, reason=NO_CC)
def test_risk_c_is_warning_free_with_wall_wextra(tmp_path: Path) -> None:
    compile_c([REPO / "csrc" / "risk.c"], tmp_path / "risk.o", ["-O2", "-c"])
