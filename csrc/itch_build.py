"""cffi API-mode (out-of-line) builder for the ITCH 5.0 batch decoder: csrc/itch.c -> tectra._itch.

setup.py names every `csrc/*_build.py:ffibuilder` in `cffi_modules`, so any install of the
package compiles it. Running this file builds `tectra/_itch*.so` in place for development.
adapters/itch.py loads the module lazily and checks `itch_event_t` against the ITCH_EVENT dtype.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

# The Python-visible part of csrc/itch.h (kept in step with it by hand: cffi parses no
# preprocessor, and every struct here is checked against the compiled one by cffi itself).
CDEF = """
#define ITCH_MAX_MESSAGE ...
#define ITCH_RAW_CAP ...
#define ITCH_MIN_FRAMED ...
#define ITCH_EVENT_SIZE ...
#define ITCH_F_PARTIAL_TAIL ...

typedef struct itch_event {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint8_t msg_type;
    uint8_t side;
    uint8_t aux;
    uint8_t raw_len;
    uint16_t stock_locate;
    uint16_t tracking;
    int64_t exch_ts_ns;
    uint64_t order_ref;
    uint64_t ref2;
    uint64_t shares;
    int64_t price;
    uint8_t raw[56];
} itch_event_t;

typedef struct itch_header {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
} itch_header_t;

typedef struct itch_stats {
    uint64_t messages;
    uint64_t blocks;
    uint64_t bytes;
    uint64_t unknown_type;
    uint64_t bad_length;
    uint64_t truncated;
    uint64_t bytes_skipped;
    uint64_t bytes_dropped;
    uint64_t out_full;
    uint64_t by_type[256];
} itch_stats_t;

typedef struct itch_cursor {
    uint64_t block;
    uint64_t offset;
    uint64_t seq;
} itch_cursor_t;

uint32_t itch_message_length(uint8_t type);
int64_t itch_decode(const itch_header_t *hdr, const uint8_t *buf, uint64_t len,
                    uint64_t first_seq, int64_t recv_ns, uint32_t flags, itch_event_t *out,
                    uint64_t out_cap, itch_stats_t *stats, uint64_t *consumed,
                    uint64_t *next_seq);
int64_t itch_decode_blocks(const itch_header_t *hdr, const uint8_t *buf, uint64_t len,
                           const uint64_t *offsets, const uint64_t *lengths,
                           const uint64_t *first_seqs, const int64_t *recv_ns, uint64_t nblocks,
                           itch_event_t *out, uint64_t out_cap, itch_stats_t *stats,
                           itch_cursor_t *cursor);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._itch",
        CDEF,
        source="itch.c",
        header="itch.h",
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
