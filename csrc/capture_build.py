"""cffi API-mode (out-of-line) builder for the capture ring: csrc/capture.c -> tectra._capture.

setup.py names every `csrc/*_build.py:ffibuilder` in `cffi_modules`, so any install of the
package compiles it. Running this file builds `tectra/_capture*.so` in place for development.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

# The Python-visible part of csrc/capture.h (the header struct stays private to C).
CDEF = """
#define CAP_LAYOUT_VERSION ...
#define CAP_HEADER_SIZE ...
#define CAP_MIN_CAPACITY ...
#define CAP_MAX_CAPACITY ...
#define CAP_MAX_OUTPUTS ...
#define CAP_MODE_FULL ...
#define CAP_MODE_DIGEST ...
#define CAP_TYPE_OUTPUT_DIGEST ...
#define CAP_DIGEST_ENTRY ...

typedef struct cap_stats {
    uint64_t capacity;
    uint32_t mode;
    uint32_t component;
    uint64_t steps;
    uint64_t recorded;
    uint64_t dropped;
    uint64_t gaps;
    uint64_t lost_pending;
    int64_t last_now_ns;
    uint64_t closed;
    uint64_t written;
    uint64_t blocks;
    int64_t error;
    uint64_t attached;
    uint64_t queued_bytes;
    uint64_t tail;
    uint64_t head;
} cap_stats_t;

typedef struct cap_block {
    uint64_t n_steps;
    uint64_t n_chunks;
    uint64_t first_step;
    int64_t first_now_ns;
    uint64_t lost_before;
    uint64_t payload_len;
} cap_block_t;

typedef struct cap_ring { ...; } cap_ring_t;

uint64_t cap_region_bytes(uint64_t capacity);
int cap_init(void *base, uint64_t len, uint64_t capacity, uint32_t mode, uint32_t component,
             uint32_t n_outputs, const uint16_t *out_types, const uint32_t *out_sizes);
int cap_open(cap_ring_t *c, void *base, uint64_t len);
void cap_close(cap_ring_t *c);
int cap_stats(const cap_ring_t *c, cap_stats_t *out);
int64_t cap_put_packets(cap_ring_t *c, int64_t now_ns, const void *payload,
                        uint64_t payload_len, const void *offsets, uint64_t offsets_bytes,
                        const void *lengths, uint64_t lengths_bytes, uint64_t n,
                        const void *o0, uint64_t b0, const void *o1, uint64_t b1,
                        const void *o2, uint64_t b2);
int64_t cap_put(cap_ring_t *c, int64_t now_ns, uint16_t in_type, uint64_t in_count,
                const void *in_a, uint64_t in_na, const void *in_b, uint64_t in_nb,
                uint32_t n_out, const uint16_t *out_types, const uint64_t *out_counts,
                const void *const *out_ptrs, const uint64_t *out_nbytes);
int cap_producer_close(cap_ring_t *c);
int64_t cap_take_block(cap_ring_t *c, void *out, uint64_t out_cap, uint64_t max_steps,
                       cap_block_t *info);
int cap_mark_written(cap_ring_t *c, uint64_t n_steps, uint64_t n_blocks);
int cap_consumer_attach(cap_ring_t *c);
int cap_set_error(cap_ring_t *c, int64_t err);
uint64_t cap_xxh64(const void *data, uint64_t len, uint64_t seed);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._capture",
        CDEF,
        source="capture.c",
        header="capture.h",
        extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
