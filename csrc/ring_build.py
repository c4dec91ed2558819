"""cffi API-mode (out-of-line) builder for the shared-memory ring: csrc/ring.c -> tectra._ring.

setup.py names `csrc/ring_build.py:ffibuilder` in `cffi_modules`, so any install of the package
compiles it. Running this file builds `tectra/_ring*.so` in place for development.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# The Python-visible part of csrc/ring.h. The header struct itself stays private to C (it has
# _Atomic members); Python sees its offsets as constants and the handle only by size.
CDEF = """
#define TR_MAGIC ...
#define TR_LAYOUT_VERSION ...
#define TR_CACHE_LINE ...
#define TR_HEADER_SIZE ...
#define TR_MIN_CAPACITY ...
#define TR_MAX_CAPACITY ...
#define TR_KIND_SPSC ...
#define TR_KIND_MPMC ...
#define TR_POLICY_BACKPRESSURE ...
#define TR_POLICY_OVERWRITE ...
#define TR_OFF_MAGIC ...
#define TR_OFF_LAYOUT_VERSION ...
#define TR_OFF_HEADER_SIZE ...
#define TR_OFF_RECORD_SIZE ...
#define TR_OFF_KIND ...
#define TR_OFF_POLICY ...
#define TR_OFF_CAPACITY ...
#define TR_OFF_FINGERPRINT ...
#define TR_OFF_CREATED_NS ...
#define TR_OFF_SEQ_OFFSET ...
#define TR_OFF_RECORDS_OFFSET ...
#define TR_OFF_TOTAL_BYTES ...
#define TR_OFF_PROD ...
#define TR_OFF_PUSHED ...
#define TR_OFF_CONS ...
#define TR_OFF_POPPED ...
#define TR_OFF_OVERRUNS ...
#define TR_OFF_FULL ...

typedef struct tr_info {
    uint32_t layout_version;
    uint32_t record_size;
    uint32_t kind;
    uint32_t policy;
    uint64_t capacity;
    uint64_t fingerprint;
    uint64_t created_ns;
    uint64_t records_offset;
    uint64_t total_bytes;
} tr_info_t;

typedef struct tr_stats {
    uint64_t capacity;
    uint64_t depth;
    uint64_t pushed;
    uint64_t popped;
    uint64_t overruns;
    uint64_t full;
    uint64_t prod;
    uint64_t cons;
} tr_stats_t;

typedef struct tr_ring { ...; } tr_ring_t;

uint64_t tr_ring_bytes(uint64_t capacity, uint32_t record_size);
int tr_ring_init(void *base, uint64_t len, uint32_t record_size, uint64_t capacity,
                 uint32_t kind, uint32_t policy, uint64_t fingerprint, uint64_t created_ns);
int tr_ring_open(tr_ring_t *r, void *base, uint64_t len);
void tr_ring_close(tr_ring_t *r);
int tr_ring_info(const tr_ring_t *r, tr_info_t *out);
int tr_ring_stats(const tr_ring_t *r, tr_stats_t *out);
int64_t tr_push(tr_ring_t *r, const void *recs, uint64_t n);
int64_t tr_pop(tr_ring_t *r, void *out, uint64_t max, uint64_t *seqs, uint64_t *lost);
int64_t tr_pop_wait(tr_ring_t *r, void *out, uint64_t max, uint64_t *seqs, uint64_t *lost,
                    int64_t timeout_ns);
int64_t tr_peek(tr_ring_t *r, uint64_t max, uint64_t *slot);
int64_t tr_release(tr_ring_t *r, uint64_t n);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    """setuptools insists on source paths relative to setup.py, while cffi's own compile()
    changes directory and so needs absolute ones: the caller says which it is."""
    where = Path("csrc") if paths_relative_to_repo else HERE
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "tectra._ring",
        '#include "ring.h"',
        sources=[str(where / "ring.c")],
        include_dirs=[str(where)],
        depends=[str(where / "ring.h")],
        extra_compile_args=["-O3", "-std=c11", "-D_GNU_SOURCE"],
    )
    return builder


ffibuilder = make_builder(paths_relative_to_repo=True)


def build_in_place() -> Path:
    """Compile into a scratch directory and copy only the .so into tectra/ (no stray .c/.o)."""
    with tempfile.TemporaryDirectory(prefix="tectra-ring-build-") as tmp:
        built = Path(make_builder(paths_relative_to_repo=False).compile(tmpdir=tmp))
        target = REPO / "tectra" / built.name
        shutil.copy2(built, target)
    return target


if __name__ == "__main__":
    print(build_in_place())
