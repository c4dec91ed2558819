/*
 * Sanitizer driver for csrc/itch.c (built by tests/csrc/test_itch_sanitizers.py with
 * -fsanitize=address,undefined). Every input is copied into a heap buffer of exactly its
 * length and every output array is allocated with exactly out_cap records, so any read past
 * the input or write past out_cap is an ASAN report. For each input file given on the command
 * line it decodes: whole; every prefix (small files) or many random prefixes; under many
 * random byte mutations; with tiny output capacities resumed call by call; as random blocks.
 * It checks the accounting invariants on every call and exits non-zero on the first failure.
 */
#define _GNU_SOURCE
#include "../../csrc/itch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "itch_sanitize: %s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                                  \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static const itch_header_t HDR = {.type_id = 0x13, .version = 1, .flags = 0};

static uint64_t total_calls, total_messages;

/* One itch_decode over an exact-size copy of buf[0..len), with exactly `cap` output slots. */
static void decode_once(const uint8_t *src, uint64_t len, uint64_t cap, uint32_t flags,
                        uint64_t *consumed_out, uint64_t *messages_out)
{
    uint8_t *buf = len ? malloc(len) : NULL;
    if (len)
        memcpy(buf, src, len);
    itch_event_t *out = cap ? malloc(cap * sizeof *out) : NULL;
    CHECK(!len || buf, "malloc");
    CHECK(!cap || out, "malloc");
    itch_stats_t st;
    memset(&st, 0, sizeof st);
    uint64_t consumed = 0, next_seq = 0;
    const int64_t n =
        itch_decode(&HDR, buf, len, 100, 7, flags, out, cap, &st, &consumed, &next_seq);
    CHECK(n >= 0 && (uint64_t)n <= cap, "n=%lld cap=%llu", (long long)n, (unsigned long long)cap);
    CHECK(consumed <= len, "consumed %llu > len %llu", (unsigned long long)consumed,
          (unsigned long long)len);
    CHECK(consumed == st.bytes + st.bytes_skipped + st.bytes_dropped, "accounting");
    CHECK(st.messages == (uint64_t)n, "messages");
    CHECK(next_seq - 100 == st.messages + st.unknown_type, "seq");
    uint64_t by_type = 0;
    for (int t = 0; t < 256; t++)
        by_type += st.by_type[t];
    CHECK(by_type == st.messages, "by_type");
    if (!(flags & ITCH_F_PARTIAL_TAIL) && (uint64_t)n < cap)
        CHECK(consumed == len, "stopped early with room left");
    for (int64_t i = 0; i < n; i++) {
        const itch_event_t *e = &out[i];
        CHECK(e->raw_len == itch_message_length(e->msg_type), "raw_len");
        CHECK(e->raw[0] == e->msg_type, "raw[0]");
        CHECK(e->exch_ts_ns >= 0 && e->exch_ts_ns < (1ll << 48), "timestamp");
        for (unsigned k = e->raw_len; k < ITCH_RAW_CAP; k++)
            CHECK(e->raw[k] == 0, "raw padding");
        CHECK(e->seq >= 100 && e->ts_ns == 7 && e->type_id == 0x13, "header");
    }
    total_calls++;
    total_messages += (uint64_t)n;
    if (consumed_out)
        *consumed_out = consumed;
    if (messages_out)
        *messages_out = (uint64_t)n;
    free(out);
    free(buf);
}

/* Decode with a tiny capacity, resuming after each call; the total must match one call. */
static void decode_resumed(const uint8_t *src, uint64_t len, uint64_t cap)
{
    uint64_t want = 0, got = 0, pos = 0;
    decode_once(src, len, len / ITCH_MIN_FRAMED + 1, 0, NULL, &want);
    for (uint64_t calls = 0; pos < len; calls++) {
        uint64_t consumed = 0, n = 0;
        decode_once(src + pos, len - pos, cap, 0, &consumed, &n);
        got += n;
        pos += consumed;
        CHECK(calls <= len + 1, "no progress");
    }
    CHECK(got == want, "resumed %llu != whole %llu", (unsigned long long)got,
          (unsigned long long)want);
}

static void decode_blocks_random(const uint8_t *src, uint64_t len)
{
    enum { MAXB = 16 };
    uint64_t offsets[MAXB], lengths[MAXB], seqs[MAXB];
    int64_t recv[MAXB];
    const uint64_t nb = 1 + rnd() % MAXB;
    for (uint64_t k = 0; k < nb; k++) {
        offsets[k] = len ? rnd() % (len + 1) : 0;
        lengths[k] = len - offsets[k] ? rnd() % (len - offsets[k] + 1) : 0;
        seqs[k] = rnd();
        recv[k] = (int64_t)k;
    }
    uint8_t *buf = malloc(len + 1); /* +1: malloc(0) may return NULL */
    CHECK(buf, "malloc");
    memcpy(buf, src, len);
    const uint64_t cap = 1 + rnd() % 8;
    itch_event_t *out = malloc(cap * sizeof *out);
    CHECK(out, "malloc");
    itch_stats_t st;
    memset(&st, 0, sizeof st);
    itch_cursor_t cur = {0, 0, 0};
    uint64_t total_len = 0;
    for (uint64_t k = 0; k < nb; k++)
        total_len += lengths[k];
    for (uint64_t calls = 0; cur.block < nb; calls++) {
        const int64_t n = itch_decode_blocks(&HDR, buf, len, offsets, lengths, seqs, recv, nb,
                                             out, cap, &st, &cur);
        CHECK(n >= 0 && (uint64_t)n <= cap, "blocks n=%lld", (long long)n);
        CHECK(calls <= total_len + nb + 1, "blocks: no progress");
    }
    CHECK(st.blocks == nb, "blocks counted");
    CHECK(st.bytes + st.bytes_skipped + st.bytes_dropped == total_len, "blocks accounting");
    /* A block reaching past the buffer is refused whole. */
    lengths[0] = len - offsets[0] + 1;
    cur.block = cur.offset = 0;
    CHECK(itch_decode_blocks(&HDR, buf, len, offsets, lengths, seqs, recv, nb, out, cap, &st,
                             &cur) == -ERANGE,
          "ERANGE");
    free(out);
    free(buf);
}

static uint8_t *read_file(const char *path, uint64_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size + 1);
    CHECK(data, "malloc");
    CHECK(fread(data, 1, (size_t)size, f) == (size_t)size, "short read %s", path);
    fclose(f);
    *len = (uint64_t)size;
    return data;
}

/* A window of at most 4 KiB (anywhere, so often starting mid-message) keeps the per-call
 * exact-size copies cheap under ASAN while still covering the whole of a big file. */
static const uint8_t *window(const uint8_t *data, uint64_t len, uint64_t *wlen)
{
    const uint64_t max = 4096;
    if (len <= max) {
        *wlen = len;
        return data;
    }
    const uint64_t start = rnd() % (len - max + 1);
    *wlen = max;
    return data + start;
}

static void exercise(const char *path)
{
    uint64_t len = 0;
    uint8_t *data = read_file(path, &len);
    const uint64_t full_cap = len / ITCH_MIN_FRAMED + 1;

    decode_once(data, len, full_cap, 0, NULL, NULL);
    decode_once(data, len, full_cap, ITCH_F_PARTIAL_TAIL, NULL, NULL);
    decode_once(data, len, 0, 0, NULL, NULL);

    /* Prefixes: every one for small inputs, a random sample for big ones. */
    if (len <= 2048) {
        for (uint64_t cut = 0; cut <= len; cut++)
            decode_once(data, cut, cut / ITCH_MIN_FRAMED + 1, (uint32_t)(cut & 1), NULL, NULL);
    } else {
        for (int i = 0; i < 32; i++) {
            const uint64_t cut = rnd() % (len + 1);
            decode_once(data, cut, cut / ITCH_MIN_FRAMED + 1, (uint32_t)(cut & 1), NULL, NULL);
        }
    }

    /* Random mutations of a private copy of a window. */
    uint8_t *mut = malloc(4096 + 1);
    CHECK(mut, "malloc");
    for (int round = 0; round < 2000 && len; round++) {
        uint64_t wlen = 0;
        const uint8_t *w = window(data, len, &wlen);
        memcpy(mut, w, wlen);
        const int edits = 1 + (int)(rnd() % 6);
        for (int e = 0; e < edits; e++)
            mut[rnd() % wlen] = (uint8_t)rnd();
        const uint64_t cut = wlen - rnd() % (wlen < 64 ? wlen + 1 : 64);
        decode_once(mut, cut, cut / ITCH_MIN_FRAMED + 1, (uint32_t)(rnd() & 1), NULL, NULL);
        if (round % 20 == 0) {
            decode_resumed(mut, cut, 1 + rnd() % 5);
            decode_blocks_random(mut, cut);
        }
    }
    for (int i = 0; i < 20; i++) {
        uint64_t wlen = 0;
        const uint8_t *w = window(data, len, &wlen);
        decode_resumed(w, wlen, 1 + (uint64_t)i % 3);
        decode_blocks_random(w, wlen);
    }
    free(mut);
    free(data);
    printf("itch_sanitize: %s ok (%llu bytes)\n", path, (unsigned long long)len);
}

int main(int argc, char **argv)
{
    CHECK(argc > 1, "usage: itch_sanitize FILE...");
    /* Pure noise as well: random buffers of random sizes. */
    uint8_t noise[4096];
    for (int round = 0; round < 3000; round++) {
        const uint64_t len = rnd() % sizeof noise;
        for (uint64_t i = 0; i < len; i++)
            noise[i] = (uint8_t)rnd();
        if (round & 1) /* plausible prefixes: small big-endian lengths */
            for (uint64_t i = 0; i + 1 < len; i += 2 + rnd() % 52)
                noise[i] = 0;
        decode_once(noise, len, len / ITCH_MIN_FRAMED + 1, (uint32_t)(round & 2) >> 1, NULL,
                    NULL);
    }
    /* NULL handling. */
    itch_stats_t st;
    uint64_t c, s;
    CHECK(itch_decode(NULL, NULL, 0, 0, 0, 0, NULL, 0, &st, &c, &s) == -EINVAL, "EINVAL hdr");
    CHECK(itch_decode(&HDR, NULL, 5, 0, 0, 0, NULL, 0, &st, &c, &s) == -EINVAL, "EINVAL buf");
    for (int i = 1; i < argc; i++)
        exercise(argv[i]);
    printf("itch_sanitize: %llu calls, %llu messages\n", (unsigned long long)total_calls,
           (unsigned long long)total_messages);
    printf("itch_sanitize: all checks passed\n");
    return 0;
}
