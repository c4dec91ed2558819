/*
 * Sanitizer driver for csrc/ring.c (built by tests/csrc/test_ring_sanitizers.py with
 * -fsanitize=address,undefined). Exercises all four ring variants with real concurrency:
 * threads over an anonymous shared mapping, and fork()ed producers over a real /dev/shm file.
 * Every record carries a checksum; consumers verify contents, order, exactly-once delivery
 * (backpressure) and exact loss accounting (overwrite). Exits non-zero on the first mismatch.
 */
#define _GNU_SOURCE
#include "../../csrc/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "ring_sanitize: %s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                                  \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            fflush(stderr);                                                                  \
            _exit(1);                                                                        \
        }                                                                                    \
    } while (0)

/* A 64-byte record: which producer, its sequence number, payload and a checksum of all. */
typedef struct rec {
    uint64_t seq;
    uint64_t src;
    uint64_t payload[5];
    uint64_t check;
} rec_t;
_Static_assert(sizeof(rec_t) == 64, "64-byte records");

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t checksum(const rec_t *r)
{
    uint64_t c = mix(r->seq) ^ mix(r->src + 1000);
    for (int i = 0; i < 5; i++)
        c = mix(c ^ r->payload[i]);
    return c;
}

static void make_rec(rec_t *r, uint64_t src, uint64_t seq)
{
    r->seq = seq;
    r->src = src;
    for (int i = 0; i < 5; i++)
        r->payload[i] = mix((seq << 8) ^ (src << 4) ^ (uint64_t)i);
    r->check = checksum(r);
}

static void verify_rec(const rec_t *r)
{
    CHECK(r->check == checksum(r), "torn or corrupt record src=%llu seq=%llu",
          (unsigned long long)r->src, (unsigned long long)r->seq);
}

/* Deterministic batch sizes in [1, hi]. */
static uint64_t next_size(uint64_t *state, uint64_t hi)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return 1 + (*state >> 33) % hi;
}

typedef struct region {
    void *base;
    uint64_t len;
} region_t;

static region_t anon_ring(uint64_t cap, uint32_t kind, uint32_t policy)
{
    uint64_t len = tr_ring_bytes(cap, sizeof(rec_t));
    CHECK(len != 0, "bad shape");
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(base != MAP_FAILED, "mmap: %s", strerror(errno));
    CHECK(tr_ring_init(base, len, sizeof(rec_t), cap, kind, policy, 0x1234, 1) == 0, "init");
    return (region_t){base, len};
}

static void open_ring(tr_ring_t *r, region_t g)
{
    CHECK(tr_ring_open(r, g.base, g.len) == 0, "open");
}

static const char *variant_name(uint32_t kind, uint32_t policy)
{
    static const char *names[2][2] = {{"spsc/backpressure", "spsc/overwrite"},
                                      {"mpmc/backpressure", "mpmc/overwrite"}};
    return names[kind][policy];
}

/* ------------------------------------------------------------------ producers and consumers */

typedef struct job {
    region_t g;
    uint64_t src;       /* producer id */
    uint64_t count;     /* records to produce */
    uint64_t max_batch; /* batch sizes drawn from [1, max_batch] */
    uint64_t nsrc;      /* number of producers (consumer side) */
    uint64_t ncons;     /* number of consumers (consumer side) */
    uint64_t total;     /* records produced in all (consumer side) */
    _Atomic uint64_t *producers_done;
    _Atomic uint64_t *consumed; /* records delivered to all consumers */
    uint8_t *seen;              /* [nsrc][per-producer count], this consumer's deliveries */
    uint64_t got, lost;         /* this consumer's results */
    int use_peek;
} job_t;

static void *producer(void *arg)
{
    job_t *j = arg;
    tr_ring_t r;
    open_ring(&r, j->g);
    rec_t *batch = calloc(j->max_batch, sizeof(rec_t));
    CHECK(batch != NULL, "calloc");
    uint64_t rng = j->src * 7 + 1, sent = 0;
    while (sent < j->count) {
        uint64_t n = next_size(&rng, j->max_batch);
        if (n > j->count - sent)
            n = j->count - sent;
        for (uint64_t i = 0; i < n; i++)
            make_rec(&batch[i], j->src, sent + i);
        uint64_t done = 0;
        while (done < n) { /* backpressure: push the refused rest again */
            int64_t k = tr_push(&r, batch + done, n - done);
            CHECK(k >= 0, "push: %lld", (long long)k);
            CHECK(r.policy == TR_POLICY_BACKPRESSURE || (uint64_t)k == n - done,
                  "overwrite push must accept everything");
            done += (uint64_t)k;
            if (k == 0)
                sched_yield();
        }
        sent += n;
        /* Overwrite: alternate fast phases (the consumer falls behind and loses records) with
         * paced ones (it catches up and reads while the producer writes next to it). */
        if (r.policy == TR_POLICY_OVERWRITE && (sent >> 13) % 2 == 1)
            for (volatile uint64_t spin = 0; spin < n * 300; spin++)
                ;
    }
    free(batch);
    atomic_fetch_add(j->producers_done, 1);
    return NULL;
}

/* Consumer for any variant. Each producer's records arrive in increasing order, with no gap
 * under backpressure when this is the only consumer; the caller checks that every record was
 * delivered exactly once (backpressure) or delivered or counted lost exactly once (overwrite). */
static void *consumer(void *arg)
{
    job_t *j = arg;
    tr_ring_t r;
    open_ring(&r, j->g);
    uint64_t per = j->total / j->nsrc;
    uint64_t *next = calloc(j->nsrc, sizeof(uint64_t)); /* per producer: lowest acceptable seq */
    rec_t *out = calloc(j->max_batch, sizeof(rec_t));
    uint64_t *seqs = calloc(j->max_batch, sizeof(uint64_t));
    CHECK(next && out && seqs, "calloc");
    uint64_t rng = 99 + j->src, expect_pos = 0, idle = 0;
    int single = r.kind == TR_KIND_SPSC;
    for (;;) {
        uint64_t want = next_size(&rng, j->max_batch), lost = 0;
        int64_t n;
        const rec_t *recs = out;
        int peeked = 0;
        if (j->use_peek && (rng >> 40) % 2 == 0) {
            uint64_t slot = 0;
            n = tr_peek(&r, want, &slot);
            CHECK(n >= 0, "peek: %lld", (long long)n);
            recs = (const rec_t *)r.recs + slot;
            for (int64_t i = 0; i < n; i++)
                seqs[i] = expect_pos + (uint64_t)i;
            peeked = 1;
        } else {
            n = tr_pop_wait(&r, out, want, seqs, &lost, 200000);
            CHECK(n >= 0, "pop: %lld", (long long)n);
        }
        if (single) {
            /* One consumer: lost records come first, then a contiguous run. */
            CHECK(n == 0 || seqs[0] == expect_pos + lost, "pos %llu after %llu lost, want %llu",
                  (unsigned long long)seqs[0], (unsigned long long)lost,
                  (unsigned long long)expect_pos);
            expect_pos += lost + (uint64_t)n;
        }
        for (int64_t i = 0; i < n; i++) {
            const rec_t *x = &recs[i];
            verify_rec(x);
            CHECK(x->src < j->nsrc && x->seq < per, "bad record id");
            if (r.policy == TR_POLICY_BACKPRESSURE && j->ncons == 1)
                CHECK(x->seq == next[x->src], "src %llu: seq %llu, want %llu",
                      (unsigned long long)x->src, (unsigned long long)x->seq,
                      (unsigned long long)next[x->src]);
            else
                CHECK(x->seq >= next[x->src], "src %llu: seq %llu went backwards",
                      (unsigned long long)x->src, (unsigned long long)x->seq);
            if (single && j->nsrc == 1)
                CHECK(x->seq == seqs[i], "ring seq %llu != record seq %llu",
                      (unsigned long long)seqs[i], (unsigned long long)x->seq);
            next[x->src] = x->seq + 1;
            uint8_t *mark = &j->seen[x->src * per + x->seq];
            CHECK(*mark == 0, "duplicate src %llu seq %llu", (unsigned long long)x->src,
                  (unsigned long long)x->seq);
            *mark = 1;
        }
        if (peeked && n > 0)
            CHECK(tr_release(&r, (uint64_t)n) == n, "release");
        j->got += (uint64_t)n;
        j->lost += lost;
        uint64_t all = atomic_fetch_add(j->consumed, (uint64_t)n + lost) + (uint64_t)n + lost;
        if (all >= j->total)
            break;
        if (n == 0 && lost == 0) {
            tr_stats_t st;
            tr_ring_stats(&r, &st);
            /* After the producers finish, a drained ring with nothing left is the end. */
            if (atomic_load(j->producers_done) == j->nsrc && st.prod == st.cons && ++idle > 3)
                break;
            sched_yield();
        }
    }
    free(next);
    free(out);
    free(seqs);
    return NULL;
}

/* Runs nprod producer threads and ncons consumer threads over one ring and checks totals. */
static void run_threads(uint32_t kind, uint32_t policy, uint64_t cap, uint64_t per_producer,
                        uint64_t nprod, uint64_t ncons, uint64_t max_batch, int use_peek)
{
    region_t g = anon_ring(cap, kind, policy);
    _Atomic uint64_t producers_done = 0, consumed = 0;
    uint64_t total = per_producer * nprod;
    job_t prod[4], cons[4];
    pthread_t pt[4], ct[4];
    for (uint64_t c = 0; c < ncons; c++) {
        cons[c] = (job_t){.g = g, .src = c, .max_batch = max_batch, .nsrc = nprod,
                          .ncons = ncons, .total = total, .producers_done = &producers_done,
                          .consumed = &consumed, .use_peek = use_peek};
        cons[c].seen = calloc(total, 1);
        CHECK(cons[c].seen, "calloc");
        CHECK(pthread_create(&ct[c], NULL, consumer, &cons[c]) == 0, "pthread_create");
    }
    for (uint64_t p = 0; p < nprod; p++) {
        prod[p] = (job_t){.g = g, .src = p, .count = per_producer, .max_batch = max_batch,
                          .producers_done = &producers_done};
        CHECK(pthread_create(&pt[p], NULL, producer, &prod[p]) == 0, "pthread_create");
    }
    for (uint64_t p = 0; p < nprod; p++)
        pthread_join(pt[p], NULL);
    for (uint64_t c = 0; c < ncons; c++)
        pthread_join(ct[c], NULL);

    uint64_t got = 0, lost = 0;
    for (uint64_t c = 0; c < ncons; c++) {
        got += cons[c].got;
        lost += cons[c].lost;
    }
    for (uint64_t i = 0; i < total; i++) { /* union of deliveries: each record at most once */
        unsigned hits = 0;
        for (uint64_t c = 0; c < ncons; c++)
            hits += cons[c].seen[i];
        CHECK(hits <= 1, "record %llu delivered %u times", (unsigned long long)i, hits);
        if (policy == TR_POLICY_BACKPRESSURE)
            CHECK(hits == 1, "record %llu never delivered", (unsigned long long)i);
    }
    tr_ring_t r;
    tr_stats_t st;
    open_ring(&r, g);
    tr_ring_stats(&r, &st);
    CHECK(got + lost == total, "delivered %llu + lost %llu != %llu", (unsigned long long)got,
          (unsigned long long)lost, (unsigned long long)total);
    CHECK(st.pushed == total && st.popped == got && st.overruns == lost,
          "stats pushed=%llu popped=%llu overruns=%llu", (unsigned long long)st.pushed,
          (unsigned long long)st.popped, (unsigned long long)st.overruns);
    if (policy == TR_POLICY_BACKPRESSURE)
        CHECK(lost == 0, "backpressure lost records");
    printf("threads %-18s %llu producer(s) %llu consumer(s): %llu delivered, %llu lost, "
           "%llu refused\n",
           variant_name(kind, policy), (unsigned long long)nprod, (unsigned long long)ncons,
           (unsigned long long)got, (unsigned long long)lost, (unsigned long long)st.full);
    for (uint64_t c = 0; c < ncons; c++)
        free(cons[c].seen);
    munmap(g.base, g.len);
}

/* ------------------------------------------------------------------ fork over a real file */

static void run_fork(uint32_t kind, uint32_t policy, uint64_t cap, uint64_t per_producer)
{
    uint64_t nprod = kind == TR_KIND_MPMC ? 2 : 1;
    char path[128];
    snprintf(path, sizeof(path), "/dev/shm/tectra-sanitize-%d-%u%u", (int)getpid(), kind, policy);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    uint64_t len = tr_ring_bytes(cap, sizeof(rec_t));
    CHECK(ftruncate(fd, (off_t)len) == 0, "ftruncate");
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(base != MAP_FAILED, "mmap");
    CHECK(tr_ring_init(base, len, sizeof(rec_t), cap, kind, policy, 0x1234, 1) == 0, "init");
    _Atomic uint64_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED, "mmap");
    atomic_store(&shared[0], 0);

    pid_t kids[2];
    for (uint64_t p = 0; p < nprod; p++) {
        kids[p] = fork();
        CHECK(kids[p] >= 0, "fork");
        if (kids[p] == 0) {
            /* The child maps the file itself, like a separate process attaching by name. */
            int cfd = open(path, O_RDWR);
            CHECK(cfd >= 0, "child open");
            void *cbase = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
            CHECK(cbase != MAP_FAILED, "child mmap");
            close(cfd);
            job_t j = {.g = {cbase, len}, .src = p, .count = per_producer, .max_batch = 96,
                       .producers_done = &shared[0]};
            producer(&j);
            munmap(cbase, len);
            _exit(0);
        }
    }
    uint64_t total = per_producer * nprod;
    _Atomic uint64_t consumed = 0;
    job_t c = {.g = {base, len}, .src = 0, .max_batch = 128, .nsrc = nprod, .ncons = 1,
               .total = total,
               .producers_done = &shared[0], .consumed = &consumed,
               .use_peek = kind == TR_KIND_SPSC && policy == TR_POLICY_BACKPRESSURE};
    c.seen = calloc(total, 1);
    CHECK(c.seen, "calloc");
    consumer(&c);
    for (uint64_t p = 0; p < nprod; p++) {
        int status = 0;
        CHECK(waitpid(kids[p], &status, 0) == kids[p], "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "producer failed (%d)", status);
    }
    CHECK(c.got + c.lost == total, "fork: delivered %llu + lost %llu != %llu",
          (unsigned long long)c.got, (unsigned long long)c.lost, (unsigned long long)total);
    if (policy == TR_POLICY_BACKPRESSURE)
        for (uint64_t i = 0; i < total; i++)
            CHECK(c.seen[i] == 1, "fork: record %llu missing", (unsigned long long)i);
    printf("fork    %-18s %llu producer process(es): %llu delivered, %llu lost\n",
           variant_name(kind, policy), (unsigned long long)nprod, (unsigned long long)c.got,
           (unsigned long long)c.lost);
    free(c.seen);
    munmap((void *)shared, 4096);
    munmap(base, len);
    close(fd);
    unlink(path);
}

/* ------------------------------------------------------------------ edge cases */

static void run_edges(void)
{
    uint64_t len = tr_ring_bytes(64, 64);
    CHECK(tr_ring_bytes(48, 64) == 0 && tr_ring_bytes(64, 12) == 0 && tr_ring_bytes(1, 64) == 0,
          "invalid shapes must size to 0");
    void *base = aligned_alloc(64, len);
    CHECK(base, "alloc");
    CHECK(tr_ring_init(base, len - 1, 64, 64, 0, 0, 0, 0) == -ENOSPC, "short region");
    CHECK(tr_ring_init(base, len, 64, 64, 2, 0, 0, 0) == -EINVAL, "bad kind");
    tr_ring_t r;
    memset(base, 0, len);
    CHECK(tr_ring_open(&r, base, len) == -EAGAIN, "uninitialized");
    memset(base, 0xAB, 64);
    CHECK(tr_ring_open(&r, base, len) == -EBADMSG, "bad magic");

    /* The case: capacity 64, 8 written and 3 read per step: first loss at step 12. */
    for (uint32_t kind = 0; kind < 2; kind++) {
        CHECK(tr_ring_init(base, len, 64, 64, kind, TR_POLICY_OVERWRITE, 0, 0) == 0, "init");
        CHECK(tr_ring_open(&r, base, len) == 0, "open");
        rec_t in[8], out[3];
        uint64_t seq = 0, first_loss_step = 0, first_loss = 0;
        for (uint64_t step = 0; step < 20 && first_loss == 0; step++) {
            for (int i = 0; i < 8; i++)
                make_rec(&in[i], 0, seq++);
            CHECK(tr_push(&r, in, 8) == 8, "push");
            uint64_t lost = 0;
            CHECK(tr_pop(&r, out, 3, NULL, &lost) == 3, "pop");
            if (lost) {
                first_loss_step = step;
                first_loss = lost;
            }
        }
        CHECK(first_loss_step == 12 && first_loss == 4, "first loss at step %llu (%llu lost)",
              (unsigned long long)first_loss_step, (unsigned long long)first_loss);
        CHECK(tr_peek(&r, 1, &seq) == -EOPNOTSUPP, "peek on overwrite");
    }
    tr_ring_close(&r);
    rec_t one;
    make_rec(&one, 0, 0);
    CHECK(tr_push(&r, &one, 1) == -EBADF, "closed handle");
    free(base);
    printf("edges   ok\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    run_edges();
    run_threads(TR_KIND_SPSC, TR_POLICY_BACKPRESSURE, 1024, 1000000, 1, 1, 300, 1);
    run_threads(TR_KIND_SPSC, TR_POLICY_OVERWRITE, 256, 1000000, 1, 1, 300, 0);
    run_threads(TR_KIND_MPMC, TR_POLICY_BACKPRESSURE, 256, 500000, 2, 2, 100, 0);
    run_threads(TR_KIND_MPMC, TR_POLICY_OVERWRITE, 64, 500000, 2, 2, 100, 0);
    for (uint32_t kind = 0; kind < 2; kind++)
        for (uint32_t policy = 0; policy < 2; policy++)
            run_fork(kind, policy, 512, 300000);
    printf("ring_sanitize: all checks passed\n");
    return 0;
}
