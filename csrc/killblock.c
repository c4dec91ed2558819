/* Kill-switch control block: see killblock.h for the layout and the protocol. */
#include "killblock.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define KB_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define KB_RELAX() __asm__ __volatile__("yield")
#else
#define KB_RELAX() ((void)0)
#endif

#define KB_READ_RETRIES 4096
#define KB_LOCK_SPINS (1UL << 22)
#define KB_FLAG_MASK (KB_F_BLOCK | KB_F_SLOW)
#define KB_S_FIRM_MASK (KB_S_BLOCK_ALL | KB_S_SLOW)
#define KB_S_SCOPED_MASK (KB_S_SCOPED_BLOCK | KB_S_SCOPED_SLOW)

_Static_assert(sizeof(kb_header_t) == 64, "header is one cache line");
_Static_assert(offsetof(kb_block_t, entries) == 64, "entries start on line 1");
_Static_assert(sizeof(kb_block_t) <= KB_BLOCK_BYTES, "block fits its file");

uint64_t kb_block_bytes(void) { return KB_BLOCK_BYTES; }

static int aligned(const void *p) { return ((uintptr_t)p & 63u) == 0; }

int kb_validate(const void *base, uint64_t size) {
    if (base == NULL || !aligned(base)) return -EINVAL;
    if (size < sizeof(kb_block_t)) return -EBADMSG;
    const kb_block_t *b = (const kb_block_t *)base;
    if (b->h.magic != KB_MAGIC) return -EBADMSG;
    if (b->h.version != KB_LAYOUT_VERSION) return -EPROTONOSUPPORT;
    if (b->h.size != KB_BLOCK_BYTES || size < b->h.size) return -EBADMSG;
    return 0;
}

int kb_init(void *base, uint64_t size, uint64_t epoch, uint64_t now_ns) {
    if (base == NULL || !aligned(base)) return -EINVAL;
    if (size < KB_BLOCK_BYTES) return -EINVAL;
    kb_block_t *b = (kb_block_t *)base;
    memset(base, 0, KB_BLOCK_BYTES);
    b->h.version = KB_LAYOUT_VERSION;
    b->h.size = KB_BLOCK_BYTES;
    b->h.created_ns = now_ns;
    atomic_store_explicit(&b->h.epoch, epoch, memory_order_relaxed);
    atomic_store_explicit(&b->h.state, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    b->h.magic = KB_MAGIC; /* last: a block is valid only once fully formatted */
    return 0;
}

/* ------------------------------------------------------------------ writer side */

static int lock_writer(kb_block_t *b, uint64_t *held) {
    for (unsigned long spins = 0; spins < KB_LOCK_SPINS; spins++) {
        uint64_t s = atomic_load_explicit(&b->h.state, memory_order_relaxed);
        if (s & KB_S_WRITING) {
            KB_RELAX();
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&b->h.state, &s, s | KB_S_WRITING,
                                                  memory_order_acquire, memory_order_relaxed)) {
            /* seqlock writer: WRITING must be visible before any table store */
            atomic_thread_fence(memory_order_release);
            *held = s;
            return 0;
        }
    }
    return -EBUSY;
}

static uint64_t scoped_bits(const kb_block_t *b) {
    uint64_t bits = 0;
    for (int i = 0; i < KB_MAX_SCOPED; i++) {
        if (atomic_load_explicit(&b->entries[i].key, memory_order_relaxed) == 0) continue;
        uint64_t f = atomic_load_explicit(&b->entries[i].flags, memory_order_relaxed);
        if (f & KB_F_BLOCK) bits |= KB_S_SCOPED_BLOCK;
        if (f & KB_F_SLOW) bits |= KB_S_SCOPED_SLOW;
    }
    return bits;
}

static void unlock_writer(kb_block_t *b, uint64_t old, uint64_t firm, int changed,
                          uint64_t kill_id) {
    uint64_t gen = (old >> KB_S_GEN_SHIFT) + (changed ? 1 : 0);
    uint64_t s = (gen << KB_S_GEN_SHIFT) | (firm & KB_S_FIRM_MASK) | scoped_bits(b);
    if (changed) {
        if (kill_id != 0)
            atomic_store_explicit(&b->h.last_kill_id, kill_id, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->h.epoch, 1, memory_order_release);
    }
    atomic_store_explicit(&b->h.state, s, memory_order_release);
}

static int seen_has(const kb_block_t *b, uint64_t kill_id) {
    for (int i = 0; i < KB_SEEN_IDS; i++)
        if (atomic_load_explicit(&b->seen[i], memory_order_relaxed) == kill_id) return 1;
    return 0;
}

static void seen_add(kb_block_t *b, uint64_t kill_id) {
    uint64_t i = atomic_load_explicit(&b->h.seen_next, memory_order_relaxed);
    atomic_store_explicit(&b->seen[i % KB_SEEN_IDS], kill_id, memory_order_relaxed);
    atomic_store_explicit(&b->h.seen_next, i + 1, memory_order_relaxed);
}

static int find_entry(const kb_block_t *b, uint64_t key) {
    for (int i = 0; i < KB_MAX_SCOPED; i++)
        if (atomic_load_explicit(&b->entries[i].key, memory_order_relaxed) == key) return i;
    return -1;
}

static int check_args(const void *base, uint64_t flags, int scope, uint64_t id) {
    if (base == NULL) return -EINVAL;
    const kb_block_t *b = (const kb_block_t *)base;
    if (b->h.magic != KB_MAGIC) return -EBADMSG;
    if (flags == 0 || (flags & ~KB_FLAG_MASK)) return -EINVAL;
    if (scope < KB_SCOPE_FIRM || scope > KB_SCOPE_SYMBOL) return -EINVAL;
    if (id > KB_ID_MAX) return -EINVAL;
    return 0;
}

/* Returns 1 when the block changed (epoch bumped), 0 for a duplicate kill id or a set that
 * changes nothing, -errno on error (-ENOSPC: the scoped table is full). */
int kb_set(void *base, uint64_t flags, int scope, uint64_t id, uint64_t kill_id,
           uint64_t now_ns) {
    int rc = check_args(base, flags, scope, id);
    if (rc < 0) return rc;
    kb_block_t *b = (kb_block_t *)base;
    uint64_t old;
    if ((rc = lock_writer(b, &old)) < 0) return rc;
    uint64_t firm = old & KB_S_FIRM_MASK;
    int changed = 0;
    if (kill_id != 0 && seen_has(b, kill_id)) {
        rc = 0; /* the same kill id twice has one effect */
    } else if (scope == KB_SCOPE_FIRM) {
        changed = (firm | flags) != firm;
        firm |= flags;
        rc = changed;
    } else {
        uint64_t key = ((uint64_t)scope << 56) | id;
        int i = find_entry(b, key);
        if (i >= 0) {
            uint64_t f = atomic_load_explicit(&b->entries[i].flags, memory_order_relaxed);
            if ((f | flags) != f) {
                atomic_store_explicit(&b->entries[i].flags, f | flags, memory_order_relaxed);
                atomic_store_explicit(&b->entries[i].kill_id, kill_id, memory_order_relaxed);
                atomic_store_explicit(&b->entries[i].updated_ns, now_ns, memory_order_relaxed);
                changed = 1;
            }
            rc = changed;
        } else if ((i = find_entry(b, 0)) < 0) {
            rc = -ENOSPC;
        } else {
            /* flags before key: a reader matching the key sees the entry's flags */
            atomic_store_explicit(&b->entries[i].flags, flags, memory_order_relaxed);
            atomic_store_explicit(&b->entries[i].kill_id, kill_id, memory_order_relaxed);
            atomic_store_explicit(&b->entries[i].updated_ns, now_ns, memory_order_relaxed);
            atomic_store_explicit(&b->entries[i].key, key, memory_order_relaxed);
            changed = 1;
            rc = 1;
        }
    }
    if (rc >= 0 && kill_id != 0 && !seen_has(b, kill_id)) {
        seen_add(b, kill_id);
        if (!changed) {
            changed = 1; /* a new kill id is recorded (last_kill_id), so the epoch moves */
            rc = 1;
        }
    }
    unlock_writer(b, old, firm, changed, kill_id);
    return rc;
}

/* Clear FLAGS on one scope; an entry left with no flags is freed. 1 changed, 0 nothing to do. */
int kb_clear(void *base, uint64_t flags, int scope, uint64_t id, uint64_t kill_id,
             uint64_t now_ns) {
    int rc = check_args(base, flags, scope, id);
    if (rc < 0) return rc;
    kb_block_t *b = (kb_block_t *)base;
    uint64_t old;
    if ((rc = lock_writer(b, &old)) < 0) return rc;
    uint64_t firm = old & KB_S_FIRM_MASK;
    int changed = 0;
    if (scope == KB_SCOPE_FIRM) {
        changed = (firm & flags) != 0;
        firm &= ~flags;
    } else {
        int i = find_entry(b, ((uint64_t)scope << 56) | id);
        if (i >= 0) {
            uint64_t f = atomic_load_explicit(&b->entries[i].flags, memory_order_relaxed);
            if (f & flags) {
                f &= ~flags;
                changed = 1;
                if (f == 0) {
                    atomic_store_explicit(&b->entries[i].key, 0, memory_order_relaxed);
                    atomic_store_explicit(&b->entries[i].kill_id, 0, memory_order_relaxed);
                }
                atomic_store_explicit(&b->entries[i].flags, f, memory_order_relaxed);
                atomic_store_explicit(&b->entries[i].updated_ns, now_ns, memory_order_relaxed);
            }
        }
    }
    unlock_writer(b, old, firm, changed, kill_id);
    return changed;
}

/* ------------------------------------------------------------------ reader side */

uint64_t kb_load_state(const void *base) {
    return atomic_load_explicit(&((const kb_block_t *)base)->h.state, memory_order_acquire);
}

uint64_t kb_load_epoch(const void *base) {
    return atomic_load_explicit(&((const kb_block_t *)base)->h.epoch, memory_order_acquire);
}

int kb_check(const void *base, uint64_t venue, uint64_t account, uint64_t strategy,
             uint64_t symbol, uint64_t *epoch_out, int *reason_out) {
    const kb_block_t *b = (const kb_block_t *)base;
    int reason = KB_REASON_BAD_BLOCK, verdict = KB_BLOCKED;
    uint64_t epoch = 0;
    if (b == NULL || b->h.magic != KB_MAGIC) goto out;
    for (int tries = 0; tries < KB_READ_RETRIES; tries++) {
        uint64_t s = atomic_load_explicit(&b->h.state, memory_order_acquire);
        epoch = atomic_load_explicit(&b->h.epoch, memory_order_acquire);
        if (s & KB_S_BLOCK_ALL) {
            verdict = KB_BLOCKED;
            reason = KB_SCOPE_FIRM;
            goto out;
        }
        if (s & KB_S_WRITING) {
            KB_RELAX();
            continue;
        }
        verdict = (s & KB_S_SLOW) ? KB_SLOW : KB_OK;
        reason = (s & KB_S_SLOW) ? KB_SCOPE_FIRM : KB_REASON_NONE;
        if (!(s & KB_S_SCOPED_MASK)) goto out;
        const uint64_t ids[5] = {0, venue, account, strategy, symbol};
        for (int i = 0; i < KB_MAX_SCOPED && verdict != KB_BLOCKED; i++) {
            uint64_t k = atomic_load_explicit(&b->entries[i].key, memory_order_relaxed);
            if (k == 0) continue;
            uint64_t sc = k >> 56;
            if (sc < KB_SCOPE_VENUE || sc > KB_SCOPE_SYMBOL || (k & KB_ID_MAX) != ids[sc])
                continue;
            uint64_t f = atomic_load_explicit(&b->entries[i].flags, memory_order_relaxed);
            if (f & KB_F_BLOCK) {
                verdict = KB_BLOCKED;
                reason = (int)sc;
            } else if ((f & KB_F_SLOW) && verdict == KB_OK) {
                verdict = KB_SLOW;
                reason = (int)sc;
            }
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&b->h.state, memory_order_relaxed) == s) goto out;
    }
    verdict = KB_BLOCKED; /* no consistent view: fail closed */
    reason = KB_REASON_INCONSISTENT;
out:
    if (epoch_out) *epoch_out = epoch;
    if (reason_out) *reason_out = reason;
    return verdict;
}

/* One verdict per order; returns how many were BLOCKED. EPOCHS may be NULL. */
uint64_t kb_check_batch(const void *base, const uint64_t *venue, const uint64_t *account,
                        const uint64_t *strategy, const uint64_t *symbol, uint64_t n,
                        uint8_t *verdicts, uint8_t *reasons, uint64_t *epochs) {
    uint64_t blocked = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e;
        int r;
        int v = kb_check(base, venue[i], account[i], strategy[i], symbol[i], &e, &r);
        verdicts[i] = (uint8_t)v;
        reasons[i] = (uint8_t)r;
        if (epochs) epochs[i] = e;
        blocked += (v == KB_BLOCKED);
    }
    return blocked;
}

int kb_snapshot(const void *base, kb_snapshot_t *out) {
    const kb_block_t *b = (const kb_block_t *)base;
    if (b == NULL || out == NULL) return -EINVAL;
    if (b->h.magic != KB_MAGIC) return -EBADMSG;
    for (int tries = 0; tries < KB_READ_RETRIES; tries++) {
        uint64_t s = atomic_load_explicit(&b->h.state, memory_order_acquire);
        if (s & KB_S_WRITING) {
            KB_RELAX();
            continue;
        }
        memset(out, 0, sizeof *out);
        out->state = s;
        out->epoch = atomic_load_explicit(&b->h.epoch, memory_order_acquire);
        out->last_kill_id = atomic_load_explicit(&b->h.last_kill_id, memory_order_relaxed);
        for (int i = 0; i < KB_MAX_SCOPED; i++) {
            uint64_t k = atomic_load_explicit(&b->entries[i].key, memory_order_relaxed);
            if (k == 0) continue;
            kb_entry_view_t *v = &out->entries[out->nentries++];
            v->scope = k >> 56;
            v->id = k & KB_ID_MAX;
            v->flags = atomic_load_explicit(&b->entries[i].flags, memory_order_relaxed);
            v->kill_id = atomic_load_explicit(&b->entries[i].kill_id, memory_order_relaxed);
            v->updated_ns = atomic_load_explicit(&b->entries[i].updated_ns, memory_order_relaxed);
        }
        /* seen ids oldest first */
        uint64_t next = atomic_load_explicit(&b->h.seen_next, memory_order_relaxed);
        uint64_t count = next < KB_SEEN_IDS ? next : KB_SEEN_IDS;
        for (uint64_t j = next - count; j < next; j++)
            out->seen[out->nseen++] =
                atomic_load_explicit(&b->seen[j % KB_SEEN_IDS], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&b->h.state, memory_order_relaxed) == s) return 0;
    }
    return -EBUSY;
}

/* Load a snapshot into a freshly initialized block that no one else sees yet. */
int kb_restore(void *base, const kb_snapshot_t *snap) {
    kb_block_t *b = (kb_block_t *)base;
    if (b == NULL || snap == NULL) return -EINVAL;
    if (b->h.magic != KB_MAGIC) return -EBADMSG;
    if (snap->nentries > KB_MAX_SCOPED || snap->nseen > KB_SEEN_IDS) return -EINVAL;
    for (uint64_t i = 0; i < snap->nentries; i++) {
        const kb_entry_view_t *v = &snap->entries[i];
        if (v->scope < KB_SCOPE_VENUE || v->scope > KB_SCOPE_SYMBOL || v->id > KB_ID_MAX ||
            (v->flags & ~KB_FLAG_MASK) || v->flags == 0)
            return -EINVAL;
        atomic_store_explicit(&b->entries[i].flags, v->flags, memory_order_relaxed);
        atomic_store_explicit(&b->entries[i].kill_id, v->kill_id, memory_order_relaxed);
        atomic_store_explicit(&b->entries[i].updated_ns, v->updated_ns, memory_order_relaxed);
        atomic_store_explicit(&b->entries[i].key, (v->scope << 56) | v->id,
                              memory_order_relaxed);
    }
    for (uint64_t j = 0; j < snap->nseen; j++)
        atomic_store_explicit(&b->seen[j], snap->seen[j], memory_order_relaxed);
    atomic_store_explicit(&b->h.seen_next, snap->nseen, memory_order_relaxed);
    atomic_store_explicit(&b->h.last_kill_id, snap->last_kill_id, memory_order_relaxed);
    /* restoring is a change: the epoch continues past the persisted one */
    atomic_store_explicit(&b->h.epoch, snap->epoch + 1, memory_order_relaxed);
    uint64_t s = (1ULL << KB_S_GEN_SHIFT) | (snap->state & KB_S_FIRM_MASK) | scoped_bits(b);
    atomic_store_explicit(&b->h.state, s, memory_order_release);
    return 0;
}
