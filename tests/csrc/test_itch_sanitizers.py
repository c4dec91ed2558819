"""Sanitizer build of the ITCH decoder: compile csrc/itch.c with the C driver
tests/csrc/itch_sanitize.c under AddressSanitizer + UndefinedBehaviorSanitizer, run it over the
corpus in tests/corpus/itch/ plus a realistic stream, and require a clean exit with no sanitizer
report. The driver copies inputs into exact-size heap buffers and allocates exactly out_cap
output records, so any out-of-bounds read or write is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from adapters.itch import frame, synthetic_mix

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus" / "itch"
CC = next(
    (cc for cc in (os.environ.get("CC"), "cc", "gcc", "clang") if cc and shutil.which(cc)), None
)
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


@pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")
@pytest.mark.timeout(300)
def test_itch_decoder_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    assert CC is not None
    exe = tmp_path / "itch_sanitize"
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
            str(REPO / "csrc" / "itch.c"),
            str(REPO / "tests" / "csrc" / "itch_sanitize.c"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"sanitizer build failed:\n{build.stderr}"

    stream = tmp_path / "mix.bin"
    stream.write_bytes(frame(synthetic_mix(5_000, seed=1)).tobytes())
    inputs = [*sorted(CORPUS.glob("*.bin")), stream]
    assert len(inputs) > 8

    env = dict(
        os.environ,
        ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
    )
    run = subprocess.run(
        [str(exe), *map(str, inputs)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"itch_sanitize exited {run.returncode}:\n{report[-4000:]}"
    for marker in SANITIZER_MARKERS:
        assert marker not in report, report[-4000:]
    assert "itch_sanitize: all checks passed" in run.stdout
    for path in inputs:
        assert f"itch_sanitize: {path} ok" in run.stdout
