/* Kill-switch control block: one 64-byte-aligned region in /dev/shm/tectra/<name>, written by
 * the kill role and read by every gateway on the host on every order.
 *
 * Layout (all words little-endian, naturally aligned):
 *   line 0 (64 B)  magic, version/size, STATE word, EPOCH, last kill id, slot counts
 *   64 x kb_entry_t (32 B each)   scoped blocks (venue/account/strategy/symbol)
 *   64 x uint64_t                 recently applied kill ids (idempotency)
 *
 * STATE word: bit 0 BLOCK_ALL (firm), bit 1 SLOW (firm), bit 2 any scoped BLOCK entry, bit 3 any
 * scoped SLOW entry, bit 4 WRITING (a writer holds the block), bits 8..63 generation.
 * The STATE word doubles as the seqlock for the table: a writer CASes WRITING in, edits the
 * table, bumps EPOCH (release) and stores the new STATE with generation + 1 (release). A reader
 * does one acquire load of STATE (+ EPOCH); only when a scoped bit is set does it scan the table
 * and re-validate STATE. A reader that cannot get a consistent view (a writer died holding
 * WRITING) fails closed: BLOCKED with reason KB_REASON_INCONSISTENT.
 */
#ifndef TECTRA_KILLBLOCK_H
#define TECTRA_KILLBLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#define KB_MAGIC 0x4b4c4c424b525454ULL /* "TTRKBLLK" */
#define KB_LAYOUT_VERSION 1
#define KB_MAX_SCOPED 64
#define KB_SEEN_IDS 64
#define KB_BLOCK_BYTES 4096

/* flags (firm flags live in the STATE word; entries carry the same bits) */
#define KB_F_BLOCK 1ULL
#define KB_F_SLOW 2ULL
#define KB_S_BLOCK_ALL 1ULL
#define KB_S_SLOW 2ULL
#define KB_S_SCOPED_BLOCK 4ULL
#define KB_S_SCOPED_SLOW 8ULL
#define KB_S_WRITING 16ULL
#define KB_S_GEN_SHIFT 8

/* scopes */
#define KB_SCOPE_FIRM 0
#define KB_SCOPE_VENUE 1
#define KB_SCOPE_ACCOUNT 2
#define KB_SCOPE_STRATEGY 3
#define KB_SCOPE_SYMBOL 4
#define KB_ID_MAX ((1ULL << 56) - 1)

/* verdicts */
#define KB_OK 0
#define KB_SLOW 1
#define KB_BLOCKED 2

/* reasons: 0..4 are the scope that decided the verdict */
#define KB_REASON_NONE 255
#define KB_REASON_INCONSISTENT 254
#define KB_REASON_BAD_BLOCK 253

typedef struct {
    _Atomic uint64_t key; /* (scope << 56) | id, 0 = free */
    _Atomic uint64_t flags;
    _Atomic uint64_t kill_id;
    _Atomic uint64_t updated_ns;
} kb_entry_t;

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t size;
    _Atomic uint64_t state;
    _Atomic uint64_t epoch;
    _Atomic uint64_t last_kill_id;
    _Atomic uint64_t seen_next; /* ring cursor into seen[] */
    uint64_t created_ns;
    uint64_t reserved0;
} kb_header_t;

typedef struct {
    _Alignas(64) kb_header_t h;
    _Alignas(64) kb_entry_t entries[KB_MAX_SCOPED];
    _Alignas(64) _Atomic uint64_t seen[KB_SEEN_IDS];
} kb_block_t;

/* plain (non-atomic) copy for snapshots and restore */
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
    kb_entry_view_t entries[KB_MAX_SCOPED];
    uint64_t nseen;
    uint64_t seen[KB_SEEN_IDS];
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

#endif
