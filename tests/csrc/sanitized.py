"""Shared harness for the sanitizer tests: build a csrc/ module with its C driver under
AddressSanitizer + UndefinedBehaviorSanitizer (-Wall -Wextra -Werror) and run it, failing on
any non-zero exit or sanitizer report."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CC = next(
    (cc for cc in (os.environ.get("CC"), "cc", "gcc", "clang") if cc and shutil.which(cc)), None
)
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
NO_CC = "no C compiler (cc, gcc or clang) on PATH"


def compile_c(sources: Sequence[Path], out: Path, flags: Sequence[str]) -> None:
    """Compile SOURCES into OUT with FLAGS (after -std=c11 -Wall -Wextra -Werror)."""
    assert CC is not None, NO_CC
    build = subprocess.run(
        [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", *flags, *map(str, sources), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"build of {out.name} failed:\n{build.stderr}"


def run_sanitized(
    module: str, tmp_path: Path, args: Sequence[str] = (), threads: bool = False
) -> str:
    """Build csrc/MODULE.c with tests/csrc/MODULE_sanitize.c under ASAN+UBSAN, run it with
    ARGS, assert a clean exit and no sanitizer report, and return its stdout."""
    exe = tmp_path / f"{module}_sanitize"
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    flags += ["-fno-omit-frame-pointer", *(["-pthread"] if threads else [])]
    sources = [REPO / "csrc" / f"{module}.c", REPO / "tests" / "csrc" / f"{module}_sanitize.c"]
    compile_c(sources, exe, flags)
    env = dict(
        os.environ,
        ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
    )
    run = subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=240, env=env, check=False
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"{exe.name} exited {run.returncode}:\n{report[-4000:]}"
    for marker in SANITIZER_MARKERS:
        assert marker not in report, report[-4000:]
    assert f"{module}_sanitize: all checks passed" in run.stdout
    return run.stdout
