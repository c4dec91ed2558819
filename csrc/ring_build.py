"""cffi API-mode (out-of-line) builder for the shared-memory ring: csrc/ring.c -> tectra._ring.

setup.py names `csrc/ring_build.py:ffibuilder` in `cffi_modules`, so any install of the package
compiles it. Running this file builds `tectra/_ring*.so` in place for development.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

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
    return shim_builder(
        "tectra._ring",
        CDEF,
        source="ring.c",
        header="ring.h",
        extra_compile_args=["-O3", "-std=c11", "-D_GNU_SOURCE"],
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
