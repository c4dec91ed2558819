/*
 * Tectra shared-memory ring: the four push/pop algorithms (SPSC|MPMC x BACKPRESSURE|OVERWRITE)
 * over a region the caller has mapped. C11 atomics only; see ring.h for the layout and
 * docs/rings.md for the algorithms and their contracts.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#endif

#include "ring.h"

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define ACQ_REL memory_order_acq_rel

#define CL TR_CACHE_LINE

/* The header. Each hot word sits alone on its cache line; words written by the producer
 * (prod, pushed) share a 128-byte pair, as do the consumer's (cons, popped), so the
 * adjacent-line prefetcher never pairs a producer line with a consumer line. */
struct tr_header {
    _Atomic uint64_t magic; /* stored last, with release: a ring is valid once it is set */
    uint32_t layout_version;
    uint32_t header_size;
    uint32_t record_size;
    uint32_t kind;
    uint32_t policy;
    uint32_t reserved0;
    uint64_t capacity;
    uint64_t fingerprint;
    uint64_t created_ns;
    uint64_t seq_offset;
    alignas(CL) uint64_t records_offset;
    uint64_t total_bytes;
    alignas(CL) _Atomic uint64_t prod;   /* next position to claim (producers) */
    alignas(CL) _Atomic uint64_t pushed; /* records accepted */
    alignas(CL) _Atomic uint64_t cons;   /* next position to read (consumers) */
    alignas(CL) _Atomic uint64_t popped; /* records delivered */
    alignas(CL) _Atomic uint64_t overruns; /* records lost by consumers (OVERWRITE) */
    alignas(CL) _Atomic uint64_t full;   /* records refused (BACKPRESSURE) */
};

_Static_assert(sizeof(struct tr_header) == TR_HEADER_SIZE, "header is 8 cache lines");
_Static_assert(sizeof(_Atomic uint64_t) == 8, "atomic u64 is a plain 8-byte word");
#define CHECK_OFF(field, off) _Static_assert(offsetof(struct tr_header, field) == (off), #field)
CHECK_OFF(magic, TR_OFF_MAGIC);
CHECK_OFF(layout_version, TR_OFF_LAYOUT_VERSION);
CHECK_OFF(header_size, TR_OFF_HEADER_SIZE);
CHECK_OFF(record_size, TR_OFF_RECORD_SIZE);
CHECK_OFF(kind, TR_OFF_KIND);
CHECK_OFF(policy, TR_OFF_POLICY);
CHECK_OFF(capacity, TR_OFF_CAPACITY);
CHECK_OFF(fingerprint, TR_OFF_FINGERPRINT);
CHECK_OFF(created_ns, TR_OFF_CREATED_NS);
CHECK_OFF(seq_offset, TR_OFF_SEQ_OFFSET);
CHECK_OFF(records_offset, TR_OFF_RECORDS_OFFSET);
CHECK_OFF(total_bytes, TR_OFF_TOTAL_BYTES);
CHECK_OFF(prod, TR_OFF_PROD);
CHECK_OFF(pushed, TR_OFF_PUSHED);
CHECK_OFF(cons, TR_OFF_CONS);
CHECK_OFF(popped, TR_OFF_POPPED);
CHECK_OFF(overruns, TR_OFF_OVERRUNS);
CHECK_OFF(full, TR_OFF_FULL);

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static inline int is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Counters: a single writer (SPSC) uses load+store to avoid a locked instruction. */
static inline void counter_add(_Atomic uint64_t *c, uint64_t n, int shared)
{
    if (shared)
        atomic_fetch_add_explicit(c, n, RELAXED);
    else
        atomic_store_explicit(c, atomic_load_explicit(c, RELAXED) + n, RELAXED);
}

/* OVERWRITE slot words: (tag << 2) | state, tag = position + 1 of the record the word is
 * about (tag 0: never written). A word only moves to a larger tag, and within a tag only
 * WRITING -> PUBLISHED or SKIP_BUSY -> SKIPPED, so a word seen twice with the same PUBLISHED
 * value did not change in between (the seqlock check).
 *   WRITING    the producer of tag is copying the record in
 *   PUBLISHED  the record of tag is in the slot, nobody is writing it
 *   SKIP_BUSY  the record of tag was given up (lost) because an older producer is still
 *              writing in this slot; that producer turns it into SKIPPED when it is done
 *   SKIPPED    the record of tag is lost; nobody is writing the slot */
enum { OW_SKIPPED = 0, OW_WRITING = 1, OW_PUBLISHED = 2, OW_SKIP_BUSY = 3 };
enum { OW_NOT_YET, OW_READY, OW_LOST };

static inline uint64_t ow_word(uint64_t pos, uint64_t state) { return ((pos + 1) << 2) | state; }

/* What the slot word w says about the record at position pos. */
static inline int ow_classify(uint64_t w, uint64_t pos)
{
    uint64_t tag = w >> 2, want = pos + 1;
    if (tag < want)
        return OW_NOT_YET; /* still the previous lap: its producer has not started */
    if (tag > want)
        return OW_LOST; /* a later lap took the slot */
    switch (w & 3) {
    case OW_PUBLISHED:
        return OW_READY;
    case OW_WRITING:
        return OW_NOT_YET;
    default:
        return OW_LOST;
    }
}

static inline unsigned char *slot_ptr(const tr_ring_t *r, uint64_t pos)
{
    return r->recs + (pos & r->mask) * r->rs;
}

/* Copy n <= cap records into the ring at position pos: at most two memcpy (split at the wrap). */
static inline void copy_in(const tr_ring_t *r, uint64_t pos, const unsigned char *src, uint64_t n)
{
    uint64_t idx = pos & r->mask;
    uint64_t first = min_u64(n, r->cap - idx);
    memcpy(r->recs + idx * r->rs, src, first * r->rs);
    if (n > first)
        memcpy(r->recs, src + first * r->rs, (n - first) * r->rs);
}

static inline void copy_out(const tr_ring_t *r, uint64_t pos, unsigned char *dst, uint64_t n)
{
    uint64_t idx = pos & r->mask;
    uint64_t first = min_u64(n, r->cap - idx);
    memcpy(dst, r->recs + idx * r->rs, first * r->rs);
    if (n > first)
        memcpy(dst + first * r->rs, r->recs, (n - first) * r->rs);
}

static inline void put_seqs(uint64_t *seqs, uint64_t at, uint64_t first_pos, uint64_t n)
{
    if (seqs)
        for (uint64_t i = 0; i < n; i++)
            seqs[at + i] = first_pos + i;
}

/* ---------------------------------------------------------------- set-up */

uint64_t tr_ring_bytes(uint64_t capacity, uint32_t record_size)
{
    if (!is_pow2(capacity) || capacity < TR_MIN_CAPACITY || capacity > TR_MAX_CAPACITY)
        return 0;
    if (record_size == 0 || record_size % 8 != 0)
        return 0;
    uint64_t seq_bytes = capacity * 8;
    uint64_t recs_off = (TR_HEADER_SIZE + seq_bytes + CL - 1) / CL * CL;
    if (capacity > (UINT64_MAX - recs_off) / record_size)
        return 0;
    return recs_off + capacity * record_size;
}

int tr_ring_init(void *base, uint64_t len, uint32_t record_size, uint64_t capacity,
                 uint32_t kind, uint32_t policy, uint64_t fingerprint, uint64_t created_ns)
{
    uint64_t total = tr_ring_bytes(capacity, record_size);
    if (base == NULL || total == 0 || kind > TR_KIND_MPMC || policy > TR_POLICY_OVERWRITE)
        return -EINVAL;
    if (((uintptr_t)base % CL) != 0)
        return -EINVAL;
    if (len < total)
        return -ENOSPC;
    struct tr_header *h = base;
    memset(h, 0, TR_HEADER_SIZE);
    h->layout_version = TR_LAYOUT_VERSION;
    h->header_size = TR_HEADER_SIZE;
    h->record_size = record_size;
    h->kind = kind;
    h->policy = policy;
    h->capacity = capacity;
    h->fingerprint = fingerprint;
    h->created_ns = created_ns;
    h->seq_offset = TR_HEADER_SIZE;
    h->records_offset = total - capacity * record_size;
    h->total_bytes = total;
    atomic_init(&h->prod, 0);
    atomic_init(&h->pushed, 0);
    atomic_init(&h->cons, 0);
    atomic_init(&h->popped, 0);
    atomic_init(&h->overruns, 0);
    atomic_init(&h->full, 0);
    _Atomic uint64_t *seq = (_Atomic uint64_t *)((unsigned char *)base + TR_HEADER_SIZE);
    /* Vyukov: slot i starts "free for position i"; overwrite: 0 = never written. */
    int vyukov = kind == TR_KIND_MPMC && policy == TR_POLICY_BACKPRESSURE;
    for (uint64_t i = 0; i < capacity; i++)
        atomic_init(&seq[i], vyukov ? i : 0);
    atomic_store_explicit(&h->magic, TR_MAGIC, RELEASE);
    return 0;
}

int tr_ring_open(tr_ring_t *r, void *base, uint64_t len)
{
    if (r == NULL || base == NULL || ((uintptr_t)base % CL) != 0)
        return -EINVAL;
    if (len < TR_HEADER_SIZE)
        return -EBADMSG;
    struct tr_header *h = base;
    uint64_t magic = atomic_load_explicit(&h->magic, ACQUIRE);
    if (magic == 0)
        return -EAGAIN;
    if (magic != TR_MAGIC)
        return -EBADMSG;
    if (h->layout_version != TR_LAYOUT_VERSION)
        return -EPROTONOSUPPORT;
    uint64_t total = tr_ring_bytes(h->capacity, h->record_size);
    if (h->header_size != TR_HEADER_SIZE || total == 0 || h->kind > TR_KIND_MPMC ||
        h->policy > TR_POLICY_OVERWRITE || h->seq_offset != TR_HEADER_SIZE ||
        h->total_bytes != total || h->records_offset != total - h->capacity * h->record_size ||
        len < total)
        return -EBADMSG;
    memset(r, 0, sizeof(*r));
    r->seq = (_Atomic uint64_t *)((unsigned char *)base + h->seq_offset);
    r->recs = (unsigned char *)base + h->records_offset;
    r->cap = h->capacity;
    r->mask = h->capacity - 1;
    r->rs = h->record_size;
    r->kind = h->kind;
    r->policy = h->policy;
    r->cached_cons = atomic_load_explicit(&h->cons, ACQUIRE);
    r->cached_prod = atomic_load_explicit(&h->prod, ACQUIRE);
    r->hdr = h;
    return 0;
}

void tr_ring_close(tr_ring_t *r)
{
    if (r)
        r->hdr = NULL;
}

int tr_ring_info(const tr_ring_t *r, tr_info_t *out)
{
    if (r == NULL || r->hdr == NULL)
        return -EBADF;
    const struct tr_header *h = r->hdr;
    out->layout_version = h->layout_version;
    out->record_size = h->record_size;
    out->kind = h->kind;
    out->policy = h->policy;
    out->capacity = h->capacity;
    out->fingerprint = h->fingerprint;
    out->created_ns = h->created_ns;
    out->records_offset = h->records_offset;
    out->total_bytes = h->total_bytes;
    return 0;
}

int tr_ring_stats(const tr_ring_t *r, tr_stats_t *out)
{
    if (r == NULL || r->hdr == NULL)
        return -EBADF;
    struct tr_header *h = r->hdr;
    /* cons first: prod read afterwards can only be larger, so depth never goes negative. */
    uint64_t cons = atomic_load_explicit(&h->cons, ACQUIRE);
    uint64_t prod = atomic_load_explicit(&h->prod, ACQUIRE);
    out->capacity = r->cap;
    out->depth = min_u64(prod - cons, r->cap);
    out->pushed = atomic_load_explicit(&h->pushed, RELAXED);
    out->popped = atomic_load_explicit(&h->popped, RELAXED);
    out->overruns = atomic_load_explicit(&h->overruns, RELAXED);
    out->full = atomic_load_explicit(&h->full, RELAXED);
    out->prod = prod;
    out->cons = cons;
    return 0;
}

/* ---------------------------------------------------------------- SPSC BACKPRESSURE
 * Lamport ring: the producer owns prod, the consumer owns cons; each caches the other's
 * index and re-reads it (acquire) only when the cached value says there is not enough
 * room/data, so the opposite cache line is touched at most once per batch. */

static int64_t spsc_bp_push(tr_ring_t *r, const unsigned char *src, uint64_t n)
{
    struct tr_header *h = r->hdr;
    uint64_t tail = atomic_load_explicit(&h->prod, RELAXED);
    uint64_t used = tail - r->cached_cons;
    if (used > r->cap || r->cap - used < n) {
        r->cached_cons = atomic_load_explicit(&h->cons, ACQUIRE);
        used = tail - r->cached_cons;
    }
    uint64_t room = used > r->cap ? 0 : r->cap - used;
    uint64_t k = min_u64(n, room);
    if (k) {
        copy_in(r, tail, src, k);
        atomic_store_explicit(&h->prod, tail + k, RELEASE);
        counter_add(&h->pushed, k, 0);
    }
    if (k < n)
        atomic_fetch_add_explicit(&h->full, n - k, RELAXED);
    return (int64_t)k;
}

static uint64_t spsc_bp_available(tr_ring_t *r, uint64_t head, uint64_t want)
{
    uint64_t avail = r->cached_prod - head;
    if (avail > r->cap || avail < want) {
        r->cached_prod = atomic_load_explicit(&r->hdr->prod, ACQUIRE);
        avail = r->cached_prod - head;
    }
    return avail > r->cap ? 0 : avail;
}

static int64_t spsc_bp_pop(tr_ring_t *r, unsigned char *dst, uint64_t max, uint64_t *seqs)
{
    struct tr_header *h = r->hdr;
    uint64_t head = atomic_load_explicit(&h->cons, RELAXED);
    uint64_t k = min_u64(max, spsc_bp_available(r, head, max));
    if (k) {
        copy_out(r, head, dst, k);
        put_seqs(seqs, 0, head, k);
        atomic_store_explicit(&h->cons, head + k, RELEASE);
        counter_add(&h->popped, k, 0);
    }
    return (int64_t)k;
}

int64_t tr_peek(tr_ring_t *r, uint64_t max, uint64_t *slot)
{
    if (r == NULL || r->hdr == NULL)
        return -EBADF;
    if (r->kind != TR_KIND_SPSC || r->policy != TR_POLICY_BACKPRESSURE)
        return -EOPNOTSUPP;
    uint64_t head = atomic_load_explicit(&r->hdr->cons, RELAXED);
    uint64_t idx = head & r->mask;
    uint64_t want = min_u64(max, r->cap - idx);
    *slot = idx;
    return (int64_t)min_u64(want, spsc_bp_available(r, head, want));
}

int64_t tr_release(tr_ring_t *r, uint64_t n)
{
    if (r == NULL || r->hdr == NULL)
        return -EBADF;
    if (r->kind != TR_KIND_SPSC || r->policy != TR_POLICY_BACKPRESSURE)
        return -EOPNOTSUPP;
    struct tr_header *h = r->hdr;
    uint64_t head = atomic_load_explicit(&h->cons, RELAXED);
    if (n > spsc_bp_available(r, head, n))
        return -EINVAL;
    if (n) {
        atomic_store_explicit(&h->cons, head + n, RELEASE);
        counter_add(&h->popped, n, 0);
    }
    return (int64_t)n;
}

/* ---------------------------------------------------------------- MPMC BACKPRESSURE
 * Vyukov bounded MPMC queue, claiming runs instead of single slots. Slot word s for position
 * p: s == p means free for the producer of p; s == p+1 means holding record p; the consumer
 * of p frees it for p+cap. A run [pos, pos+k) is claimed with one CAS after checking each
 * slot's word: nobody else can change a free (or full) slot until the CAS moves the index. */

static int64_t mpmc_bp_push(tr_ring_t *r, const unsigned char *src, uint64_t n)
{
    struct tr_header *h = r->hdr;
    uint64_t done = 0;
    while (done < n) {
        uint64_t pos = atomic_load_explicit(&h->prod, RELAXED);
        uint64_t s0 = atomic_load_explicit(&r->seq[pos & r->mask], ACQUIRE);
        int64_t dif = (int64_t)(s0 - pos);
        if (dif < 0)
            break; /* slot still holds record pos-cap: full */
        if (dif > 0)
            continue; /* another producer moved prod on; re-read it */
        uint64_t want = min_u64(n - done, r->cap);
        uint64_t k = 1;
        while (k < want && atomic_load_explicit(&r->seq[(pos + k) & r->mask], ACQUIRE) == pos + k)
            k++;
        if (!atomic_compare_exchange_weak_explicit(&h->prod, &pos, pos + k, RELAXED, RELAXED))
            continue;
        copy_in(r, pos, src + done * r->rs, k);
        for (uint64_t i = 0; i < k; i++)
            atomic_store_explicit(&r->seq[(pos + i) & r->mask], pos + i + 1, RELEASE);
        done += k;
    }
    if (done)
        counter_add(&h->pushed, done, 1);
    if (done < n)
        atomic_fetch_add_explicit(&h->full, n - done, RELAXED);
    return (int64_t)done;
}

static int64_t mpmc_bp_pop(tr_ring_t *r, unsigned char *dst, uint64_t max, uint64_t *seqs)
{
    struct tr_header *h = r->hdr;
    uint64_t done = 0;
    while (done < max) {
        uint64_t pos = atomic_load_explicit(&h->cons, RELAXED);
        uint64_t s0 = atomic_load_explicit(&r->seq[pos & r->mask], ACQUIRE);
        int64_t dif = (int64_t)(s0 - (pos + 1));
        if (dif < 0)
            break; /* empty, or its producer has not published yet */
        if (dif > 0)
            continue;
        uint64_t want = min_u64(max - done, r->cap);
        uint64_t k = 1;
        while (k < want &&
               atomic_load_explicit(&r->seq[(pos + k) & r->mask], ACQUIRE) == pos + k + 1)
            k++;
        if (!atomic_compare_exchange_weak_explicit(&h->cons, &pos, pos + k, RELAXED, RELAXED))
            continue;
        copy_out(r, pos, dst + done * r->rs, k);
        for (uint64_t i = 0; i < k; i++)
            atomic_store_explicit(&r->seq[(pos + i) & r->mask], pos + i + r->cap, RELEASE);
        put_seqs(seqs, done, pos, k);
        done += k;
    }
    if (done)
        counter_add(&h->popped, done, 1);
    return (int64_t)done;
}

/* ---------------------------------------------------------------- OVERWRITE (both kinds)
 * Each slot word is a seqlock: the producer of position p marks the slot WRITING, copies the
 * record in, then publishes it with release. prod only grows; a consumer at cons that finds
 * prod - cons > cap jumps to prod - cap (the oldest record that can still be present) and
 * counts the gap as lost. It copies records out, then re-reads each slot word: a record whose
 * word changed during the copy was being overwritten and is counted lost, never delivered. */

static int64_t ow_push_spsc(tr_ring_t *r, const unsigned char *src, uint64_t n)
{
    struct tr_header *h = r->hdr;
    uint64_t tail = atomic_load_explicit(&h->prod, RELAXED);
    /* Only the last cap records of an oversized batch can survive; the rest are never
     * written, and consumers account for them as lost through prod. */
    uint64_t skip = n > r->cap ? n - r->cap : 0;
    uint64_t p0 = tail + skip, m = n - skip;
    for (uint64_t i = 0; i < m; i++)
        atomic_store_explicit(&r->seq[(p0 + i) & r->mask], ow_word(p0 + i, OW_WRITING), RELAXED);
    atomic_thread_fence(RELEASE); /* the marks are visible before any byte of the new records */
    copy_in(r, p0, src + skip * r->rs, m);
    for (uint64_t i = 0; i < m; i++)
        atomic_store_explicit(&r->seq[(p0 + i) & r->mask], ow_word(p0 + i, OW_PUBLISHED), RELEASE);
    atomic_store_explicit(&h->prod, tail + n, RELEASE);
    counter_add(&h->pushed, n, 0);
    return (int64_t)n;
}

/* Try to own the slot of position p for writing. Never waits: if an older producer is still
 * writing the slot (it was preempted a whole lap ago, or died), record p is given up and the
 * slot marked SKIP_BUSY so consumers count p as lost instead of waiting for it. */
static int ow_claim_slot(_Atomic uint64_t *w, uint64_t p)
{
    uint64_t v = atomic_load_explicit(w, RELAXED);
    for (;;) {
        if ((v >> 2) >= p + 1)
            return 0; /* a later lap already has the slot: p is lost */
        uint64_t state = v & 3;
        if (state == OW_WRITING || state == OW_SKIP_BUSY) {
            if (atomic_compare_exchange_weak_explicit(w, &v, ow_word(p, OW_SKIP_BUSY), RELAXED,
                                                      RELAXED))
                return 0;
            continue;
        }
        /* acquire: pairs with the release that ended the previous writer's copy */
        if (atomic_compare_exchange_weak_explicit(w, &v, ow_word(p, OW_WRITING), ACQUIRE, RELAXED))
            return 1;
    }
}

/* Publish record p, or, if a newer producer gave its record up while we were writing
 * (SKIP_BUSY), tell it we are done so the slot is usable again (SKIPPED). */
static void ow_finish_slot(_Atomic uint64_t *w, uint64_t p)
{
    uint64_t v = ow_word(p, OW_WRITING);
    if (atomic_compare_exchange_strong_explicit(w, &v, ow_word(p, OW_PUBLISHED), RELEASE, RELAXED))
        return;
    while (!atomic_compare_exchange_weak_explicit(w, &v, (v & ~(uint64_t)3) | OW_SKIPPED, RELEASE,
                                                  RELAXED))
        ;
}

static int64_t ow_push_mpmc(tr_ring_t *r, const unsigned char *src, uint64_t n)
{
    struct tr_header *h = r->hdr;
    uint64_t tail = atomic_fetch_add_explicit(&h->prod, n, ACQ_REL);
    uint64_t skip = n > r->cap ? n - r->cap : 0;
    for (uint64_t i = skip; i < n; i++) {
        uint64_t p = tail + i;
        _Atomic uint64_t *w = &r->seq[p & r->mask];
        if (!ow_claim_slot(w, p))
            continue;
        atomic_thread_fence(RELEASE); /* the mark is visible before any byte of the record */
        memcpy(slot_ptr(r, p), src + i * r->rs, r->rs);
        ow_finish_slot(w, p);
    }
    counter_add(&h->pushed, n, 1);
    return (int64_t)n;
}

static int64_t ow_pop(tr_ring_t *r, unsigned char *dst, uint64_t max, uint64_t *seqs,
                      uint64_t *lost_out)
{
    struct tr_header *h = r->hdr;
    int multi = r->kind == TR_KIND_MPMC;
    uint64_t lost = 0, got = 0;
    for (;;) {
        uint64_t head = atomic_load_explicit(&h->cons, multi ? ACQUIRE : RELAXED);
        uint64_t tail = atomic_load_explicit(&h->prod, ACQUIRE);
        uint64_t start = tail - head > r->cap ? tail - r->cap : head;
        uint64_t want = min_u64(max, tail - start);
        /* Claim the run of positions whose fate is known (ready or lost); stop at a record
         * whose producer has not finished (MPMC: claimed but not yet published). */
        uint64_t k = 0;
        while (k < want && ow_classify(atomic_load_explicit(&r->seq[(start + k) & r->mask],
                                                            ACQUIRE),
                                       start + k) != OW_NOT_YET)
            k++;
        if (k == 0 && start == head)
            break;
        if (multi && !atomic_compare_exchange_weak_explicit(&h->cons, &head, start + k, ACQ_REL,
                                                            RELAXED))
            continue; /* another consumer claimed first; start over from its cursor */
        lost = start - head;
        if (k) {
            copy_out(r, start, dst, k);
            atomic_thread_fence(ACQUIRE); /* the copy happens before the re-check */
            /* Deliver only the run after the last record that is not intact, so a pop always
             * returns its lost records first and then a contiguous run. A producer lapping us
             * overwrites the oldest records first, so in SPSC nothing intact is dropped. */
            uint64_t bad = k; /* ends as the length of the prefix up to the last bad record */
            while (bad > 0 && atomic_load_explicit(&r->seq[(start + bad - 1) & r->mask],
                                                   RELAXED) ==
                                  ow_word(start + bad - 1, OW_PUBLISHED))
                bad--;
            got = k - bad;
            lost += bad;
            if (bad && got)
                memmove(dst, dst + bad * r->rs, got * r->rs);
            put_seqs(seqs, 0, start + bad, got);
        }
        if (!multi)
            atomic_store_explicit(&h->cons, start + k, RELEASE);
        break;
    }
    if (got)
        counter_add(&h->popped, got, multi);
    if (lost)
        counter_add(&h->overruns, lost, multi);
    *lost_out = lost;
    return (int64_t)got;
}

/* ---------------------------------------------------------------- dispatch */

int64_t tr_push(tr_ring_t *r, const void *recs, uint64_t n)
{
    if (r == NULL || r->hdr == NULL)
        return -EBADF;
    if (n == 0)
        return 0;
    if (recs == NULL)
        return -EINVAL;
    const unsigned char *src = recs;
    if (r->policy == TR_POLICY_OVERWRITE)
        return r->kind == TR_KIND_SPSC ? ow_push_spsc(r, src, n) : ow_push_mpmc(r, src, n);
    return r->kind == TR_KIND_SPSC ? spsc_bp_push(r, src, n) : mpmc_bp_push(r, src, n);
}

int64_t tr_pop(tr_ring_t *r, void *out, uint64_t max, uint64_t *seqs, uint64_t *lost)
{
    if (r == NULL || r->hdr == NULL)
        return -EBADF;
    if (lost == NULL || (out == NULL && max != 0))
        return -EINVAL;
    *lost = 0;
    if (max == 0)
        return 0;
    unsigned char *dst = out;
    if (r->policy == TR_POLICY_OVERWRITE)
        return ow_pop(r, dst, max, seqs, lost);
    return r->kind == TR_KIND_SPSC ? spsc_bp_pop(r, dst, max, seqs) : mpmc_bp_pop(r, dst, max, seqs);
}

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tr_pop_wait(tr_ring_t *r, void *out, uint64_t max, uint64_t *seqs, uint64_t *lost,
                    int64_t timeout_ns)
{
    if (lost == NULL || timeout_ns < 0)
        return -EINVAL;
    uint64_t lost_total = 0, lost_now = 0;
    int64_t got, deadline = -1;
    for (uint32_t spin = 0;; spin++) {
        got = tr_pop(r, out, max, seqs, &lost_now);
        if (got < 0)
            return got;
        lost_total += lost_now;
        if (got > 0 || max == 0 || timeout_ns == 0)
            break;
        if ((spin & 63) == 0) { /* the clock is cheap (vDSO) but not free: every 64 polls */
            int64_t now = now_ns();
            if (deadline < 0)
                deadline = now + timeout_ns;
            else if (now >= deadline)
                break;
        }
        cpu_relax();
    }
    *lost = lost_total;
    return got;
}
