/*
 * Tectra order book (see book.h for the contract and docs/books.md for the structures).
 *
 * Order table: open addressing with linear probing and backward-shift deletion (no
 * tombstones, so probe lengths never degrade over a trading day). The slot of a reference is
 * (ref + mix(ref >> 16)) & mask: ITCH assigns references in increasing order, so consecutive
 * references of one 64 Ki block land in consecutive slots (adds write sequentially and the
 * short-lived orders most events touch stay in cache), while blocks start at hashed offsets
 * so strided or adversarial references cannot pile into one cluster.
 *
 * Levels: each side of each instrument owns a power-of-two block of the level arena holding
 * its levels sorted worst..best. Lookups scan down from the best level (most events are near
 * the top) and fall back to binary search past 8 levels; insert/delete memmove only the
 * levels between the change and the top. A full block moves to one twice as big; freed
 * blocks go to a free list per size class.
 */
#include "book.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

_Static_assert(sizeof(bk_order_t) == 24, "order slot");
_Static_assert(sizeof(bk_level_t) == 24, "level");
_Static_assert(sizeof(bk_side_t) == 16, "side");
_Static_assert(sizeof(bk_instrument_t) == 88, "instrument");
_Static_assert(sizeof(bk_itch_event_t) == 128, "ITCH_EVENT size");
_Static_assert(offsetof(bk_itch_event_t, msg_type) == 24, "ITCH_EVENT.msg_type");
_Static_assert(offsetof(bk_itch_event_t, stock_locate) == 28, "ITCH_EVENT.stock_locate");
_Static_assert(offsetof(bk_itch_event_t, exch_ts_ns) == 32, "ITCH_EVENT.exch_ts_ns");
_Static_assert(offsetof(bk_itch_event_t, order_ref) == 40, "ITCH_EVENT.order_ref");
_Static_assert(offsetof(bk_itch_event_t, ref2) == 48, "ITCH_EVENT.ref2");
_Static_assert(offsetof(bk_itch_event_t, shares) == 56, "ITCH_EVENT.shares");
_Static_assert(offsetof(bk_itch_event_t, price) == 64, "ITCH_EVENT.price");
_Static_assert(offsetof(bk_itch_event_t, raw) == 72, "ITCH_EVENT.raw");
_Static_assert(sizeof(bk_book_update_t) == 128, "BOOK_UPDATE size");
_Static_assert(offsetof(bk_book_update_t, instrument_id) == 24, "BOOK_UPDATE.instrument_id");
_Static_assert(offsetof(bk_book_update_t, level) == 30, "BOOK_UPDATE.level");
_Static_assert(offsetof(bk_book_update_t, symbol) == 32, "BOOK_UPDATE.symbol");
_Static_assert(offsetof(bk_book_update_t, price) == 40, "BOOK_UPDATE.price");
_Static_assert(offsetof(bk_book_update_t, order_count) == 56, "BOOK_UPDATE.order_count");
_Static_assert(offsetof(bk_book_update_t, exch_ts_ns) == 64, "BOOK_UPDATE.exch_ts_ns");
_Static_assert(sizeof(bk_tick_t) == 128, "TICK size");
_Static_assert(offsetof(bk_tick_t, trading_state) == 28, "TICK.trading_state");
_Static_assert(offsetof(bk_tick_t, symbol) == 32, "TICK.symbol");
_Static_assert(offsetof(bk_tick_t, bid_px) == 40, "TICK.bid_px");
_Static_assert(offsetof(bk_tick_t, bid_orders) == 72, "TICK.bid_orders");
_Static_assert(offsetof(bk_tick_t, last_px) == 80, "TICK.last_px");
_Static_assert(offsetof(bk_tick_t, exch_ts_ns) == 104, "TICK.exch_ts_ns");
_Static_assert(sizeof(bk_trade_t) == 128, "TRADE size");
_Static_assert(offsetof(bk_trade_t, aggressor_side) == 28, "TRADE.aggressor_side");
_Static_assert(offsetof(bk_trade_t, symbol) == 32, "TRADE.symbol");
_Static_assert(offsetof(bk_trade_t, match_number) == 56, "TRADE.match_number");
_Static_assert(offsetof(bk_trade_t, exch_ts_ns) == 80, "TRADE.exch_ts_ns");
_Static_assert(BK_M_COUNTERS + BK_C_COUNT <= BK_META_WORDS, "meta words");
_Static_assert(BK_M_FREE_HEAD + BK_NUM_CLASSES <= BK_M_COUNTERS, "free heads");

#define COUNT(b, cause) ((b)->meta[BK_M_COUNTERS + (cause)]++)
#define BK_PREFETCH_AHEAD 8u

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    return x ^ (x >> 33);
}

static inline uint64_t home_slot(const bk_book_t *b, uint64_t ref)
{
    return (ref + mix64(ref >> 16)) & b->table_mask;
}

static inline int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static inline uint32_t log2_u32(uint32_t x)
{
    uint32_t r = 0;
    while (x >>= 1)
        r++;
    return r;
}

/* ------------------------------------------------------------------ setup */

int bk_init_meta(uint64_t *meta, uint64_t table_size, uint64_t max_orders, uint64_t arena_size,
                 uint64_t max_instruments, uint64_t max_levels)
{
    if (!meta || !is_pow2(table_size) || table_size > (1ull << 40) || max_orders == 0 ||
        max_orders >= table_size || arena_size == 0 || arena_size >= BK_NONE ||
        max_instruments == 0 || max_instruments > BK_MAX_INSTRUMENTS || !is_pow2(max_levels) ||
        max_levels < (1u << BK_MIN_CLASS) || max_levels > (1u << BK_MAX_CLASS) ||
        arena_size % max_levels || max_orders >= BK_FREE_MARK)
        return -EINVAL;
    memset(meta, 0, BK_META_WORDS * sizeof *meta);
    meta[BK_M_LAYOUT] = BK_LAYOUT_VERSION;
    meta[BK_M_TABLE_SIZE] = table_size;
    meta[BK_M_MAX_ORDERS] = max_orders;
    meta[BK_M_ARENA_SIZE] = arena_size;
    meta[BK_M_MAX_INSTR] = max_instruments;
    meta[BK_M_MAX_LEVELS] = max_levels;
    for (uint32_t c = 0; c < BK_NUM_CLASSES; c++)
        meta[BK_M_FREE_HEAD + c] = BK_NONE;
    return 0;
}

void bk_init_instruments(bk_instrument_t *instruments, uint64_t n)
{
    memset(instruments, 0, n * sizeof *instruments);
    for (uint64_t i = 0; i < n; i++)
        for (int s = 0; s < 2; s++)
            instruments[i].side[s].off = BK_NONE;
}

int bk_bind(bk_book_t *b, void *orders, uint64_t table_size, void *levels, uint64_t arena_size,
            void *instruments, uint64_t n_instruments, uint64_t *meta, uint64_t meta_words)
{
    if (!b || !orders || !levels || !instruments || !meta || meta_words != BK_META_WORDS)
        return -EINVAL;
    if (meta[BK_M_LAYOUT] != BK_LAYOUT_VERSION || meta[BK_M_TABLE_SIZE] != table_size ||
        meta[BK_M_ARENA_SIZE] != arena_size || meta[BK_M_MAX_INSTR] != n_instruments ||
        !is_pow2(table_size) || meta[BK_M_MAX_ORDERS] >= table_size ||
        meta[BK_M_LIVE_ORDERS] > meta[BK_M_MAX_ORDERS] || meta[BK_M_ARENA_USED] > arena_size ||
        n_instruments == 0 || n_instruments > BK_MAX_INSTRUMENTS || arena_size >= BK_NONE ||
        !is_pow2(meta[BK_M_MAX_LEVELS]) || meta[BK_M_MAX_LEVELS] < (1u << BK_MIN_CLASS) ||
        meta[BK_M_MAX_LEVELS] > (1u << BK_MAX_CLASS) || arena_size % meta[BK_M_MAX_LEVELS] ||
        meta[BK_M_MAX_ORDERS] >= BK_FREE_MARK)
        return -EBADMSG;
    b->orders = orders;
    b->levels = levels;
    b->instruments = instruments;
    b->meta = meta;
    b->table_mask = table_size - 1;
    b->max_orders = meta[BK_M_MAX_ORDERS];
    b->arena_size = (uint32_t)arena_size;
    b->max_instruments = (uint32_t)n_instruments;
    b->max_levels = (uint32_t)meta[BK_M_MAX_LEVELS];
    b->_reserved = 0;
    return 0;
}

/* ------------------------------------------------------------------ order table */

/* Slot holding ref, or the empty slot where it would go (*found says which). The table is
 * never full (max_orders < table size), so the probe always ends. */
static inline uint64_t order_probe(const bk_book_t *b, uint64_t ref, int *found)
{
    uint64_t i = home_slot(b, ref);
    for (;;) {
        uint64_t r = b->orders[i].ref;
        if (r == ref) {
            *found = 1;
            return i;
        }
        if (r == 0) {
            *found = 0;
            return i;
        }
        i = (i + 1) & b->table_mask;
    }
}

/* Backward-shift deletion: pull later members of the probe run into the hole so every
 * remaining key stays reachable from its home slot without tombstones. */
static void order_erase(bk_book_t *b, uint64_t hole)
{
    const uint64_t mask = b->table_mask;
    uint64_t j = hole;
    for (;;) {
        j = (j + 1) & mask;
        uint64_t r = b->orders[j].ref;
        if (r == 0)
            break;
        uint64_t k = home_slot(b, r);
        /* Entry j may move into the hole unless its home lies cyclically in (hole, j]. */
        int stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
        if (stays)
            continue;
        b->orders[hole] = b->orders[j];
        hole = j;
    }
    memset(&b->orders[hole], 0, sizeof b->orders[hole]);
}

int64_t bk_find_order(const bk_book_t *b, uint64_t ref)
{
    if (ref == 0)
        return -ENOENT;
    int found;
    uint64_t i = order_probe(b, ref, &found);
    return found ? (int64_t)i : -ENOENT;
}

/* ------------------------------------------------------------------ level arena */

/* Buddy allocator over the arena. Top blocks of max_levels slots are taken from a bump
 * pointer (so untouched memory stays untouched) and split in halves on demand; a freed block
 * merges with its buddy (offset ^ size) whenever that is free and of the same size. So the
 * blocks a side leaves behind as it grows are reusable by any size, and the arena only
 * fragments down to the smallest class. A free block's first slot is its list node:
 * price = prev, qty = next, orders = BK_FREE_MARK, _reserved = class. */
static void freelist_push(bk_book_t *b, uint32_t off, uint32_t cls)
{
    uint64_t head = b->meta[BK_M_FREE_HEAD + cls];
    b->levels[off] = (bk_level_t){
        .price = BK_NONE, .qty = (int64_t)head, .orders = BK_FREE_MARK, ._reserved = cls};
    if (head != BK_NONE)
        b->levels[head].price = off;
    b->meta[BK_M_FREE_HEAD + cls] = off;
}

static void freelist_remove(bk_book_t *b, uint32_t off, uint32_t cls)
{
    bk_level_t *node = &b->levels[off];
    uint64_t prev = (uint64_t)node->price, next = (uint64_t)node->qty;
    if (prev != BK_NONE)
        b->levels[prev].qty = (int64_t)next;
    else
        b->meta[BK_M_FREE_HEAD + cls] = next;
    if (next != BK_NONE)
        b->levels[next].price = (int64_t)prev;
    *node = (bk_level_t){0}; /* no longer a free node */
}

static uint32_t arena_alloc(bk_book_t *b, uint32_t cls)
{
    uint32_t top = log2_u32(b->max_levels);
    uint32_t c = cls;
    while (c <= top && b->meta[BK_M_FREE_HEAD + c] == BK_NONE)
        c++;
    uint32_t off;
    if (c > top) {
        uint64_t used = b->meta[BK_M_ARENA_USED];
        if (used + b->max_levels > b->arena_size)
            return BK_NONE;
        b->meta[BK_M_ARENA_USED] = used + b->max_levels;
        off = (uint32_t)used;
        c = top;
        b->levels[off] = (bk_level_t){0};
    } else {
        off = (uint32_t)b->meta[BK_M_FREE_HEAD + c];
        freelist_remove(b, off, c);
    }
    while (c > cls) {
        c--;
        freelist_push(b, off + (1u << c), c);
    }
    return off;
}

static void arena_free(bk_book_t *b, uint32_t off, uint32_t cls)
{
    uint32_t top = log2_u32(b->max_levels);
    while (cls < top) {
        uint32_t buddy = off ^ (1u << cls);
        const bk_level_t *node = &b->levels[buddy];
        if (node->orders != BK_FREE_MARK || node->_reserved != cls)
            break;
        freelist_remove(b, buddy, cls);
        off &= ~(1u << cls);
        cls++;
    }
    freelist_push(b, off, cls);
}

/* Make room for one more level; 0 or the BK_C_* cause of refusal. */
static uint32_t side_grow(bk_book_t *b, bk_side_t *sd)
{
    if (sd->cap >= b->max_levels)
        return BK_C_DEPTH_FULL;
    uint32_t cls = sd->cap ? log2_u32(sd->cap) + 1 : BK_MIN_CLASS;
    uint32_t off = arena_alloc(b, cls);
    if (off == BK_NONE)
        return BK_C_LEVEL_POOL_FULL;
    if (sd->cap) {
        memcpy(&b->levels[off], &b->levels[sd->off], sd->n * sizeof(bk_level_t));
        arena_free(b, sd->off, log2_u32(sd->cap));
    }
    sd->off = off;
    sd->cap = 1u << cls;
    return 0;
}

static inline int better(int is_bid, int64_t a, int64_t b) { return is_bid ? a > b : a < b; }

/* Index of price in lv[0..n) (sorted worst..best), or where it would be inserted. */
static inline uint32_t level_find(const bk_level_t *lv, uint32_t n, int is_bid, int64_t px,
                                  int *found)
{
    uint32_t i = n;
    uint32_t lim = n > 8 ? n - 8 : 0;
    while (i > lim) {
        int64_t p = lv[i - 1].price;
        if (p == px) {
            *found = 1;
            return i - 1;
        }
        if (!better(is_bid, p, px)) {
            *found = 0;
            return i;
        }
        i--;
    }
    /* Deep in the book: everything at or above i is better than px. */
    uint32_t lo = 0, hi = i;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int64_t p = lv[mid].price;
        if (p == px) {
            *found = 1;
            return mid;
        }
        if (better(is_bid, p, px))
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = 0;
    return lo;
}

/* ------------------------------------------------------------------ outputs */

typedef struct ctx {
    bk_book_t *b;
    bk_out_t *o;
    const bk_itch_event_t *e;
    uint32_t flags;
} ctx_t;

static inline uint64_t next_seq(bk_book_t *b) { return ++b->meta[BK_M_OUT_SEQ]; }

static void emit_update(ctx_t *c, uint32_t ii, uint32_t s, uint8_t action, uint32_t level,
                        const bk_level_t *lv)
{
    bk_book_update_t *u = &c->o->updates[c->o->n_updates++];
    const bk_instrument_t *in = &c->b->instruments[ii];
    *u = (bk_book_update_t){
        .type_id = BK_TYPE_BOOK_UPDATE,
        .version = BK_VERSION_BOOK_UPDATE,
        .flags = c->flags,
        .seq = next_seq(c->b),
        .ts_ns = c->e->ts_ns,
        .instrument_id = ii,
        .side = s == BK_BID ? BK_SIDE_BUY : BK_SIDE_SELL,
        .action = action,
        .level = (uint16_t)level,
        .price = lv->price,
        .qty = action == BK_ACTION_DELETE ? 0 : lv->qty,
        .order_count = action == BK_ACTION_DELETE ? 0 : lv->orders,
        .exch_ts_ns = c->e->exch_ts_ns,
    };
    memcpy(u->symbol, in->symbol, sizeof u->symbol);
}

static void emit_trade(ctx_t *c, uint32_t ii, uint8_t aggressor, uint8_t kind, int64_t px,
                       int64_t qty, uint64_t buy_ref, uint64_t sell_ref)
{
    bk_trade_t *t = &c->o->trades[c->o->n_trades++];
    *t = (bk_trade_t){
        .type_id = BK_TYPE_TRADE,
        .version = BK_VERSION_TRADE,
        .flags = c->flags,
        .seq = next_seq(c->b),
        .ts_ns = c->e->ts_ns,
        .instrument_id = ii,
        .aggressor_side = aggressor,
        .trade_kind = kind,
        .price = px,
        .qty = qty,
        .match_number = c->e->ref2,
        .buy_order_ref = buy_ref,
        .sell_order_ref = sell_ref,
        .exch_ts_ns = c->e->exch_ts_ns,
    };
    memcpy(t->symbol, c->b->instruments[ii].symbol, sizeof t->symbol);
}

typedef struct top {
    int64_t px[2];
    int64_t qty[2];
    uint32_t orders[2];
} top_t;

static inline void top_of(const bk_book_t *b, const bk_instrument_t *in, top_t *t)
{
    for (int s = 0; s < 2; s++) {
        const bk_side_t *sd = &in->side[s];
        if (sd->n) {
            const bk_level_t *lv = &b->levels[sd->off + sd->n - 1];
            t->px[s] = lv->price;
            t->qty[s] = lv->qty;
            t->orders[s] = lv->orders;
        } else {
            t->px[s] = 0;
            t->qty[s] = 0;
            t->orders[s] = 0;
        }
    }
}

static inline int top_eq(const top_t *a, const top_t *b)
{
    return a->px[0] == b->px[0] && a->px[1] == b->px[1] && a->qty[0] == b->qty[0] &&
           a->qty[1] == b->qty[1] && a->orders[0] == b->orders[0] &&
           a->orders[1] == b->orders[1];
}

static void emit_tick(ctx_t *c, uint32_t ii, const top_t *t)
{
    const bk_instrument_t *in = &c->b->instruments[ii];
    bk_tick_t *k = &c->o->ticks[c->o->n_ticks++];
    *k = (bk_tick_t){
        .type_id = BK_TYPE_TICK,
        .version = BK_VERSION_TICK,
        .flags = c->flags,
        .seq = next_seq(c->b),
        .ts_ns = c->e->ts_ns,
        .instrument_id = ii,
        .trading_state = in->trading_state,
        .bid_px = t->px[BK_BID],
        .bid_qty = t->qty[BK_BID],
        .ask_px = t->px[BK_ASK],
        .ask_qty = t->qty[BK_ASK],
        .bid_orders = t->orders[BK_BID],
        .ask_orders = t->orders[BK_ASK],
        .last_px = in->last_px,
        .last_qty = in->last_qty,
        .last_update_ns = in->top_ts_ns,
        .exch_ts_ns = in->top_exch_ts_ns,
    };
    memcpy(k->symbol, in->symbol, sizeof k->symbol);
}

/* ------------------------------------------------------------------ level changes */

/* One more order of qty at px; 0 or the BK_C_* cause of refusal (book untouched then). */
static uint32_t level_add(ctx_t *c, uint32_t ii, uint32_t s, int64_t px, int64_t qty)
{
    bk_book_t *b = c->b;
    bk_side_t *sd = &b->instruments[ii].side[s];
    int is_bid = s == BK_BID;
    int found = 0;
    uint32_t k = sd->n ? level_find(b->levels + sd->off, sd->n, is_bid, px, &found) : 0;
    if (found) {
        bk_level_t *lv = &b->levels[sd->off + k];
        lv->qty += qty;
        lv->orders++;
        emit_update(c, ii, s, BK_ACTION_CHANGE, sd->n - 1 - k, lv);
        return 0;
    }
    if (sd->n == sd->cap) {
        uint32_t cause = side_grow(b, sd);
        if (cause)
            return cause;
    }
    bk_level_t *base = b->levels + sd->off;
    memmove(base + k + 1, base + k, (size_t)(sd->n - k) * sizeof *base);
    base[k] = (bk_level_t){.price = px, .qty = qty, .orders = 1};
    sd->n++;
    emit_update(c, ii, s, BK_ACTION_ADD, sd->n - 1 - k, &base[k]);
    return 0;
}

/* Take qty (and one order if gone) off the level at px. */
static void level_take(ctx_t *c, uint32_t ii, uint32_t s, int64_t px, int64_t qty, int gone)
{
    bk_book_t *b = c->b;
    bk_side_t *sd = &b->instruments[ii].side[s];
    int found = 0;
    uint32_t k = sd->n ? level_find(b->levels + sd->off, sd->n, s == BK_BID, px, &found) : 0;
    if (!found) {
        COUNT(b, BK_C_INTERNAL); /* an order without its level: never expected */
        return;
    }
    bk_level_t *base = b->levels + sd->off;
    bk_level_t *lv = &base[k];
    lv->qty -= qty;
    lv->orders -= gone ? 1u : 0u;
    uint32_t level = sd->n - 1 - k;
    if (lv->orders == 0) {
        bk_level_t old = *lv;
        memmove(base + k, base + k + 1, (size_t)(sd->n - k - 1) * sizeof *base);
        sd->n--;
        emit_update(c, ii, s, BK_ACTION_DELETE, level, &old);
    } else {
        emit_update(c, ii, s, BK_ACTION_CHANGE, level, lv);
    }
}

/* ------------------------------------------------------------------ events */

static inline int valid_shares(uint64_t shares) { return shares > 0 && shares <= UINT32_MAX; }

static inline uint8_t side_code(uint32_t s) { return s == BK_BID ? BK_SIDE_BUY : BK_SIDE_SELL; }

/* Add a new order; 0 or the cause of refusal. */
static uint32_t order_add(ctx_t *c, uint64_t ref, uint32_t ii, uint32_t s, int64_t px,
                          uint32_t shares)
{
    bk_book_t *b = c->b;
    int found;
    uint64_t slot = order_probe(b, ref, &found);
    if (found)
        return BK_C_DUPLICATE_REF;
    if (b->meta[BK_M_LIVE_ORDERS] >= b->max_orders)
        return BK_C_ORDER_TABLE_FULL;
    uint32_t cause = level_add(c, ii, s, px, shares);
    if (cause)
        return cause;
    b->orders[slot] = (bk_order_t){
        .ref = ref, .price = px, .shares = shares, .instrument = (uint16_t)ii, .side = (uint8_t)s};
    b->meta[BK_M_LIVE_ORDERS]++;
    b->instruments[ii].live_orders++;
    return 0;
}

/* Remove `shares` from a live order (deleting it at zero). */
static void order_reduce(ctx_t *c, uint64_t slot, uint32_t shares)
{
    bk_book_t *b = c->b;
    bk_order_t *o = &b->orders[slot];
    int gone = shares == o->shares;
    level_take(c, o->instrument, o->side, o->price, shares, gone);
    if (gone) {
        b->instruments[o->instrument].live_orders--;
        b->meta[BK_M_LIVE_ORDERS]--;
        order_erase(b, slot);
    } else {
        o->shares -= shares;
    }
}

/* Look up the order an E/C/X/D/U refers to; slot or -1 with the cause counted. */
static int64_t order_for(ctx_t *c, uint32_t ii)
{
    const bk_itch_event_t *e = c->e;
    if (e->order_ref == 0) {
        COUNT(c->b, BK_C_BAD_REF);
        return -1;
    }
    int found;
    uint64_t slot = order_probe(c->b, e->order_ref, &found);
    if (!found) {
        COUNT(c->b, BK_C_UNKNOWN_REF);
        return -1;
    }
    if (c->b->orders[slot].instrument != ii) {
        COUNT(c->b, BK_C_INSTR_MISMATCH);
        return -1;
    }
    return (int64_t)slot;
}

static int is_ignored_type(uint8_t t)
{
    switch (t) {
    case 'S': case 'Y': case 'L': case 'V': case 'W': case 'K':
    case 'J': case 'h': case 'I': case 'N': case 'O':
        return 1;
    default:
        return 0;
    }
}

/* Apply one event whose instrument index is valid. Returns 1 if last trade / trading state
 * changed (a TICK is due even if the top did not move). */
static int apply_one(ctx_t *c, uint32_t ii)
{
    bk_book_t *b = c->b;
    const bk_itch_event_t *e = c->e;
    bk_instrument_t *in = &b->instruments[ii];
    switch (e->msg_type) {
    case 'A':
    case 'F': {
        uint32_t s = e->side == 'B' ? BK_BID : e->side == 'S' ? BK_ASK : 2u;
        uint32_t cause = s == 2u             ? BK_C_BAD_SIDE
                         : e->price <= 0     ? BK_C_BAD_PRICE
                         : !valid_shares(e->shares) ? BK_C_BAD_SHARES
                         : e->order_ref == 0 ? BK_C_BAD_REF
                                             : 0;
        if (!cause)
            cause = order_add(c, e->order_ref, ii, s, e->price, (uint32_t)e->shares);
        COUNT(b, cause ? cause : BK_C_ADDS);
        return 0;
    }
    case 'E':
    case 'C': {
        int with_price = e->msg_type == 'C';
        if (!valid_shares(e->shares)) {
            COUNT(b, BK_C_BAD_SHARES);
            return 0;
        }
        if (with_price && e->price <= 0) {
            COUNT(b, BK_C_BAD_PRICE);
            return 0;
        }
        int64_t slot = order_for(c, ii);
        if (slot < 0)
            return 0;
        bk_order_t o = b->orders[slot];
        if (e->shares > o.shares) {
            COUNT(b, BK_C_EXEC_EXCEEDS);
            return 0;
        }
        order_reduce(c, (uint64_t)slot, (uint32_t)e->shares);
        COUNT(b, BK_C_EXECUTES);
        if (with_price && e->aux == 'N') {
            /* Non-printable: the shares print later (e.g. in a cross); no trade, no last. */
            COUNT(b, BK_C_NONPRINTABLE);
            return 0;
        }
        int64_t px = with_price ? e->price : o.price;
        in->last_px = px;
        in->last_qty = (int64_t)e->shares;
        /* The resting order is the passive side; the incoming one took liquidity. */
        emit_trade(c, ii, side_code(o.side ^ 1u), with_price ? 'C' : 'E', px, (int64_t)e->shares,
                   o.side == BK_BID ? o.ref : 0, o.side == BK_ASK ? o.ref : 0);
        return 1;
    }
    case 'X': {
        if (!valid_shares(e->shares)) {
            COUNT(b, BK_C_BAD_SHARES);
            return 0;
        }
        int64_t slot = order_for(c, ii);
        if (slot < 0)
            return 0;
        if (e->shares > b->orders[slot].shares) {
            COUNT(b, BK_C_CANCEL_EXCEEDS);
            return 0;
        }
        order_reduce(c, (uint64_t)slot, (uint32_t)e->shares);
        COUNT(b, BK_C_CANCELS);
        return 0;
    }
    case 'D': {
        int64_t slot = order_for(c, ii);
        if (slot < 0)
            return 0;
        order_reduce(c, (uint64_t)slot, b->orders[slot].shares);
        COUNT(b, BK_C_DELETES);
        return 0;
    }
    case 'U': {
        uint32_t cause = e->price <= 0                ? BK_C_BAD_PRICE
                         : !valid_shares(e->shares)   ? BK_C_BAD_SHARES
                         : e->ref2 == 0               ? BK_C_BAD_REF
                         : bk_find_order(b, e->ref2) >= 0 ? BK_C_DUPLICATE_REF
                                                        : 0;
        if (cause) {
            COUNT(b, cause);
            return 0;
        }
        int64_t slot = order_for(c, ii);
        if (slot < 0)
            return 0;
        uint32_t s = b->orders[slot].side;
        order_reduce(c, (uint64_t)slot, b->orders[slot].shares);
        /* The old order is gone, so the table has room; only the level can refuse. */
        cause = order_add(c, e->ref2, ii, s, e->price, (uint32_t)e->shares);
        COUNT(b, BK_C_REPLACES);
        if (cause)
            COUNT(b, cause);
        return 0;
    }
    case 'P':
    case 'Q': {
        int cross = e->msg_type == 'Q';
        if (e->shares == 0) {
            COUNT(b, BK_C_ZERO_QTY_TRADE);
            return 0;
        }
        if (e->price <= 0) {
            COUNT(b, BK_C_BAD_PRICE);
            return 0;
        }
        uint8_t aggressor = 0;
        uint64_t buy_ref = 0, sell_ref = 0;
        if (!cross && (e->side == 'B' || e->side == 'S')) {
            /* P's side is the resting non-displayed order's; the other side aggressed. */
            aggressor = e->side == 'B' ? BK_SIDE_SELL : BK_SIDE_BUY;
            if (e->side == 'B')
                buy_ref = e->order_ref;
            else
                sell_ref = e->order_ref;
        }
        in->last_px = e->price;
        in->last_qty = (int64_t)e->shares;
        emit_trade(c, ii, aggressor, cross ? 'Q' : 'P', e->price, (int64_t)e->shares, buy_ref,
                   sell_ref);
        COUNT(b, cross ? BK_C_CROSSES : BK_C_TRADES);
        return 1;
    }
    case 'B':
        emit_trade(c, ii, 0, 'B', 0, 0, 0, 0);
        COUNT(b, BK_C_BROKEN);
        return 0;
    case 'H': {
        COUNT(b, BK_C_TRADING_ACTIONS);
        if (in->trading_state == e->aux)
            return 0;
        in->trading_state = e->aux;
        return 1;
    }
    case 'R':
        /* Stock Directory: the symbol is the 8 bytes after the 11-byte common ITCH header. */
        memcpy(in->symbol, e->raw + 11, sizeof in->symbol);
        COUNT(b, BK_C_DIRECTORY);
        return 0;
    default:
        COUNT(b, is_ignored_type(e->msg_type) ? BK_C_IGNORED : BK_C_UNKNOWN_TYPE);
        return 0;
    }
}

int64_t bk_apply(bk_book_t *b, const bk_itch_event_t *events, uint64_t n, bk_out_t *out)
{
    if (!b || !b->meta || !out || (n && !events) || out->n_updates > out->updates_cap ||
        out->n_ticks > out->ticks_cap || out->n_trades > out->trades_cap)
        return -EINVAL;
    ctx_t c = {.b = b, .o = out};
    uint64_t i = 0;
    for (; i < n; i++) {
        if (out->updates_cap - out->n_updates < BK_MAX_UPDATES_PER_EVENT ||
            out->ticks_cap - out->n_ticks < BK_MAX_TICKS_PER_EVENT ||
            out->trades_cap - out->n_trades < BK_MAX_TRADES_PER_EVENT)
            break;
        if (i + BK_PREFETCH_AHEAD < n) {
            /* The order slot and instrument of an event a few ahead are usually cache misses
             * (the table is tens of MB): start loading them now, overlapping the misses. */
            const bk_itch_event_t *ahead = &events[i + BK_PREFETCH_AHEAD];
            __builtin_prefetch(&b->orders[home_slot(b, ahead->order_ref)], 0, 1);
            if (ahead->stock_locate < b->max_instruments)
                __builtin_prefetch(&b->instruments[ahead->stock_locate], 0, 1);
        }
        const bk_itch_event_t *e = &events[i];
        COUNT(b, BK_C_EVENTS);
        if (e->type_id != BK_TYPE_ITCH_EVENT || e->version != BK_VERSION_ITCH_EVENT) {
            COUNT(b, BK_C_BAD_RECORD);
            continue;
        }
        b->meta[BK_M_LAST_SEQ] = e->seq;
        b->meta[BK_M_LAST_TS] = (uint64_t)e->ts_ns;
        b->meta[BK_M_LAST_EXCH_TS] = (uint64_t)e->exch_ts_ns;
        c.e = e;
        c.flags = e->flags & BK_FLAGS_PROPAGATED;
        uint32_t ii = e->stock_locate;
        if (ii >= b->max_instruments) {
            COUNT(b, is_ignored_type(e->msg_type) ? BK_C_IGNORED : BK_C_BAD_INSTRUMENT);
            continue;
        }
        bk_instrument_t *in = &b->instruments[ii];
        top_t before, after;
        top_of(b, in, &before);
        int due = apply_one(&c, ii);
        top_of(b, in, &after);
        if (!top_eq(&before, &after)) {
            in->top_ts_ns = e->ts_ns;
            in->top_exch_ts_ns = e->exch_ts_ns;
            due = 1;
        }
        if (due)
            emit_tick(&c, ii, &after);
    }
    return (int64_t)i;
}

int64_t bk_top_levels(const bk_book_t *b, const uint32_t *instruments, uint64_t n,
                      uint32_t depth, int64_t *px, int64_t *qty, uint32_t *orders)
{
    if (!b || (n && (!instruments || !px || !qty || !orders)))
        return -EINVAL;
    for (uint64_t i = 0; i < n; i++)
        if (instruments[i] >= b->max_instruments)
            return -EINVAL;
    for (uint64_t i = 0; i < n; i++) {
        const bk_instrument_t *in = &b->instruments[instruments[i]];
        for (uint32_t s = 0; s < 2; s++) {
            const bk_side_t *sd = &in->side[s];
            size_t row = ((size_t)i * 2 + s) * depth;
            for (uint32_t k = 0; k < depth; k++) {
                if (k < sd->n) {
                    const bk_level_t *lv = &b->levels[sd->off + sd->n - 1 - k];
                    px[row + k] = lv->price;
                    qty[row + k] = lv->qty;
                    orders[row + k] = lv->orders;
                } else {
                    px[row + k] = 0;
                    qty[row + k] = 0;
                    orders[row + k] = 0;
                }
            }
        }
    }
    return (int64_t)n;
}

/* ------------------------------------------------------------------ reference table */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int64_t bk_ref_write(uint64_t *gens, uint64_t *rows, uint64_t n_rows, const void *ticks,
                     uint64_t n)
{
    if (!gens || !rows || (n && !ticks))
        return -EINVAL;
    const unsigned char *src = ticks;
    int64_t written = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t w[BK_REF_ROW_WORDS];
        memcpy(w, src + i * sizeof w, sizeof w);
        uint32_t id;
        memcpy(&id, src + i * sizeof w + offsetof(bk_tick_t, instrument_id), sizeof id);
        if (id >= n_rows)
            continue;
        uint64_t *g = &gens[id];
        uint64_t *row = &rows[(uint64_t)id * BK_REF_ROW_WORDS];
        /* Odd while writing (| 1 also recovers from a writer that died mid-write). */
        uint64_t start = __atomic_load_n(g, __ATOMIC_RELAXED) | 1u;
        __atomic_store_n(g, start, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        for (uint32_t k = 0; k < BK_REF_ROW_WORDS; k++)
            __atomic_store_n(&row[k], w[k], __ATOMIC_RELAXED);
        __atomic_store_n(g, start + 1, __ATOMIC_RELEASE);
        written++;
    }
    return written;
}

int bk_ref_read(const uint64_t *gens, const uint64_t *rows, uint64_t n_rows, uint64_t index,
                void *out, uint32_t max_spins)
{
    if (!gens || !rows || !out || index >= n_rows)
        return -EINVAL;
    const uint64_t *g = &gens[index];
    const uint64_t *row = &rows[index * BK_REF_ROW_WORDS];
    uint64_t w[BK_REF_ROW_WORDS];
    for (uint32_t spin = 0; spin <= max_spins; spin++) {
        uint64_t g1 = __atomic_load_n(g, __ATOMIC_ACQUIRE);
        if (g1 == 0)
            return 0;
        if (g1 & 1u) {
            cpu_relax(); /* a write is in progress: let it finish */
            continue;
        }
        for (uint32_t k = 0; k < BK_REF_ROW_WORDS; k++)
            w[k] = __atomic_load_n(&row[k], __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(g, __ATOMIC_RELAXED) == g1) {
            memcpy(out, w, sizeof w);
            return 1;
        }
        cpu_relax();
    }
    return -EAGAIN;
}
