"""cffi API-mode (out-of-line) builder for the order book: csrc/book.c -> tectra._book.

The lead lists `csrc/book_build.py:ffibuilder` in setup.py's `cffi_modules`, so any install
compiles it. Running this file builds `tectra/_book*.so` in place for development.

The cdef is derived from csrc/book.h itself (constants become `#define NAME ...`, whose values
cffi reads from the compiled header; structs and prototypes are copied), so the header stays
the one definition of the C API.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

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
    """setuptools insists on source paths relative to setup.py, while cffi's own compile()
    changes directory and so needs absolute ones: the caller says which it is."""
    where = Path("csrc") if paths_relative_to_repo else HERE
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "tectra._book",
        '#include "book.h"',
        sources=[str(where / "book.c")],
        include_dirs=[str(where)],
        depends=[str(where / "book.h")],
        extra_compile_args=["-O3", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra"],
    )
    return builder


ffibuilder = make_builder(paths_relative_to_repo=True)


def build_in_place() -> Path:
    """Compile into a scratch directory and copy only the .so into tectra/ (no stray .c/.o)."""
    with tempfile.TemporaryDirectory(prefix="tectra-book-build-") as tmp:
        built = Path(make_builder(paths_relative_to_repo=False).compile(tmpdir=tmp))
        target = REPO / "tectra" / built.name
        shutil.copy2(built, target)
    return target


if __name__ == "__main__":
    print(build_in_place())
