"""Sanitizer build of the risk engine: compile csrc/risk.c with the C driver
tests/csrc/risk_sanitize.c under AddressSanitizer + UndefinedBehaviorSanitizer (and -Wall
-Wextra -Werror), run it, and require a clean exit with no sanitizer report. The driver feeds
seeded random order and execution-report streams (malformed and extreme values included) over
small tables, checking state invariants, exposure sums, batch == one-at-a-time and
determinism after every call."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CC = next(
    (cc for cc in (os.environ.get("CC"), "cc", "gcc", "clang") if cc and shutil.which(cc)), None
)
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


@pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")
@pytest.mark.timeout(300)
def test_risk_engine_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    assert CC is not None
    exe = tmp_path / "risk_sanitize"
    build = subprocess.run(
        [
            CC,
            "-std=c11",
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
            "-Wall",
            "-Wextra",
            "-Werror",
            str(REPO / "csrc" / "risk.c"),
            str(REPO / "tests" / "csrc" / "risk_sanitize.c"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"sanitizer build failed:\n{build.stderr}"

    env = dict(
        os.environ,
        ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
    )
    run = subprocess.run(
        [str(exe)], capture_output=True, text=True, timeout=240, env=env, check=False
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"risk_sanitize exited {run.returncode}:\n{report}"
    for marker in SANITIZER_MARKERS:
        assert marker not in report, report
    assert "risk_sanitize: all checks passed" in run.stdout
    for scenario in ("enforced small tables", "random modes", "determinism"):
        assert scenario in run.stdout


def test_risk_c_is_warning_free_with_wall_wextra(tmp_path: Path) -> None:
    if CC is None:
        pytest.skip("no C compiler")
    build = subprocess.run(
        [
            CC,
            "-std=c11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-c",
            str(REPO / "csrc" / "risk.c"),
            "-o",
            str(tmp_path / "risk.o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
