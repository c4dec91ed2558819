/*
 * Sanitizer driver for csrc/risk.c (built by tests/csrc/test_risk_sanitizers.py with
 * -fsanitize=address,undefined). Drives the engine with seeded random streams of orders
 * (valid and malformed, new / replace / cancel, limit and market, extreme prices and
 * quantities) and execution reports (fills, cancels, rejects, replaces, busts, unknown ids)
 * over small tables so they fill up, checking after every call:
 *   - rk_state_check (free list, index, links, self-match lists, position keys);
 *   - exposure sums: every account's open notional and every position's open quantities
 *     equal the sums over the open orders;
 *   - accepted orders never break the enforced credit and position limits;
 *   - the same inputs replayed into a second state give byte-identical verdicts and state.
 * Exits non-zero on the first failure.
 */
#define _GNU_SOURCE
#include "../../csrc/risk.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "risk_sanitize: %s:%d: check failed: %s: ", __FILE__, __LINE__,  \
                    #cond);                                                                   \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static int64_t between(int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

enum { N_INSTR = 8, N_ACCT = 6, N_SESS = 4, N_VENUE = 3, MAX_ORDERS = 96, POS_CAP = 64 };
#define PX 1000000ll

typedef struct engine {
    rk_account_state_t accounts[N_ACCT];
    rk_position_t positions[POS_CAP];
    rk_order_t orders[MAX_ORDERS];
    int64_t index[256];
    rk_bucket_t sessions[N_SESS];
    rk_bucket_t venues[N_VENUE];
    uint8_t halt_instr[N_INSTR];
    uint8_t halt_venue[N_VENUE];
    uint8_t halt_acct[N_ACCT];
    int64_t counters[RK_NUM_RULES * RK_CTR_COLS];
    int64_t meta[RK_META_WORDS];
    rk_state_t st;
} engine_t;

static void engine_init(engine_t *e)
{
    memset(e, 0, sizeof *e);
    rk_state_t *st = &e->st;
    st->accounts = e->accounts;
    st->n_accounts = N_ACCT;
    st->positions = e->positions;
    st->position_capacity = POS_CAP;
    st->orders = e->orders;
    st->max_orders = MAX_ORDERS;
    st->order_index = e->index;
    st->index_capacity = 256;
    st->session_buckets = e->sessions;
    st->n_sessions = N_SESS;
    st->venue_buckets = e->venues;
    st->n_venues = N_VENUE;
    st->halt_instruments = e->halt_instr;
    st->n_instruments = N_INSTR;
    st->halt_venues = e->halt_venue;
    st->halt_accounts = e->halt_acct;
    st->counters = e->counters;
    st->meta = e->meta;
    CHECK(rk_state_init(st) == 0, "init");
}

/* Byte image of the state (pointers excluded); the batch counter may differ when one side
 * was fed the same orders one at a time. */
static int same_state(const engine_t *a, const engine_t *b)
{
    if (memcmp(a, b, offsetof(engine_t, meta)) != 0)
        return 0;
    for (unsigned i = 0; i < RK_META_WORDS; i++)
        if (i != RK_M_BATCHES && a->meta[i] != b->meta[i])
            return 0;
    return 1;
}

static rk_instrument_limits_t instr[N_INSTR - 2]; /* ids >= 6 are unknown */
static rk_account_limits_t acct_limits[N_ACCT - 1]; /* the last id uses the default row */
static rk_account_limits_t acct_default;
static rk_throttle_limits_t sess_limits[N_SESS], sess_default, venue_limits[N_VENUE],
    venue_default;
static uint8_t modes_default[RK_NUM_RULES], modes_venue[N_VENUE * RK_NUM_RULES],
    modes_instr[(N_INSTR - 2) * RK_NUM_RULES];
static rk_limits_t limits;

static void limits_init(int dry)
{
    for (int i = 0; i < N_INSTR - 2; i++) {
        rk_instrument_limits_t *l = &instr[i];
        l->known = i != 0;
        memcpy(&l->symbol, "SYM0    ", 8);
        ((char *)&l->symbol)[3] = (char)('0' + i);
        l->tick_size = 100;
        l->max_qty = between(50, 5000);
        l->max_notional = between(1, 1ll << 40);
        l->band_bps = between(0, 800);
        l->band_ticks = l->band_bps ? between(0, 5) : between(1, 50);
        l->max_ref_age_ns = between(1000, 1000000000);
        l->restricted = i == 5;
    }
    for (int i = 0; i < N_ACCT - 1; i++) {
        acct_limits[i].credit_limit = between(1ll << 30, 1ll << 45);
        acct_limits[i].max_position = between(10, 3000);
        acct_limits[i].max_strategy_position = between(10, 2000);
        acct_limits[i].max_qty = rnd() % 2 ? between(1, 4000) : 0;
        acct_limits[i].max_notional = rnd() % 2 ? between(1, 1ll << 40) : 0;
    }
    acct_default = acct_limits[0];
    for (int i = 0; i < N_SESS; i++)
        sess_limits[i] = (rk_throttle_limits_t){between(1, 500), between(1, 10)};
    for (int i = 0; i < N_VENUE; i++)
        venue_limits[i] = (rk_throttle_limits_t){between(1, 100), between(1, 8)};
    sess_default = sess_limits[0];
    venue_default = venue_limits[0];
    for (unsigned r = 0; r < RK_NUM_RULES; r++)
        modes_default[r] = dry ? (uint8_t)between(0, 3) : RK_MODE_ENFORCE;
    for (unsigned i = 0; i < sizeof modes_venue; i++)
        modes_venue[i] = dry ? (uint8_t)between(0, 4) : 0; /* 4: out of range -> enforce */
    for (unsigned i = 0; i < sizeof modes_instr; i++)
        modes_instr[i] = dry ? (uint8_t)between(0, 3) : 0;
    limits = (rk_limits_t){
        .version = 1,
        .instruments = instr,
        .n_instruments = N_INSTR - 2,
        .accounts = acct_limits,
        .n_accounts = N_ACCT - 1,
        .account_default = &acct_default,
        .sessions = sess_limits,
        .n_sessions = N_SESS,
        .session_default = &sess_default,
        .venues = venue_limits,
        .n_venues = N_VENUE - 1, /* the last venue uses the default row and modes */
        .venue_default = &venue_default,
        .modes_default = modes_default,
        .modes_venue = modes_venue,
        .modes_instrument = modes_instr,
    };
}

static uint64_t issued[4096];
static uint64_t n_issued, next_id;

static uint64_t some_issued(void) { return n_issued ? issued[rnd() % n_issued] : rnd() % 50; }

static int64_t extreme(void)
{
    static const int64_t v[] = {0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX / 2, 1ll << 32, 3037000500ll};
    return v[rnd() % (sizeof v / sizeof v[0])];
}

static void make_order(rk_order_request_t *o)
{
    memset(o, 0, sizeof *o);
    o->type_id = RK_TYPE_ORDER_REQUEST;
    o->version = RK_VERSION_ORDER_REQUEST;
    o->flags = (uint32_t)(rnd() & 7);
    o->seq = next_id;
    o->order_id = rnd() % 50 ? next_id : some_issued(); /* sometimes a duplicate id */
    issued[n_issued++ % 4096] = next_id++;
    if (n_issued > 4096)
        n_issued = 4096;
    unsigned a = (unsigned)(rnd() % 20);
    o->action = a < 14 ? RK_ACTION_NEW : a < 17 ? RK_ACTION_REPLACE : a < 19 ? RK_ACTION_CANCEL : (uint8_t)rnd();
    o->orig_order_id = some_issued();
    o->instrument_id = (uint32_t)between(0, N_INSTR + 1);
    memcpy(o->symbol, "SYM0    ", 8);
    o->symbol[3] = (char)('0' + o->instrument_id % 10);
    if (rnd() % 30 == 0)
        o->symbol[0] = 'X';
    o->account_id = (uint32_t)between(0, N_ACCT);
    o->strategy_id = rnd() % 40 ? (uint32_t)between(0, 3) : 0xFFFFFFFFu;
    o->session_id = (uint32_t)between(0, N_SESS);
    o->venue_id = (uint32_t)between(0, N_VENUE);
    static const uint8_t sides[] = {RK_SIDE_BUY, RK_SIDE_SELL, RK_SIDE_SELL_SHORT,
                                    RK_SIDE_SELL_SHORT_EXEMPT, 0, 'Z'};
    o->side = rnd() % 10 ? (rnd() % 2 ? RK_SIDE_BUY : RK_SIDE_SELL) : sides[rnd() % 6];
    static const uint8_t types[] = {RK_ORD_LIMIT, RK_ORD_MARKET, RK_ORD_STOP, RK_ORD_STOP_LIMIT, 0};
    o->ord_type = rnd() % 5 ? RK_ORD_LIMIT : types[rnd() % 5];
    o->price = rnd() % 25 ? PX + between(-60000, 60000) : extreme();
    o->qty = rnd() % 25 ? between(1, 400) : extreme();
}

static void make_report(rk_execution_report_t *r)
{
    memset(r, 0, sizeof *r);
    r->type_id = RK_TYPE_EXECUTION_REPORT;
    r->version = RK_VERSION_EXECUTION_REPORT;
    r->order_id = rnd() % 20 ? some_issued() : rnd();
    static const uint8_t types[] = {RK_EXEC_TRADE, RK_EXEC_TRADE, RK_EXEC_TRADE, RK_EXEC_CANCELED,
                                    RK_EXEC_REJECTED, RK_EXEC_REPLACED, RK_EXEC_EXPIRED,
                                    RK_EXEC_DONE_FOR_DAY, RK_EXEC_TRADE_CANCEL, '0', 0};
    r->exec_type = types[rnd() % (sizeof types)];
    r->last_qty = rnd() % 20 ? between(0, 200) : extreme();
    r->last_px = rnd() % 20 ? PX + between(-5000, 5000) : extreme();
    r->cum_qty = between(0, 600);
    r->leaves_qty = rnd() % 10 ? between(0, 400) : extreme();
    r->account_id = (uint32_t)between(0, N_ACCT);
    r->strategy_id = (uint32_t)between(0, 3);
    r->instrument_id = (uint32_t)between(0, N_INSTR + 1);
    r->side = rnd() % 2 ? RK_SIDE_BUY : RK_SIDE_SELL;
}

static void check_sums(const engine_t *e)
{
    int64_t where = 0;
    CHECK(rk_state_check(&e->st, &where) == 0, "rk_state_check failed at %lld", (long long)where);
    int64_t open_notional[N_ACCT] = {0}, open_orders[N_ACCT] = {0};
    int64_t open_buy[POS_CAP] = {0}, open_sell[POS_CAP] = {0};
    for (int i = 0; i < MAX_ORDERS; i++) {
        const rk_order_t *o = &e->orders[i];
        if (o->status == RK_ORD_FREE)
            continue;
        open_notional[o->account] += o->open_notional;
        open_orders[o->account]++;
        int64_t *side = o->side == RK_SIDE_BUY ? open_buy : open_sell;
        side[o->agg_slot] += o->open_qty;
        side[o->strat_slot] += o->open_qty;
    }
    for (int a = 0; a < N_ACCT; a++) {
        CHECK(open_notional[a] == e->accounts[a].open_notional, "account %d open notional", a);
        CHECK(open_orders[a] == e->accounts[a].open_orders, "account %d open orders", a);
    }
    for (int p = 0; p < POS_CAP; p++) {
        CHECK(open_buy[p] == e->positions[p].open_buy, "position %d open buy", p);
        CHECK(open_sell[p] == e->positions[p].open_sell, "position %d open sell", p);
    }
}

static void run(const char *name, uint64_t seed, int dry, int rounds)
{
    rng_state = seed;
    n_issued = 0;
    next_id = 1;
    limits_init(dry);
    static engine_t a, b;
    engine_init(&a);
    engine_init(&b);
    rk_order_request_t orders[16];
    rk_risk_verdict_t va[16], vb[16];
    rk_execution_report_t reports[8];
    int64_t refs[16 * RK_REF_COLS];
    int64_t table[(N_INSTR - 1) * RK_REF_COLS];
    int64_t now = 1000000000;
    uint64_t passed = 0, rejected = 0;
    for (int round = 0; round < rounds; round++) {
        now += rnd() % 8 ? between(0, 200000) : between(-1000, 50000000);
        for (int i = 0; i < N_INSTR - 1; i++) {
            int64_t *row = &table[i * RK_REF_COLS];
            row[0] = rnd() % 8 ? PX - 100 : 0;
            row[1] = rnd() % 8 ? PX + 100 : 0;
            row[2] = rnd() % 8 ? PX : 0;
            row[3] = rnd() % 12 ? now - between(0, 2000) : RK_REF_MISSING;
        }
        uint64_t n = (uint64_t)between(0, 16);
        for (uint64_t i = 0; i < n; i++) {
            make_order(&orders[i]);
            memcpy(&refs[i * RK_REF_COLS], &table[(orders[i].instrument_id % (N_INSTR - 1)) * RK_REF_COLS],
                   RK_REF_COLS * sizeof(int64_t));
        }
        uint32_t kill = rnd() % 30 == 0 ? RK_KILL_HALTED : 0;
        if (rnd() % 40 == 0) {
            uint8_t h = (uint8_t)(rnd() % 2);
            a.halt_instr[rnd() % N_INSTR] = h;
            memcpy(b.halt_instr, a.halt_instr, sizeof a.halt_instr);
        }
        int per_order = (int)(rnd() % 2);
        const int64_t *tab = rnd() % 10 ? table : NULL; /* NULL: no references at all */
        int64_t ra = per_order ? rk_check_batch(&a.st, &limits, orders, n, refs, n, RK_REF_PER_ORDER,
                                                now, kill, va)
                               : rk_check_batch(&a.st, &limits, orders, n, tab, N_INSTR - 1,
                                                RK_REF_BY_INSTRUMENT, now, kill, va);
        CHECK(ra == (int64_t)n, "check_batch returned %lld", (long long)ra);
        /* b judges the same orders one at a time: a batch is exactly its orders in turn. */
        for (uint64_t i = 0; i < n; i++) {
            int64_t rb = per_order ? rk_check_batch(&b.st, &limits, &orders[i], 1, &refs[i * RK_REF_COLS],
                                                    1, RK_REF_PER_ORDER, now, kill, &vb[i])
                                   : rk_check_batch(&b.st, &limits, &orders[i], 1, tab, N_INSTR - 1,
                                                    RK_REF_BY_INSTRUMENT, now, kill, &vb[i]);
            CHECK(rb == 1, "single order returned %lld", (long long)rb);
        }
        CHECK(n == 0 || memcmp(va, vb, n * sizeof va[0]) == 0, "batch verdicts != single verdicts");
        CHECK(same_state(&a, &b), "batch state != single-order state");
        for (uint64_t i = 0; i < n; i++) {
            CHECK(va[i].verdict == RK_VERDICT_PASS || va[i].verdict == RK_VERDICT_REJECT, "verdict");
            CHECK(va[i].verdict == RK_VERDICT_PASS || va[i].rule_id != 0, "reject without a rule");
            CHECK(va[i]._pad62[0] == 0 && va[i]._pad62[1] == 0, "padding not zeroed");
            passed += va[i].verdict == RK_VERDICT_PASS;
            rejected += va[i].verdict == RK_VERDICT_REJECT;
        }
        check_sums(&a);
        uint64_t m = (uint64_t)between(0, 8);
        for (uint64_t i = 0; i < m; i++)
            make_report(&reports[i]);
        int64_t ga = rk_apply_reports(&a.st, reports, m);
        int64_t gb = rk_apply_reports(&b.st, reports, m);
        CHECK(ga >= 0 && ga == gb, "apply_reports %lld vs %lld", (long long)ga, (long long)gb);
        check_sums(&a);
        CHECK(same_state(&a, &b), "state after reports");
    }
    /* Bad arguments are refused without touching anything. */
    CHECK(rk_check_batch(NULL, &limits, orders, 1, refs, 1, 0, now, 0, va) == -EINVAL, "null st");
    CHECK(rk_check_batch(&a.st, &limits, orders, 2, refs, 1, RK_REF_PER_ORDER, now, 0, va) == -EINVAL,
          "short refs");
    CHECK(rk_check_batch(&a.st, &limits, orders, 1, refs, 1, 7, now, 0, va) == -EINVAL, "ref mode");
    CHECK(rk_apply_reports(&a.st, NULL, 1) == -EINVAL, "null reports");
    /* Every rule fired at least once: the stream reaches all of the engine. */
    for (unsigned r = 1; r < RK_NUM_RULES; r++)
        CHECK(a.counters[r * RK_CTR_COLS + RK_CTR_HITS] > 0, "rule %u never fired", r);
    printf("%-28s rounds %d passed %llu rejected %llu live %lld positions %lld\n", name, rounds,
           (unsigned long long)passed, (unsigned long long)rejected,
           (long long)a.meta[RK_M_LIVE_ORDERS], (long long)a.meta[RK_M_POSITIONS]);
}

/* Exact replays: two fresh states fed identical inputs end byte-identical. */
static void determinism(uint64_t seed)
{
    static engine_t a, b;
    rk_order_request_t orders[16];
    rk_risk_verdict_t va[16], vb[16];
    rk_execution_report_t reports[8];
    int64_t table[(N_INSTR - 1) * RK_REF_COLS];
    uint64_t digests[2] = {0, 0};
    for (int pass = 0; pass < 2; pass++) {
        engine_t *e = pass ? &b : &a;
        rk_risk_verdict_t *v = pass ? vb : va;
        rng_state = seed;
        n_issued = 0;
        next_id = 1;
        limits_init(1);
        engine_init(e);
        int64_t now = 5;
        uint64_t digest = 1469598103934665603ull;
        for (int round = 0; round < 3000; round++) {
            now += between(0, 3000000);
            for (int i = 0; i < (N_INSTR - 1) * (int)RK_REF_COLS; i++)
                table[i] = i % RK_REF_COLS == 3 ? now - between(0, 5000) : PX + between(-100, 100);
            uint64_t n = (uint64_t)between(0, 16);
            for (uint64_t i = 0; i < n; i++)
                make_order(&orders[i]);
            CHECK(rk_check_batch(&e->st, &limits, orders, n, table, N_INSTR - 1,
                                 RK_REF_BY_INSTRUMENT, now, 0, v) == (int64_t)n, "batch");
            for (uint64_t i = 0; i < n * sizeof *v; i++)
                digest = (digest ^ ((const uint8_t *)v)[i]) * 1099511628211ull;
            uint64_t m = (uint64_t)between(0, 8);
            for (uint64_t i = 0; i < m; i++)
                make_report(&reports[i]);
            CHECK(rk_apply_reports(&e->st, reports, m) >= 0, "reports");
        }
        digests[pass] = digest;
    }
    CHECK(digests[0] == digests[1], "identical inputs gave different verdicts");
    CHECK(same_state(&a, &b) && a.meta[RK_M_BATCHES] == b.meta[RK_M_BATCHES],
          "identical inputs gave different states");
    check_sums(&a);
    printf("%-28s identical state and verdict digest\n", "determinism");
}

int main(void)
{
    run("enforced small tables", 0x1234567u, 0, 20000);
    run("random modes", 0xDEADBEEFu, 1, 20000);
    run("random modes, other seed", 0xC0FFEEu, 1, 20000);
    determinism(0xABCDEFu);
    printf("risk_sanitize: all checks passed\n");
    return 0;
}
