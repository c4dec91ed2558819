"""cffi API-mode builder for the MoldUDP64 block walk: csrc/mold.c -> tectra._mold.

setup.py compiles every csrc/*_build.py; running this file builds tectra/_mold*.so in place.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CDEF = """
#define MOLD_STATUS_OK ...
#define MOLD_STATUS_BLOCK_OVERRUN ...
#define MOLD_STATUS_COUNT_MISMATCH ...
int64_t mold_walk_blocks(const uint8_t *buf, uint64_t buflen, const int64_t *offs,
                         const int64_t *lens, const int64_t *count, const uint8_t *walk,
                         const int64_t *base, uint64_t npackets, uint8_t *status, int64_t *boff,
                         int64_t *blen);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    """setuptools wants source paths relative to setup.py; cffi's compile() wants absolute."""
    where = Path("csrc") if paths_relative_to_repo else HERE
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "tectra._mold",
        '#include "mold.h"',
        sources=[str(where / "mold.c")],
        include_dirs=[str(where)],
        depends=[str(where / "mold.h")],
        extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
    )
    return builder


ffibuilder = make_builder(paths_relative_to_repo=True)


def build_in_place() -> Path:
    with tempfile.TemporaryDirectory(prefix="tectra-mold-build-") as tmp:
        built = Path(make_builder(paths_relative_to_repo=False).compile(tmpdir=tmp))
        target = REPO / "tectra" / built.name
        shutil.copy2(built, target)
    return target


if __name__ == "__main__":
    print(build_in_place())
