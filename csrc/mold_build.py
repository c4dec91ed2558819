"""cffi API-mode builder for the MoldUDP64 block walk, the session's in-order fast path and the
feed-quality tick fold: csrc/mold.c -> tectra._mold.

setup.py compiles every csrc/*_build.py; running this file builds tectra/_mold*.so in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

CDEF = """
#define MOLD_STATUS_OK ...
#define MOLD_STATUS_BLOCK_OVERRUN ...
#define MOLD_STATUS_COUNT_MISMATCH ...
int64_t mold_walk_blocks(const uint8_t *buf, uint64_t buflen, const int64_t *offs,
                         const int64_t *lens, const int64_t *count, const uint8_t *walk,
                         const int64_t *base, uint64_t npackets, uint8_t *status, int64_t *boff,
                         int64_t *blen);
#define MOLD_FAST_OK ...
#define MOLD_FAST_NO ...
#define MOLD_FAST_ROOM ...
int mold_fast_batch(const uint8_t *buf, uint64_t buflen, const int64_t *offs, const int64_t *lens,
                    uint64_t npackets, const char *session, uint64_t next_seq,
                    const int64_t *recv, int64_t now_ns, uint8_t *data, uint64_t data_cap,
                    int64_t *msg, uint64_t msg_cap, int64_t *blk, uint64_t blk_cap,
                    uint64_t *result);
void mold_observe_ticks(const uint8_t *ticks, uint64_t n, uint64_t stride, const int64_t *f,
                        uint64_t max_instruments, uint64_t *crossed_cnt, uint64_t *locked_cnt,
                        uint8_t *crossed_now, uint8_t *locked_now, uint8_t *stale_now,
                        int64_t *last_update, uint8_t *state, uint64_t *entered);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._mold", CDEF, source="mold.c", header="mold.h", relative=paths_relative_to_repo
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
