"""Sanitizer build of the order book: compile csrc/book.c with the C driver
tests/csrc/book_sanitize.c under AddressSanitizer + UndefinedBehaviorSanitizer (and -Wall
-Wextra -Werror), run it, and require a clean exit with no sanitizer report. The driver runs
valid and malformed streams through books whose order table, level arena and depth limits are
all exceeded, checks every invariant after each batch, and hammers the seqlocked reference
rows with a writer and two reader threads."""

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
def test_book_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    assert CC is not None
    exe = tmp_path / "book_sanitize"
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
            str(REPO / "csrc" / "book.c"),
            str(REPO / "tests" / "csrc" / "book_sanitize.c"),
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
    assert run.returncode == 0, f"book_sanitize exited {run.returncode}:\n{report}"
    for marker in SANITIZER_MARKERS:
        assert marker not in report, report
    assert "book_sanitize: all checks passed" in run.stdout
    for label in ("roomy ", "roomy+malformed", "tiny-table", "tiny-arena", "tiny-depth"):
        assert f"stream  {label}" in run.stdout
    assert "threads refs" in run.stdout


@pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")
def test_book_compiles_warning_free(tmp_path: Path) -> None:
    assert CC is not None
    build = subprocess.run(
        [
            CC,
            "-std=c11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-c",
            str(REPO / "csrc" / "book.c"),
            "-o",
            str(tmp_path / "book.o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
