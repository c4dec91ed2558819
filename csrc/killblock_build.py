"""cffi API-mode builder for the kill-switch control block (csrc/killblock.c): the shared-memory
state word + epoch every gateway reads on every order -> tectra._killblock.

setup.py compiles every csrc/*_build.py; running this file builds tectra/_killblock*.so in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

CDEF = """
#define KB_LAYOUT_VERSION ...
#define KB_MAX_SCOPED ...
#define KB_SEEN_IDS ...
#define KB_BLOCK_BYTES ...
#define KB_F_BLOCK ...
#define KB_F_SLOW ...
#define KB_S_BLOCK_ALL ...
#define KB_S_SLOW ...
#define KB_S_SCOPED_BLOCK ...
#define KB_S_SCOPED_SLOW ...
#define KB_S_WRITING ...
#define KB_S_GEN_SHIFT ...
#define KB_SCOPE_FIRM ...
#define KB_SCOPE_VENUE ...
#define KB_SCOPE_ACCOUNT ...
#define KB_SCOPE_STRATEGY ...
#define KB_SCOPE_SYMBOL ...
#define KB_ID_MAX ...
#define KB_OK ...
#define KB_SLOW ...
#define KB_BLOCKED ...
#define KB_REASON_NONE ...
#define KB_REASON_INCONSISTENT ...
#define KB_REASON_BAD_BLOCK ...
typedef struct {
    uint64_t scope;
    uint64_t id;
    uint64_t flags;
    uint64_t kill_id;
    uint64_t updated_ns;
} kb_entry_view_t;
typedef struct {
    uint64_t state;
    uint64_t epoch;
    uint64_t last_kill_id;
    uint64_t nentries;
    kb_entry_view_t entries[64];
    uint64_t nseen;
    uint64_t seen[64];
} kb_snapshot_t;
uint64_t kb_block_bytes(void);
int kb_init(void *base, uint64_t size, uint64_t epoch, uint64_t now_ns);
int kb_validate(const void *base, uint64_t size);
int kb_restore(void *base, const kb_snapshot_t *snap);
int kb_set(void *base, uint64_t flags, int scope, uint64_t id, uint64_t kill_id, uint64_t now_ns);
int kb_clear(void *base, uint64_t flags, int scope, uint64_t id, uint64_t kill_id,
             uint64_t now_ns);
int kb_check(const void *base, uint64_t venue, uint64_t account, uint64_t strategy,
             uint64_t symbol, uint64_t *epoch_out, int *reason_out);
uint64_t kb_check_batch(const void *base, const uint64_t *venue, const uint64_t *account,
                        const uint64_t *strategy, const uint64_t *symbol, uint64_t n,
                        uint8_t *verdicts, uint8_t *reasons, uint64_t *epochs);
int kb_snapshot(const void *base, kb_snapshot_t *out);
uint64_t kb_load_state(const void *base);
uint64_t kb_load_epoch(const void *base);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._killblock",
        CDEF,
        source="killblock.c",
        header="killblock.h",
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
