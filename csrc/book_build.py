"""cffi API-mode (out-of-line) builder for the order book: csrc/book.c -> tectra._book.

The lead lists `csrc/book_build.py:ffibuilder` in setup.py's `cffi_modules`, so any install
compiles it. Running this file builds `tectra/_book*.so` in place for development.

The cdef is derived from csrc/book.h itself (constants become `#define NAME ...`, whose values
cffi reads from the compiled header; structs and prototypes are copied), so the header stays
the one definition of the C API.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

HERE = Path(__file__).resolve().parent

_DEFINE_RE = re.compile(r"^#define\s+(BK_\w+)\s+\S.*$")


def cdef_from_header(text: str) -> str:
    """book.h without its preprocessor guard/includes, every `#define BK_X v` as `... `."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            m = _DEFINE_RE.match(stripped)
            if m is not None:
                out.append(f"#define {m.group(1)} ...")
            continue
        out.append(line)
    return "\n".join(out)


CDEF = cdef_from_header((HERE / "book.h").read_text(encoding="ascii"))


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._book",
        CDEF,
        source="book.c",
        header="book.h",
        extra_compile_args=["-O3", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra"],
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
