/*
 * Sanitizer driver for csrc/book.c (built by tests/csrc/test_book_sanitizers.py with
 * -fsanitize=address,undefined). Runs seeded random streams, valid and malformed, through
 * books with small capacities (so the order table, level arena and depth limits are all hit)
 * in random batch sizes with short output buffers; after every batch it checks the book's
 * invariants from scratch and that replaying the BOOK_UPDATE records rebuilds the same L2
 * book; then deletes every order and checks the book is empty. Finally a writer thread and
 * reader threads hammer the seqlocked reference rows and readers verify every row they get.
 * Exits non-zero on the first violation.
 */
#define _GNU_SOURCE
#include "../../csrc/book.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "book_sanitize: %s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                                  \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            fflush(stderr);                                                                  \
            _exit(1);                                                                        \
        }                                                                                    \
    } while (0)

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

/* ------------------------------------------------------------------ a book on the heap */

typedef struct heap_book {
    bk_book_t b;
    uint64_t meta[BK_META_WORDS];
    bk_order_t *orders;
    bk_level_t *levels;
    bk_instrument_t *instr;
    uint64_t table_size, arena, n_instr, max_levels;
} heap_book_t;

static void hb_init(heap_book_t *h, uint64_t n_instr, uint64_t max_orders, uint64_t max_levels,
                    uint64_t arena)
{
    uint64_t table = 8;
    while (table < max_orders * 4 / 3 + 1)
        table <<= 1;
    h->table_size = table;
    h->arena = arena;
    h->n_instr = n_instr;
    h->max_levels = max_levels;
    h->orders = calloc(table, sizeof(bk_order_t));
    h->levels = calloc(arena, sizeof(bk_level_t));
    h->instr = calloc(n_instr, sizeof(bk_instrument_t));
    CHECK(h->orders && h->levels && h->instr, "calloc");
    CHECK(bk_init_meta(h->meta, table, max_orders, arena, n_instr, max_levels) == 0, "init");
    bk_init_instruments(h->instr, n_instr);
    CHECK(bk_bind(&h->b, h->orders, table, h->levels, arena, h->instr, n_instr, h->meta,
                  BK_META_WORDS) == 0,
          "bind");
}

static void hb_free(heap_book_t *h)
{
    free(h->orders);
    free(h->levels);
    free(h->instr);
}

/* ------------------------------------------------------------------ invariants */

static void check_invariants(heap_book_t *h)
{
    const bk_book_t *b = &h->b;
    uint64_t used = h->meta[BK_M_ARENA_USED];
    int64_t *sum_qty = calloc(h->arena, sizeof(int64_t));
    uint32_t *sum_cnt = calloc(h->arena, sizeof(uint32_t));
    uint64_t *per_instr = calloc(h->n_instr, sizeof(uint64_t));
    CHECK(sum_qty && sum_cnt && per_instr, "calloc");
    for (uint64_t i = 0; i < h->n_instr; i++) {
        for (int s = 0; s < 2; s++) {
            const bk_side_t *sd = &h->instr[i].side[s];
            CHECK(sd->n <= sd->cap && sd->cap <= h->max_levels, "side sizes %u/%u", sd->n, sd->cap);
            if (!sd->cap)
                continue;
            CHECK(sd->off + sd->cap <= used, "block outside used arena");
            for (uint32_t k = 0; k < sd->n; k++) {
                const bk_level_t *lv = &h->levels[sd->off + k];
                CHECK(lv->qty > 0 && lv->orders > 0, "empty level");
                if (k)
                    CHECK(s == BK_BID ? lv->price > lv[-1].price : lv->price < lv[-1].price,
                          "levels out of order");
            }
        }
    }
    uint64_t live = 0;
    for (uint64_t slot = 0; slot < h->table_size; slot++) {
        const bk_order_t *o = &h->orders[slot];
        if (!o->ref)
            continue;
        live++;
        CHECK(bk_find_order(b, o->ref) == (int64_t)slot, "order %llu unreachable",
              (unsigned long long)o->ref);
        CHECK(o->shares > 0 && o->price > 0 && o->side < 2 && o->instrument < h->n_instr, "order");
        per_instr[o->instrument]++;
        const bk_side_t *sd = &h->instr[o->instrument].side[o->side];
        uint32_t k = 0;
        while (k < sd->n && h->levels[sd->off + k].price != o->price)
            k++;
        CHECK(k < sd->n, "order without level");
        sum_qty[sd->off + k] += o->shares;
        sum_cnt[sd->off + k]++;
    }
    CHECK(live == h->meta[BK_M_LIVE_ORDERS], "live count");
    CHECK(live <= h->meta[BK_M_MAX_ORDERS], "over max_orders");
    for (uint64_t i = 0; i < h->n_instr; i++) {
        CHECK(per_instr[i] == h->instr[i].live_orders, "per-instrument live count");
        for (int s = 0; s < 2; s++) {
            const bk_side_t *sd = &h->instr[i].side[s];
            for (uint32_t k = 0; k < sd->n; k++) {
                const bk_level_t *lv = &h->levels[sd->off + k];
                CHECK(sum_qty[sd->off + k] == lv->qty && sum_cnt[sd->off + k] == lv->orders,
                      "level volume/count != its orders");
            }
        }
    }
    /* The arena below the bump pointer is tiled exactly by side blocks and free blocks. */
    uint8_t *cover = calloc(used + 1, 1);
    CHECK(cover, "calloc");
    for (uint64_t i = 0; i < h->n_instr; i++)
        for (int s = 0; s < 2; s++) {
            const bk_side_t *sd = &h->instr[i].side[s];
            for (uint32_t k = 0; k < sd->cap; k++)
                CHECK(++cover[sd->off + k] == 1, "side blocks overlap");
        }
    for (uint32_t cls = BK_MIN_CLASS; (1ull << cls) <= h->max_levels; cls++) {
        uint64_t prev = BK_NONE;
        for (uint64_t node = h->meta[BK_M_FREE_HEAD + cls]; node != BK_NONE;) {
            const bk_level_t *lv = &h->levels[node];
            CHECK(node % (1ull << cls) == 0 && node + (1ull << cls) <= used, "free block place");
            CHECK(lv->orders == BK_FREE_MARK && lv->_reserved == cls, "free mark");
            CHECK((uint64_t)lv->price == prev, "free list back link");
            for (uint64_t k = 0; k < (1ull << cls); k++)
                CHECK(++cover[node + k] == 1, "free block overlaps");
            prev = node;
            node = (uint64_t)lv->qty;
        }
    }
    for (uint64_t k = 0; k < used; k++)
        CHECK(cover[k] == 1, "arena slot %llu leaked", (unsigned long long)k);
    free(cover);
    free(sum_qty);
    free(sum_cnt);
    free(per_instr);
}

/* L2 rebuilt from BOOK_UPDATE records alone, best first. */
typedef struct mirror {
    bk_level_t *lv; /* [instr][side][max_levels] */
    uint32_t *n;    /* [instr][side] */
    uint64_t max_levels;
} mirror_t;

static void mirror_apply(mirror_t *m, const bk_book_update_t *u, uint64_t count)
{
    for (uint64_t i = 0; i < count; i++) {
        uint32_t s = u[i].side == BK_SIDE_BUY ? 0 : 1;
        uint64_t key = (uint64_t)u[i].instrument_id * 2 + s;
        bk_level_t *lv = &m->lv[key * m->max_levels];
        uint32_t *n = &m->n[key];
        uint32_t at = u[i].level;
        CHECK(u[i].type_id == BK_TYPE_BOOK_UPDATE && u[i].version == BK_VERSION_BOOK_UPDATE,
              "header");
        if (u[i].action == BK_ACTION_ADD) {
            CHECK(at <= *n && *n < m->max_levels, "ADD at %u of %u", at, *n);
            memmove(lv + at + 1, lv + at, (*n - at) * sizeof *lv);
            lv[at] = (bk_level_t){.price = u[i].price, .qty = u[i].qty, .orders = u[i].order_count};
            (*n)++;
        } else if (u[i].action == BK_ACTION_DELETE) {
            CHECK(at < *n && lv[at].price == u[i].price, "DELETE");
            memmove(lv + at, lv + at + 1, (*n - at - 1) * sizeof *lv);
            (*n)--;
        } else {
            CHECK(u[i].action == BK_ACTION_CHANGE && at < *n && lv[at].price == u[i].price,
                  "CHANGE");
            lv[at].qty = u[i].qty;
            lv[at].orders = u[i].order_count;
        }
    }
}

static void mirror_compare(const mirror_t *m, const heap_book_t *h)
{
    for (uint64_t i = 0; i < h->n_instr; i++)
        for (uint32_t s = 0; s < 2; s++) {
            uint64_t key = i * 2 + s;
            const bk_side_t *sd = &h->instr[i].side[s];
            CHECK(m->n[key] == sd->n, "mirror depth %u != %u", m->n[key], sd->n);
            for (uint32_t k = 0; k < sd->n; k++) {
                const bk_level_t *a = &m->lv[key * m->max_levels + k];
                const bk_level_t *b = &h->levels[sd->off + sd->n - 1 - k];
                CHECK(a->price == b->price && a->qty == b->qty && a->orders == b->orders,
                      "mirror level differs");
            }
        }
}

/* ------------------------------------------------------------------ streams */

#define MAX_LIVE 4096
static uint64_t live_refs[MAX_LIVE];
static uint16_t live_loc[MAX_LIVE];
static uint32_t n_live;

static void gen_event(bk_itch_event_t *e, uint64_t seq, uint64_t n_instr, uint64_t *next_ref,
                      int malformed)
{
    memset(e, 0, sizeof *e);
    e->type_id = BK_TYPE_ITCH_EVENT;
    e->version = BK_VERSION_ITCH_EVENT;
    e->seq = seq;
    e->ts_ns = (int64_t)(seq * 10);
    e->exch_ts_ns = (int64_t)(seq * 7);
    if (malformed) {
        static const char types[] = "AFECXDUPQBHRSZ";
        e->msg_type = (uint8_t)types[below(sizeof types - 1)];
        e->side = (uint8_t)"BSX"[below(3)];
        e->stock_locate = (uint16_t)below(n_instr + 3);
        e->order_ref = below(3) ? (n_live ? live_refs[below(n_live)] : 1) : rnd();
        e->ref2 = below(2) ? *next_ref : below(50);
        e->shares = below(4) ? below(2000) : rnd();
        e->price = (int64_t)below(4) ? (int64_t)below(200000) - 1000 : (int64_t)rnd();
        e->aux = (uint8_t)below(256);
        if (!below(20))
            e->type_id = 7;
        if (e->msg_type == 'R')
            memcpy(e->raw + 11, "ABCD    ", 8);
        return;
    }
    uint64_t r = below(100);
    if (r < 38 || n_live == 0) {
        e->msg_type = 'A';
        e->side = below(2) ? 'B' : 'S';
        e->stock_locate = (uint16_t)below(n_instr);
        e->order_ref = (*next_ref)++;
        e->shares = 1 + below(500);
        int64_t off = (int64_t)below(40) * 100;
        e->price = e->side == 'B' ? 1000000 - off : 1000100 + off;
        return;
    }
    /* Refer to a ref we added: it may have been refused or removed (the book counts it). */
    uint32_t j = (uint32_t)below(n_live);
    e->order_ref = live_refs[j];
    e->stock_locate = below(50) ? live_loc[j] : (uint16_t)below(n_instr);
    if (r < 75) {
        e->msg_type = 'D';
        n_live--;
        live_refs[j] = live_refs[n_live];
        live_loc[j] = live_loc[n_live];
    } else if (r < 85) {
        e->msg_type = below(2) ? 'E' : 'C';
        e->shares = 1 + below(300);
        e->price = 1000000;
        e->ref2 = seq;
        e->aux = 'Y';
    } else if (r < 92) {
        e->msg_type = 'X';
        e->shares = 1 + below(300);
    } else {
        e->msg_type = 'U';
        e->ref2 = (*next_ref)++;
        live_refs[j] = e->ref2;
        e->shares = 1 + below(500);
        e->price = 1000000 + ((int64_t)below(20) - 10) * 100;
    }
}

static void run_stream(const char *label, uint64_t n_instr, uint64_t max_orders,
                       uint64_t max_levels, uint64_t arena, uint64_t n_events, int malformed_pct,
                       uint64_t seed)
{
    rng_state = seed;
    n_live = 0;
    heap_book_t h;
    hb_init(&h, n_instr, max_orders, max_levels, arena);
    mirror_t m = {
        .lv = calloc(n_instr * 2 * max_levels, sizeof(bk_level_t)),
        .n = calloc(n_instr * 2, sizeof(uint32_t)),
        .max_levels = max_levels,
    };
    CHECK(m.lv && m.n, "calloc");
    enum { BATCH = 256, OUTCAP = 16 };
    bk_itch_event_t *ev = calloc(BATCH, sizeof *ev);
    bk_book_update_t *upd = calloc(OUTCAP * 2, sizeof *upd);
    bk_tick_t *ticks = calloc(OUTCAP, sizeof *ticks);
    bk_trade_t *trades = calloc(OUTCAP, sizeof *trades);
    CHECK(ev && upd && ticks && trades, "calloc");
    uint64_t next_ref = 1, seq = 1, out_seq = 0;
    while (seq <= n_events) {
        uint64_t n = 1 + below(BATCH);
        for (uint64_t i = 0; i < n; i++, seq++) {
            gen_event(&ev[i], seq, n_instr, &next_ref, (int)below(100) < malformed_pct);
            if (ev[i].msg_type == 'A' && ev[i].order_ref == next_ref - 1 && n_live < MAX_LIVE) {
                live_loc[n_live] = ev[i].stock_locate;
                live_refs[n_live++] = ev[i].order_ref;
            }
        }
        uint64_t done = 0;
        while (done < n) {
            /* Output room varies from "none at all" to plenty. */
            bk_out_t out = {upd, 2 * below(OUTCAP + 1), 0, ticks, below(OUTCAP + 1), 0,
                            trades, below(OUTCAP + 1), 0};
            int64_t got = bk_apply(&h.b, ev + done, n - done, &out);
            CHECK(got >= 0 && (uint64_t)got <= n - done, "apply returned %lld", (long long)got);
            CHECK(out.n_updates <= out.updates_cap && out.n_ticks <= out.ticks_cap &&
                      out.n_trades <= out.trades_cap,
                  "outputs overflow");
            for (uint64_t i = 0; i < out.n_updates; i++)
                CHECK(upd[i].seq > out_seq, "update seq not increasing");
            out_seq = h.meta[BK_M_OUT_SEQ];
            CHECK(out_seq >= out.n_updates + out.n_ticks + out.n_trades, "out seq");
            mirror_apply(&m, upd, out.n_updates);
            done += (uint64_t)got;
        }
        check_invariants(&h);
        mirror_compare(&m, &h);
    }
    CHECK(h.meta[BK_M_COUNTERS + BK_C_INTERNAL] == 0, "internal inconsistency counted");
    CHECK(h.meta[BK_M_COUNTERS + BK_C_EVENTS] == seq - 1, "events counted");
    /* Delete every live order: the book must empty completely. */
    for (uint64_t slot = 0; slot < h.table_size; slot++) {
        if (!h.orders[slot].ref)
            continue;
        bk_itch_event_t d = {.type_id = BK_TYPE_ITCH_EVENT, .version = BK_VERSION_ITCH_EVENT,
                             .msg_type = 'D', .order_ref = h.orders[slot].ref,
                             .stock_locate = h.orders[slot].instrument};
        bk_out_t out = {upd, 2 * OUTCAP, 0, ticks, OUTCAP, 0, trades, OUTCAP, 0};
        CHECK(bk_apply(&h.b, &d, 1, &out) == 1, "delete applied");
        mirror_apply(&m, upd, out.n_updates);
        slot = (uint64_t)-1; /* backward shift may have moved entries: rescan */
    }
    CHECK(h.meta[BK_M_LIVE_ORDERS] == 0, "orders left");
    for (uint64_t i = 0; i < n_instr; i++)
        CHECK(h.instr[i].side[0].n == 0 && h.instr[i].side[1].n == 0 && !h.instr[i].live_orders,
              "levels left");
    check_invariants(&h);
    mirror_compare(&m, &h);
    uint64_t *c = &h.meta[BK_M_COUNTERS];
    printf("stream  %-22s events=%llu adds=%llu refused(table=%llu pool=%llu depth=%llu) "
           "unknown_ref=%llu bad=%llu\n",
           label, (unsigned long long)c[BK_C_EVENTS], (unsigned long long)c[BK_C_ADDS],
           (unsigned long long)c[BK_C_ORDER_TABLE_FULL], (unsigned long long)c[BK_C_LEVEL_POOL_FULL],
           (unsigned long long)c[BK_C_DEPTH_FULL], (unsigned long long)c[BK_C_UNKNOWN_REF],
           (unsigned long long)(c[BK_C_BAD_PRICE] + c[BK_C_BAD_SHARES] + c[BK_C_BAD_SIDE] +
                                c[BK_C_BAD_RECORD] + c[BK_C_UNKNOWN_TYPE]));
    free(ev);
    free(upd);
    free(ticks);
    free(trades);
    free(m.lv);
    free(m.n);
    hb_free(&h);
}

/* ------------------------------------------------------------------ reference rows */

#define REF_ROWS 4
static uint64_t ref_gens[REF_ROWS];
static uint64_t ref_rows[REF_ROWS * BK_REF_ROW_WORDS];
static atomic_int ref_stop;
static atomic_ullong ref_reads;

static void *ref_writer(void *arg)
{
    (void)arg;
    bk_tick_t t[8];
    for (uint64_t k = 1; !atomic_load(&ref_stop); k++) {
        for (int i = 0; i < 8; i++) {
            memset(&t[i], 0, sizeof t[i]);
            t[i].instrument_id = (uint32_t)(i % REF_ROWS);
            t[i].seq = k;
            t[i].bid_px = (int64_t)k * 100;
            t[i].ask_px = (int64_t)k * 100 + 1;
            t[i].bid_qty = (int64_t)k * 3;
            t[i].last_update_ns = (int64_t)k * 11;
            t[i].exch_ts_ns = (int64_t)k * 13;
        }
        CHECK(bk_ref_write(ref_gens, ref_rows, REF_ROWS, t, 8) == 8, "ref write");
        /* A feed writes a row per top change, microseconds apart, not back to back: a
         * seqlock reader can starve under a writer that never pauses. */
        for (volatile int spin = 0; spin < 200; spin++)
            ;
        if (k == 200000)
            atomic_store(&ref_stop, 1);
    }
    return NULL;
}

static void *ref_reader(void *arg)
{
    (void)arg;
    bk_tick_t t;
    while (!atomic_load(&ref_stop)) {
        for (uint64_t i = 0; i < REF_ROWS; i++) {
            int rc = bk_ref_read(ref_gens, ref_rows, REF_ROWS, i, &t, 1000000);
            CHECK(rc == 0 || rc == 1, "ref read rc %d", rc);
            if (rc == 1) {
                int64_t k = (int64_t)t.seq;
                CHECK(t.instrument_id == i && t.bid_px == k * 100 && t.ask_px == k * 100 + 1 &&
                          t.bid_qty == k * 3 && t.last_update_ns == k * 11 &&
                          t.exch_ts_ns == k * 13,
                      "torn reference row (seq %lld)", (long long)k);
                atomic_fetch_add(&ref_reads, 1);
            }
        }
    }
    return NULL;
}

static void run_refs(void)
{
    pthread_t w, r1, r2;
    CHECK(pthread_create(&w, NULL, ref_writer, NULL) == 0, "thread");
    CHECK(pthread_create(&r1, NULL, ref_reader, NULL) == 0, "thread");
    CHECK(pthread_create(&r2, NULL, ref_reader, NULL) == 0, "thread");
    pthread_join(w, NULL);
    pthread_join(r1, NULL);
    pthread_join(r2, NULL);
    bk_tick_t t;
    CHECK(bk_ref_read(ref_gens, ref_rows, REF_ROWS, REF_ROWS, &t, 1) == -22, "range check");
    CHECK(atomic_load(&ref_reads) > 0, "no reads");
    printf("threads refs reads=%llu\n", (unsigned long long)atomic_load(&ref_reads));
}

int main(void)
{
    uint64_t meta[BK_META_WORDS];
    CHECK(bk_init_meta(meta, 12, 4, 64, 4, 8) < 0, "table size must be a power of two");
    CHECK(bk_init_meta(meta, 16, 16, 64, 4, 8) < 0, "max_orders must be < table size");
    CHECK(bk_init_meta(meta, 16, 8, 64, 4, 12) < 0, "max_levels power of two");
    CHECK(bk_init_meta(meta, 16, 8, 64, 70000, 8) < 0, "instrument limit");
    CHECK(bk_init_meta(meta, 16, 8, 60, 4, 8) < 0, "arena must be whole top blocks");
    run_stream("roomy", 6, 4000, 64, 8192, 150000, 0, 1);
    run_stream("roomy+malformed", 6, 4000, 64, 8192, 150000, 15, 2);
    run_stream("tiny-table", 4, 40, 64, 4096, 20000, 5, 3);
    run_stream("tiny-arena", 8, 4000, 32, 64, 20000, 5, 4);
    run_stream("tiny-depth", 3, 4000, 8, 4096, 20000, 5, 5);
    run_refs();
    printf("book_sanitize: all checks passed\n");
    return 0;
}
