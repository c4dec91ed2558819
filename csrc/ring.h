/*
 * Tectra shared-memory ring: the one definition of the ring's memory layout and its C API.
 *
 * A ring is one contiguous region (a file in /dev/shm/tectra/ mapped MAP_SHARED by every
 * process that uses it):
 *
 *     [0, 512)                      struct tr_header (8 cache lines, see below)
 *     [512, 512 + 8*capacity)       per-slot sequence words (u64 each)
 *     [records_offset, total)       capacity records of record_size bytes, 64-byte aligned
 *
 * Kinds: SPSC (one producer, one consumer) and MPMC (many producers, many consumers sharing
 * one read cursor). Policies: BACKPRESSURE (push refuses what does not fit, nothing lost) and
 * OVERWRITE (push never fails; a lagging consumer is told exactly how many records it lost).
 * docs/rings.md describes the layout byte by byte and the four algorithms.
 *
 * This code owns no memory: the caller maps the region and passes its address. Functions
 * return >= 0 on success and -errno on failure. No syscalls happen on push/pop.
 */
#ifndef TECTRA_RING_H
#define TECTRA_RING_H

#include <stdint.h>

/* "TECTRARG" when the first 8 bytes of the file are read as text (little-endian u64). */
#define TR_MAGIC 0x4752415254434554ull
#define TR_LAYOUT_VERSION 1u
#define TR_CACHE_LINE 64u
#define TR_HEADER_SIZE 512u
#define TR_MIN_CAPACITY 2u
#define TR_MAX_CAPACITY (1ull << 32)

#define TR_KIND_SPSC 0u
#define TR_KIND_MPMC 1u
#define TR_POLICY_BACKPRESSURE 0u
#define TR_POLICY_OVERWRITE 1u

/* Header field offsets (bytes from the start of the region); checked against the struct
 * with _Static_assert in ring.c and against docs/rings.md by the unit tests. */
#define TR_OFF_MAGIC 0u
#define TR_OFF_LAYOUT_VERSION 8u
#define TR_OFF_HEADER_SIZE 12u
#define TR_OFF_RECORD_SIZE 16u
#define TR_OFF_KIND 20u
#define TR_OFF_POLICY 24u
#define TR_OFF_CAPACITY 32u
#define TR_OFF_FINGERPRINT 40u
#define TR_OFF_CREATED_NS 48u
#define TR_OFF_SEQ_OFFSET 56u
#define TR_OFF_RECORDS_OFFSET 64u
#define TR_OFF_TOTAL_BYTES 72u
#define TR_OFF_PROD 128u
#define TR_OFF_PUSHED 192u
#define TR_OFF_CONS 256u
#define TR_OFF_POPPED 320u
#define TR_OFF_OVERRUNS 384u
#define TR_OFF_FULL 448u

/* What an attacher learns from a header (plain copy, no atomics). */
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

struct tr_header;

/* Per-process handle on a mapped ring. Python allocates it (ffi.new), so its size must be
 * public; the cached indices are hints private to this process, never shared. */
typedef struct tr_ring {
    struct tr_header *hdr; /* NULL once closed: every call then returns -EBADF */
    _Atomic uint64_t *seq; /* per-slot sequence words, capacity of them */
    unsigned char *recs;
    uint64_t cap;
    uint64_t mask;
    uint32_t rs;
    uint32_t kind;
    uint32_t policy;
    uint32_t pad;
    uint64_t cached_cons; /* producer's last view of the consumer index (SPSC) */
    uint64_t cached_prod; /* consumer's last view of the producer index (SPSC) */
} tr_ring_t;

/* Bytes a ring of this shape occupies, or 0 if the shape is invalid. */
uint64_t tr_ring_bytes(uint64_t capacity, uint32_t record_size);

/* Format a fresh ring in [base, base+len). -EINVAL for a bad shape, -ENOSPC if len is short. */
int tr_ring_init(void *base, uint64_t len, uint32_t record_size, uint64_t capacity,
                 uint32_t kind, uint32_t policy, uint64_t fingerprint, uint64_t created_ns);

/* Validate the header at base and fill the handle. -EBADMSG: not a ring or inconsistent
 * header; -EPROTONOSUPPORT: another layout version; -EAGAIN: not initialized yet. */
int tr_ring_open(tr_ring_t *r, void *base, uint64_t len);
void tr_ring_close(tr_ring_t *r);
int tr_ring_info(const tr_ring_t *r, tr_info_t *out);
int tr_ring_stats(const tr_ring_t *r, tr_stats_t *out);

/* Push n records; returns how many were accepted (a prefix; always n under OVERWRITE). */
int64_t tr_push(tr_ring_t *r, const void *recs, uint64_t n);

/* Pop up to max records into out; *lost gets the records lost since the last pop (OVERWRITE),
 * seqs (nullable) gets each record's ring sequence number. Returns the count copied. */
int64_t tr_pop(tr_ring_t *r, void *out, uint64_t max, uint64_t *seqs, uint64_t *lost);

/* As tr_pop, but busy-polls until at least one record arrives or timeout_ns elapses. */
int64_t tr_pop_wait(tr_ring_t *r, void *out, uint64_t max, uint64_t *seqs, uint64_t *lost,
                    int64_t timeout_ns);

/* SPSC BACKPRESSURE only: records readable in place from slot *slot (contiguous up to the
 * wrap, at most max), then tr_release(n) hands them back to the producer. */
int64_t tr_peek(tr_ring_t *r, uint64_t max, uint64_t *slot);
int64_t tr_release(tr_ring_t *r, uint64_t n);

#endif /* TECTRA_RING_H */
