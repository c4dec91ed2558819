/* Tectra capture ring (see capture.h for the layout and the contract). */
#include "capture.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release

struct cap_header {
    /* [0, 128): configuration, written once by cap_init. */
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t capacity;
    uint32_t mode;
    uint32_t component;
    uint32_t n_outputs;
    uint32_t reserved0;
    uint16_t out_types[CAP_MAX_OUTPUTS];
    uint32_t out_sizes[CAP_MAX_OUTPUTS];
    unsigned char pad0[128 - 40 - 2 * CAP_MAX_OUTPUTS - 4 * CAP_MAX_OUTPUTS];
    /* [128, 256): written by the producer only. */
    _Atomic uint64_t tail;
    _Atomic uint64_t steps;
    _Atomic uint64_t recorded;
    _Atomic uint64_t dropped;
    _Atomic uint64_t gaps;
    _Atomic uint64_t lost_pending;
    _Atomic int64_t last_now_ns;
    _Atomic uint64_t closed;
    unsigned char pad1[64];
    /* [256, 384): written by the consumer only. */
    _Atomic uint64_t head;
    _Atomic uint64_t written;
    _Atomic uint64_t blocks;
    _Atomic int64_t error;
    _Atomic uint64_t attached;
    unsigned char pad2[88];
    unsigned char pad3[128];
};

_Static_assert(sizeof(struct cap_header) == CAP_HEADER_SIZE, "header is 512 bytes");
_Static_assert(offsetof(struct cap_header, tail) == 128, "producer line at 128");
_Static_assert(offsetof(struct cap_header, head) == 256, "consumer line at 256");

static inline uint64_t pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

static inline uint64_t load(_Atomic uint64_t *p) { return atomic_load_explicit(p, RELAXED); }

/* Single-writer counters: a relaxed load and store, no read-modify-write needed. */
static inline void bump(_Atomic uint64_t *p, uint64_t n) {
    atomic_store_explicit(p, atomic_load_explicit(p, RELAXED) + n, RELAXED);
}

static inline uint64_t rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t rd32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ------------------------------------------------------------------ XXH64 (reference spec) */

#define XP1 11400714785074694791ull
#define XP2 14029467366897019727ull
#define XP3 1609587929392839161ull
#define XP4 9650029242287828579ull
#define XP5 2870177450012600261ull

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t xround(uint64_t acc, uint64_t in) {
    acc += in * XP2;
    acc = rotl64(acc, 31);
    return acc * XP1;
}

static inline uint64_t xmerge(uint64_t acc, uint64_t val) {
    acc ^= xround(0, val);
    return acc * XP1 + XP4;
}

uint64_t cap_xxh64(const void *data, uint64_t len, uint64_t seed) {
    const unsigned char *p = data;
    const unsigned char *end = p + len;
    uint64_t h;
    if (len >= 32) {
        const unsigned char *limit = end - 32;
        uint64_t v1 = seed + XP1 + XP2, v2 = seed + XP2, v3 = seed, v4 = seed - XP1;
        do {
            v1 = xround(v1, rd64(p));
            v2 = xround(v2, rd64(p + 8));
            v3 = xround(v3, rd64(p + 16));
            v4 = xround(v4, rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xmerge(h, v1);
        h = xmerge(h, v2);
        h = xmerge(h, v3);
        h = xmerge(h, v4);
    } else {
        h = seed + XP5;
    }
    h += len;
    while (p + 8 <= end) {
        h ^= xround(0, rd64(p));
        h = rotl64(h, 27) * XP1 + XP4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)rd32(p) * XP1;
        h = rotl64(h, 23) * XP2 + XP3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * XP5;
        h = rotl64(h, 11) * XP1;
        p++;
    }
    h ^= h >> 33;
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    h ^= h >> 32;
    return h;
}

/* ------------------------------------------------------------------ region */

uint64_t cap_region_bytes(uint64_t capacity) {
    if (capacity < CAP_MIN_CAPACITY || capacity > CAP_MAX_CAPACITY) return 0;
    if (capacity & (capacity - 1)) return 0;
    return CAP_HEADER_SIZE + capacity;
}

int cap_init(void *base, uint64_t len, uint64_t capacity, uint32_t mode, uint32_t component,
             uint32_t n_outputs, const uint16_t *out_types, const uint32_t *out_sizes) {
    uint64_t need = cap_region_bytes(capacity);
    if (base == NULL || need == 0 || mode > CAP_MODE_DIGEST || n_outputs > CAP_MAX_OUTPUTS)
        return -EINVAL;
    if (n_outputs && (out_types == NULL || out_sizes == NULL)) return -EINVAL;
    if (len < need) return -ENOSPC;
    for (uint32_t i = 0; i < n_outputs; i++)
        if (out_sizes[i] == 0 || out_sizes[i] % 8u != 0 || out_types[i] == 0) return -EINVAL;
    struct cap_header *h = base;
    memset(h, 0, sizeof(*h));
    h->layout_version = CAP_LAYOUT_VERSION;
    h->header_size = CAP_HEADER_SIZE;
    h->capacity = capacity;
    h->mode = mode;
    h->component = component;
    h->n_outputs = n_outputs;
    for (uint32_t i = 0; i < n_outputs; i++) {
        h->out_types[i] = out_types[i];
        h->out_sizes[i] = out_sizes[i];
    }
    atomic_thread_fence(RELEASE);
    h->magic = CAP_MAGIC;
    return 0;
}

int cap_open(cap_ring_t *c, void *base, uint64_t len) {
    if (c == NULL || base == NULL || len < CAP_HEADER_SIZE) return -EINVAL;
    memset(c, 0, sizeof(*c));
    struct cap_header *h = base;
    if (h->magic != CAP_MAGIC) return -EBADMSG;
    atomic_thread_fence(ACQUIRE);
    if (h->layout_version != CAP_LAYOUT_VERSION) return -EPROTONOSUPPORT;
    if (h->header_size != CAP_HEADER_SIZE || cap_region_bytes(h->capacity) == 0 ||
        len < cap_region_bytes(h->capacity) || h->mode > CAP_MODE_DIGEST ||
        h->n_outputs > CAP_MAX_OUTPUTS)
        return -EBADMSG;
    c->hdr = h;
    c->data = (unsigned char *)base + CAP_HEADER_SIZE;
    c->cap = h->capacity;
    c->mask = h->capacity - 1;
    c->mode = h->mode;
    c->n_outputs = h->n_outputs;
    for (uint32_t i = 0; i < h->n_outputs; i++) {
        c->out_types[i] = h->out_types[i];
        c->out_sizes[i] = h->out_sizes[i];
    }
    c->cached_head = atomic_load_explicit(&h->head, ACQUIRE);
    c->max_record = h->capacity / 4;
    return 0;
}

void cap_close(cap_ring_t *c) {
    if (c != NULL) c->hdr = NULL;
}

int cap_stats(const cap_ring_t *c, cap_stats_t *out) {
    if (c == NULL || c->hdr == NULL) return -EBADF;
    if (out == NULL) return -EINVAL;
    struct cap_header *h = c->hdr;
    out->capacity = h->capacity;
    out->mode = h->mode;
    out->component = h->component;
    out->head = atomic_load_explicit(&h->head, ACQUIRE);
    out->tail = atomic_load_explicit(&h->tail, ACQUIRE);
    out->steps = load(&h->steps);
    out->recorded = load(&h->recorded);
    out->dropped = load(&h->dropped);
    out->gaps = load(&h->gaps);
    out->lost_pending = load(&h->lost_pending);
    out->last_now_ns = atomic_load_explicit(&h->last_now_ns, RELAXED);
    out->closed = atomic_load_explicit(&h->closed, ACQUIRE);
    out->written = load(&h->written);
    out->blocks = load(&h->blocks);
    out->error = atomic_load_explicit(&h->error, RELAXED);
    out->attached = atomic_load_explicit(&h->attached, ACQUIRE);
    out->queued_bytes = out->tail >= out->head ? out->tail - out->head : 0;
    return 0;
}

/* ------------------------------------------------------------------ producer */

static int64_t drop_step(cap_ring_t *c, int64_t now_ns) {
    struct cap_header *h = c->hdr;
    bump(&h->steps, 1);
    bump(&h->dropped, 1);
    if (load(&h->lost_pending) == 0) bump(&h->gaps, 1);
    bump(&h->lost_pending, 1);
    atomic_store_explicit(&h->last_now_ns, now_ns, RELAXED);
    return 0;
}

/* Room for a record of `need` bytes at the tail (after a pad record to the end of the data
 * area if it would not fit before it); NULL when the ring is too full. */
static unsigned char *reserve(cap_ring_t *c, uint64_t need, uint64_t *at) {
    struct cap_header *h = c->hdr;
    uint64_t tail = load(&h->tail);
    uint64_t to_end = c->cap - (tail & c->mask);
    uint64_t total = need > to_end ? to_end + need : need;
    if (tail + total - c->cached_head > c->cap) {
        c->cached_head = atomic_load_explicit(&h->head, ACQUIRE);
        if (tail + total - c->cached_head > c->cap) return NULL;
    }
    if (need > to_end) {
        unsigned char *pad = c->data + (tail & c->mask);
        uint32_t len = (uint32_t)to_end, mark = CAP_PAD;
        memcpy(pad, &len, 4);
        memcpy(pad + 4, &mark, 4);
        tail += to_end;
    }
    *at = tail;
    return c->data + (tail & c->mask);
}

/* Fill the record head; steps/recorded/lost_pending move on. */
static unsigned char *record_head(cap_ring_t *c, unsigned char *p, uint64_t rec_len,
                                  uint32_t n_chunks, int64_t now_ns) {
    struct cap_header *h = c->hdr;
    uint64_t step = load(&h->steps) + 1;
    uint64_t lost = load(&h->lost_pending);
    uint32_t len32 = (uint32_t)rec_len;
    memcpy(p, &len32, 4);
    memcpy(p + 4, &n_chunks, 4);
    memcpy(p + 8, &step, 8);
    memcpy(p + 16, &now_ns, 8);
    memcpy(p + 24, &lost, 8);
    return p + CAP_RECORD_HEAD;
}

static void commit(cap_ring_t *c, uint64_t at, uint64_t rec_len, int64_t now_ns) {
    struct cap_header *h = c->hdr;
    bump(&h->steps, 1);
    bump(&h->recorded, 1);
    atomic_store_explicit(&h->lost_pending, 0, RELAXED);
    atomic_store_explicit(&h->last_now_ns, now_ns, RELAXED);
    atomic_store_explicit(&h->tail, at + rec_len, RELEASE);
}

static unsigned char *chunk_head(unsigned char *p, uint16_t type, uint8_t kind, uint32_t count,
                                 uint64_t nbytes) {
    uint8_t reserved = 0;
    memcpy(p, &type, 2);
    memcpy(p + 2, &kind, 1);
    memcpy(p + 3, &reserved, 1);
    memcpy(p + 4, &count, 4);
    memcpy(p + 8, &nbytes, 8);
    return p + CAP_CHUNK_HEAD;
}

static unsigned char *zero_pad(unsigned char *p, uint64_t nbytes) {
    uint64_t pad = pad8(nbytes) - nbytes;
    if (pad) memset(p, 0, pad);
    return p + pad;
}

/* One output batch: configured or given type, records, bytes. */
typedef struct out_desc {
    uint16_t type;
    uint64_t count;
    const void *ptr;
    uint64_t nbytes;
} out_desc_t;

static uint64_t outputs_bytes(const cap_ring_t *c, const out_desc_t *outs, uint32_t n,
                              uint32_t *chunks) {
    uint64_t bytes = 0;
    uint32_t nonempty = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (!outs[k].count) continue;
        nonempty++;
        if (c->mode == CAP_MODE_FULL) bytes += CAP_CHUNK_HEAD + pad8(outs[k].nbytes);
    }
    if (c->mode == CAP_MODE_DIGEST) {
        *chunks = nonempty ? 1 : 0;
        return nonempty ? CAP_CHUNK_HEAD + (uint64_t)nonempty * CAP_DIGEST_ENTRY : 0;
    }
    *chunks = nonempty;
    return bytes;
}

static unsigned char *write_outputs(const cap_ring_t *c, unsigned char *p, const out_desc_t *outs,
                                    uint32_t n) {
    if (c->mode == CAP_MODE_DIGEST) {
        uint32_t nonempty = 0;
        for (uint32_t k = 0; k < n; k++) nonempty += outs[k].count ? 1 : 0;
        if (!nonempty) return p;
        p = chunk_head(p, CAP_TYPE_OUTPUT_DIGEST, CAP_KIND_OUTPUT, nonempty,
                       (uint64_t)nonempty * CAP_DIGEST_ENTRY);
        for (uint32_t k = 0; k < n; k++) {
            if (!outs[k].count) continue;
            uint16_t reserved = 0;
            uint32_t count = (uint32_t)outs[k].count;
            uint64_t digest = cap_xxh64(outs[k].ptr, outs[k].nbytes, 0);
            memcpy(p, &outs[k].type, 2);
            memcpy(p + 2, &reserved, 2);
            memcpy(p + 4, &count, 4);
            memcpy(p + 8, &digest, 8);
            p += CAP_DIGEST_ENTRY;
        }
        return p;
    }
    for (uint32_t k = 0; k < n; k++) {
        if (!outs[k].count) continue;
        p = chunk_head(p, outs[k].type, CAP_KIND_OUTPUT, (uint32_t)outs[k].count, outs[k].nbytes);
        memcpy(p, outs[k].ptr, outs[k].nbytes);
        p = zero_pad(p + outs[k].nbytes, outs[k].nbytes);
    }
    return p;
}

int64_t cap_put_packets(cap_ring_t *c, int64_t now_ns, const void *payload_v,
                        uint64_t payload_len, const void *offsets_v, uint64_t offsets_bytes,
                        const void *lengths_v, uint64_t lengths_bytes, uint64_t n,
                        const void *o0, uint64_t b0, const void *o1, uint64_t b1,
                        const void *o2, uint64_t b2) {
    const uint8_t *payload = payload_v;
    const uint32_t *offsets = offsets_v, *lengths = lengths_v;
    if (c == NULL || c->hdr == NULL) return -EBADF;
    if (offsets_bytes != 4 * n || lengths_bytes != 4 * n) return -EINVAL;
    if (n && (payload == NULL || offsets == NULL || lengths == NULL)) return -EINVAL;
    uint64_t in_bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t end = (uint64_t)offsets[i] + lengths[i];
        if (end > payload_len) return -EINVAL;
        in_bytes += lengths[i];
    }
    out_desc_t outs[3] = {{0, 0, o0, b0}, {0, 0, o1, b1}, {0, 0, o2, b2}};
    for (uint32_t k = 0; k < 3; k++) {
        if (!outs[k].nbytes) continue;
        if (k >= c->n_outputs || outs[k].ptr == NULL || outs[k].nbytes % c->out_sizes[k])
            return -EINVAL;
        outs[k].type = c->out_types[k];
        outs[k].count = outs[k].nbytes / c->out_sizes[k];
        if (outs[k].count > UINT32_MAX) return -EINVAL;
    }
    struct cap_header *h = c->hdr;
    if (atomic_load_explicit(&h->error, RELAXED) != 0 || n > UINT32_MAX)
        return drop_step(c, now_ns);
    uint32_t out_chunks = 0;
    uint64_t in_chunk = 8 * (n + 1) + in_bytes;
    uint64_t rec_len = CAP_RECORD_HEAD + CAP_CHUNK_HEAD + pad8(in_chunk) +
                       outputs_bytes(c, outs, 3, &out_chunks);
    uint64_t at;
    unsigned char *p;
    if (rec_len > c->max_record || (p = reserve(c, rec_len, &at)) == NULL)
        return drop_step(c, now_ns);
    p = record_head(c, p, rec_len, 1 + out_chunks, now_ns);
    p = chunk_head(p, CAP_TYPE_RAW_PACKET, CAP_KIND_INPUT, (uint32_t)n, in_chunk);
    int64_t off = 0;
    memcpy(p, &off, 8);
    p += 8;
    for (uint64_t i = 0; i < n; i++) {
        off += lengths[i];
        memcpy(p, &off, 8);
        p += 8;
    }
    for (uint64_t i = 0; i < n; i++) {
        memcpy(p, payload + offsets[i], lengths[i]);
        p += lengths[i];
    }
    p = zero_pad(p, in_chunk);
    write_outputs(c, p, outs, 3);
    commit(c, at, rec_len, now_ns);
    return 1;
}

int64_t cap_put(cap_ring_t *c, int64_t now_ns, uint16_t in_type, uint64_t in_count,
                const void *in_a, uint64_t in_na, const void *in_b, uint64_t in_nb,
                uint32_t n_out, const uint16_t *out_types, const uint64_t *out_counts,
                const void *const *out_ptrs, const uint64_t *out_nbytes) {
    if (c == NULL || c->hdr == NULL) return -EBADF;
    if (n_out > CAP_MAX_OUTPUTS || in_type == 0 || in_count > UINT32_MAX) return -EINVAL;
    if ((in_na && in_a == NULL) || (in_nb && in_b == NULL)) return -EINVAL;
    if (n_out && (out_types == NULL || out_counts == NULL || out_ptrs == NULL ||
                  out_nbytes == NULL))
        return -EINVAL;
    out_desc_t outs[CAP_MAX_OUTPUTS];
    for (uint32_t k = 0; k < n_out; k++) {
        outs[k] = (out_desc_t){out_types[k], out_counts[k], out_ptrs[k], out_nbytes[k]};
        if (outs[k].count && (outs[k].ptr == NULL || outs[k].type == 0 ||
                              outs[k].count > UINT32_MAX || outs[k].nbytes == 0))
            return -EINVAL;
    }
    if (atomic_load_explicit(&c->hdr->error, RELAXED) != 0) return drop_step(c, now_ns);
    uint32_t out_chunks = 0;
    uint64_t in_chunk = in_na + in_nb;
    uint64_t rec_len = CAP_RECORD_HEAD + CAP_CHUNK_HEAD + pad8(in_chunk) +
                       outputs_bytes(c, outs, n_out, &out_chunks);
    uint64_t at;
    unsigned char *p;
    if (rec_len > c->max_record || (p = reserve(c, rec_len, &at)) == NULL)
        return drop_step(c, now_ns);
    p = record_head(c, p, rec_len, 1 + out_chunks, now_ns);
    p = chunk_head(p, in_type, CAP_KIND_INPUT, (uint32_t)in_count, in_chunk);
    if (in_na) memcpy(p, in_a, in_na);
    if (in_nb) memcpy(p + in_na, in_b, in_nb);
    p = zero_pad(p + in_chunk, in_chunk);
    write_outputs(c, p, outs, n_out);
    commit(c, at, rec_len, now_ns);
    return 1;
}

int cap_producer_close(cap_ring_t *c) {
    if (c == NULL || c->hdr == NULL) return -EBADF;
    atomic_store_explicit(&c->hdr->closed, 1, RELEASE);
    return 0;
}

/* ------------------------------------------------------------------ consumer */

/* Check one record at data offset `off` of `rec_len` bytes: its chunks fit it exactly. */
static int check_record(const unsigned char *rec, uint64_t rec_len, uint32_t n_chunks,
                        uint64_t *data_bytes) {
    uint64_t pos = CAP_RECORD_HEAD, data = 0;
    if (n_chunks == 0) return -EBADMSG;
    for (uint32_t k = 0; k < n_chunks; k++) {
        if (pos + CAP_CHUNK_HEAD > rec_len) return -EBADMSG;
        uint64_t nbytes = rd64(rec + pos + 8);
        if (nbytes > rec_len || pos + CAP_CHUNK_HEAD + pad8(nbytes) > rec_len) return -EBADMSG;
        uint8_t kind = rec[pos + 2];
        if ((k == 0) != (kind == CAP_KIND_INPUT) || (k && kind != CAP_KIND_OUTPUT))
            return -EBADMSG;
        pos += CAP_CHUNK_HEAD + pad8(nbytes);
        data += pad8(nbytes);
    }
    if (pos != rec_len) return -EBADMSG;
    *data_bytes = data;
    return 0;
}

int64_t cap_take_block(cap_ring_t *c, void *out, uint64_t out_cap, uint64_t max_steps,
                       cap_block_t *info) {
    if (c == NULL || c->hdr == NULL) return -EBADF;
    if (out == NULL || info == NULL || max_steps == 0) return -EINVAL;
    struct cap_header *h = c->hdr;
    memset(info, 0, sizeof(*info));
    uint64_t head = load(&h->head);
    uint64_t tail = atomic_load_explicit(&h->tail, ACQUIRE);
    uint64_t pos = head, end = head, n_steps = 0, n_chunks = 0, data = 0;
    /* Pass 1: which records fit, and how big the tables are. */
    while (pos < tail && n_steps < max_steps) {
        uint64_t off = pos & c->mask;
        const unsigned char *rec = c->data + off;
        if (tail - pos < 8) return -EBADMSG;
        uint64_t rec_len = rd32(rec);
        uint32_t nch = rd32(rec + 4);
        if (rec_len < 8 || rec_len % 8 || off + rec_len > c->cap || pos + rec_len > tail)
            return -EBADMSG;
        if (nch == CAP_PAD) {
            pos += rec_len;
            if (!n_steps) end = head = pos; /* nothing taken yet: the pad is simply freed */
            continue;
        }
        if (rec_len < CAP_RECORD_HEAD) return -EBADMSG;
        uint64_t lost = rd64(rec + 24), rec_data;
        if (n_steps && lost) break; /* a gap starts the next block */
        if (check_record(rec, rec_len, nch, &rec_data) < 0) return -EBADMSG;
        uint64_t size = CAP_BLOCK_HEAD + (n_steps + 1) * CAP_BLOCK_STEP +
                        (n_chunks + nch) * CAP_BLOCK_CHUNK + data + rec_data;
        if (size > out_cap) {
            if (!n_steps) return -ENOBUFS;
            break;
        }
        if (!n_steps) {
            info->first_step = rd64(rec + 8);
            memcpy(&info->first_now_ns, rec + 16, 8);
            info->lost_before = lost;
        }
        n_steps++;
        n_chunks += nch;
        data += rec_data;
        pos += rec_len;
        end = pos;
    }
    if (!n_steps) {
        atomic_store_explicit(&h->head, head, RELEASE);
        return 0;
    }
    /* Pass 2: the STEP_BLOCK payload (head, step table, chunk table, data). */
    unsigned char *o = out;
    unsigned char *steps = o + CAP_BLOCK_HEAD;
    unsigned char *chunks = steps + n_steps * CAP_BLOCK_STEP;
    unsigned char *dst = chunks + n_chunks * CAP_BLOCK_CHUNK;
    uint32_t ns32 = (uint32_t)n_steps, nc32 = (uint32_t)n_chunks;
    memcpy(o, &ns32, 4);
    memcpy(o + 4, &nc32, 4);
    uint64_t data_off = 0;
    uint32_t chunk_at = 0;
    for (pos = head; pos < end;) {
        const unsigned char *rec = c->data + (pos & c->mask);
        uint64_t rec_len = rd32(rec);
        uint32_t nch = rd32(rec + 4);
        pos += rec_len;
        if (nch == CAP_PAD) continue;
        memcpy(steps, rec + 8, 16); /* step, now_ns */
        memcpy(steps + 16, &chunk_at, 4);
        memcpy(steps + 20, &nch, 4);
        steps += CAP_BLOCK_STEP;
        const unsigned char *q = rec + CAP_RECORD_HEAD;
        for (uint32_t k = 0; k < nch; k++) {
            uint64_t nbytes = rd64(q + 8);
            memcpy(chunks, q, 8); /* type, kind, reserved, count */
            memcpy(chunks + 8, &data_off, 8);
            chunks += CAP_BLOCK_CHUNK;
            memcpy(dst, q + CAP_CHUNK_HEAD, pad8(nbytes));
            dst += pad8(nbytes);
            data_off += pad8(nbytes);
            q += CAP_CHUNK_HEAD + pad8(nbytes);
        }
        chunk_at += nch;
    }
    atomic_store_explicit(&h->head, end, RELEASE);
    info->n_steps = n_steps;
    info->n_chunks = n_chunks;
    info->payload_len = (uint64_t)(dst - o);
    return (int64_t)info->payload_len;
}

int cap_mark_written(cap_ring_t *c, uint64_t n_steps, uint64_t n_blocks) {
    if (c == NULL || c->hdr == NULL) return -EBADF;
    bump(&c->hdr->written, n_steps);
    bump(&c->hdr->blocks, n_blocks);
    return 0;
}

int cap_consumer_attach(cap_ring_t *c) {
    if (c == NULL || c->hdr == NULL) return -EBADF;
    atomic_store_explicit(&c->hdr->attached, 1, RELEASE);
    return 0;
}

int cap_set_error(cap_ring_t *c, int64_t err) {
    if (c == NULL || c->hdr == NULL) return -EBADF;
    if (err <= 0) return -EINVAL;
    atomic_store_explicit(&c->hdr->error, -err, RELAXED);
    return 0;
}
