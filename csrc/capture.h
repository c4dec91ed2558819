/*
 * Tectra capture ring: one component's captured steps, from its hot thread to a journal writer
 * in another process (or thread), through shared memory.
 *
 * The producer (the component's hot thread) records a whole step with one call: the input
 * batch and the step's outputs are copied into one variable-length record (or, in DIGEST mode,
 * the outputs are reduced to one 64-bit XXH64 digest per output array). No allocation, no
 * syscall, no Python object per record; a full ring (or a failed writer) never blocks: the
 * step is dropped and counted, and the next recorded step carries how many were lost before
 * it. The consumer turns runs of records into STEP_BLOCK journal payloads (the layout of
 * tectra/journal/stepblock.py) with one call, so its own per-step work is C too.
 *
 * Region layout (a file in /dev/shm mapped MAP_SHARED by both sides):
 *
 *     [0, 512)            struct cap_header (config line, producer line, consumer line)
 *     [512, 512 + cap)    data: records, 8-byte aligned; cap is a power of two
 *
 * Record (never wraps; a record that does not fit before the end is preceded by a pad record
 * whose n_chunks is CAP_PAD and which runs to the end of the data area):
 *
 *     u32 rec_len (bytes, multiple of 8)   u32 n_chunks
 *     u64 step    i64 now_ns               u64 lost_before (steps dropped just before it)
 *     n_chunks x { u16 type, u8 kind, u8 reserved, u32 count, u64 nbytes, data padded to 8 }
 *
 * Chunk data is already in its STEP_BLOCK form: schema records back to back; an opaque batch
 * as count + 1 i64 offsets then the payloads; an OUTPUT_DIGEST table as count entries of
 * { u16 type, u16 reserved, u32 records, u64 xxh64 }.
 *
 * Functions return >= 0 on success and -errno on failure. One producer, one consumer.
 */
#ifndef TECTRA_CAPTURE_H
#define TECTRA_CAPTURE_H

#include <stdint.h>

#define CAP_MAGIC 0x50414354525443ull /* "CTRTCAP" little-endian */
#define CAP_LAYOUT_VERSION 1u
#define CAP_HEADER_SIZE 512u
#define CAP_MIN_CAPACITY 4096ull
#define CAP_MAX_CAPACITY (1ull << 31) /* record lengths (a pad runs to the end) are u32 */
#define CAP_MAX_OUTPUTS 8u
#define CAP_RECORD_HEAD 32u
#define CAP_CHUNK_HEAD 16u
#define CAP_PAD 0xFFFFFFFFu

#define CAP_MODE_FULL 0u
#define CAP_MODE_DIGEST 1u

#define CAP_KIND_INPUT 1u
#define CAP_KIND_OUTPUT 2u

#define CAP_TYPE_RAW_PACKET 0xF001u
#define CAP_TYPE_OUTPUT_DIGEST 0xF006u
#define CAP_DIGEST_ENTRY 16u

/* STEP_BLOCK payload tables (tectra/journal/stepblock.py). */
#define CAP_BLOCK_HEAD 8u
#define CAP_BLOCK_STEP 24u
#define CAP_BLOCK_CHUNK 16u

/* What a consumer learns from a header, and the counters both sides keep (plain copy). */
typedef struct cap_stats {
    uint64_t capacity;      /* data bytes */
    uint32_t mode;          /* CAP_MODE_* */
    uint32_t component;     /* tectra.schema.Component of the producer */
    uint64_t steps;         /* producer: steps seen (recorded + dropped) */
    uint64_t recorded;      /* producer: steps put in the ring */
    uint64_t dropped;       /* producer: steps dropped (ring full, writer failed, too big) */
    uint64_t gaps;          /* producer: runs of dropped steps */
    uint64_t lost_pending;  /* producer: steps dropped since the last recorded one */
    int64_t last_now_ns;    /* producer: now_ns of the last step seen */
    uint64_t closed;        /* producer: 1 once it will put nothing more */
    uint64_t written;       /* consumer: steps journaled */
    uint64_t blocks;        /* consumer: STEP_BLOCK payloads taken */
    int64_t error;          /* consumer: 0, or -errno of the writer failure that stopped it */
    uint64_t attached;      /* consumer: 1 once it is ready to take blocks */
    uint64_t queued_bytes;  /* bytes in the ring not yet taken */
    uint64_t tail;
    uint64_t head;
} cap_stats_t;

/* One block taken by cap_take_block. */
typedef struct cap_block {
    uint64_t n_steps;
    uint64_t n_chunks;
    uint64_t first_step;
    int64_t first_now_ns;
    uint64_t lost_before; /* steps dropped just before first_step: journal a GAP first */
    uint64_t payload_len;
} cap_block_t;

struct cap_header;

/* Per-process handle (Python allocates it with ffi.new, so its size is public). */
typedef struct cap_ring {
    struct cap_header *hdr; /* NULL once closed */
    unsigned char *data;
    uint64_t cap;
    uint64_t mask;
    uint32_t mode;
    uint32_t n_outputs;
    uint16_t out_types[CAP_MAX_OUTPUTS];
    uint32_t out_sizes[CAP_MAX_OUTPUTS];
    uint64_t cached_head; /* producer's last view of the consumer */
    uint64_t max_record;  /* bytes: a bigger step is dropped (counted), never wraps */
} cap_ring_t;

/* Bytes a region of this capacity needs, or 0 if the capacity is invalid (not a power of
 * two in [CAP_MIN_CAPACITY, CAP_MAX_CAPACITY]). */
uint64_t cap_region_bytes(uint64_t capacity);

/* Format a fresh region. out_types/out_sizes: the layouts of the component's output arrays in
 * step order (used by cap_put_packets and by DIGEST entries). -EINVAL for a bad shape. */
int cap_init(void *base, uint64_t len, uint64_t capacity, uint32_t mode, uint32_t component,
             uint32_t n_outputs, const uint16_t *out_types, const uint32_t *out_sizes);

/* Validate and attach. -EBADMSG not a capture ring, -EPROTONOSUPPORT another version. */
int cap_open(cap_ring_t *c, void *base, uint64_t len);
void cap_close(cap_ring_t *c);
int cap_stats(const cap_ring_t *c, cap_stats_t *out);

/* Producer: one step whose input is n packets (payload i = payload[offsets[i], +lengths[i]))
 * and whose outputs are the configured output arrays o0..o2 (b0..b2 bytes, whole records of
 * the configured sizes; unused ones 0). Every size is given in bytes so that a wrongly typed
 * array is refused instead of read past its end. Returns 1 recorded, 0 dropped (counted),
 * -EINVAL for arrays of the wrong size or packets outside payload, -EBADF when closed. */
int64_t cap_put_packets(cap_ring_t *c, int64_t now_ns, const void *payload,
                        uint64_t payload_len, const void *offsets, uint64_t offsets_bytes,
                        const void *lengths, uint64_t lengths_bytes, uint64_t n,
                        const void *o0, uint64_t b0, const void *o1, uint64_t b1,
                        const void *o2, uint64_t b2);

/* Producer, any component: the input chunk is given whole (type, count, one or two byte parts:
 * an opaque batch's offsets then its data), then n_out output arrays of any schema type. */
int64_t cap_put(cap_ring_t *c, int64_t now_ns, uint16_t in_type, uint64_t in_count,
                const void *in_a, uint64_t in_na, const void *in_b, uint64_t in_nb,
                uint32_t n_out, const uint16_t *out_types, const uint64_t *out_counts,
                const void *const *out_ptrs, const uint64_t *out_nbytes);

/* Producer: nothing more will be put (the consumer drains, then finishes). */
int cap_producer_close(cap_ring_t *c);

/* Consumer: build one STEP_BLOCK payload in out (at most out_cap bytes) from the oldest
 * records: at most max_steps steps, stopping before a record that follows lost steps (it
 * starts the next block, whose lost_before says how many). Frees their ring space. Returns
 * the payload bytes, 0 when nothing is queued, -ENOBUFS if out_cap cannot hold one record,
 * -EBADMSG for a corrupt record. */
int64_t cap_take_block(cap_ring_t *c, void *out, uint64_t out_cap, uint64_t max_steps,
                       cap_block_t *info);

/* Consumer: n steps taken are now journaled (counters for the producer side). */
int cap_mark_written(cap_ring_t *c, uint64_t n_steps, uint64_t n_blocks);

/* Consumer: ready (its journal is open); the producer may wait for this before its hot loop. */
int cap_consumer_attach(cap_ring_t *c);

/* Consumer: the writer failed with -err (err > 0); the producer drops every later step. */
int cap_set_error(cap_ring_t *c, int64_t err);

/* XXH64 of len bytes (seed 0): the digest DIGEST mode journals, exposed for replay. */
uint64_t cap_xxh64(const void *data, uint64_t len, uint64_t seed);

#endif /* TECTRA_CAPTURE_H */
