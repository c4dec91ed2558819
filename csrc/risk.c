/*
 * Tectra pre-trade risk engine (see risk.h for the contract and docs/risk.md for the rules).
 *
 * Hot loop: rk_check_batch judges orders one after the other against one limits snapshot; an
 * accepted order immediately adds its exposure (so the next order in the batch sees it).
 * All arithmetic on prices, quantities and notionals is int64 with explicit overflow handling
 * (__int128 intermediates, __builtin_mul_overflow); an order whose exposure cannot be
 * represented is rejected, whatever the mode of the rule that would accumulate it.
 */
#include "risk.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* ---- layout checks: records against tectra/schema.py, state rows are whole int64 rows ---- */

_Static_assert(sizeof(rk_order_request_t) == 192, "ORDER_REQUEST size");
_Static_assert(offsetof(rk_order_request_t, order_id) == 24, "ORDER_REQUEST.order_id");
_Static_assert(offsetof(rk_order_request_t, orig_order_id) == 32, "ORDER_REQUEST.orig_order_id");
_Static_assert(offsetof(rk_order_request_t, price) == 40, "ORDER_REQUEST.price");
_Static_assert(offsetof(rk_order_request_t, qty) == 48, "ORDER_REQUEST.qty");
_Static_assert(offsetof(rk_order_request_t, instrument_id) == 56, "ORDER_REQUEST.instrument_id");
_Static_assert(offsetof(rk_order_request_t, account_id) == 60, "ORDER_REQUEST.account_id");
_Static_assert(offsetof(rk_order_request_t, strategy_id) == 64, "ORDER_REQUEST.strategy_id");
_Static_assert(offsetof(rk_order_request_t, session_id) == 68, "ORDER_REQUEST.session_id");
_Static_assert(offsetof(rk_order_request_t, venue_id) == 72, "ORDER_REQUEST.venue_id");
_Static_assert(offsetof(rk_order_request_t, action) == 76, "ORDER_REQUEST.action");
_Static_assert(offsetof(rk_order_request_t, side) == 77, "ORDER_REQUEST.side");
_Static_assert(offsetof(rk_order_request_t, ord_type) == 78, "ORDER_REQUEST.ord_type");
_Static_assert(offsetof(rk_order_request_t, symbol) == 80, "ORDER_REQUEST.symbol");
_Static_assert(offsetof(rk_order_request_t, transact_ns) == 144, "ORDER_REQUEST.transact_ns");
_Static_assert(sizeof(rk_risk_verdict_t) == 64, "RISK_VERDICT size");
_Static_assert(offsetof(rk_risk_verdict_t, order_id) == 24, "RISK_VERDICT.order_id");
_Static_assert(offsetof(rk_risk_verdict_t, request_seq) == 32, "RISK_VERDICT.request_seq");
_Static_assert(offsetof(rk_risk_verdict_t, decision_ns) == 40, "RISK_VERDICT.decision_ns");
_Static_assert(offsetof(rk_risk_verdict_t, account_id) == 48, "RISK_VERDICT.account_id");
_Static_assert(offsetof(rk_risk_verdict_t, instrument_id) == 52, "RISK_VERDICT.instrument_id");
_Static_assert(offsetof(rk_risk_verdict_t, verdict) == 56, "RISK_VERDICT.verdict");
_Static_assert(offsetof(rk_risk_verdict_t, dry_run) == 57, "RISK_VERDICT.dry_run");
_Static_assert(offsetof(rk_risk_verdict_t, reason_code) == 58, "RISK_VERDICT.reason_code");
_Static_assert(offsetof(rk_risk_verdict_t, rule_id) == 60, "RISK_VERDICT.rule_id");
_Static_assert(sizeof(rk_execution_report_t) == 256, "EXECUTION_REPORT size");
_Static_assert(offsetof(rk_execution_report_t, order_id) == 24, "EXECUTION_REPORT.order_id");
_Static_assert(offsetof(rk_execution_report_t, price) == 48, "EXECUTION_REPORT.price");
_Static_assert(offsetof(rk_execution_report_t, last_px) == 64, "EXECUTION_REPORT.last_px");
_Static_assert(offsetof(rk_execution_report_t, last_qty) == 72, "EXECUTION_REPORT.last_qty");
_Static_assert(offsetof(rk_execution_report_t, cum_qty) == 80, "EXECUTION_REPORT.cum_qty");
_Static_assert(offsetof(rk_execution_report_t, leaves_qty) == 88, "EXECUTION_REPORT.leaves_qty");
_Static_assert(offsetof(rk_execution_report_t, instrument_id) == 104, "EXECUTION_REPORT.instr");
_Static_assert(offsetof(rk_execution_report_t, account_id) == 108, "EXECUTION_REPORT.account_id");
_Static_assert(offsetof(rk_execution_report_t, strategy_id) == 112, "EXECUTION_REPORT.strategy");
_Static_assert(offsetof(rk_execution_report_t, exec_type) == 124, "EXECUTION_REPORT.exec_type");
_Static_assert(offsetof(rk_execution_report_t, side) == 126, "EXECUTION_REPORT.side");
_Static_assert(sizeof(rk_instrument_limits_t) == 9 * 8, "instrument limits row");
_Static_assert(sizeof(rk_account_limits_t) == 5 * 8, "account limits row");
_Static_assert(sizeof(rk_throttle_limits_t) == 2 * 8, "throttle limits row");
_Static_assert(sizeof(rk_account_state_t) == 4 * 8, "account state row");
_Static_assert(sizeof(rk_position_t) == 16 * 8, "position row");
_Static_assert(sizeof(rk_order_t) == 20 * 8, "order row");
_Static_assert(sizeof(rk_bucket_t) == 4 * 8, "bucket row");

typedef __int128 i128;

static inline uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser: order ids are sequential, so spread them over the table. */
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline int64_t sat64(i128 v)
{
    if (v > INT64_MAX)
        return INT64_MAX;
    if (v < INT64_MIN)
        return INT64_MIN;
    return (int64_t)v;
}

static inline int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

/* 0 when the side code is not an order side; short sells count as sells everywhere. */
static inline int64_t norm_side(uint8_t side)
{
    switch (side) {
    case RK_SIDE_BUY:
        return RK_SIDE_BUY;
    case RK_SIDE_SELL:
    case RK_SIDE_SELL_SHORT:
    case RK_SIDE_SELL_SHORT_EXEMPT:
        return RK_SIDE_SELL;
    default:
        return 0;
    }
}

int64_t rk_reference_price(int64_t bid_px, int64_t ask_px, int64_t last_px)
{
    if (bid_px > 0 && ask_px > 0)
        return (int64_t)(((i128)bid_px + ask_px) / 2);
    if (last_px > 0)
        return last_px;
    return 0;
}

/* ---- order index: order_id -> slot, linear probing with backward-shift deletion ---------- */

static int64_t idx_pos(const rk_state_t *st, uint64_t order_id)
{
    uint64_t mask = st->index_capacity - 1;
    uint64_t i = mix64(order_id) & mask;
    for (;;) {
        int64_t s = st->order_index[i];
        if (s == RK_NO_SLOT)
            return -1;
        if ((uint64_t)st->orders[s].order_id == order_id)
            return (int64_t)i;
        i = (i + 1) & mask;
    }
}

static int64_t idx_find(const rk_state_t *st, uint64_t order_id)
{
    if (order_id == 0)
        return RK_NO_SLOT;
    int64_t pos = idx_pos(st, order_id);
    return pos < 0 ? RK_NO_SLOT : st->order_index[pos];
}

static void idx_insert(rk_state_t *st, uint64_t order_id, int64_t slot)
{
    uint64_t mask = st->index_capacity - 1;
    uint64_t i = mix64(order_id) & mask;
    while (st->order_index[i] != RK_NO_SLOT)
        i = (i + 1) & mask;
    st->order_index[i] = slot;
}

static void idx_remove(rk_state_t *st, uint64_t order_id)
{
    int64_t pos = idx_pos(st, order_id);
    if (pos < 0)
        return;
    uint64_t mask = st->index_capacity - 1;
    uint64_t i = (uint64_t)pos, j = i;
    for (;;) {
        j = (j + 1) & mask;
        int64_t s = st->order_index[j];
        if (s == RK_NO_SLOT)
            break;
        uint64_t home = mix64((uint64_t)st->orders[s].order_id) & mask;
        /* Leave j alone when its home lies cyclically in (i, j]: moving it would break it. */
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        st->order_index[i] = s;
        i = j;
    }
    st->order_index[i] = RK_NO_SLOT;
}

/* ---- position table: (account, strategy, instrument) -> slot; keys are never removed ----- */

static inline uint64_t pos_hash(int64_t account, int64_t strategy, int64_t instrument)
{
    return mix64(((uint64_t)account << 32) ^ (uint64_t)(uint32_t)strategy ^
                 ((uint64_t)instrument * 0x9E3779B97F4A7C15ull));
}

static int64_t pos_find(const rk_state_t *st, int64_t account, int64_t strategy,
                        int64_t instrument)
{
    uint64_t mask = st->position_capacity - 1;
    uint64_t i = pos_hash(account, strategy, instrument) & mask;
    for (uint64_t probes = 0; probes < st->position_capacity; probes++) {
        const rk_position_t *p = &st->positions[i];
        if (!p->used)
            return RK_NO_SLOT;
        if (p->account == account && p->strategy == strategy && p->instrument == instrument)
            return (int64_t)i;
        i = (i + 1) & mask;
    }
    return RK_NO_SLOT;
}

/* Keys are bounded at 3/4 of the table so probe chains stay short. */
static inline int64_t pos_room(const rk_state_t *st)
{
    return (int64_t)(st->position_capacity / 4 * 3) - st->meta[RK_M_POSITIONS];
}

static int64_t pos_insert(rk_state_t *st, int64_t account, int64_t strategy, int64_t instrument)
{
    int64_t found = pos_find(st, account, strategy, instrument);
    if (found != RK_NO_SLOT)
        return found;
    if (pos_room(st) <= 0)
        return RK_NO_SLOT;
    uint64_t mask = st->position_capacity - 1;
    uint64_t i = pos_hash(account, strategy, instrument) & mask;
    while (st->positions[i].used)
        i = (i + 1) & mask;
    rk_position_t *p = &st->positions[i];
    memset(p, 0, sizeof *p);
    p->used = 1;
    p->account = account;
    p->strategy = strategy;
    p->instrument = instrument;
    p->best_buy = INT64_MIN;
    p->best_sell = INT64_MAX;
    p->head_buy = RK_NO_SLOT;
    p->head_sell = RK_NO_SLOT;
    st->meta[RK_M_POSITIONS]++;
    return (int64_t)i;
}

/* ---- self-match lists on the aggregate position row ------------------------------------ */

static void list_add(rk_state_t *st, int64_t slot)
{
    rk_order_t *e = &st->orders[slot];
    rk_position_t *p = &st->positions[e->agg_slot];
    int buy = e->side == RK_SIDE_BUY;
    int64_t *head = buy ? &p->head_buy : &p->head_sell;
    e->prev = RK_NO_SLOT;
    e->next = *head;
    if (*head != RK_NO_SLOT)
        st->orders[*head].prev = slot;
    *head = slot;
    if (buy) {
        p->n_buy++;
        if (e->sm_px > p->best_buy)
            p->best_buy = e->sm_px;
    } else {
        p->n_sell++;
        if (e->sm_px < p->best_sell)
            p->best_sell = e->sm_px;
    }
}

static void list_remove(rk_state_t *st, int64_t slot)
{
    rk_order_t *e = &st->orders[slot];
    rk_position_t *p = &st->positions[e->agg_slot];
    int buy = e->side == RK_SIDE_BUY;
    int64_t *head = buy ? &p->head_buy : &p->head_sell;
    if (e->prev != RK_NO_SLOT)
        st->orders[e->prev].next = e->next;
    else
        *head = e->next;
    if (e->next != RK_NO_SLOT)
        st->orders[e->next].prev = e->prev;
    e->prev = e->next = RK_NO_SLOT;
    /* Only the best price is kept; rescan this side's list when the best one leaves. */
    if (buy) {
        p->n_buy--;
        if (e->sm_px == p->best_buy) {
            p->best_buy = INT64_MIN;
            for (int64_t s = *head; s != RK_NO_SLOT; s = st->orders[s].next)
                if (st->orders[s].sm_px > p->best_buy)
                    p->best_buy = st->orders[s].sm_px;
        }
    } else {
        p->n_sell--;
        if (e->sm_px == p->best_sell) {
            p->best_sell = INT64_MAX;
            for (int64_t s = *head; s != RK_NO_SLOT; s = st->orders[s].next)
                if (st->orders[s].sm_px < p->best_sell)
                    p->best_sell = st->orders[s].sm_px;
        }
    }
}

/* ---- exposure bookkeeping --------------------------------------------------------------- */

static void add_exposure(rk_state_t *st, const rk_order_t *e, int64_t notional, int64_t qty)
{
    st->accounts[e->account].open_notional += notional;
    rk_position_t *agg = &st->positions[e->agg_slot];
    rk_position_t *strat = &st->positions[e->strat_slot];
    if (e->side == RK_SIDE_BUY) {
        agg->open_buy += qty;
        strat->open_buy += qty;
    } else {
        agg->open_sell += qty;
        strat->open_sell += qty;
    }
}

static void release_all(rk_state_t *st, rk_order_t *e)
{
    add_exposure(st, e, -e->open_notional, -e->open_qty);
    e->open_notional = 0;
    e->open_qty = 0;
}

static void move_position(rk_state_t *st, int64_t agg, int64_t strat, int64_t side, int64_t qty)
{
    int64_t d = side == RK_SIDE_BUY ? qty : -qty;
    st->positions[agg].position = sat64((i128)st->positions[agg].position + d);
    st->positions[strat].position = sat64((i128)st->positions[strat].position + d);
}

/* Remove an entry: release its exposure, unlink it, free its slot. A live original takes its
 * pending replacement with it (the replace can no longer happen); a pending replacement only
 * detaches from its original. */
static void remove_entry(rk_state_t *st, int64_t slot)
{
    rk_order_t *e = &st->orders[slot];
    if (e->link != RK_NO_SLOT) {
        int64_t other = e->link;
        st->orders[other].link = RK_NO_SLOT;
        e->link = RK_NO_SLOT;
        if (e->status == RK_ORD_LIVE)
            remove_entry(st, other);
    }
    release_all(st, e);
    st->accounts[e->account].open_orders--;
    list_remove(st, slot);
    idx_remove(st, (uint64_t)e->order_id);
    memset(e, 0, sizeof *e);
    e->status = RK_ORD_FREE;
    e->link = e->prev = e->agg_slot = e->strat_slot = RK_NO_SLOT;
    e->next = st->meta[RK_M_FREE_HEAD];
    st->meta[RK_M_FREE_HEAD] = slot;
    st->meta[RK_M_LIVE_ORDERS]--;
}

/* The venue confirmed a replace (or filled the new order): the original goes, the pending
 * entry becomes the live order with its full exposure in place of the reserved delta. */
static void commit_replace(rk_state_t *st, int64_t nslot, int64_t leaves, int64_t cum)
{
    rk_order_t *n = &st->orders[nslot];
    int64_t oslot = n->link;
    if (oslot != RK_NO_SLOT) {
        st->orders[oslot].link = RK_NO_SLOT;
        n->link = RK_NO_SLOT;
        remove_entry(st, oslot);
    }
    release_all(st, n);
    /* Never more than risk approved: fills only shrink what is left of the new order. */
    if (leaves < 0)
        leaves = 0;
    if (leaves > n->leaves)
        leaves = n->leaves;
    n->status = RK_ORD_LIVE;
    n->leaves = leaves;
    n->cum = cum > 0 ? cum : 0;
    n->open_qty = leaves;
    n->open_notional = sat64((i128)n->val_px * leaves); /* <= val_px x qty: checked */
    add_exposure(st, n, n->open_notional, n->open_qty);
    if (leaves == 0)
        remove_entry(st, nslot);
}

/* ---- token buckets ---------------------------------------------------------------------- */

static void refill(rk_bucket_t *b, const rk_throttle_limits_t *tl, int64_t now)
{
    int64_t rate = tl->rate_per_s < 0 ? 0 : tl->rate_per_s > RK_MAX_RATE ? RK_MAX_RATE : tl->rate_per_s;
    int64_t burst = tl->burst < 0 ? 0 : tl->burst > RK_MAX_RATE ? RK_MAX_RATE : tl->burst;
    int64_t cap = burst * RK_TOKEN_SCALE;
    if (!b->primed) {
        b->tokens = cap;
        b->last_ns = now;
        b->primed = 1;
        return;
    }
    if (now > b->last_ns) {
        /* rate tokens/s x dt ns = rate x dt nano-tokens: exact integer refill. */
        i128 t = (i128)b->tokens + ((i128)now - b->last_ns) * rate;
        b->tokens = t > cap ? cap : (int64_t)t;
        b->last_ns = now;
    }
    if (b->tokens > cap)
        b->tokens = cap; /* the limits shrank */
}

/* ---- rule evaluation -------------------------------------------------------------------- */

typedef struct judge_ctx {
    rk_state_t *st;
    rk_risk_verdict_t *v;
    uint16_t dry_reason;
    uint16_t dry_rule;
} judge_ctx_t;

static inline int64_t *ctr(rk_state_t *st, uint32_t rule) { return &st->counters[rule * RK_CTR_COLS]; }

static inline void evaluated(judge_ctx_t *c, uint32_t rule) { ctr(c->st, rule)[RK_CTR_EVALUATED]++; }

/* The rule's condition fired: reject (returns 1) unless the rule is in dry-run. */
static int fire(judge_ctx_t *c, uint32_t rule, uint16_t reason, uint8_t mode)
{
    int64_t *k = ctr(c->st, rule);
    k[RK_CTR_HITS]++;
    if (mode == RK_MODE_DRY_RUN) {
        k[RK_CTR_DRY_RUN]++;
        if (!c->dry_rule) {
            c->dry_rule = (uint16_t)rule;
            c->dry_reason = reason;
        }
        return 0;
    }
    k[RK_CTR_DENIES]++;
    c->v->verdict = RK_VERDICT_REJECT;
    c->v->reason_code = reason;
    c->v->rule_id = (uint16_t)rule;
    return 1;
}

/* Reject regardless of the rule's mode (fail closed: the order cannot be valued or its
 * exposure cannot be represented). Counted as a deny of that rule; `counted` says whether
 * the rule already counted this order as evaluated and hit (a dry-run hit just before). */
static int force_reject(judge_ctx_t *c, uint32_t rule, uint16_t reason, int counted)
{
    int64_t *k = ctr(c->st, rule);
    if (!counted) {
        k[RK_CTR_EVALUATED]++;
        k[RK_CTR_HITS]++;
    }
    k[RK_CTR_DENIES]++;
    c->v->verdict = RK_VERDICT_REJECT;
    c->v->reason_code = reason;
    c->v->rule_id = (uint16_t)rule;
    return 1;
}

static inline uint8_t mode_of(const rk_limits_t *lim, uint32_t rule, uint64_t instrument,
                              uint64_t venue)
{
    uint8_t m;
    if (instrument < lim->n_instruments) {
        m = lim->modes_instrument[instrument * RK_NUM_RULES + rule];
        if (m != RK_MODE_INHERIT)
            return m <= RK_MODE_DISABLED ? m : RK_MODE_ENFORCE;
    }
    if (venue < lim->n_venues) {
        m = lim->modes_venue[venue * RK_NUM_RULES + rule];
        if (m != RK_MODE_INHERIT)
            return m <= RK_MODE_DISABLED ? m : RK_MODE_ENFORCE;
    }
    m = lim->modes_default[rule];
    /* An unset or unknown default means enforce: never fail open on a bad mode table. */
    return (m == RK_MODE_DRY_RUN || m == RK_MODE_DISABLED) ? m : RK_MODE_ENFORCE;
}

static int in_band(int64_t px, int64_t ref, const rk_instrument_limits_t *il)
{
    i128 dev = (i128)px - ref;
    if (dev < 0)
        dev = -dev;
    if (il->band_bps > 0 && dev * 10000 <= (i128)ref * il->band_bps)
        return 1;
    if (il->band_ticks > 0 && il->tick_size > 0 && dev <= (i128)il->band_ticks * il->tick_size)
        return 1;
    return 0;
}

/* Position after every open order of this side fills, in the direction of the order; the
 * limit applies to its absolute value in that direction. */
static i128 worst_case(const rk_state_t *st, int64_t slot, int64_t side, int64_t add_qty)
{
    int64_t pos = 0, open_buy = 0, open_sell = 0;
    if (slot != RK_NO_SLOT) {
        const rk_position_t *p = &st->positions[slot];
        pos = p->position;
        open_buy = p->open_buy;
        open_sell = p->open_sell;
    }
    if (side == RK_SIDE_BUY)
        return (i128)pos + open_buy + add_qty;
    return (i128)open_sell + add_qty - pos;
}

static inline int open_overflows(const rk_state_t *st, int64_t slot, int64_t side, int64_t add)
{
    if (slot == RK_NO_SLOT)
        return 0;
    const rk_position_t *p = &st->positions[slot];
    return (i128)(side == RK_SIDE_BUY ? p->open_buy : p->open_sell) + add > INT64_MAX;
}

/* Every rule in priority order. Returns 1 when the order is rejected (verdict filled in),
 * 0 when it passed and its exposure was committed. */
static int judge_rules(judge_ctx_t *c, const rk_limits_t *lim, const rk_order_request_t *o,
                       const int64_t *ref, int64_t now, uint32_t kill)
{
    rk_state_t *st = c->st;
    const uint8_t E = RK_MODE_ENFORCE;

    /* VALIDATE: a request the engine cannot interpret. */
    evaluated(c, RK_RULE_VALIDATE);
    if (o->action == RK_ACTION_CANCEL) {
        /* Cancels only reduce risk: never blocked, never throttled. Exposure is released
         * when the venue confirms (rk_apply_reports). */
        return o->order_id == 0 ? fire(c, RK_RULE_VALIDATE, RK_REASON_INVALID_ORDER, E) : 0;
    }
    int64_t side = norm_side(o->side);
    int is_market = o->ord_type == RK_ORD_MARKET || o->ord_type == RK_ORD_STOP;
    int is_limit = o->ord_type == RK_ORD_LIMIT || o->ord_type == RK_ORD_STOP_LIMIT;
    if ((o->action != RK_ACTION_NEW && o->action != RK_ACTION_REPLACE) || !side || o->qty <= 0 ||
        o->order_id == 0 || !(is_market || is_limit) || (is_limit && o->price <= 0) ||
        o->account_id >= st->n_accounts || o->session_id >= st->n_sessions ||
        o->venue_id >= st->n_venues || o->strategy_id > RK_MAX_STRATEGY_ID ||
        idx_find(st, o->order_id) != RK_NO_SLOT)
        return fire(c, RK_RULE_VALIDATE, RK_REASON_INVALID_ORDER, E);
    int replace = o->action == RK_ACTION_REPLACE;
    int64_t oslot = RK_NO_SLOT, new_leaves = o->qty;
    const rk_order_t *orig = NULL;
    if (replace) {
        oslot = idx_find(st, o->orig_order_id);
        if (oslot == RK_NO_SLOT)
            return fire(c, RK_RULE_VALIDATE, RK_REASON_UNKNOWN_ORDER, E);
        orig = &st->orders[oslot];
        new_leaves = o->qty - orig->cum;
        /* One replace at a time, of the same order: account, strategy, instrument, side. */
        if (orig->status != RK_ORD_LIVE || orig->link != RK_NO_SLOT ||
            orig->account != (int64_t)o->account_id || orig->strategy != (int64_t)o->strategy_id ||
            orig->instrument != (int64_t)o->instrument_id || orig->side != side || new_leaves <= 0)
            return fire(c, RK_RULE_VALIDATE, RK_REASON_INVALID_ORDER, E);
    }

    /* INSTRUMENT: configured, and the symbol matches the id. */
    evaluated(c, RK_RULE_INSTRUMENT);
    uint64_t iid = o->instrument_id;
    const rk_instrument_limits_t *il = iid < lim->n_instruments ? &lim->instruments[iid] : NULL;
    int64_t symbol;
    memcpy(&symbol, o->symbol, sizeof symbol);
    if (!il || iid >= st->n_instruments || !il->known || il->symbol != symbol)
        return fire(c, RK_RULE_INSTRUMENT, RK_REASON_INVALID_SYMBOL, E);

    /* HALT: kill switch, or a halted instrument, venue or account. */
    evaluated(c, RK_RULE_HALT);
    if ((kill & RK_KILL_HALTED) || st->halt_instruments[iid] || st->halt_venues[o->venue_id] ||
        st->halt_accounts[o->account_id])
        return fire(c, RK_RULE_HALT, RK_REASON_HALTED, E);

    uint64_t vid = o->venue_id;
    uint8_t m = mode_of(lim, RK_RULE_RESTRICTED, iid, vid);
    if (m != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_RESTRICTED);
        if (il->restricted && fire(c, RK_RULE_RESTRICTED, RK_REASON_RESTRICTED, m))
            return 1;
    }

    /* PRICE_BAND: a usable, fresh reference first (fail closed), then the band. */
    int64_t ref_px = 0;
    if (ref && ref[3] != RK_REF_MISSING) {
        int64_t px = rk_reference_price(ref[0], ref[1], ref[2]);
        if (px > 0 && (i128)now - ref[3] <= il->max_ref_age_ns)
            ref_px = px;
    }
    m = mode_of(lim, RK_RULE_PRICE_BAND, iid, vid);
    if (m != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_PRICE_BAND);
        if (!ref_px) {
            if (fire(c, RK_RULE_PRICE_BAND, RK_REASON_STALE_REFERENCE, m))
                return 1;
        } else if (!is_market && !in_band(o->price, ref_px, il)) {
            if (fire(c, RK_RULE_PRICE_BAND, RK_REASON_PRICE_BANDS, m))
                return 1;
        }
    }
    /* A market order is valued at the reference: without one it cannot be valued at all. */
    if (is_market && !ref_px)
        return force_reject(c, RK_RULE_PRICE_BAND, RK_REASON_STALE_REFERENCE,
                            m == RK_MODE_DRY_RUN);
    int64_t val_px = is_market ? ref_px : o->price;
    int64_t sm_px = is_market ? (side == RK_SIDE_BUY ? INT64_MAX : INT64_MIN) : o->price;

    const rk_account_limits_t *al =
        o->account_id < lim->n_accounts ? &lim->accounts[o->account_id] : lim->account_default;

    m = mode_of(lim, RK_RULE_MAX_QTY, iid, vid);
    if (m != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_MAX_QTY);
        int64_t max = il->max_qty;
        if (al->max_qty > 0 && al->max_qty < max)
            max = al->max_qty;
        if (o->qty > max && fire(c, RK_RULE_MAX_QTY, RK_REASON_MAX_SIZE, m))
            return 1;
    }

    int64_t notional;
    int overflow = __builtin_mul_overflow(val_px, o->qty, &notional);
    m = mode_of(lim, RK_RULE_MAX_NOTIONAL, iid, vid);
    if (overflow)
        return force_reject(c, RK_RULE_MAX_NOTIONAL, RK_REASON_MAX_NOTIONAL, 0);
    if (m != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_MAX_NOTIONAL);
        int64_t max = il->max_notional;
        if (al->max_notional > 0 && al->max_notional < max)
            max = al->max_notional;
        if (notional > max && fire(c, RK_RULE_MAX_NOTIONAL, RK_REASON_MAX_NOTIONAL, m))
            return 1;
    }

    /* What this order adds: all of it for a new order; for a replace, only the growth over
     * the original's open exposure (the worse of old and new stays reserved until the venue
     * answers). */
    int64_t add_notional = notional, add_qty = o->qty;
    if (replace) {
        int64_t full = (int64_t)((i128)val_px * new_leaves); /* <= notional: no overflow */
        add_notional = full > orig->open_notional ? full - orig->open_notional : 0;
        add_qty = new_leaves > orig->open_qty ? new_leaves - orig->open_qty : 0;
    }

    const rk_account_state_t *as = &st->accounts[o->account_id];
    i128 credit_used = (i128)as->open_notional + as->executed_notional + add_notional;
    m = mode_of(lim, RK_RULE_CREDIT, iid, vid);
    if (credit_used > INT64_MAX || (i128)as->open_notional + add_notional > INT64_MAX)
        return force_reject(c, RK_RULE_CREDIT, RK_REASON_CREDIT, 0);
    if (m != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_CREDIT);
        if (credit_used > al->credit_limit && fire(c, RK_RULE_CREDIT, RK_REASON_CREDIT, m))
            return 1;
    }

    int64_t agg = replace ? orig->agg_slot : pos_find(st, o->account_id, RK_ALL_STRATEGIES, (int64_t)iid);
    int64_t strat = replace ? orig->strat_slot : pos_find(st, o->account_id, o->strategy_id, (int64_t)iid);
    m = mode_of(lim, RK_RULE_POSITION, iid, vid);
    if (open_overflows(st, agg, side, add_qty) || open_overflows(st, strat, side, add_qty))
        return force_reject(c, RK_RULE_POSITION, RK_REASON_POSITION, 0);
    if (m != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_POSITION);
        if ((worst_case(st, agg, side, add_qty) > al->max_position ||
             worst_case(st, strat, side, add_qty) > al->max_strategy_position) &&
            fire(c, RK_RULE_POSITION, RK_REASON_POSITION, m))
            return 1;
    }

    /* SELF_MATCH: would it cross a resting order of the same account and instrument? */
    m = mode_of(lim, RK_RULE_SELF_MATCH, iid, vid);
    if (m != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_SELF_MATCH);
        int crosses = 0;
        if (agg != RK_NO_SLOT) {
            const rk_position_t *p = &st->positions[agg];
            crosses = side == RK_SIDE_BUY ? (p->n_sell > 0 && p->best_sell <= sm_px)
                                          : (p->n_buy > 0 && p->best_buy >= sm_px);
        }
        if (crosses && fire(c, RK_RULE_SELF_MATCH, RK_REASON_SELF_MATCH, m))
            return 1;
    }

    /* Throttles: refill from now_ns, check; tokens are only spent by accepted orders. */
    rk_bucket_t *sb = &st->session_buckets[o->session_id];
    rk_bucket_t *vb = &st->venue_buckets[vid];
    uint8_t m_sess = mode_of(lim, RK_RULE_THROTTLE_SESSION, iid, vid);
    if (m_sess != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_THROTTLE_SESSION);
        const rk_throttle_limits_t *tl = o->session_id < lim->n_sessions
                                             ? &lim->sessions[o->session_id]
                                             : lim->session_default;
        refill(sb, tl, now);
        if (sb->tokens < RK_TOKEN_SCALE &&
            fire(c, RK_RULE_THROTTLE_SESSION, RK_REASON_RATE_LIMIT, m_sess))
            return 1;
    }
    uint8_t m_venue = mode_of(lim, RK_RULE_THROTTLE_VENUE, iid, vid);
    if (m_venue != RK_MODE_DISABLED) {
        evaluated(c, RK_RULE_THROTTLE_VENUE);
        const rk_throttle_limits_t *tl = vid < lim->n_venues ? &lim->venues[vid]
                                                             : lim->venue_default;
        refill(vb, tl, now);
        if (vb->tokens < RK_TOKEN_SCALE &&
            fire(c, RK_RULE_THROTTLE_VENUE, RK_REASON_RATE_LIMIT, m_venue))
            return 1;
    }

    /* CAPACITY: the state must be able to hold the order (fail closed, never dropped). */
    evaluated(c, RK_RULE_CAPACITY);
    int64_t need = (agg == RK_NO_SLOT) + (strat == RK_NO_SLOT);
    if (st->meta[RK_M_FREE_HEAD] == RK_NO_SLOT || pos_room(st) < need)
        return fire(c, RK_RULE_CAPACITY, RK_REASON_QUEUE_FULL, E);

    /* Commit: spend tokens, record the order and its exposure. */
    if (m_sess != RK_MODE_DISABLED && sb->tokens >= RK_TOKEN_SCALE)
        sb->tokens -= RK_TOKEN_SCALE;
    if (m_venue != RK_MODE_DISABLED && vb->tokens >= RK_TOKEN_SCALE)
        vb->tokens -= RK_TOKEN_SCALE;
    if (agg == RK_NO_SLOT)
        agg = pos_insert(st, o->account_id, RK_ALL_STRATEGIES, (int64_t)iid);
    if (strat == RK_NO_SLOT)
        strat = pos_insert(st, o->account_id, o->strategy_id, (int64_t)iid);
    int64_t slot = st->meta[RK_M_FREE_HEAD];
    rk_order_t *e = &st->orders[slot];
    st->meta[RK_M_FREE_HEAD] = e->next;
    memset(e, 0, sizeof *e);
    e->order_id = (int64_t)o->order_id;
    e->status = replace ? RK_ORD_PENDING : RK_ORD_LIVE;
    e->account = o->account_id;
    e->strategy = o->strategy_id;
    e->instrument = (int64_t)iid;
    e->side = side;
    e->val_px = val_px;
    e->sm_px = sm_px;
    e->order_qty = o->qty;
    e->leaves = new_leaves;
    e->cum = replace ? orig->cum : 0;
    e->open_notional = add_notional;
    e->open_qty = add_qty;
    e->link = oslot;
    e->agg_slot = agg;
    e->strat_slot = strat;
    if (replace)
        st->orders[oslot].link = slot;
    idx_insert(st, o->order_id, slot);
    add_exposure(st, e, add_notional, add_qty);
    st->accounts[o->account_id].open_orders++;
    list_add(st, slot);
    st->meta[RK_M_LIVE_ORDERS]++;
    return 0;
}

/* The table lookups of an order are cache misses on a large book of orders and positions:
 * start them a few orders ahead so they overlap the rules of the orders before. Prefetching
 * reads nothing and changes nothing, so results do not depend on it. */
#ifndef RK_PREFETCH_AHEAD
#define RK_PREFETCH_AHEAD 4
#endif

static inline void prefetch_order(const rk_state_t *st, const rk_order_request_t *o)
{
    __builtin_prefetch(&st->order_index[mix64(o->order_id) & (st->index_capacity - 1)]);
    uint64_t mask = st->position_capacity - 1;
    __builtin_prefetch(&st->positions[pos_hash(o->account_id, RK_ALL_STRATEGIES, o->instrument_id) & mask]);
    __builtin_prefetch(&st->positions[pos_hash(o->account_id, o->strategy_id, o->instrument_id) & mask]);
    if (o->account_id < st->n_accounts)
        __builtin_prefetch(&st->accounts[o->account_id]);
}

int64_t rk_check_batch(rk_state_t *st, const rk_limits_t *lim, const rk_order_request_t *orders,
                       uint64_t n, const int64_t *refs, uint64_t n_refs, uint32_t ref_mode,
                       int64_t now_ns, uint32_t kill_flags, rk_risk_verdict_t *out)
{
    if (!st || !lim || (n && (!orders || !out)))
        return -EINVAL;
    if (ref_mode != RK_REF_PER_ORDER && ref_mode != RK_REF_BY_INSTRUMENT)
        return -EINVAL;
    if (ref_mode == RK_REF_PER_ORDER && n && (!refs || n_refs < n))
        return -EINVAL;
    st->meta[RK_M_BATCHES]++;
    for (uint64_t i = 0; i < n; i++) {
        if (RK_PREFETCH_AHEAD && i + RK_PREFETCH_AHEAD < n)
            prefetch_order(st, &orders[i + RK_PREFETCH_AHEAD]);
        const rk_order_request_t *o = &orders[i];
        const int64_t *ref = NULL;
        if (ref_mode == RK_REF_PER_ORDER)
            ref = &refs[i * RK_REF_COLS];
        else if (refs && o->instrument_id < n_refs)
            ref = &refs[(uint64_t)o->instrument_id * RK_REF_COLS];
        rk_risk_verdict_t *v = &out[i];
        memset(v, 0, sizeof *v);
        v->type_id = RK_TYPE_RISK_VERDICT;
        v->version = RK_VERSION_RISK_VERDICT;
        v->flags = o->flags & RK_FLAGS_PROPAGATED;
        v->seq = (uint64_t)++st->meta[RK_M_VERDICT_SEQ];
        v->ts_ns = now_ns;
        v->order_id = o->order_id;
        v->request_seq = o->seq;
        v->account_id = o->account_id;
        v->instrument_id = o->instrument_id;
        st->meta[RK_M_ORDERS]++;
        judge_ctx_t c = {st, v, 0, 0};
        if (judge_rules(&c, lim, o, ref, now_ns, kill_flags)) {
            st->meta[RK_M_REJECTED]++;
            continue;
        }
        v->verdict = RK_VERDICT_PASS;
        if (c.dry_rule) {
            v->dry_run = 1;
            v->reason_code = c.dry_reason;
            v->rule_id = c.dry_rule;
            st->meta[RK_M_DRY_RUN_PASSED]++;
        }
        st->meta[RK_M_PASSED]++;
    }
    return (int64_t)n;
}

void rk_stamp_decision(rk_risk_verdict_t *out, uint64_t n, int64_t decision_ns)
{
    for (uint64_t i = 0; i < n; i++)
        out[i].decision_ns = decision_ns;
}

/* ---- execution reports ------------------------------------------------------------------ */

/* A fill or bust of an order the table does not hold (already gone, or from before a
 * restart without snapshot): the position and traded value still move. */
static int64_t apply_untracked(rk_state_t *st, const rk_execution_report_t *r, int64_t sign)
{
    int64_t side = norm_side(r->side);
    if (!side || r->last_qty <= 0 || r->account_id >= st->n_accounts ||
        r->strategy_id > RK_MAX_STRATEGY_ID) {
        st->meta[RK_M_STATE_ERRORS]++;
        return 0;
    }
    int64_t agg = pos_insert(st, r->account_id, RK_ALL_STRATEGIES, r->instrument_id);
    int64_t strat = agg == RK_NO_SLOT ? RK_NO_SLOT
                                      : pos_insert(st, r->account_id, r->strategy_id,
                                                   r->instrument_id);
    if (strat == RK_NO_SLOT) {
        st->meta[RK_M_STATE_ERRORS]++;
        return 0;
    }
    move_position(st, agg, strat, side, sign * r->last_qty);
    rk_account_state_t *a = &st->accounts[r->account_id];
    i128 value = (i128)(r->last_px > 0 ? r->last_px : 0) * r->last_qty;
    a->executed_notional = sat64((i128)a->executed_notional + sign * value);
    if (a->executed_notional < 0)
        a->executed_notional = 0;
    if (sign > 0)
        a->fills++;
    return 1;
}

static int64_t apply_fill(rk_state_t *st, const rk_execution_report_t *r)
{
    int64_t slot = idx_find(st, r->order_id);
    if (slot == RK_NO_SLOT) {
        st->meta[RK_M_REPORTS_UNKNOWN]++;
        return apply_untracked(st, r, 1);
    }
    rk_order_t *e = &st->orders[slot];
    if (e->status == RK_ORD_PENDING) {
        /* A fill under the new id: the venue has replaced the order. */
        int64_t cum = e->link != RK_NO_SLOT ? st->orders[e->link].cum : e->cum;
        commit_replace(st, slot, e->order_qty - cum, cum);
        slot = idx_find(st, r->order_id);
        if (slot == RK_NO_SLOT) /* nothing left open: the fill is position-only */
            return apply_untracked(st, r, 1);
        e = &st->orders[slot];
    }
    if (r->last_qty <= 0)
        return 0;
    if (r->cum_qty > 0 && r->cum_qty <= e->cum) {
        st->meta[RK_M_REPORTS_DUP]++;
        return 0;
    }
    int64_t f = r->last_qty;
    int64_t rel = f < e->open_qty ? f : e->open_qty;
    int64_t rel_notional = sat64((i128)e->val_px * rel);
    if (rel_notional > e->open_notional)
        rel_notional = e->open_notional;
    add_exposure(st, e, -rel_notional, -rel);
    e->open_qty -= rel;
    e->open_notional -= rel_notional;
    e->leaves = e->leaves > f ? e->leaves - f : 0;
    e->cum = sat64((i128)e->cum + f);
    move_position(st, e->agg_slot, e->strat_slot, e->side, f);
    rk_account_state_t *a = &st->accounts[e->account];
    i128 value = (i128)(r->last_px > 0 ? r->last_px : 0) * f;
    a->executed_notional = sat64((i128)a->executed_notional + value);
    a->fills++;
    if (e->leaves == 0)
        remove_entry(st, slot);
    return 1;
}

static int64_t apply_done(rk_state_t *st, const rk_execution_report_t *r)
{
    int64_t slot = idx_find(st, r->order_id);
    if (slot == RK_NO_SLOT) {
        st->meta[RK_M_REPORTS_UNKNOWN]++;
        return 0;
    }
    rk_order_t *e = &st->orders[slot];
    if (e->status == RK_ORD_PENDING && r->exec_type != RK_EXEC_REJECTED && e->link != RK_NO_SLOT) {
        /* The order was cancelled (or expired) under its new id: the whole chain is gone. */
        int64_t oslot = e->link;
        remove_entry(st, slot);
        remove_entry(st, oslot);
        return 1;
    }
    /* REJECTED on a pending replacement: the replace was refused, the original stands.
     * Anything else: the order is done; a pending replacement goes with it. */
    remove_entry(st, slot);
    return 1;
}

static int64_t apply_replaced(rk_state_t *st, const rk_execution_report_t *r)
{
    int64_t slot = idx_find(st, r->order_id);
    if (slot == RK_NO_SLOT) {
        st->meta[RK_M_REPORTS_UNKNOWN]++;
        return 0;
    }
    const rk_order_t *e = &st->orders[slot];
    int64_t nslot;
    if (e->status == RK_ORD_PENDING)
        nslot = slot;
    else if (e->link != RK_NO_SLOT) /* reported under the original's id */
        nslot = e->link;
    else
        return 0; /* nothing pending: already confirmed */
    commit_replace(st, nslot, r->leaves_qty, r->cum_qty);
    return 1;
}

int64_t rk_apply_reports(rk_state_t *st, const rk_execution_report_t *reports, uint64_t n)
{
    if (!st || (n && !reports))
        return -EINVAL;
    int64_t applied = 0;
    for (uint64_t i = 0; i < n; i++) {
        const rk_execution_report_t *r = &reports[i];
        int64_t done = 0;
        st->meta[RK_M_REPORTS]++;
        switch (r->exec_type) {
        case RK_EXEC_TRADE:
            done = apply_fill(st, r);
            break;
        case RK_EXEC_CANCELED:
        case RK_EXEC_EXPIRED:
        case RK_EXEC_DONE_FOR_DAY:
        case RK_EXEC_REJECTED:
            done = apply_done(st, r);
            break;
        case RK_EXEC_REPLACED:
            done = apply_replaced(st, r);
            break;
        case RK_EXEC_TRADE_CANCEL:
            /* A busted trade: the position and traded value go back; the order does not
             * reopen at the venue, so open exposure is untouched. */
            done = apply_untracked(st, r, -1);
            break;
        default:
            break; /* NEW, PENDING_*, ORDER_STATUS, ...: no exposure change */
        }
        st->meta[RK_M_REPORTS_APPLIED] += done;
        applied += done;
    }
    return applied;
}

/* ---- state formatting and checking ------------------------------------------------------ */

static int sizes_ok(const rk_state_t *st)
{
    return st && st->accounts && st->positions && st->orders && st->order_index &&
           st->session_buckets && st->venue_buckets && st->halt_instruments && st->halt_venues &&
           st->halt_accounts && st->counters && st->meta && st->n_accounts && st->n_sessions &&
           st->n_venues && st->n_instruments && st->max_orders &&
           is_pow2(st->position_capacity) && st->position_capacity >= 4 &&
           is_pow2(st->index_capacity) && st->index_capacity >= 2 * st->max_orders &&
           st->max_orders < (1ull << 40);
}

int rk_state_init(rk_state_t *st)
{
    if (!sizes_ok(st))
        return -EINVAL;
    for (uint64_t i = 0; i < st->index_capacity; i++)
        st->order_index[i] = RK_NO_SLOT;
    for (uint64_t i = 0; i < st->max_orders; i++) {
        rk_order_t *e = &st->orders[i];
        memset(e, 0, sizeof *e);
        e->link = e->prev = e->agg_slot = e->strat_slot = RK_NO_SLOT;
        e->next = i + 1 < st->max_orders ? (int64_t)(i + 1) : RK_NO_SLOT;
    }
    memset(st->positions, 0, st->position_capacity * sizeof *st->positions);
    memset(st->meta, 0, RK_META_WORDS * sizeof *st->meta);
    st->meta[RK_M_LAYOUT] = RK_LAYOUT_VERSION;
    st->meta[RK_M_FREE_HEAD] = 0;
    return 0;
}

#define FAIL(code)      \
    do {                \
        if (where)      \
            *where = (code); \
        return -EINVAL; \
    } while (0)

static inline int slot_ok(const rk_state_t *st, int64_t s) { return s >= 0 && (uint64_t)s < st->max_orders; }
static inline int pslot_ok(const rk_state_t *st, int64_t s)
{
    return s >= 0 && (uint64_t)s < st->position_capacity && st->positions[s].used;
}

/* Structural invariants (the sums of exposure are checked by the Python wrapper, which can
 * allocate). *where: 1xx meta, 2xx free list, 3xx order entries, 4xx index, 5xx positions
 * and self-match lists. */
int rk_state_check(const rk_state_t *st, int64_t *where)
{
    if (where)
        *where = 0;
    if (!sizes_ok(st))
        FAIL(100);
    if (st->meta[RK_M_LAYOUT] != RK_LAYOUT_VERSION)
        FAIL(101);
    int64_t live = st->meta[RK_M_LIVE_ORDERS];
    if (live < 0 || (uint64_t)live > st->max_orders)
        FAIL(102);
    /* Free list: only FREE slots, no cycle, free + live = capacity. */
    uint64_t free_count = 0;
    for (int64_t s = st->meta[RK_M_FREE_HEAD]; s != RK_NO_SLOT; s = st->orders[s].next) {
        if (!slot_ok(st, s) || st->orders[s].status != RK_ORD_FREE || st->orders[s].order_id)
            FAIL(200);
        if (++free_count > st->max_orders)
            FAIL(201);
    }
    if (free_count + (uint64_t)live != st->max_orders)
        FAIL(202);
    /* Entries. */
    uint64_t used = 0;
    for (uint64_t i = 0; i < st->max_orders; i++) {
        const rk_order_t *e = &st->orders[i];
        if (e->status == RK_ORD_FREE)
            continue;
        used++;
        if (e->status != RK_ORD_LIVE && e->status != RK_ORD_PENDING)
            FAIL(300);
        if (e->order_id == 0 || idx_find(st, (uint64_t)e->order_id) != (int64_t)i)
            FAIL(301);
        if (e->account < 0 || (uint64_t)e->account >= st->n_accounts)
            FAIL(302);
        if (e->side != RK_SIDE_BUY && e->side != RK_SIDE_SELL)
            FAIL(303);
        if (e->open_qty < 0 || e->open_notional < 0 || e->leaves < 0 || e->cum < 0 ||
            e->order_qty <= 0)
            FAIL(304);
        if (!pslot_ok(st, e->agg_slot) || !pslot_ok(st, e->strat_slot))
            FAIL(305);
        const rk_position_t *a = &st->positions[e->agg_slot];
        const rk_position_t *p = &st->positions[e->strat_slot];
        if (a->account != e->account || a->strategy != RK_ALL_STRATEGIES ||
            a->instrument != e->instrument || p->account != e->account ||
            p->strategy != e->strategy || p->instrument != e->instrument)
            FAIL(306);
        if (e->link != RK_NO_SLOT) {
            if (!slot_ok(st, e->link) || st->orders[e->link].link != (int64_t)i)
                FAIL(307);
            int64_t other = st->orders[e->link].status;
            if (!((e->status == RK_ORD_LIVE && other == RK_ORD_PENDING) ||
                  (e->status == RK_ORD_PENDING && other == RK_ORD_LIVE)))
                FAIL(308);
        }
        if (e->status == RK_ORD_LIVE && (e->open_qty != e->leaves || e->leaves == 0))
            FAIL(309);
    }
    if (used != (uint64_t)live)
        FAIL(310);
    /* Index: exactly the live entries. */
    uint64_t indexed = 0;
    for (uint64_t i = 0; i < st->index_capacity; i++) {
        int64_t s = st->order_index[i];
        if (s == RK_NO_SLOT)
            continue;
        if (!slot_ok(st, s) || st->orders[s].status == RK_ORD_FREE)
            FAIL(400);
        indexed++;
    }
    if (indexed != used)
        FAIL(401);
    /* Positions: keys findable, count matches; aggregate rows' lists hold their entries. */
    int64_t keys = 0;
    uint64_t listed = 0;
    for (uint64_t i = 0; i < st->position_capacity; i++) {
        const rk_position_t *p = &st->positions[i];
        if (!p->used)
            continue;
        keys++;
        if (pos_find(st, p->account, p->strategy, p->instrument) != (int64_t)i)
            FAIL(500);
        if (p->open_buy < 0 || p->open_sell < 0)
            FAIL(501);
        if (p->strategy != RK_ALL_STRATEGIES) {
            if (p->n_buy || p->n_sell || p->head_buy != RK_NO_SLOT || p->head_sell != RK_NO_SLOT)
                FAIL(502);
            continue;
        }
        for (int sidx = 0; sidx < 2; sidx++) {
            int64_t count = 0, best = sidx ? INT64_MAX : INT64_MIN, prev = RK_NO_SLOT;
            for (int64_t s = sidx ? p->head_sell : p->head_buy; s != RK_NO_SLOT;
                 s = st->orders[s].next) {
                const rk_order_t *e = &st->orders[s];
                if (!slot_ok(st, s) || e->status == RK_ORD_FREE || e->agg_slot != (int64_t)i ||
                    e->side != (sidx ? RK_SIDE_SELL : RK_SIDE_BUY) || e->prev != prev)
                    FAIL(503);
                if ((uint64_t)++count > st->max_orders)
                    FAIL(504);
                if (sidx ? e->sm_px < best : e->sm_px > best)
                    best = e->sm_px;
                prev = s;
            }
            if (count != (sidx ? p->n_sell : p->n_buy) || best != (sidx ? p->best_sell : p->best_buy))
                FAIL(505);
            listed += (uint64_t)count;
        }
    }
    if (keys != st->meta[RK_M_POSITIONS] || keys > (int64_t)(st->position_capacity / 4 * 3))
        FAIL(506);
    if (listed != used)
        FAIL(507);
    return 0;
}
