/* Sanitizer driver for csrc/capture.c: a producer thread puts steps of random sizes (packets
 * with holes between them, three outputs, some too big for the ring) while a consumer thread
 * takes STEP_BLOCK payloads into a small buffer; every recorded step must come out once, in
 * order, byte for byte, with the steps lost before it. Run under ASAN+UBSAN by
 * tests/csrc/test_capture_sanitizers.py. Prints "capture_sanitize: all checks passed". */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/capture.h"

#define STEPS 20000u
#define CAPACITY (1u << 14)

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static unsigned char *region;
static uint64_t region_len;
static _Atomic int producer_done;
static uint32_t mode_now;

static uint32_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

/* Step k's content is a function of k: the consumer regenerates and compares it. */
static void step_content(uint64_t k, uint8_t *payload, uint32_t *offs, uint32_t *lens,
                         uint64_t *n, uint64_t outs[3][64], uint64_t counts[3]) {
    uint64_t s = k * 0x9E3779B97F4A7C15ull + 1;
    *n = rnd(&s) % 5;
    for (uint64_t i = 0; i < *n; i++) {
        offs[i] = (uint32_t)(i * 512 + rnd(&s) % 16);
        lens[i] = k % 97 == 0 ? 400 : rnd(&s) % 120;
        for (uint32_t b = 0; b < lens[i]; b++) payload[offs[i] + b] = (uint8_t)(k + i + b);
    }
    for (int o = 0; o < 3; o++) {
        counts[o] = rnd(&s) % 4;
        for (uint64_t w = 0; w < counts[o] * 8; w++) outs[o][w] = k * 1000 + (uint64_t)o * 100 + w;
    }
}

static void *producer(void *arg) {
    (void)arg;
    cap_ring_t c;
    CHECK(cap_open(&c, region, region_len) == 0);
    static uint8_t payload[4096];
    uint32_t offs[8], lens[8];
    uint64_t outs[3][64], counts[3], n;
    for (uint64_t k = 1; k <= STEPS; k++) {
        step_content(k, payload, offs, lens, &n, outs, counts);
        int64_t rc = cap_put_packets(&c, (int64_t)k * 10, payload, sizeof payload, offs, 4 * n,
                                     lens, 4 * n, n, outs[0], counts[0] * 64, outs[1],
                                     counts[1] * 64, outs[2], counts[2] * 64);
        CHECK(rc == 0 || rc == 1);
    }
    /* Bad arguments are refused without touching the ring. */
    uint32_t bad_off = 4090, bad_len = 100;
    CHECK(cap_put_packets(&c, 0, payload, sizeof payload, &bad_off, 4, &bad_len, 4, 1, NULL, 0,
                          NULL, 0, NULL, 0) == -EINVAL);
    CHECK(cap_put_packets(&c, 0, payload, sizeof payload, offs, 8, lens, 4, 1, NULL, 0, NULL, 0,
                          NULL, 0) == -EINVAL);
    CHECK(cap_put_packets(&c, 0, payload, 0, NULL, 0, NULL, 0, 0, outs[0], 63, NULL, 0, NULL,
                          0) == -EINVAL);
    CHECK(cap_producer_close(&c) == 0);
    atomic_store(&producer_done, 1);
    return NULL;
}

static void check_block(const unsigned char *b, uint64_t len, uint64_t *next_step,
                        uint64_t *seen, uint64_t lost_before) {
    uint32_t n_steps, n_chunks;
    memcpy(&n_steps, b, 4);
    memcpy(&n_chunks, b + 4, 4);
    const unsigned char *steps = b + 8, *chunks = steps + 24ull * n_steps;
    const unsigned char *data = chunks + 16ull * n_chunks;
    CHECK(data <= b + len);
    static uint8_t payload[4096];
    uint32_t offs[8], lens[8];
    uint64_t outs[3][64], counts[3], n;
    for (uint32_t i = 0; i < n_steps; i++) {
        uint64_t step, first, count;
        int64_t now;
        uint32_t f32, c32;
        memcpy(&step, steps + 24ull * i, 8);
        memcpy(&now, steps + 24ull * i + 8, 8);
        memcpy(&f32, steps + 24ull * i + 16, 4);
        memcpy(&c32, steps + 24ull * i + 20, 4);
        first = f32;
        count = c32;
        CHECK(step >= *next_step);
        if (i == 0) CHECK(step == *next_step + lost_before);
        else CHECK(step == *next_step);
        CHECK(now == (int64_t)step * 10);
        step_content(step, payload, offs, lens, &n, outs, counts);
        /* input chunk: n + 1 offsets then the packets back to back */
        uint16_t type;
        uint32_t cnt;
        uint64_t off;
        memcpy(&type, chunks + 16 * first, 2);
        memcpy(&cnt, chunks + 16 * first + 4, 4);
        memcpy(&off, chunks + 16 * first + 8, 8);
        CHECK(type == CAP_TYPE_RAW_PACKET && cnt == n);
        const unsigned char *in = data + off;
        int64_t o0;
        memcpy(&o0, in, 8);
        CHECK(o0 == 0);
        const unsigned char *bytes = in + 8 * (n + 1);
        for (uint64_t p = 0; p < n; p++) {
            CHECK(memcmp(bytes, payload + offs[p], lens[p]) == 0);
            bytes += lens[p];
        }
        uint64_t nonempty = (counts[0] != 0) + (counts[1] != 0) + (counts[2] != 0);
        if (mode_now == CAP_MODE_FULL) {
            CHECK(count == 1 + nonempty);
            uint64_t at = first + 1;
            for (int o = 0; o < 3; o++) {
                if (!counts[o]) continue;
                memcpy(&cnt, chunks + 16 * at + 4, 4);
                memcpy(&off, chunks + 16 * at + 8, 8);
                CHECK(cnt == counts[o] && memcmp(data + off, outs[o], counts[o] * 64) == 0);
                at++;
            }
        } else {
            CHECK(count == 1 + (nonempty ? 1 : 0));
            if (nonempty) {
                memcpy(&type, chunks + 16 * (first + 1), 2);
                memcpy(&off, chunks + 16 * (first + 1) + 8, 8);
                CHECK(type == CAP_TYPE_OUTPUT_DIGEST);
                const unsigned char *e = data + off;
                for (int o = 0; o < 3; o++) {
                    if (!counts[o]) continue;
                    uint64_t digest;
                    memcpy(&digest, e + 8, 8);
                    CHECK(digest == cap_xxh64(outs[o], counts[o] * 64, 0));
                    e += 16;
                }
            }
        }
        *next_step = step + 1;
        (*seen)++;
    }
}

static void run(uint32_t mode) {
    mode_now = mode;
    region_len = cap_region_bytes(CAPACITY);
    CHECK(region_len != 0 && cap_region_bytes(CAPACITY + 8) == 0);
    region = aligned_alloc(64, region_len);
    CHECK(region != NULL);
    uint16_t types[3] = {0x10, 0x11, 0x12};
    uint32_t sizes[3] = {64, 64, 64};
    CHECK(cap_init(region, region_len, CAPACITY, mode, 9, 3, types, sizes) == 0);
    atomic_store(&producer_done, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, producer, NULL) == 0);
    cap_ring_t c;
    CHECK(cap_open(&c, region, region_len) == 0);
    CHECK(cap_consumer_attach(&c) == 0);
    static unsigned char out[CAPACITY];
    uint64_t next_step = 1, seen = 0, blocks = 0;
    cap_block_t info;
    unsigned char small[64];
    for (;;) {
        int done = atomic_load(&producer_done);
        uint64_t max_steps = 1 + blocks % 9;
        int64_t rc = cap_take_block(&c, out, sizeof out, max_steps, &info);
        CHECK(rc >= 0);
        if (rc > 0) {
            CHECK(info.n_steps <= max_steps && info.payload_len == (uint64_t)rc);
            check_block(out, (uint64_t)rc, &next_step, &seen, info.lost_before);
            CHECK(cap_mark_written(&c, info.n_steps, 1) == 0);
            blocks++;
            if (blocks % 7 == 0) { /* a buffer too small for most records */
                int64_t tiny = cap_take_block(&c, small, sizeof small, 1, &info);
                CHECK(tiny == 0 || tiny == -ENOBUFS || (tiny > 0 && tiny <= 64));
                if (tiny > 0) {
                    check_block(small, (uint64_t)tiny, &next_step, &seen, info.lost_before);
                    CHECK(cap_mark_written(&c, info.n_steps, 1) == 0);
                    blocks++;
                }
            }
        } else if (done) {
            break;
        }
    }
    CHECK(pthread_join(t, NULL) == 0);
    cap_stats_t st;
    CHECK(cap_stats(&c, &st) == 0);
    CHECK(st.steps == STEPS && st.recorded + st.dropped == STEPS && st.recorded == seen);
    CHECK(st.written == seen && st.closed == 1 && st.queued_bytes == 0 && st.attached == 1);
    CHECK(st.dropped > 0); /* the 400-byte packets of every 97th step make some too big */
    CHECK(next_step + st.lost_pending == STEPS + 1);
    CHECK(cap_set_error(&c, 28) == 0);
    CHECK(cap_put_packets(&c, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0, NULL, 0, NULL, 0) == 0);
    cap_close(&c);
    CHECK(cap_stats(&c, &st) == -EBADF);
    printf("capture_sanitize: mode %u: %llu steps recorded, %llu dropped, %llu blocks\n", mode,
           (unsigned long long)seen, (unsigned long long)(STEPS - seen),
           (unsigned long long)blocks);
    free(region);
}

int main(void) {
    CHECK(cap_xxh64("", 0, 0) == 0xEF46DB3751D8E999ull);
    CHECK(cap_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    run(CAP_MODE_FULL);
    run(CAP_MODE_DIGEST);
    printf("capture_sanitize: all checks passed\n");
    return 0;
}
