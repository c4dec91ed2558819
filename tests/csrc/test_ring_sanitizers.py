"""Sanitizer build of the ring: compile csrc/ring.c with the C driver tests/csrc/ring_sanitize.c
under AddressSanitizer + UndefinedBehaviorSanitizer, run it, and require a clean exit with no
sanitizer report. The driver runs all four ring variants with threads and fork()ed processes."""

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
def test_ring_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    assert CC is not None
    exe = tmp_path / "ring_sanitize"
    build = subprocess.run(
        [
            CC,
            "-std=c11",
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
            "-pthread",
            "-Wall",
            "-Wextra",
            "-Werror",
            str(REPO / "csrc" / "ring.c"),
            str(REPO / "tests" / "csrc" / "ring_sanitize.c"),
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
    assert run.returncode == 0, f"ring_sanitize exited {run.returncode}:\n{report}"
    for marker in SANITIZER_MARKERS:
        assert marker not in report, report
    assert "ring_sanitize: all checks passed" in run.stdout
    # All four variants ran, with threads and across fork().
    for variant in ("spsc/backpressure", "spsc/overwrite", "mpmc/backpressure", "mpmc/overwrite"):
        assert f"threads {variant}" in run.stdout
        assert f"fork    {variant}" in run.stdout
